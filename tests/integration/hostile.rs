//! Hostile input from the federation, through a real Prosody and a real ejabberd: a local user
//! and a second component standing in for a remote server (it may send from any JID of its
//! domain) send deeply nested stanzas, huge attributes, stanzas at the server's size limit, bad
//! namespaces and bad UTF-8, and floods of presence, subscriptions, proposals, session-initiates
//! and chat. Throughout, a real call stays up and its caller hears its tone window by window; the
//! component is never reconnected, the process lives, its memory stays bounded, and a caller
//! from another domain still gets through. A server that stops reading is noticed.

use std::time::{Duration, Instant};

use minidom::Element;
use tokio::sync::watch;

use crate::calls::assert_tone;
use crate::operations::{get, metric};
use crate::support::caller::{Call, CallSetup, Exchange, TestCaller};
use crate::support::raw::{RawClient, RawComponent, RawStream, Seen};
use crate::support::servers::{Kind, Server, REMOTE, REMOTE_SECRET};
use crate::support::{eventually, free_port, wait_attached, within, GatewayProcess, TempDir};

const ECHO: &str = "echo@gw.localhost";

/// A call kept up while the attacks run: two-second windows of a tone, each checked.
struct KeptCall {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(TestCaller, Vec<Result<(), String>>)>,
}

impl KeptCall {
    async fn start(mut caller: TestCaller, mut call: Call) -> KeptCall {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut windows = Vec::new();
            // At least two windows, however fast the attacks went (on a loaded machine the
            // first window can outlast them all).
            while windows.len() < 2 || !*stopped.borrow_and_update() {
                let received = caller.exchange(&mut call, &Exchange::tone(2, 440.0)).await;
                let window = windows.len();
                let heard = std::panic::catch_unwind(|| {
                    assert_tone(&received, 440.0, &format!("window {window}"));
                });
                windows.push(match (&received.terminated, heard) {
                    (Some(reason), _) => Err(format!("window {window}: ended with {reason}")),
                    (None, Err(_)) => Err(format!(
                        "window {window}: the tone did not come back ({} samples)",
                        received.pcm.len()
                    )),
                    (None, Ok(())) => Ok(()),
                });
                if received.terminated.is_some() {
                    break;
                }
            }
            caller.hang_up(call).await;
            (caller, windows)
        });
        KeptCall { stop, task }
    }

    /// Stops after the current window; every window must have carried the tone.
    async fn finish(self) -> TestCaller {
        let _ = self.stop.send(true);
        let (caller, windows) = self.task.await.expect("the kept call's task");
        let failed: Vec<_> = windows.iter().filter_map(|w| w.clone().err()).collect();
        assert!(windows.len() >= 2, "only {} windows", windows.len());
        assert!(failed.is_empty(), "the call suffered: {failed:#?}");
        caller
    }
}

/// `depth` nested elements.
fn nested(depth: usize) -> String {
    format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

fn is_reply_to(id: &str) -> impl Fn(&Element) -> bool + '_ {
    move |e: &Element| e.name() == "iq" && e.attr("id") == Some(id)
}

fn error_condition(iq: &Element) -> Option<String> {
    iq.children()
        .find(|c| c.name() == "error")?
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// Sends an IQ from the remote component and waits for its answer.
async fn remote_iq(stream: &mut RawStream, id: &str, from: &str, body: &str) -> Option<Element> {
    let iq = format!("<iq type='get' id='{id}' from='{from}' to='{ECHO}'>{body}</iq>");
    assert!(stream.write(iq.as_bytes()).await, "write {id}");
    stream
        .expect(Duration::from_secs(20), is_reply_to(id))
        .await
}

/// The gateway still answers a ping, through the remote component; returns how many other
/// stanzas came to the component meanwhile.
async fn still_answers(remote: &mut RawComponent, what: &str) -> usize {
    let id = format!("alive-{}", what.replace(' ', "-"));
    let iq = format!(
        "<iq type='get' id='{id}' from='probe@{REMOTE}/x' to='{ECHO}'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    assert!(remote.stream.write(iq.as_bytes()).await, "write {id}");
    let mut others = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match remote.stream.next(left).await {
            Some(Seen::Element(e)) if is_reply_to(&id)(&e) => {
                assert_eq!(e.attr("type"), Some("result"), "after {what}: {e:?}");
                return others + remote.stream.drain().0;
            }
            Some(Seen::Element(_)) => others += 1,
            Some(Seen::Header(_)) => {}
            Some(Seen::Ended) | None => panic!("no answer to a ping after {what}"),
        }
    }
}

async fn attacks_leave_the_call_and_the_link_alone(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw-hostile");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut gateway = GatewayProcess::start(
        &server,
        &data,
        "",
        &[
            ("RUST_LOG", "info"),
            ("GATEWAY_XMPP_KEEPALIVE", "5s"),
            ("GATEWAY_METRICS_BIND", &metrics),
        ],
        None,
    );
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let call = alice
        .call(ECHO, &CallSetup::browser())
        .await
        .expect("alice's call");
    let kept = KeptCall::start(alice, call).await;
    let mut mallory = RawClient::login(server.c2s_port, "mallory", "x").await;
    let mut remote =
        RawComponent::connect(server.remote_component_port, REMOTE, REMOTE_SECRET).await;
    let rss_before = gateway.rss_kib();
    let started = Instant::now();

    // Deep nesting: a message from a user, and two IQs from the remote server; an IQ whose
    // header was read is answered. Prosody relays 12,000, 10,000 and 50,000 levels; ejabberd
    // 23.01 itself dies of 5,000 (the whole server), so it gets 2,000.
    let (message_depth, iq_depths) = match kind {
        Kind::Prosody => (12_000, [("deep10k", 10_000), ("deep50k", 50_000)]),
        Kind::Ejabberd => (2_000, [("deep1k", 1_000), ("deep2k", 2_000)]),
    };
    let message = format!(
        "<message to='{ECHO}' type='chat'>{}</message>",
        nested(message_depth)
    );
    assert!(mallory.stream.write(message.as_bytes()).await);
    for (id, depth) in iq_depths {
        let answer = remote_iq(
            &mut remote.stream,
            id,
            &format!("deep@{REMOTE}/x"),
            &nested(depth),
        )
        .await;
        if let Some(answer) = answer {
            assert_eq!(
                error_condition(&answer).as_deref(),
                Some("policy-violation"),
                "{id}"
            );
        }
    }
    still_answers(&mut remote, "deep nesting").await;

    // Long attributes: 10 KB and 60 KB (each ended the stream before), 64 KiB (legal XML the
    // gateway reads and answers).
    for size in [10_000, 60_000] {
        let message = format!(
            "<message to='{ECHO}' type='chat'><x xmlns='urn:x' v='{}'/></message>",
            "v".repeat(size)
        );
        assert!(mallory.stream.write(message.as_bytes()).await);
    }
    let big = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info' x='{}'/>",
        "v".repeat(64 * 1024)
    );
    let answer = remote_iq(
        &mut remote.stream,
        "attr64k",
        &format!("big@{REMOTE}/x"),
        &big,
    )
    .await;
    assert_eq!(
        answer.as_ref().and_then(|a| a.attr("type")),
        Some("result"),
        "a 64 KiB attribute: {answer:?}"
    );
    // A stanza near the user's size limit (Prosody 256 KiB, ejabberd more).
    let body = "b".repeat(250 * 1024);
    let message = format!("<message to='{ECHO}' type='chat'><body>{body}</body></message>");
    assert!(mallory.stream.write(message.as_bytes()).await);
    still_answers(&mut remote, "long attributes").await;

    // Bad namespaces: an unknown payload is refused; prefixed and odd namespaces are read.
    let answer = remote_iq(
        &mut remote.stream,
        "ns1",
        &format!("ns@{REMOTE}/x"),
        "<query xmlns='urn:nonsense'/>",
    )
    .await
    .expect("an answer to an unknown payload");
    assert_eq!(
        error_condition(&answer).as_deref(),
        Some("service-unavailable")
    );
    let odd = format!(
        "<message to='{ECHO}' from='ns@{REMOTE}/x'><p:x xmlns:p='urn:p'><p:y p:z='1'/></p:x>\
         <x xmlns=''/></message>"
    );
    assert!(remote.stream.write(odd.as_bytes()).await);
    still_answers(&mut remote, "bad namespaces").await;

    // Bad UTF-8 from the user: the server drops that user's stream; nothing reaches us.
    assert!(
        mallory
            .stream
            .write(format!("<message to='{ECHO}'><body>").as_bytes())
            .await
    );
    let _ = mallory.stream.write(b"\xff\xfe\xc0</body></message>").await;
    still_answers(&mut remote, "bad UTF-8").await;
    let mut mallory = RawClient::login(server.c2s_port, "mallory", "y").await;

    // Floods from the remote server's minted users: presence from 5,000 resources,
    // subscriptions from 3,000 users, 600 proposals and 600 session-initiates. Each is answered
    // at most once: a flood is not amplified.
    let mut flood = String::new();
    let mut answers = 0;
    for n in 0..5_000 {
        flood.push_str(&format!(
            "<presence from='crowd@{REMOTE}/r{n}' to='{ECHO}'/>"
        ));
        if n % 500 == 499 {
            assert!(remote.stream.write(flood.as_bytes()).await);
            flood.clear();
            answers += remote.stream.drain().0;
        }
    }
    for n in 0..3_000 {
        flood.push_str(&format!(
            "<presence type='subscribe' from='fan{n}@{REMOTE}' to='{ECHO}'/>"
        ));
        if n % 500 == 499 {
            assert!(remote.stream.write(flood.as_bytes()).await);
            flood.clear();
            answers += remote.stream.drain().0;
        }
    }
    answers += still_answers(&mut remote, "presence floods").await;
    for n in 0..600 {
        flood.push_str(&format!(
            "<message type='chat' id='p{n}' from='caller{n}@{REMOTE}/x' to='{ECHO}'>\
             <propose xmlns='urn:xmpp:jingle-message:0' id='prop{n}'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>"
        ));
        flood.push_str(&format!(
            "<iq type='set' id='si{n}' from='initiator{n}@{REMOTE}/x' to='{ECHO}'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='sid{n}'>\
             <content creator='initiator' name='0'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
             <payload-type id='0' name='PCMU' clockrate='8000'/>\
             <rtcp-mux/></description>\
             <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u{n}' pwd='pwdpwdpwdpwdpwdpwdpwdpwd'>\
             <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>\
             AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\
             </fingerprint></transport></content></jingle></iq>"
        ));
        if n % 100 == 99 {
            assert!(remote.stream.write(flood.as_bytes()).await);
            flood.clear();
            answers += remote.stream.drain().0;
        }
    }
    // Chat "digits" from a user with no call, as fast as the server takes them.
    for n in 0..2_000 {
        flood.push_str(&format!(
            "<message type='chat' id='c{n}' to='{ECHO}'><body>1234567890#*</body></message>"
        ));
        if n % 500 == 499 {
            assert!(mallory.stream.write(flood.as_bytes()).await);
            flood.clear();
            mallory.stream.drain();
        }
    }
    answers += still_answers(&mut remote, "call and chat floods").await;
    // 8,000 presence stanzas (a subscription kept is answered with three), 600 proposals
    // (admitted ones with ringing and proceed), 600 session-initiates (result, and ringing when
    // admitted).
    let sent = 5_000 + 3_000 + 600 + 600;
    assert!(
        answers <= sent + 1_000,
        "{answers} answers to {sent} stanzas"
    );

    // A caller from another domain still gets through, and alice's call kept its audio.
    let mut bob = TestCaller::new(server.c2s_port, "bob").await;
    let mut call = bob
        .call(ECHO, &CallSetup::browser())
        .await
        .expect("bob gets through");
    let received = bob.exchange(&mut call, &Exchange::tone(2, 660.0)).await;
    assert_tone(&received, 660.0, "bob, after the floods");
    bob.hang_up(call).await;
    let alice = kept.finish().await;

    assert!(gateway.is_running(), "the gateway died:\n{}", gateway.log());
    let log = gateway.log();
    assert_eq!(
        log.matches("component connected").count(),
        1,
        "the component was reconnected:\n{log}"
    );
    assert!(!log.contains("component stream lost"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let rss_after = gateway.rss_kib();
    assert!(
        rss_after < rss_before + 48 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    let (_, text) = get(&format!("http://{metrics}/metrics")).await;
    let dropped: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("jingle_gateway_stanzas_dropped_total"))
        .map(str::to_string)
        .collect();
    let depth = metric(
        &text,
        "jingle_gateway_stanzas_dropped_total{reason=\"depth\"}",
    );
    assert!(depth >= Some(2.0), "{dropped:?}");
    eprintln!(
        "{kind:?}: attacks took {:?}; {answers} answers to {sent} flood stanzas; RSS \
         {rss_before} -> {rss_after} KiB; {dropped:?}",
        started.elapsed()
    );
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_prosody_leave_the_call_and_the_link_alone() {
    within(
        240,
        attacks_leave_the_call_and_the_link_alone(Kind::Prosody),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_through_ejabberd_leave_the_call_and_the_link_alone() {
    within(
        240,
        attacks_leave_the_call_and_the_link_alone(Kind::Ejabberd),
    )
    .await;
}

/// A server that stops reading (and answering) is noticed by the unanswered keepalive, and the
/// gateway attaches again once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_is_noticed() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-wedged");
        let gateway = GatewayProcess::start(
            &server,
            &data,
            "",
            &[
                ("RUST_LOG", "info"),
                ("GATEWAY_XMPP_KEEPALIVE", "5s"),
                ("GATEWAY_XMPP_TIMEOUT", "2s"),
            ],
            None,
        );
        assert!(
            gateway
                .wait_log("component connected", 1, Duration::from_secs(20))
                .await
        );
        let frozen = Instant::now();
        server.signal("STOP");
        let noticed = gateway
            .wait_log("component stream lost", 1, Duration::from_secs(30))
            .await;
        let took = frozen.elapsed();
        server.signal("CONT");
        assert!(
            noticed,
            "a frozen server went unnoticed:\n{}",
            gateway.log()
        );
        assert!(took < Duration::from_secs(20), "noticed after {took:?}");
        assert!(
            gateway
                .wait_log("component connected", 2, Duration::from_secs(30))
                .await,
            "{}",
            gateway.log()
        );
    })
    .await;
}

/// A virtual JID open to local users only: a remote server's user is refused (forbidden to a
/// session-initiate, `<reject/>` to a proposal), a local user gets through.
async fn callers_list_refuses_strangers(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw-callers");
    let tables = "[endpoints.private]\nkind = \"echo\"\ncallers = [\"@local\"]\n";
    let _gateway = GatewayProcess::start(&server, &data, tables, &[("RUST_LOG", "info")], None);
    let mut alice = TestCaller::new(server.c2s_port, "alice").await;
    wait_attached(&mut alice.client).await;
    let mut remote =
        RawComponent::connect(server.remote_component_port, REMOTE, REMOTE_SECRET).await;
    let private = "private@gw.localhost";
    let initiate = format!(
        "<iq type='set' id='si' from='eve@{REMOTE}/x' to='{private}'>\
         <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1'/></iq>"
    );
    assert!(remote.stream.write(initiate.as_bytes()).await);
    let answer = remote
        .stream
        .expect(Duration::from_secs(10), is_reply_to("si"))
        .await
        .expect("an answer to the session-initiate");
    assert_eq!(error_condition(&answer).as_deref(), Some("forbidden"));
    let propose = format!(
        "<message type='chat' from='eve@{REMOTE}/x' to='{private}'>\
         <propose xmlns='urn:xmpp:jingle-message:0' id='p1'>\
         <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>"
    );
    assert!(remote.stream.write(propose.as_bytes()).await);
    let reject = remote
        .stream
        .expect(Duration::from_secs(10), |e| {
            e.name() == "message" && e.has_child("reject", "urn:xmpp:jingle-message:0")
        })
        .await
        .expect("a reject");
    assert_eq!(reject.attr("to"), Some(&*format!("eve@{REMOTE}/x")));
    let mut call = alice
        .call(private, &CallSetup::browser())
        .await
        .expect("a local user gets through");
    let received = alice.exchange(&mut call, &Exchange::tone(2, 440.0)).await;
    assert_tone(&received, 440.0, "alice on private@");
    alice.hang_up(call).await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_list_refuses_strangers_on_prosody() {
    within(90, callers_list_refuses_strangers(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_list_refuses_strangers_on_ejabberd() {
    within(90, callers_list_refuses_strangers(Kind::Ejabberd)).await;
}

/// With every port of `media.port_range` taken, a new call is refused at once with `<busy/>`,
/// not answered and left to time out; the port is free again once the call that held it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_range_refuses_the_call_at_once() {
    within(90, async {
        let server = Server::start(Kind::Prosody);
        let data = TempDir::new("gw-ports");
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let range = format!("{port}-{port}");
        let gateway = crate::support::Gateway::start(crate::support::gateway_config(
            &server,
            &data,
            &[("GATEWAY_MEDIA_PORT_RANGE", &range)],
        ));
        let mut alice = TestCaller::new(server.c2s_port, "alice").await;
        wait_attached(&mut alice.client).await;
        let mut first = alice
            .call(ECHO, &CallSetup::browser())
            .await
            .expect("the first call takes the one port");
        let mut bob = TestCaller::new(server.c2s_port, "bob").await;
        let asked = Instant::now();
        let second = bob.call(ECHO, &CallSetup::browser()).await;
        let refused_after = asked.elapsed();
        assert_eq!(second.err().as_deref(), Some("busy"));
        assert!(
            refused_after < Duration::from_secs(5),
            "refused after {refused_after:?}"
        );
        let received = alice.exchange(&mut first, &Exchange::tone(2, 440.0)).await;
        assert_tone(&received, 440.0, "the first call");
        alice.hang_up(first).await;
        assert!(eventually(Duration::from_secs(10), || gateway.stats.open_legs() == 0).await);
        let mut again = bob
            .call(ECHO, &CallSetup::browser())
            .await
            .expect("the port is free again");
        let received = bob.exchange(&mut again, &Exchange::tone(2, 550.0)).await;
        assert_tone(&received, 550.0, "the call on the freed port");
        bob.hang_up(again).await;
        gateway.stop().await;
        alice.close().await;
        bob.close().await;
    })
    .await;
}
