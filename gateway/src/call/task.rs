//! The call task: one per call. It owns the media leg, the audio path and the endpoint, and
//! selects over router commands, leg events, the packet-time tick and the RTCP timer. Whatever
//! ends the call, the leg is closed before the task returns; should the task panic, the panic is
//! contained, the leg closes from its `Drop`, and the call ends with `general-error`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use tracing::Instrument;

use super::audio::AudioPath;
use super::{CallCommand, CallCommands, CallEvent, CallEvents, SharedFigures};
use crate::endpoint::{CallInfo, CallReport, Endpoint, EndpointEvent, EndpointFactory};
use crate::jingle::negotiate::{LocalTransport, Negotiated};
use crate::jingle::{CallStart, MediaEvent};
use crate::media::engine::MediaEngine;
use crate::media::leg::{IceRole, LegEvent, MediaLeg};
use crate::media::MediaFailure;
use crate::metrics::Metrics;
use crate::types::EndReason;

/// Runs one call until the router stops it or the media or endpoint ends it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_call(
    engine: Arc<MediaEngine>,
    endpoints: Arc<EndpointFactory>,
    metrics: Arc<Metrics>,
    mut endpoint: Box<dyn Endpoint>,
    start: CallStart,
    mut commands: CallCommands,
    events: CallEvents,
    figures: SharedFigures,
) {
    let call_id = start.call_id;
    let span = tracing::info_span!("call", %call_id, sid = %start.sid, peer = %start.peer, virtual_jid = %start.virtual_jid);
    let report = events.clone();
    let call = async move {
        // Answering, the caller's agent nominates; calling, ours does.
        let role = match start.offer {
            Some(_) => IceRole::Controlled,
            None => IceRole::Controlling,
        };
        let mut leg = match MediaLeg::new(engine, role).await {
            Ok(leg) => leg,
            Err(failure) => {
                tracing::warn!(error = %failure, "cannot start the media leg");
                let reason = failure.end_reason();
                let _ = events.send((call_id, CallEvent::Media(MediaEvent::Ended(reason))));
                return;
            }
        };
        let ssrc = rand::random();
        // Answering, checks run while our answer travels (the caller's checks may arrive
        // first); calling, they start when the answer came.
        if let Some(offer) = &start.offer {
            connect(&mut leg, offer);
        }
        let media =
            match offer_local_transport(&mut leg, ssrc, &start, &mut commands, &events).await {
                Ok(media) => media,
                Err(ended) => {
                    leg.close().await;
                    if let Some(reason) = ended {
                        let _ = events.send((call_id, CallEvent::Media(MediaEvent::Ended(reason))));
                    }
                    return;
                }
            };
        if start.offer.is_none() {
            connect(&mut leg, &media);
        }
        leg.add_remote_candidates(&media.candidates);
        let client_features = endpoint.wants_client_features().then(|| {
            let (reply, features) = tokio::sync::oneshot::channel();
            let _ = events.send((call_id, CallEvent::DiscoverCaller(reply)));
            features
        });
        let began = now();
        let mut audio = AudioPath::new(&media, ssrc, now());
        let ended = drive(
            &mut leg,
            &mut audio,
            &mut endpoint,
            &endpoints,
            &start,
            &media,
            &mut commands,
            &events,
            &metrics,
            &figures,
        )
        .await;
        let remote_candidates = leg.remote_candidate_types();
        let selected_pair = leg.selected_pair().map(str::to_string);
        leg.close().await;
        let summary = audio.summary();
        tracing::debug!(
            received = summary.received,
            expected = summary.expected,
            sent = summary.sent,
            concealed = summary.concealed,
            fec_recovered = summary.fec_recovered,
            late = summary.late,
            duplicates = summary.duplicates,
            trimmed = summary.trimmed,
            jitter_ms = summary.jitter_ms,
            unknown_payload_types = summary.unknown_payload_types,
            foreign_codec = summary.foreign_codec,
            round_trip_ms = ?summary.round_trip_ms,
            "media of the call"
        );
        metrics.call_media(
            summary.concealed + summary.fec_recovered,
            summary.fec_recovered,
            summary.late,
            summary.jitter_ms,
        );
        let client_features =
            client_features.and_then(|mut answer| answer.try_recv().ok().flatten());
        let report = CallReport {
            offer: &media,
            via_jmi: start.via_jmi,
            client_features: client_features.as_deref(),
            remote_candidates,
            selected_pair: selected_pair.as_deref(),
            audio: summary,
            duration: now().saturating_duration_since(began),
        };
        endpoint.on_end(ended.reason());
        if let Some(body) = endpoint.report(&report) {
            let report = CallEvent::Report {
                virtual_jid: start.virtual_jid.clone(),
                to: start.peer.to_bare(),
                body,
            };
            let _ = events.send((call_id, report));
        }
        if let Ended::Here(reason) = ended {
            let _ = events.send((call_id, CallEvent::Media(MediaEvent::Ended(reason))));
        }
    };
    let outcome = std::panic::AssertUnwindSafe(call.instrument(span.clone()))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        span.in_scope(|| tracing::error!("the call task failed; ending the call"));
        let ended = CallEvent::Media(MediaEvent::Ended(EndReason::Internal));
        let _ = report.send((call_id, ended));
    }
}

/// How often an endpoint is asked whether it can serve the call while media is not flowing yet.
const UNAVAILABLE_CHECK: Duration = Duration::from_millis(100);

/// Starts ICE towards the peer of `media`, then DTLS in the role it gives us.
fn connect(leg: &mut MediaLeg, media: &Negotiated) {
    leg.connect(
        &media.ice_ufrag,
        &media.ice_pwd,
        media.fingerprint.clone(),
        media.dtls_role,
    );
}

/// Tells the router our ICE credentials, candidates and SSRC (the answer or our offer goes
/// out), then returns the negotiated media: the caller's offer, or the callee's answer once it
/// comes. `Err` ends the call: with a reason, or `None` when the router stopped it.
async fn offer_local_transport(
    leg: &mut MediaLeg,
    ssrc: u32,
    start: &CallStart,
    commands: &mut CallCommands,
    events: &CallEvents,
) -> Result<Negotiated, Option<EndReason>> {
    let report = |event| {
        events
            .send((start.call_id, CallEvent::Media(event)))
            .is_ok()
    };
    let (ufrag, pwd) = leg.local_credentials().await;
    let candidates = leg.initial_candidates().await;
    if candidates.is_empty() && leg.gathering_complete() {
        // Nothing to offer (no interface has `media.local_address`, no TURN allocation):
        // refused now, not after the ICE timeout.
        tracing::warn!("no local candidate to offer: is media.local_address on an interface?");
        return Err(Some(EndReason::NoMediaPort));
    }
    if !report(MediaEvent::LocalTransport(LocalTransport {
        ufrag,
        pwd,
        candidates,
        ssrc,
    })) {
        return Err(None);
    }
    if let Some(offer) = &start.offer {
        return Ok(offer.clone());
    }
    // Our offer is out: wait for the answer, trickling our candidates meanwhile and keeping
    // the callee's until the answer says who they are.
    let mut early = Vec::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(CallCommand::Stop(_)) => return Err(None),
                Some(CallCommand::RemoteCandidates(mut candidates)) => early.append(&mut candidates),
                Some(CallCommand::Answered(mut media)) => {
                    media.candidates.append(&mut early);
                    return Ok(media);
                }
                Some(_) => {}
            },
            event = leg.next_event() => match event {
                LegEvent::LocalCandidate(candidate) => {
                    report(MediaEvent::LocalCandidate(candidate));
                }
                LegEvent::Failed(failure) => {
                    tracing::info!(error = %failure, "media failed");
                    return Err(Some(failure.end_reason()));
                }
                LegEvent::Secured | LegEvent::Rtp(_) | LegEvent::Rtcp(_) => {}
            },
        }
    }
}

/// How a call's task came to its end.
enum Ended {
    /// The media leg or the endpoint ended it, for this reason (the router is told).
    Here(EndReason),
    /// The router stopped it (its session is over), for this reason.
    ByRouter(EndReason),
}

impl Ended {
    fn reason(&self) -> EndReason {
        match self {
            Self::Here(reason) | Self::ByRouter(reason) => *reason,
        }
    }
}

/// Drives the call until it ends, and says how.
#[allow(clippy::too_many_arguments)]
async fn drive(
    leg: &mut MediaLeg,
    audio: &mut AudioPath,
    endpoint: &mut Box<dyn Endpoint>,
    endpoints: &EndpointFactory,
    start: &CallStart,
    media: &Negotiated,
    commands: &mut CallCommands,
    events: &CallEvents,
    metrics: &Metrics,
    figures: &SharedFigures,
) -> Ended {
    let call_id = start.call_id;
    let report = |event| events.send((call_id, CallEvent::Media(event))).is_ok();
    let info = CallInfo {
        peer: start.peer.clone(),
        codec: media.codec,
    };
    let ssrc = audio.ssrc();
    // The session-accept went out as soon as the router had our transport.
    let mut accepted_at = Some(now());
    let mut secured = false;
    let mut check = now();
    // The frame and report timers live across iterations and are moved only when their
    // deadline changes: a timer made afresh on every loop (every received packet) would be
    // registered and removed again each time.
    let tick_timer = tokio::time::sleep(Duration::ZERO);
    let rtcp_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(tick_timer, rtcp_timer);
    let (mut tick_at, mut rtcp_at) = (None, None);
    loop {
        let tick = audio.next_tick();
        if tick != tick_at {
            if let Some(at) = tick {
                tick_timer.as_mut().reset(at.into());
            }
            tick_at = tick;
        }
        let rtcp = audio.next_report();
        if rtcp != rtcp_at {
            if let Some(at) = rtcp {
                rtcp_timer.as_mut().reset(at.into());
            }
            rtcp_at = rtcp;
        }
        tokio::select! {
            // Until media flows, ticks do not run: an endpoint that cannot serve the call
            // (a sound device that would not open) is asked here.
            _ = sleep_until(Some(check)), if !secured => {
                if let Some(reason) = endpoint.unavailable() {
                    return Ended::Here(reason);
                }
                check = now() + UNAVAILABLE_CHECK;
            },
            command = commands.recv() => match command {
                // A router that is gone is a gateway that stops.
                None => return Ended::ByRouter(EndReason::Shutdown),
                Some(CallCommand::Stop(reason)) => return Ended::ByRouter(reason),
                Some(CallCommand::RemoteCandidates(candidates)) => leg.add_remote_candidates(&candidates),
                Some(CallCommand::ChatDigits(text)) => {
                    audio.receive_chat_digits(&text, now(), endpoint.as_mut());
                }
                Some(CallCommand::Answered(_)) => {}
                Some(CallCommand::Bridge(mut bridge)) => {
                    tracing::info!("call bridged");
                    if secured {
                        bridge.start(&info);
                    }
                    *endpoint = bridge;
                }
                Some(CallCommand::ConnectFailed(reason)) => endpoint.on_connect_failed(reason),
                Some(CallCommand::RestartIce { ufrag, pwd, candidates }) => {
                    match restart_ice(leg, &ufrag, &pwd, &candidates, ssrc).await {
                        Ok(local) => {
                            report(MediaEvent::LocalTransport(local));
                        }
                        Err(failure) => {
                            // The caller now waits for credentials we cannot give.
                            tracing::info!(error = %failure, "ICE restart failed");
                            return Ended::Here(failure.end_reason());
                        }
                    }
                }
            },
            event = leg.next_event() => match event {
                LegEvent::LocalCandidate(candidate) => {
                    report(MediaEvent::LocalCandidate(candidate));
                }
                LegEvent::Secured => {
                    secured = true;
                    show(figures, audio, leg);
                    tracing::info!(codec = media.codec.name(), "media connected");
                    endpoint.start(&info);
                    audio.start(now());
                }
                LegEvent::Rtp(packet) => {
                    if let Some(accepted) = accepted_at.take() {
                        metrics.first_media(now().saturating_duration_since(accepted));
                    }
                    audio.receive_rtp(&packet, now(), endpoint.as_mut());
                }
                LegEvent::Rtcp(packet) => {
                    audio.receive_rtcp(&packet, now(), SystemTime::now());
                    show(figures, audio, leg);
                }
                LegEvent::Failed(failure) => {
                    tracing::info!(error = %failure, "media failed");
                    return Ended::Here(failure.end_reason());
                }
            },
            _ = &mut tick_timer, if tick_at.is_some() => {
                // Set again on the next turn, even should the deadline not have moved.
                tick_at = None;
                let result = audio.tick(now(), endpoint.as_mut());
                for packet in &result.packets {
                    leg.send_rtp(&packet.header, &packet.payload).await;
                }
                if let Some(reason) = result.ended {
                    return Ended::Here(reason);
                }
                for request in result.requests {
                    match request {
                        EndpointEvent::Transfer(to) => match endpoints.create(&to, &info.peer, info.codec) {
                            Ok(mut next) => {
                                tracing::info!(to = %to, "call handed over");
                                next.start(&info);
                                *endpoint = next;
                            }
                            Err(reason) => {
                                tracing::warn!(to = %to, reason = reason.as_str(),
                                    "cannot hand the call over");
                                return Ended::Here(reason);
                            }
                        },
                        EndpointEvent::SendMessage { to, body } => {
                            let _ = events.send((call_id, CallEvent::Message { to, body }));
                        }
                        EndpointEvent::Connect(plan) => {
                            let _ = events.send((call_id, CallEvent::Connect(plan)));
                        }
                        EndpointEvent::HangUp
                        | EndpointEvent::Fail(_)
                        | EndpointEvent::SendDtmf(_) => {}
                    }
                }
            }
            _ = &mut rtcp_timer, if rtcp_at.is_some() => {
                rtcp_at = None;
                if let Some(report) = audio.report(now(), SystemTime::now()) {
                    leg.send_rtcp(&report).await;
                }
                show(figures, audio, leg);
            }
        }
    }
}

/// Updates what the call shows of itself (a lock nobody holds for long: the router reads it
/// only for an admin's list of calls).
fn show(figures: &SharedFigures, audio: &AudioPath, leg: &MediaLeg) {
    let summary = audio.summary();
    let mut figures = figures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    figures.received = summary.received;
    figures.expected = summary.expected;
    figures.jitter_ms = summary.jitter_ms;
    figures.round_trip_ms = summary.round_trip_ms;
    if figures.path.as_deref() != leg.selected_pair() {
        figures.path = leg.selected_pair().map(str::to_string);
    }
}

/// Restarts ICE on the caller's request; returns our new credentials and candidates.
async fn restart_ice(
    leg: &mut MediaLeg,
    ufrag: &str,
    pwd: &str,
    candidates: &[crate::protocol::ice_udp::Candidate],
    ssrc: u32,
) -> Result<LocalTransport, MediaFailure> {
    let (local_ufrag, local_pwd) = leg.restart().await?;
    leg.set_remote_credentials(ufrag, pwd).await?;
    leg.add_remote_candidates(candidates);
    let candidates = leg.initial_candidates().await;
    tracing::info!("ICE restarted");
    Ok(LocalTransport {
        ufrag: local_ufrag,
        pwd: local_pwd,
        candidates,
        ssrc,
    })
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The call path's one monotonic clock: tokio's (which tests may pause), read only here; the
/// audio path and the endpoint are given the time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
