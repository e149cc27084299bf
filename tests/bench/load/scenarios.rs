//! The scenarios the benchmark runs, the gateway it runs them on, and one concurrency level:
//! ramp, measure a window, hang up, measure the floor at the same packet rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::Jid;

use crate::floor;
use crate::generator::Generator;
use crate::support::servers::Server;
use crate::support::{GatewayProcess, TempDir};
use crate::Options;

/// Pass criteria of a level.
const MAX_LOSS: f64 = 0.005;
const MAX_INTERVAL_P99: Duration = Duration::from_millis(5);

/// A workload for the gateway.
pub struct Scenario {
    /// Its name in `--scenarios` and the report.
    pub name: &'static str,
    /// The virtual JID's local part called.
    pub callee: &'static str,
    /// Concurrency levels tried, in order, until one fails.
    pub levels: &'static [usize],
    /// The gateway sends audio back (so loss and intervals are measured on what it sends).
    pub gateway_sends: bool,
    /// What it exercises, for the report.
    pub what: &'static str,
    /// Datagrams a second a stranger sprays at the media port meanwhile (0: none).
    pub flood: u32,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo",
        callee: "bench-echo",
        levels: &[50, 100, 250, 500, 750],
        gateway_sends: true,
        what: "Opus in, the same packets back",
        flood: 0,
    },
    Scenario {
        name: "echo-under-flood",
        callee: "bench-echo",
        levels: &[100, 250],
        gateway_sends: true,
        what: "echo while a stranger sprays the media port (junk, STUN checks, RTP) at 20,000 datagrams/s",
        flood: 20_000,
    },
    Scenario {
        name: "voicemail-opus",
        callee: "bench-vm-opus",
        levels: &[100, 250, 500, 1000, 1500],
        gateway_sends: false,
        what: "Opus recorded to Ogg without decoding",
        flood: 0,
    },
    Scenario {
        name: "voicemail-wav",
        callee: "bench-vm-wav",
        levels: &[100, 250, 500, 1000],
        gateway_sends: false,
        what: "Opus decoded and recorded to WAV",
        flood: 0,
    },
    Scenario {
        name: "ivr",
        callee: "bench-ivr",
        levels: &[50, 100, 250, 500, 750],
        gateway_sends: true,
        what: "a prompt file from the cache, in a loop",
        flood: 0,
    },
    Scenario {
        name: "live-encode",
        callee: "bench-bridge",
        levels: &[25, 50, 100, 200],
        gateway_sends: true,
        what: "bridge: Opus caller, PCMU callee (2 legs per call, Opus encoded live)",
        flood: 0,
    },
];

/// The endpoints the scenarios call, appended to the example config.
pub const ENDPOINTS: &str = r#"
[endpoints.bench-echo]
kind = "echo"

[endpoints.bench-vm-opus]
kind = "voicemail"
owners = ["owner@localhost"]
greeting = "silence:20ms"
beep = false
format = "ogg-opus"
max_length = "10m"
max_messages = 1000000
dtmf = { rfc4733 = true, inband = false, chat = false }

[endpoints.bench-vm-wav]
kind = "voicemail"
owners = ["owner@localhost"]
greeting = "silence:20ms"
beep = false
format = "wav"
max_length = "10m"
max_messages = 1000000
dtmf = { rfc4733 = true, inband = false, chat = false }

[endpoints.bench-ivr]
kind = "ivr"
dtmf = { rfc4733 = true, inband = false, chat = false }
[endpoints.bench-ivr.menus.main]
greeting = "welcome.opus"
timeout = "200ms"
max_timeouts = 100000

[endpoints.bench-bridge]
kind = "ivr"
dtmf = { rfc4733 = true, inband = false, chat = false }
[endpoints.bench-bridge.menus.main]
greeting = "silence:20ms"
timeout = "100ms"
max_timeouts = 1
on_failure = { action = "connect", targets = ["answer@load.localhost/desk"], ring_timeout = "20s" }
"#;

/// Gateway settings for load: big limits, quiet logs, its own HTTP server for recordings.
pub const GATEWAY_ENV: &[(&str, &str)] = &[
    ("GATEWAY_CALLS_MAX_CALLS", "5000"),
    ("GATEWAY_CALLS_MAX_CALLS_PER_JID", "5000"),
    // The generator's domain counts as the server's own: no per-domain limits or rates.
    ("GATEWAY_CALLS_LOCAL_DOMAINS", "localhost,load.localhost"),
    ("GATEWAY_VOICEMAIL_UPLOAD", "off"),
    ("GATEWAY_OUTBOUND_ALLOW", "load.localhost"),
    ("GATEWAY_OUTBOUND_MAX_CALLS", "5000"),
    ("GATEWAY_OUTBOUND_CALLS_PER_MINUTE", "1000000"),
    ("GATEWAY_OUTBOUND_CALLS_PER_TARGET_PER_MINUTE", "1000000"),
    ("RUST_LOG", "warn,jingle_gateway=info"),
];

/// (user+system CPU seconds, RSS KiB) of process `pid` ("self" for this one).
pub fn process_sample(pid: &str) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / 100.0, rss)
}

/// The gateway's RTP packet counters (received, sent), from its /metrics.
pub async fn gateway_packets(metrics: &str) -> GatewayCounters {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(metrics).await else {
        return GatewayCounters::default();
    };
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    let counter = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    GatewayCounters {
        received: counter("jingle_gateway_rtp_packets_received_total"),
        sent: counter("jingle_gateway_rtp_packets_sent_total"),
        unanswered_dropped: counter("jingle_gateway_unanswered_datagrams_dropped"),
    }
}

/// The gateway's counters the benchmark reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayCounters {
    /// RTP packets received.
    pub received: u64,
    /// RTP packets sent.
    pub sent: u64,
    /// Datagrams the media guard dropped (to or from addresses that never answered).
    pub unanswered_dropped: u64,
}

/// What a stranger's flood did during a level: datagrams a second sent, and dropped by the
/// gateway's guard.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    pub sent_per_second: f64,
    pub dropped_per_second: f64,
}

/// What one concurrency level measured.
pub struct Level {
    pub calls: usize,
    pub failed: u64,
    /// Generator → gateway, from the gateway's counters.
    pub loss_in: f64,
    /// Gateway → generator, from sequence numbers.
    pub loss_out: f64,
    pub late: u64,
    pub timestamp_errors: u64,
    pub jitter_ms: Option<f64>,
    /// |interval − 20 ms| p99 of what the gateway sent, when it sends.
    pub gateway_p99: Option<Duration>,
    /// The same for the generator's own sends.
    pub generator_p99: Option<Duration>,
    pub gateway_cpu: f64,
    pub gateway_packets_per_second: f64,
    pub gateway_us_per_packet: f64,
    pub floor_us_per_packet: f64,
    pub rss_per_call_kib: f64,
    pub generator_cpu: f64,
    pub passed: bool,
    pub errors: Vec<String>,
    /// The stranger's flood, in scenarios with one.
    pub flood: Option<FloodReport>,
}

/// How the benchmark reaches one gateway.
pub struct Target {
    pub pid: String,
    pub metrics: String,
    pub idle_rss: u64,
    /// The shared media port.
    pub media_port: u16,
}

pub fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// Ramps `n` calls of `scenario`, measures a window, hangs up, measures the floor at the rate
/// the gateway handled.
pub async fn run_level(
    generator: &Generator,
    scenario: &Scenario,
    n: usize,
    options: &Options,
    target: &Target,
    packet_size: usize,
) -> Level {
    let to: Jid = format!("{}@gw.localhost", scenario.callee)
        .parse()
        .expect("callee JID");
    let mut load = generator.load();
    load.ramp(
        &to,
        n,
        options.rate,
        None,
        &format!("{} x {n}", scenario.name),
    )
    .await;
    // The last calls connect (and bridged calls reach their callee).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let flood_sent = Arc::new(AtomicU64::new(0));
    let flood = (scenario.flood > 0).then(|| {
        tokio::spawn(stranger(
            target.media_port,
            scenario.flood,
            flood_sent.clone(),
        ))
    });
    let collector = load.run.collector.clone();
    let (gateway_cpu0, _) = process_sample(&target.pid);
    let (self_cpu0, _) = process_sample("self");
    let before = gateway_packets(&target.metrics).await;
    let flood_sent0 = flood_sent.load(Ordering::Relaxed);
    collector.set_measuring(true);
    let started = Instant::now();
    tokio::time::sleep(options.window).await;
    collector.set_measuring(false);
    let wall = started.elapsed().as_secs_f64();
    let (gateway_cpu1, rss) = process_sample(&target.pid);
    let (self_cpu1, _) = process_sample("self");
    let after = gateway_packets(&target.metrics).await;
    let flood_report = flood.map(|flood| {
        flood.abort();
        FloodReport {
            sent_per_second: (flood_sent.load(Ordering::Relaxed) - flood_sent0) as f64 / wall,
            dropped_per_second: after
                .unanswered_dropped
                .saturating_sub(before.unanswered_dropped) as f64
                / wall,
        }
    });
    let (rx0, tx0, rx1, tx1) = (before.received, before.sent, after.received, after.sent);
    let run = load.finish().await;

    let (received, sent) = (rx1.saturating_sub(rx0), tx1.saturating_sub(tx0));
    let handled = (received + sent).max(1);
    let gateway_cpu = (gateway_cpu1 - gateway_cpu0) / wall;
    // The floor moves as many packets a second as the gateway handled (each floor packet is
    // handled twice: sent and received).
    let streams = ((handled as f64 / wall) / 100.0).ceil().max(1.0) as usize;
    let floor = floor::measure(streams, packet_size, Duration::from_secs(3)).expect("floor");
    let generated = collector.sent.load(Ordering::Relaxed).max(1);
    let loss_in = (1.0 - received as f64 / generated as f64).max(0.0);
    let loss_out = collector.loss();
    let gateway_p99 = scenario
        .gateway_sends
        .then(|| collector.received_intervals.lock().ok()?.percentile(0.99))
        .flatten();
    let generator_p99 = collector
        .sent_intervals
        .lock()
        .ok()
        .and_then(|h| h.percentile(0.99));
    let jitter_streams = collector.jitter_streams.load(Ordering::Relaxed);
    let failed = run.failed.load(Ordering::Relaxed);
    let interval_ok = if scenario.gateway_sends {
        gateway_p99.is_some_and(|p| p < MAX_INTERVAL_P99)
    } else {
        generator_p99.is_some_and(|p| p < MAX_INTERVAL_P99)
    };
    Level {
        calls: n,
        failed,
        loss_in,
        loss_out,
        late: collector.late.load(Ordering::Relaxed),
        timestamp_errors: collector.timestamp_errors.load(Ordering::Relaxed),
        jitter_ms: (jitter_streams > 0).then(|| {
            collector.jitter_us.load(Ordering::Relaxed) as f64 / jitter_streams as f64 / 1000.0
        }),
        gateway_p99,
        generator_p99,
        gateway_cpu,
        gateway_packets_per_second: handled as f64 / wall,
        gateway_us_per_packet: (gateway_cpu1 - gateway_cpu0) * 1e6 / handled as f64,
        floor_us_per_packet: floor.cpu_per_packet.as_secs_f64() * 1e6,
        rss_per_call_kib: rss.saturating_sub(target.idle_rss) as f64 / n as f64,
        generator_cpu: (self_cpu1 - self_cpu0) / wall,
        passed: failed == 0 && loss_in < MAX_LOSS && loss_out < MAX_LOSS && interval_ok,
        errors: run.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        flood: flood_report,
    }
}

/// A stranger who never signalled sprays `port` with `per_second` datagrams a second from 8
/// sockets: junk, STUN binding requests with made-up usernames, and RTP-looking packets.
async fn stranger(port: u16, per_second: u32, sent: Arc<AtomicU64>) {
    let mut sockets = Vec::new();
    for _ in 0..8 {
        match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
            Ok(socket) => sockets.push(socket),
            Err(_) => return,
        }
    }
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xA4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
    stun.extend_from_slice(b"abcd:efg");
    let mut rtp = vec![0x80, 0x6f, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[0x55; 120]);
    let junk = vec![0x42u8; 90];
    let kinds = [stun, rtp, junk];
    // Bursts every 10 ms.
    let burst = (per_second / 100).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0usize;
    loop {
        tick.tick().await;
        for _ in 0..burst {
            let datagram = &kinds[n % kinds.len()];
            let socket = &sockets[n % sockets.len()];
            if socket
                .try_send_to(datagram, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n = n.wrapping_add(1);
        }
    }
}

pub const LEVEL_HEADER: &str = "| calls | up | loss in % | loss out % | late | ts errors | jitter ms | gw interval p99 ms | gen interval p99 ms | gw CPU % | gw packets/s | gw µs/packet | floor µs/packet | ratio | RSS/call KiB | gen CPU % | pass |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|";

pub fn level_row(l: &Level) -> String {
    format!(
        "| {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.2} | {:.1} | {:.0} | {:.0} | {} |",
        l.calls,
        l.calls as u64 - l.failed.min(l.calls as u64),
        l.loss_in * 100.0,
        l.loss_out * 100.0,
        l.late,
        l.timestamp_errors,
        l.jitter_ms.map_or("-".into(), |j| format!("{j:.2}")),
        ms(l.gateway_p99),
        ms(l.generator_p99),
        l.gateway_cpu * 100.0,
        l.gateway_packets_per_second,
        l.gateway_us_per_packet,
        l.floor_us_per_packet,
        l.gateway_us_per_packet / l.floor_us_per_packet.max(0.001),
        l.rss_per_call_kib,
        l.generator_cpu * 100.0,
        if l.passed { "yes" } else { "no" },
    )
}

/// Starts a release gateway with the bench endpoints; returns it and how to read it.
pub async fn start_gateway(server: &Server, data: &TempDir) -> (GatewayProcess, Target) {
    let gateway = GatewayProcess::start(server, data, ENDPOINTS, GATEWAY_ENV, None);
    assert!(
        gateway
            .wait_log("component connected", 1, Duration::from_secs(20))
            .await,
        "the gateway did not start:\n{}",
        gateway.log()
    );
    let log = gateway.log();
    // /metrics is served alone, or beside the recordings when both share an address.
    let metrics = log
        .lines()
        .find(|l| l.contains("serving /metrics") || l.contains("metrics=true"))
        .and_then(|l| l.split("url=http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("metrics address in the log")
        .to_string();
    let media_port = log
        .lines()
        .find(|l| l.contains("media ready"))
        .and_then(|l| l.split("port=Some(").nth(1))
        .and_then(|rest| rest.split(')').next()?.parse().ok())
        .expect("media port in the log");
    let pid = gateway.pid().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, idle_rss) = process_sample(&pid);
    (
        gateway,
        Target {
            pid,
            metrics,
            idle_rss,
            media_port,
        },
    )
}
