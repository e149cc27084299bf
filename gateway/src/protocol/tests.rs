//! Every Jingle and JMI payload captured from real clients reads; what the gateway writes reads
//! back the same.

use super::ice_udp::{CandidateType, Setup};
use super::jingle::{Action, Jingle, Reason, SessionInfo};
use super::jmi::Jmi;
use crate::testing::{
    first_jingle, jingle_payloads, stanzas, BROWSER_CALL, BROWSER_CALLEE, BROWSER_PCMU_CALL,
};

#[test]
fn every_captured_jingle_payload_parses() {
    let mut count = 0;
    for capture in [BROWSER_CALL, BROWSER_CALLEE, BROWSER_PCMU_CALL] {
        for payload in jingle_payloads(capture) {
            Jingle::parse(&payload).unwrap_or_else(|e| panic!("{e}: {payload:?}"));
            count += 1;
        }
    }
    assert!(count >= 25, "only {count} payloads found");
}

#[test]
fn browser_offer_reads_fully() {
    let jingle = Jingle::parse(&first_jingle(BROWSER_CALL, "session-initiate")).unwrap();
    assert_eq!(jingle.action, Action::SessionInitiate);
    assert_eq!(jingle.sid.0, "6d531948-1deb-4355-8119-c4581bd3cf4e");
    assert!(jingle.initiator.is_none());
    let content = &jingle.contents[0];
    let rtp = content.rtp().unwrap();
    assert_eq!(rtp.media, "audio");
    assert!(rtp.rtcp_mux);
    let names: Vec<_> = rtp
        .payload_types
        .iter()
        .map(|p| p.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "opus",
            "red",
            "G722",
            "PCMU",
            "PCMA",
            "CN",
            "telephone-event",
            "telephone-event"
        ]
    );
    let opus = &rtp.payload_types[0];
    assert_eq!(
        (opus.id, opus.clockrate, opus.channels),
        (111, Some(48000), 2)
    );
    assert!(opus.is("opus", 48000));
    // Chromium's RED parameter has no value: accepted.
    assert_eq!(rtp.payload_types[1].parameters[0].name, "111/111");
    assert_eq!(rtp.payload_types[1].parameters[0].value, None);
    let transport = content.ice_udp().unwrap();
    assert_eq!(transport.ufrag.as_deref(), Some("DTpP"));
    let fingerprint = transport.fingerprint("sha-256").unwrap();
    assert_eq!(fingerprint.setup, Some(Setup::Actpass));
    assert_eq!(fingerprint.bytes().unwrap().len(), 32);
    assert_eq!(jingle.group.unwrap().contents, ["0"]);
}

#[test]
fn trickled_candidates_without_generation_and_tcp_read() {
    let infos: Vec<Jingle> = jingle_payloads(BROWSER_CALL)
        .iter()
        .map(|p| Jingle::parse(p).unwrap())
        .filter(|j| j.action == Action::TransportInfo)
        .collect();
    let udp = &infos[0].contents[0].ice_udp().unwrap().candidates[0];
    assert_eq!(
        (udp.generation, udp.port, udp.candidate_type),
        (0, 49191, CandidateType::Host)
    );
    assert_eq!(udp.protocol, "udp");
    let tcp = &infos[1].contents[0].ice_udp().unwrap().candidates[0];
    assert_eq!(tcp.protocol, "tcp");
    // <gathering-complete/> alone: a transport with nothing in it.
    let done = infos[2].contents[0].ice_udp().unwrap();
    assert!(done.candidates.is_empty() && done.skipped_candidates == 0);
}

#[test]
fn several_fingerprints_read() {
    // The stand-in answerer's session-accept carries sha-256, sha-384 and sha-512.
    let accept = stanzas(BROWSER_CALL)
        .into_iter()
        .filter_map(|s| s.get_child("jingle", super::jingle::NS_JINGLE).cloned())
        .find(|j| j.attr("action") == Some("session-accept"))
        .unwrap();
    let jingle = Jingle::parse(&accept).unwrap();
    let transport = jingle.contents[0].ice_udp().unwrap();
    assert_eq!(transport.fingerprints.len(), 3);
    assert_eq!(transport.fingerprints[0].setup, Some(Setup::Active));
}

#[test]
fn terminate_reason_and_ringing_read() {
    let terminate = Jingle::parse(&first_jingle(BROWSER_CALL, "session-terminate")).unwrap();
    assert_eq!(terminate.reason.unwrap().reason, Reason::Success);
    let ringing = Jingle::parse(&first_jingle(BROWSER_CALLEE, "session-info")).unwrap();
    assert_eq!(ringing.info, Some(SessionInfo::Ringing));
}

#[test]
fn written_payloads_read_back_equal() {
    for capture in [BROWSER_CALL, BROWSER_CALLEE, BROWSER_PCMU_CALL] {
        for payload in jingle_payloads(capture) {
            let jingle = Jingle::parse(&payload).unwrap();
            let again = Jingle::parse(&jingle.to_element()).unwrap();
            assert_eq!(jingle, again);
        }
    }
}

#[test]
fn bad_candidate_is_skipped_not_fatal() {
    let xml = "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'>\
        <content creator='initiator' name='0'>\
        <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u'>\
        <candidate component='1' foundation='1' ip='abcd.local' port='9' priority='1' protocol='udp' type='host'/>\
        <candidate component='1' foundation='1' ip='127.0.0.1' port='70000' priority='1' protocol='udp' type='host'/>\
        <candidate component='1' foundation='1' ip='127.0.0.1' port='5000' priority='1' protocol='udp' type='host'/>\
        </transport></content></jingle>";
    let jingle = Jingle::parse(&xml.parse().unwrap()).unwrap();
    let transport = jingle.contents[0].ice_udp().unwrap();
    assert_eq!(transport.candidates.len(), 1);
    assert_eq!(transport.skipped_candidates, 2);
}

#[test]
fn malformed_jingle_gives_exact_errors() {
    let cases = [
        ("<jingle xmlns='urn:xmpp:jingle:1' sid='s'/>", "<jingle/> lacks the attribute `action`"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='s'/>", "<jingle/> has an invalid `action`: `dance`"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'/>", "<jingle/> lacks the attribute `sid`"),
        (
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'><content name='0'/></jingle>",
            "<content/> lacks the attribute `creator`",
        ),
        (
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s'><content creator='initiator' name='0'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'><payload-type id='300'/></description></content></jingle>",
            "<payload-type/> has an invalid `id`: `300`",
        ),
    ];
    for (xml, expected) in cases {
        let error = Jingle::parse(&xml.parse().unwrap()).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn captured_propose_reads() {
    let propose = stanzas(BROWSER_CALL)
        .into_iter()
        .find(|s| s.name() == "message")
        .unwrap();
    let payloads: Vec<_> = propose.children().cloned().collect();
    let jmi = Jmi::find(&payloads).unwrap().unwrap();
    assert_eq!(
        jmi,
        Jmi::Propose {
            sid: super::jingle::Sid("c03d6d24-9acb-4a97-8c4b-f4b0432d5a66".into()),
            media: vec!["audio".into()],
        }
    );
}

#[test]
fn jmi_round_trips() {
    use super::jingle::{ReasonElement, Sid};
    let sid = Sid("abc".into());
    for jmi in [
        Jmi::Ringing { sid: sid.clone() },
        Jmi::Proceed { sid: sid.clone() },
        Jmi::Finish {
            sid: sid.clone(),
            reason: Some(ReasonElement {
                reason: Reason::Success,
                text: None,
            }),
        },
        Jmi::Reject {
            sid: sid.clone(),
            tie_break: false,
            reason: Some(ReasonElement {
                reason: Reason::Busy,
                text: Some("full".into()),
            }),
        },
    ] {
        assert_eq!(Jmi::parse(&jmi.to_element()).unwrap(), jmi);
    }
}

#[test]
fn ice_credentials_follow_rfc_8839() {
    use super::ice_udp::credentials_valid;
    let pwd = "asd88fgpdd777uzjYhagZg";
    assert!(credentials_valid("8hhy", pwd));
    assert!(credentials_valid(&"a".repeat(256), &"b/+".repeat(85)));
    let long_ufrag = "a".repeat(257);
    let long_pwd = "p".repeat(257);
    for (ufrag, pwd) in [
        ("abc", pwd),
        (long_ufrag.as_str(), pwd),
        ("ab c", pwd),
        ("abcd:", pwd),
        ("abcd", "short"),
        ("abcd", long_pwd.as_str()),
        ("abcd", "asd88fgpdd777uzjYhag\u{e9}g"),
    ] {
        assert!(!credentials_valid(ufrag, pwd), "{ufrag} {pwd}");
    }
}
