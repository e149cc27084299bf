//! The transport stack alone: the gateway's media legs (webrtc-ice on one shared UDP port,
//! DTLS-SRTP, tokio) echoing every packet at once, with no signalling, jitter buffer, pacing or
//! endpoint. The echo side runs on a single-threaded runtime of its own thread, so its CPU is
//! read from that thread alone. Between the UDP floor and the whole gateway, this tells what the
//! dependencies cost and what the gateway's own per-call work adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jingle_gateway::config::MediaConfig;
use jingle_gateway::media::engine::MediaEngine;
use jingle_gateway::media::leg::{IceRole, LegEvent, MediaLeg};
use jingle_gateway::media::rtp::RtpSender;
use jingle_gateway::media::stats::MediaStats;
use jingle_gateway::protocol::ice_udp::{Candidate, Fingerprint};
use jingle_gateway::types::{DtlsRole, RemoteFingerprint};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use webrtc_util::marshal::Unmarshal;

use crate::call::Media;

/// One side's half of a pairing: credentials, candidates, certificate.
struct Half {
    ufrag: String,
    pwd: String,
    candidates: Vec<Candidate>,
    fingerprint: RemoteFingerprint,
}

fn fingerprint_of(engine: &MediaEngine) -> RemoteFingerprint {
    let hex = Fingerprint {
        hash: "sha-256".into(),
        setup: None,
        value: engine.certificate.fingerprint_sha256.clone(),
    };
    RemoteFingerprint {
        hash: "sha-256",
        digest: hex.bytes().expect("our own fingerprint"),
    }
}

/// Nanoseconds this thread has been on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `pairs` calls through the echo stack for `window`; returns its CPU per packet handled
/// (received or sent) and the packets handled per second.
pub async fn measure(
    media: &Arc<Media>,
    pairs: usize,
    window: Duration,
) -> Result<(Duration, f64), String> {
    let (pair_tx, mut pair_rx) = mpsc::unbounded_channel::<(Half, oneshot::Sender<Half>)>();
    let (measure_tx, mut measure_rx) = mpsc::unbounded_channel::<oneshot::Sender<(u64, u64)>>();
    let handled = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let echo_side = {
        let (handled, stop) = (handled.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let config = MediaConfig {
                    port: 0,
                    local_address: Some("127.0.0.1".parse().expect("address")),
                    bind_address: "127.0.0.1".parse().expect("address"),
                    allow_loopback_candidates: true,
                    ..MediaConfig::default()
                };
                let engine = Arc::new(
                    MediaEngine::start(&config, Arc::new(MediaStats::default()))
                        .await
                        .expect("echo media"),
                );
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        asked = measure_rx.recv() => if let Some(reply) = asked {
                            let _ = reply.send((thread_cpu_ns(), handled.load(Ordering::Relaxed)));
                        },
                        pair = pair_rx.recv() => {
                            let Some((caller, reply)) = pair else { break };
                            let mut leg = MediaLeg::new(engine.clone(), IceRole::Controlled).await.expect("leg");
                            leg.connect(&caller.ufrag, &caller.pwd, caller.fingerprint, DtlsRole::Server);
                            let (ufrag, pwd) = leg.local_credentials().await;
                            let candidates = leg.initial_candidates().await;
                            leg.add_remote_candidates(&caller.candidates);
                            let _ = reply.send(Half { ufrag, pwd, candidates, fingerprint: fingerprint_of(&engine) });
                            let (handled, stop) = (handled.clone(), stop.clone());
                            tokio::spawn(async move {
                                let mut sender = RtpSender::new(rand::random(), 111, None, 0, 0);
                                loop {
                                    tokio::select! {
                                        _ = stop.cancelled() => break,
                                        event = leg.next_event() => match event {
                                            LegEvent::Rtp(packet) => {
                                                let mut buf = packet.clone();
                                                let Ok(rtp) = rtp::packet::Packet::unmarshal(&mut buf) else { continue };
                                                let header = sender.audio(960, rtp.payload.len());
                                                leg.send_rtp(&header, &rtp.payload).await;
                                                handled.fetch_add(2, Ordering::Relaxed);
                                            }
                                            LegEvent::Failed(_) => break,
                                            _ => {}
                                        },
                                    }
                                }
                                leg.close().await;
                            });
                        }
                    }
                }
                engine.close().await;
            });
        })
    };

    // The calling side, on the benchmark's runtime: each pair sends the tone every 20 ms.
    let frames = media.opus_frames();
    let mut callers = Vec::new();
    for _ in 0..pairs {
        let mut leg = MediaLeg::new(media.engine.clone(), IceRole::Controlling)
            .await
            .map_err(|e| e.to_string())?;
        let (ufrag, pwd) = leg.local_credentials().await;
        let candidates = leg.initial_candidates().await;
        let (reply_tx, reply_rx) = oneshot::channel();
        let ours = Half {
            ufrag,
            pwd,
            candidates,
            fingerprint: fingerprint_of(&media.engine),
        };
        pair_tx
            .send((ours, reply_tx))
            .map_err(|_| "the echo side stopped")?;
        let echo = reply_rx.await.map_err(|_| "the echo side stopped")?;
        leg.connect(&echo.ufrag, &echo.pwd, echo.fingerprint, DtlsRole::Client);
        leg.add_remote_candidates(&echo.candidates);
        let (stop, frames) = (stop.clone(), frames.clone());
        callers.push(tokio::spawn(async move {
            let mut sender = RtpSender::new(rand::random(), 111, None, 0, 0);
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut secured = false;
            let mut n = 0;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = interval.tick(), if secured => {
                        let payload = &frames[n % frames.len()];
                        n += 1;
                        let header = sender.audio(960, payload.len());
                        leg.send_rtp(&header, payload).await;
                    }
                    event = leg.next_event() => match event {
                        LegEvent::Secured => secured = true,
                        LegEvent::Failed(_) => break,
                        _ => {}
                    },
                }
            }
            leg.close().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sample = || async {
        let (tx, rx) = oneshot::channel();
        measure_tx.send(tx).ok()?;
        rx.await.ok()
    };
    let (cpu0, handled0) = sample().await.ok_or("no sample")?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let (cpu1, handled1) = sample().await.ok_or("no sample")?;
    let wall = started.elapsed().as_secs_f64();
    stop.cancel();
    for caller in callers {
        let _ = caller.await;
    }
    drop(pair_tx);
    let _ = tokio::task::spawn_blocking(move || echo_side.join()).await;
    let packets = (handled1 - handled0).max(1);
    Ok((
        Duration::from_nanos((cpu1 - cpu0) / packets),
        packets as f64 / wall,
    ))
}
