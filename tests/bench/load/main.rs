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
mod generator;
mod measure;
mod scenarios;
mod signalling;
mod stack;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jid::Jid;

use generator::Generator;
use scenarios::{
    level_row, ms, process_sample, run_level, start_gateway, Level, LEVEL_HEADER, SCENARIOS,
};
use support::servers::{Kind, Server};
use support::TempDir;

/// The generator's component on the test server.
const LOAD_DOMAIN: &str = "load.localhost";
const LOAD_SECRET: &str = "load-secret";

/// The whole benchmark stops after this, whatever it is doing (its servers and gateways are
/// stopped as they are dropped).
const BENCHMARK_LIMIT: Duration = Duration::from_secs(45 * 60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let finished = if args.first().map(String::as_str) == Some("generate") {
        let options = Options::parse(&args[1..]);
        let limit = options.hold
            + Duration::from_secs_f64(options.calls as f64 / options.rate)
            + Duration::from_secs(120);
        runtime.block_on(async { tokio::time::timeout(limit, generate(options)).await })
    } else {
        let options = Options::parse(&args);
        runtime.block_on(async { tokio::time::timeout(BENCHMARK_LIMIT, benchmark(options)).await })
    };
    if finished.is_err() {
        eprintln!("stopped: the run did not finish in time");
        std::process::exit(1);
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
        let mut floods = Vec::new();
        for n in levels {
            let level = run_level(&generator, scenario, n, &options, &target, packet_size).await;
            println!("{}", level_row(&level));
            if let Some(flood) = level.flood {
                floods.push(format!(
                    "{n} calls: the stranger sent {:.0} datagrams/s, the guard dropped {:.0}/s",
                    flood.sent_per_second, flood.dropped_per_second
                ));
            }
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
        if !floods.is_empty() {
            for flood in floods {
                println!("- {flood}");
            }
            println!();
        }
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
    println!("## Call setup\n\nEcho calls placed at each rate for 5 s, each held 3 s.\n\n| rate asked /s | placed | achieved /s | not up | initiate→accept p50 ms | p99 ms | accept→SRTP up p50 ms | p99 ms | accept→first media p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let secured = run.collector.to_secured.lock().ok();
        let first = run.collector.to_media.lock().ok();
        let p = |h: &Option<std::sync::MutexGuard<'_, measure::Histogram>>, q| {
            ms(h.as_ref().and_then(|h| h.percentile(q)))
        };
        println!(
            "| {rate:.0} | {count} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            count as f64 / placing,
            run.failed.load(Ordering::Relaxed),
            p(&accept, 0.5),
            p(&accept, 0.99),
            p(&secured, 0.5),
            p(&secured, 0.99),
            p(&first, 0.5),
            p(&first, 0.99),
        );
        drop((accept, secured, first));
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
