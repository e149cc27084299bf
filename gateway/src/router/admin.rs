//! The router's side of the admin commands on the component domain (their logic is
//! [`crate::admin`]): who may run them, the figures of the calls and mailboxes they show, and
//! what they do: hang a call up through the signalling core, or have the config file read
//! again, answering once that is done.

use std::time::{Duration, Instant};

use jid::Jid;
use minidom::Element;
use xmpp_parsers::iq::Iq;

use super::inbound::Answer;
use super::Router;
use crate::admin::{self, AdminAction, CallRow, MailboxRow};
use crate::jingle::MediaEvent;
use crate::protocol::adhoc::Command;
use crate::types::EndReason;
use crate::xmpp::iq_error::IqError;

/// How long an admin's reload may take before its answer says so.
const RELOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

impl Router {
    /// The admin commands `requester` may run: (node, name); none for anyone but the admins.
    pub(super) fn admin_commands(
        &self,
        requester: &Jid,
    ) -> &'static [(&'static str, &'static str)] {
        if self.admin.is_admin(&requester.to_bare().to_string()) {
            &admin::COMMANDS
        } else {
            &[]
        }
    }

    /// Runs the admin command in `payload` for `from`, addressed to `to` in the IQ `id`.
    pub(super) fn admin_command(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
    ) -> Result<Answer, IqError> {
        let command = Command::parse(payload).map_err(IqError::BadRequest)?;
        if !self.admin.is_admin(&from.to_bare().to_string()) {
            return Err(IqError::Forbidden(
                "only the gateway's administrators may run its commands".into(),
            ));
        }
        let calls = self.call_rows();
        let voicemail = &self.voicemail;
        let mailboxes = || {
            voicemail
                .names()
                .into_iter()
                .map(|name| {
                    let messages = voicemail.messages(&name);
                    let new = messages.iter().filter(|m| !m.heard).count();
                    MailboxRow {
                        saved: messages.len() - new,
                        new,
                        name,
                    }
                })
                .collect()
        };
        let action = admin::execute(&command, &calls, mailboxes)?;
        match action {
            AdminAction::Reply(response) => Ok(Answer::Now(Some(response.to_element()))),
            AdminAction::HangUp(call, response) => {
                if let Some(call_id) = self.active.keys().find(|c| c.to_string() == call) {
                    tracing::info!(call_id = %call_id, admin = %from, "an administrator hangs up a call");
                    self.core
                        .handle_media(*call_id, MediaEvent::Ended(EndReason::HungUpByAdmin));
                }
                Ok(Answer::Now(Some(response.to_element())))
            }
            AdminAction::Reload => {
                tracing::info!(admin = %from, "an administrator reloads the config");
                let (outcome, reloaded) = tokio::sync::oneshot::channel();
                let _ = self.rereads.send(outcome);
                let (xmpp, from, to, id) =
                    (self.xmpp.clone(), from.clone(), to.clone(), id.to_string());
                tokio::spawn(async move {
                    let outcome = match tokio::time::timeout(RELOAD_ANSWER_TIMEOUT, reloaded).await
                    {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(_)) => Err("the gateway is stopping".into()),
                        Err(_) => {
                            Err("the reload is taking long; its outcome will be in the log".into())
                        }
                    };
                    let response = admin::reloaded(&command, outcome);
                    let _ = xmpp.reply(Iq::Result {
                        from: Some(to),
                        to: Some(from),
                        id,
                        payload: Some(response.to_element()),
                    });
                });
                Ok(Answer::Later)
            }
        }
    }

    /// What admins see of the calls in progress, oldest first.
    fn call_rows(&self) -> Vec<CallRow> {
        let now = Instant::now();
        let mut calls: Vec<_> = self.active.iter().collect();
        calls.sort_by_key(|(_, call)| call.started());
        calls
            .into_iter()
            .map(|(call_id, call)| {
                let figures = call.figures();
                let heard = figures.expected > 0;
                let lost = figures.expected.saturating_sub(figures.received);
                CallRow {
                    id: call_id.to_string(),
                    callee: call.callee().to_string(),
                    peer: call.peer().to_string(),
                    codec: call.codec().map(|codec| codec.name()),
                    duration: now.duration_since(call.started()),
                    loss: heard.then(|| lost as f64 / figures.expected as f64),
                    jitter_ms: heard.then_some(figures.jitter_ms),
                    round_trip_ms: figures.round_trip_ms,
                    path: figures.path,
                }
            })
            .collect()
    }
}
