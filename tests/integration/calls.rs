//! Real calls to `echo@` through Prosody and ejabberd: Opus, PCMU and PCMA offers come back as
//! the tone sent; RFC 4733 keys reach the endpoint (which sends them back); either side hangs up;
//! several calls run at once; every call's resources are released.

use std::time::Duration;

use crate::support::audio::dominant_frequency;
use crate::support::caller::{CallSetup, Exchange, Received, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{eventually, gateway_config, wait_attached, within, Gateway, TempDir};

/// Asserts that `received` carries `hz` (within 10 Hz) as its main content.
pub fn assert_tone(received: &Received, hz: f64, what: &str) {
    assert!(
        received.pcm.len() > 48_000,
        "{what}: only {} samples came back",
        received.pcm.len()
    );
    let (dominant, share) = dominant_frequency(&received.pcm, 1.0);
    assert!(
        (dominant - hz).abs() <= 10.0 && share > 0.5,
        "{what}: dominant {dominant} Hz (share {share:.2}), expected {hz} Hz"
    );
}

async fn echo_calls(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw");
    let gateway = Gateway::start(gateway_config(&server, &data, &[]));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;

    for (codec, hz, jmi) in [
        ("opus", 440.0, false),
        ("PCMU", 880.0, true),
        ("PCMA", 660.0, false),
    ] {
        let mut setup = CallSetup::only(codec);
        setup.jmi = jmi;
        let mut call = alice
            .call("echo@gw.localhost", &setup)
            .await
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert!(call.codec.name().eq_ignore_ascii_case(codec));
        let mut keys = Exchange::tone(3, hz);
        keys.dtmf = "19#";
        let received = alice.exchange(&mut call, &keys).await;
        assert_tone(&received, f64::from(hz), codec);
        assert_eq!(received.digits, "19#", "{codec}: keys sent back by echo");
        assert!(received.terminated.is_none());
        alice.hang_up(call).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await,
        "media legs still open: {}",
        gateway.stats.open_legs()
    );
    gateway.stop().await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_with_each_codec_on_prosody() {
    within(90, echo_calls(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_with_each_codec_on_ejabberd() {
    within(90, echo_calls(Kind::Ejabberd)).await;
}

/// The gateway hangs up (here: the call reached calls.max_duration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_hangs_up_with_a_reason() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[("GATEWAY_CALLS_MAX_DURATION", "2s")],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(6, 440.0)).await;
        assert_eq!(received.terminated.as_deref(), Some("expired"));
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// Several callers at once, each hearing only their own tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_calls_at_once() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let tones = [400.0f32, 500.0, 600.0, 700.0, 800.0];
        let mut callers = Vec::new();
        for (i, _) in tones.iter().enumerate() {
            let mut caller = TestCaller::new(server.c2s_port, &format!("user{i}")).await;
            wait_attached(&mut caller.client).await;
            callers.push(caller);
        }
        let runs = callers
            .into_iter()
            .zip(tones)
            .map(|(mut caller, hz)| async move {
                let mut call = caller
                    .call("echo@gw.localhost", &CallSetup::browser())
                    .await
                    .expect("call");
                let received = caller.exchange(&mut call, &Exchange::tone(3, hz)).await;
                caller.hang_up(call).await;
                caller.close().await;
                (hz, received)
            });
        for (hz, received) in futures::future::join_all(runs).await {
            assert_tone(&received, f64::from(hz), &format!("caller at {hz} Hz"));
        }
        assert_eq!(
            jingle_gateway::media::stats::MediaStats::get(&gateway.stats.legs_started),
            5
        );
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        gateway.stop().await;
    })
    .await;
}

/// `media.dtls_role = "passive"` and per-call ports from `media.port_range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_dtls_and_per_call_ports() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[
                ("GATEWAY_MEDIA_DTLS_ROLE", "passive"),
                ("GATEWAY_MEDIA_PORT_RANGE", "41000-41099"),
            ],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut ports = Vec::new();
        for hz in [440.0, 550.0] {
            let mut call = alice
                .call("echo@gw.localhost", &CallSetup::browser())
                .await
                .expect("call");
            let port = call.gateway_candidates[0].port;
            assert!(
                (41000..=41099).contains(&port),
                "port {port} outside the range"
            );
            ports.push(port);
            let received = alice.exchange(&mut call, &Exchange::tone(2, hz)).await;
            assert_tone(&received, f64::from(hz), "passive DTLS, own port");
            alice.hang_up(call).await;
        }
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// STUN and TURN (coturn on loopback): with per-call ports the gateway trickles server-reflexive
/// and relay candidates; a caller that may only use the relay still hears its tone. The STUN
/// server is reached through a relay (a NAT, to it), so the server-reflexive address is the
/// relay's, based on the call's host candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_relay_and_stun_candidates() {
    within(
        60,
        stun_and_turn(&[("GATEWAY_MEDIA_PORT_RANGE", "42000-42099")]),
    )
    .await;
}

/// The same on the shared port: its server-reflexive address is asked for from the shared
/// socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_relay_and_stun_candidates_on_the_shared_port() {
    within(60, stun_and_turn(&[])).await;
}

async fn stun_and_turn(env: &[(&str, &str)]) {
    use jingle_gateway::config::TurnServerConfig;
    use jingle_gateway::protocol::ice_udp::CandidateType;
    let server = Server::start(Kind::Prosody);
    let turn = crate::support::servers::TurnServer::start();
    let data = TempDir::new("gw");
    let mut config = gateway_config(&server, &data, env);
    let nat = crate::support::relay::Relay::start().await;
    nat.set_gateway(format!("127.0.0.1:{}", turn.port).parse().expect("address"));
    config.media.stun_servers = vec![nat.caller_side.to_string()];
    config.media.turn_servers = vec![TurnServerConfig {
        url: format!("turn:127.0.0.1:{}", turn.port),
        username: turn.username.into(),
        password: turn.password.into(),
    }];
    let gateway = Gateway::start(config);
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut setup = CallSetup::browser();
    setup.only_gateway_candidates = Some(CandidateType::Relay);
    let mut call = alice.call("echo@gw.localhost", &setup).await.expect("call");
    let received = alice.exchange(&mut call, &Exchange::tone(3, 480.0)).await;
    assert_tone(&received, 480.0, "through the gateway's TURN relay");
    let types: Vec<CandidateType> = call
        .gateway_candidates
        .iter()
        .map(|c| c.candidate_type)
        .collect();
    assert!(
        types.contains(&CandidateType::Relay),
        "no relay candidate: {types:?}"
    );
    let host = call
        .gateway_candidates
        .iter()
        .find(|c| c.candidate_type == CandidateType::Host)
        .expect("a host candidate");
    let reflexive = call
        .gateway_candidates
        .iter()
        .find(|c| c.candidate_type == CandidateType::ServerReflexive)
        .unwrap_or_else(|| panic!("no server-reflexive candidate: {types:?}"));
    assert_eq!(
        std::net::SocketAddr::new(reflexive.ip, reflexive.port),
        nat.gateway_side,
        "not the address the STUN server saw"
    );
    assert_eq!(
        (reflexive.rel_addr, reflexive.rel_port),
        (Some(host.ip), Some(host.port)),
        "the base is not the host candidate"
    );
    alice.hang_up(call).await;
    assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
    gateway.stop().await;
    alice.close().await;
}

/// ICE restart from the caller (new ufrag and pwd in a transport-info): the gateway restarts
/// too, answers with its new credentials, and media goes on over DTLS-SRTP as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_the_call() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(2, 440.0)).await;
        assert_tone(&received, 440.0, "before the restart");
        let before = call.gateway_ufrag.clone();
        alice.restart_ice(&mut call).await;
        let received = alice.exchange(&mut call, &Exchange::tone(3, 620.0)).await;
        assert_ne!(
            call.gateway_ufrag, before,
            "the gateway sent no new credentials"
        );
        assert_tone(&received, 620.0, "after the restart");
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// Stopping the gateway ends every call with `<gone/>` and releases every media leg before it
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_every_call() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let stats = gateway.stats.clone();
        let mut callers = Vec::new();
        for (i, hz) in [(0, 440.0), (1, 550.0)] {
            let mut caller = TestCaller::new(server.c2s_port, &format!("user{i}")).await;
            wait_attached(&mut caller.client).await;
            let mut call = caller
                .call("echo@gw.localhost", &CallSetup::browser())
                .await
                .expect("call");
            let received = caller.exchange(&mut call, &Exchange::tone(2, hz)).await;
            assert_tone(&received, f64::from(hz), "before shutdown");
            callers.push((caller, call));
        }
        assert_eq!(stats.open_legs(), 2);
        gateway.stop().await;
        assert_eq!(
            stats.open_legs(),
            0,
            "legs still open after the gateway stopped"
        );
        for (mut caller, call) in callers {
            let reason = caller
                .wait_terminate(&call.sid, Duration::from_secs(5))
                .await;
            assert_eq!(reason.as_deref(), Some("gone"));
            caller.vanish(call).await;
            caller.close().await;
        }
    })
    .await;
}
