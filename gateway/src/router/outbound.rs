//! Stanzas for the signalling core's outputs.

use jid::Jid;
use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::receipts::Received;
use xmpp_parsers::stanza::Stanza;

use crate::jingle::Output;
use crate::protocol::jmi::NS_JMI;
use crate::xmpp::outbox::Lane;

/// XEP-0334 `<store/>`: JMI messages are archived so the caller's other devices see them.
const NS_HINTS: &str = "urn:xmpp:hints";

/// The lane of the link's queue a stanza of the router waits in: IQs and call signalling
/// (Jingle Message Initiation, receipts) go before presence, chat and bounces.
pub(super) fn lane_of(stanza: &Stanza) -> Lane {
    match stanza {
        Stanza::Iq(_) => Lane::Signalling,
        Stanza::Message(message) if message.type_ != MessageType::Error => {
            let signalling = message
                .payloads
                .iter()
                .any(|p| p.ns() == NS_JMI || p.is("received", xmpp_parsers::ns::RECEIPTS));
            match signalling {
                true => Lane::Signalling,
                false => Lane::Bulk,
            }
        }
        Stanza::Message(_) | Stanza::Presence(_) => Lane::Bulk,
    }
}

/// A chat message with `body`.
pub(super) fn chat(from: Jid, to: Jid, body: String, id: String) -> Stanza {
    let mut message = Message::new_with_type(MessageType::Chat, Some(to));
    message.from = Some(from);
    message.id = Some(Id(id));
    Stanza::Message(message.with_body(Lang(String::new()), body))
}

/// The stanza an output sends, if it sends one; a JMI message other than a proposal gets the
/// message id `id`.
pub(super) fn stanza_for(output: Output, id: Option<String>) -> Option<Stanza> {
    match output {
        Output::JingleIq {
            id,
            from,
            to,
            jingle,
        } => Some(Stanza::Iq(Iq::Set {
            from: Some(from),
            to: Some(Jid::from(to)),
            id,
            payload: jingle.to_element(),
        })),
        Output::Jmi { from, to, jmi } => {
            let mut message = Message::new_with_type(MessageType::Chat, Some(to));
            message.from = Some(from);
            // A proposal's message id is its sid, so that a bounce names the proposal.
            message.id = Some(Id(match &jmi {
                crate::protocol::jmi::Jmi::Propose { sid, .. } => sid.0.clone(),
                _ => id.unwrap_or_default(),
            }));
            message.payloads = vec![
                jmi.to_element(),
                Element::builder("store", NS_HINTS).build(),
            ];
            Some(Stanza::Message(message))
        }
        Output::Receipt { from, to, id } => {
            let mut message = Message::new_with_type(MessageType::Chat, Some(Jid::from(to)));
            message.from = Some(from);
            Some(Stanza::Message(message.with_payload(Received { id })))
        }
        Output::StartCall(_)
        | Output::Answered { .. }
        | Output::DialFailed { .. }
        | Output::RemoteCandidates { .. }
        | Output::IceRestart { .. }
        | Output::StopCall { .. }
        | Output::CallNotStarted { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jingle::Sid;
    use crate::protocol::jmi::Jmi;
    use xmpp_parsers::presence::Presence;

    #[test]
    fn signalling_and_bulk_are_told_apart() {
        let jid = Jid::new("a@b/c").unwrap();
        let jmi = stanza_for(
            Output::Jmi {
                from: jid.clone(),
                to: jid.clone(),
                jmi: Jmi::Ringing {
                    sid: Sid("s".into()),
                },
            },
            Some("j".into()),
        )
        .unwrap();
        assert_eq!(lane_of(&jmi), Lane::Signalling);
        let iq = Stanza::Iq(Iq::from_get("x", xmpp_parsers::ping::Ping));
        assert_eq!(lane_of(&iq), Lane::Signalling);
        let chat = chat(jid.clone(), jid.clone(), "1".into(), "c".into());
        assert_eq!(lane_of(&chat), Lane::Bulk);
        assert_eq!(
            lane_of(&Stanza::Presence(Presence::available())),
            Lane::Bulk
        );
    }
}
