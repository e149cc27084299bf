//! Attackers for the hostile-input tests: a c2s user and a second component (standing in for a
//! remote server, which may send from any JID of its domain) that write whatever bytes they
//! like, and read what comes back with the gateway's own bounded reader, in a task of their own
//! so the server never blocks on them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jingle_gateway::xmpp::stream::scanner::{Frame, ReadLimits, Scanner};
use jingle_gateway::xmpp::stream::tree;
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const NS_STREAM: &str = "http://etherx.jabber.org/streams";

/// What an attacker's reading task saw.
#[derive(Debug)]
pub enum Seen {
    /// The stream header (its attributes).
    Header(Vec<(String, String)>),
    /// A top-level element.
    Element(Element),
    /// The stream or the connection ended.
    Ended,
}

/// One side of a raw XML stream.
pub struct RawStream {
    write: OwnedWriteHalf,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Set before a stream restart: the reader starts a new stream with the next bytes.
    restart: Arc<AtomicBool>,
}

impl RawStream {
    /// Connects to `port` and starts reading (the header is written by the caller).
    async fn connect(port: u16) -> RawStream {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (mut read, write) = tcp.into_split();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let restart = Arc::new(AtomicBool::new(false));
        let restarting = restart.clone();
        tokio::spawn(async move {
            // Limits far above the gateway's: the servers' answers are read whole.
            let limits = ReadLimits {
                max_depth: 256,
                max_stanza: 64 << 20,
                max_text: 64 << 20,
                max_attribute: 16 << 20,
                ..ReadLimits::DEFAULT
            };
            let mut scanner = Scanner::new(limits);
            let mut prefixes = BTreeMap::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // After SASL the stream starts again with a new header.
                if restarting.swap(false, Ordering::SeqCst) {
                    scanner = Scanner::new(limits);
                }
                if scanner.push(&chunk[..n]).is_err() {
                    break;
                }
                while let Some(frame) = scanner.poll() {
                    let seen = match frame {
                        Frame::Header(attributes) => {
                            prefixes = tree::header_prefixes(&attributes);
                            Seen::Header(attributes)
                        }
                        Frame::Element { bytes, .. } => {
                            match tree::parse_element(&bytes, &prefixes, &limits) {
                                Ok(element) => Seen::Element(element),
                                Err(_) => continue,
                            }
                        }
                        Frame::Dropped { .. } => continue,
                        Frame::Footer => Seen::Ended,
                    };
                    if seen_tx.send(seen).is_err() {
                        return;
                    }
                }
            }
            let _ = seen_tx.send(Seen::Ended);
        });
        RawStream {
            write,
            seen,
            restart,
        }
    }

    /// Restarts the stream (after SASL) with `header`.
    async fn restart(&mut self, header: &str) {
        self.restart.store(true, Ordering::SeqCst);
        assert!(self.write(header.as_bytes()).await, "stream restart");
        self.header().await;
    }

    /// Writes `bytes` as they are; false when the connection is gone or stuck for 10 s.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.write.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// The next thing seen, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Seen> {
        tokio::time::timeout(timeout, self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits up to `timeout` for an element matching `matches`, dropping the others.
    pub async fn expect(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Element) -> bool,
    ) -> Option<Element> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Seen::Element(element) if matches(&element) => return Some(element),
                Seen::Ended => return None,
                _ => {}
            }
        }
    }

    /// Drops everything seen so far; returns how many elements it was, and whether the stream
    /// ended.
    pub fn drain(&mut self) -> (usize, bool) {
        let mut count = 0;
        while let Ok(seen) = self.seen.try_recv() {
            match seen {
                Seen::Element(_) => count += 1,
                Seen::Ended => return (count, true),
                Seen::Header(_) => {}
            }
        }
        (count, false)
    }

    async fn header(&mut self) -> Vec<(String, String)> {
        match self.next(Duration::from_secs(10)).await {
            Some(Seen::Header(attributes)) => attributes,
            other => panic!("no stream header: {other:?}"),
        }
    }
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn stream_header(ns: &str, to: &str) -> String {
    format!("<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='{NS_STREAM}' to='{to}' version='1.0'>")
}

/// A second XEP-0114 component on the test server: a remote server's stand-in that may send
/// stanzas from any JID of its domain.
pub struct RawComponent {
    /// The stream.
    pub stream: RawStream,
    /// Its domain.
    pub domain: String,
}

impl RawComponent {
    /// Attaches as `domain` with `secret` to the component port `port`.
    pub async fn connect(port: u16, domain: &str, secret: &str) -> RawComponent {
        let mut stream = RawStream::connect(port).await;
        assert!(
            stream
                .write(stream_header("jabber:component:accept", domain).as_bytes())
                .await
        );
        let header = stream.header().await;
        let id = attribute(&header, "id").expect("a stream id").to_string();
        let handshake = xmpp_parsers::component::Handshake::from_stream_id_and_password(id, secret);
        let handshake = String::from(&Element::from(handshake));
        assert!(stream.write(handshake.as_bytes()).await);
        stream
            .expect(Duration::from_secs(10), |e| e.name() == "handshake")
            .await
            .expect("the server accepted the component");
        RawComponent {
            stream,
            domain: domain.to_string(),
        }
    }
}

/// A c2s user that writes raw bytes after logging in.
pub struct RawClient {
    /// The stream.
    pub stream: RawStream,
    /// Its full JID.
    pub jid: String,
}

impl RawClient {
    /// Registers `user` (password = user name) if needed and logs in with `resource`.
    pub async fn login(port: u16, user: &str, resource: &str) -> RawClient {
        let mut stream = RawStream::connect(port).await;
        assert!(
            stream
                .write(stream_header("jabber:client", "localhost").as_bytes())
                .await
        );
        stream.header().await;
        let register = format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>{user}</username><password>{user}</password></query></iq>"
        );
        assert!(stream.write(register.as_bytes()).await);
        stream
            .expect(Duration::from_secs(10), |e| e.attr("id") == Some("reg"))
            .await
            .expect("an answer to the registration");
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{user}"));
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
        );
        assert!(stream.write(auth.as_bytes()).await);
        stream
            .expect(Duration::from_secs(10), |e| e.name() == "success")
            .await
            .unwrap_or_else(|| panic!("login of {user} failed"));
        stream
            .restart(&stream_header("jabber:client", "localhost"))
            .await;
        let bind = format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        );
        assert!(stream.write(bind.as_bytes()).await);
        let bound = stream
            .expect(Duration::from_secs(10), |e| e.attr("id") == Some("bind"))
            .await
            .expect("resource bound");
        let jid = bound
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .unwrap_or_else(|| format!("{user}@localhost/{resource}"));
        assert!(
            stream
                .write(b"<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
                .await
        );
        stream
            .expect(Duration::from_secs(10), |e| e.attr("id") == Some("sess"))
            .await;
        RawClient { stream, jid }
    }
}
