//! The configuration schema: one struct per section, every key documented, defaults where sensible.
//!
//! `config/gateway.example.toml` shows every key with its default; a test keeps the two in step.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::duration::ConfigDuration;

/// The whole gateway configuration, split per subsystem.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[xmpp]`: the component connection to the XMPP server.
    pub xmpp: XmppConfig,
    /// `[calls]`: limits and timers that apply to every call.
    pub calls: CallsConfig,
    /// `[media]`: the UDP port, addresses, ICE and DTLS of the media legs.
    pub media: MediaConfig,
    /// `[storage]`: where the gateway keeps state between runs.
    pub storage: StorageConfig,
    /// `[log]`: log verbosity and format.
    pub log: LogConfig,
    /// `[prompts]`: where prompt files are and how much of them is kept.
    pub prompts: PromptsConfig,
    /// `[voicemail]`: what all mailboxes share.
    pub voicemail: crate::config::VoicemailConfig,
    /// `[http]`: the gateway's own HTTP server (recordings).
    pub http: crate::config::HttpConfig,
    /// `[metrics]`: Prometheus metrics and the health check.
    pub metrics: crate::config::MetricsConfig,
    /// `[outbound]`: whom the gateway may ring, and how often.
    pub outbound: crate::config::OutboundConfig,
    /// `[admin]`: who may run the admin commands.
    pub admin: crate::config::AdminConfig,
    /// `[endpoints.<name>]`: the virtual JIDs `<name>@<xmpp.domain>` and what answers them.
    pub endpoints: BTreeMap<String, super::EndpointConfig>,
    /// Where the config came from (relative paths start from its directory).
    pub origin: ConfigOrigin,
    /// `GATEWAY_*` environment variables that name no config section, and were ignored.
    pub ignored_env: Vec<String>,
}

/// Where a config came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Text given directly (tests): relative paths start in the working directory.
    #[default]
    Text,
    /// A file: relative paths start in its directory.
    File(PathBuf),
    /// The example built into the binary: prompts are the built-in samples.
    Builtin,
}

impl ConfigOrigin {
    /// `path` resolved against the config's directory.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        match self {
            Self::File(file) => file
                .parent()
                .map(|dir| dir.join(path))
                .unwrap_or_else(|| path.to_path_buf()),
            Self::Text | Self::Builtin => path.to_path_buf(),
        }
    }
}

/// `[prompts]`: prompt files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptsConfig {
    /// Directory of the prompt files (relative to the config file's directory); prompts may not
    /// name files outside it.
    pub directory: PathBuf,
    /// Longest prompt accepted.
    pub max_length: ConfigDuration,
    /// Memory for prompts encoded in the codecs in use, in MiB (least recently used go first and
    /// are encoded again when needed).
    pub cache_mib: u32,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("prompts"),
            max_length: ConfigDuration::secs(600),
            cache_mib: 64,
        }
    }
}

/// `[xmpp]`: how the gateway attaches to the XMPP server as an XEP-0114 component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct XmppConfig {
    /// Host name or address of the server's component listener. The link is not encrypted:
    /// keep it on loopback or a private network.
    pub host: String,
    /// TCP port of the server's component listener (Prosody `component_ports`, ejabberd
    /// `ejabberd_service`).
    pub port: u16,
    /// The component domain the server routes to the gateway, e.g. `gw.example.org`.
    pub domain: Option<String>,
    /// The shared secret the server expects for this component domain.
    pub secret: Option<String>,
    /// Name shown to users in service discovery.
    pub name: String,
    /// First delay before reconnecting after the stream is lost; doubles up to `reconnect_max`.
    pub reconnect_min: ConfigDuration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: ConfigDuration,
    /// Silence on the stream after which the gateway pings the server to check the link.
    pub keepalive: ConfigDuration,
    /// A write to the server that blocks this long, or a keepalive ping unanswered this long,
    /// counts as a lost link (the server stopped reading); also bounds connecting and logging in.
    pub timeout: ConfigDuration,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 5347,
            domain: None,
            secret: None,
            name: "Jingle gateway".into(),
            reconnect_min: ConfigDuration::millis(500),
            reconnect_max: ConfigDuration::secs(30),
            keepalive: ConfigDuration::secs(60),
            timeout: ConfigDuration::secs(20),
        }
    }
}

/// `[calls]`: limits and timers for every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallsConfig {
    /// Calls in progress at once, over all virtual JIDs; more are refused with `resource-constraint`.
    pub max_calls: u32,
    /// Calls in progress at once to one virtual JID; more are refused with `<busy/>`.
    pub max_calls_per_jid: u32,
    /// Calls (and XEP-0353 proposals) at once from one user, so one user cannot take every
    /// slot; more are refused.
    pub max_calls_per_caller: u32,
    /// Calls (and proposals) at once from the users of one domain other than the local
    /// domains: a remote server can mint any number of users, so this keeps one domain from
    /// taking every slot of a virtual JID.
    pub max_calls_per_domain: u32,
    /// New calls and proposals a minute from one user (in a burst at most this many).
    pub calls_per_caller_per_minute: u32,
    /// New calls and proposals a minute from the users of one domain other than the local
    /// domains.
    pub calls_per_domain_per_minute: u32,
    /// Who may call the virtual JIDs that have no `callers` list of their own (sound devices
    /// default to `["@local"]`): `"*"` anyone, `"@local"` users of `local_domains`, a domain,
    /// a bare JID or a full JID.
    pub callers: Vec<String>,
    /// The domains of the XMPP server the gateway is attached to: `"@local"` in `callers`
    /// means their users, and the per-domain limits do not apply to them. Empty: the component
    /// domain's parent (`gw.example.org` -> `example.org`).
    pub local_domains: Vec<String>,
    /// How long a call rung with XEP-0353 `<propose/>` may take to send its `session-initiate`
    /// after the gateway's `<proceed/>`.
    pub ring_timeout: ConfigDuration,
    /// How long a call may take from `session-initiate` until the caller acknowledges the
    /// gateway's `session-accept`.
    pub answer_timeout: ConfigDuration,
    /// Longest call; a call that reaches it is ended with the Jingle reason `<expired/>`.
    pub max_duration: ConfigDuration,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            max_calls: 500,
            max_calls_per_jid: 100,
            max_calls_per_caller: 10,
            max_calls_per_domain: 20,
            calls_per_caller_per_minute: 10,
            calls_per_domain_per_minute: 60,
            callers: vec![crate::config::callers::ANYONE.to_string()],
            local_domains: Vec::new(),
            ring_timeout: ConfigDuration::secs(30),
            answer_timeout: ConfigDuration::secs(30),
            max_duration: ConfigDuration::secs(4 * 3600),
        }
    }
}

/// `[media]`: how calls' media reach the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// The UDP port every call shares (ICE tells calls apart); the one port to open in a
    /// firewall or container. 0 picks a free port (for tests). Ignored when `port_range` is set.
    pub port: u16,
    /// Per-call UDP ports from this range instead of one shared port, e.g. `"20000-20999"`;
    /// a call for which no port is free is refused with `<busy/>`.
    pub port_range: Option<String>,
    /// Address the media port is bound to.
    pub bind_address: IpAddr,
    /// The address offered to callers as host candidate. Unset: the address of the interface
    /// that holds the default route.
    pub local_address: Option<IpAddr>,
    /// Public address of a 1:1 NAT (a cloud VM's external IP), offered instead of
    /// `local_address`.
    pub public_address: Option<IpAddr>,
    /// STUN servers (`host:port`) asked for each call's server-reflexive candidate (the address
    /// a NAT in front of the gateway gives its port), tried in order.
    pub stun_servers: Vec<String>,
    /// TURN servers for relay candidates, each `{ url = "turn:host:3478", username, password }`.
    pub turn_servers: Vec<TurnServerConfig>,
    /// Accept callers' loopback candidates (127.0.0.0/8, ::1); for tests on one machine.
    pub allow_loopback_candidates: bool,
    /// Accept callers' private-network candidates (10/8, 172.16/12, 192.168/16, 100.64/10,
    /// fc00::/7): only when callers and the gateway share a private network.
    pub allow_private_candidates: bool,
    /// Callers' candidates on a lower port are refused (privileged services live there).
    pub min_candidate_port: u16,
    /// Packets a second, over all calls, that the media ports may send to addresses that have
    /// not answered yet (connectivity checks); each call also pays from what its signalling
    /// earned.
    pub unanswered_checks_per_second: u32,
    /// Remote candidates accepted per call over its whole life (ICE restarts included); more are
    /// ignored.
    pub max_remote_candidates: u32,
    /// A call whose ICE has not connected after this long ends with `<failed-transport/>`.
    pub ice_timeout: ConfigDuration,
    /// A call whose peer has answered none of the gateway's ICE checks (sent every 2 s) for this
    /// long ends with `<connectivity-error/>` (RFC 7675 consent: media alone does not keep the
    /// call); at least 10s.
    pub consent_timeout: ConfigDuration,
    /// DTLS role taken when the caller lets us choose: `active` (we send the ClientHello) or
    /// `passive`.
    pub dtls_role: DtlsRoleConfig,
    /// PEM file with the DTLS certificate and its private key (ECDSA P-256 or Ed25519).
    /// Unset: a new certificate is generated at every start.
    pub certificate: Option<PathBuf>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            port: 10000,
            port_range: None,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            local_address: None,
            public_address: None,
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            allow_loopback_candidates: false,
            allow_private_candidates: false,
            min_candidate_port: 1024,
            unanswered_checks_per_second: 2000,
            max_remote_candidates: 30,
            ice_timeout: ConfigDuration::secs(20),
            consent_timeout: ConfigDuration::secs(30),
            dtls_role: DtlsRoleConfig::Active,
            certificate: None,
        }
    }
}

/// A TURN server with static credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnServerConfig {
    /// `turn:host:port` (UDP).
    pub url: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `media.dtls_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRoleConfig {
    /// We send the ClientHello.
    Active,
    /// We wait for the caller's ClientHello.
    Passive,
}

/// `[storage]`: state kept between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// Directory for the gateway's state (presence subscribers, recordings); created if missing.
    /// A relative path is taken from the directory the gateway is started in.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

/// `[log]`: what the gateway logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Log filter in `tracing` syntax: `info`, `debug`, or per module such as
    /// `info,jingle_gateway::media=debug`. The media crates (webrtc_ice, webrtc_srtp, dtls, turn,
    /// stun), whose warnings any peer can cause, log only errors unless named here. The
    /// `RUST_LOG` environment variable wins when set.
    pub level: String,
    /// `text` (for people) or `json` (one JSON object per line, for log collectors).
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

/// The media crates whose warnings any peer can cause (a malformed STUN packet from anyone, a
/// pair that never answers): quiet unless `log.level` names them.
const PEER_DRIVEN_CRATES: &[&str] = &["webrtc_ice", "webrtc_srtp", "dtls", "turn", "stun"];

impl LogConfig {
    /// The filter to log with: `level`, and the media crates at `error` unless it names them.
    pub fn filter(&self) -> String {
        let mut filter = self.level.clone();
        for name in PEER_DRIVEN_CRATES {
            if !self.level.contains(name) {
                filter.push_str(&format!(",{name}=error"));
            }
        }
        filter
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The domains whose users count as local (see `calls.local_domains`).
    pub fn local_domains(&self) -> Vec<String> {
        crate::config::callers::local_domains(
            &self.calls.local_domains,
            self.xmpp.domain.as_deref(),
        )
    }

    /// Who may call the virtual JID `name` (anyone, for a name that is not configured).
    pub fn callers_of(&self, name: &str) -> crate::config::CallerList {
        self.endpoints
            .get(name)
            .and_then(|e| {
                crate::config::CallerList::parse(&e.callers_entries(&self.calls.callers)).ok()
            })
            .unwrap_or_else(crate::config::CallerList::anyone)
    }
}
