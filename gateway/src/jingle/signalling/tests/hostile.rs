//! Callers the gateway must hold off: strangers at a virtual JID whose `callers` list does not
//! name them, one domain minting users to take every slot, floods of new calls, and glare with
//! calls the gateway places. Literal stanzas, a simulated clock, and every scenario ends with
//! nothing else sent.

use super::*;

/// A JMI element written as a client sends it.
fn jmi(xml: &str) -> Jmi {
    Jmi::parse(&xml.parse::<minidom::Element>().unwrap()).unwrap()
}

fn propose(sid: &str) -> Jmi {
    jmi(&format!(
        "<propose xmlns='urn:xmpp:jingle-message:0' id='{sid}'>\
         <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"
    ))
}

const LOBBY: &str = "lobby@gw.localhost";

fn with_lobby(mut config: SignallingConfig) -> SignallingConfig {
    let local_only = crate::config::CallerList::parse(&["@local".to_string()]).unwrap();
    config.virtual_jids.insert(
        "lobby".into(),
        VirtualJidPolicy {
            available: true,
            callers: local_only,
        },
    );
    config
}

impl Harness {
    fn propose(&mut self, from: &str, to: &str, sid: &str) {
        self.core
            .handle_jmi(self.now, full(from), jid(to), None, false, propose(sid));
    }

    /// Expects a call to start (ringing, then StartCall) and returns it.
    fn expect_call_started(&mut self) -> CallId {
        self.expect_jingle(Action::SessionInfo);
        self.expect_start().call_id
    }

    /// Hangs up `call` as its caller would.
    fn caller_hangs_up(&mut self, caller: &str, sid: &str, call: CallId) {
        let mut terminate = Jingle::new(Action::SessionTerminate, Sid(sid.into()));
        terminate.reason = Some(EndReason::PeerHungUp(Reason::Success).to_reason_element());
        self.jingle(caller, ECHO, terminate).unwrap();
        assert!(matches!(
            self.expect(),
            Output::StopCall { call_id, .. } if call_id == call
        ));
    }
}

#[test]
fn a_caller_the_list_does_not_name_is_refused() {
    let mut h = Harness::with(with_lobby(config()));
    // A session-initiate: forbidden, and nothing else happens.
    assert_eq!(
        h.jingle("mallory@evil.example/x", LOBBY, with_sid(offer(), "s1")),
        Err(Refusal::Forbidden)
    );
    h.expect_nothing();
    // A proposal: <reject/> with <decline/>, from the device JID, to the caller's bare JID.
    h.propose("mallory@evil.example/x", LOBBY, "s2");
    let (from, to, reject) = h.expect_jmi();
    assert_eq!(
        (from, to),
        (
            jid("lobby@gw.localhost/gateway"),
            jid("mallory@evil.example/x")
        )
    );
    let Jmi::Reject {
        reason: Some(reason),
        tie_break: false,
        ..
    } = reject
    else {
        panic!("{reject:?}")
    };
    assert_eq!(reason.reason, Reason::Decline);
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::CallerNotAllowed,
            ..
        }
    ));
    h.expect_nothing();
    // A local user gets through; echo@ stays open to anyone.
    h.jingle(ALICE, LOBBY, with_sid(offer(), "s3")).unwrap();
    h.expect_call_started();
    h.jingle("mallory@evil.example/x", ECHO, with_sid(offer(), "s4"))
        .unwrap();
    h.expect_call_started();
    h.expect_nothing();
}

#[test]
fn one_domain_cannot_take_every_slot_of_a_virtual_jid() {
    let mut config = config();
    config.limits.max_calls_per_domain = 3;
    let mut h = Harness::with(config);
    for n in 0..3 {
        h.jingle(
            &format!("u{n}@evil.example/x"),
            ECHO,
            with_sid(offer(), &format!("e{n}")),
        )
        .unwrap();
        h.expect_call_started();
    }
    // A fourth user of that domain: refused before anything is sent.
    assert_eq!(
        h.jingle("u3@evil.example/x", ECHO, with_sid(offer(), "e3")),
        Err(Refusal::TooManyCalls)
    );
    h.propose("u4@evil.example/x", ECHO, "e4");
    let (_, _, reject) = h.expect_jmi();
    assert!(matches!(reject, Jmi::Reject { reason: Some(r), .. } if r.reason == Reason::Busy));
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::TooManyCalls,
            ..
        }
    ));
    h.expect_nothing();
    // echo@ still has room for everyone else.
    h.jingle("bob@good.example/x", ECHO, with_sid(offer(), "g1"))
        .unwrap();
    h.expect_call_started();
    h.jingle("carol@localhost/x", ECHO, with_sid(offer(), "g2"))
        .unwrap();
    h.expect_call_started();
    h.expect_nothing();
}

#[test]
fn new_calls_are_rate_limited_per_caller_and_per_domain() {
    let mut config = config();
    config.limits.per_caller = crate::rate::Rate::per_minute(2);
    config.limits.per_domain = crate::rate::Rate::per_minute(3);
    let mut h = Harness::with(config);
    // One user: two calls, each hung up, then no more until a token comes back (30 s).
    for sid in ["a1", "a2"] {
        h.jingle(ALICE, ECHO, with_sid(offer(), sid)).unwrap();
        let call = h.expect_call_started();
        h.caller_hangs_up(ALICE, sid, call);
    }
    assert_eq!(
        h.jingle(ALICE, ECHO, with_sid(offer(), "a3")),
        Err(Refusal::TooManyCalls)
    );
    h.expect_nothing();
    h.advance(29);
    assert_eq!(
        h.jingle(ALICE, ECHO, with_sid(offer(), "a4")),
        Err(Refusal::TooManyCalls)
    );
    h.advance(1);
    h.jingle(ALICE, ECHO, with_sid(offer(), "a5")).unwrap();
    let call = h.expect_call_started();
    h.caller_hangs_up(ALICE, "a5", call);
    h.expect_nothing();

    // A remote domain minting a user per call: three calls, then one every 20 s.
    let mut refused = 0;
    for n in 0..10 {
        let caller = format!("u{n}@flood.example/x");
        match h.jingle(&caller, ECHO, with_sid(offer(), &format!("f{n}"))) {
            Ok(()) => {
                let call = h.expect_call_started();
                let mut terminate = Jingle::new(Action::SessionTerminate, Sid(format!("f{n}")));
                terminate.reason = Some(EndReason::PeerHungUp(Reason::Success).to_reason_element());
                h.jingle(&caller, ECHO, terminate).unwrap();
                assert!(matches!(h.expect(), Output::StopCall { call_id, .. } if call_id == call));
            }
            Err(refusal) => {
                assert_eq!(refusal, Refusal::TooManyCalls);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 7);
    h.expect_nothing();
    h.advance(20);
    h.jingle("late@flood.example/x", ECHO, with_sid(offer(), "f10"))
        .unwrap();
    h.expect_call_started();
    h.expect_nothing();
}

#[test]
fn glare_with_a_session_initiate_of_ours() {
    let mut h = Harness::new();
    let ours = h
        .core
        .place_call(h.now, "echo", jid(BOB_PHONE), Duration::from_secs(20))
        .unwrap();
    h.expect_start();
    h.core
        .handle_media(h.now, ours, MediaEvent::LocalTransport(local_transport()));
    let (our_iq, _, _, initiate) = h.expect_jingle(Action::SessionInitiate);
    assert_eq!(initiate.sid.0, "gw-call1");
    h.expect_nothing();

    // Bob's phone calls at the same moment with a higher sid: it loses.
    assert_eq!(
        h.jingle(BOB_PHONE, IVR_DEVICE, with_sid(offer(), "zz-bob")),
        Err(Refusal::TieBreak)
    );
    h.expect_nothing();

    // With a lower sid it wins: taken as a call of its own, and ours gives way when the phone
    // refuses it with a tie-break, without a session-terminate.
    h.jingle(BOB_PHONE, IVR_DEVICE, with_sid(offer(), "aa-bob"))
        .unwrap();
    let theirs = h.expect_call_started();
    assert_ne!(theirs, ours);
    h.expect_nothing();
    assert!(h.core.handle_iq_response(
        h.now,
        &jid(BOB_PHONE),
        &our_iq,
        Some(DefinedCondition::Conflict)
    ));
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: ours,
            reason: EndReason::TieBreak
        }
    );
    h.expect_nothing();
}

#[test]
fn glare_with_the_same_session_id_goes_to_the_lower_jid() {
    let mut h = Harness::new();
    // Our device JID echo@gw.localhost/gateway sorts after bob@localhost/phone: bob wins.
    let ours = h
        .core
        .place_call(h.now, "echo", jid(BOB_PHONE), Duration::from_secs(20))
        .unwrap();
    h.expect_start();
    h.core
        .handle_media(h.now, ours, MediaEvent::LocalTransport(local_transport()));
    h.expect_jingle(Action::SessionInitiate);
    h.jingle(BOB_PHONE, IVR_DEVICE, with_sid(offer(), "gw-call1"))
        .unwrap();
    assert_eq!(
        h.expect(),
        Output::StopCall {
            call_id: ours,
            reason: EndReason::TieBreak
        }
    );
    h.expect_call_started();
    h.expect_nothing();
    // zed@localhost/phone sorts after it: zed loses.
    let ours = h
        .core
        .place_call(
            h.now,
            "echo",
            jid("zed@localhost/phone"),
            Duration::from_secs(20),
        )
        .unwrap();
    h.expect_start();
    h.core
        .handle_media(h.now, ours, MediaEvent::LocalTransport(local_transport()));
    let (_, _, _, initiate) = h.expect_jingle(Action::SessionInitiate);
    assert_eq!(
        h.jingle(
            "zed@localhost/phone",
            IVR_DEVICE,
            with_sid(offer(), &initiate.sid.0)
        ),
        Err(Refusal::TieBreak)
    );
    h.expect_nothing();
}

#[test]
fn glare_with_a_proposal_of_ours() {
    let mut h = Harness::new();
    let ours = h
        .core
        .place_call(h.now, "echo", jid(BOB), Duration::from_secs(20))
        .unwrap();
    let (_, _, our_propose) = h.expect_jmi();
    assert_eq!(our_propose.sid().0, "gw-call1");
    h.expect_nothing();

    // Bob proposes too, with a higher id: rejected with <tie-break/> and <expired/>.
    h.propose(BOB_PHONE, ECHO, "zz-bob");
    let (from, to, reject) = h.expect_jmi();
    assert_eq!((from, to), (jid(IVR_DEVICE), jid(BOB_PHONE)));
    let reject_xml = String::from(&reject.to_element());
    assert!(reject_xml.contains("<tie-break/>"), "{reject_xml}");
    assert!(reject_xml.contains("<expired/>"), "{reject_xml}");
    assert!(matches!(
        h.expect(),
        Output::CallNotStarted {
            reason: EndReason::TieBreak,
            ..
        }
    ));
    h.expect_nothing();

    // With a lower id Bob wins: ours is retracted with <tie-break/>, his rings and proceeds.
    h.propose(BOB_PHONE, ECHO, "aa-bob");
    let (_, to, retract) = h.expect_jmi();
    assert_eq!(to, jid(BOB));
    assert!(
        matches!(&retract, Jmi::Retract { sid, tie_break: true, .. } if sid.0 == "gw-call1"),
        "{retract:?}"
    );
    assert_eq!(
        h.expect(),
        Output::DialFailed {
            call_id: ours,
            reason: EndReason::TieBreak
        }
    );
    let (_, _, ringing) = h.expect_jmi();
    assert!(matches!(ringing, Jmi::Ringing { .. }));
    let (_, _, proceed) = h.expect_jmi();
    assert!(matches!(proceed, Jmi::Proceed { sid } if sid.0 == "aa-bob"));
    h.expect_nothing();
}

#[test]
fn a_tie_break_written_by_a_client_is_read() {
    let reject = jmi("<reject xmlns='urn:xmpp:jingle-message:0' id='x'>\
         <reason xmlns='urn:xmpp:jingle:1'><expired/><text>Tie-Break</text></reason>\
         <tie-break/></reject>");
    assert!(
        matches!(reject, Jmi::Reject { tie_break: true, reason: Some(r), .. } if r.reason == Reason::Expired)
    );
    let plain = jmi("<retract xmlns='urn:xmpp:jingle-message:0' id='x'/>");
    assert!(matches!(
        plain,
        Jmi::Retract {
            tie_break: false,
            ..
        }
    ));
}

#[test]
fn a_peer_that_never_answers_leaves_a_bounded_table() {
    let mut h = Harness::new();
    let call = h.established_call("q1");
    // Many local candidates trickled out, none of them acknowledged.
    for port in 0..200 {
        h.core.handle_media(
            h.now,
            call,
            MediaEvent::LocalCandidate(candidate(41000 + port)),
        );
    }
    let sent = h
        .drain()
        .into_iter()
        .filter(|o| matches!(o, Output::JingleIq { .. }))
        .count();
    assert_eq!(sent, 200);
    assert!(h.core.pending_iqs.len() <= MAX_PENDING_IQS_PER_CALL);
    h.expect_nothing();
}

#[test]
fn ice_restarts_are_few_and_not_too_fast() {
    let mut h = Harness::new();
    let call = h.established_call("r");
    let restart = |ufrag: &str, pwd: &str| {
        let mut info = Jingle::new(Action::TransportInfo, Sid("r".into()));
        let mut content = offer().contents.remove(0);
        content.description = None;
        content.transport = Some(Transport::IceUdp(IceUdpTransport {
            ufrag: Some(ufrag.into()),
            pwd: Some(pwd.into()),
            candidates: vec![candidate(50000)],
            ..IceUdpTransport::default()
        }));
        info.contents = vec![content];
        info
    };
    let pwd = "asd88fgpdd777uzjYhagZg";
    h.jingle(ALICE, ECHO, restart("gen1", pwd)).unwrap();
    assert!(matches!(h.expect(), Output::IceRestart { call_id, .. } if call_id == call));
    // Another at once: refused, and its candidates are not taken.
    assert_eq!(
        h.jingle(ALICE, ECHO, restart("gen2", pwd)),
        Err(Refusal::RestartRefused)
    );
    h.expect_nothing();
    // A 400-character ufrag, or one outside the grammar: refused whenever it comes.
    h.advance(2);
    let long = "u".repeat(400);
    for ufrag in [long.as_str(), "ab:cd", "abc"] {
        assert_eq!(
            h.jingle(ALICE, ECHO, restart(ufrag, pwd)),
            Err(Refusal::RestartRefused),
            "{ufrag}"
        );
    }
    h.expect_nothing();
    // Spaced out, up to the limit per call.
    for n in 2..=MAX_RESTARTS_PER_CALL {
        h.jingle(ALICE, ECHO, restart(&format!("gen{n}"), pwd))
            .unwrap();
        assert!(matches!(h.expect(), Output::IceRestart { .. }));
        h.advance(2);
        // The session's answer timer is long gone: the call is established.
        h.expect_nothing();
    }
    assert_eq!(
        h.jingle(ALICE, ECHO, restart("oneTooMany", pwd)),
        Err(Refusal::RestartRefused)
    );
    h.expect_nothing();
}

/// Callers proposing and retracting as fast as they can leave a deadline behind each time (the
/// ring timer of a proposal that is gone), behind a live one that keeps them from the front: the
/// index sweeps them, so it stays a small multiple of what is live however long the flood goes.
#[test]
fn proposals_retracted_at_once_do_not_grow_the_deadline_index() {
    let mut h = Harness::with(config());
    let retract = |sid: &str| {
        jmi(&format!(
            "<retract xmlns='urn:xmpp:jingle-message:0' id='{sid}'/>"
        ))
    };
    // One proposal stays: its ring timer is the earliest deadline all along.
    h.propose("keeper@localhost/x", ECHO, "kept");
    h.drain();
    let (mut largest, mut proceeded) = (0, 0);
    for n in 0..20_000 {
        h.now += Duration::from_millis(1);
        // A thousand users of the local domain (exempt from the per-domain limits), each
        // under its own rate, one proposal at a time.
        let caller = format!("u{}@localhost/x", n % 1000);
        let sid = format!("s{n}");
        h.propose(&caller, ECHO, &sid);
        h.core
            .handle_jmi(h.now, full(&caller), jid(ECHO), None, false, retract(&sid));
        proceeded += h
            .drain()
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Jmi {
                        jmi: Jmi::Proceed { .. },
                        ..
                    }
                )
            })
            .count();
        largest = largest.max(h.core.deadlines.entries());
    }
    assert_eq!(
        proceeded, 20_000,
        "every proposal was taken, its ring timer armed"
    );
    // At most two proposals live at once (the kept one and the newest), three timers each:
    // swept past twice that plus 64. Without the sweep: 20,000.
    assert!(
        largest <= 2 * 3 * 2 + 64,
        "the index grew to {largest} entries"
    );
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.start + Duration::from_secs(30)),
        "the kept proposal's ring timer is next"
    );
}
