//! The component stream over TCP: the [`StanzaReader`] on the read side, serialised elements on
//! the write side, each write bounded by a timeout so a server that stops reading is noticed.

use std::io;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;

use super::{FramingError, ReadLimits, StanzaReader, StreamItem};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server sent bytes that are not an XML stream.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A write did not complete in time: the server stopped reading.
    #[error("the server has not read what the gateway wrote for {0:?}")]
    WriteTimeout(Duration),
    /// The server closed the connection without closing the stream.
    #[error("the server closed the connection")]
    Eof,
}

/// An open component stream.
#[derive(Debug)]
pub struct Connection {
    tcp: TcpStream,
    reader: StanzaReader,
    chunk: Box<[u8]>,
    out: Vec<u8>,
    write_timeout: Duration,
}

impl Connection {
    /// Opens the stream to `domain` on `tcp` and reads the server's header; returns the stream
    /// and its id.
    pub async fn open(
        tcp: TcpStream,
        domain: &str,
        limits: ReadLimits,
        write_timeout: Duration,
    ) -> Result<(Self, Option<String>), ConnectionError> {
        let mut connection = Self {
            tcp,
            reader: StanzaReader::new(limits),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            write_timeout,
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
            ns::COMPONENT,
            ns::STREAM,
            escape_attribute(domain)
        );
        connection.write_bytes(header.into_bytes()).await?;
        loop {
            match connection.next().await? {
                StreamItem::Header { id } => return Ok((connection, id)),
                StreamItem::Footer => return Err(ConnectionError::Eof),
                other => tracing::debug!(item = ?other, "before the stream header"),
            }
        }
    }

    /// The next item from the server. Cancel-safe: nothing read is lost if the future is
    /// dropped.
    pub async fn next(&mut self) -> Result<StreamItem, ConnectionError> {
        loop {
            if let Some(item) = self.reader.poll() {
                return Ok(item);
            }
            let n = self.tcp.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(ConnectionError::Eof);
            }
            self.reader.push(&self.chunk[..n])?;
        }
    }

    /// Writes a stanza.
    pub async fn send_stanza(&mut self, stanza: Stanza) -> Result<(), ConnectionError> {
        let element = match stanza {
            Stanza::Iq(iq) => Element::from(iq),
            Stanza::Message(message) => Element::from(message),
            Stanza::Presence(presence) => Element::from(presence),
        };
        self.send_element(&element).await
    }

    /// Writes a top-level element.
    pub async fn send_element(&mut self, element: &Element) -> Result<(), ConnectionError> {
        let mut bytes = std::mem::take(&mut self.out);
        bytes.clear();
        element
            .write_to(&mut bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.write_bytes(bytes).await
    }

    /// Closes the stream: the footer, then the server's footer (briefly awaited).
    pub async fn close(&mut self) {
        let closing = async {
            self.write_bytes(b"</stream:stream>".to_vec()).await?;
            loop {
                if matches!(self.next().await?, StreamItem::Footer) {
                    return Ok::<(), ConnectionError>(());
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
        let _ = self.tcp.shutdown().await;
    }

    async fn write_bytes(&mut self, bytes: Vec<u8>) -> Result<(), ConnectionError> {
        let written = tokio::time::timeout(self.write_timeout, self.tcp.write_all(&bytes)).await;
        self.out = bytes;
        match written {
            Ok(result) => Ok(result?),
            Err(_) => Err(ConnectionError::WriteTimeout(self.write_timeout)),
        }
    }
}

/// `value` escaped for an attribute in single quotes.
fn escape_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that sends its header and then neither reads nor answers.
    async fn deaf_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                xmlns:stream='http://etherx.jabber.org/streams' id='x' from='gw.localhost'>";
            tcp.write_all(header.as_bytes()).await.unwrap();
            // Holds the connection open without reading.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tcp);
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_write_the_server_does_not_read_times_out() {
        let (addr, server) = deaf_server().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let timeout = Duration::from_millis(300);
        let (mut connection, id) =
            Connection::open(tcp, "gw.localhost", ReadLimits::DEFAULT, timeout)
                .await
                .unwrap();
        assert_eq!(id.as_deref(), Some("x"));
        let big = Element::builder("message", ns::COMPONENT)
            .append("m".repeat(1 << 20))
            .build();
        let started = std::time::Instant::now();
        let mut result = Ok(());
        // The socket buffers take a few MiB; then the write blocks.
        for _ in 0..200 {
            result = connection.send_element(&big).await;
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(ConnectionError::WriteTimeout(t)) if t == timeout),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        server.abort();
    }
}
