//! The gateway attached to a real Prosody and a real ejabberd: a callable contact (presence with
//! caps matching disco), every IQ answered, XEP-0353 ringing, refusals, reconnection, a wrong
//! secret, and graceful shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use minidom::Element;
use xmpp_parsers::caps::{compute_disco, hash_caps};
use xmpp_parsers::hashes::Algo;

use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::client::{XmppClient, NS_CLIENT};
use crate::support::servers::{stop_process, Kind, Server, COMPONENT};
use crate::support::{
    gateway_config, gateway_config_with, wait_attached, within, Gateway, TempDir,
};

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_JMI: &str = "urn:xmpp:jingle-message:0";

fn query(ns: &str) -> Element {
    Element::builder("query", ns).build()
}

fn error_condition(answer: &Element) -> String {
    answer
        .get_child("error", NS_CLIENT)
        .and_then(|e| e.children().next())
        .map(|c| c.name().to_string())
        .unwrap_or_default()
}

async fn callable_contact(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw");
    let gateway = Gateway::start(gateway_config(&server, &data, &[]));
    let mut alice = XmppClient::login(server.c2s_port, "alice", "phone").await;
    wait_attached(&mut alice).await;

    // Subscribing: subscribed, a subscription back, and available presence with caps.
    alice.send_presence("echo@gw.localhost", "subscribe").await;
    let from_echo = |type_: Option<&'static str>| {
        move |s: &Element| {
            s.name() == "presence"
                && s.attr("from")
                    .is_some_and(|f| f.starts_with("echo@gw.localhost"))
                && s.attr("type") == type_
        }
    };
    let wait = Duration::from_secs(10);
    alice
        .expect("subscribed", wait, from_echo(Some("subscribed")))
        .await;
    alice
        .expect("subscribe back", wait, from_echo(Some("subscribe")))
        .await;
    let available = alice
        .expect("available presence", wait, from_echo(None))
        .await;
    let caps = available.get_child("c", NS_CAPS).expect("caps in presence");
    let ver = caps.attr("ver").expect("caps ver").to_string();

    // disco#info matches the caps, with the Jingle audio features and no video.
    let info = alice
        .iq("echo@gw.localhost", "get", query(NS_DISCO_INFO))
        .await;
    assert_eq!(info.attr("type"), Some("result"));
    let info_query = info
        .get_child("query", NS_DISCO_INFO)
        .expect("disco result")
        .clone();
    let features: Vec<String> = info_query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var").map(str::to_string))
        .collect();
    for needed in [
        "urn:xmpp:jingle:1",
        "urn:xmpp:jingle:apps:rtp:1",
        "urn:xmpp:jingle:apps:rtp:audio",
        "urn:xmpp:jingle:transports:ice-udp:1",
        "urn:xmpp:jingle:apps:dtls:0",
        "urn:xmpp:jingle-message:0",
    ] {
        assert!(
            features.iter().any(|f| f == needed),
            "{needed} missing from {features:?}"
        );
    }
    assert!(!features.iter().any(|f| f.contains("video")));
    let parsed =
        xmpp_parsers::disco::DiscoInfoResult::try_from(retag(&info_query)).expect("disco parses");
    let computed = hash_caps(&compute_disco(&parsed), Algo::Sha_1).expect("sha-1");
    let computed = base64_encode(&computed.hash);
    assert_eq!(computed, ver, "caps ver must match disco#info");

    // disco#items lists the virtual JIDs; ping and version are answered; the rest is refused.
    let items = alice.iq(COMPONENT, "get", query(NS_DISCO_ITEMS)).await;
    let jids: Vec<String> = items
        .get_child("query", NS_DISCO_ITEMS)
        .map(|q| {
            q.children()
                .filter_map(|i| i.attr("jid").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for jid in [
        "echo@gw.localhost",
        "voicemail@gw.localhost",
        "ivr@gw.localhost",
    ] {
        assert!(jids.iter().any(|j| j == jid), "{jid} missing from {jids:?}");
    }
    let ping = alice
        .iq(
            "echo@gw.localhost",
            "get",
            Element::builder("ping", "urn:xmpp:ping").build(),
        )
        .await;
    assert_eq!(ping.attr("type"), Some("result"));
    let version = alice.iq(COMPONENT, "get", query("jabber:iq:version")).await;
    assert!(String::from(&version).contains("jingle-gateway"));
    let unknown = alice
        .iq("echo@gw.localhost", "get", query("urn:example:nothing"))
        .await;
    assert_eq!(error_condition(&unknown), "service-unavailable");
    let nobody = alice
        .iq("nobody@gw.localhost", "get", query(NS_DISCO_INFO))
        .await;
    assert_eq!(error_condition(&nobody), "item-not-found");

    // A probe (as a server sends when alice comes online) is answered.
    alice.send_presence("echo@gw.localhost", "probe").await;
    alice
        .expect("presence after a probe", wait, from_echo(None))
        .await;

    gateway.stop().await;
    alice.close().await;
}

/// minidom keeps the client namespace on the query; xmpp-parsers (component build) wants its own.
fn retag(query: &Element) -> Element {
    let text = String::from(query);
    text.parse().expect("re-parse")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callable_contact_on_prosody() {
    within(60, callable_contact(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callable_contact_on_ejabberd() {
    within(60, callable_contact(Kind::Ejabberd)).await;
}

async fn jmi_and_refusals(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw");
    let lobby =
        "[endpoints.lobby]\nkind = \"sound-device\"\noutput = \"no-such-device\"\ninput = false\n";
    let gateway = Gateway::start(gateway_config_with(&server, &data, lobby, &[]));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let wait = Duration::from_secs(10);

    // XEP-0353: receipt, ringing, then proceed from a full JID of the virtual JID.
    let propose = Element::builder("propose", NS_JMI)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), "jmi-1")
        .append(
            Element::builder("description", "urn:xmpp:jingle:apps:rtp:1")
                .attr(minidom::rxml::xml_ncname!("media").to_owned(), "audio")
                .build(),
        )
        .build();
    let request = Element::builder("request", "urn:xmpp:receipts").build();
    let id = alice
        .client
        .send_message("echo@gw.localhost", vec![propose, request])
        .await;
    let receipt = alice
        .client
        .expect("receipt", wait, |s| {
            s.has_child("received", "urn:xmpp:receipts")
        })
        .await;
    assert_eq!(
        receipt
            .get_child("received", "urn:xmpp:receipts")
            .and_then(|r| r.attr("id")),
        Some(id.as_str())
    );
    alice
        .client
        .expect("ringing", wait, |s| s.has_child("ringing", NS_JMI))
        .await;
    let proceed = alice
        .client
        .expect("proceed", wait, |s| s.has_child("proceed", NS_JMI))
        .await;
    assert_eq!(proceed.attr("from"), Some("echo@gw.localhost/gateway"));
    // Withdrawn: nothing more comes.
    let retract = Element::builder("retract", NS_JMI)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), "jmi-1")
        .build();
    alice
        .client
        .send_message("echo@gw.localhost", vec![retract])
        .await;
    let after = alice
        .client
        .try_expect(Duration::from_millis(500), |s| {
            s.attr("from")
                .is_some_and(|f| f.starts_with("echo@gw.localhost"))
        })
        .await;
    assert!(after.is_none(), "sent after the retract: {after:?}");

    // A session-initiate to a JID that does not exist is refused with item-not-found.
    let refused = alice
        .call("nobody@gw.localhost", &CallSetup::browser())
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("item-not-found"));
    // To an endpoint this build lacks, or a sound device that is missing: acknowledged, then
    // ended with a clear reason.
    let ended = alice
        .call_ended("lobby@gw.localhost", &CallSetup::browser(), wait)
        .await;
    let expected = if cfg!(feature = "sound") {
        "failed-application"
    } else {
        "unsupported-applications"
    };
    assert_eq!(ended.as_deref(), Some(expected));
    // No common codec.
    let refused = alice
        .call("echo@gw.localhost", &CallSetup::only("G722"))
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("unsupported-applications"));
    // A transport-info for a session that does not exist: unknown-session.
    let stray = jingle_gateway::protocol::jingle::Jingle::new(
        jingle_gateway::protocol::jingle::Action::TransportInfo,
        jingle_gateway::protocol::jingle::Sid("no-such-session".into()),
    );
    let answer = alice
        .client
        .iq("echo@gw.localhost", "set", stray.to_element())
        .await;
    assert_eq!(error_condition(&answer), "item-not-found");
    assert!(String::from(&answer).contains("unknown-session"));
    // Broken Jingle: bad-request, and the stream survives.
    let broken: Element = "<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='x'/>"
        .parse()
        .unwrap();
    let answer = alice.client.iq("echo@gw.localhost", "set", broken).await;
    assert_eq!(error_condition(&answer), "bad-request");
    let again = alice
        .client
        .iq(COMPONENT, "get", query(NS_DISCO_INFO))
        .await;
    assert_eq!(again.attr("type"), Some("result"));

    gateway.stop().await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmi_and_refusals_on_prosody() {
    within(60, jmi_and_refusals(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmi_and_refusals_on_ejabberd() {
    within(60, jmi_and_refusals(Kind::Ejabberd)).await;
}

async fn reconnect(kind: Kind) {
    let mut server = Server::start(kind);
    let data = TempDir::new("gw");
    let gateway = Gateway::start(gateway_config(&server, &data, &[]));
    let mut alice = XmppClient::login(server.c2s_port, "alice", "phone").await;
    wait_attached(&mut alice).await;
    alice.send_presence("echo@gw.localhost", "subscribe").await;
    alice
        .expect("subscribed", Duration::from_secs(10), |s| {
            s.attr("type") == Some("subscribed")
        })
        .await;
    alice.close().await;

    server.restart();
    let mut alice = XmppClient::login(server.c2s_port, "alice", "phone").await;
    wait_attached(&mut alice).await;
    // Presence comes again: announced after the reconnect, or in answer to the server's probe.
    alice
        .expect(
            "presence after the reconnect",
            Duration::from_secs(10),
            |s| {
                s.name() == "presence"
                    && s.attr("from")
                        .is_some_and(|f| f.starts_with("echo@gw.localhost"))
                    && s.attr("type").is_none()
            },
        )
        .await;
    gateway.stop().await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_prosody_restart() {
    within(60, reconnect(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_ejabberd_restart() {
    within(90, reconnect(Kind::Ejabberd)).await;
}

/// The binary with a wrong secret: one clear error naming the key, no retry storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_reported_once() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
            .env("GATEWAY_XMPP_HOST", "127.0.0.1")
            .env("GATEWAY_XMPP_PORT", server.component_port.to_string())
            .env("GATEWAY_XMPP_SECRET", "not-the-secret")
            .env("GATEWAY_STORAGE_DATA_DIR", data.path())
            .env("GATEWAY_MEDIA_PORT", "0")
            .env("GATEWAY_MEDIA_LOCAL_ADDRESS", "127.0.0.1")
            .env("GATEWAY_HTTP_BIND", "127.0.0.1:0")
            .env("GATEWAY_METRICS_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop_process(&mut child, Duration::from_secs(5));
        let output = child.wait_with_output().expect("output");
        let log = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cannot attach"))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error, got:\n{log}");
        assert!(
            errors[0].contains("not-authorized") && errors[0].contains("xmpp.secret"),
            "{}",
            errors[0]
        );
        let attempts = server.log().matches("not match").count();
        assert!(
            attempts <= 1,
            "{attempts} attempts in 4 s:\n{}",
            server.log()
        );
    })
    .await;
}

/// SIGTERM: calls end with a Jingle reason, the stream closes, exit 0 within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_calls_and_exits_cleanly() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
            .env("GATEWAY_XMPP_HOST", "127.0.0.1")
            .env("GATEWAY_XMPP_PORT", server.component_port.to_string())
            .env("GATEWAY_STORAGE_DATA_DIR", data.path())
            .env("GATEWAY_MEDIA_PORT", "0")
            .env("GATEWAY_MEDIA_BIND_ADDRESS", "127.0.0.1")
            .env("GATEWAY_MEDIA_LOCAL_ADDRESS", "127.0.0.1")
            .env("GATEWAY_MEDIA_ALLOW_LOOPBACK_CANDIDATES", "true")
            .env("GATEWAY_HTTP_BIND", "127.0.0.1:0")
            .env("GATEWAY_METRICS_BIND", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the gateway");
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        alice
            .exchange(
                &mut call,
                &Exchange {
                    duration: Duration::from_secs(1),
                    tone_hz: 440.0,
                    ..Default::default()
                },
            )
            .await;
        let started = std::time::Instant::now();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        let reason = alice
            .wait_terminate(&call.sid, Duration::from_secs(5))
            .await;
        assert_eq!(reason.as_deref(), Some("gone"));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "still running after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "exit status {status}");
        alice.close().await;
    })
    .await;
}

/// `check-config` lists every problem with its key, one line each, and exits non-zero.
#[test]
fn check_config_names_every_key() {
    let dir = TempDir::new("config");
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "[xmpp]\nport = \"x\"\nsekret = 1\n[media]\nport_range = \"9-1\"\n[endpoints.echo]\nkind = \"fax\"\n",
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "xmpp.port",
        "xmpp.sekret",
        "xmpp.domain",
        "xmpp.secret",
        "media.port_range",
        "endpoints.echo.kind",
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(&format!("{key}:"))),
            "{key} missing:\n{stderr}"
        );
    }
    let good = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
        .arg("check-config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/gateway.example.toml"
        ))
        .output()
        .expect("run check-config");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

/// A restarted gateway announces its presence to known subscribers by itself (a subscriber who
/// stays online sees the JID come back without probing), and says goodbye when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_announced_to_subscribers_after_a_restart() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = XmppClient::login(server.c2s_port, "alice", "phone").await;
        wait_attached(&mut alice).await;
        let from_echo = |type_: Option<&'static str>| {
            move |s: &Element| {
                s.name() == "presence"
                    && s.attr("from")
                        .is_some_and(|f| f.starts_with("echo@gw.localhost"))
                    && s.attr("type") == type_
            }
        };
        let wait = Duration::from_secs(10);
        alice.send_presence("echo@gw.localhost", "subscribe").await;
        alice
            .expect("available presence", wait, from_echo(None))
            .await;
        gateway.stop().await;
        alice
            .expect(
                "unavailable presence at shutdown",
                wait,
                from_echo(Some("unavailable")),
            )
            .await;
        let _again = Gateway::start(gateway_config(&server, &data, &[]));
        alice
            .expect(
                "presence announced after the restart",
                wait,
                from_echo(None),
            )
            .await;
        alice.close().await;
    })
    .await;
}

/// Broken prompt files are refused by `check-config` (and at start) with the key and file named.
#[test]
fn check_config_refuses_broken_prompts() {
    let dir = TempDir::new("config");
    let prompts = dir.path().join("prompts");
    std::fs::create_dir_all(&prompts).expect("dir");
    std::fs::write(prompts.join("noise.wav"), [7u8; 2000]).expect("write");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/audio");
    std::fs::copy(
        format!("{fixtures}/truncated.flac"),
        prompts.join("cut.flac"),
    )
    .expect("copy");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        r###"
[xmpp]
domain = "gw.localhost"
secret = "s"
[endpoints.menu]
kind = "ivr"
[endpoints.menu.menus.main]
greeting = "noise.wav"
invalid = "cut.flac"
short_greeting = "../../etc/passwd"
[endpoints.menu.menus.main.entries]
"1" = { action = "play", prompt = "missing.opus" }
"###,
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_jingle-gateway"))
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("run check-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (key, file) in [
        ("endpoints.menu.menus.main.greeting", "noise.wav"),
        ("endpoints.menu.menus.main.invalid", "cut.flac"),
        (
            "endpoints.menu.menus.main.short_greeting",
            "outside the prompt directory",
        ),
        (
            "endpoints.menu.menus.main.entries.\"1\".prompt",
            "missing.opus",
        ),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(key) && l.contains(file)),
            "{key} / {file} missing:\n{stderr}"
        );
    }
}
