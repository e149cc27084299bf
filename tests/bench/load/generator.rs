//! The generator: its component and media, the calls of a run (placed at a rate from JIDs of
//! its own domain, and answered when the gateway places them), and what a run shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jid::Jid;
use jingle_gateway::config::MediaConfig;
use jingle_gateway::media::engine::MediaEngine;
use jingle_gateway::media::stats::MediaStats;
use tokio_util::sync::CancellationToken;

use crate::call::{self, Media};
use crate::measure::Collector;
use crate::signalling::{self, Signalling};

/// The generator's media: loopback, a port of its own per call, as every real client has its
/// own address (the gateway's shared port tells calls apart by their address once connected).
pub async fn generator_media() -> Arc<Media> {
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
pub struct Run {
    pub collector: Arc<Collector>,
    pub placed: AtomicU64,
    pub failed: AtomicU64,
    pub errors: std::sync::Mutex<Vec<String>>,
    pub stop: CancellationToken,
}

impl Run {
    pub fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 5 {
                errors.push(error);
            }
        }
    }
}

/// The run the generator's answering side serves (calls the gateway places to us).
pub type CurrentRun = Arc<std::sync::Mutex<Option<Arc<Run>>>>;

/// Answers every call the gateway places to the generator, within the current run.
pub fn answer_calls(
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
pub struct Generator {
    pub signalling: Arc<Signalling>,
    pub media: Arc<Media>,
    pub current: CurrentRun,
}

impl Generator {
    /// Attaches to the server at `host`:`port` as component `domain`, and answers what the
    /// gateway places to it.
    pub async fn start(host: &str, port: u16, domain: &str, secret: &str) -> Self {
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
    pub fn load(&self) -> Load {
        Load::new(self.signalling.clone(), self.media.clone(), &self.current)
    }
}

/// The calls of one run: placed at a rate, each running until the run stops.
pub struct Load {
    pub signalling: Arc<Signalling>,
    pub media: Arc<Media>,
    pub run: Arc<Run>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// A new run, which the answering side serves from now on.
    pub fn new(signalling: Arc<Signalling>, media: Arc<Media>, current: &CurrentRun) -> Self {
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
    pub async fn ramp(
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

    pub fn show(&self, label: &str, count: usize) {
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
    pub async fn finish(mut self) -> Arc<Run> {
        self.run.stop.cancel();
        let all = futures::future::join_all(self.tasks.drain(..));
        let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
        // Answered calls end with the gateway's hang-up or the stop; give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!();
        self.run
    }
}
