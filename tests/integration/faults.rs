//! Faults: a caller that vanishes, hostile packets (forged, replayed, garbage) from the caller's
//! own address and from elsewhere, and a candidate the policy refuses.

use std::time::Duration;

use jingle_gateway::media::stats::MediaStats;
use jingle_gateway::protocol::ice_udp::{Candidate, CandidateType};

use crate::calls::assert_tone;
use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::servers::{Kind, Server};
use crate::support::{eventually, gateway_config, wait_attached, within, Gateway, TempDir};

/// A caller whose client disappears without session-terminate is ended by consent expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_caller_is_ended_by_consent_expiry() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[("GATEWAY_MEDIA_CONSENT_TIMEOUT", "10s")],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        alice.exchange(&mut call, &Exchange::tone(1, 440.0)).await;
        let vanished = std::time::Instant::now();
        let sid = alice.vanish(call).await;
        let reason = alice.wait_terminate(&sid, Duration::from_secs(25)).await;
        assert_eq!(
            reason.as_deref(),
            Some("connectivity-error"),
            "after {:?}",
            vanished.elapsed()
        );
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// Forged and replayed SRTP, garbage and oversized datagrams from the caller's own address are
/// dropped and counted; the call goes on, also while a stranger sprays the media port (what the
/// shared port's demultiplexer drops is not counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_are_dropped_without_disturbing_the_call() {
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
        let mut hostile = Exchange::tone(3, 520.0);
        hostile.hostile = true;
        let received = alice.exchange(&mut call, &hostile).await;
        assert_tone(&received, 520.0, "during forged and replayed packets");

        // A stranger sprays the media port.
        let port = call.gateway_candidates[0].port;
        let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("socket");
        for i in 0..200u32 {
            let junk: Vec<u8> = (0..(i % 120)).map(|b| (b * 37 + i) as u8).collect();
            let _ = stranger.send_to(&junk, ("127.0.0.1", port)).await;
        }
        let received = alice.exchange(&mut call, &Exchange::tone(2, 520.0)).await;
        assert_tone(&received, 520.0, "after a stranger's junk");

        let stats = &gateway.stats;
        assert!(
            MediaStats::get(&stats.auth_failures) >= 10,
            "auth failures {}",
            MediaStats::get(&stats.auth_failures)
        );
        assert!(
            MediaStats::get(&stats.replays) >= 10,
            "replays {}",
            MediaStats::get(&stats.replays)
        );
        assert!(
            MediaStats::get(&stats.garbage) >= 10,
            "garbage {}",
            MediaStats::get(&stats.garbage)
        );
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// A candidate the policy refuses is never given to ICE; the call uses the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_candidates_are_not_used() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[("GATEWAY_MEDIA_ALLOW_PRIVATE_CANDIDATES", "false")],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut setup = CallSetup::browser();
        for ip in ["10.9.9.9", "192.168.7.7", "224.0.0.9"] {
            setup.extra_candidates.push(Candidate {
                component: 1,
                foundation: "9".into(),
                generation: 0,
                id: None,
                ip: ip.parse().expect("address"),
                port: 9999,
                priority: 2_130_706_431,
                protocol: "udp".into(),
                candidate_type: CandidateType::Host,
                rel_addr: None,
                rel_port: None,
                network: None,
            });
        }
        let mut call = alice.call("echo@gw.localhost", &setup).await.expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(2, 440.0)).await;
        assert_tone(&received, 440.0, "with refused candidates in the offer");
        assert_eq!(MediaStats::get(&gateway.stats.candidates_refused), 3);
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

fn dead_candidate() -> Candidate {
    Candidate {
        component: 1,
        foundation: "1".into(),
        generation: 0,
        id: None,
        ip: "127.0.0.1".parse().expect("address"),
        port: 9, // discard: nothing answers ICE there
        priority: 2_130_706_431,
        protocol: "udp".into(),
        candidate_type: CandidateType::Host,
        rel_addr: None,
        rel_port: None,
        network: None,
    }
}

/// ICE that never connects ends the call with failed-transport after media.ice_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_that_never_connects_fails_the_transport() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw");
        let gateway = Gateway::start(gateway_config(
            &server,
            &data,
            &[("GATEWAY_MEDIA_ICE_TIMEOUT", "3s")],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut setup = CallSetup::browser();
        setup.only_extra_candidates = true;
        setup.extra_candidates.push(dead_candidate());
        let call = alice
            .call("echo@gw.localhost", &setup)
            .await
            .expect("call accepted");
        let reason = alice
            .wait_terminate(&call.sid, Duration::from_secs(15))
            .await;
        assert_eq!(reason.as_deref(), Some("failed-transport"));
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        alice.vanish(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// A DTLS certificate that does not match the signalled fingerprint ends the call with
/// security-error; no media flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_not_matching_the_fingerprint_is_a_security_error() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        // As DTLS client (active) and as server (passive), the gateway checks the certificate.
        for role in ["active", "passive"] {
            let data = TempDir::new("gw");
            let gateway = Gateway::start(gateway_config(
                &server,
                &data,
                &[("GATEWAY_MEDIA_DTLS_ROLE", role)],
            ));
            let mut alice = TestCaller::new(server.c2s_port, "alice").await;
            wait_attached(&mut alice.client).await;
            let mut setup = CallSetup::browser();
            setup.wrong_fingerprint = true;
            let mut call = alice
                .call("echo@gw.localhost", &setup)
                .await
                .expect("call accepted");
            // Drive the caller's media so that ICE and DTLS run.
            let received = alice.exchange(&mut call, &Exchange::tone(10, 440.0)).await;
            assert_eq!(
                received.terminated.as_deref(),
                Some("security-error"),
                "gateway {role}"
            );
            assert_eq!(MediaStats::get(&gateway.stats.rtp_in), 0, "gateway {role}");
            assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
            alice.vanish(call).await;
            gateway.stop().await;
            alice.close().await;
        }
    })
    .await;
}
