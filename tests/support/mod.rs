//! Test support: private XMPP servers, a c2s client, a test caller with real media, the gateway
//! run in-process or as a process, and test signals. Nothing here needs `../shared`.

#![allow(dead_code)] // Each test binary uses a different part of the support code.

pub mod adhoc;
pub mod audio;
pub mod callee;
pub mod caller;
pub mod client;
pub mod raw;
pub mod relay;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jingle_gateway::config::{Config, EXAMPLE_CONFIG};
use jingle_gateway::media::stats::MediaStats;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use servers::Server;

/// A free TCP port on loopback (released before use; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `prefix`.
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("jg-{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bounds a test's time.
pub async fn within<F: std::future::Future>(seconds: u64, test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(seconds), test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {seconds}s"))
}

/// The example config, pointed at `server`, with loopback media and a private data directory;
/// `extra` are `GATEWAY_*` overrides.
pub fn gateway_config(server: &Server, data: &TempDir, extra: &[(&str, &str)]) -> Config {
    gateway_config_with(server, data, "", extra)
}

/// [`gateway_config`] with `tables` (TOML, e.g. more `[endpoints.x]`) appended to the example.
pub fn gateway_config_with(
    server: &Server,
    data: &TempDir,
    tables: &str,
    extra: &[(&str, &str)],
) -> Config {
    let env = test_env(server, data, extra);
    let text = format!("{EXAMPLE_CONFIG}\n{tables}");
    match Config::from_toml_str(&text, env, &jingle_gateway::endpoint::KINDS) {
        Ok(config) => config,
        Err(errors) => panic!("test config is not valid:\n{errors}"),
    }
}

/// The `GATEWAY_*` overrides that point the example config at `server`, with loopback media,
/// a private data directory and a free HTTP port, then `extra`.
pub fn test_env(server: &Server, data: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("GATEWAY_XMPP_HOST".into(), "127.0.0.1".into()),
        (
            "GATEWAY_XMPP_PORT".into(),
            server.component_port.to_string(),
        ),
        (
            "GATEWAY_STORAGE_DATA_DIR".into(),
            data.path().display().to_string(),
        ),
        ("GATEWAY_MEDIA_PORT".into(), "0".into()),
        ("GATEWAY_MEDIA_BIND_ADDRESS".into(), "127.0.0.1".into()),
        ("GATEWAY_MEDIA_LOCAL_ADDRESS".into(), "127.0.0.1".into()),
        (
            "GATEWAY_MEDIA_ALLOW_LOOPBACK_CANDIDATES".into(),
            "true".into(),
        ),
        ("GATEWAY_HTTP_BIND".into(), "127.0.0.1:0".into()),
        ("GATEWAY_METRICS_BIND".into(), "127.0.0.1:0".into()),
        (
            "GATEWAY_PROMPTS_DIRECTORY".into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/prompts").into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The gateway binary running as its own process (for tests that kill it, or give it its own
/// mounts).
pub struct GatewayProcess {
    child: std::process::Child,
    /// Where its log goes.
    pub log: PathBuf,
    /// Its config file.
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Starts the binary with the example config plus `tables`, written to a file in `data`,
    /// and the test overrides plus `extra`. `tmpfs` mounts a tmpfs of that size (e.g. "24k") on
    /// the given directory in a mount namespace of the process's own (`unshare`), so a full
    /// disk can be had without root and without leaving a mount behind.
    pub fn start(
        server: &Server,
        data: &TempDir,
        tables: &str,
        extra: &[(&str, &str)],
        tmpfs: Option<(&Path, &str)>,
    ) -> GatewayProcess {
        let config = data.path().join("gateway.toml");
        std::fs::write(&config, format!("{EXAMPLE_CONFIG}\n{tables}")).expect("write config");
        let log = data.path().join(format!("gateway-{}.log", free_port()));
        let binary = env!("CARGO_BIN_EXE_jingle-gateway");
        let mut command = match tmpfs {
            None => std::process::Command::new(binary),
            Some((directory, size)) => {
                std::fs::create_dir_all(directory).expect("mount point");
                let mut c = std::process::Command::new("unshare");
                c.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg("mount -t tmpfs -o size=\"$1\" tmpfs \"$2\" && shift 2 && exec \"$@\"")
                    .arg("sh")
                    .arg(size)
                    .arg(directory)
                    .arg(binary);
                c
            }
        };
        command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,jingle_gateway=debug");
        // Set after the default, so `extra` may set RUST_LOG.
        for (key, value) in test_env(server, data, extra) {
            command.env(key, value);
        }
        let output = std::fs::File::create(&log).expect("log file");
        let child = command
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(output.try_clone().expect("log"))
            .stderr(output)
            .spawn()
            .expect("start the gateway");
        GatewayProcess { child, log, config }
    }

    /// Rewrites its config file: the example config plus `tables`.
    pub fn rewrite_config(&self, tables: &str) {
        std::fs::write(&self.config, format!("{EXAMPLE_CONFIG}\n{tables}")).expect("write config");
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits up to `timeout` until its log has `count` lines containing `text`.
    pub async fn wait_log(&self, text: &str, count: usize, timeout: Duration) -> bool {
        eventually(timeout, || self.log().matches(text).count() >= count).await
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        servers::stop_process(&mut self.child, Duration::from_secs(5));
    }
}

/// The gateway running in this process.
pub struct Gateway {
    /// Its media counters.
    pub stats: Arc<MediaStats>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Starts the gateway with `config` and waits until `probe` sees it attached.
    pub fn start(config: Config) -> Gateway {
        let stats = Arc::new(MediaStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (stats, stop) = (stats.clone(), stop.clone());
            async move {
                jingle_gateway::run(config, stop, stats)
                    .await
                    .expect("gateway runs");
            }
        });
        Gateway {
            stats,
            stop,
            task: Some(task),
        }
    }

    /// Stops it the way SIGTERM does and waits until it has.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until the gateway answers disco#info on its domain.
pub async fn wait_attached(client: &mut client::XmppClient) {
    for _ in 0..200 {
        let query =
            minidom::Element::builder("query", "http://jabber.org/protocol/disco#info").build();
        let answer = client.iq(servers::COMPONENT, "get", query).await;
        if answer.attr("type") == Some("result") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never attached");
}

/// Waits until `condition` holds (checked every 20 ms), up to `timeout`.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
