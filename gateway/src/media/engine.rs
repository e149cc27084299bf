//! The media engine: what all calls share. The UDP port (or port range) and its guard, the
//! address offered to callers, STUN/TURN, the DTLS certificate, the candidate policy and the
//! counters.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use webrtc_ice::udp_mux::{UDPMuxDefault, UDPMuxParams};

use super::candidate_policy::CandidatePolicy;
use super::dtls::{CertificateError, LocalCertificate};
use super::guard::{Guard, GuardedSocket};
use super::ice::{stun_url, turn_url, IceSettings, Sockets};
use super::port_range::PortRange;
use super::stats::MediaStats;
use crate::config::{DtlsRoleConfig, MediaConfig};

/// Receive buffer asked for the shared media socket: a burst from many calls must not overflow
/// it (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 8 << 20;

/// Why the media engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaStartError {
    /// The port could not be bound.
    #[error("media.port: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No local address could be found.
    #[error("media.local_address: cannot find the address of the default route ({0}); set it")]
    LocalAddress(std::io::Error),
    /// A STUN or TURN server is unusable.
    #[error("{key}: {message}")]
    Server {
        /// The config key.
        key: String,
        /// Why.
        message: String,
    },
    /// The DTLS certificate.
    #[error("media.certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The port range.
    #[error("media.port_range: {0}")]
    PortRange(String),
}

/// What every call's media leg is made from.
pub struct MediaEngine {
    /// ICE settings.
    pub ice: IceSettings,
    /// The DTLS certificate.
    pub certificate: LocalCertificate,
    /// Take the DTLS client role when the caller lets us choose.
    pub prefer_dtls_active: bool,
    /// Remote candidates accepted per call.
    pub max_remote_candidates: usize,
    /// Time for ICE to connect.
    pub ice_timeout: Duration,
    /// Counters.
    pub stats: Arc<MediaStats>,
    mux: Option<Arc<UDPMuxDefault>>,
}

impl MediaEngine {
    /// Binds the media port and prepares the certificate.
    pub async fn start(
        config: &MediaConfig,
        stats: Arc<MediaStats>,
    ) -> Result<Self, MediaStartError> {
        let local_address = match config.local_address {
            Some(address) => address,
            None if !config.bind_address.is_unspecified() => config.bind_address,
            None => default_route_address(config.bind_address.is_ipv6())
                .map_err(MediaStartError::LocalAddress)?,
        };
        let guard = Guard::new(config.unanswered_checks_per_second, stats.clone());
        let (sockets, mux, port) = match &config.port_range {
            Some(range) => {
                let (low, high) =
                    crate::config::parse_port_range(range).map_err(MediaStartError::PortRange)?;
                let range = PortRange::new(config.bind_address, low, high);
                (Sockets::Range(Arc::new(range)), None, None)
            }
            None => {
                let addr = SocketAddr::new(config.bind_address, config.port);
                let socket =
                    bind_shared(addr).map_err(|source| MediaStartError::Bind { addr, source })?;
                let port = socket
                    .local_addr()
                    .map_err(|source| MediaStartError::Bind { addr, source })?
                    .port();
                let socket = Arc::new(socket);
                let guarded = GuardedSocket::new(socket.clone(), guard.clone());
                let mux = UDPMuxDefault::new(UDPMuxParams::new(guarded));
                let sockets = Sockets::Shared {
                    mux: mux.clone(),
                    socket,
                };
                (sockets, Some(mux), Some(port))
            }
        };
        for (i, server) in config.stun_servers.iter().enumerate() {
            stun_url(server).map_err(|e| MediaStartError::Server {
                key: format!("media.stun_servers[{i}]"),
                message: e.to_string(),
            })?;
        }
        let mut urls = Vec::new();
        for (i, turn) in config.turn_servers.iter().enumerate() {
            urls.push(
                turn_url(&turn.url, &turn.username, &turn.password).map_err(|e| {
                    MediaStartError::Server {
                        key: format!("media.turn_servers[{i}]"),
                        message: e.to_string(),
                    }
                })?,
            );
        }
        let certificate = LocalCertificate::load_or_generate(config.certificate.as_deref())?;
        tracing::info!(
            address = %local_address,
            public = ?config.public_address,
            port = ?port,
            range = ?config.port_range,
            fingerprint = %certificate.fingerprint_sha256,
            "media ready"
        );
        Ok(Self {
            ice: IceSettings {
                sockets,
                guard,
                local_address,
                public_address: config.public_address,
                urls,
                stun_servers: config.stun_servers.clone(),
                consent_timeout: config.consent_timeout.0,
                policy: CandidatePolicy {
                    allow_loopback: config.allow_loopback_candidates,
                    allow_private: config.allow_private_candidates,
                    ipv6: local_address.is_ipv6(),
                    min_port: config.min_candidate_port,
                    own: [
                        Some(local_address),
                        config.public_address,
                        Some(config.bind_address).filter(|a| !a.is_unspecified()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect(),
                },
            },
            certificate,
            prefer_dtls_active: config.dtls_role == DtlsRoleConfig::Active,
            max_remote_candidates: config.max_remote_candidates as usize,
            ice_timeout: config.ice_timeout.0,
            stats,
            mux,
        })
    }

    /// Closes the shared socket (after every call has ended).
    pub async fn close(&self) {
        if let Some(mux) = &self.mux {
            let _ = webrtc_ice::udp_mux::UDPMux::close(mux.as_ref()).await;
        }
    }
}

/// Binds the shared socket with a large receive buffer.
fn bind_shared(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the media socket's receive buffer");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(UdpSocket::from(socket))
}

/// The source address the kernel would use for the default route (no packet is sent).
fn default_route_address(ipv6: bool) -> std::io::Result<IpAddr> {
    // Documentation prefixes (RFC 5737, RFC 3849): routable-looking, never answered.
    let (bind, probe) = if ipv6 {
        (
            SocketAddr::from(([0u16; 8], 0)),
            SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 9)),
        )
    } else {
        (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::from(([192, 0, 2, 1], 9)),
        )
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(probe)?;
    Ok(socket.local_addr()?.ip())
}
