//! The signalling core driven by scripted stanzas (captured from a browser) and a simulated
//! clock. Every scenario ends by asserting that nothing else was sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jid::{FullJid, Jid};
use xmpp_parsers::stanza_error::DefinedCondition;

use super::*;
use crate::jingle::negotiate::LocalTransport;
use crate::protocol::ice_udp::{Candidate, CandidateType, IceUdpTransport, Setup};
use crate::protocol::jingle::Content;
use crate::protocol::jingle::{Description, Jingle, Reason, SessionInfo, Transport};
use crate::protocol::jmi::Jmi;
use crate::testing::{jingle_payloads_from, BROWSER_CALL};
use crate::types::{Codec, DtlsRole};

const ALICE: &str = "alice@localhost/browser";
const ECHO: &str = "echo@gw.localhost";

struct Harness {
    core: Signalling,
    start: Instant,
    now: Instant,
}

fn config() -> SignallingConfig {
    crate::testing::signalling_config(HashMap::from([
        ("echo".to_string(), open_to_all(true)),
        ("other".to_string(), open_to_all(true)),
        ("voicemail".to_string(), open_to_all(false)),
    ]))
}

fn open_to_all(available: bool) -> VirtualJidPolicy {
    VirtualJidPolicy {
        available,
        callers: crate::config::CallerList::anyone(),
    }
}

fn jid(s: &str) -> Jid {
    Jid::new(s).unwrap()
}

fn full(s: &str) -> FullJid {
    FullJid::new(s).unwrap()
}

/// The captured browser offer and what the browser sent after it, in order.
fn captured() -> Vec<Jingle> {
    jingle_payloads_from(BROWSER_CALL, ALICE)
        .iter()
        .map(|p| Jingle::parse(p).unwrap())
        .filter(|j| j.sid.0 == "6d531948-1deb-4355-8119-c4581bd3cf4e")
        .collect()
}

fn offer() -> Jingle {
    captured().remove(0)
}

fn with_sid(mut jingle: Jingle, sid: &str) -> Jingle {
    jingle.sid = Sid(sid.into());
    jingle
}

fn local_transport() -> LocalTransport {
    LocalTransport {
        ufrag: "lufr".into(),
        pwd: "local-password-22chars".into(),
        candidates: vec![candidate(40000)],
        ssrc: 4242,
    }
}

fn candidate(port: u16) -> Candidate {
    Candidate {
        component: 1,
        foundation: "1".into(),
        generation: 0,
        id: None,
        ip: "127.0.0.1".parse().unwrap(),
        port,
        priority: 2130706431,
        protocol: "udp".into(),
        candidate_type: CandidateType::Host,
        rel_addr: None,
        rel_port: None,
        network: None,
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: SignallingConfig) -> Self {
        let start = Instant::now();
        Self {
            core: Signalling::new(config),
            start,
            now: start,
        }
    }

    /// Moves the clock on, firing what is due as the router would: at each deadline
    /// `poll_timeout` gives (which debug builds check against a scan of every timer).
    fn advance(&mut self, secs: u64) {
        let until = self.now + Duration::from_secs(secs);
        while let Some(due) = self.core.poll_timeout().filter(|due| *due <= until) {
            self.now = due.max(self.now);
            self.core.handle_timeout(self.now);
        }
        self.now = until;
        self.core.handle_timeout(self.now);
    }

    fn jingle(&mut self, from: &str, to: &str, jingle: Jingle) -> Result<(), Refusal> {
        self.core
            .handle_jingle(self.now, full(from), jid(to), jingle)
    }

    fn drain(&mut self) -> Vec<Output> {
        self.core.poll_timeout();
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    fn expect_nothing(&mut self) {
        let rest = self.drain();
        assert!(rest.is_empty(), "unexpected output: {rest:#?}");
    }

    /// Expects a Jingle IQ with `action` next and returns (id, from, to, jingle).
    fn expect_jingle(&mut self, action: Action) -> (String, Jid, FullJid, Jingle) {
        match self.core.poll_output() {
            Some(Output::JingleIq {
                id,
                from,
                to,
                jingle,
            }) if jingle.action == action => (id, from, to, jingle),
            other => panic!("expected {action}, got {other:#?}"),
        }
    }

    fn expect_jmi(&mut self) -> (Jid, Jid, Jmi) {
        match self.core.poll_output() {
            Some(Output::Jmi { from, to, jmi }) => (from, to, jmi),
            other => panic!("expected a JMI message, got {other:#?}"),
        }
    }

    fn expect(&mut self) -> Output {
        self.core.poll_output().expect("an output")
    }

    /// Runs a direct call to echo@ up to an acknowledged session-accept; returns its call id.
    fn established_call(&mut self, sid: &str) -> CallId {
        self.jingle(ALICE, ECHO, with_sid(offer(), sid)).unwrap();
        self.expect_jingle(Action::SessionInfo);
        let Output::StartCall(start) = self.expect() else {
            panic!("no StartCall")
        };
        self.core.handle_media(
            self.now,
            start.call_id,
            MediaEvent::LocalTransport(local_transport()),
        );
        let (id, ..) = self.expect_jingle(Action::SessionAccept);
        assert!(self
            .core
            .handle_iq_response(self.now, &jid(ALICE), &id, None));
        self.expect_nothing();
        start.call_id
    }
}

#[test]
fn captured_browser_call_runs_to_the_end() {
    let mut h = Harness::new();
    let mut stanzas = captured().into_iter();

    // session-initiate (no `initiator` attribute): acknowledged, ringing, media started.
    h.jingle(ALICE, "voicemail@gw.localhost", offer()).unwrap();
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(
        terminate.reason.unwrap().reason,
        Reason::UnsupportedApplications
    );
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::EndpointUnavailable,
            ..
        }
    ));
    h.expect_nothing();

    h.jingle(ALICE, ECHO, stanzas.next().unwrap()).unwrap();
    let (_, from, to, ringing) = h.expect_jingle(Action::SessionInfo);
    assert_eq!((from, to.clone()), (jid(ECHO), full(ALICE)));
    assert_eq!(ringing.info, Some(SessionInfo::Ringing));
    let Output::StartCall(start) = h.expect() else {
        panic!()
    };
    assert_eq!(start.virtual_jid, "echo");
    assert_eq!(start.peer, full(ALICE));
    let offer = start.offer.unwrap();
    assert_eq!((offer.codec, offer.payload_type), (Codec::Opus, 111));
    assert_eq!(offer.dtls_role, DtlsRole::Client);
    h.expect_nothing();

    // Trickled candidates: udp, tcp, then <gathering-complete/> alone.
    h.jingle(ALICE, ECHO, stanzas.next().unwrap()).unwrap();
    let Output::RemoteCandidates {
        call_id,
        candidates,
    } = h.expect()
    else {
        panic!()
    };
    assert_eq!((call_id, candidates[0].port), (start.call_id, 49191));
    h.jingle(ALICE, ECHO, stanzas.next().unwrap()).unwrap();
    assert!(matches!(h.expect(), Output::RemoteCandidates { .. }));
    h.jingle(ALICE, ECHO, stanzas.next().unwrap()).unwrap();
    h.expect_nothing();

    // The media leg is ready: session-accept from exactly the JID that was called.
    h.core.handle_media(
        h.now,
        start.call_id,
        MediaEvent::LocalTransport(local_transport()),
    );
    let (accept_id, from, to, accept) = h.expect_jingle(Action::SessionAccept);
    assert_eq!((from, to), (jid(ECHO), full(ALICE)));
    assert_eq!(accept.responder, Some(jid(ECHO)));
    let content = &accept.contents[0];
    let rtp = content.rtp().unwrap();
    assert_eq!(
        rtp.payload_types.iter().map(|p| p.id).collect::<Vec<_>>(),
        [111, 110]
    );
    assert!(rtp.rtcp_mux);
    let transport = content.ice_udp().unwrap();
    assert_eq!(transport.fingerprints[0].setup, Some(Setup::Active));
    assert_eq!(transport.fingerprints[0].value, "AA:BB:CC");
    assert_eq!(transport.candidates.len(), 1);
    assert_eq!(accept.group.unwrap().contents, ["0"]);
    assert!(h
        .core
        .handle_iq_response(h.now, &jid(ALICE), &accept_id, None));
    h.expect_nothing();

    // The caller hangs up: nothing owed to it, the media stops.
    let terminate = captured()
        .into_iter()
        .find(|j| j.action == Action::SessionTerminate)
        .unwrap();
    h.jingle(ALICE, ECHO, terminate).unwrap();
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: start.call_id,
            reason: EndReason::PeerHungUp(Reason::Success)
        }
    );
    h.expect_nothing();
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn xep_0166_error_conditions() {
    let mut h = Harness::new();
    let info = captured()
        .into_iter()
        .find(|j| j.action == Action::TransportInfo)
        .unwrap();
    // Unknown sid.
    assert_eq!(
        h.jingle(ALICE, ECHO, info.clone()),
        Err(Refusal::UnknownSession)
    );
    let call = h.established_call("s1");
    // A known sid from a different full JID is an unknown session.
    let other = with_sid(info.clone(), "s1");
    assert_eq!(
        h.jingle("alice@localhost/phone", ECHO, other.clone()),
        Err(Refusal::UnknownSession)
    );
    assert_eq!(
        h.jingle("mallory@localhost/browser", ECHO, other),
        Err(Refusal::UnknownSession)
    );
    // Out of order: the caller cannot accept its own session.
    let mut accept = with_sid(offer(), "s1");
    accept.action = Action::SessionAccept;
    assert_eq!(h.jingle(ALICE, ECHO, accept), Err(Refusal::OutOfOrder));
    // An exact duplicate initiate is idempotent; a different one is out of order.
    assert_eq!(h.jingle(ALICE, ECHO, with_sid(offer(), "s1")), Ok(()));
    let mut changed = with_sid(offer(), "s1");
    changed.contents[0].name = "1".into();
    assert_eq!(h.jingle(ALICE, ECHO, changed), Err(Refusal::OutOfOrder));
    // Unknown callee, and the bare domain.
    assert_eq!(
        h.jingle(ALICE, "nobody@gw.localhost", with_sid(offer(), "s2")),
        Err(Refusal::UnknownCallee)
    );
    assert_eq!(
        h.jingle(ALICE, "gw.localhost", with_sid(offer(), "s3")),
        Err(Refusal::UnknownCallee)
    );
    // session-info: a ping and ringing are fine, an unknown payload is not.
    let mut ping = Jingle::new(Action::SessionInfo, Sid("s1".into()));
    assert_eq!(h.jingle(ALICE, ECHO, ping.clone()), Ok(()));
    ping.info = Some(SessionInfo::Other("dance".into(), "urn:example".into()));
    assert_eq!(h.jingle(ALICE, ECHO, ping), Err(Refusal::UnsupportedInfo));
    h.expect_nothing();
    assert_eq!(h.core.active_calls(), 1);
    let _ = call;
}

#[test]
fn unusable_offers_are_acknowledged_then_terminated_with_the_reason() {
    let mut no_codec = offer();
    let mut no_ice = offer();
    let mut no_fingerprint = offer();
    if let Some(Description::Rtp(rtp)) = &mut no_codec.contents[0].description {
        rtp.payload_types
            .retain(|p| p.name.as_deref() == Some("G722"));
    }
    no_ice.contents[0].transport = Some(Transport::Other(
        "urn:xmpp:jingle:transports:raw-udp:1".into(),
    ));
    if let Some(Transport::IceUdp(t)) = &mut no_fingerprint.contents[0].transport {
        t.fingerprints.clear();
    }
    for (jingle, reason) in [
        (no_codec, Reason::UnsupportedApplications),
        (no_ice, Reason::UnsupportedTransports),
        (no_fingerprint, Reason::SecurityError),
    ] {
        let mut h = Harness::new();
        assert_eq!(h.jingle(ALICE, ECHO, jingle), Ok(()));
        let (_, from, _, terminate) = h.expect_jingle(Action::SessionTerminate);
        assert_eq!(from, jid(ECHO));
        assert_eq!(terminate.reason.unwrap().reason, reason);
        assert!(matches!(h.expect(), Output::CallNotStarted { .. }));
        h.expect_nothing();
        assert_eq!(h.core.active_calls(), 0);
    }
}

#[test]
fn call_limits_busy_per_jid_and_resource_constraint_overall() {
    let mut config = config();
    config.limits.max_calls_per_jid = 1;
    config.limits.max_calls = 2;
    let mut h = Harness::with(config);
    h.established_call("a");
    // A second call to echo@: busy.
    assert_eq!(h.jingle(ALICE, ECHO, with_sid(offer(), "b")), Ok(()));
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Busy);
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::Busy,
            ..
        }
    ));
    // other@ still has room; then the gateway is full.
    h.jingle(ALICE, "other@gw.localhost", with_sid(offer(), "c"))
        .unwrap();
    h.drain();
    assert_eq!(
        h.jingle(ALICE, "other@gw.localhost", with_sid(offer(), "d")),
        Err(Refusal::Overloaded)
    );
    // A JMI proposal over the limit is rejected with <busy/>.
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        Jmi::Propose {
            sid: Sid("e".into()),
            media: vec!["audio".into()],
        },
    );
    let (_, _, jmi) = h.expect_jmi();
    assert!(matches!(jmi, Jmi::Reject { reason: Some(r), .. } if r.reason == Reason::Busy));
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::Busy,
            ..
        }
    ));
    h.expect_nothing();
}

#[test]
fn jmi_propose_rings_proceeds_and_finishes() {
    let mut h = Harness::new();
    let sid = "c03d6d24-9acb-4a97-8c4b-f4b0432d5a66";
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        Some("m1".into()),
        true,
        Jmi::Propose {
            sid: Sid(sid.into()),
            media: vec!["audio".into()],
        },
    );
    assert_eq!(
        h.expect(),
        Output::Receipt {
            from: jid(ECHO),
            to: full(ALICE),
            id: "m1".into()
        }
    );
    let (from, to, ringing) = h.expect_jmi();
    assert_eq!(
        ringing,
        Jmi::Ringing {
            sid: Sid(sid.into())
        }
    );
    assert_eq!(to, full(ALICE));
    // <proceed/> comes from a full JID of the virtual JID.
    let (proceed_from, _, proceed) = h.expect_jmi();
    assert_eq!(
        proceed,
        Jmi::Proceed {
            sid: Sid(sid.into())
        }
    );
    assert_eq!(proceed_from, jid("echo@gw.localhost/gateway"));
    assert_eq!(from, proceed_from);
    // A repeated propose only gets its receipt again.
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        Some("m1".into()),
        true,
        Jmi::Propose {
            sid: Sid(sid.into()),
            media: vec!["audio".into()],
        },
    );
    assert!(matches!(h.expect(), Output::Receipt { .. }));
    h.expect_nothing();

    // The session-initiate arrives at that full JID; everything we send comes from it.
    h.jingle(ALICE, "echo@gw.localhost/gateway", with_sid(offer(), sid))
        .unwrap();
    let (_, from, ..) = h.expect_jingle(Action::SessionInfo);
    assert_eq!(from, jid("echo@gw.localhost/gateway"));
    let Output::StartCall(start) = h.expect() else {
        panic!()
    };
    h.core.handle_media(
        h.now,
        start.call_id,
        MediaEvent::LocalTransport(local_transport()),
    );
    let (id, ..) = h.expect_jingle(Action::SessionAccept);
    h.core.handle_iq_response(h.now, &jid(ALICE), &id, None);

    // The endpoint hangs up: session-terminate, then <finish/>.
    h.core.handle_media(
        h.now,
        start.call_id,
        MediaEvent::Ended(EndReason::EndpointHungUp),
    );
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Success);
    let (_, _, finish) = h.expect_jmi();
    assert!(matches!(finish, Jmi::Finish { reason: Some(r), .. } if r.reason == Reason::Success));
    assert!(matches!(
        h.expect(),
        Output::StopCall {
            reason: EndReason::EndpointHungUp,
            ..
        }
    ));
    h.expect_nothing();
}

#[test]
fn jmi_retract_ring_timeout_and_refusals() {
    let mut h = Harness::new();
    let propose = |sid: &str, media: &str| Jmi::Propose {
        sid: Sid(sid.into()),
        media: vec![media.into()],
    };
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        propose("r", "audio"),
    );
    h.drain();
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        Jmi::Retract {
            sid: Sid("r".into()),
            tie_break: false,
            reason: None,
        },
    );
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::PeerRetracted,
            ..
        }
    ));
    h.expect_nothing();

    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        propose("t", "audio"),
    );
    h.drain();
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.start + Duration::from_secs(30))
    );
    h.advance(29);
    h.expect_nothing();
    h.advance(1);
    // The caller holds our <proceed/>: it is told the call will not come.
    let (from, _, finish) = h.expect_jmi();
    assert_eq!(from, jid("echo@gw.localhost/gateway"));
    assert!(matches!(finish, Jmi::Finish { reason: Some(r), .. } if r.reason == Reason::Timeout));
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::RingTimeout,
            ..
        }
    ));
    h.expect_nothing();
    assert_eq!(h.core.poll_timeout(), None);

    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        propose("v", "video"),
    );
    let (_, _, jmi) = h.expect_jmi();
    assert!(
        matches!(jmi, Jmi::Reject { reason: Some(r), .. } if r.reason == Reason::UnsupportedApplications)
    );
    h.drain();
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid("voicemail@gw.localhost"),
        None,
        false,
        propose("w", "audio"),
    );
    let (_, _, jmi) = h.expect_jmi();
    assert!(matches!(jmi, Jmi::Reject { .. }));
    h.drain();
    // To a JID that does not exist: nothing (the XMPP layer bounces the message).
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid("nobody@gw.localhost"),
        None,
        false,
        propose("x", "audio"),
    );
    h.expect_nothing();
}

#[test]
fn answer_timeout_and_max_duration() {
    let mut h = Harness::new();
    h.jingle(ALICE, ECHO, with_sid(offer(), "slow")).unwrap();
    h.drain();
    h.advance(20);
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Timeout);
    assert!(matches!(
        h.expect(),
        Output::StopCall {
            reason: EndReason::AnswerTimeout,
            ..
        }
    ));
    h.expect_nothing();

    let call = h.established_call("long");
    h.advance(3599);
    h.expect_nothing();
    h.advance(1);
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Expired);
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: call,
            reason: EndReason::MaxDuration
        }
    );
    h.expect_nothing();
}

#[test]
fn video_content_add_is_rejected_while_audio_continues() {
    let mut h = Harness::new();
    h.established_call("v");
    let mut add = with_sid(offer(), "v");
    add.action = Action::ContentAdd;
    add.contents[0].name = "1".into();
    if let Some(Description::Rtp(rtp)) = &mut add.contents[0].description {
        rtp.media = "video".into();
    }
    assert_eq!(h.jingle(ALICE, ECHO, add), Ok(()));
    let (_, _, _, reject) = h.expect_jingle(Action::ContentReject);
    assert_eq!(reject.contents[0].name, "1");
    assert!(reject.contents[0].description.is_none());
    h.expect_nothing();
    assert_eq!(h.core.active_calls(), 1);
}

#[test]
fn trickle_both_ways_and_ice_restart() {
    let mut h = Harness::new();
    h.jingle(ALICE, ECHO, with_sid(offer(), "t")).unwrap();
    h.drain();
    let call = CallId(1);
    // A candidate gathered before the answer goes into it; later ones trickle.
    h.core
        .handle_media(h.now, call, MediaEvent::LocalCandidate(candidate(40001)));
    h.expect_nothing();
    h.core
        .handle_media(h.now, call, MediaEvent::LocalTransport(local_transport()));
    let (_, _, _, accept) = h.expect_jingle(Action::SessionAccept);
    assert_eq!(accept.contents[0].ice_udp().unwrap().candidates.len(), 2);
    h.core
        .handle_media(h.now, call, MediaEvent::LocalCandidate(candidate(40002)));
    let (_, _, _, info) = h.expect_jingle(Action::TransportInfo);
    assert_eq!(info.contents[0].name, "0");
    assert_eq!(
        info.contents[0].ice_udp().unwrap().candidates[0].port,
        40002
    );

    // The caller restarts ICE: new ufrag and pwd.
    let mut restart = Jingle::new(Action::TransportInfo, Sid("t".into()));
    let mut content = offer().contents.remove(0);
    content.description = None;
    content.transport = Some(Transport::IceUdp(IceUdpTransport {
        ufrag: Some("new1".into()),
        pwd: Some("newPassword0f24chars+ab".into()),
        candidates: vec![candidate(50000)],
        ..IceUdpTransport::default()
    }));
    restart.contents = vec![content];
    h.jingle(ALICE, ECHO, restart.clone()).unwrap();
    let Output::IceRestart {
        ufrag, candidates, ..
    } = h.expect()
    else {
        panic!()
    };
    assert_eq!((ufrag.as_str(), candidates.len()), ("new1", 1));
    // The same credentials again are only candidates.
    h.jingle(ALICE, ECHO, restart).unwrap();
    assert!(matches!(h.expect(), Output::RemoteCandidates { .. }));
    // Our new credentials go out in a transport-info.
    let mut renewed = local_transport();
    renewed.ufrag = "lnew".into();
    h.core
        .handle_media(h.now, call, MediaEvent::LocalTransport(renewed));
    let (_, _, _, info) = h.expect_jingle(Action::TransportInfo);
    assert_eq!(
        info.contents[0].ice_udp().unwrap().ufrag.as_deref(),
        Some("lnew")
    );
    h.expect_nothing();
}

#[test]
fn shutdown_ends_calls_with_gone_and_refuses_new_ones() {
    let mut h = Harness::new();
    let call = h.established_call("x");
    h.core.handle_shutdown(h.now);
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Gone);
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: call,
            reason: EndReason::Shutdown
        }
    );
    h.expect_nothing();
    assert_eq!(
        h.jingle(ALICE, ECHO, with_sid(offer(), "y")),
        Err(Refusal::ShuttingDown)
    );
    h.expect_nothing();
}

#[test]
fn peer_errors_and_disappearance_end_calls_without_a_terminate() {
    let mut h = Harness::new();
    h.jingle(ALICE, ECHO, with_sid(offer(), "e")).unwrap();
    h.drain();
    h.core.handle_media(
        h.now,
        CallId(1),
        MediaEvent::LocalTransport(local_transport()),
    );
    let (id, ..) = h.expect_jingle(Action::SessionAccept);
    // An answer from anyone but the caller is not taken.
    assert!(!h
        .core
        .handle_iq_response(h.now, &jid("mallory@localhost/x"), &id, None));
    assert!(h.core.handle_iq_response(
        h.now,
        &jid(ALICE),
        &id,
        Some(DefinedCondition::ServiceUnavailable)
    ));
    assert!(matches!(
        h.expect(),
        Output::StopCall {
            reason: EndReason::PeerGone,
            ..
        }
    ));
    h.expect_nothing();
    assert!(!h
        .core
        .handle_iq_response(h.now, &jid(ALICE), "not-ours", None));

    let call = h.established_call("f");
    h.core.handle_peer_unavailable(h.now, &full(ALICE));
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: call,
            reason: EndReason::PeerGone
        }
    );
    h.expect_nothing();
}

#[test]
fn a_proposal_is_only_for_its_callee_and_callers_have_a_limit() {
    let mut config = config();
    config.limits.max_calls_per_caller = 2;
    let mut h = Harness::with(config);
    let propose = |sid: &str| Jmi::Propose {
        sid: Sid(sid.into()),
        media: vec!["audio".into()],
    };
    h.core
        .handle_jmi(h.now, full(ALICE), jid(ECHO), None, false, propose("p1"));
    h.drain();
    // The proposal to echo@ does not let a session-initiate to other@ past the limits.
    h.jingle(ALICE, "other@gw.localhost", with_sid(offer(), "p1"))
        .unwrap();
    h.drain();
    // alice has two calls now (a proposal and a session): a third is refused.
    assert_eq!(
        h.jingle("alice@localhost/laptop", ECHO, with_sid(offer(), "p3")),
        Err(Refusal::Overloaded)
    );
    h.core
        .handle_jmi(h.now, full(ALICE), jid(ECHO), None, false, propose("p4"));
    let (_, _, jmi) = h.expect_jmi();
    assert!(matches!(jmi, Jmi::Reject { .. }));
    h.drain();
    // Someone else is still welcome.
    h.jingle("bob@localhost/phone", ECHO, with_sid(offer(), "p5"))
        .unwrap();
    assert!(matches!(
        h.expect_jingle(Action::SessionInfo).3.info,
        Some(SessionInfo::Ringing)
    ));
}

#[test]
fn shutdown_finishes_proceeded_proposals() {
    let mut h = Harness::new();
    h.core.handle_jmi(
        h.now,
        full(ALICE),
        jid(ECHO),
        None,
        false,
        Jmi::Propose {
            sid: Sid("s".into()),
            media: vec!["audio".into()],
        },
    );
    h.drain();
    h.core.handle_shutdown(h.now);
    let (_, to, finish) = h.expect_jmi();
    assert_eq!(to, full(ALICE));
    assert!(matches!(finish, Jmi::Finish { reason: Some(r), .. } if r.reason == Reason::Gone));
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::Shutdown,
            ..
        }
    ));
    h.expect_nothing();
}

#[test]
fn refusals_of_minor_requests_do_not_end_the_call() {
    let mut h = Harness::new();
    h.jingle(ALICE, ECHO, with_sid(offer(), "m")).unwrap();
    let (ringing_id, ..) = h.expect_jingle(Action::SessionInfo);
    h.drain();
    // A client that does not support <ringing/> answers feature-not-implemented: fine.
    assert!(h.core.handle_iq_response(
        h.now,
        &jid(ALICE),
        &ringing_id,
        Some(DefinedCondition::FeatureNotImplemented)
    ));
    h.expect_nothing();
    assert_eq!(h.core.active_calls(), 1);
    // Removing the only content ends the call, and the caller is told.
    let mut remove = with_sid(offer(), "m");
    remove.action = Action::ContentRemove;
    h.jingle(ALICE, ECHO, remove).unwrap();
    let (_, _, _, terminate) = h.expect_jingle(Action::SessionTerminate);
    assert_eq!(terminate.reason.unwrap().reason, Reason::Success);
    assert!(matches!(
        h.expect(),
        Output::StopCall {
            reason: EndReason::ContentRemoved,
            ..
        }
    ));
    h.expect_nothing();
}

// Calls the gateway places.

const BOB: &str = "bob@localhost";
const BOB_PHONE: &str = "bob@localhost/phone";
const BOB_LAPTOP: &str = "bob@localhost/laptop";
const IVR_DEVICE: &str = "echo@gw.localhost/gateway";

impl Harness {
    fn bob_says(&mut self, device: &str, jmi: Jmi) {
        self.core
            .handle_jmi(self.now, full(device), jid(ECHO), None, false, jmi);
    }

    fn expect_start(&mut self) -> CallStart {
        match self.core.poll_output() {
            Some(Output::StartCall(start)) => start,
            other => panic!("expected StartCall, got {other:#?}"),
        }
    }

    /// The callee's `session-accept`, from the captured browser answer, for `sid`.
    fn accept_from(&mut self, device: &str, sid: &Sid) -> Result<(), Refusal> {
        let accept = Jingle::parse(&crate::testing::first_jingle(
            crate::testing::BROWSER_CALLEE,
            "session-accept",
        ))
        .unwrap();
        self.jingle(device, IVR_DEVICE, with_sid(accept, &sid.0))
    }
}

#[test]
fn placing_a_call_to_a_bare_jid_rings_all_devices_and_the_first_proceed_gets_the_offer() {
    let mut h = Harness::new();
    let call = h
        .core
        .place_call(h.now, "echo", jid(BOB), Duration::from_secs(20))
        .unwrap();
    let (from, to, propose) = h.expect_jmi();
    assert_eq!((from, to), (jid(IVR_DEVICE), jid(BOB)));
    let Jmi::Propose { sid, media } = propose else {
        panic!("expected a propose")
    };
    assert_eq!(media, ["audio"]);
    h.expect_nothing();

    h.bob_says(BOB_PHONE, Jmi::Ringing { sid: sid.clone() });
    h.bob_says(BOB_LAPTOP, Jmi::Proceed { sid: sid.clone() });
    let start = h.expect_start();
    assert_eq!(
        (start.call_id, start.peer.clone()),
        (call, full(BOB_LAPTOP))
    );
    assert!(start.offer.is_none());
    h.expect_nothing();
    // A second device proceeding late changes nothing.
    h.bob_says(BOB_PHONE, Jmi::Proceed { sid: sid.clone() });
    h.expect_nothing();

    h.core
        .handle_media(h.now, call, MediaEvent::LocalTransport(local_transport()));
    let (id, from, to, initiate) = h.expect_jingle(Action::SessionInitiate);
    assert_eq!((from, to), (jid(IVR_DEVICE), full(BOB_LAPTOP)));
    assert_eq!(initiate.initiator, Some(jid(IVR_DEVICE)));
    let transport = initiate.contents[0].ice_udp().unwrap();
    assert_eq!(transport.fingerprints[0].setup, Some(Setup::Actpass));
    assert_eq!(transport.candidates.len(), 1);
    h.expect_nothing();
    assert!(h
        .core
        .handle_iq_response(h.now, &jid(BOB_LAPTOP), &id, None));

    h.advance(3);
    h.accept_from(BOB_LAPTOP, &sid).unwrap();
    match h.core.poll_output() {
        Some(Output::Answered { call_id, media }) => {
            assert_eq!(call_id, call);
            assert_eq!(media.codec, Codec::Opus);
            assert_eq!(media.dtls_role, DtlsRole::Server);
        }
        other => panic!("expected Answered, got {other:#?}"),
    }
    h.expect_nothing();

    // Our side hangs up: terminate, and finish to all of Bob's devices.
    h.core
        .handle_media(h.now, call, MediaEvent::Ended(EndReason::EndpointHungUp));
    h.expect_jingle(Action::SessionTerminate);
    let (_, to, finish) = h.expect_jmi();
    assert_eq!(to, jid(BOB));
    assert!(matches!(finish, Jmi::Finish { .. }));
    assert!(matches!(
        h.core.poll_output(),
        Some(Output::StopCall {
            reason: EndReason::EndpointHungUp,
            ..
        })
    ));
    h.expect_nothing();
}

#[test]
fn a_placed_call_rejected_unanswered_bounced_or_cancelled_fails() {
    let mut h = Harness::new();
    let ring = Duration::from_secs(20);

    // Rejected.
    let call = h.core.place_call(h.now, "echo", jid(BOB), ring).unwrap();
    let (_, _, propose) = h.expect_jmi();
    let sid = propose.sid().clone();
    h.bob_says(
        BOB_PHONE,
        Jmi::Reject {
            sid,
            tie_break: false,
            reason: Some(EndReason::Busy.to_reason_element()),
        },
    );
    assert_eq!(
        h.core.poll_output(),
        Some(Output::DialFailed {
            call_id: call,
            reason: EndReason::PeerRejected(Reason::Busy)
        })
    );
    h.expect_nothing();

    // Nobody answers: retracted when the ring time is up.
    let call = h.core.place_call(h.now, "echo", jid(BOB), ring).unwrap();
    h.expect_jmi();
    h.advance(21);
    let (_, to, retract) = h.expect_jmi();
    assert_eq!(to, jid(BOB));
    assert!(matches!(retract, Jmi::Retract { reason: Some(r), .. } if r.reason == Reason::Cancel));
    assert_eq!(
        h.core.poll_output(),
        Some(Output::DialFailed {
            call_id: call,
            reason: EndReason::RingTimeout
        })
    );
    h.expect_nothing();

    // The proposal bounces (no such user): only from the target does that count.
    let call = h.core.place_call(h.now, "echo", jid(BOB), ring).unwrap();
    let (_, _, propose) = h.expect_jmi();
    h.core
        .handle_jmi_bounce(h.now, &jid("mallory@localhost"), &propose.sid().0);
    h.expect_nothing();
    h.core.handle_jmi_bounce(h.now, &jid(BOB), &propose.sid().0);
    assert_eq!(
        h.core.poll_output(),
        Some(Output::DialFailed {
            call_id: call,
            reason: EndReason::PeerGone
        })
    );

    // Someone proceeding for another user changes nothing.
    let call = h.core.place_call(h.now, "echo", jid(BOB), ring).unwrap();
    let (_, _, propose) = h.expect_jmi();
    let sid = propose.sid().clone();
    h.bob_says("mallory@localhost/x", Jmi::Proceed { sid: sid.clone() });
    h.expect_nothing();
    // Cancelled while ringing (another target answered).
    h.core.cancel_call(call, EndReason::Cancelled);
    let (_, _, retract) = h.expect_jmi();
    assert!(matches!(retract, Jmi::Retract { .. }));
    assert_eq!(
        h.core.poll_output(),
        Some(Output::DialFailed {
            call_id: call,
            reason: EndReason::Cancelled
        })
    );
    h.expect_nothing();
}

#[test]
fn a_full_jid_gets_a_session_initiate_and_may_decline_it() {
    let mut h = Harness::new();
    let call = h
        .core
        .place_call(h.now, "echo", jid(BOB_PHONE), Duration::from_secs(20))
        .unwrap();
    let start = h.expect_start();
    assert_eq!(start.peer, full(BOB_PHONE));
    h.core
        .handle_media(h.now, call, MediaEvent::LocalTransport(local_transport()));
    let (id, _, _, initiate) = h.expect_jingle(Action::SessionInitiate);
    h.core.handle_iq_response(h.now, &jid(BOB_PHONE), &id, None);
    // Candidates before the answer are only candidates (no ICE restart is seen).
    let mut info = Jingle::new(Action::TransportInfo, initiate.sid.clone());
    info.contents = vec![Content {
        creator: crate::protocol::jingle::Creator::Initiator,
        name: "audio".into(),
        senders: crate::protocol::jingle::Senders::Both,
        description: None,
        transport: Some(Transport::IceUdp(IceUdpTransport {
            ufrag: Some("theirs".into()),
            pwd: Some("their-password".into()),
            candidates: vec![candidate(5000)],
            ..IceUdpTransport::default()
        })),
    }];
    h.jingle(BOB_PHONE, IVR_DEVICE, info).unwrap();
    assert!(matches!(
        h.core.poll_output(),
        Some(Output::RemoteCandidates { call_id, .. }) if call_id == call
    ));
    let mut decline = Jingle::new(Action::SessionTerminate, initiate.sid.clone());
    decline.reason = Some(EndReason::PeerRejected(Reason::Decline).to_reason_element());
    h.jingle(BOB_PHONE, IVR_DEVICE, decline).unwrap();
    assert_eq!(
        h.core.poll_output(),
        Some(Output::StopCall {
            call_id: call,
            reason: EndReason::PeerHungUp(Reason::Decline)
        })
    );
    h.expect_nothing();

    // An error to our session-initiate (the device is gone) ends the call.
    let call = h
        .core
        .place_call(h.now, "echo", jid(BOB_PHONE), Duration::from_secs(20))
        .unwrap();
    h.expect_start();
    h.core
        .handle_media(h.now, call, MediaEvent::LocalTransport(local_transport()));
    let (id, ..) = h.expect_jingle(Action::SessionInitiate);
    h.core.handle_iq_response(
        h.now,
        &jid(BOB_PHONE),
        &id,
        Some(DefinedCondition::ServiceUnavailable),
    );
    assert!(matches!(
        h.core.poll_output(),
        Some(Output::StopCall {
            reason: EndReason::PeerGone,
            ..
        })
    ));
    h.expect_nothing();
}

mod hostile;
