//! The load generator and the gateway benchmark.
//!
//! `cargo bench --bench load` starts a real Prosody with a second component (`load.localhost`)
//! for the generator, then for each scenario a release gateway, and places real calls (ICE,
//! DTLS-SRTP, paced RTP) at rising concurrency until a level fails (loss ≥ 0.5 % or a 20 ms
//! interval p99 ≥ 5 ms, or calls that do not come up). It prints, per level, the gateway's CPU per
//! packet against the floor (plain loopback UDP at the same packet size and rate, measured in
//! the same run), RSS per call, the generator's own CPU, and call setup times; then sustained
//! call setup rates. Asserts nothing about speed.
//!
//!     cargo bench --bench load                       # everything (about 10 minutes)
//!     cargo bench --bench load -- --scenarios echo,ivr --levels 50,100 --window 5
//!     cargo bench --bench load -- generate --server 127.0.0.1:5347 --secret S \
//!         --domain load.example.org --to echo@gw.example.org --calls 100 --rate 50 --hold 30
//!
//! `generate` runs the generator alone against a gateway already attached to a server on which
//! `--domain` is a component with secret `--secret`.

#[path = "../../support/mod.rs"]
mod support;

mod call;
mod floor;
mod measure;
mod signalling;
mod stack;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::Jid;
use jingle_gateway::config::MediaConfig;
use jingle_gateway::media::engine::MediaEngine;
use jingle_gateway::media::stats::MediaStats;
use tokio_util::sync::CancellationToken;

use call::Media;
use measure::Collector;
use signalling::Signalling;
use support::servers::{Kind, Server};
use support::{GatewayProcess, TempDir};

/// The generator's component on the test server.
const LOAD_DOMAIN: &str = "load.localhost";
const LOAD_SECRET: &str = "load-secret";

/// Pass criteria of a level.
const MAX_LOSS: f64 = 0.005;
const MAX_INTERVAL_P99: Duration = Duration::from_millis(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) == Some("generate") {
        runtime.block_on(generate(Options::parse(&args[1..])));
    } else {
        runtime.block_on(benchmark(Options::parse(&args)));
    }
}

/// Command-line options (both modes).
struct Options {
    scenarios: Option<Vec<String>>,
    levels: Option<Vec<usize>>,
    window: Duration,
    rate: f64,
    server: String,
    secret: String,
    domain: String,
    to: String,
    calls: usize,
    hold: Duration,
    skip_setup: bool,
}

impl Options {
    fn parse(args: &[String]) -> Self {
        let mut options = Options {
            scenarios: None,
            levels: None,
            window: Duration::from_secs(10),
            rate: 100.0,
            server: "127.0.0.1:5347".into(),
            secret: String::new(),
            domain: LOAD_DOMAIN.into(),
            to: String::new(),
            calls: 10,
            hold: Duration::from_secs(30),
            skip_setup: false,
        };
        let list = |v: &str| v.split(',').map(str::to_string).collect::<Vec<_>>();
        let mut args = args.iter().filter(|a| *a != "--bench");
        while let Some(flag) = args.next() {
            if flag == "--no-setup" {
                options.skip_setup = true;
                continue;
            }
            let Some(value) = args.next() else { break };
            match flag.as_str() {
                "--scenarios" => options.scenarios = Some(list(value)),
                "--levels" => {
                    options.levels =
                        Some(list(value).iter().filter_map(|v| v.parse().ok()).collect())
                }
                "--window" => options.window = Duration::from_secs(value.parse().unwrap_or(10)),
                "--rate" => options.rate = value.parse().unwrap_or(100.0),
                "--server" => options.server = value.clone(),
                "--secret" => options.secret = value.clone(),
                "--domain" => options.domain = value.clone(),
                "--to" => options.to = value.clone(),
                "--calls" => options.calls = value.parse().unwrap_or(10),
                "--hold" => options.hold = Duration::from_secs(value.parse().unwrap_or(30)),
                other => eprintln!("ignored: {other} {value}"),
            }
        }
        options
    }
}

/// A workload for the gateway.
struct Scenario {
    name: &'static str,
    /// The virtual JID's local part called.
    callee: &'static str,
    /// Concurrency levels tried, in order, until one fails.
    levels: &'static [usize],
    /// The gateway sends audio back (so loss and intervals are measured on what it sends).
    gateway_sends: bool,
    what: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo",
        callee: "bench-echo",
        levels: &[50, 100, 250, 500, 750],
        gateway_sends: true,
        what: "Opus in, the same packets back",
    },
    Scenario {
        name: "voicemail-opus",
        callee: "bench-vm-opus",
        levels: &[100, 250, 500, 1000, 1500],
        gateway_sends: false,
        what: "Opus recorded to Ogg without decoding",
    },
    Scenario {
        name: "voicemail-wav",
        callee: "bench-vm-wav",
        levels: &[100, 250, 500, 1000],
        gateway_sends: false,
        what: "Opus decoded and recorded to WAV",
    },
    Scenario {
        name: "ivr",
        callee: "bench-ivr",
        levels: &[50, 100, 250, 500, 750],
        gateway_sends: true,
        what: "a prompt file from the cache, in a loop",
    },
    Scenario {
        name: "live-encode",
        callee: "bench-bridge",
        levels: &[25, 50, 100, 200],
        gateway_sends: true,
        what: "bridge: Opus caller, PCMU callee (2 legs per call, Opus encoded live)",
    },
];

/// The endpoints the scenarios call, appended to the example config.
const ENDPOINTS: &str = r#"
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
const GATEWAY_ENV: &[(&str, &str)] = &[
    ("GATEWAY_CALLS_MAX_CALLS", "5000"),
    ("GATEWAY_CALLS_MAX_CALLS_PER_JID", "5000"),
    ("GATEWAY_VOICEMAIL_UPLOAD", "off"),
    ("GATEWAY_OUTBOUND_ALLOW", "load.localhost"),
    ("GATEWAY_OUTBOUND_MAX_CALLS", "5000"),
    ("GATEWAY_OUTBOUND_CALLS_PER_MINUTE", "1000000"),
    ("GATEWAY_OUTBOUND_CALLS_PER_TARGET_PER_MINUTE", "1000000"),
    ("RUST_LOG", "warn,jingle_gateway=info"),
];

/// (user+system CPU seconds, RSS KiB) of process `pid` ("self" for this one).
fn process_sample(pid: &str) -> (f64, u64) {
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
async fn gateway_packets(metrics: &str) -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(metrics).await else {
        return (0, 0);
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
    (
        counter("jingle_gateway_rtp_packets_received_total"),
        counter("jingle_gateway_rtp_packets_sent_total"),
    )
}

/// The generator's media: loopback, a port of its own per call, as every real client has its
/// own address (the gateway's shared port tells calls apart by their address once connected).
async fn generator_media() -> Arc<Media> {
    let config = MediaConfig {
        port_range: Some("20000-59999".into()),
        local_address: Some("127.0.0.1".parse().expect("address")),
        bind_address: "127.0.0.1".parse().expect("address"),
        allow_loopback_candidates: true,
        ..MediaConfig::default()
    };
    let engine = MediaEngine::start(&config, Arc::new(MediaStats::default()))
        .await
        .expect("generator media");
    Arc::new(Media::new(Arc::new(engine)))
}

/// One run's shared state: what it measured, how its calls fare, and its stop.
#[derive(Default)]
struct Run {
    collector: Arc<Collector>,
    placed: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    stop: CancellationToken,
}

impl Run {
    fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 5 {
                errors.push(error);
            }
        }
    }
}

/// The run the generator's answering side serves (calls the gateway places to us).
type CurrentRun = Arc<std::sync::Mutex<Option<Arc<Run>>>>;

/// Answers every call the gateway places to the generator, within the current run.
fn answer_calls(
    signalling: Arc<Signalling>,
    media: Arc<Media>,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<signalling::Incoming>,
    current: CurrentRun,
) {
    tokio::spawn(async move {
        while let Some(call) = incoming.recv().await {
            let Some(run) = current.lock().ok().and_then(|c| c.clone()) else {
                continue;
            };
            let (signalling, media) = (signalling.clone(), media.clone());
            tokio::spawn(async move {
                let collector = run.collector.clone();
                if let Err(e) =
                    call::answer(signalling, media, collector, call, run.stop.clone()).await
                {
                    run.failed(format!("answering: {e}"));
                }
            });
        }
    });
}

/// The generator: its component, its media, and the run its answering side serves.
struct Generator {
    signalling: Arc<Signalling>,
    media: Arc<Media>,
    current: CurrentRun,
}

impl Generator {
    /// Attaches to the server at `host`:`port` as component `domain`, and answers what the
    /// gateway places to it.
    async fn start(host: &str, port: u16, domain: &str, secret: &str) -> Self {
        let (signalling, incoming) = Signalling::connect(host, port, domain, secret)
            .await
            .expect("the generator's component");
        let media = generator_media().await;
        let current = CurrentRun::default();
        answer_calls(signalling.clone(), media.clone(), incoming, current.clone());
        Self {
            signalling,
            media,
            current,
        }
    }

    /// A new run of calls.
    fn load(&self) -> Load {
        Load::new(self.signalling.clone(), self.media.clone(), &self.current)
    }
}

/// The calls of one run: placed at a rate, each running until the run stops.
struct Load {
    signalling: Arc<Signalling>,
    media: Arc<Media>,
    run: Arc<Run>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// A new run, which the answering side serves from now on.
    fn new(signalling: Arc<Signalling>, media: Arc<Media>, current: &CurrentRun) -> Self {
        let run = Arc::new(Run::default());
        if let Ok(mut c) = current.lock() {
            *c = Some(run.clone());
        }
        Self {
            signalling,
            media,
            run,
            tasks: Vec::new(),
        }
    }

    /// Places `count` calls to `to` at `rate` per second, each from its own JID; a call ends
    /// when the run stops, or after `hold` when given.
    async fn ramp(
        &mut self,
        to: &Jid,
        count: usize,
        rate: f64,
        hold: Option<Duration>,
        label: &str,
    ) {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..count {
            pace.tick().await;
            let from: Jid = format!("caller{i}@{}/load", self.signalling.domain)
                .parse()
                .expect("caller JID");
            let stop = self.run.stop.child_token();
            if let Some(hold) = hold {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    stop.cancel();
                });
            }
            let (signalling, media, run) = (
                self.signalling.clone(),
                self.media.clone(),
                self.run.clone(),
            );
            let to = to.clone();
            self.tasks.push(tokio::spawn(async move {
                let collector = run.collector.clone();
                if let Err(e) = call::place(signalling, media, collector, from, to, stop).await {
                    run.failed(e);
                }
            }));
            self.run.placed.fetch_add(1, Ordering::Relaxed);
            if i % 25 == 0 {
                self.show(label, count);
            }
        }
        self.show(label, count);
    }

    fn show(&self, label: &str, count: usize) {
        let placed = self.run.placed.load(Ordering::Relaxed);
        let failed = self.run.failed.load(Ordering::Relaxed);
        let filled = (placed as usize * 30 / count.max(1)).min(30);
        eprint!(
            "\r{label:>26} [{}{}] {placed}/{count} placed, {failed} failed   ",
            "#".repeat(filled),
            " ".repeat(30 - filled)
        );
    }

    /// Hangs every call up and waits for them (30 s at most).
    async fn finish(mut self) -> Arc<Run> {
        self.run.stop.cancel();
        let all = futures::future::join_all(self.tasks.drain(..));
        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
        // Answered calls end with the gateway's hang-up or the stop; give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!();
        self.run
    }
}

/// What one concurrency level measured.
struct Level {
    calls: usize,
    failed: u64,
    /// Generator → gateway, from the gateway's counters.
    loss_in: f64,
    /// Gateway → generator, from sequence numbers.
    loss_out: f64,
    late: u64,
    timestamp_errors: u64,
    jitter_ms: Option<f64>,
    /// |interval − 20 ms| p99 of what the gateway sent, when it sends.
    gateway_p99: Option<Duration>,
    /// The same for the generator's own sends.
    generator_p99: Option<Duration>,
    gateway_cpu: f64,
    gateway_packets_per_second: f64,
    gateway_us_per_packet: f64,
    floor_us_per_packet: f64,
    rss_per_call_kib: f64,
    generator_cpu: f64,
    passed: bool,
    errors: Vec<String>,
}

/// How the benchmark reaches one gateway.
struct Target {
    pid: String,
    metrics: String,
    idle_rss: u64,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// Ramps `n` calls of `scenario`, measures a window, hangs up, measures the floor at the rate
/// the gateway handled.
async fn run_level(
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
    let collector = load.run.collector.clone();
    let (gateway_cpu0, _) = process_sample(&target.pid);
    let (self_cpu0, _) = process_sample("self");
    let (rx0, tx0) = gateway_packets(&target.metrics).await;
    collector.set_measuring(true);
    let started = Instant::now();
    tokio::time::sleep(options.window).await;
    collector.set_measuring(false);
    let wall = started.elapsed().as_secs_f64();
    let (gateway_cpu1, rss) = process_sample(&target.pid);
    let (self_cpu1, _) = process_sample("self");
    let (rx1, tx1) = gateway_packets(&target.metrics).await;
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
    }
}

const LEVEL_HEADER: &str = "| calls | up | loss in % | loss out % | late | ts errors | jitter ms | gw interval p99 ms | gen interval p99 ms | gw CPU % | gw packets/s | gw µs/packet | floor µs/packet | ratio | RSS/call KiB | gen CPU % | pass |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|";

fn level_row(l: &Level) -> String {
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
async fn start_gateway(server: &Server, data: &TempDir) -> (GatewayProcess, Target) {
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
    let pid = gateway.pid().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, idle_rss) = process_sample(&pid);
    (
        gateway,
        Target {
            pid,
            metrics,
            idle_rss,
        },
    )
}

/// This machine, for the report.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({model}), Linux {}", kernel.trim())
}

async fn benchmark(options: Options) {
    let started = Instant::now();
    let component =
        format!("\nComponent \"{LOAD_DOMAIN}\"\n    component_secret = \"{LOAD_SECRET}\"\n");
    let server = Server::start_with(Kind::Prosody, &component);
    let generator =
        Generator::start("127.0.0.1", server.component_port, LOAD_DOMAIN, LOAD_SECRET).await;
    // An Opus packet of the tone as sent: RTP header, payload, SRTP tag.
    let packet_size = 12 + generator.media.opus_payload_size() + 10;
    println!("# jingle-gateway load benchmark\n");
    println!(
        "machine: {}; gateway and generator share it; release build; Prosody {} on loopback\n",
        machine(),
        server_version()
    );
    println!("Each level: calls placed at {}/s, 3 s to settle, {} s measured, then the floor (loopback UDP, {packet_size}-byte packets at the gateway's packet rate) for 3 s. A level passes with every call up, loss < 0.5 % both ways and a 20 ms interval p99 < 5 ms (of the gateway's packets when it sends, else of the generator's).\n", options.rate, options.window.as_secs());
    let mut summary = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| {
        options
            .scenarios
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == s.name))
    }) {
        let data = TempDir::new("bench");
        let (gateway, target) = start_gateway(&server, &data).await;
        println!(
            "## {}: {}\n\ngateway idle RSS {} KiB\n\n{LEVEL_HEADER}",
            scenario.name, scenario.what, target.idle_rss
        );
        let levels = options
            .levels
            .clone()
            .unwrap_or_else(|| scenario.levels.to_vec());
        let mut best: Option<Level> = None;
        let mut first_failure: Option<Level> = None;
        for n in levels {
            let level = run_level(&generator, scenario, n, &options, &target, packet_size).await;
            println!("{}", level_row(&level));
            if !level.errors.is_empty() {
                println!("<!-- {} x {n}: {:?} -->", scenario.name, level.errors);
            }
            if level.passed {
                best = Some(level);
            } else {
                first_failure = Some(level);
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!();
        summary.push((scenario.name, best, first_failure));
        drop(gateway);
    }
    if !options.skip_setup {
        setup_rates(&server, &generator).await;
    }
    transport_stack(&generator, packet_size, options.window).await;
    println!("## Summary\n\n| scenario | highest passing level | gw µs/packet | floor µs/packet | ratio | RSS/call KiB | first failing level |\n|---|---:|---:|---:|---:|---:|---|");
    for (name, best, failure) in &summary {
        let failing = failure.as_ref().map_or("none tried".into(), |l| {
            format!(
                "{} (loss in {:.2} %, out {:.2} %, p99 {} ms, {} not up)",
                l.calls,
                l.loss_in * 100.0,
                l.loss_out * 100.0,
                ms(l.gateway_p99.or(l.generator_p99)),
                l.failed
            )
        });
        match best {
            Some(l) => println!(
                "| {name} | {} | {:.1} | {:.2} | {:.1} | {:.0} | {failing} |",
                l.calls,
                l.gateway_us_per_packet,
                l.floor_us_per_packet,
                l.gateway_us_per_packet / l.floor_us_per_packet.max(0.001),
                l.rss_per_call_kib
            ),
            None => println!("| {name} | none | - | - | - | - | {failing} |"),
        }
    }
    println!("\nbenchmark took {:.0} s", started.elapsed().as_secs_f64());
    generator.signalling.close();
}

/// The media legs alone (see `stack.rs`) against the UDP floor at the same packet rate.
async fn transport_stack(generator: &Generator, packet_size: usize, window: Duration) {
    println!("## The transport stack alone\n\nThe gateway's media legs (webrtc-ice on one shared port, DTLS-SRTP, tokio) echoing each packet at once on one thread: no signalling, jitter buffer, pacing or endpoint.\n\n| calls | packets/s handled | stack µs/packet | floor µs/packet | ratio |\n|---:|---:|---:|---:|---:|");
    for pairs in [100, 250] {
        eprint!("\r{:>26}", format!("transport stack x {pairs}"));
        match stack::measure(&generator.media, pairs, window).await {
            Ok((per_packet, rate)) => {
                let streams = (rate / 100.0).ceil().max(1.0) as usize;
                let floor =
                    floor::measure(streams, packet_size, Duration::from_secs(3)).expect("floor");
                let (stack_us, floor_us) = (
                    per_packet.as_secs_f64() * 1e6,
                    floor.cpu_per_packet.as_secs_f64() * 1e6,
                );
                println!(
                    "| {pairs} | {rate:.0} | {stack_us:.1} | {floor_us:.2} | {:.1} |",
                    stack_us / floor_us.max(0.001)
                );
            }
            Err(e) => println!("| {pairs} | failed: {e} | | | |"),
        }
    }
    eprintln!();
    println!();
}

fn server_version() -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "prosody"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Sustained call setup through Prosody: echo calls placed at each rate for 5 s, each held
/// 3 s; session-initiate → session-accept and session-accept → first media packet.
async fn setup_rates(server: &Server, generator: &Generator) {
    let data = TempDir::new("bench");
    let (gateway, _) = start_gateway(server, &data).await;
    println!("## Call setup\n\nEcho calls placed at each rate for 5 s, each held 3 s.\n\n| rate asked /s | placed | achieved /s | not up | initiate→accept p50 ms | p99 ms | accept→first media p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|---:|---:|");
    let echo: Jid = "bench-echo@gw.localhost".parse().expect("JID");
    for rate in [50.0, 100.0, 200.0] {
        let mut load = generator.load();
        let count = (rate * 5.0) as usize;
        let t0 = Instant::now();
        load.ramp(
            &echo,
            count,
            rate,
            Some(Duration::from_secs(3)),
            &format!("setup at {rate}/s"),
        )
        .await;
        let placing = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let run = load.finish().await;
        let accept = run.collector.to_accept.lock().ok();
        let first = run.collector.to_media.lock().ok();
        let p = |h: &Option<std::sync::MutexGuard<'_, measure::Histogram>>, q| {
            ms(h.as_ref().and_then(|h| h.percentile(q)))
        };
        println!(
            "| {rate:.0} | {count} | {:.0} | {} | {} | {} | {} | {} |",
            count as f64 / placing,
            run.failed.load(Ordering::Relaxed),
            p(&accept, 0.5),
            p(&accept, 0.99),
            p(&first, 0.5),
            p(&first, 0.99),
        );
        drop((accept, first));
        if let Ok(errors) = run.errors.lock() {
            if !errors.is_empty() {
                println!("<!-- setup at {rate}/s: {errors:?} -->");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!();
    drop(gateway);
}

/// The generator alone, against a gateway already running.
async fn generate(options: Options) {
    let (host, port) = options
        .server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .expect("--server host:port");
    let generator = Generator::start(&host, port, &options.domain, &options.secret).await;
    let to: Jid = options.to.parse().expect("--to JID");
    let mut load = generator.load();
    load.ramp(&to, options.calls, options.rate, None, "calls")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let collector = load.run.collector.clone();
    let (cpu0, _) = process_sample("self");
    collector.set_measuring(true);
    let t0 = Instant::now();
    tokio::time::sleep(options.hold).await;
    collector.set_measuring(false);
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, _) = process_sample("self");
    let run = load.finish().await;
    let sent_p99 = collector
        .sent_intervals
        .lock()
        .ok()
        .and_then(|h| h.percentile(0.99));
    let received_p99 = collector
        .received_intervals
        .lock()
        .ok()
        .and_then(|h| h.percentile(0.99));
    let accept = collector
        .to_accept
        .lock()
        .ok()
        .and_then(|h| h.percentile(0.99));
    println!(
        "calls placed {}, not up {}",
        run.placed.load(Ordering::Relaxed),
        run.failed.load(Ordering::Relaxed)
    );
    println!("sent {} packets, received {}, expected {} (loss {:.3} %), late {}, timestamp errors {}, restarts {}",
        collector.sent.load(Ordering::Relaxed), collector.received.load(Ordering::Relaxed),
        collector.expected.load(Ordering::Relaxed), collector.loss() * 100.0,
        collector.late.load(Ordering::Relaxed), collector.timestamp_errors.load(Ordering::Relaxed),
        collector.restarts.load(Ordering::Relaxed));
    println!(
        "interval p99 received {} ms, sent {} ms; initiate→accept p99 {} ms; generator CPU {:.0} %",
        ms(received_p99),
        ms(sent_p99),
        ms(accept),
        (cpu1 - cpu0) / wall * 100.0
    );
    if let Ok(errors) = run.errors.lock() {
        for e in errors.iter() {
            println!("failure: {e}");
        }
    }
    generator.signalling.close();
}
