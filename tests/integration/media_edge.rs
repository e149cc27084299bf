//! The media port is not a reflector: a caller who names addresses that never answer (sink
//! sockets here, counting what reaches them) with the worst signalling it can write gets the
//! gateway to send them less than it sent in signalling. Through a real Prosody, from the
//! second component standing in for a remote server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::caller::{host_candidate, CallSetup, Exchange, TestCaller};
use crate::support::raw::RawComponent;
use crate::support::relay::Relay;
use crate::support::servers::{Kind, Server, REMOTE, REMOTE_SECRET};
use crate::support::{gateway_config, wait_attached, within, Gateway, GatewayProcess, TempDir};
use jingle_gateway::media::stats::MediaStats;

/// UDP sockets that count what they receive and never answer.
struct Sinks {
    ports: Vec<u16>,
    datagrams: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    /// Datagrams that were not STUN (media, DTLS).
    not_stun: Arc<AtomicU64>,
}

impl Sinks {
    async fn open(count: usize) -> Sinks {
        let datagrams = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let not_stun = Arc::new(AtomicU64::new(0));
        let mut ports = Vec::new();
        for _ in 0..count {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("sink");
            ports.push(socket.local_addr().expect("address").port());
            let (datagrams, bytes, not_stun) = (datagrams.clone(), bytes.clone(), not_stun.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = socket.recv(&mut buf).await {
                    datagrams.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if buf[0] > 3 {
                        not_stun.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        Sinks {
            ports,
            datagrams,
            bytes,
            not_stun,
        }
    }
}

fn candidates(ports: &[u16], generation: usize) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!(
                "<candidate component='1' foundation='{i}' generation='{generation}' id='c{generation}x{i}' \
                 ip='127.0.0.1' network='0' port='{port}' priority='2122260223' protocol='udp' type='host'/>"
            )
        })
        .collect()
}

fn transport(ufrag: &str, ports: &[u16], generation: usize) -> String {
    format!(
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='{ufrag}' \
         pwd='{}'>\
         <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>\
         AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\
         </fingerprint>{}</transport>",
        "p".repeat(256),
        candidates(ports, generation)
    )
}

/// Per-call ports instead of the shared one (the guard covers both).
const PER_CALL_PORTS: (&str, &str) = ("GATEWAY_MEDIA_PORT_RANGE", "43000-43099");

/// The attack of the issue: a call to echo@ naming 30 addresses that never answer with the
/// longest ufrag the grammar allows, then ten ICE restarts in 15 s, each naming 30 more; and
/// the same from nine more users of the domain. `env` configures the gateway.
async fn reflection_is_bounded(kind: Kind, env: &[(&str, &str)]) {
    let server = Server::start(kind);
    let data = TempDir::new("gw-reflect");
    let env: Vec<(&str, &str)> = [("RUST_LOG", "info")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let gateway = GatewayProcess::start(&server, &data, "", &env, None);
    assert!(
        gateway
            .wait_log("component connected", 1, Duration::from_secs(20))
            .await,
        "{}",
        gateway.log()
    );
    let mut remote =
        RawComponent::connect(server.remote_component_port, REMOTE, REMOTE_SECRET).await;
    // Attached when the gateway answers a ping.
    for _ in 0..100 {
        let ping = "<iq type='get' id='up' from='x@remote.localhost/x' to='gw.localhost'>\
                    <ping xmlns='urn:xmpp:ping'/></iq>";
        assert!(remote.stream.write(ping.as_bytes()).await);
        let answer = remote
            .stream
            .expect(Duration::from_millis(200), |e| e.attr("id") == Some("up"))
            .await;
        if answer.is_some_and(|a| a.attr("type") == Some("result")) {
            break;
        }
    }
    let sinks = Sinks::open(330).await;
    let ufrag = "u".repeat(256);
    let mut signalling = 0u64;
    for caller in 0..10 {
        let from = format!("mallory{caller}@{REMOTE}/x");
        let sid = format!("reflect{caller}");
        let initiate = format!(
            "<iq type='set' id='i{caller}' from='{from}' to='echo@gw.localhost'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}'>\
             <content creator='initiator' name='0'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='0' name='PCMU' clockrate='8000'/><rtcp-mux/></description>{}\
             </content></jingle></iq>",
            transport(&ufrag, &sinks.ports[..30], 0)
        );
        signalling += initiate.len() as u64;
        assert!(remote.stream.write(initiate.as_bytes()).await);
    }
    // The restarts cost the caller more signalling; what the initiates alone cost it is the
    // bound that matters.
    let initiates = signalling;
    for generation in 1..=10 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for caller in 0..10 {
            let from = format!("mallory{caller}@{REMOTE}/x");
            let sid = format!("reflect{caller}");
            let ports = &sinks.ports[(generation * 30) % 300..(generation * 30) % 300 + 30];
            let new_ufrag = format!("{}{generation}", "r".repeat(250));
            let info = format!(
                "<iq type='set' id='t{caller}x{generation}' from='{from}' to='echo@gw.localhost'>\
                 <jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='{sid}'>\
                 <content creator='initiator' name='0'>{}</content></jingle></iq>",
                transport(&new_ufrag, ports, generation)
            );
            signalling += info.len() as u64;
            assert!(remote.stream.write(info.as_bytes()).await);
        }
        remote.stream.drain();
    }
    // Let the checks run out.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (datagrams, bytes) = (
        sinks.datagrams.load(Ordering::Relaxed),
        sinks.bytes.load(Ordering::Relaxed),
    );
    eprintln!(
        "{kind:?} {env:?}: {signalling} bytes of signalling in ({initiates} of them session-initiates), \
         {datagrams} datagrams and {bytes} bytes to addresses that never answered"
    );
    assert!(
        bytes < initiates,
        "{bytes} bytes reflected for {initiates} bytes of session-initiates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_through_the_media_port_is_bounded() {
    within(120, reflection_is_bounded(Kind::Prosody, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_through_the_media_port_is_bounded_on_ejabberd() {
    within(120, reflection_is_bounded(Kind::Ejabberd, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_through_per_call_ports_is_bounded() {
    within(120, reflection_is_bounded(Kind::Prosody, &[PER_CALL_PORTS])).await;
}

/// After an ICE restart naming addresses that never answer, not one media packet goes to them:
/// webrtc-ice sends media to its best pair before any is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_no_media_goes_to_an_unchecked_address() {
    within(90, no_media_to_unchecked_addresses_after_a_restart(&[])).await;
}

/// The same with per-call ports (before they ran under the guard, two media packets reached
/// the new addresses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_no_media_goes_to_an_unchecked_address_from_a_call_port() {
    within(
        90,
        no_media_to_unchecked_addresses_after_a_restart(&[PER_CALL_PORTS]),
    )
    .await;
}

async fn no_media_to_unchecked_addresses_after_a_restart(env: &[(&str, &str)]) {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("gw-restart");
    let gateway = Gateway::start(gateway_config(&server, &data, env));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut call = alice
        .call("echo@gw.localhost", &CallSetup::browser())
        .await
        .expect("call");
    alice.exchange(&mut call, &Exchange::tone(1, 440.0)).await;
    let sinks = Sinks::open(5).await;
    let info = format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='{}'>\
         <content creator='initiator' name='0'>{}</content></jingle>",
        call.sid,
        transport("newUfrag", &sinks.ports, 1)
    );
    let info: minidom::Element = info.parse().expect("transport-info");
    let answer = alice.client.iq(&call.to, "set", info).await;
    assert_eq!(answer.attr("type"), Some("result"));
    // Alice goes on sending on the old pair, the echo answers; none of it may reach the new
    // addresses.
    alice.exchange(&mut call, &Exchange::tone(3, 440.0)).await;
    let (datagrams, not_stun) = (
        sinks.datagrams.load(Ordering::Relaxed),
        sinks.not_stun.load(Ordering::Relaxed),
    );
    eprintln!(
        "after the restart: {datagrams} datagrams to the unchecked addresses, {not_stun} not STUN"
    );
    assert_eq!(
        not_stun, 0,
        "media went to addresses that were never checked"
    );
    gateway.stop().await;
    alice.close().await;
}

/// A peer that answers the gateway's checks keeps its call past `media.consent_timeout`:
/// consent is refreshed by checks (RFC 7675), not by the media alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_refreshed_by_answered_checks() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-consent");
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
        let received = alice.exchange(&mut call, &Exchange::tone(16, 440.0)).await;
        assert_eq!(received.terminated, None, "the call lost its consent");
        crate::calls::assert_tone(&received, 440.0, "after the consent timeout");
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// A peer that goes on sending media but stops answering the gateway's checks (the relay
/// between them drops its answers) loses its call within `media.consent_timeout`, with
/// `<connectivity-error/>`: media alone is no consent (RFC 7675). Before consent was taken
/// from answers, the media kept such a call until `calls.max_duration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_checks_loses_its_call() {
    within(90, consent_withdrawn_ends_the_call(&[])).await;
}

/// The same on a call's own port (before, any datagram kept such a call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_checks_loses_its_call_on_a_call_port() {
    within(90, consent_withdrawn_ends_the_call(&[PER_CALL_PORTS])).await;
}

async fn consent_withdrawn_ends_the_call(env: &[(&str, &str)]) {
    let server = Server::start(Kind::Prosody);
    let data = TempDir::new("gw-withdrawn");
    let env: Vec<(&str, &str)> = [("GATEWAY_MEDIA_CONSENT_TIMEOUT", "10s")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let gateway = Gateway::start(gateway_config(&server, &data, &env));
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let relay = Arc::new(Relay::start().await);
    let setup = CallSetup {
        relay: Some(relay.clone()),
        ..CallSetup::browser()
    };
    let mut call = alice.call("echo@gw.localhost", &setup).await.expect("call");
    let received = alice.exchange(&mut call, &Exchange::tone(3, 440.0)).await;
    crate::calls::assert_tone(&received, 440.0, "through the relay");
    relay
        .rules
        .drop_answers_to_gateway
        .store(true, Ordering::Relaxed);
    let withdrawn = std::time::Instant::now();
    let received = alice.exchange(&mut call, &Exchange::tone(30, 440.0)).await;
    let ended_after = withdrawn.elapsed();
    let dropped = relay.rules.answers_dropped.load(Ordering::Relaxed);
    eprintln!(
        "consent withdrawn: {dropped} answers dropped, {} packets echoed meanwhile, \
         call ended after {ended_after:?} with {:?}",
        received.packets, received.terminated
    );
    assert!(
        dropped > 0,
        "the gateway sent no checks to withdraw consent from"
    );
    assert!(received.packets > 0, "the media stopped with the answers");
    assert_eq!(
        received.terminated.as_deref(),
        Some("connectivity-error"),
        "a call without consent went on for {ended_after:?}"
    );
    gateway.stop().await;
    alice.close().await;
}

/// A STUN binding request naming `ufrag` as the gateway's (no integrity: it proves nothing,
/// but it names the call).
fn check_naming(ufrag: &str) -> Vec<u8> {
    let username = format!("{ufrag}:x");
    let padded = username.len().div_ceil(4) * 4;
    let mut check = vec![0x00, 0x01];
    check.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
    check.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    check.extend_from_slice(&rand::random::<[u8; 12]>());
    check.extend_from_slice(&[0x00, 0x06]);
    check.extend_from_slice(&(username.len() as u16).to_be_bytes());
    check.extend_from_slice(username.as_bytes());
    check.resize(20 + 4 + padded, 0);
    check
}

/// DTLS from an address that never proved it is the peer is not taken: an attacker at another
/// of the caller's candidates names the call's ufrag in checks it cannot sign (it does not know
/// the password) and sprays ClientHellos and plaintext fatal alerts (which the DTLS stack takes
/// at epoch 0) from the moment the call is accepted, through the handshake and after. The call
/// comes up and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_from_a_third_address_is_not_taken() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-third");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let third = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("socket");
        let mut setup = CallSetup::browser();
        setup
            .extra_candidates
            .push(host_candidate(third.local_addr().expect("address")));
        let mut call = alice.call("echo@gw.localhost", &setup).await.expect("call");
        let gateway_media = call
            .gateway_candidates
            .iter()
            .find(|c| c.ip.is_ipv4())
            .map(|c| std::net::SocketAddr::new(c.ip, c.port))
            .expect("a gateway candidate");
        let check = check_naming(&call.gateway_ufrag);
        let sprayed = Arc::new(AtomicU64::new(0));
        let spray = {
            let sprayed = sprayed.clone();
            tokio::spawn(async move {
                for sequence in 0x1000u16.. {
                    let [high, low] = sequence.to_be_bytes();
                    // A ClientHello record and a fatal alert, at sequence numbers never used.
                    let mut hello = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, high, low, 0x00, 0x0c];
                    hello.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    let alert = [
                        0x15, 0xfe, 0xfd, 0, 0, 0, 0, 1, high, low, 0x00, 0x02, 0x02, 0x28,
                    ];
                    for datagram in [&check[..], &hello[..], &alert[..]] {
                        let _ = third.send_to(datagram, gateway_media).await;
                    }
                    sprayed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let received = alice.exchange(&mut call, &Exchange::tone(4, 440.0)).await;
        spray.abort();
        eprintln!(
            "{} rounds sprayed from a third address; the call: {:?}",
            sprayed.load(Ordering::Relaxed),
            received.terminated
        );
        let dropped = MediaStats::get(&gateway.stats.unanswered_dropped);
        let records = 2 * sprayed.load(Ordering::Relaxed);
        eprintln!("{dropped} of {records} records from the third address dropped by the guard");
        assert_eq!(received.terminated, None, "a third address ended the call");
        crate::calls::assert_tone(&received, 440.0, "with DTLS from a third address");
        assert!(
            dropped >= records,
            "records from the third address reached DTLS"
        );
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// A caller that checks from two addresses and sends DTLS and media from the one the gateway's
/// agent did not select keeps its call: Chromium does this with two interfaces (it nominates
/// the pair it likes; webrtc-ice keeps its first selection), and so would a phone changing
/// networks. Both addresses proved they are the peer by signing their checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_sends_from_another_address_keeps_its_call() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-second");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let relay = Arc::new(Relay::start().await);
        relay
            .rules
            .media_from_second_address
            .store(true, Ordering::Relaxed);
        let setup = CallSetup {
            relay: Some(relay.clone()),
            ..CallSetup::browser()
        };
        let mut call = alice.call("echo@gw.localhost", &setup).await.expect("call");
        let received = alice.exchange(&mut call, &Exchange::tone(3, 440.0)).await;
        eprintln!(
            "media from {} (checks from {} too): {} packets echoed, {:?}",
            relay.second_gateway_side, relay.gateway_side, received.packets, received.terminated
        );
        assert_eq!(received.terminated, None);
        crate::calls::assert_tone(&received, 440.0, "media from a second address");
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}

/// An SSRC flood before the genuine stream: 5,000 forged SRTP packets, each from another SSRC,
/// on the selected pair before the caller's first real packet. Unauthenticated packets take no
/// stream state, so the genuine SSRC still gets through and the echo comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssrc_flood_before_the_stream_takes_nothing() {
    within(60, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-ssrc");
        let gateway = Gateway::start(gateway_config(&server, &data, &[]));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut call = alice
            .call("echo@gw.localhost", &CallSetup::browser())
            .await
            .expect("call");
        let plan = Exchange {
            ssrc_flood: 5_000,
            ..Exchange::tone(3, 440.0)
        };
        let received = alice.exchange(&mut call, &plan).await;
        let refused = MediaStats::get(&gateway.stats.auth_failures);
        eprintln!("{refused} forged packets refused by SRTP");
        assert!(refused >= 2_500, "the forged packets did not reach SRTP");
        crate::calls::assert_tone(&received, 440.0, "after an SSRC flood");
        alice.hang_up(call).await;
        gateway.stop().await;
        alice.close().await;
    })
    .await;
}
