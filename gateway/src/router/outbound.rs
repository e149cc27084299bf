//! Stanzas for the signalling core's outputs.

use jid::Jid;
use minidom::Element;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::receipts::Received;

use crate::jingle::Output;

/// XEP-0334 `<store/>`: JMI messages are archived so the caller's other devices see them.
const NS_HINTS: &str = "urn:xmpp:hints";

/// A chat message with `body`.
pub(super) fn chat(from: Jid, to: Jid, body: String) -> Stanza {
    let mut message = Message::new_with_type(MessageType::Chat, Some(to));
    message.from = Some(from);
    message.id = Some(Id(format!("gw-{}", rand::random::<u64>())));
    Stanza::Message(message.with_body(Lang(String::new()), body))
}

/// The stanza an output sends, if it sends one.
pub(super) fn stanza_for(output: Output) -> Option<Stanza> {
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
                _ => format!("jmi-{}", rand::random::<u64>()),
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
