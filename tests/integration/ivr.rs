//! The IVR through a real Prosody: navigating a menu from config with RFC 4733 events, in-band
//! tones and chat digits; barge-in; invalid entries, timeouts and what happens when they run
//! out; digits sent by chat; hand-over to another virtual JID; speech that makes no digits.
//! Every prompt is a distinct tone, so what the caller hears says which prompt played.

use std::time::Duration;

use crate::calls::assert_tone;
use crate::support::audio::{tone_sequence, tones_heard};
use crate::support::caller::{CallSetup, Exchange, Press, Received, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{gateway_config_with, wait_attached, within, Gateway, TempDir};

const GREETING: f64 = 500.0;
const SHORT: f64 = 550.0;
const INVALID: f64 = 700.0;
const SUB: f64 = 800.0;
const PLAYED: f64 = 900.0;
const SENT: f64 = 950.0;
const GOODBYE: f64 = 1000.0;
/// The caller's own tone (heard back only once handed over to echo@).
const CALLER: f64 = 300.0;
const ALL: [f64; 8] = [GREETING, SHORT, INVALID, SUB, PLAYED, SENT, GOODBYE, CALLER];

/// A menu whose every prompt is a tone.
const MENU: &str = r###"
[endpoints.menu]
kind = "ivr"
name = "Test menu"

[endpoints.menu.menus.main]
greeting = "tone:500:1500ms"
short_greeting = "tone:550:800ms"
invalid = "tone:700:500ms"
timeout = "2s"
max_failures = 2
max_timeouts = 2
on_failure = { action = "hangup", prompt = "tone:1000:500ms" }

[endpoints.menu.menus.main.entries]
"1" = { action = "play", prompt = "tone:900:600ms" }
"2" = { action = "menu", menu = "sub" }
"8" = { action = "transfer", to = "echo" }

[endpoints.menu.menus.sub]
greeting = "tone:800:800ms"
max_digits = 4
terminator = "#"
inter_digit_timeout = "3s"

[endpoints.menu.menus.sub.entries]
"*" = { action = "back" }
"_X!" = { action = "send_digits", to = "alice@localhost", prompt = "tone:950:500ms" }
"###;

fn at(ms: u64, press: Press) -> (Duration, Press) {
    (Duration::from_millis(ms), press)
}

/// Calls menu@ and runs `script` for `seconds`.
async fn run_menu(script: Vec<(Duration, Press)>, seconds: u64, speech: bool) -> Received {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("gw");
    let gateway = Gateway::start(gateway_config_with(&server, &data, MENU, &[]));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut call = alice
        .call("menu@gw.localhost", &CallSetup::browser())
        .await
        .expect("call");
    let plan = Exchange {
        duration: Duration::from_secs(seconds),
        tone_hz: CALLER as f32,
        script,
        speech,
        ..Exchange::default()
    };
    let received = alice.exchange(&mut call, &plan).await;
    if received.terminated.is_none() {
        alice.hang_up(call).await;
    } else {
        alice.vanish(call).await;
    }
    gateway.stop().await;
    alice.close().await;
    received
}

/// The same walk through the menus with keys pressed one way.
fn walk(press: fn(char) -> Press) -> Vec<(Duration, Press)> {
    vec![
        at(500, press('1')),  // barge into the greeting: play
        at(2300, press('2')), // after play and the short greeting: the sub-menu
        at(3600, press('*')), // back to main
        at(5600, press('8')), // hand over to echo@
    ]
}

async fn navigate(press: fn(char) -> Press, how: &str) {
    let received = run_menu(walk(press), 8, false).await;
    let heard = tone_sequence(&received.pcm, &ALL);
    let tones: Vec<f64> = heard.iter().map(|(hz, _)| *hz).collect();
    assert_eq!(
        tones,
        [GREETING, PLAYED, SHORT, SUB, GREETING, CALLER],
        "{how}: heard {heard:?}"
    );
    // Barge-in: the first greeting (1.5 s) was cut by the key at 0.5 s.
    assert!(
        heard[0].1 <= 8,
        "{how}: the greeting was not interrupted: {heard:?}"
    );
    assert!(received.terminated.is_none(), "{how}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_with_rfc4733_keys() {
    within(60, navigate(Press::Rfc4733, "RFC 4733")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_with_inband_tones() {
    within(60, navigate(Press::Inband, "in-band")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_with_chat_digits() {
    within(
        60,
        navigate(
            |k| {
                Press::Chat(match k {
                    '1' => "1",
                    '2' => "2",
                    '*' => "*",
                    _ => "8",
                })
            },
            "chat",
        ),
    )
    .await;
}

/// Invalid entries run out into on_failure: goodbye and hang-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_end_with_goodbye() {
    within(60, async {
        let script = vec![at(1800, Press::Rfc4733('7')), at(3300, Press::Rfc4733('7'))];
        let received = run_menu(script, 8, false).await;
        assert_eq!(
            tones_heard(&received.pcm, &ALL),
            [GREETING, INVALID, SHORT, GOODBYE]
        );
        assert_eq!(received.terminated.as_deref(), Some("success"));
    })
    .await;
}

/// A caller who says nothing gets the short greeting after each timeout, then goodbye. The
/// caller speaks all along: speech makes no digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_end_with_goodbye_and_speech_makes_no_digits() {
    within(60, async {
        let received = run_menu(Vec::new(), 10, true).await;
        assert_eq!(tones_heard(&received.pcm, &ALL), [GREETING, SHORT, GOODBYE]);
        assert_eq!(received.terminated.as_deref(), Some("success"));
    })
    .await;
}

/// Keys typed in the sub-menu go to the configured JID as a chat message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_are_sent_by_chat() {
    within(60, async {
        let script = vec![
            at(300, Press::Rfc4733('2')),
            at(1500, Press::Rfc4733('4')),
            at(1800, Press::Rfc4733('2')),
            at(2100, Press::Rfc4733('#')),
        ];
        let received = run_menu(script, 5, false).await;
        assert_eq!(tones_heard(&received.pcm, &ALL)[..3], [GREETING, SUB, SENT]);
        let sent: Vec<&(String, String)> = received
            .messages
            .iter()
            .filter(|(from, _)| from.starts_with("menu@gw.localhost"))
            .collect();
        assert_eq!(sent.len(), 1, "{:?}", received.messages);
        assert_eq!(sent[0].1, "42");
    })
    .await;
}

/// After the hand-over the caller is in the echo endpoint: its own tone comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_to_another_virtual_jid() {
    within(60, async {
        let received = run_menu(vec![at(300, Press::Rfc4733('8'))], 4, false).await;
        let tail = Received {
            pcm: received.pcm[received.pcm.len().saturating_sub(96_000)..].to_vec(),
            ..Received::default()
        };
        assert_tone(&tail, CALLER, "echo after the hand-over");
    })
    .await;
}
