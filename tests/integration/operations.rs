//! What an operator relies on: metrics and the health check, JSON logs, config reload on
//! SIGHUP, the Docker image's entry command, and several instances behind ejabberd.

use std::time::Duration;

use crate::support::audio::tones_heard;
use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{
    free_port, gateway_config, wait_attached, within, Gateway, GatewayProcess, TempDir,
};

/// GET `url`; returns status and body.
pub(crate) async fn get(url: &str) -> (u16, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        match agent.get(&url).call() {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().read_to_string().unwrap_or_default();
                (status, body)
            }
            Err(e) => (0, e.to_string()),
        }
    })
    .await
    .expect("get task")
}

/// The value of the metric line starting with `prefix`.
pub(crate) fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every `jingle_gateway_` metric the dashboard and the alert rules in `config/monitoring/`
/// name is one that `/metrics` (its text in `exported`) declares, so they work pasted.
fn monitoring_names_only_exported_metrics(exported: &str) {
    let mut declared = Vec::new();
    for line in exported.lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let samples: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            declared.extend(samples.iter().map(|suffix| format!("{name}{suffix}")));
        }
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring");
    let mut named = 0;
    for file in ["grafana-dashboard.json", "jingle-gateway.rules.yml"] {
        let text = std::fs::read_to_string(repo.join(file)).expect("monitoring file");
        for (start, _) in text.match_indices("jingle_gateway_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named += 1;
            assert!(
                declared.contains(&name),
                "{file} names {name}, which /metrics does not export"
            );
        }
    }
    assert!(named > 20, "the monitoring files name only {named} metrics");
}

/// Calls are counted and timed, the health check follows the component link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_calls_and_the_link() {
    within(90, async {
        let mut server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[
                ("GATEWAY_METRICS_BIND", &bind),
                ("GATEWAY_XMPP_RECONNECT_MAX", "1s"),
            ],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let base = format!("http://{bind}");
        assert_eq!(get(&format!("{base}/health")).await, (200, "ok\n".into()));

        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        alice.exchange(&mut call, &Exchange::tone(2, 440.0)).await;
        let (_, during) = get(&format!("{base}/metrics")).await;
        assert_eq!(
            metric(&during, "jingle_gateway_calls_active{endpoint=\"echo\"}"),
            Some(1.0),
            "{during}"
        );
        alice.hang_up(call).await;
        let refused = alice
            .call("nobody@gw.localhost", &CallSetup::browser())
            .await;
        assert!(refused.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;

        let (status, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        for (line, at_least) in [
            ("jingle_gateway_calls_active{endpoint=\"echo\"}", 0.0),
            (
                "jingle_gateway_calls_finished_total{endpoint=\"echo\",reason=\"peer_hung_up\"}",
                1.0,
            ),
            ("jingle_gateway_call_setup_seconds_count", 1.0),
            ("jingle_gateway_call_first_media_seconds_count", 1.0),
            ("jingle_gateway_call_jitter_seconds_count", 1.0),
            ("jingle_gateway_rtp_packets_received_total", 90.0),
            ("jingle_gateway_rtp_packets_sent_total", 90.0),
            ("jingle_gateway_rtp_bytes_received_total", 2000.0),
            ("jingle_gateway_component_connected", 1.0),
            ("jingle_gateway_component_connections_total", 1.0),
            ("jingle_gateway_media_legs_open", 0.0),
            ("jingle_gateway_prompt_cache_bytes", 0.0),
            ("jingle_gateway_voicemail_undelivered", 0.0),
            ("jingle_gateway_storage_free_bytes", 1.0),
            ("jingle_gateway_storage_size_bytes", 1.0),
        ] {
            let value = metric(&text, line).unwrap_or_else(|| panic!("{line} missing:\n{text}"));
            assert!(value >= at_least, "{line} = {value}:\n{text}");
        }
        assert_eq!(
            metric(&text, "jingle_gateway_calls_active{endpoint=\"echo\"}"),
            Some(0.0)
        );
        let setup = metric(&text, "jingle_gateway_call_setup_seconds_sum").unwrap_or(9.0);
        assert!(setup < 1.0, "setup took {setup} s");
        monitoring_names_only_exported_metrics(&text);

        // The link goes: unhealthy; it comes back: healthy, and the reconnect is counted.
        server.stop();
        let mut unhealthy = false;
        for _ in 0..50 {
            if get(&format!("{base}/health")).await.0 == 503 {
                unhealthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(unhealthy, "health stayed ok without the XMPP server");
        server.restart();
        let mut healthy = false;
        for _ in 0..100 {
            if get(&format!("{base}/health")).await.0 == 200 {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(healthy, "health did not recover after the reconnect");
        let (_, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(
            metric(&text, "jingle_gateway_component_connections_total"),
            Some(2.0)
        );
        gateway.stop().await;
    })
    .await;
}

/// `log.format = "json"`: every line is one JSON object; calls log one line at start and one
/// at end, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_a_line_per_call_start_and_end() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = GatewayProcess::start(
            &server,
            &data,
            "",
            &[
                ("GATEWAY_LOG_FORMAT", "json"),
                ("GATEWAY_LOG_LEVEL", "info"),
            ],
            None,
        );
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        alice.exchange(&mut call, &Exchange::tone(1, 440.0)).await;
        alice.hang_up(call).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        gateway_log_check(&gateway);
    })
    .await;
}

fn gateway_log_check(gateway: &GatewayProcess) {
    let log = gateway.log();
    let mut started = 0;
    let mut ended = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        match value["message"].as_str() {
            Some("call started") => started += 1,
            Some("call ended") => {
                ended.push(value["reason"].as_str().unwrap_or_default().to_string())
            }
            _ => {}
        }
    }
    assert_eq!(started, 1, "{log}");
    assert_eq!(ended.len(), 1, "{log}");
    assert!(ended[0].starts_with("peer_hung_up"), "{ended:?}");
}

/// What the final stage of `docker/Dockerfile` sets up, read from the file.
#[derive(Debug, Default)]
struct Image {
    /// (source in the build context, destination in the image).
    copies: Vec<(String, String)>,
    /// The binary copied from the build stage, by its destination.
    binary: Option<String>,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn read_dockerfile(text: &str) -> Image {
    // Continuation lines joined; only the last stage counts.
    let joined = text.replace("\\\n", " ");
    let last_stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a final stage");
    let mut image = Image::default();
    let json =
        |rest: &str| -> Vec<String> { serde_json::from_str(rest.trim()).expect("exec form") };
    for line in last_stage.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "COPY" if rest.starts_with("--from=") => {
                image.binary = rest.split_whitespace().last().map(str::to_string);
            }
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                image
                    .copies
                    .push((parts[0].to_string(), parts[1].to_string()));
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (key, value) = pair.split_once('=').expect("ENV key=value");
                    image.env.push((key.to_string(), value.to_string()));
                }
            }
            "ENTRYPOINT" => image.entrypoint = json(rest),
            "CMD" => image.cmd = json(rest),
            _ => {}
        }
    }
    image
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).expect("copy");
    }
}

/// The image's entry command, config path and environment, run outside Docker: the files are
/// laid out as its COPY lines say (under a temporary root), and the gateway attaches with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_image_command_runs_outside_docker() {
    within(60, async {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let image = read_dockerfile(
            &std::fs::read_to_string(repo.join("docker/Dockerfile")).expect("Dockerfile"),
        );
        let root = TempDir::new("image");
        let in_image = |path: &str| root.path().join(path.trim_start_matches('/'));
        for (source, destination) in &image.copies {
            copy_tree(&repo.join(source), &in_image(destination));
        }
        let binary = image.binary.as_deref().expect("the binary is copied in");
        assert_eq!(
            std::path::Path::new(binary)
                .file_name()
                .and_then(|n| n.to_str()),
            Some(image.entrypoint[0].as_str()),
            "ENTRYPOINT names the binary copied in"
        );
        assert!(binary.starts_with("/usr/local/bin/"), "on the image's PATH");
        let args: Vec<String> = image
            .entrypoint
            .iter()
            .skip(1)
            .chain(&image.cmd)
            .map(|a| {
                if a.starts_with('/') {
                    in_image(a).display().to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let config = args
            .iter()
            .find(|a| a.ends_with(".toml"))
            .expect("a config path");
        assert!(
            std::path::Path::new(config).is_file(),
            "CMD's config is copied in: {config}"
        );

        let server = Server::start(Kind::Prosody);
        let data_dir = image
            .env
            .iter()
            .find(|(k, _)| k == "GATEWAY_STORAGE_DATA_DIR")
            .map(|(_, v)| in_image(v))
            .expect("the image sets the data directory");
        std::fs::create_dir_all(&data_dir).expect("volume");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jingle-gateway"));
        command.args(&args);
        for (key, value) in &image.env {
            command.env(key, value);
        }
        // The image's defaults, but on this test's server and free ports.
        command
            .env("GATEWAY_STORAGE_DATA_DIR", &data_dir)
            .env("GATEWAY_XMPP_HOST", "127.0.0.1")
            .env("GATEWAY_XMPP_PORT", server.component_port.to_string())
            .env("GATEWAY_MEDIA_PORT", "0")
            .env("GATEWAY_HTTP_BIND", "127.0.0.1:0")
            .env("GATEWAY_METRICS_BIND", "127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = command.spawn().expect("start the image's command");
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        assert!(
            data_dir.join("voicemail/voicemail").is_dir(),
            "state goes to the volume"
        );
        crate::support::servers::stop_process(&mut child, Duration::from_secs(5));
        alice.close().await;
    })
    .await;
}

/// The systemd unit passes `systemd-analyze verify` (with the binary where ExecStart says).
#[test]
fn the_systemd_unit_verifies() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(repo.join("config/systemd/jingle-gateway.service"))
        .expect("unit file");
    assert!(unit
        .contains("ExecStart=/usr/bin/jingle-gateway --config /etc/jingle-gateway/gateway.toml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // What the service needs to work as its header says: notify with a watchdog, the secret
    // from a root-only file, the config directory, and netlink for listing interfaces.
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "EnvironmentFile=-/etc/jingle-gateway/secret.env",
        "ConfigurationDirectory=jingle-gateway",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} missing");
    }
    let families = unit
        .lines()
        .find_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"] {
        assert!(
            families.split(' ').any(|f| f == family),
            "{family} not allowed"
        );
    }
    let dir = TempDir::new("unit");
    let path = dir.path().join("jingle-gateway.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/bin/jingle-gateway",
            env!("CARGO_BIN_EXE_jingle-gateway"),
        ),
    )
    .expect("write unit");
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd, see tests/install-deps.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
}

/// The install steps in the unit file's header work as written, run in a temporary root (every
/// `/etc/` and `/usr/bin/` path moved under it, `systemctl` left out): the binary, the config,
/// the prompts, a root-only secret file and the unit land where the unit expects them, and the
/// installed config, with the secret as systemd's `EnvironmentFile=` passes it, passes
/// `check-config`.
#[test]
fn the_unit_files_install_steps_work_in_a_temporary_root() {
    use std::os::unix::fs::PermissionsExt;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(repo.join("config/systemd/jingle-gateway.service"))
        .expect("unit file");
    let dir = TempDir::new("install");
    let root = dir.path().display().to_string();
    // What any machine has already.
    for existing in ["usr/bin", "etc/systemd/system"] {
        std::fs::create_dir_all(dir.path().join(existing)).expect("root");
    }
    let steps: Vec<String> = unit
        .lines()
        .skip_while(|line| !line.ends_with("by hand:"))
        .skip(1)
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("#   "))
        .filter(|step| !step.starts_with('#') && !step.starts_with("systemctl"))
        .map(|step| {
            step.replace(
                "target/release/jingle-gateway",
                env!("CARGO_BIN_EXE_jingle-gateway"),
            )
            .replace(" /etc/", &format!(" {root}/etc/"))
            .replace(" /usr/bin/", &format!(" {root}/usr/bin/"))
        })
        .collect();
    assert!(steps.len() >= 5, "install steps not found: {steps:?}");
    for step in &steps {
        let status = std::process::Command::new("sh")
            .args(["-c", step])
            .current_dir(&repo)
            .status()
            .expect("sh");
        assert!(status.success(), "install step failed: {step}");
    }
    let installed = |path: &str| dir.path().join(path);
    assert!(installed("usr/bin/jingle-gateway").is_file());
    assert!(installed("etc/systemd/system/jingle-gateway.service").is_file());
    assert!(installed("etc/jingle-gateway/prompts/welcome.opus").is_file());
    let secret = installed("etc/jingle-gateway/secret.env");
    let mode = std::fs::metadata(&secret)
        .expect("secret.env")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "secret.env must be readable by root only"
    );
    let environment = std::fs::read_to_string(&secret).expect("secret.env");
    let (key, value) = environment
        .trim()
        .split_once('=')
        .expect("KEY=value in secret.env");
    let output = std::process::Command::new(installed("usr/bin/jingle-gateway"))
        .arg("check-config")
        .arg(installed("etc/jingle-gateway/gateway.toml"))
        .env(key, value)
        .output()
        .expect("check-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A notify socket in `data`, as systemd makes one, and the gateway started with it (and a
/// 400 ms watchdog) in its environment.
fn gateway_under_systemd(
    server: &Server,
    data: &TempDir,
) -> (tokio::net::UnixDatagram, GatewayProcess) {
    let socket_path = data.path().join("notify");
    let systemd = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    let socket = socket_path.to_str().expect("a path");
    let gateway = GatewayProcess::start(
        server,
        data,
        "",
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "400000")],
        None,
    );
    (systemd, gateway)
}

/// The next notification systemd hears (within 10 s).
async fn notification(systemd: &tokio::net::UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), systemd.recv(&mut buf))
        .await
        .expect("a notification within 10 s")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Under systemd (`Type=notify`): `READY=1` once the component is attached, `WATCHDOG=1` at
/// half the interval systemd asks for, `STOPPING=1` on SIGTERM; the notify socket is the one
/// `NOTIFY_SOCKET` names, as systemd sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-notify");
        let (systemd, gateway) = gateway_under_systemd(&server, &data);
        let mut heard: Vec<String> = Vec::new();
        let ready_and_fed = |heard: &[String]| {
            heard.iter().any(|n| n.starts_with("READY=1"))
                && heard.iter().filter(|n| *n == "WATCHDOG=1").count() >= 3
        };
        while !ready_and_fed(&heard) {
            heard.push(notification(&systemd).await);
        }
        let ready = heard
            .iter()
            .position(|n| n.starts_with("READY=1"))
            .expect("READY=1");
        // Ready only once attached: a client on the server finds the component.
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        eprintln!("heard {heard:?}; READY=1 was number {ready}");
        gateway.signal("TERM");
        let stopping = loop {
            let notification = notification(&systemd).await;
            if notification != "WATCHDOG=1" {
                break notification;
            }
        };
        assert_eq!(stopping, "STOPPING=1");
        alice.close().await;
    })
    .await;
}

/// Without the component attached, systemd hears no `READY=1` (the watchdog is fed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_no_ready_before_the_component_is_attached() {
    within(60, async {
        let mut server = Server::start(Kind::Prosody);
        server.stop();
        let data = TempDir::new("gw-notready");
        let (systemd, _gateway) = gateway_under_systemd(&server, &data);
        for _ in 0..5 {
            assert_eq!(
                notification(&systemd).await,
                "WATCHDOG=1",
                "only the watchdog before attaching"
            );
        }
    })
    .await;
}

/// A menu whose greeting is a tone, repeated after each short timeout.
fn menu(greeting_hz: u32, extra: &str) -> String {
    format!(
        "[endpoints.menu]\nkind = \"ivr\"\n[endpoints.menu.menus.main]\n\
         greeting = \"tone:{greeting_hz}:600ms\"\ntimeout = \"400ms\"\nmax_timeouts = 50\n{extra}"
    )
}

/// SIGHUP: a changed menu and a new virtual JID take effect for new calls while a call in
/// progress keeps its menu; a broken config is refused and the last good one kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_for_new_calls_only() {
    within(120, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = GatewayProcess::start(&server, &data, &menu(500, ""), &[], None);
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        let mut bob = TestCaller::new(server.c2s_port, "bob").await;
        wait_attached(&mut alice.client).await;
        let refused = bob.call("extra@gw.localhost", &CallSetup::only("PCMU")).await;
        assert_eq!(refused.err().as_deref(), Some("item-not-found"));

        let mut before = alice
            .call("menu@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("call before the reload");
        alice.exchange(&mut before, &Exchange::tone(1, 300.0)).await;

        gateway.rewrite_config(&menu(700, "[endpoints.extra]\nkind = \"echo\"\n"));
        gateway.signal("HUP");
        assert!(
            gateway.wait_log("config reloaded", 1, Duration::from_secs(10)).await,
            "{}",
            gateway.log()
        );
        let old_call = alice.exchange(&mut before, &Exchange::tone(2, 300.0)).await;
        assert_eq!(tones_heard(&old_call.pcm, &[500.0, 700.0]), [500.0], "the call in progress keeps its menu");
        alice.hang_up(before).await;

        let mut after = bob
            .call("menu@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("call after the reload");
        let new_call = bob.exchange(&mut after, &Exchange::tone(2, 300.0)).await;
        assert_eq!(tones_heard(&new_call.pcm, &[500.0, 700.0]), [700.0], "a new call gets the new menu");
        bob.hang_up(after).await;
        let mut echo = bob
            .call("extra@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("the new virtual JID answers");
        let echoed = bob.exchange(&mut echo, &Exchange::tone(2, 440.0)).await;
        assert_eq!(tones_heard(&echoed.pcm, &[440.0]), [440.0]);
        bob.hang_up(echo).await;

        // A broken config (a prompt that does not exist) is refused; the last good one stays.
        let broken = "[endpoints.menu]\nkind = \"ivr\"\n[endpoints.menu.menus.main]\ngreeting = \"missing.wav\"\n";
        gateway.rewrite_config(broken);
        gateway.signal("HUP");
        assert!(
            gateway.wait_log("config reload refused", 1, Duration::from_secs(10)).await,
            "{}",
            gateway.log()
        );
        assert!(gateway.log().contains("endpoints.menu.menus.main.greeting"), "the key is named");
        let mut kept = bob
            .call("menu@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("call after the refused reload");
        let kept_call = bob.exchange(&mut kept, &Exchange::tone(2, 300.0)).await;
        assert_eq!(tones_heard(&kept_call.pcm, &[500.0, 700.0]), [700.0]);
        bob.hang_up(kept).await;
        alice.close().await;
        bob.close().await;
    })
    .await;
}

/// Waits until `/health` on `port` says the component is connected.
async fn wait_healthy(port: u16) {
    for _ in 0..200 {
        if get(&format!("http://127.0.0.1:{port}/health")).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the instance on metrics port {port} never connected");
}

/// Two instances under one component domain behind ejabberd's `domain_balancing` (by the
/// sender's full JID): calls from several users, some rung with XEP-0353 first, each complete
/// on one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_calls_behind_ejabberd() {
    within(150, async {
        let balancing = include_str!("../../config/ejabberd/jingle-gateway-balancing.yml");
        let server = Server::start_with(Kind::Ejabberd, balancing);
        let mut instances = Vec::new();
        let mut data_dirs = Vec::new();
        for name in ["a", "b"] {
            let data = TempDir::new(&format!("gw-{name}"));
            let metrics = free_port();
            let bind = format!("127.0.0.1:{metrics}");
            let config = gateway_config(&server, &data, &[("GATEWAY_METRICS_BIND", &bind)]);
            instances.push((Gateway::start(config), metrics));
            data_dirs.push(data);
        }
        for (_, metrics) in &instances {
            wait_healthy(*metrics).await;
        }
        const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let mut calls = Vec::new();
        for (i, user) in USERS.iter().enumerate() {
            let port = server.c2s_port;
            calls.push(tokio::spawn(async move {
                let mut caller = TestCaller::new(port, user).await;
                let setup = CallSetup {
                    jmi: i % 2 == 0,
                    ..CallSetup::browser()
                };
                let mut call = caller
                    .call("echo@gw.localhost", &setup)
                    .await
                    .unwrap_or_else(|e| panic!("{user}: {e}"));
                let hz = 400.0 + 50.0 * i as f32;
                let received = caller.exchange(&mut call, &Exchange::tone(2, hz)).await;
                caller.hang_up(call).await;
                caller.close().await;
                (user, hz, received)
            }));
        }
        for call in calls {
            let (user, hz, received) = call.await.expect("call task");
            assert!(
                received.terminated.is_none(),
                "{user}: {:?}",
                received.terminated
            );
            crate::calls::assert_tone(&received, f64::from(hz), user);
        }
        let legs: Vec<u64> = instances
            .iter()
            .map(|(gateway, _)| {
                jingle_gateway::media::stats::MediaStats::get(&gateway.stats.legs_started)
            })
            .collect();
        eprintln!("MEASURE balancing: calls per instance {legs:?}");
        assert_eq!(
            legs.iter().sum::<u64>(),
            USERS.len() as u64,
            "each call had one media leg, on one instance: {legs:?}"
        );
        for (gateway, _) in instances {
            gateway.stop().await;
        }
    })
    .await;
}
