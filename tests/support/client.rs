//! A small XMPP client (c2s, no TLS, SASL PLAIN, in-band registration) for the tests. It speaks
//! raw elements in `jabber:client`, so it is not affected by the component feature of
//! xmpp-parsers in this build. Jingle IQ sets addressed to it are acknowledged automatically.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};

/// `jabber:client`
pub const NS_CLIENT: &str = "jabber:client";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_REGISTER: &str = "jabber:iq:register";
const NS_JINGLE: &str = "urn:xmpp:jingle:1";

type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// A logged-in user.
pub struct XmppClient {
    /// The bound full JID.
    pub jid: String,
    stream: Stream,
    pending: VecDeque<Element>,
    next_id: u64,
    /// Whether Jingle IQ sets are acknowledged automatically.
    pub auto_ack: bool,
}

fn build(name: &str, ns: &str) -> minidom::ElementBuilder {
    Element::builder(name, ns)
}

/// Sets an attribute by a runtime name (test code only).
fn set(elem: &mut Element, name: &str, value: &str) {
    let name = minidom::rxml::NcName::try_from(name).expect("attribute name");
    elem.set_attr(minidom::rxml::Namespace::NONE, name, value);
}

impl XmppClient {
    /// Registers `user` (password = user name) if needed and logs in with `resource`.
    pub async fn login(port: u16, user: &str, resource: &str) -> XmppClient {
        let mut stream = open(port).await;
        // In-band registration; "conflict" just means the account exists.
        let mut register = build("iq", NS_CLIENT)
            .append(
                build("query", NS_REGISTER)
                    .append(build("username", NS_REGISTER).append(user).build())
                    .append(build("password", NS_REGISTER).append(user).build())
                    .build(),
            )
            .build();
        set(&mut register, "type", "set");
        set(&mut register, "id", "register");
        stream.send(&register).await.expect("send register");
        next_element(&mut stream).await;

        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{user}"));
        let mut auth = build("auth", NS_SASL).append(plain.as_str()).build();
        set(&mut auth, "mechanism", "PLAIN");
        stream.send(&auth).await.expect("send auth");
        let answer = next_element(&mut stream).await;
        assert_eq!(
            answer.name(),
            "success",
            "login of {user} failed: {}",
            String::from(&answer)
        );

        let mut stream = restart(stream).await;
        let mut bind = build("iq", NS_CLIENT)
            .append(
                build("bind", NS_BIND)
                    .append(build("resource", NS_BIND).append(resource).build())
                    .build(),
            )
            .build();
        set(&mut bind, "type", "set");
        set(&mut bind, "id", "bind");
        stream.send(&bind).await.expect("send bind");
        let bound = next_element(&mut stream).await;
        let jid = bound
            .get_child("bind", NS_BIND)
            .and_then(|b| b.get_child("jid", NS_BIND))
            .map(|j| j.text())
            .unwrap_or_else(|| panic!("bind failed: {}", String::from(&bound)));
        let mut client = XmppClient {
            jid,
            stream,
            pending: VecDeque::new(),
            next_id: 1,
            auto_ack: true,
        };
        // Like real clients: fetch the roster (which makes this an "interested" resource that
        // gets subscription approvals), then be available.
        let bare = client.bare().to_owned();
        let roster = client
            .iq(&bare, "get", build("query", "jabber:iq:roster").build())
            .await;
        assert_eq!(
            roster.attr("type"),
            Some("result"),
            "roster: {}",
            String::from(&roster)
        );
        client.send(build("presence", NS_CLIENT).build()).await;
        client
    }

    /// The bare JID.
    pub fn bare(&self) -> &str {
        self.jid.split('/').next().unwrap_or(&self.jid)
    }

    /// A fresh stanza id.
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    /// Sends a stanza.
    pub async fn send(&mut self, stanza: Element) {
        self.stream.send(&stanza).await.expect("send stanza");
    }

    /// Sends an IQ of `type_` with `payload` to `to`; returns its id.
    pub async fn send_iq(&mut self, to: &str, type_: &str, payload: Element) -> String {
        let id = self.id();
        let mut iq = build("iq", NS_CLIENT).append(payload).build();
        set(&mut iq, "type", type_);
        set(&mut iq, "id", &id);
        set(&mut iq, "to", to);
        self.send(iq).await;
        id
    }

    /// Sends an IQ and waits for its answer (result or error).
    pub async fn iq(&mut self, to: &str, type_: &str, payload: Element) -> Element {
        let id = self.send_iq(to, type_, payload).await;
        self.expect(
            &format!("answer to IQ {id}"),
            Duration::from_secs(10),
            |s| {
                s.name() == "iq"
                    && s.attr("id") == Some(&id)
                    && matches!(s.attr("type"), Some("result") | Some("error"))
            },
        )
        .await
    }

    /// Sends a message with `payloads` to `to`.
    pub async fn send_message(&mut self, to: &str, payloads: Vec<Element>) -> String {
        let id = self.id();
        let mut message = build("message", NS_CLIENT).append_all(payloads).build();
        set(&mut message, "type", "chat");
        set(&mut message, "id", &id);
        set(&mut message, "to", to);
        self.send(message).await;
        id
    }

    /// Sends presence of `type_` (empty for available) to `to`.
    pub async fn send_presence(&mut self, to: &str, type_: &str) {
        let mut presence = build("presence", NS_CLIENT).build();
        set(&mut presence, "to", to);
        if !type_.is_empty() {
            set(&mut presence, "type", type_);
        }
        self.send(presence).await;
    }

    /// Waits up to `timeout` for a stanza matching `matches`; others are kept for later.
    pub async fn try_expect(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Element) -> bool,
    ) -> Option<Element> {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stanza = tokio::time::timeout_at(deadline, self.read())
                .await
                .ok()??;
            if matches(&stanza) {
                return Some(stanza);
            }
            self.pending.push_back(stanza);
        }
    }

    /// Like [`Self::try_expect`], but a missing stanza fails the test with `what`.
    pub async fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Element) -> bool,
    ) -> Element {
        match self.try_expect(timeout, matches).await {
            Some(stanza) => stanza,
            None => panic!(
                "{}: no {what} within {timeout:?}; kept: {:#?}",
                self.jid,
                self.pending.iter().map(String::from).collect::<Vec<_>>()
            ),
        }
    }

    /// The next stanza from the server (not from the kept ones), or `None` when the stream ends.
    pub async fn read(&mut self) -> Option<Element> {
        loop {
            match self.stream.next().await? {
                Ok(stanza) => {
                    if self.auto_ack && is_jingle_set(&stanza) {
                        self.ack(&stanza).await;
                    }
                    if self.auto_ack && is_disco_info_get(&stanza) {
                        self.answer_disco_info(&stanza).await;
                    }
                    return Some(stanza);
                }
                Err(ReadError::SoftTimeout) | Err(ReadError::ParseError(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The stanzas kept so far, taken.
    pub fn take_kept(&mut self) -> Vec<Element> {
        self.pending.drain(..).collect()
    }

    /// Acknowledges an IQ set with an empty result.
    pub async fn ack(&mut self, iq: &Element) {
        let mut result = build("iq", NS_CLIENT).build();
        set(&mut result, "type", "result");
        set(&mut result, "id", iq.attr("id").unwrap_or_default());
        set(&mut result, "to", iq.attr("from").unwrap_or_default());
        self.send(result).await;
    }

    /// Answers a disco#info query as a Jingle audio client does.
    async fn answer_disco_info(&mut self, iq: &Element) {
        let mut query = build("query", NS_DISCO_INFO).build();
        let mut identity = build("identity", NS_DISCO_INFO).build();
        set(&mut identity, "category", "client");
        set(&mut identity, "type", "pc");
        query.append_child(identity);
        for feature in CLIENT_FEATURES {
            let mut element = build("feature", NS_DISCO_INFO).build();
            set(&mut element, "var", feature);
            query.append_child(element);
        }
        let mut result = build("iq", NS_CLIENT).append(query).build();
        set(&mut result, "type", "result");
        set(&mut result, "id", iq.attr("id").unwrap_or_default());
        set(&mut result, "to", iq.attr("from").unwrap_or_default());
        self.send(result).await;
    }

    /// Closes the stream.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }
}

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// What the test client says it supports: a Jingle audio client with ICE, DTLS and JMI.
const CLIENT_FEATURES: [&str; 7] = [
    NS_DISCO_INFO,
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle-message:0",
];

/// Whether `stanza` is a disco#info query.
fn is_disco_info_get(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("get")
        && stanza.has_child("query", NS_DISCO_INFO)
}

/// Whether `stanza` is an IQ set carrying Jingle.
pub fn is_jingle_set(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("set")
        && stanza.has_child("jingle", NS_JINGLE)
}

async fn open(port: u16) -> Stream {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect c2s");
    let pending = initiate_stream(
        BufStream::new(tcp),
        NS_CLIENT,
        StreamHeader {
            to: Some(Cow::Borrowed("localhost")),
            from: None,
            id: None,
        },
        Timeouts::tight(),
    )
    .await
    .expect("stream header");
    let (_features, stream) = pending
        .recv_features::<Element>()
        .await
        .expect("stream features");
    stream
}

async fn restart(stream: Stream) -> Stream {
    let pending = stream
        .initiate_reset()
        .send_header(StreamHeader {
            to: Some(Cow::Borrowed("localhost")),
            from: None,
            id: None,
        })
        .await
        .expect("stream restart");
    let (_features, stream) = pending
        .recv_features::<Element>()
        .await
        .expect("features after auth");
    stream
}

async fn next_element(stream: &mut Stream) -> Element {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(element))) => return element,
            Ok(Some(Err(ReadError::SoftTimeout))) => continue,
            other => panic!("stream ended during login: {other:?}"),
        }
    }
}
