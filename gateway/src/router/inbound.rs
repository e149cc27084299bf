//! Inbound IQs and messages. Every IQ request gets exactly one reply, sent from one place
//! ([`RouterCore::handle_iq`]) after its handler returns; a handler's error becomes a stanza error
//! there. The one exception is an admin's `reload`, answered when the config has been read
//! (see `router/admin.rs`).

use jid::Jid;
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::version::VersionResult;

use std::time::Instant;

use super::core::{RouterCore, RouterOutput};
use crate::call::CallCommand;
use crate::mailbox;
use crate::protocol::adhoc::{command_info, Command, NS_COMMANDS};
use crate::protocol::jingle::{Jingle, NS_JINGLE};
use crate::protocol::jmi::Jmi;
use crate::types::CallId;
use crate::xmpp::disco;
use crate::xmpp::iq_error::IqError;
use crate::xmpp::stream::{InvalidCause, InvalidStanza};

/// How an IQ request is answered.
pub(super) enum Answer {
    /// With this payload, now.
    Now(Option<Element>),
    /// Later, by whoever the handler handed the request to.
    Later,
}

impl RouterCore {
    pub(super) fn handle_iq(&mut self, now: Instant, iq: Iq) {
        let (from, to, id, payload, is_set) = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, false),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (from, to, id, payload, true),
            Iq::Result {
                from, id, payload, ..
            } => {
                let answered = from
                    .as_ref()
                    .is_some_and(|from| self.jingle.handle_iq_response(now, from, &id, None));
                if answered {
                    self.process_signalling(now);
                } else {
                    self.pending.answer(from.as_ref(), &id, Ok(payload));
                }
                return;
            }
            Iq::Error {
                from, id, error, ..
            } => {
                let condition = Some(error.defined_condition.clone());
                let answered = from
                    .as_ref()
                    .is_some_and(|from| self.jingle.handle_iq_response(now, from, &id, condition));
                if answered {
                    self.process_signalling(now);
                } else {
                    self.pending.answer(from.as_ref(), &id, Err(error));
                }
                return;
            }
        };
        let (Some(from), Some(to)) = (from, to) else {
            tracing::debug!(id, "dropping an IQ without from or to");
            return;
        };
        let result = self.handle_iq_request(now, &from, &to, &id, payload, is_set);
        let reply = match result {
            Ok(Answer::Later) => return,
            Ok(Answer::Now(payload)) => Iq::Result {
                from: Some(to),
                to: Some(from),
                id,
                payload,
            },
            Err(error) => {
                tracing::debug!(%from, %error, "refusing an IQ");
                Iq::Error {
                    from: Some(to),
                    to: Some(from),
                    id,
                    error: error.to_stanza_error(),
                    payload: None,
                }
            }
        };
        self.send(Stanza::Iq(reply));
        // The reply goes out before anything the request caused (ringing, session-terminate).
        self.process_signalling(now);
    }

    fn handle_iq_request(
        &mut self,
        now: Instant,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: Element,
        is_set: bool,
    ) -> Result<Answer, IqError> {
        let virtual_jid = match to.node() {
            Some(_) => Some(self.virtual_jid(to).ok_or(IqError::NoSuchJid)?),
            None if to.domain() == self.domain.domain() => None,
            None => return Err(IqError::NoSuchJid),
        };
        match (payload.name(), payload.ns().as_str(), is_set) {
            ("query", ns::DISCO_INFO, false) => {
                let node = payload.attr("node").map(str::to_string);
                let is_mailbox = to
                    .node()
                    .is_some_and(|n| self.voicemail.mailbox(n.as_str()).is_some());
                let command = node
                    .as_deref()
                    .filter(|_| is_mailbox)
                    .and_then(mailbox::commands::info);
                let admin_command = node.as_deref().and_then(|node| {
                    let commands = self.admin_commands(from);
                    commands.iter().find(|(n, _)| *n == node)
                });
                let info = match (virtual_jid, command, admin_command) {
                    (Some(_), Some(command), _) => command,
                    (Some(virtual_jid), None, _) => virtual_jid.info_for(node),
                    (None, _, Some((node, name))) => command_info(node, name),
                    (None, _, None) => DiscoInfoResult {
                        node,
                        ..disco::domain_info(&self.name)
                    },
                };
                Ok(Answer::Now(Some(info.into())))
            }
            ("query", ns::DISCO_ITEMS, false) => {
                let items = match virtual_jid {
                    Some(virtual_jid) if payload.attr("node") == Some(NS_COMMANDS) => {
                        let mailbox = to.node().map(|n| n.as_str()).unwrap_or_default();
                        let commands = mailbox::commands::items(
                            &self.voicemail,
                            mailbox,
                            &from.to_bare().to_string(),
                        );
                        DiscoItemsResult {
                            node: Some(NS_COMMANDS.into()),
                            items: commands
                                .into_iter()
                                .map(|(node, name)| Item {
                                    jid: virtual_jid.jid.clone(),
                                    node: Some(node.into()),
                                    name: Some(name.into()),
                                })
                                .collect(),
                            rsm: None,
                        }
                    }
                    Some(_) => disco::domain_items(std::iter::empty()),
                    None if payload.attr("node") == Some(NS_COMMANDS) => DiscoItemsResult {
                        node: Some(NS_COMMANDS.into()),
                        items: self
                            .admin_commands(from)
                            .iter()
                            .map(|(node, name)| Item {
                                jid: Jid::from(self.domain.clone()),
                                node: Some(node.to_string()),
                                name: Some(name.to_string()),
                            })
                            .collect(),
                        rsm: None,
                    },
                    None => disco::domain_items(self.virtual_jids.values()),
                };
                Ok(Answer::Now(Some(items.into())))
            }
            ("command", NS_COMMANDS, true) if virtual_jid.is_none() => {
                self.admin_command(now, from, to, id, &payload)
            }
            ("command", NS_COMMANDS, true) => {
                let mailbox = to.node().map(|n| n.to_string()).unwrap_or_default();
                let command = Command::parse(&payload).map_err(IqError::BadRequest)?;
                // Anyone may send these: strangers are refused here, from the config, so that
                // only owners can put work on the blocking pool.
                let requester = from.to_bare().to_string();
                let owner = self
                    .voicemail
                    .mailbox(&mailbox)
                    .is_some_and(|m| m.config.is_owner(&requester));
                if !owner {
                    return Err(IqError::from(mailbox::commands::CommandError::Forbidden));
                }
                // It reads and changes the mailbox's files: the shell runs it off this loop.
                self.push(RouterOutput::MailboxCommand {
                    request: (from.clone(), to.clone(), id.to_string()),
                    mailbox,
                    command,
                });
                Ok(Answer::Later)
            }
            ("ping", ns::PING, false) => Ok(Answer::Now(None)),
            ("query", ns::VERSION, false) => Ok(Answer::Now(Some(
                VersionResult {
                    name: "jingle-gateway".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    os: None,
                }
                .into(),
            ))),
            ("jingle", NS_JINGLE, true) => {
                let from = from.clone().try_into_full().map_err(|_| {
                    IqError::BadRequest("Jingle requests must come from a full JID".into())
                })?;
                let jingle =
                    Jingle::parse(&payload).map_err(|e| IqError::BadRequest(e.to_string()))?;
                self.jingle
                    .handle_jingle(now, from, to.clone(), jingle)
                    .map_err(IqError::Jingle)?;
                Ok(Answer::Now(None))
            }
            _ => Err(IqError::Unsupported),
        }
    }

    /// A stanza that could not be used: counted, logged (at most every few seconds), and an IQ
    /// request still gets its one reply, `policy-violation` for a stanza beyond the read
    /// limits and `bad-request` for one that is not valid.
    pub fn handle_invalid(&mut self, now: Instant, invalid: InvalidStanza) {
        let reason = match &invalid.cause {
            InvalidCause::Limit(limit) => limit.as_str(),
            InvalidCause::Invalid(_) => crate::metrics::STANZA_INVALID,
        };
        self.metrics.stanza_dropped(reason);
        if let Some(held_back) = self.dropped_log.allow(now) {
            tracing::warn!(kind = %invalid.kind, from = ?invalid.from, cause = %invalid.cause,
                held_back, "dropping a stanza that cannot be used");
        }
        let is_request = matches!(invalid.type_.as_deref(), Some("get") | Some("set"));
        if invalid.kind != "iq" || !is_request {
            return;
        }
        let (Some(id), Some(from), Some(to)) = (invalid.id, invalid.from, invalid.to) else {
            return;
        };
        let (Ok(from), Ok(to)) = (Jid::new(&from), Jid::new(&to)) else {
            return;
        };
        let error = match invalid.cause {
            InvalidCause::Limit(limit) => IqError::PolicyViolation(format!(
                "the stanza is beyond the gateway's {} limit",
                limit.as_str()
            )),
            InvalidCause::Invalid(error) => IqError::BadRequest(format!("invalid stanza: {error}")),
        };
        self.send(Stanza::Iq(Iq::Error {
            from: Some(to),
            to: Some(from),
            id,
            error: error.to_stanza_error(),
            payload: None,
        }));
    }

    pub(super) fn handle_message(&mut self, now: Instant, message: Message) {
        if message.type_ == MessageType::Error {
            // A proposal of ours that could not be delivered.
            if let (Some(from), Some(id)) = (&message.from, &message.id) {
                self.jingle.handle_jmi_bounce(now, from, &id.0);
                self.process_signalling(now);
            }
            return;
        }
        let (Some(from), Some(to)) = (message.from.clone(), message.to.clone()) else {
            return;
        };
        if self.virtual_jid(&to).is_none() {
            self.bounce(
                &message,
                DefinedCondition::ItemNotFound,
                "no such virtual JID",
            );
            return;
        }
        match Jmi::find(&message.payloads) {
            Some(Ok(jmi)) => {
                let Ok(from) = from.try_into_full() else {
                    return; // JMI comes from a device: a bare JID cannot be answered.
                };
                let wants_receipt = message
                    .payloads
                    .iter()
                    .any(|p| p.is("request", ns::RECEIPTS));
                let id = message.id.as_ref().map(|id| id.0.clone());
                self.jingle
                    .handle_jmi(now, from, to, id, wants_receipt, jmi);
                self.process_signalling(now);
            }
            Some(Err(e)) => {
                self.bounce(&message, DefinedCondition::BadRequest, &e.to_string());
            }
            None => self.handle_chat(&from, &to, &message),
        }
    }

    /// A chat message to a virtual JID during a call: keys typed by a caller whose client has
    /// no dial pad.
    fn handle_chat(&mut self, from: &Jid, to: &Jid, message: &Message) {
        let Some((_, body)) = message.get_best_body(vec![]) else {
            return;
        };
        let (Some(virtual_jid), peer) = (to.node(), from.to_bare()) else {
            return;
        };
        let calls: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, call)| {
                call.peer.to_bare() == peer && call.virtual_jid == virtual_jid.as_str()
            })
            .map(|(call_id, _)| *call_id)
            .collect();
        for call_id in calls {
            self.command_call(call_id, CallCommand::ChatDigits(body.clone()));
        }
    }

    /// Returns `message` to its sender as an error.
    fn bounce(&mut self, message: &Message, condition: DefinedCondition, text: &str) {
        let mut reply = Message::new_with_type(MessageType::Error, message.from.clone());
        reply.from = message.to.clone();
        reply.id = message.id.clone();
        reply = reply.with_payload(StanzaError::new(ErrorType::Cancel, condition, "en", text));
        self.send(Stanza::Message(reply));
    }
}
