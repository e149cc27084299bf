//! The router core driven as the shell drives it, without a server: literal stanzas in (the
//! interop captures among them), a simulated clock, and every output checked, each scenario
//! ending with nothing else to do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use xmpp_parsers::stanza::Stanza;

use super::core::{Ids, RouterCore, RouterCoreParts, RouterOutput};
use super::presence::{ANNOUNCE_PER_TICK, ANNOUNCE_TICK};
use crate::call::{CallCommand, CallEvent};
use crate::config::Config;
use crate::endpoint::DialPlan;
use crate::jingle::negotiate::LocalTransport;
use crate::jingle::{CallStart, MediaEvent, Signalling};
use crate::mailbox::Mailboxes;
use crate::metrics::Metrics;
use crate::protocol::ice_udp::Candidate;
use crate::routes::RouteTable;
use crate::testing::{stanzas, BROWSER_CALL, BROWSER_CALLEE};
use crate::types::{CallId, Codec, EndReason};
use crate::xmpp::outbox::Lane;
use crate::xmpp::subscribers::Subscribers;

const NS: &str = "jabber:component:accept";

/// The config the scenarios run with: an echo and a "voicemail" (an echo named so, as in the
/// captures), a JID only local users may call, an admin, and whom the gateway may ring.
const CONFIG: &str = "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n\
    [outbound]\nallow = [\"localhost\"]\n\
    [admin]\njids = [\"root@localhost\"]\n\
    [endpoints.echo]\nkind = \"echo\"\nname = \"Echo test\"\n\
    [endpoints.voicemail]\nkind = \"echo\"\n\
    [endpoints.ivr]\nkind = \"echo\"\n\
    [endpoints.desk]\nkind = \"echo\"\ncallers = [\"@local\"]\n";

struct Harness {
    core: RouterCore,
    now: Instant,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(text: &str) -> Self {
        let config = Config::from_toml_str(text, Vec::new(), &crate::endpoint::KINDS).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (voicemail, _) = Mailboxes::open(&config, metrics.clone()).unwrap();
        let jingle = Signalling::new(crate::testing::signalling_config(HashMap::new()));
        let core = RouterCore::new(RouterCoreParts {
            domain: BareJid::new("gw.localhost").unwrap(),
            name: "Test gateway".into(),
            routes: RouteTable::from_config(&config, "gw.localhost").unwrap(),
            jingle,
            subscribers: Subscribers::in_memory(vec!["localhost".into()]),
            voicemail,
            metrics: metrics.clone(),
            ids: Ids::new("t"),
        });
        Self {
            core,
            now: Instant::now(),
            metrics,
        }
    }

    /// Feeds one stanza, written as the server sends it.
    fn receive(&mut self, xml: &str) {
        let element: Element = with_namespace(xml).parse().unwrap();
        self.receive_element(element);
    }

    fn receive_element(&mut self, element: Element) {
        let stanza = Stanza::try_from(element).unwrap();
        self.core.handle_stanza(self.now, stanza);
    }

    fn event(&mut self, call_id: CallId, event: CallEvent) {
        self.core.handle_call_event(self.now, call_id, event);
    }

    /// Moves the clock on, firing each deadline `poll_timeout` gives on the way, as the shell
    /// does.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(due) = self.core.poll_timeout().filter(|due| *due <= until) {
            self.now = due.max(self.now);
            self.core.handle_timeout(self.now);
        }
        self.now = until;
    }

    fn outputs(&mut self) -> Vec<RouterOutput> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// The stanzas queued, each with its lane; panics on any other output.
    fn sent(&mut self) -> Vec<(Element, Lane)> {
        self.outputs()
            .into_iter()
            .map(|output| match output {
                RouterOutput::Stanza { stanza, lane } => (Element::from(stanza), lane),
                other => panic!("expected only stanzas, got {other:?}"),
            })
            .collect()
    }

    /// Exactly one stanza was queued: it.
    fn sent_one(&mut self) -> Element {
        let mut sent = self.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.remove(0).0
    }

    fn assert_idle(&mut self) {
        let left = self.outputs();
        assert!(left.is_empty(), "nothing else should be done: {left:?}");
    }

    /// A call from the browser capture to `virtual_jid`, answered: its `session-initiate`, the
    /// call task's transport, the caller's acknowledgement of the accept. Returns the call.
    fn answered_call(&mut self, virtual_jid: &str) -> CallId {
        let initiate = capture_iq(BROWSER_CALL, "session-initiate", virtual_jid);
        self.receive_element(initiate);
        let outputs = self.outputs();
        let [RouterOutput::Stanza { stanza: result, .. }, RouterOutput::Stanza {
            stanza: ringing, ..
        }, RouterOutput::StartCall { start, .. }] = &outputs[..]
        else {
            panic!("the IQ's result, ringing, then the call starts: {outputs:?}");
        };
        assert_eq!(Element::from(result).attr("type"), Some("result"));
        let ringing = Element::from(ringing);
        assert_eq!(jingle_action(&ringing), Some("session-info"));
        assert_eq!(
            ringing.attr("from"),
            Some(&*format!("{virtual_jid}@gw.localhost"))
        );
        assert_eq!(start.virtual_jid, virtual_jid);
        assert_eq!(start.peer.to_string(), "alice@localhost/browser");
        assert_eq!(start.offer.as_ref().map(|o| o.codec), Some(Codec::Opus));
        let call_id = start.call_id;
        self.event(
            call_id,
            media(MediaEvent::LocalTransport(local_transport())),
        );
        let accept = self.sent_one();
        assert_eq!(jingle_action(&accept), Some("session-accept"));
        assert_eq!(
            accept.attr("from"),
            Some(&*format!("{virtual_jid}@gw.localhost"))
        );
        let id = accept.attr("id").unwrap().to_string();
        self.receive(&format!(
            "<iq type='result' id='{id}' from='alice@localhost/browser' to='{virtual_jid}@gw.localhost'/>"
        ));
        self.assert_idle();
        call_id
    }
}

/// `xml` with the component namespace on its top element, as the stream gives it.
fn with_namespace(xml: &str) -> String {
    let end = xml.find([' ', '>', '/']).unwrap();
    format!("{} xmlns='{NS}'{}", &xml[..end], &xml[end..])
}

fn jid(text: &str) -> jid::Jid {
    jid::Jid::new(text).unwrap()
}

fn media(event: MediaEvent) -> CallEvent {
    CallEvent::Media(event)
}

fn local_transport() -> LocalTransport {
    LocalTransport {
        ufrag: "lufr".into(),
        pwd: "local-password-22chars".into(),
        candidates: vec![Candidate {
            component: 1,
            foundation: "1".into(),
            generation: 0,
            id: Some("c1".into()),
            ip: "127.0.0.1".parse().unwrap(),
            port: 40000,
            priority: 2130706431,
            protocol: "udp".into(),
            candidate_type: crate::protocol::ice_udp::CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            network: None,
        }],
        ssrc: 4242,
    }
}

/// The first IQ set of a capture carrying `action`, addressed to `virtual_jid` instead.
fn capture_iq(capture: &str, action: &str, virtual_jid: &str) -> Element {
    let iq = stanzas(capture)
        .into_iter()
        .find(|s| s.name() == "iq" && jingle_action(s) == Some(action))
        .unwrap_or_else(|| panic!("no {action} in the capture"));
    // What a client sent is in its own namespace; the component sees it in its own.
    let iq: Element = String::from(&iq)
        .replacen("jabber:client", NS, 1)
        .parse()
        .unwrap();
    set_attr(&iq, "to", &format!("{virtual_jid}@gw.localhost"))
}

/// `element` with its attribute `name` set to `value` (added when it has none), and any
/// child's attribute of that name and the old value too (a Jingle `sid`).
fn set_attr(element: &Element, name: &str, value: &str) -> Element {
    let text = String::from(element);
    let old = element
        .attr(name)
        .or_else(|| element.children().find_map(|child| child.attr(name)));
    let text = match old {
        Some(old) => text.replace(&format!(" {name}='{old}'"), &format!(" {name}='{value}'")),
        None => text.replacen(' ', &format!(" {name}='{value}' "), 1),
    };
    text.parse().unwrap()
}

fn jingle_action(stanza: &Element) -> Option<&str> {
    stanza
        .get_child("jingle", crate::protocol::jingle::NS_JINGLE)
        .and_then(|j| j.attr("action"))
}

fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.get_child("error", NS)?;
    error
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
}

fn child_names(stanza: &Element) -> Vec<String> {
    stanza.children().map(|c| c.name().to_string()).collect()
}

#[test]
fn disco_shows_each_virtual_jid_and_the_domain_lists_them() {
    let mut h = Harness::new();
    h.receive("<iq type='get' id='d1' from='alice@localhost/browser' to='echo@gw.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = h.sent_one();
    assert_eq!(info.attr("type"), Some("result"));
    assert_eq!(info.attr("from"), Some("echo@gw.localhost"));
    assert_eq!(info.attr("to"), Some("alice@localhost/browser"));
    assert_eq!(info.attr("id"), Some("d1"));
    let query = info.children().next().unwrap();
    let features: Vec<_> = query.children().filter_map(|f| f.attr("var")).collect();
    for needed in [
        "urn:xmpp:jingle:1",
        "urn:xmpp:jingle:apps:rtp:audio",
        "urn:xmpp:jingle:transports:ice-udp:1",
        "urn:xmpp:jingle:apps:dtls:0",
        "urn:xmpp:jingle-message:0",
    ] {
        assert!(features.contains(&needed), "{needed} in {features:?}");
    }

    h.receive("<iq type='get' id='d2' from='alice@localhost/browser' to='gw.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    let items = h.sent_one();
    let jids: Vec<_> = items
        .children()
        .next()
        .unwrap()
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    assert_eq!(
        jids,
        [
            "desk@gw.localhost",
            "echo@gw.localhost",
            "ivr@gw.localhost",
            "voicemail@gw.localhost"
        ]
    );

    h.receive("<iq type='get' id='d3' from='alice@localhost/browser' to='nobody@gw.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let missing = h.sent_one();
    assert_eq!(missing.attr("type"), Some("error"));
    assert_eq!(error_condition(&missing).as_deref(), Some("item-not-found"));
    h.assert_idle();
}

#[test]
fn every_request_gets_one_answer_and_unknown_ones_an_error() {
    let mut h = Harness::new();
    h.receive("<iq type='get' id='p' from='localhost' to='gw.localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let pong = h.sent_one();
    assert_eq!(
        (pong.attr("type"), pong.attr("id")),
        (Some("result"), Some("p"))
    );
    assert_eq!(pong.children().count(), 0);

    h.receive("<iq type='get' id='v' from='alice@localhost/x' to='echo@gw.localhost'><query xmlns='jabber:iq:version'/></iq>");
    let version = h.sent_one();
    assert_eq!(version.attr("type"), Some("result"));

    h.receive("<iq type='set' id='u' from='alice@localhost/x' to='echo@gw.localhost'><query xmlns='urn:example:unknown'/></iq>");
    let unknown = h.sent_one();
    assert_eq!(unknown.attr("type"), Some("error"));
    assert_eq!(
        error_condition(&unknown).as_deref(),
        Some("service-unavailable")
    );

    // Jingle must come from a device.
    h.receive("<iq type='set' id='j' from='alice@localhost' to='echo@gw.localhost'><jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='x'/></iq>");
    let bare = h.sent_one();
    assert_eq!(error_condition(&bare).as_deref(), Some("bad-request"));

    // An unknown session.
    h.receive("<iq type='set' id='k' from='alice@localhost/x' to='echo@gw.localhost'><jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='nope'/></iq>");
    let unknown_session = h.sent_one();
    assert_eq!(
        error_condition(&unknown_session).as_deref(),
        Some("item-not-found")
    );
    assert!(child_names(unknown_session.get_child("error", NS).unwrap())
        .contains(&"unknown-session".to_string()));
    h.assert_idle();
}

#[test]
fn the_browser_call_is_answered_from_the_jid_called_and_ends_when_the_caller_hangs_up() {
    let mut h = Harness::new();
    let call_id = h.answered_call("voicemail");
    let metrics = h.metrics.render();
    assert!(
        metrics.contains("jingle_gateway_calls_active{endpoint=\"voicemail\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("jingle_gateway_call_setup_seconds_count 1"));

    // Trickled candidates reach the call; the odd <gathering-complete/> is acknowledged.
    for iq in stanzas(BROWSER_CALL)
        .into_iter()
        .filter(|s| jingle_action(s) == Some("transport-info"))
        .take(3)
    {
        h.receive_element(iq);
    }
    let outputs = h.outputs();
    let results = outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                RouterOutput::Stanza {
                    stanza: Stanza::Iq(xmpp_parsers::iq::Iq::Result { .. }),
                    lane: Lane::Signalling
                }
            )
        })
        .count();
    assert_eq!(results, 3, "{outputs:?}");
    let candidates: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Call {
                call_id: id,
                command: CallCommand::RemoteCandidates(candidates),
            } if *id == call_id => Some(candidates.len()),
            _ => None,
        })
        .collect();
    assert_eq!(candidates, [1, 1], "{outputs:?}");

    h.receive_element(capture_iq(BROWSER_CALL, "session-terminate", "voicemail"));
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::Stanza { .. }, RouterOutput::StopCall { call_id: id, .. }] if *id == call_id),
        "{outputs:?}"
    );
    h.assert_idle();
}

#[test]
fn a_jmi_proposal_rings_and_proceeds_from_the_jid_called() {
    let mut h = Harness::new();
    let propose = stanzas(BROWSER_CALL)
        .into_iter()
        .find(|s| s.name() == "message" && s.children().any(|c| c.name() == "propose"))
        .unwrap();
    h.receive_element(propose);
    let sent = h.sent();
    let names: Vec<_> = sent
        .iter()
        .map(|(m, lane)| (child_names(m)[0].clone(), *lane))
        .collect();
    assert_eq!(
        names,
        [
            ("ringing".into(), Lane::Signalling),
            ("proceed".into(), Lane::Signalling)
        ]
    );
    assert_eq!(sent[0].0.attr("from"), Some("ivr@gw.localhost/gateway"));
    assert_eq!(
        sent[0].0.attr("id"),
        Some("jmi-t1"),
        "ids come from the injected source"
    );
    assert_eq!(sent[1].0.attr("from"), Some("ivr@gw.localhost/gateway"));
    assert_eq!(sent[1].0.attr("to"), Some("alice@localhost/browser"));
    h.assert_idle();

    // No session-initiate follows: after the ring timeout the call is finished.
    h.advance(Duration::from_secs(31));
    let finish = h.sent_one();
    assert_eq!(child_names(&finish), ["finish", "store"]);
    assert_eq!(finish.attr("to"), Some("alice@localhost/browser"));
    let reason = finish.children().next().unwrap().children().next().unwrap();
    assert_eq!(child_names(reason), ["timeout"]);
    h.assert_idle();
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn a_caller_the_list_does_not_name_is_refused_with_forbidden() {
    let mut h = Harness::new();
    let initiate = capture_iq(BROWSER_CALL, "session-initiate", "desk");
    let initiate = set_attr(&initiate, "from", "mallory@evil.example/x");
    h.receive_element(initiate);
    let refused = h.sent_one();
    assert_eq!(refused.attr("type"), Some("error"));
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    h.assert_idle();
}

#[test]
fn subscriptions_are_returned_with_caps_and_probes_answered() {
    let mut h = Harness::new();
    h.receive("<presence type='subscribe' from='alice@localhost' to='echo@gw.localhost'/>");
    let sent = h.sent();
    let kinds: Vec<_> = sent.iter().map(|(p, _)| p.attr("type")).collect();
    assert_eq!(kinds, [Some("subscribed"), Some("subscribe"), None]);
    let available = &sent[2].0;
    assert_eq!(available.attr("to"), Some("alice@localhost"));
    assert!(available
        .get_child("c", "http://jabber.org/protocol/caps")
        .is_some());
    assert!(sent.iter().all(|(_, lane)| *lane == Lane::Bulk));

    h.receive("<presence type='probe' from='alice@localhost' to='echo@gw.localhost'/>");
    assert_eq!(h.sent_one().attr("type"), None);

    h.receive("<presence type='subscribe' from='alice@localhost' to='nobody@gw.localhost'/>");
    assert_eq!(h.sent_one().attr("type"), Some("unsubscribed"));

    h.receive("<presence type='unsubscribe' from='alice@localhost' to='echo@gw.localhost'/>");
    assert_eq!(h.sent_one().attr("type"), Some("unsubscribed"));
    // Nobody is announced to any more.
    h.core.handle_connected(h.now);
    h.assert_idle();
}

#[test]
fn presence_is_announced_after_connecting_paced_per_tick() {
    let mut h = Harness::new();
    let subscribers = ANNOUNCE_PER_TICK + 10;
    for n in 0..subscribers {
        h.receive(&format!(
            "<presence type='subscribe' from='u{n}@localhost' to='echo@gw.localhost'/>"
        ));
    }
    h.outputs();
    h.core.handle_connected(h.now);
    // Available presence and a probe to each: the first batch at once, the rest a tick later.
    assert_eq!(h.sent().len(), 2 * ANNOUNCE_PER_TICK);
    assert_eq!(h.core.poll_timeout(), Some(h.now + ANNOUNCE_TICK));
    h.advance(ANNOUNCE_TICK);
    let rest = h.sent();
    assert_eq!(rest.len(), 2 * 10);
    assert_eq!(rest[1].0.attr("type"), Some("probe"));
    assert_eq!(h.core.poll_timeout(), None);
    h.assert_idle();
}

#[test]
fn a_callers_device_going_offline_ends_its_call() {
    let mut h = Harness::new();
    let call_id = h.answered_call("echo");
    h.receive(
        "<presence type='unavailable' from='alice@localhost/browser' to='echo@gw.localhost'/>",
    );
    // Nobody is there to hear a session-terminate.
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::StopCall { call_id: id, reason: EndReason::PeerGone }] if *id == call_id),
        "{outputs:?}"
    );
    assert!(h
        .metrics
        .render()
        .contains("jingle_gateway_calls_finished_total{endpoint=\"echo\",reason=\"peer_gone\"} 1"));
    h.assert_idle();
}

#[test]
fn chat_keys_reach_the_callers_call_and_chat_to_nobody_bounces() {
    let mut h = Harness::new();
    let call_id = h.answered_call("echo");
    h.receive("<message type='chat' from='alice@localhost/phone' to='echo@gw.localhost'><body>12#</body></message>");
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::Call { call_id: id, command: CallCommand::ChatDigits(keys) }] if *id == call_id && keys == "12#"),
        "{outputs:?}"
    );
    // Someone else's keys go nowhere.
    h.receive("<message type='chat' from='bob@localhost/x' to='echo@gw.localhost'><body>1</body></message>");
    h.assert_idle();

    h.receive("<message type='chat' id='m1' from='bob@localhost/x' to='nobody@gw.localhost'><body>hi</body></message>");
    let bounce = h.sent_one();
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("m1"));
    assert_eq!(error_condition(&bounce).as_deref(), Some("item-not-found"));
    h.assert_idle();
}

#[test]
fn messages_a_callers_calls_send_are_rate_limited() {
    let mut h = Harness::new();
    let call_id = h.answered_call("echo");
    for _ in 0..15 {
        let body = "1".to_string();
        h.event(
            call_id,
            CallEvent::Message {
                to: jid("bob@localhost"),
                body,
            },
        );
    }
    let sent = h.sent();
    assert_eq!(sent.len(), 10, "the per-minute budget");
    assert_eq!(sent[0].0.attr("from"), Some("echo@gw.localhost"));
    assert_eq!(sent[0].0.attr("id"), Some("msg-t1"));
    assert!(sent.iter().all(|(_, lane)| *lane == Lane::Bulk));
    h.assert_idle();
}

#[test]
fn a_stanza_that_cannot_be_read_is_answered_when_it_is_a_request() {
    use crate::xmpp::stream::{InvalidCause, InvalidStanza};
    let mut h = Harness::new();
    let invalid = InvalidStanza {
        kind: "iq".into(),
        type_: Some("set".into()),
        id: Some("big".into()),
        from: Some("mallory@evil.example/x".into()),
        to: Some("echo@gw.localhost".into()),
        cause: InvalidCause::Invalid("broken".into()),
    };
    h.core.handle_invalid(h.now, invalid);
    let error = h.sent_one();
    assert_eq!(error.attr("id"), Some("big"));
    assert_eq!(error_condition(&error).as_deref(), Some("bad-request"));
    let message = InvalidStanza {
        kind: "message".into(),
        type_: None,
        id: None,
        from: None,
        to: None,
        cause: InvalidCause::Invalid("broken".into()),
    };
    h.core.handle_invalid(h.now, message);
    h.assert_idle();
}

#[test]
fn the_gateways_own_requests_go_out_as_signalling_and_their_answers_come_back() {
    let mut h = Harness::new();
    let (answer, mut answered) = tokio::sync::oneshot::channel();
    h.core.handle_request(crate::xmpp::requests::Request::Iq {
        from: "voicemail@gw.localhost".parse().unwrap(),
        to: "upload.localhost".parse().unwrap(),
        get: true,
        payload: Element::builder("request", "urn:xmpp:http:upload:0").build(),
        answer,
    });
    let (iq, lane) = h.sent().remove(0);
    assert_eq!(lane, Lane::Signalling);
    assert_eq!(iq.attr("id"), Some("req-t1"));
    // Only the entity asked may answer.
    h.receive(
        "<iq type='result' id='req-t1' from='mallory@evil.example/x' to='voicemail@gw.localhost'/>",
    );
    assert!(answered.try_recv().is_err());
    h.receive(
        "<iq type='result' id='req-t1' from='upload.localhost' to='voicemail@gw.localhost'/>",
    );
    assert!(matches!(answered.try_recv(), Ok(Ok(None))));
    h.assert_idle();
}

/// What a call the gateway placed needs from its task and the callee: the offer goes out when
/// the task has gathered, the callee's device answers with the browser capture's accept.
fn answer_placed_call(h: &mut Harness, attempt: CallId, device: &str) {
    h.event(
        attempt,
        media(MediaEvent::LocalTransport(local_transport())),
    );
    let initiate = h.sent_one();
    assert_eq!(jingle_action(&initiate), Some("session-initiate"));
    assert_eq!(initiate.attr("to"), Some(device));
    let (id, sid) = (
        initiate.attr("id").unwrap().to_string(),
        initiate
            .get_child("jingle", crate::protocol::jingle::NS_JINGLE)
            .and_then(|j| j.attr("sid"))
            .unwrap()
            .to_string(),
    );
    h.receive(&format!(
        "<iq type='result' id='{id}' from='{device}' to='ivr@gw.localhost/gateway'/>"
    ));
    let accept = capture_iq(BROWSER_CALLEE, "session-accept", "ivr");
    let accept = set_attr(&accept, "to", "ivr@gw.localhost/gateway");
    let accept = set_attr(&accept, "from", device);
    let accept = set_attr(&accept, "sid", &sid);
    h.receive_element(accept);
}

#[test]
fn a_connect_rings_the_target_and_bridges_whoever_answers() {
    let mut h = Harness::new();
    let caller = h.answered_call("ivr");
    let plan = DialPlan {
        targets: vec![jid("bob@localhost")],
        ring_all: true,
        ring_timeout: Duration::from_secs(20),
    };
    h.event(caller, CallEvent::Connect(plan));
    let propose = h.sent_one();
    assert_eq!(child_names(&propose), ["propose", "store"]);
    assert_eq!(propose.attr("to"), Some("bob@localhost"));
    assert_eq!(propose.attr("from"), Some("ivr@gw.localhost/gateway"));
    let sid = propose
        .children()
        .next()
        .unwrap()
        .attr("id")
        .unwrap()
        .to_string();
    assert_eq!(
        propose.attr("id"),
        Some(&*sid),
        "a bounce names the proposal"
    );

    h.receive(&format!("<message type='chat' from='bob@localhost/phone' to='ivr@gw.localhost/gateway'><proceed xmlns='urn:xmpp:jingle-message:0' id='{sid}'/></message>"));
    let outputs = h.outputs();
    let [RouterOutput::StartCall { start, .. }] = &outputs[..] else {
        panic!("the placed call starts: {outputs:?}");
    };
    let CallStart {
        call_id: attempt,
        ref peer,
        offer: None,
        ..
    } = *start
    else {
        panic!("{start:?}");
    };
    assert_eq!(peer.to_string(), "bob@localhost/phone");
    answer_placed_call(&mut h, attempt, "bob@localhost/phone");
    let outputs = h.outputs();
    assert!(
        matches!(
            &outputs[..],
            [
                RouterOutput::Stanza { .. },
                RouterOutput::Call { call_id, command: CallCommand::Answered(_) },
                RouterOutput::Bridge { caller: (a, Codec::Opus), answered: (b, _) },
            ] if *call_id == attempt && *a == caller && *b == attempt
        ),
        "the accept is acknowledged, the placed call answered and both bridged: {outputs:?}"
    );
    h.assert_idle();

    // The caller hangs up: its call stops. (The placed call's half of the bridge hears the
    // other half go and its task ends that call: that is the call tasks' part, not ours.)
    h.receive_element(capture_iq(BROWSER_CALL, "session-terminate", "ivr"));
    let outputs = h.outputs();
    let stopped: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            RouterOutput::StopCall { call_id: id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, [caller], "{outputs:?}");
    h.assert_idle();
}

#[test]
fn hunting_rings_one_target_after_another_and_tells_the_caller_when_nobody_answers() {
    let mut h = Harness::new();
    let caller = h.answered_call("ivr");
    let plan = DialPlan {
        targets: vec![
            jid("bob@localhost"),
            jid("mallory@evil.example"),
            jid("carol@localhost"),
        ],
        ring_all: false,
        ring_timeout: Duration::from_secs(10),
    };
    h.event(caller, CallEvent::Connect(plan));
    assert_eq!(h.sent_one().attr("to"), Some("bob@localhost"));
    // Bob's proposal times out; evil.example is not in outbound.allow; Carol rings.
    h.advance(Duration::from_secs(11));
    let sent = h.sent();
    let kinds: Vec<_> = sent
        .iter()
        .map(|(m, _)| (child_names(m)[0].clone(), m.attr("to").unwrap().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("retract".to_string(), "bob@localhost".to_string()),
            ("propose".to_string(), "carol@localhost".to_string())
        ]
    );
    // Carol's server bounces the proposal: nobody is left, and the caller's endpoint hears so.
    let sid = sent[1].0.attr("id").unwrap().to_string();
    h.receive(&format!("<message type='error' id='{sid}' from='carol@localhost' to='ivr@gw.localhost/gateway'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"));
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::Call { call_id, command: CallCommand::ConnectFailed(EndReason::PeerGone) }] if *call_id == caller),
        "{outputs:?}"
    );
    h.assert_idle();
}

#[test]
fn a_subscriber_with_no_device_online_is_not_rung() {
    let mut h = Harness::new();
    h.receive("<presence type='subscribe' from='bob@localhost' to='ivr@gw.localhost'/>");
    h.outputs();
    let caller = h.answered_call("ivr");
    let plan = |ring_all| DialPlan {
        targets: vec![jid("bob@localhost")],
        ring_all,
        ring_timeout: Duration::from_secs(10),
    };
    h.event(caller, CallEvent::Connect(plan(true)));
    let outputs = h.outputs();
    assert!(
        matches!(
            &outputs[..],
            [RouterOutput::Call {
                command: CallCommand::ConnectFailed(EndReason::PeerGone),
                ..
            }]
        ),
        "{outputs:?}"
    );
    // Once a device of Bob's is online, it rings.
    h.receive("<presence from='bob@localhost/phone' to='ivr@gw.localhost'/>");
    assert_eq!(h.sent_one().attr("to"), Some("bob@localhost/phone"));
    h.event(caller, CallEvent::Connect(plan(true)));
    assert_eq!(child_names(&h.sent_one())[0], "propose");
    h.assert_idle();
}

#[test]
fn a_reload_says_goodbye_for_removed_jids_and_announces_the_rest() {
    let mut h = Harness::new();
    for virtual_jid in ["echo", "voicemail"] {
        h.receive(&format!(
            "<presence type='subscribe' from='alice@localhost' to='{virtual_jid}@gw.localhost'/>"
        ));
    }
    h.outputs();
    let config = Config::from_toml_str(
        "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n[endpoints.echo]\nkind = \"echo\"\n\
         [endpoints.room]\nkind = \"echo\"\n",
        Vec::new(),
        &crate::endpoint::KINDS,
    )
    .unwrap();
    h.core.handle_reload(
        h.now,
        RouteTable::from_config(&config, "gw.localhost").unwrap(),
    );
    let sent = h.sent();
    let summary: Vec<_> = sent
        .iter()
        .map(|(p, _)| {
            (
                p.attr("from").unwrap().to_string(),
                p.attr("type").map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("voicemail@gw.localhost".into(), Some("unavailable".into())),
            ("echo@gw.localhost".into(), None),
            ("echo@gw.localhost".into(), Some("probe".into())),
        ]
    );
    // The new JID is served, the removed one is not.
    h.receive("<iq type='get' id='d' from='alice@localhost/x' to='room@gw.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert_eq!(h.sent_one().attr("type"), Some("result"));
    h.receive_element(capture_iq(BROWSER_CALL, "session-initiate", "voicemail"));
    assert_eq!(
        error_condition(&h.sent_one()).as_deref(),
        Some("item-not-found")
    );
    h.assert_idle();
}

fn admin_command(node: &str, action: &str, from: &str) -> String {
    format!("<iq type='set' id='a1' from='{from}' to='gw.localhost'><command xmlns='http://jabber.org/protocol/commands' node='{node}' action='{action}'/></iq>")
}

#[test]
fn admins_list_and_hang_up_calls_and_nobody_else_may() {
    let mut h = Harness::new();
    let call_id = h.answered_call("echo");
    h.receive(&admin_command("calls", "execute", "mallory@evil.example/x"));
    assert_eq!(error_condition(&h.sent_one()).as_deref(), Some("forbidden"));

    h.advance(Duration::from_secs(5));
    h.receive(&admin_command("calls", "execute", "root@localhost/desk"));
    let list = h.sent_one();
    assert_eq!(list.attr("type"), Some("result"));
    let text = String::from(&list);
    assert!(text.contains(&call_id.to_string()), "{text}");
    assert!(text.contains("alice@localhost/browser"), "{text}");

    // Hanging up: the answer first, then the call ends with the admin's reason.
    h.receive(&format!(
        "<iq type='set' id='a2' from='root@localhost/desk' to='gw.localhost'><command xmlns='http://jabber.org/protocol/commands' node='hang-up' action='execute'><x xmlns='jabber:x:data' type='submit'><field var='call'><value>{call_id}</value></field></x></command></iq>"
    ));
    let outputs = h.outputs();
    let RouterOutput::Stanza { stanza, .. } = &outputs[0] else {
        panic!("{outputs:?}");
    };
    assert_eq!(Element::from(stanza).attr("id"), Some("a2"));
    assert!(
        matches!(outputs.last(), Some(RouterOutput::StopCall { call_id: id, reason: EndReason::HungUpByAdmin }) if *id == call_id),
        "{outputs:?}"
    );
    assert!(h.metrics.render().contains("hung_up_by_admin"));
}

#[test]
fn an_admins_mailbox_count_is_made_off_the_loop() {
    let mut h = Harness::new();
    h.receive(&admin_command(
        "mailboxes",
        "execute",
        "root@localhost/desk",
    ));
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::AdminMailboxes { request: (_, _, id), .. }] if id == "a1"),
        "{outputs:?}"
    );
    h.assert_idle();
}

#[test]
fn an_admins_reload_is_answered_later_by_the_shell() {
    let mut h = Harness::new();
    h.receive(&admin_command("reload", "execute", "root@localhost/desk"));
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::Reread { request: (from, _, id), .. }] if from.to_string() == "root@localhost/desk" && id == "a1"),
        "no answer yet, only the order to read the config: {outputs:?}"
    );
    h.assert_idle();
}

#[test]
fn shutdown_ends_every_call_then_says_goodbye() {
    let mut h = Harness::new();
    h.receive("<presence type='subscribe' from='alice@localhost' to='echo@gw.localhost'/>");
    h.outputs();
    let call_id = h.answered_call("echo");
    h.core.handle_shutdown(h.now);
    let outputs = h.outputs();
    let described: Vec<String> = outputs
        .iter()
        .map(|o| match o {
            RouterOutput::Stanza { stanza, .. } => {
                let element = Element::from(stanza);
                jingle_action(&element)
                    .map(str::to_string)
                    .or_else(|| element.attr("type").map(str::to_string))
                    .unwrap_or_default()
            }
            RouterOutput::StopCall { call_id: id, .. } if *id == call_id => "stop".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(described, ["session-terminate", "stop", "unavailable"]);
    h.assert_idle();
}

#[test]
fn a_call_ending_on_its_own_is_stopped_and_counted_with_its_reason() {
    let mut h = Harness::new();
    let call_id = h.answered_call("echo");
    h.event(call_id, media(MediaEvent::Ended(EndReason::EndpointHungUp)));
    let outputs = h.outputs();
    let terminate = match &outputs[0] {
        RouterOutput::Stanza { stanza, .. } => Element::from(stanza),
        other => panic!("{other:?}"),
    };
    assert_eq!(jingle_action(&terminate), Some("session-terminate"));
    assert!(matches!(outputs[1], RouterOutput::StopCall { call_id: id, .. } if id == call_id));
    assert_eq!(outputs.len(), 2);
    // Events from a call that is over change nothing.
    h.event(
        call_id,
        CallEvent::Message {
            to: jid("bob@localhost"),
            body: "x".into(),
        },
    );
    h.assert_idle();
}

#[test]
fn a_mailbox_command_is_run_off_the_loop_and_answered_later() {
    let data = std::env::temp_dir().join(format!("gw-router-{}", std::process::id()));
    let mut h = Harness::with_config(&format!(
        "{CONFIG}[storage]\ndata_dir = \"{}\"\n\
         [endpoints.box]\nkind = \"voicemail\"\nowners = [\"bob@localhost\"]\n",
        data.display()
    ));
    // Which commands there are is known at once (from the config, no disk).
    h.receive("<iq type='get' id='i' from='bob@localhost/x' to='box@gw.localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>");
    let items = h.sent_one();
    assert_eq!(items.attr("type"), Some("result"));
    assert!(items.children().next().unwrap().children().count() > 0);
    // Running one reads the mailbox: the shell does that, then answers.
    h.receive("<iq type='set' id='c' from='bob@localhost/x' to='box@gw.localhost'><command xmlns='http://jabber.org/protocol/commands' node='list' action='execute'/></iq>");
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [RouterOutput::MailboxCommand { request: (from, to, id), mailbox, .. }]
            if from.to_string() == "bob@localhost/x" && to.to_string() == "box@gw.localhost" && id == "c" && mailbox == "box"),
        "{outputs:?}"
    );
    // A stranger is refused at once: only owners put work on the blocking pool.
    h.receive("<iq type='set' id='m' from='mallory@evil.example/x' to='box@gw.localhost'><command xmlns='http://jabber.org/protocol/commands' node='list' action='execute'/></iq>");
    assert_eq!(error_condition(&h.sent_one()).as_deref(), Some("forbidden"));
    // A command that does not parse is refused at once.
    h.receive("<iq type='set' id='d' from='bob@localhost/x' to='box@gw.localhost'><command xmlns='http://jabber.org/protocol/commands'/></iq>");
    assert_eq!(
        error_condition(&h.sent_one()).as_deref(),
        Some("bad-request")
    );
    h.assert_idle();
    let _ = std::fs::remove_dir_all(&data);
}
