//! XEP-0050 ad-hoc commands on a mailbox JID, for its owners: `list` shows the messages (who,
//! when, how long, the recording's URL); `delete` offers them in a form and deletes those
//! picked. Others see no commands and are refused.

use xmpp_parsers::disco::DiscoInfoResult;

use super::delivery::summary;
use super::time::{clock_duration, Utc};
use super::Mailboxes;
use crate::protocol::adhoc::{
    command_info, field, form, table, Command, CommandAction, CommandResponse, CommandStatus,
};
use crate::xmpp::iq_error::IqError;

/// The command listing messages.
pub const LIST: &str = "list";
/// The command deleting messages.
pub const DELETE: &str = "delete";

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The requester does not own the mailbox.
    #[error("only the mailbox's owners may use its commands")]
    Forbidden,
    /// No such command here.
    #[error("no such command")]
    Unknown,
    /// The request does not fit the command.
    #[error("{0}")]
    BadRequest(String),
}

impl From<CommandError> for IqError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Forbidden => IqError::Forbidden(error.to_string()),
            CommandError::Unknown => IqError::NotFound(error.to_string()),
            CommandError::BadRequest(text) => IqError::BadRequest(text),
        }
    }
}

/// The commands `requester` (a bare JID) may run on `mailbox`: (node, name).
pub fn items(
    voicemail: &Mailboxes,
    mailbox: &str,
    requester: &str,
) -> Vec<(&'static str, &'static str)> {
    match voicemail.mailbox(mailbox) {
        Some(found) if found.config.is_owner(requester) => {
            vec![(LIST, "List messages"), (DELETE, "Delete messages")]
        }
        _ => Vec::new(),
    }
}

/// disco#info of a command node.
pub fn info(node: &str) -> Option<DiscoInfoResult> {
    let name = match node {
        LIST => "List messages",
        DELETE => "Delete messages",
        _ => return None,
    };
    Some(command_info(node, name))
}

/// Runs `command` on `mailbox` for `requester` (a bare JID).
pub fn execute(
    voicemail: &Mailboxes,
    mailbox: &str,
    requester: &str,
    command: &Command,
) -> Result<CommandResponse, CommandError> {
    let found = voicemail.mailbox(mailbox).ok_or(CommandError::Unknown)?;
    if !found.config.is_owner(requester) {
        return Err(CommandError::Forbidden);
    }
    let session = command
        .session
        .clone()
        .unwrap_or_else(|| format!("{:x}", rand::random::<u64>()));
    let respond = |status, notes, form| CommandResponse {
        node: command.node.clone(),
        session: session.clone(),
        status,
        notes,
        form,
    };
    if command.action == CommandAction::Cancel {
        return Ok(respond(CommandStatus::Canceled, Vec::new(), None));
    }
    let messages = voicemail.messages(mailbox);
    match command.node.as_str() {
        LIST => {
            let new = messages.iter().filter(|m| !m.heard).count();
            let rows: Vec<Vec<String>> = messages
                .iter()
                .map(|m| {
                    vec![
                        m.caller.split('/').next().unwrap_or(&m.caller).to_string(),
                        Utc::from_unix(m.received).human(),
                        clock_duration(m.duration()),
                        if m.heard { "yes" } else { "no" }.to_string(),
                        m.url.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let note = format!("{} messages, {new} new.", messages.len());
            let columns = [
                ("from", "From"),
                ("received", "Received"),
                ("length", "Length"),
                ("heard", "Heard"),
                ("url", "Recording"),
            ];
            let title = format!("Messages in {mailbox}");
            Ok(respond(
                CommandStatus::Completed,
                vec![("info", note)],
                Some(table(&title, &columns, &rows)),
            ))
        }
        DELETE => {
            let chosen = command.values_of("messages");
            if chosen.is_empty() {
                if messages.is_empty() {
                    return Ok(respond(
                        CommandStatus::Completed,
                        vec![("info", "No messages.".into())],
                        None,
                    ));
                }
                if command.action == CommandAction::Complete && !command.values.is_empty() {
                    return Ok(respond(
                        CommandStatus::Completed,
                        vec![("info", "Nothing deleted.".into())],
                        None,
                    ));
                }
                let options: Vec<(String, String)> = messages
                    .iter()
                    .map(|m| (summary(m), m.id.clone()))
                    .collect();
                let picker = field(
                    "messages",
                    "list-multi",
                    Some("Messages to delete"),
                    &[],
                    &options,
                );
                return Ok(respond(
                    CommandStatus::Executing,
                    Vec::new(),
                    Some(form(
                        "form",
                        "Delete messages",
                        Some("Pick the messages to delete."),
                        vec![picker],
                    )),
                ));
            }
            let mut deleted = 0;
            for id in chosen {
                let Some(message) = messages.iter().find(|m| &m.id == id) else {
                    return Err(CommandError::BadRequest(format!("no message `{id}`")));
                };
                match voicemail.delete(message) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(id = %message.id, error = %e, "cannot delete a message");
                    }
                }
            }
            tracing::info!(mailbox, deleted, "messages deleted by an owner's command");
            let note = match deleted {
                1 => "Deleted 1 message.".to_string(),
                n => format!("Deleted {n} messages."),
            };
            Ok(respond(
                CommandStatus::Completed,
                vec![("info", note)],
                None,
            ))
        }
        _ => Err(CommandError::Unknown),
    }
}
