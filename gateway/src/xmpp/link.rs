//! The XEP-0114 component link: connects, authenticates, keeps the stream alive and reconnects.
//!
//! The stream is ours ([`super::stream`]): a stanza that cannot be read, however built, is
//! reported (so an IQ can be answered) and the stream goes on. The link is lost only when the
//! connection fails, the server ends the stream, a write blocks for `timeout` (the server stopped
//! reading), or a keepalive ping is unanswered for `timeout`. The reconnection back-off starts
//! again from `reconnect_min` only after a link stayed up for [`STABLE_AFTER`], so a stanza that
//! made the server drop the link cannot make the gateway reconnect in a tight loop. Stream errors
//! at login (wrong secret, unknown domain, another instance holding the domain) are logged once
//! and retried slowly.

use std::io;
use std::time::Duration;

use jid::Jid;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stream_error::StreamError;

use super::backoff::Backoff;
use super::outbox::OutboxReceiver;
use super::stream::{Connection, ConnectionError, InvalidStanza, ReadLimits, StreamItem};

/// A link that stayed up this long resets the reconnection back-off when it is lost.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

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
    /// How long a write may block, and a keepalive ping may go unanswered.
    pub timeout: Duration,
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
    /// A stanza that could not be used.
    Invalid(Box<InvalidStanza>),
}

/// Why a connection attempt or an established stream ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error(transparent)]
    Stream(#[from] ConnectionError),
    /// The server refused the component with a stream error.
    #[error("the server refused the component: <{condition}/>{text}")]
    Refused { condition: String, text: String },
    #[error("the server sent no stream id")]
    NoStreamId,
    #[error("the server closed the stream")]
    Closed,
    #[error("the server did not answer a keepalive ping within {0:?}")]
    Unanswered(Duration),
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Stream(ConnectionError::Io(e))
    }
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

/// Runs the link until `shutdown` is cancelled or every sender of `outbound` is gone,
/// reconnecting as needed. Stanzas queued while disconnected are dropped.
pub async fn run_link(
    config: LinkConfig,
    events: mpsc::Sender<LinkEvent>,
    mut outbound: OutboxReceiver,
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
            Ok(connection) => {
                tracing::info!(host = %config.host, port = config.port, domain = %config.domain, "component connected");
                last_operator_error = None;
                if events.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
                let connected = Instant::now();
                match serve(connection, &config, &events, &mut outbound, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        let up_for = connected.elapsed();
                        tracing::warn!(error = %e, up_for = ?up_for, "component stream lost");
                        if events.send(LinkEvent::Disconnected).await.is_err() {
                            return;
                        }
                        if up_for >= STABLE_AFTER {
                            backoff.reset();
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
async fn connect(config: &LinkConfig) -> Result<Connection, LinkError> {
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
        let attempt = tokio::time::timeout(config.timeout, TcpStream::connect(addr)).await;
        match attempt {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => last_error = Some(io::Error::from(io::ErrorKind::TimedOut)),
        }
    }
    let tcp = tcp.ok_or_else(|| LinkError::Connect {
        addr: format!("{}:{}", config.host, config.port),
        source: last_error.unwrap_or_else(|| io::Error::other("no address")),
    })?;
    tcp.set_nodelay(true)?;
    let login = async {
        let (mut connection, stream_id) =
            Connection::open(tcp, &config.domain, ReadLimits::DEFAULT, config.timeout).await?;
        let stream_id = stream_id.ok_or(LinkError::NoStreamId)?;
        let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
        connection
            .send_element(&minidom::Element::from(handshake))
            .await?;
        loop {
            match connection.next().await? {
                StreamItem::Handshake => return Ok(connection),
                StreamItem::Error(e) => return Err(refused(*e)),
                StreamItem::Footer => return Err(LinkError::Closed),
                other => tracing::debug!(item = ?other, "unexpected during the handshake"),
            }
        }
    };
    match tokio::time::timeout(config.timeout, login).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Unanswered(config.timeout)),
    }
}

fn refused(error: StreamError) -> LinkError {
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
    mut connection: Connection,
    config: &LinkConfig,
    events: &mpsc::Sender<LinkEvent>,
    outbound: &mut OutboxReceiver,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    let mut pings = 0u64;
    let mut last_read = Instant::now();
    // When a keepalive ping went out with nothing read since.
    let mut pinged: Option<Instant> = None;
    loop {
        let wake = match pinged {
            Some(at) => at + config.timeout,
            None => last_read + config.keepalive,
        };
        tokio::select! {
            // Outbound first: on shutdown the last session-terminates are already queued.
            biased;
            stanza = outbound.recv() => match stanza {
                Some(stanza) => connection.send_stanza(stanza).await?,
                None => {
                    connection.close().await;
                    return Ok(());
                }
            },
            _ = shutdown.cancelled() => {
                connection.close().await;
                return Ok(());
            }
            _ = tokio::time::sleep_until(wake) => {
                if pinged.is_some() {
                    return Err(LinkError::Unanswered(config.timeout));
                }
                // Any answer, even an error, proves the link is alive.
                pings += 1;
                connection.send_stanza(keepalive_ping(config, pings)).await?;
                pinged = Some(Instant::now());
            }
            item = connection.next() => {
                last_read = Instant::now();
                pinged = None;
                let event = match item? {
                    StreamItem::Stanza(stanza) => LinkEvent::Stanza(stanza),
                    StreamItem::Invalid(invalid) => LinkEvent::Invalid(invalid),
                    StreamItem::Error(e) => return Err(refused(*e)),
                    StreamItem::Footer => return Err(LinkError::Closed),
                    other => {
                        tracing::debug!(item = ?other, "ignoring a stream-level element");
                        continue;
                    }
                };
                if events.send(event).await.is_err() {
                    connection.close().await;
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
