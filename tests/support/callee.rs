//! The test user answering calls the gateway places: XEP-0353 proposals seen, proceeded or
//! rejected, and the `session-initiate` answered the way a browser does (`setup='active'`,
//! controlled ICE), with real media on the gateway's own media leg.

use std::time::Duration;

use jingle_gateway::jingle::negotiate::{answer, read_offer, LocalTransport};
use jingle_gateway::media::leg::{IceRole, MediaLeg};
use jingle_gateway::media::rtp::RtpSender;
use jingle_gateway::protocol::ice_udp::Setup;
use jingle_gateway::protocol::jingle::{Action, Jingle, Sid};
use jingle_gateway::protocol::jmi::{Jmi, NS_JMI};
use jingle_gateway::types::Codec;
use minidom::Element;

use super::caller::{jingle_of, Call, TestCaller};

/// A XEP-0353 proposal received.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Who proposes (the gateway's device JID).
    pub from: String,
    /// Session id.
    pub sid: String,
}

/// The JMI element named `name` in `stanza`, if it is a message carrying one.
pub fn jmi_child<'a>(stanza: &'a Element, name: &str) -> Option<&'a Element> {
    if stanza.name() != "message" {
        return None;
    }
    stanza.get_child(name, NS_JMI).or_else(|| {
        // A carbon copy of a message another device of ours sent or received.
        stanza
            .children()
            .filter(|c| c.ns() == "urn:xmpp:carbons:2")
            .filter_map(|c| c.get_child("forwarded", "urn:xmpp:forward:0"))
            .filter_map(|f| f.get_child("message", super::client::NS_CLIENT))
            .find_map(|m| m.get_child(name, NS_JMI))
    })
}

impl TestCaller {
    /// Turns on message carbons (XEP-0280), as phone and desktop clients do: this device then
    /// sees what the user's other devices send, such as a `<proceed/>`.
    pub async fn enable_carbons(&mut self) {
        let bare = self.client.bare().to_owned();
        let enable = Element::builder("enable", "urn:xmpp:carbons:2").build();
        let answer = self.client.iq(&bare, "set", enable).await;
        assert_eq!(answer.attr("type"), Some("result"), "carbons refused");
    }

    /// Waits up to `timeout` for a proposal (not a carbon of one).
    pub async fn wait_propose(&mut self, timeout: Duration) -> Option<Proposal> {
        let stanza = self
            .client
            .try_expect(timeout, |s| {
                s.name() == "message" && s.has_child("propose", NS_JMI)
            })
            .await?;
        let propose = stanza.get_child("propose", NS_JMI)?;
        Some(Proposal {
            from: stanza.attr("from")?.to_string(),
            sid: propose.attr("id")?.to_string(),
        })
    }

    /// Sends `jmi` (`proceed`, `reject`, `ringing`) about `proposal`, to the proposer's
    /// bare JID as XEP-0353 says.
    async fn tell(&mut self, proposal: &Proposal, jmi: Jmi) {
        let to = proposal
            .from
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.client.send_message(&to, vec![jmi.to_element()]).await;
    }

    /// Accepts the proposal on this device.
    pub async fn proceed(&mut self, proposal: &Proposal) {
        let sid = Sid(proposal.sid.clone());
        self.tell(proposal, Jmi::Ringing { sid: sid.clone() }).await;
        self.tell(proposal, Jmi::Proceed { sid }).await;
    }

    /// Declines the proposal.
    pub async fn reject(&mut self, proposal: &Proposal) {
        let reason = jingle_gateway::protocol::jingle::ReasonElement {
            reason: jingle_gateway::protocol::jingle::Reason::Decline,
            text: None,
        };
        let sid = Sid(proposal.sid.clone());
        self.tell(
            proposal,
            Jmi::Reject {
                sid,
                tie_break: false,
                reason: Some(reason),
            },
        )
        .await;
    }

    /// Waits for a `session-initiate` and answers it with the first of `codecs` it offers, as a
    /// browser answers: controlled ICE, the DTLS client (`setup='active'`).
    pub async fn answer(&mut self, codecs: &[Codec], timeout: Duration) -> Result<Call, String> {
        let stanza = self
            .client
            .try_expect(timeout, |s| {
                jingle_of(s).is_some_and(|j| j.action == Action::SessionInitiate)
            })
            .await
            .ok_or("no session-initiate")?;
        let initiator = stanza.attr("from").unwrap_or_default().to_string();
        let initiate = jingle_of(&stanza).ok_or("unreadable session-initiate")?;
        let setup = initiate
            .contents
            .first()
            .and_then(|c| c.ice_udp())
            .and_then(|t| t.fingerprints.first())
            .and_then(|f| f.setup);
        assert_eq!(setup, Some(Setup::Actpass), "an offer says actpass");
        // The gateway's own reading of an offer, with the test's codec instead of its choice.
        let mut offer = read_offer(&initiate, true).map_err(|r| r.to_string())?;
        let rtp = initiate.contents[0].rtp().ok_or("no RTP description")?;
        let find = |name: &str, rate: u32| rtp.payload_types.iter().find(|pt| pt.is(name, rate));
        let codec = *codecs
            .iter()
            .find(|c| find(c.name(), c.clock_rate()).is_some())
            .ok_or("no codec in common")?;
        offer.codec = codec;
        offer.payload_type = find(codec.name(), codec.clock_rate()).map_or(0, |pt| pt.id);
        offer.dtmf_payload_type = find("telephone-event", codec.clock_rate()).map(|pt| pt.id);

        let mut leg = MediaLeg::new(self.engine.clone(), IceRole::Controlled)
            .await
            .map_err(|e| e.to_string())?;
        leg.connect(
            &offer.ice_ufrag,
            &offer.ice_pwd,
            offer.fingerprint.clone(),
            offer.dtls_role,
        );
        let (ufrag, pwd) = leg.local_credentials().await;
        let candidates = leg.initial_candidates().await;
        leg.add_remote_candidates(&offer.candidates);
        let local = LocalTransport {
            ufrag,
            pwd,
            candidates,
            ssrc: rand::random(),
        };
        let (content, group) = answer(&offer, &local, &self.engine.certificate.fingerprint_sha256);
        let mut accept = Jingle::new(Action::SessionAccept, initiate.sid.clone());
        accept.contents = vec![content];
        accept.group = group;
        let reply = self.client.iq(&initiator, "set", accept.to_element()).await;
        if reply.attr("type") != Some("result") {
            leg.close().await;
            return Err(format!("session-accept refused: {}", String::from(&reply)));
        }
        Ok(Call {
            sid: initiate.sid.0.clone(),
            to: initiator,
            codec,
            gateway_candidates: offer.candidates.clone(),
            only_gateway_candidates: None,
            relayed: false,
            gateway_ufrag: offer.ice_ufrag.clone(),
            content_name: offer.content_name.clone(),
            payload_type: offer.payload_type,
            dtmf_type: offer.dtmf_payload_type,
            leg,
            sender: RtpSender::new(
                local.ssrc,
                offer.payload_type,
                offer.dtmf_payload_type,
                rand::random(),
                rand::random(),
            ),
        })
    }
}
