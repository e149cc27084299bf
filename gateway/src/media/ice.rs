//! ICE with webrtc-ice: agent settings, the remote candidate policy, and conversion between
//! Jingle candidates and the agent's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::{Candidate as IceCandidate, CandidateType as IceType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::state::ConnectionState;
use webrtc_ice::udp_mux::UDPMuxDefault;
use webrtc_ice::udp_network::UDPNetwork;
use webrtc_ice::url::Url;

use super::candidate_policy::CandidatePolicy;
use super::guard::Guard;
use super::port_range::PortRange;
use crate::protocol::ice_udp::{Candidate, CandidateType};

/// Connectivity checks while connecting: RFC 8445's Ta.
const CHECK_PACING: Duration = Duration::from_millis(50);

/// Something the agent reported.
#[derive(Debug)]
pub enum AgentEvent {
    /// A local candidate; `None` when gathering is complete.
    Candidate(Option<Candidate>),
    /// The connection state changed.
    State(ConnectionState),
    /// The agent now uses a new pair: its candidates' types and addresses, local first.
    Selected(String),
}

/// Where the agents' sockets come from.
#[derive(Clone)]
pub enum Sockets {
    /// One UDP port shared by all calls: its mux, and its socket (for our own STUN requests).
    Shared {
        /// What the agents are given.
        mux: Arc<UDPMuxDefault>,
        /// The socket under it.
        socket: Arc<tokio::net::UdpSocket>,
    },
    /// A port per call from this range.
    Range(Arc<PortRange>),
}

/// What every call's agent is made from.
#[derive(Clone)]
pub struct IceSettings {
    /// Where sockets come from.
    pub sockets: Sockets,
    /// What every socket, shared or per call, is read and written through.
    pub guard: Arc<Guard>,
    /// The one local address offered as host candidate.
    pub local_address: IpAddr,
    /// Public address of a 1:1 NAT, offered instead.
    pub public_address: Option<IpAddr>,
    /// TURN servers.
    pub urls: Vec<Url>,
    /// STUN servers (`host:port`), asked for each call's server-reflexive candidate.
    pub stun_servers: Vec<String>,
    /// Silence after which the peer is considered gone.
    pub consent_timeout: Duration,
    /// Which remote candidates are used.
    pub policy: CandidatePolicy,
}

/// An agent for one call on `mux` (controlling when we place the call), with its events
/// forwarded to `events` (the handlers hold no reference to the agent, so closing it frees it).
pub async fn new_agent(
    settings: &IceSettings,
    mux: Arc<UDPMuxDefault>,
    controlling: bool,
    events: mpsc::UnboundedSender<AgentEvent>,
) -> Result<Arc<Agent>, webrtc_ice::Error> {
    let local = settings.local_address;
    let network_type = if local.is_ipv6() {
        NetworkType::Udp6
    } else {
        NetworkType::Udp4
    };
    let udp_network = UDPNetwork::Muxed(mux);
    let disconnected = Duration::from_secs(5);
    let config = AgentConfig {
        urls: settings.urls.clone(),
        udp_network,
        network_types: vec![network_type],
        multicast_dns_mode: MulticastDnsMode::Disabled,
        include_loopback: local.is_loopback(),
        // Exactly one host candidate: several on one shared socket confuse the agent.
        ip_filter: Arc::new(Some(Box::new(move |ip: IpAddr| ip == local))),
        nat_1to1_ips: settings
            .public_address
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default(),
        nat_1to1_ip_candidate_type: IceType::Host,
        disconnected_timeout: Some(disconnected),
        failed_timeout: Some(settings.consent_timeout.saturating_sub(disconnected)),
        is_controlling: controlling,
        // Checks paced at RFC 8445's Ta (50 ms) while connecting, as libwebrtc paces them; the
        // crate's default of 200 ms made a call we place take up to a second to connect. Once
        // connected the agent ticks at its own 200 ms whatever this says.
        check_interval: CHECK_PACING,
        ..AgentConfig::default()
    };
    let agent = Arc::new(Agent::new(config).await?);
    let tx = events;
    let candidates = tx.clone();
    agent.on_candidate(Box::new(move |candidate| {
        let _ = candidates.send(AgentEvent::Candidate(
            candidate.and_then(|c| to_jingle(&*c)),
        ));
        Box::pin(async {})
    }));
    let selected = tx.clone();
    agent.on_selected_candidate_pair_change(Box::new(move |local, remote| {
        let pair = format!(
            "{} {} - {} {}",
            local.candidate_type(),
            local.addr(),
            remote.candidate_type(),
            remote.addr()
        );
        let _ = selected.send(AgentEvent::Selected(pair));
        Box::pin(async {})
    }));
    agent.on_connection_state_change(Box::new(move |state| {
        let _ = tx.send(AgentEvent::State(state));
        Box::pin(async {})
    }));
    Ok(agent)
}

/// A Jingle candidate for one of the agent's local candidates.
fn to_jingle(candidate: &(dyn IceCandidate + Send + Sync)) -> Option<Candidate> {
    let candidate_type = match candidate.candidate_type() {
        IceType::Host => CandidateType::Host,
        IceType::ServerReflexive => CandidateType::ServerReflexive,
        IceType::PeerReflexive => CandidateType::PeerReflexive,
        IceType::Relay => CandidateType::Relay,
        IceType::Unspecified => return None,
    };
    let related = candidate.related_address();
    Some(Candidate {
        component: u8::try_from(candidate.component()).unwrap_or(1),
        foundation: candidate.foundation(),
        generation: 0,
        id: Some(candidate.id()),
        ip: candidate.address().parse().ok()?,
        port: candidate.port(),
        priority: candidate.priority(),
        protocol: "udp".into(),
        candidate_type,
        rel_addr: related.as_ref().and_then(|r| r.address.parse().ok()),
        rel_port: related.map(|r| r.port),
        network: Some(0),
    })
}

/// The agent's form of a remote Jingle candidate.
pub fn to_agent(
    candidate: &Candidate,
) -> Result<Arc<dyn IceCandidate + Send + Sync>, webrtc_ice::Error> {
    let related = match (candidate.rel_addr, candidate.rel_port) {
        (Some(addr), Some(port)) => format!(" raddr {addr} rport {port}"),
        _ => String::new(),
    };
    // Foundations come from the peer: keep them to one token.
    let foundation: String = candidate
        .foundation
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .take(32)
        .collect();
    let foundation = if foundation.is_empty() {
        "0".into()
    } else {
        foundation
    };
    let line = format!(
        "{foundation} {} udp {} {} {} typ {}{related}",
        candidate.component,
        candidate.priority,
        candidate.ip,
        candidate.port,
        candidate.candidate_type.as_str()
    );
    Ok(Arc::new(unmarshal_candidate(&line)?))
}

/// A STUN server URL (`host:port`).
pub fn stun_url(server: &str) -> Result<Url, webrtc_ice::Error> {
    Url::parse_url(&format!("stun:{server}"))
}

/// A TURN server URL with its credentials.
pub fn turn_url(url: &str, username: &str, password: &str) -> Result<Url, webrtc_ice::Error> {
    let mut parsed = Url::parse_url(url)?;
    parsed.username = username.to_string();
    parsed.password = password.to_string();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(ip: &str, port: u16) -> Candidate {
        Candidate {
            component: 1,
            foundation: "1 2".into(),
            generation: 0,
            id: None,
            ip: ip.parse().unwrap(),
            port,
            priority: 2122260223,
            protocol: "udp".into(),
            candidate_type: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            network: None,
        }
    }

    #[test]
    fn remote_candidates_convert_for_the_agent() {
        let mut srflx = candidate("203.0.113.5", 40000);
        srflx.candidate_type = CandidateType::ServerReflexive;
        srflx.rel_addr = Some("10.0.0.2".parse().unwrap());
        srflx.rel_port = Some(5000);
        let agent = to_agent(&srflx).unwrap();
        assert_eq!(agent.address(), "203.0.113.5");
        assert_eq!(agent.port(), 40000);
        assert_eq!(agent.candidate_type(), IceType::ServerReflexive);
        assert_eq!(agent.related_address().unwrap().port, 5000);
        assert_eq!(agent.priority(), 2122260223);
    }
}
