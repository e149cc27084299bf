//! The XEP-0114 component link: connects, authenticates, keeps the stream alive and reconnects.
//!
//! Built from tokio-xmpp's public stream pieces rather than its `Component`, which ends on the
//! first stanza it cannot parse and loses the cause: here an unparseable stanza is reported (so
//! an IQ can be answered with `bad-request`) and the stream goes on; a quiet stream is pinged; only
//! a lost connection or a stream error ends it. Stream errors at login (wrong secret, unknown
//! domain, another instance holding the domain) are logged once and retried slowly.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jid::Jid;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;

use super::backoff::Backoff;

/// How to reach the server's component listener.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Component domain.
    pub domain: String,
    /// Shared secret.
    pub secret: String,
    /// First reconnection delay.
    pub reconnect_min: Duration,
    /// Longest reconnection delay.
    pub reconnect_max: Duration,
    /// Silence after which the server is pinged.
    pub keepalive: Duration,
}

/// A stanza that could not be parsed, with what could be read of its header.
#[derive(Debug, Clone)]
pub struct InvalidStanza {
    /// `iq`, `message` or `presence`.
    pub kind: String,
    /// `from` attribute.
    pub from: Option<String>,
    /// `to` attribute.
    pub to: Option<String>,
    /// `type` attribute.
    pub type_: Option<String>,
    /// `id` attribute.
    pub id: Option<String>,
    /// Why it could not be parsed.
    pub error: String,
}

/// What the link reports to the gateway.
#[derive(Debug)]
pub enum LinkEvent {
    /// Authenticated: the domain is ours (again).
    Connected,
    /// The stream was lost; reconnecting.
    Disconnected,
    /// A stanza from the server.
    Stanza(Box<Stanza>),
    /// A stanza that could not be parsed.
    Invalid(InvalidStanza),
}

/// Why a connection attempt or an established stream ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server refused the component with a stream error.
    #[error("the server refused the component: <{condition}/>{text}")]
    Refused { condition: String, text: String },
    #[error("the server closed the stream")]
    Closed,
}

impl LinkError {
    /// A problem the operator must fix (wrong secret, domain not configured, another instance
    /// connected, host name unknown): retrying fast would not help.
    fn needs_operator(&self) -> bool {
        match self {
            Self::Resolve { .. } => true,
            Self::Refused { condition, .. } => matches!(
                condition.as_str(),
                "not-authorized"
                    | "host-unknown"
                    | "conflict"
                    | "improper-addressing"
                    | "invalid-namespace"
            ),
            _ => false,
        }
    }

    fn advice(&self) -> &'static str {
        match self {
            Self::Resolve { .. } => "check xmpp.host",
            Self::Refused { condition, .. } => match condition.as_str() {
                "not-authorized" => "check xmpp.secret against the server's component secret",
                "host-unknown" => "the server has no component for xmpp.domain: check its config",
                "conflict" => "another gateway instance is connected with this domain",
                _ => "check the server's component configuration",
            },
            _ => "",
        }
    }
}

type Stream = XmppStream<BufStream<TcpStream>>;

/// Runs the link until `shutdown` is cancelled or `outbound` is closed, reconnecting as needed.
/// Stanzas queued while disconnected are dropped.
pub async fn run_link(
    config: LinkConfig,
    events: mpsc::Sender<LinkEvent>,
    mut outbound: mpsc::Receiver<Stanza>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let mut last_operator_error: Option<String> = None;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = connect(&config) => attempt,
        };
        let delay = match attempt {
            Ok(stream) => {
                tracing::info!(host = %config.host, port = config.port, domain = %config.domain, "component connected");
                last_operator_error = None;
                backoff.reset();
                if events.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
                match serve(stream, &config, &events, &mut outbound, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "component stream lost");
                        if events.send(LinkEvent::Disconnected).await.is_err() {
                            return;
                        }
                        if e.needs_operator() {
                            tracing::error!(error = %e, "{}", e.advice());
                            backoff.max_delay()
                        } else {
                            backoff.next_delay()
                        }
                    }
                }
            }
            Err(e) if e.needs_operator() => {
                let message = e.to_string();
                if last_operator_error.as_deref() != Some(&message) {
                    tracing::error!(
                        error = %message,
                        "cannot attach to the XMPP server ({}); retrying every {:?}",
                        e.advice(),
                        backoff.max_delay()
                    );
                    last_operator_error = Some(message);
                }
                backoff.max_delay()
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot attach to the XMPP server");
                delay
            }
        };
        // Wait, dropping what is sent meanwhile: the calls it belonged to are being torn down.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown.cancelled() => return,
                stanza = outbound.recv() => match stanza {
                    Some(_) => tracing::debug!("dropping a stanza: the component is not connected"),
                    None => return,
                },
            }
        }
    }
}

/// Opens the stream and authenticates.
async fn connect(config: &LinkConfig) -> Result<Stream, LinkError> {
    let addrs: Vec<_> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(|source| LinkError::Resolve {
            host: config.host.clone(),
            source,
        })?
        .collect();
    let mut last_error = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| LinkError::Connect {
        addr: format!("{}:{}", config.host, config.port),
        source: last_error.unwrap_or_else(|| io::Error::other("no address")),
    })?;
    tcp.set_nodelay(true)?;
    let timeouts = Timeouts {
        read_timeout: config.keepalive,
        response_timeout: Duration::from_secs(30),
    };
    let mut pending = initiate_stream(
        BufStream::new(tcp),
        ns::COMPONENT,
        StreamHeader {
            to: Some(Cow::Borrowed(config.domain.as_str())),
            from: None,
            id: None,
        },
        timeouts,
    )
    .await?;
    let stream_id = pending
        .take_header()
        .id
        .map(|id| id.into_owned())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "the server sent no stream id")
        })?;
    let mut stream: Stream = pending.skip_features();
    stream
        .send(&XmppStreamElement::ComponentHandshake(
            Handshake::from_stream_id_and_password(stream_id, &config.secret),
        ))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok(stream)
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(refused(e.0))
            }
            Some(Ok(other)) => {
                tracing::debug!(element = ?other, "unexpected element during the handshake");
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::ParseError(e))) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e).into())
            }
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::StreamFooterReceived)) | None => return Err(LinkError::Closed),
        }
    }
}

fn refused(error: tokio_xmpp::parsers::stream_error::StreamError) -> LinkError {
    let text = error
        .texts
        .values()
        .next()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let condition = error.condition.to_string();
    LinkError::Refused { condition, text }
}

/// Moves stanzas both ways until the stream ends (`Err`) or the gateway shuts down (`Ok`).
async fn serve(
    mut stream: Stream,
    config: &LinkConfig,
    events: &mpsc::Sender<LinkEvent>,
    outbound: &mut mpsc::Receiver<Stanza>,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    let mut pings = 0u64;
    loop {
        tokio::select! {
            // Outbound first: on shutdown the last session-terminates are already queued.
            biased;
            stanza = outbound.recv() => match stanza {
                Some(stanza) => stream.send(&XmppStreamElement::Stanza(stanza)).await?,
                None => {
                    close(&mut stream).await;
                    return Ok(());
                }
            },
            _ = shutdown.cancelled() => {
                close(&mut stream).await;
                return Ok(());
            }
            item = stream.next() => {
                let event = match item {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)))) => {
                        LinkEvent::Stanza(Box::new(stanza))
                    }
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                        return Err(refused(e.0));
                    }
                    Some(Ok(FallibleStreamElement::Ok(other))) => {
                        tracing::debug!(element = ?other, "ignoring a stream-level element");
                        continue;
                    }
                    Some(Ok(FallibleStreamElement::Err(StreamElementError::InvalidStanza { name, header, error, .. }))) => {
                        LinkEvent::Invalid(InvalidStanza {
                            kind: name.to_string(),
                            from: header.from,
                            to: header.to,
                            type_: header.type_,
                            id: header.id,
                            error: error.to_string(),
                        })
                    }
                    Some(Ok(FallibleStreamElement::Err(e))) => {
                        tracing::debug!(error = %e, "ignoring an invalid stream-level element");
                        continue;
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Any answer, even an error, proves the link is alive.
                        pings += 1;
                        stream.send(&XmppStreamElement::Stanza(keepalive_ping(config, pings))).await?;
                        continue;
                    }
                    Some(Err(ReadError::ParseError(e))) => {
                        tracing::warn!(error = %e, "skipping unparseable XML on the component stream");
                        continue;
                    }
                    Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                    Some(Err(ReadError::StreamFooterReceived)) | None => return Err(LinkError::Closed),
                };
                if events.send(event).await.is_err() {
                    close(&mut stream).await;
                    return Ok(());
                }
            }
        }
    }
}

/// An XEP-0199 ping to the server's domain (the component domain's parent).
fn keepalive_ping(config: &LinkConfig, n: u64) -> Stanza {
    let server = config
        .domain
        .split_once('.')
        .map(|(_, parent)| parent)
        .filter(|p| !p.is_empty())
        .unwrap_or(config.domain.as_str());
    let mut iq = Iq::from_get(format!("keepalive-{n}"), Ping);
    if let (Ok(from), Ok(to)) = (Jid::new(&config.domain), Jid::new(server)) {
        iq = iq.with_from(from).with_to(to);
    }
    Stanza::Iq(iq)
}

async fn close(stream: &mut Stream) {
    let closing = async {
        let _ = stream.shutdown().await;
        // Wait briefly for the server's footer so the close is clean.
        while let Some(item) = stream.next().await {
            if matches!(
                item,
                Err(ReadError::StreamFooterReceived) | Err(ReadError::HardError(_))
            ) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}
