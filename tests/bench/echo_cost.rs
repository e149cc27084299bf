//! What concurrent echo calls cost the gateway: process RSS and CPU with 1, 10 and 100 calls
//! (or the counts given as arguments), through a real Prosody, with real ICE, DTLS-SRTP and RTP
//! callers in this process. Prints a table; asserts nothing about speed.
//!
//!     cargo bench --bench echo_cost [-- 1 10 100]

#[path = "../support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::caller::{CallSetup, Exchange, TestCaller};
use support::servers::{stop_process, Kind, Server};
use support::{wait_attached, TempDir};

/// How long calls run before and while the gateway is measured.
const WARM_UP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(8);

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 10, 100]
    } else {
        counts
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(counts));
}

/// (user+system CPU seconds, RSS KiB) of `pid`.
fn sample(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / 100.0, rss)
}

async fn run(counts: Vec<usize>) {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("bench");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
        .env("GATEWAY_XMPP_HOST", "127.0.0.1")
        .env("GATEWAY_XMPP_PORT", server.component_port.to_string())
        .env("GATEWAY_STORAGE_DATA_DIR", data.path())
        .env("GATEWAY_MEDIA_PORT", "0")
        .env("GATEWAY_MEDIA_BIND_ADDRESS", "127.0.0.1")
        .env("GATEWAY_MEDIA_LOCAL_ADDRESS", "127.0.0.1")
        .env("GATEWAY_MEDIA_ALLOW_LOOPBACK_CANDIDATES", "true")
        .env("GATEWAY_CALLS_MAX_CALLS_PER_JID", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gateway");
    let pid = gateway.id();
    let mut probe = TestCaller::new(server.c2s_port, "probe").await;
    wait_attached(&mut probe.client).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, idle_rss) = sample(pid);
    println!("gateway idle RSS: {idle_rss} KiB; calls run {WARM_UP:?} before {MEASURE:?} of measurement\n");
    println!("| calls | gateway RSS KiB | RSS per call KiB | gateway CPU % | CPU µs per packet | packets/s to gateway | echoed back |");
    println!("|------:|----------------:|-----------------:|--------------:|------------------:|---------------------:|------------:|");
    for n in counts {
        let mut callers = Vec::new();
        for i in 0..n {
            callers.push(TestCaller::new(server.c2s_port, &format!("load{i}")).await);
        }
        let hold = WARM_UP + MEASURE + Duration::from_secs(1);
        let runs: Vec<_> = callers
            .into_iter()
            .map(|mut caller| {
                tokio::spawn(async move {
                    let mut call = caller
                        .call("echo@gw.localhost", &CallSetup::browser())
                        .await
                        .expect("call");
                    let plan = Exchange {
                        duration: hold,
                        tone_hz: 440.0,
                        light: true,
                        ..Exchange::default()
                    };
                    let received = caller.exchange(&mut call, &plan).await;
                    caller.hang_up(call).await;
                    caller.close().await;
                    received.packets
                })
            })
            .collect();
        tokio::time::sleep(WARM_UP).await;
        let (cpu0, _) = sample(pid);
        let t0 = Instant::now();
        tokio::time::sleep(MEASURE).await;
        let (cpu1, rss) = sample(pid);
        let wall = t0.elapsed().as_secs_f64();
        let mut echoed = 0u64;
        for run in runs {
            echoed += run.await.expect("caller");
        }
        let cpu = (cpu1 - cpu0) / wall;
        let packets_per_second = n as f64 * 50.0;
        let expected_back = n as f64 * 50.0 * hold.as_secs_f64();
        println!(
            "| {n:5} | {rss:15} | {:16.0} | {:13.1} | {:17.1} | {:20.0} | {:10.1} % |",
            (rss.saturating_sub(idle_rss)) as f64 / n as f64,
            cpu * 100.0,
            cpu * 1e6 / (2.0 * packets_per_second),
            packets_per_second,
            100.0 * echoed as f64 / expected_back,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    probe.close().await;
    stop_process(&mut gateway, Duration::from_secs(5));
}
