//! The test user answering calls the gateway places: XEP-0353 proposals seen, proceeded or
//! rejected, and the `session-initiate` answered the way a browser does (`setup='active'`,
//! controlled ICE), with real media on the gateway's own media leg.

use std::time::Duration;

use jingle_gateway::jingle::negotiate::{Codec, DtlsRole, RemoteFingerprint, FINGERPRINT_HASHES};
use jingle_gateway::media::leg::{IceRole, MediaLeg};
use jingle_gateway::media::rtp::RtpSender;
use jingle_gateway::protocol::ice_udp::{Fingerprint, IceUdpTransport, Setup};
use jingle_gateway::protocol::jingle::{Action, Content, Description, Jingle, Sid, Transport};
use jingle_gateway::protocol::jmi::{Jmi, NS_JMI};
use jingle_gateway::protocol::rtp::{PayloadType, RtpDescription};
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

    /// Sends `element` (`proceed`, `reject`, `ringing`) about `proposal`, to the proposer's
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
                reason: Some(reason),
            },
        )
        .await;
    }

    /// Waits for a `session-initiate` and answers it with the first of `codecs` it offers.
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
        let content = initiate.contents.first().ok_or("no content")?;
        let rtp = content.rtp().ok_or("no RTP description")?;
        let transport = content.ice_udp().ok_or("no ICE-UDP transport")?;
        let (codec, chosen) = codecs
            .iter()
            .find_map(|codec| {
                rtp.payload_types
                    .iter()
                    .find(|pt| pt.is(codec.name(), codec.clock_rate()))
                    .map(|pt| (*codec, pt.clone()))
            })
            .ok_or("no codec in common")?;
        let dtmf = rtp
            .payload_types
            .iter()
            .find(|pt| pt.is("telephone-event", codec.clock_rate()))
            .cloned();
        let fingerprint = FINGERPRINT_HASHES
            .iter()
            .find_map(|hash| {
                let f = transport.fingerprint(hash)?;
                Some(RemoteFingerprint {
                    hash,
                    digest: f.bytes()?,
                })
            })
            .ok_or("no fingerprint")?;
        let setup = transport
            .fingerprints
            .first()
            .and_then(|f| f.setup)
            .ok_or("no setup")?;
        assert_eq!(setup, Setup::Actpass, "an offer says actpass");

        // As browsers answer: controlled ICE, the DTLS client (`setup='active'`).
        let mut leg = MediaLeg::new(self.engine.clone(), IceRole::Controlled).await?;
        leg.connect(
            transport.ufrag.as_deref().ok_or("no ufrag")?,
            transport.pwd.as_deref().ok_or("no pwd")?,
            fingerprint,
            DtlsRole::Client,
        );
        let (ufrag, pwd) = leg.local_credentials().await;
        let candidates = leg.initial_candidates().await;
        leg.add_remote_candidates(&transport.candidates);
        let ssrc = rand::random();
        let mut payload_types: Vec<PayloadType> = vec![chosen.clone()];
        payload_types.extend(dtmf.clone());
        let mut accept = Jingle::new(Action::SessionAccept, initiate.sid.clone());
        accept.contents = vec![Content {
            creator: content.creator,
            name: content.name.clone(),
            senders: content.senders,
            description: Some(Description::Rtp(RtpDescription {
                media: "audio".into(),
                ssrc: Some(ssrc),
                payload_types,
                rtcp_mux: true,
                sources: Vec::new(),
            })),
            transport: Some(Transport::IceUdp(IceUdpTransport {
                ufrag: Some(ufrag),
                pwd: Some(pwd),
                candidates,
                skipped_candidates: 0,
                fingerprints: vec![Fingerprint {
                    hash: "sha-256".into(),
                    setup: Some(Setup::Active),
                    value: self.engine.certificate.fingerprint_sha256.clone(),
                }],
            })),
        }];
        let answer = self.client.iq(&initiator, "set", accept.to_element()).await;
        if answer.attr("type") != Some("result") {
            leg.close().await;
            return Err(format!("session-accept refused: {}", String::from(&answer)));
        }
        let dtmf_type = dtmf.map(|pt| pt.id);
        Ok(Call {
            sid: initiate.sid.0.clone(),
            to: initiator,
            codec,
            gateway_candidates: transport.candidates.clone(),
            only_gateway_candidates: None,
            gateway_ufrag: transport.ufrag.clone().unwrap_or_default(),
            content_name: content.name.clone(),
            payload_type: chosen.id,
            dtmf_type,
            leg,
            sender: RtpSender::new(ssrc, chosen.id, dtmf_type, rand::random(), rand::random()),
        })
    }
}
