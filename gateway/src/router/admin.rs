//! The router's side of the admin commands on the component domain (their logic is
//! [`crate::admin`]): who may run them, the figures of the calls and mailboxes they show, and
//! what they do: hang a call up through the signalling core, or have the config file read
//! again, answering once that is done.

use std::time::Instant;

use jid::Jid;
use minidom::Element;

use super::core::{RouterCore, RouterOutput};
use super::inbound::Answer;
use crate::admin::{self, AdminAction, CallRow};
use crate::jingle::MediaEvent;
use crate::protocol::adhoc::Command;
use crate::types::EndReason;
use crate::xmpp::iq_error::IqError;

impl RouterCore {
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
        now: Instant,
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
        if command.node == admin::MAILBOXES {
            // Counting messages reads every mailbox's files: the shell does it off the loop.
            let request = (from.clone(), to.clone(), id.to_string());
            self.push(RouterOutput::AdminMailboxes { request, command });
            return Ok(Answer::Later);
        }
        let calls = self.call_rows(now);
        let action = admin::execute(&command, &calls, Vec::new)?;
        match action {
            AdminAction::Reply(response) => Ok(Answer::Now(Some(response.to_element()))),
            AdminAction::HangUp(call, response) => {
                if let Some(call_id) = self.calls.keys().find(|c| c.to_string() == call).copied() {
                    tracing::info!(call_id = %call_id, admin = %from, "an administrator hangs up a call");
                    self.jingle.handle_media(
                        now,
                        call_id,
                        MediaEvent::Ended(EndReason::HungUpByAdmin),
                    );
                }
                Ok(Answer::Now(Some(response.to_element())))
            }
            AdminAction::Reload => {
                tracing::info!(admin = %from, "an administrator reloads the config");
                let request = (from.clone(), to.clone(), id.to_string());
                self.push(RouterOutput::Reread { request, command });
                Ok(Answer::Later)
            }
        }
    }

    /// What admins see of the calls in progress, oldest first.
    fn call_rows(&self, now: Instant) -> Vec<CallRow> {
        let mut calls: Vec<_> = self.calls.iter().collect();
        calls.sort_by_key(|(_, call)| call.started);
        calls
            .into_iter()
            .map(|(call_id, call)| {
                let figures = call
                    .figures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let heard = figures.expected > 0;
                let lost = figures.expected.saturating_sub(figures.received);
                CallRow {
                    id: call_id.to_string(),
                    callee: call.virtual_jid.clone(),
                    peer: call.peer.to_string(),
                    codec: call.codec.map(|codec| codec.name()),
                    duration: now.saturating_duration_since(call.started),
                    loss: heard.then(|| lost as f64 / figures.expected as f64),
                    jitter_ms: heard.then_some(figures.jitter_ms),
                    round_trip_ms: figures.round_trip_ms,
                    path: figures.path,
                }
            })
            .collect()
    }
}
