//! Private Prosody and ejabberd servers on loopback, each in its own temporary directory with its
//! own ports, started for one test and stopped (by PID) when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TempDir};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Prosody 0.12.
    Prosody,
    /// ejabberd 23.
    Ejabberd,
}

/// The component domain the gateway attaches as.
pub const COMPONENT: &str = "gw.localhost";
/// Its secret.
pub const SECRET: &str = "secret";
/// The user domain.
pub const DOMAIN: &str = "localhost";
/// A second component domain, standing in for a remote server in the hostile-input tests: it
/// may send stanzas from any JID of its domain.
pub const REMOTE: &str = "remote.localhost";
/// Its secret.
pub const REMOTE_SECRET: &str = "remote-secret";

/// A running server.
pub struct Server {
    /// Which server.
    pub kind: Kind,
    /// Client-to-server port (no TLS, PLAIN allowed).
    pub c2s_port: u16,
    /// XEP-0114 component port.
    pub component_port: u16,
    /// The component port [`REMOTE`] attaches to (Prosody: the same one).
    pub remote_component_port: u16,
    /// HTTP port (WebSocket, uploads).
    pub http_port: u16,
    dir: TempDir,
    child: Option<Child>,
    dist_port: u16,
}

impl Server {
    /// Starts a server of `kind` and waits until its ports accept connections.
    pub fn start(kind: Kind) -> Server {
        Self::start_with(kind, "")
    }

    /// [`Server::start`] with `extra` appended to the main config file (top-level settings).
    pub fn start_with(kind: Kind, extra: &str) -> Server {
        let component_port = free_port();
        let mut server = Server {
            kind,
            c2s_port: free_port(),
            component_port,
            remote_component_port: match kind {
                Kind::Prosody => component_port,
                Kind::Ejabberd => free_port(),
            },
            http_port: free_port(),
            dir: TempDir::new(match kind {
                Kind::Prosody => "prosody",
                Kind::Ejabberd => "ejabberd",
            }),
            child: None,
            dist_port: free_port(),
        };
        server.write_config(extra);
        server.spawn();
        server
    }

    /// A documented snippet with its component port (5347) replaced by this server's.
    fn on_our_ports(&self, snippet: &str) -> String {
        let ours = snippet.replace("5347", &self.component_port.to_string());
        assert_ne!(ours, snippet, "the snippet has no component port 5347");
        ours
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write server config");
    }

    /// Where the server keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, extra: &str) {
        let dir = self.dir.path().display().to_string();
        let fill = |template: &str| {
            template
                .replace("{DATA_DIR}", &dir)
                .replace("{C2S_PORT}", &self.c2s_port.to_string())
                .replace("{COMPONENT_PORT}", &self.component_port.to_string())
                .replace(
                    "{REMOTE_COMPONENT_PORT}",
                    &self.remote_component_port.to_string(),
                )
                .replace("{HTTP_PORT}", &self.http_port.to_string())
        };
        match self.kind {
            Kind::Prosody => {
                std::fs::write(
                    self.dir.path().join("prosody.cfg.lua"),
                    fill(PROSODY_CONFIG) + extra,
                )
                .expect("write prosody config");
                // The snippets users paste, on this server's ports.
                let component = self.on_our_ports(PROSODY_COMPONENT);
                // The upload's URLs point at 127.0.0.1 (http_external_url): route that host.
                let upload = PROSODY_UPLOAD.replace(
                    "\"http_file_share\"\n",
                    "\"http_file_share\"\n    http_host = \"127.0.0.1\"\n",
                );
                assert_ne!(upload, PROSODY_UPLOAD, "the upload snippet changed shape");
                self.write("jingle-gateway.cfg.lua", &component);
                self.write("jingle-gateway-upload.cfg.lua", &upload);
            }
            Kind::Ejabberd => {
                std::fs::write(
                    self.dir.path().join("ejabberd.yml"),
                    fill(EJABBERD_CONFIG) + extra,
                )
                .expect("write ejabberd config");
                let component = self.on_our_ports(EJABBERD_COMPONENT);
                let put_url = format!("http://127.0.0.1:{}/upload", self.http_port);
                let upload = EJABBERD_UPLOAD.replace("https://@HOST@:5443/upload", &put_url);
                assert_ne!(upload, EJABBERD_UPLOAD, "the upload snippet changed shape");
                self.write("jingle-gateway.yml", &component);
                self.write("jingle-gateway-upload.yml", &upload);
                std::fs::write(
                    self.dir.path().join("inetrc"),
                    "{lookup,[file]}.\n{host,{127,0,0,1},[\"localhost\"]}.\n",
                )
                .expect("write inetrc");
                std::fs::create_dir_all(self.dir.path().join("upload")).expect("upload dir");
            }
        }
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("stdout.log")).expect("log file");
        let mut command = match self.kind {
            Kind::Prosody => {
                let mut c = Command::new("prosody");
                c.arg("-F").arg("--config").arg(dir.join("prosody.cfg.lua"));
                c
            }
            Kind::Ejabberd => {
                // `erl` directly (not ejabberdctl): the PID is the server itself and no epmd
                // daemon outlives it.
                let spool = dir.join(format!("spool-{}", self.dist_port));
                std::fs::create_dir_all(&spool).expect("spool dir");
                let mut c = Command::new("erl");
                c.current_dir(dir)
                    .env("ERL_LIBS", ejabberd_libs())
                    .env("EJABBERD_CONFIG_PATH", dir.join("ejabberd.yml"))
                    .env("EJABBERD_LOG_PATH", dir.join("ejabberd.log"))
                    .env("ERL_CRASH_DUMP_BYTES", "0")
                    .env("ERL_INETRC", dir.join("inetrc"))
                    .env("HOME", dir)
                    .args(["-sname", &format!("ej{}@localhost", self.dist_port)])
                    .args(["-setcookie", &format!("cookie{}", self.dist_port)])
                    .args([
                        "-start_epmd",
                        "false",
                        "-erl_epmd_port",
                        &self.dist_port.to_string(),
                    ])
                    .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
                    .args(["-noinput", "+K", "true"])
                    .args(["-mnesia", "dir", &format!("\"{}\"", spool.display())])
                    .args(["-s", "ejabberd"]);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {:?}: {e} (see .ci/run for the packages)",
                    self.kind
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [
            self.c2s_port,
            self.component_port,
            self.remote_component_port,
            self.http_port,
        ] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!(
                        "{:?} exited at start ({status}); logs in {}",
                        self.kind,
                        dir.display()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{:?} did not open port {port}",
                    self.kind
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops the server and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends the server a signal (`STOP` freezes it as a wedged server would be, `CONT` lets it
    /// go on).
    pub fn signal(&self, name: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_process(&mut child, Duration::from_secs(5));
        }
    }

    /// The server's log, for diagnostics.
    pub fn log(&self) -> String {
        let name = match self.kind {
            Kind::Prosody => "prosody.log",
            Kind::Ejabberd => "ejabberd.log",
        };
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops `child` by PID: SIGTERM, then SIGKILL after `grace`; always reaps it.
pub fn stop_process(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = child.id().to_string();
    // A process a test froze (SIGSTOP) must run again to hear SIGTERM.
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where Debian keeps ejabberd's Erlang applications.
fn ejabberd_libs() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-linux-gnu"))
                && std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("ejabberd-"))
        })
        .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu"))
}

/// Prosody for the tests: the component snippet is the one documented for users.
const PROSODY_CONFIG: &str = r#"
run_as_root = true
data_path = "{DATA_DIR}"
pidfile = "{DATA_DIR}/prosody.pid"
certificates = "{DATA_DIR}"
log = { { levels = { min = "info" }, to = "file", filename = "{DATA_DIR}/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { {C2S_PORT} }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
s2s_ports = {}
http_ports = { {HTTP_PORT} }
http_interfaces = { "127.0.0.1" }
https_ports = {}
http_external_url = "http://127.0.0.1:{HTTP_PORT}/"
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "register"; "carbons"; "websocket"; "http" }
modules_disabled = { "s2s"; "s2s_auth_certs"; "dialback"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
allow_registration = true
authentication = "internal_plain"
storage = "internal"

VirtualHost "localhost"

Include "{DATA_DIR}/jingle-gateway.cfg.lua"
Include "{DATA_DIR}/jingle-gateway-upload.cfg.lua"

Component "remote.localhost"
    component_secret = "remote-secret"
"#;

/// The snippets of `config/prosody` and `config/ejabberd`, as users paste them.
const PROSODY_COMPONENT: &str = include_str!("../../config/prosody/jingle-gateway.cfg.lua");
const PROSODY_UPLOAD: &str = include_str!("../../config/prosody/jingle-gateway-upload.cfg.lua");
const EJABBERD_COMPONENT: &str = include_str!("../../config/ejabberd/jingle-gateway.yml");
const EJABBERD_UPLOAD: &str = include_str!("../../config/ejabberd/jingle-gateway-upload.yml");

/// ejabberd for the tests.
const EJABBERD_CONFIG: &str = r#"
hosts:
  - localhost
loglevel: info
log_rotate_count: 0
fqdn: localhost
acme:
  auto: false
certfiles: []
s2s_access: none
registration_timeout: infinity
auth_method: internal
auth_password_format: plain
disable_sasl_mechanisms: ["digest-md5", "x-oauth2"]
include_config_file:
  - "{DATA_DIR}/jingle-gateway.yml"
  - "{DATA_DIR}/jingle-gateway-upload.yml"
listen:
  -
    port: {REMOTE_COMPONENT_PORT}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      remote.localhost:
        password: "remote-secret"
  -
    port: {C2S_PORT}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    starttls_required: false
    access: c2s
    backlog: 128
  -
    port: {HTTP_PORT}
    ip: "127.0.0.1"
    module: ejabberd_http
    tls: false
    backlog: 128
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
      /upload: mod_http_upload
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
      - ::1/128
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  trusted_network:
    allow: loopback
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: none
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_carboncopy: {}
  mod_register:
    access: register
    ip_access: trusted_network
"#;

/// A private coturn (STUN and TURN with static credentials) on loopback.
pub struct TurnServer {
    /// UDP port for STUN and TURN.
    pub port: u16,
    /// TURN user name.
    pub username: &'static str,
    /// TURN password.
    pub password: &'static str,
    child: Child,
    _dir: TempDir,
}

impl TurnServer {
    /// Starts coturn and waits until it listens.
    pub fn start() -> TurnServer {
        let dir = TempDir::new("turn");
        let port = free_udp_port();
        let relay_low = free_udp_port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relay_low}"))
            .arg(format!("--max-port={}", relay_low.saturating_add(40)))
            .args(["--lt-cred-mech", "--user=gw:turnpass", "--realm=test"])
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
                "--allow-loopback-peers",
                "--no-cli",
            ])
            .args(["--no-stdout-log", "--simple-log"])
            .arg(format!(
                "--log-file={}",
                dir.path().join("turn.log").display()
            ))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .arg(format!("--userdb={}", dir.path().join("turndb").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start turnserver (see tests/install-deps.sh)");
        let mut server = TurnServer {
            port,
            username: "gw",
            password: "turnpass",
            child,
            _dir: dir,
        };
        // Ready when a STUN binding request is answered.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let request = [
            0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut answer = [0u8; 512];
        loop {
            let _ = socket.send_to(&request, ("127.0.0.1", port));
            if socket.recv(&mut answer).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("turnserver exited at start ({status})");
            }
            assert!(Instant::now() < deadline, "turnserver did not answer STUN");
        }
        server
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        stop_process(&mut self.child, Duration::from_secs(3));
    }
}

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}
