//! What an operator relies on: metrics and the health check, JSON logs, config reload on
//! SIGHUP, the Docker image's entry command, and several instances behind ejabberd.

use std::time::Duration;

use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{
    free_port, gateway_config, wait_attached, within, Gateway, GatewayProcess, TempDir,
};

/// GET `url`; returns status and body.
async fn get(url: &str) -> (u16, String) {
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
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
