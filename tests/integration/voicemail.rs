//! Voicemail through real servers: a caller leaves a message, the owner's client gets the chat
//! message with the recording's URL (the server's HTTP upload, or the gateway's own HTTP
//! server), fetches it, and it matches what was sent (length, and dominant frequency or the
//! speech's envelope). Then every way a message ends, a crash mid-message, and a full disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minidom::Element;

use crate::support::adhoc::{command, first_option, listed, NS_COMMANDS};
use crate::support::audio::{dominant_frequency, tones_heard};
use crate::support::callee::jmi_child;
use crate::support::caller::{speech_fixture, CallSetup, Exchange, Press, TestCaller};
use crate::support::client::XmppClient;
use crate::support::servers::{Kind, Server};
use crate::support::{
    gateway_config_with, wait_attached, within, Gateway, GatewayProcess, TempDir,
};

const NS_OOB: &str = "jabber:x:oob";
const NS_CLIENT: &str = "jabber:client";

/// Mailboxes for the tests; bob owns them all.
const MAILBOXES: &str = r###"
[endpoints.box]
kind = "voicemail"
owners = ["bob@localhost"]
greeting = "silence:20ms"
beep = false
max_length = "20s"

[endpoints.short]
kind = "voicemail"
owners = ["bob@localhost"]
greeting = "silence:20ms"
beep = false
max_length = "2s"

[endpoints.quiet]
kind = "voicemail"
owners = ["bob@localhost"]
greeting = "silence:20ms"
beep = false
silence_timeout = "2s"

[endpoints.greeted]
kind = "voicemail"
owners = ["bob@localhost"]
greeting = "tone:500:2s"
beep = true
"###;

/// What the owner's client got for one message.
struct Delivered {
    text: String,
    url: String,
}

/// Logs in the owner, bob.
async fn owner(server: &Server) -> XmppClient {
    XmppClient::login(server.c2s_port, "bob", "phone").await
}

/// Waits for the two messages of a voicemail from `mailbox`: the text, then the attachment.
async fn delivered(bob: &mut XmppClient, mailbox: &str, timeout: Duration) -> Delivered {
    let from = format!("{mailbox}@gw.localhost");
    let is_from = |s: &Element, attachment: bool| {
        s.name() == "message"
            && s.attr("from") == Some(from.as_str())
            && s.has_child("body", NS_CLIENT)
            && s.has_child("x", NS_OOB) == attachment
    };
    let text = bob
        .expect("voicemail text", timeout, |s| is_from(s, false))
        .await;
    let attachment = bob
        .expect("voicemail attachment", Duration::from_secs(5), |s| {
            is_from(s, true)
        })
        .await;
    let body = |s: &Element| s.get_child("body", NS_CLIENT).map(|b| b.text());
    let oob = attachment
        .get_child("x", NS_OOB)
        .and_then(|x| x.get_child("url", NS_OOB))
        .map(|u| u.text())
        .expect("oob url");
    assert_eq!(
        body(&attachment).as_deref(),
        Some(oob.as_str()),
        "clients show an attachment when the body is its URL"
    );
    Delivered {
        text: body(&text).unwrap_or_default(),
        url: oob,
    }
}

/// Fetches `url` over HTTP (GET, or HEAD) with optional headers; returns status, headers and body.
async fn fetch(
    url: &str,
    head: bool,
    range: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let url = url.to_string();
    let range = range.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let response = if head {
            agent.head(&url).call()
        } else {
            let mut request = agent.get(&url);
            if let Some(range) = &range {
                request = request.header("Range", range);
            }
            request.call()
        }
        .expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = if head {
            Vec::new()
        } else {
            response.into_body().read_to_vec().expect("body")
        };
        (status, headers, body)
    })
    .await
    .expect("fetch task")
}

/// The messages (recording, metadata) stored in a mailbox directory.
fn stored(data: &TempDir, mailbox: &str) -> Vec<(PathBuf, serde_json::Value)> {
    stored_in(&data.path().join("voicemail").join(mailbox))
}

fn stored_in(dir: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("metadata")).expect("json");
            let recording = dir
                .join(meta["id"].as_str().unwrap_or_default())
                .with_extension(if meta["format"] == "wav" {
                    "wav"
                } else {
                    "ogg"
                });
            found.push((recording, meta));
        }
    }
    found
}

/// Decodes a recording to 48 kHz mono.
fn decode(bytes: &[u8], extension: &str) -> Vec<i16> {
    jingle_gateway::prompt::decode::decode(bytes, Some(extension), 600).expect("recording decodes")
}

fn seconds(samples: &[i16]) -> f64 {
    samples.len() as f64 / 48_000.0
}

/// RMS per 20 ms frame.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks_exact(960)
        .map(|c| (c.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / 960.0).sqrt())
        .collect()
}

/// The best Pearson correlation of `recorded`'s envelope against `sent`'s, over lags up to 1 s.
fn envelope_match(sent: &[i16], recorded: &[i16]) -> f64 {
    let (a, b) = (envelope(sent), envelope(recorded));
    let mut best: f64 = -1.0;
    for lag in 0..50 {
        let n = b.len().min(a.len().saturating_sub(lag));
        if n < 50 {
            break;
        }
        let x = &a[lag..lag + n];
        let y = &b[..n];
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mx, my) = (mean(x), mean(y));
        let cov: f64 = x.iter().zip(y).map(|(p, q)| (p - mx) * (q - my)).sum();
        let vx: f64 = x.iter().map(|p| (p - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|q| (q - my).powi(2)).sum();
        best = best.max(cov / (vx * vy).sqrt());
    }
    best
}

/// How a message's recording reaches its owner.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// The server's upload service.
    Upload,
    /// The gateway's own server, there being no upload (`voicemail.upload = "off"`).
    Gateway,
    /// The gateway's own server, the mailbox asking for it (`delivery = "gateway"`) beside an
    /// upload service (whose files the server may delete after a while).
    GatewayChosen,
}

/// One message end to end: `codec`, `format`, by upload or the gateway's own server.
async fn message_reaches_the_owner(kind: Kind, codec: &'static str, format: &str, via: Via) {
    let server = Server::start(kind);
    let data = TempDir::new("gw");
    let extra = [(
        "GATEWAY_VOICEMAIL_UPLOAD",
        if via == Via::Gateway { "off" } else { "auto" },
    )];
    let delivery = if via == Via::GatewayChosen {
        "delivery = \"gateway\"\n"
    } else {
        ""
    };
    let tables = MAILBOXES.replace(
        "[endpoints.box]\n",
        &format!("[endpoints.box]\nformat = \"{format}\"\n{delivery}"),
    );
    let upload = via == Via::Upload;
    let gateway = Gateway::start(gateway_config_with(&server, &data, &tables, &extra));
    let mut bob = owner(&server).await;
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let speech = codec == "opus" && format == "ogg-opus";
    let what = format!("{kind:?} {codec} {format} {via:?}");
    let mut call = alice
        .call("box@gw.localhost", &CallSetup::only(codec))
        .await
        .expect("call");
    let sent = Duration::from_secs(5);
    let plan = Exchange {
        speech,
        ..Exchange::tone(sent.as_secs(), 440.0)
    };
    let received = alice.exchange(&mut call, &plan).await;
    assert!(received.terminated.is_none(), "{what}: {received:?}");
    alice.hang_up(call).await;

    let message = delivered(&mut bob, "box", Duration::from_secs(20)).await;
    assert!(
        message
            .text
            .starts_with("Voicemail from alice@localhost, 0:05,"),
        "{what}: {}",
        message.text
    );
    let http_port = server.http_port.to_string();
    assert_eq!(
        message.url.contains(&format!("127.0.0.1:{http_port}/")),
        upload,
        "{what}: {} (server's HTTP port {http_port})",
        message.url
    );
    // The message is marked delivered once sent: the owner may see it a moment before.
    let mut messages = stored(&data, "box");
    for _ in 0..100 {
        if messages.len() == 1 && messages[0].1["delivered"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        messages = stored(&data, "box");
    }
    assert_eq!(messages.len(), 1, "{what}");
    let (path, meta) = &messages[0];
    assert_eq!(meta["delivered"], true, "{what}");
    assert_eq!(
        meta["caller"]
            .as_str()
            .map(|c| c.starts_with("alice@localhost/")),
        Some(true)
    );
    let file = std::fs::read(path).expect("recording");
    let (status, _, body) = fetch(&message.url, false, None).await;
    assert_eq!(status, 200, "{what}");
    assert!(body == file, "{what}: the owner fetches the stored file");

    let extension = if format == "wav" { "wav" } else { "ogg" };
    let audio = decode(&file, extension);
    let length = seconds(&audio);
    assert!(
        (length - sent.as_secs_f64()).abs() <= 0.2,
        "{what}: recorded {length:.3} s of {sent:?} sent"
    );
    eprintln!(
        "MEASURE {what}: recorded {length:.3} s, url {}",
        message.url
    );
    let metadata_length = meta["duration_ms"].as_f64().unwrap_or_default() / 1000.0;
    assert!((metadata_length - length).abs() < 0.05, "{what}: {meta}");
    if speech {
        let matched = envelope_match(&speech_fixture(), &audio);
        eprintln!("MEASURE {what}: envelope correlation {matched:.3}");
        assert!(
            matched > 0.8,
            "{what}: speech envelope correlation {matched:.2}"
        );
    } else {
        let (hz, share) = dominant_frequency(&audio[..audio.len() - 24_000], 3.0);
        assert!(
            (hz - 440.0).abs() <= 10.0 && share > 0.5,
            "{what}: {hz} Hz ({share:.2})"
        );
    }
    if !upload {
        // The gateway's own server: HEAD gives the size, a range gives part of the file.
        let (status, headers, _) = fetch(&message.url, true, None).await;
        assert_eq!(status, 200);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("content-length"), Some(file.len().to_string()));
        let (status, _, part) = fetch(&message.url, false, Some("bytes=10-19")).await;
        assert_eq!((status, &part[..]), (206, &file[10..20]));
        let wrong = message.url.replace("/voicemail/", "/voicemail/0");
        assert_eq!(fetch(&wrong, false, None).await.0, 404);
    }
    gateway.stop().await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_speech_by_upload_on_prosody() {
    within(
        90,
        message_reaches_the_owner(Kind::Prosody, "opus", "ogg-opus", Via::Upload),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_tone_served_by_the_gateway_on_prosody() {
    within(
        90,
        message_reaches_the_owner(Kind::Prosody, "PCMU", "ogg-opus", Via::Gateway),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_may_choose_the_gateway_beside_an_upload_service() {
    within(
        90,
        message_reaches_the_owner(Kind::Prosody, "opus", "ogg-opus", Via::GatewayChosen),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_wav_by_upload_on_ejabberd() {
    within(
        90,
        message_reaches_the_owner(Kind::Ejabberd, "PCMU", "wav", Via::Upload),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_wav_served_by_the_gateway_on_ejabberd() {
    within(
        90,
        message_reaches_the_owner(Kind::Ejabberd, "opus", "wav", Via::Gateway),
    )
    .await;
}

/// `#`, max length, silence, too short, a hang-up during the greeting, and greeting + beep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_message_ends() {
    within(150, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config_with(&server, &data, MAILBOXES, &[]));
        let mut bob = owner(&server).await;
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let pcmu = CallSetup::only("PCMU");

        // `#` ends the message; the gateway says so and hangs up.
        let mut call = alice.call("box@gw.localhost", &pcmu).await.expect("call");
        let plan = Exchange {
            script: vec![(Duration::from_millis(2500), Press::Rfc4733('#'))],
            ..Exchange::tone(8, 440.0)
        };
        let received = alice.exchange(&mut call, &plan).await;
        assert_eq!(received.terminated.as_deref(), Some("success"), "#");
        alice.vanish(call).await;
        let message = delivered(&mut bob, "box", Duration::from_secs(10)).await;
        assert!(
            message.text.contains(", 0:02,") || message.text.contains(", 0:03,"),
            "{}",
            message.text
        );
        let (_, meta) = &stored(&data, "box")[0];
        assert_eq!(meta["ending"], "key");
        let length = meta["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!((length - 2.5).abs() < 0.3, "# at 2.5 s, recorded {length}");

        // max_length (2 s): recording stops, the caller is told and the call ends.
        let mut call = alice.call("short@gw.localhost", &pcmu).await.expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(10, 440.0)).await;
        assert_eq!(
            received.terminated.as_deref(),
            Some("success"),
            "max length"
        );
        alice.vanish(call).await;
        delivered(&mut bob, "short", Duration::from_secs(10)).await;
        let (_, meta) = &stored(&data, "short")[0];
        assert_eq!(meta["ending"], "max-length");
        let length = meta["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!((length - 2.0).abs() < 0.1, "max 2 s, recorded {length}");

        // Silence (2 s) after speech ends the message.
        let mut call = alice
            .call("quiet@gw.localhost", &CallSetup::only("opus"))
            .await
            .expect("call");
        let plan = Exchange {
            speech: true,
            ..Exchange::tone(3, 440.0)
        };
        let received = alice.exchange(&mut call, &plan).await;
        assert!(received.terminated.is_none());
        let reason = alice
            .wait_terminate(&call.sid, Duration::from_secs(10))
            .await;
        assert_eq!(reason.as_deref(), Some("success"), "silence");
        alice.vanish(call).await;
        delivered(&mut bob, "quiet", Duration::from_secs(10)).await;
        let (_, meta) = &stored(&data, "quiet")[0];
        assert_eq!(meta["ending"], "silence");

        // Shorter than min_length (1 s): nothing kept, nothing sent.
        let mut call = alice.call("box@gw.localhost", &pcmu).await.expect("call");
        let plan = Exchange {
            duration: Duration::from_millis(500),
            tone_hz: 440.0,
            ..Exchange::default()
        };
        alice.exchange(&mut call, &plan).await;
        alice.hang_up(call).await;

        // Hanging up during the greeting leaves nothing either; the greeting was heard.
        let mut call = alice
            .call("greeted@gw.localhost", &pcmu)
            .await
            .expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(1, 300.0)).await;
        assert_eq!(tones_heard(&received.pcm, &[500.0, 1000.0]), [500.0]);
        alice.hang_up(call).await;

        // Greeting, beep, then the message.
        let mut call = alice
            .call("greeted@gw.localhost", &pcmu)
            .await
            .expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(5, 300.0)).await;
        assert_eq!(
            tones_heard(&received.pcm, &[500.0, 1000.0]),
            [500.0, 1000.0],
            "greeting, then beep"
        );
        alice.hang_up(call).await;
        delivered(&mut bob, "greeted", Duration::from_secs(10)).await;
        let greeted = stored(&data, "greeted");
        assert_eq!(
            greeted.len(),
            1,
            "only the call that got past the beep left a message"
        );
        assert_eq!(
            greeted[0].1["ending"], "hung-up",
            "the call ended by the caller"
        );
        let length = greeted[0].1["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!(
            (length - 2.75).abs() < 0.3,
            "5 s call, 2.25 s greeting and beep: {length}"
        );

        assert_eq!(
            stored(&data, "box").len(),
            1,
            "the too-short message was not kept"
        );
        let extra = bob
            .try_expect(Duration::from_secs(1), |s| s.name() == "message")
            .await;
        assert!(extra.is_none(), "unexpected: {extra:?}");
        gateway.stop().await;
        alice.close().await;
        bob.close().await;
    })
    .await;
}

/// Killed with SIGKILL mid-message: the next start finishes the recording and delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cut_by_a_crash_is_recovered_and_delivered() {
    within(120, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let extra = [("GATEWAY_VOICEMAIL_UPLOAD", "off")];
        let mut gateway = GatewayProcess::start(&server, &data, MAILBOXES, &extra, None);
        let mut bob = owner(&server).await;
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("box@gw.localhost", &CallSetup::only("opus"))
            .await
            .expect("call");
        alice.exchange(&mut call, &Exchange::tone(4, 440.0)).await;
        gateway.kill();
        alice.vanish(call).await;
        let parts: Vec<_> = std::fs::read_dir(data.path().join("voicemail/box"))
            .expect("mailbox")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ogg.part"))
            .collect();
        assert_eq!(parts.len(), 1, "the crash left the recording unfinished");

        let restarted = GatewayProcess::start(&server, &data, MAILBOXES, &extra, None);
        let message = delivered(&mut bob, "box", Duration::from_secs(20)).await;
        assert!(
            message
                .text
                .ends_with("Recovered after the gateway restarted."),
            "{}\n{}",
            message.text,
            restarted.log()
        );
        let (status, _, body) = fetch(&message.url, false, None).await;
        assert_eq!(status, 200);
        let audio = decode(&body, "ogg");
        // Pages are written once a second: at most the last second is lost.
        let length = seconds(&audio);
        eprintln!("MEASURE crash: recovered {length:.3} s of 4 s");
        assert!(
            (2.9..=4.1).contains(&length),
            "recovered {length:.2} s of 4 s"
        );
        let (hz, _) = dominant_frequency(&audio, 1.5);
        assert!((hz - 440.0).abs() <= 10.0, "{hz}");
        let (_, meta) = &stored(&data, "box")[0];
        assert_eq!(meta["ending"], "interrupted");
        drop(restarted);
        alice.close().await;
        bob.close().await;
    })
    .await;
}

/// A full disk mid-message: that recording ends cleanly (the caller is told why, the file is
/// valid and delivered), while another call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_one_recording_and_spares_other_calls() {
    within(120, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let tiny = data.path().join("tiny");
        let tables = format!(
            "{MAILBOXES}\n[endpoints.tiny]\nkind = \"voicemail\"\nowners = [\"bob@localhost\"]\n\
             greeting = \"silence:20ms\"\nbeep = false\ndirectory = \"{}\"\n",
            tiny.display()
        );
        let extra = [("GATEWAY_VOICEMAIL_UPLOAD", "off")];
        let gateway = GatewayProcess::start(&server, &data, &tables, &extra, Some((&tiny, "24k")));
        let mut bob = owner(&server).await;
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        let mut carol = TestCaller::new(server.c2s_port, "carol").await;
        wait_attached(&mut alice.client).await;
        let mut message_call = alice
            .call("tiny@gw.localhost", &CallSetup::only("opus"))
            .await
            .expect("call");
        let mut echo_call = carol
            .call("echo@gw.localhost", &CallSetup::only("opus"))
            .await
            .expect("echo call");
        let (long, shorter) = (Exchange::tone(20, 440.0), Exchange::tone(14, 660.0));
        let (recorded, echoed) = tokio::join!(
            alice.exchange(&mut message_call, &long),
            carol.exchange(&mut echo_call, &shorter),
        );
        assert_eq!(
            recorded.terminated.as_deref(),
            Some("failed-application"),
            "the caller is told: {}",
            gateway.log()
        );
        assert!(echoed.terminated.is_none(), "the echo call goes on");
        let (hz, _) = dominant_frequency(&echoed.pcm, 1.0);
        assert!(
            (hz - 660.0).abs() <= 10.0,
            "echo still heard at the end: {hz}"
        );
        assert!(echoed.packets > 600, "echo packets: {}", echoed.packets);
        alice.vanish(message_call).await;
        carol.hang_up(echo_call).await;

        let message = delivered(&mut bob, "tiny", Duration::from_secs(10)).await;
        assert!(message.text.contains("storage is full"), "{}", message.text);
        let (status, _, body) = fetch(&message.url, false, None).await;
        assert_eq!(status, 200);
        let audio = decode(&body, "ogg");
        eprintln!(
            "MEASURE full disk: kept {:.3} s; echo call got {} packets",
            seconds(&audio),
            echoed.packets
        );
        assert!(seconds(&audio) > 2.0, "kept {:.2} s", seconds(&audio));
        let (hz, _) = dominant_frequency(&audio, 1.0);
        assert!((hz - 440.0).abs() <= 10.0, "{hz}");
        drop(gateway);
        alice.close().await;
        carol.close().await;
        bob.close().await;
    })
    .await;
}

/// The owner calls the mailbox (plays, deletes with keys) and manages it with ad-hoc commands;
/// others see no commands and are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_listens_lists_and_deletes() {
    within(150, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config_with(&server, &data, MAILBOXES, &[]));
        let mut bob = TestCaller::new(server.c2s_port, "bob").await;
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        for hz in [440.0, 660.0] {
            let mut call = alice
                .call("box@gw.localhost", &CallSetup::only("PCMU"))
                .await
                .expect("call");
            alice.exchange(&mut call, &Exchange::tone(2, hz)).await;
            alice.hang_up(call).await;
            delivered(&mut bob.client, "box", Duration::from_secs(10)).await;
        }

        // Commands: bob sees two, alice none and is refused.
        let items_query = Element::builder("query", "http://jabber.org/protocol/disco#items")
            .attr(minidom::rxml::xml_ncname!("node").to_owned(), NS_COMMANDS)
            .build();
        let items = bob
            .client
            .iq("box@gw.localhost", "get", items_query.clone())
            .await;
        let nodes: Vec<String> = items
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .map(|q| {
                q.children()
                    .filter_map(|i| i.attr("node"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(nodes, ["list", "delete"]);
        let items = alice
            .client
            .iq("box@gw.localhost", "get", items_query)
            .await;
        assert!(
            !String::from(&items).contains("node=\"list\""),
            "{}",
            String::from(&items)
        );
        let refused = alice
            .client
            .iq(
                "box@gw.localhost",
                "set",
                command("list", None, "messages", &[]),
            )
            .await;
        assert_eq!(refused.attr("type"), Some("error"));
        assert!(String::from(&refused).contains("forbidden"));

        let list = bob
            .client
            .iq(
                "box@gw.localhost",
                "set",
                command("list", None, "messages", &[]),
            )
            .await;
        let rows = listed(&list);
        assert_eq!(rows.len(), 2, "{}", String::from(&list));
        assert!(String::from(&list).contains("2 messages, 2 new."));

        // Bob calls his mailbox: 1 plays the first message, 7 deletes it (the next one plays),
        // # says goodbye.
        let mut call = bob
            .call("box@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("owner's call");
        let plan = Exchange {
            script: vec![
                (Duration::from_millis(1000), Press::Rfc4733('1')),
                (Duration::from_millis(5000), Press::Rfc4733('7')),
                (Duration::from_millis(10_500), Press::Rfc4733('#')),
            ],
            ..Exchange::tone(14, 300.0)
        };
        let received = bob.exchange(&mut call, &plan).await;
        assert_eq!(
            tones_heard(&received.pcm, &[440.0, 660.0]),
            [440.0, 660.0],
            "the first message, then (after deleting it) the second"
        );
        assert_eq!(received.terminated.as_deref(), Some("success"), "goodbye");
        bob.vanish(call).await;

        let list = bob
            .client
            .iq(
                "box@gw.localhost",
                "set",
                command("list", None, "messages", &[]),
            )
            .await;
        let rows = listed(&list);
        assert_eq!(rows.len(), 1, "{}", String::from(&list));
        assert!(
            rows[0].contains(&("heard".to_string(), "yes".to_string())),
            "{rows:?}"
        );

        // Delete the rest with the command: a form, then the submitted choice.
        let form = bob
            .client
            .iq(
                "box@gw.localhost",
                "set",
                command("delete", None, "messages", &[]),
            )
            .await;
        let command_element = form.get_child("command", NS_COMMANDS).expect("command");
        assert_eq!(command_element.attr("status"), Some("executing"));
        let (session, option) = first_option(&form);
        let done = bob
            .client
            .iq(
                "box@gw.localhost",
                "set",
                command("delete", Some(&session), "messages", &[&option]),
            )
            .await;
        assert!(
            String::from(&done).contains("Deleted 1 message."),
            "{}",
            String::from(&done)
        );
        assert!(stored(&data, "box").is_empty());
        let files = std::fs::read_dir(data.path().join("voicemail/box"))
            .expect("dir")
            .count();
        assert_eq!(files, 0, "recordings are gone too");
        gateway.stop().await;
        alice.close().await;
        bob.close().await;
    })
    .await;
}

/// An IVR entry hands the caller to a mailbox without redialling; the message is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_hands_the_caller_to_a_mailbox() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let menu = r###"
[endpoints.front]
kind = "ivr"
[endpoints.front.menus.main]
greeting = "tone:700:3s"
[endpoints.front.menus.main.entries]
"9" = { action = "transfer", to = "box" }
"###;
        let tables = format!("{MAILBOXES}{menu}");
        let gateway = Gateway::start(gateway_config_with(&server, &data, &tables, &[]));
        let mut bob = owner(&server).await;
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("front@gw.localhost", &CallSetup::only("PCMU"))
            .await
            .expect("call");
        let plan = Exchange {
            script: vec![(Duration::from_millis(1000), Press::Rfc4733('9'))],
            ..Exchange::tone(5, 440.0)
        };
        let received = alice.exchange(&mut call, &plan).await;
        assert_eq!(tones_heard(&received.pcm, &[700.0]), [700.0], "the menu");
        alice.hang_up(call).await;
        let message = delivered(&mut bob, "box", Duration::from_secs(10)).await;
        assert!(message.text.starts_with("Voicemail from alice@localhost"));
        let (_, meta) = &stored(&data, "box")[0];
        let length = meta["duration_ms"].as_f64().unwrap_or_default() / 1000.0;
        assert!(
            (3.5..=4.2).contains(&length),
            "recorded after the hand-over: {length}"
        );
        gateway.stop().await;
        alice.close().await;
        bob.close().await;
    })
    .await;
}

/// alice calls `called` with `script` of key presses; bob's phone rings and is left ringing
/// until the gateway withdraws it; then alice is recorded in `mailbox` and the message reaches
/// bob. Returns what alice heard.
async fn unanswered_then_recorded(
    tables: &str,
    called: &str,
    mailbox: &str,
    script: Vec<(Duration, Press)>,
) -> Vec<i16> {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("gw");
    let allow_bob = [("GATEWAY_OUTBOUND_ALLOW", "bob@localhost")];
    let gateway = Gateway::start(gateway_config_with(&server, &data, tables, &allow_bob));
    let mut bob = owner(&server).await;
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut call = alice
        .call(&format!("{called}@gw.localhost"), &CallSetup::only("opus"))
        .await
        .expect("call");
    let plan = Exchange {
        script,
        ..Exchange::tone(9, 440.0)
    };
    let caller_side = alice.exchange(&mut call, &plan);
    let owner_side = async {
        let propose = bob
            .expect("bob's phone rings", Duration::from_secs(10), |s| {
                jmi_child(s, "propose").is_some()
            })
            .await;
        let from = propose.attr("from").unwrap_or_default();
        assert!(
            from.starts_with(&format!("{called}@gw.localhost/")),
            "{from}"
        );
        bob.expect("the ringing is withdrawn", Duration::from_secs(8), |s| {
            jmi_child(s, "retract").is_some()
        })
        .await;
    };
    let (heard, ()) = tokio::join!(caller_side, owner_side);
    assert!(heard.terminated.is_none(), "{heard:?}");
    alice.hang_up(call).await;
    let message = delivered(&mut bob, mailbox, Duration::from_secs(10)).await;
    assert!(
        message.text.starts_with("Voicemail from alice@localhost"),
        "{}",
        message.text
    );
    let (_, meta) = &stored(&data, mailbox)[0];
    let length = meta["duration_ms"].as_f64().unwrap_or_default() / 1000.0;
    assert!(
        (4.0..=6.0).contains(&length),
        "recorded after the 3 s of ringing: {length}"
    );
    gateway.stop().await;
    alice.close().await;
    bob.close().await;
    heard.pcm
}

/// A mailbox with follow-me rings its owner first; nobody answers, so after the ring time the
/// caller hears the greeting and leaves a message, which is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_me_rings_the_owner_and_records_when_nobody_answers() {
    within(90, async {
        let tables = r###"
[endpoints.desk]
kind = "voicemail"
owners = ["bob@localhost"]
greeting = "tone:500:1s"
beep = false

[endpoints.desk.follow_me]
ring_timeout = "3s"
ringback = "tone:900:400ms"
"###;
        let heard = unanswered_then_recorded(tables, "desk", "desk", Vec::new()).await;
        // Ringback, then the greeting.
        assert_eq!(tones_heard(&heard, &[900.0, 500.0]), [900.0, 500.0]);
    })
    .await;
}

/// An IVR `connect` whose target does not answer falls back to a mailbox: the caller leaves a
/// message there, and it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_connect_falls_back_to_voicemail() {
    within(90, async {
        let menu = r###"
[endpoints.front]
kind = "ivr"
[endpoints.front.menus.main]
greeting = "tone:700:600ms"
timeout = "20s"
[endpoints.front.menus.main.entries]
"1" = { action = "connect", targets = ["bob@localhost"], ring_timeout = "3s", ringback = "tone:900:400ms", no_answer = { action = "transfer", to = "box" } }
"###;
        let tables = format!("{MAILBOXES}{menu}");
        let press_one = vec![(Duration::from_millis(800), Press::Rfc4733('1'))];
        let heard = unanswered_then_recorded(&tables, "front", "box", press_one).await;
        assert_eq!(tones_heard(&heard, &[700.0, 900.0]), [700.0, 900.0]);
    })
    .await;
}
