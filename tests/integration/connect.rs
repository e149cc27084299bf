//! The gateway placing calls: an IVR `connect` rings a user with two online devices through a
//! real Prosody and a real ejabberd, one device answers (the other sees the answer by carbons),
//! and the two calls are bridged: each side hears the other's tone, Opus to Opus forwarded
//! without transcoding, PCMU to Opus transcoded. Nobody answering, a rejection and an offline
//! user take the menu's fallback.

use std::time::Duration;

use jingle_gateway::media::stats::MediaStats;
use jingle_gateway::types::Codec;

use crate::support::audio::{tone_share, tones_heard};
use crate::support::callee::jmi_child;
use crate::support::caller::{CallSetup, Exchange, Press, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{gateway_config_with, wait_attached, within, Gateway, TempDir};

const GREETING: f64 = 500.0;
const FALLBACK: f64 = 1200.0;
const CALLER: f64 = 440.0;
const SALES: f64 = 660.0;

/// sales@ may be rung (`[outbound] allow`).
const ALLOW_SALES: &[(&str, &str)] = &[("GATEWAY_OUTBOUND_ALLOW", "sales@localhost")];

/// A desk whose key 1 rings sales@ (both devices), and whose fallback is a tone and goodbye.
fn desk(ring_timeout: &str) -> String {
    format!(
        r#"
[endpoints.desk]
kind = "ivr"
name = "Front desk"

[endpoints.desk.menus.main]
greeting = "tone:500:600ms"
timeout = "20s"

[endpoints.desk.menus.main.entries]
"1" = {{ action = "connect", targets = ["sales@localhost"], ring_timeout = "{ring_timeout}", no_answer = {{ action = "hangup", prompt = "tone:1200:1500ms" }} }}
"#
    )
}

fn press_one() -> Vec<(Duration, Press)> {
    vec![(Duration::from_millis(800), Press::Rfc4733('1'))]
}

/// The caller's tone against the last `seconds` of what was heard.
fn share_at_end(pcm: &[i16], hz: f64, seconds: usize) -> f64 {
    let tail = pcm.len().saturating_sub(seconds * 48_000);
    tone_share(&pcm[tail..], hz)
}

/// alice calls desk@, presses 1; sales@ has a phone and a laptop online; the phone answers
/// with `callee_codec` (and sends `callee_sends` if given), both talk, then the callee or the
/// caller hangs up.
async fn bridge(
    kind: Kind,
    caller_codec: &'static str,
    callee_codec: Codec,
    callee_sends: Option<(Codec, u8)>,
    callee_hangs_up: bool,
) {
    let server = Server::start(kind);
    let data = TempDir::new("gw");
    let gateway = Gateway::start(gateway_config_with(
        &server,
        &data,
        &desk("15s"),
        ALLOW_SALES,
    ));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut phone = TestCaller::device(server.c2s_port, "sales", "phone").await;
    let mut laptop = TestCaller::device(server.c2s_port, "sales", "laptop").await;
    phone.enable_carbons().await;
    laptop.enable_carbons().await;

    let mut call = alice
        .call("desk@gw.localhost", &CallSetup::only(caller_codec))
        .await
        .expect("alice's call");
    let caller_side = async {
        let plan = Exchange {
            duration: Duration::from_secs(14),
            tone_hz: CALLER as f32,
            script: press_one(),
            ..Exchange::default()
        };
        let heard = alice.exchange(&mut call, &plan).await;
        (heard, call)
    };
    let callee_side = async {
        let on_phone = phone
            .wait_propose(Duration::from_secs(10))
            .await
            .expect("the phone rings");
        let on_laptop = laptop
            .wait_propose(Duration::from_secs(5))
            .await
            .expect("the laptop rings");
        assert_eq!(on_phone.sid, on_laptop.sid, "one proposal to both devices");
        assert!(
            on_phone.from.starts_with("desk@gw.localhost/"),
            "{}",
            on_phone.from
        );
        phone.proceed(&on_phone).await;
        let mut answered = phone
            .answer(&[callee_codec], Duration::from_secs(10))
            .await
            .expect("session-initiate answered");
        // The laptop stops ringing: it sees its own user's proceed (carbons).
        let told = laptop
            .client
            .try_expect(Duration::from_secs(5), |s| {
                jmi_child(s, "proceed").is_some()
            })
            .await;
        assert!(
            told.is_some(),
            "the laptop was not told the call was answered"
        );
        let plan = Exchange {
            send_as: callee_sends,
            ..Exchange::tone(6, SALES as f32)
        };
        let heard = phone.exchange(&mut answered, &plan).await;
        (heard, answered)
    };
    let ((alice_heard, alice_call), (phone_heard, phone_call)) =
        tokio::join!(caller_side, callee_side);
    assert!(
        share_at_end(&phone_heard.pcm, CALLER, 3) > 0.5,
        "sales did not hear alice: {:?}",
        tones_heard(&phone_heard.pcm, &[CALLER, GREETING])
    );
    assert!(
        tones_heard(&alice_heard.pcm, &[GREETING, SALES]).contains(&SALES),
        "alice did not hear sales"
    );
    // This gateway's own counters: forwarded without a single encode, or all transcoded.
    let forwarded = MediaStats::get(&gateway.stats.bridge_forwarded);
    let transcoded = MediaStats::get(&gateway.stats.bridge_transcoded);
    if caller_codec.eq_ignore_ascii_case(callee_codec.name()) {
        assert!(
            forwarded > 100 && transcoded == 0,
            "forwarded {forwarded}, transcoded {transcoded}"
        );
    } else {
        assert!(
            transcoded > 100 && forwarded == 0,
            "forwarded {forwarded}, transcoded {transcoded}"
        );
    }

    if callee_hangs_up {
        phone.hang_up(phone_call).await;
        let reason = alice
            .wait_terminate(&alice_call.sid, Duration::from_secs(5))
            .await;
        assert_eq!(
            reason.as_deref(),
            Some("success"),
            "alice's call did not end"
        );
    } else {
        // alice's exchange ran on after the phone stopped: she hangs up, the phone is told.
        assert!(alice_heard.terminated.is_none());
        alice.hang_up(alice_call).await;
        let reason = phone
            .wait_terminate(&phone_call.sid, Duration::from_secs(5))
            .await;
        assert_eq!(
            reason.as_deref(),
            Some("success"),
            "the phone's call did not end"
        );
    }
    alice.close().await;
    phone.close().await;
    laptop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_bridges_the_device_that_answers_on_prosody() {
    within(120, bridge(Kind::Prosody, "opus", Codec::Opus, None, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_bridges_the_device_that_answers_on_ejabberd() {
    within(
        120,
        bridge(Kind::Ejabberd, "opus", Codec::Opus, None, false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcmu_caller_bridged_to_an_opus_callee_is_transcoded() {
    within(120, bridge(Kind::Prosody, "PCMU", Codec::Opus, None, true)).await;
}

/// How the person rung does not answer.
#[derive(Clone, Copy, Debug)]
enum NoAnswer {
    /// Online, lets it ring.
    Ignores,
    /// Declines.
    Rejects,
    /// Offline, and a subscriber of desk@ (so the gateway sees that).
    Offline,
}

/// alice presses 1 and hears the fallback; returns when she heard it (seconds after the key).
async fn fallback(how: NoAnswer) {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("gw");
    let _gateway = Gateway::start(gateway_config_with(
        &server,
        &data,
        &desk("4s"),
        ALLOW_SALES,
    ));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut sales = TestCaller::device(server.c2s_port, "sales", "phone").await;
    let mut sales = match how {
        NoAnswer::Offline => {
            sales
                .client
                .send_presence("desk@gw.localhost", "subscribe")
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            sales.close().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        }
        NoAnswer::Ignores | NoAnswer::Rejects => Some(sales),
    };
    let mut call = alice
        .call("desk@gw.localhost", &CallSetup::browser())
        .await
        .expect("alice's call");
    let caller_side = async {
        let plan = Exchange {
            duration: Duration::from_secs(9),
            tone_hz: CALLER as f32,
            script: press_one(),
            ..Exchange::default()
        };
        alice.exchange(&mut call, &plan).await
    };
    let callee_side = async {
        let Some(sales) = sales.as_mut() else {
            return;
        };
        match how {
            NoAnswer::Ignores => {
                let proposal = sales
                    .wait_propose(Duration::from_secs(5))
                    .await
                    .expect("rings");
                let retract = sales
                    .client
                    .try_expect(Duration::from_secs(8), |s| {
                        jmi_child(s, "retract").is_some()
                    })
                    .await;
                assert!(
                    retract.is_some(),
                    "the ringing was not withdrawn ({proposal:?})"
                );
            }
            NoAnswer::Rejects => {
                let proposal = sales
                    .wait_propose(Duration::from_secs(5))
                    .await
                    .expect("rings");
                sales.reject(&proposal).await;
            }
            NoAnswer::Offline => {}
        }
    };
    let (heard, ()) = tokio::join!(caller_side, callee_side);
    assert_eq!(
        heard.terminated.as_deref(),
        Some("success"),
        "{how:?}: the fallback hangs up"
    );
    let tones = tones_heard(&heard.pcm, &[GREETING, FALLBACK, CALLER]);
    assert!(
        tones.contains(&FALLBACK),
        "{how:?}: no fallback prompt, heard {tones:?}"
    );
    // Ignored: the 4 s ring time passes before the fallback; rejected or offline: at once.
    let fallback_ends = heard.pcm.len() as f64 / 48_000.0;
    match how {
        NoAnswer::Ignores => assert!(fallback_ends > 5.0, "fell back after {fallback_ends:.1} s"),
        NoAnswer::Rejects | NoAnswer::Offline => {
            assert!(
                fallback_ends < 4.5,
                "{how:?}: fell back after {fallback_ends:.1} s"
            )
        }
    }
    alice.close().await;
    if let Some(sales) = sales {
        sales.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_takes_the_fallback_after_the_ring_time() {
    within(90, fallback(NoAnswer::Ignores)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_takes_the_fallback_at_once() {
    within(90, fallback(NoAnswer::Rejects)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_takes_the_fallback_without_ringing() {
    within(90, fallback(NoAnswer::Offline)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_caller_bridged_to_a_pcmu_callee_is_transcoded() {
    within(120, bridge(Kind::Prosody, "opus", Codec::Pcmu, None, false)).await;
}

/// libwebrtc answering PCMU to our offer may go on sending Opus (numbered as our offer says):
/// the gateway takes it and the caller still hears the callee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_sending_another_offered_codec_is_still_heard() {
    let opus_as_offered = Some((Codec::Opus, 111));
    within(
        120,
        bridge(Kind::Prosody, "opus", Codec::Pcmu, opus_as_offered, true),
    )
    .await;
}

/// Placed calls are rate-limited per target: with one call a minute allowed to sales@, the
/// first caller rings sales (who declines); the second takes the fallback at once and nothing
/// rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_over_its_rate_limit_is_not_rung() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let limits = [
            ALLOW_SALES[0],
            ("GATEWAY_OUTBOUND_CALLS_PER_TARGET_PER_MINUTE", "1"),
        ];
        let _gateway = Gateway::start(gateway_config_with(&server, &data, &desk("4s"), &limits));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut sales = TestCaller::device(server.c2s_port, "sales", "phone").await;
        for round in 0..2 {
            let mut call = alice
                .call("desk@gw.localhost", &CallSetup::browser())
                .await
                .expect("alice's call");
            let plan = Exchange {
                duration: Duration::from_secs(6),
                tone_hz: CALLER as f32,
                script: press_one(),
                ..Exchange::default()
            };
            let caller_side = alice.exchange(&mut call, &plan);
            let callee_side = async {
                let proposal = sales.wait_propose(Duration::from_secs(4)).await;
                match (round, proposal) {
                    (0, Some(proposal)) => sales.reject(&proposal).await,
                    (0, None) => panic!("the first call did not ring sales"),
                    (_, Some(proposal)) => panic!("rung over the limit: {proposal:?}"),
                    (_, None) => {}
                }
            };
            let (heard, ()) = tokio::join!(caller_side, callee_side);
            let tones = tones_heard(&heard.pcm, &[GREETING, FALLBACK, CALLER]);
            assert!(
                tones.contains(&FALLBACK),
                "round {round}: no fallback, heard {tones:?}"
            );
        }
        alice.close().await;
        sales.close().await;
    })
    .await;
}
