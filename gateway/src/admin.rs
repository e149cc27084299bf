//! XEP-0050 ad-hoc commands on the component domain for the gateway's administrators
//! (`[admin] jids`): the calls in progress, hanging one up, reloading the config, the
//! mailboxes. Others see no commands and are refused. This module is the commands' logic over
//! plain figures the router gathers; the router acts on what it returns.

use std::time::Duration;

use crate::mailbox::commands::CommandError;
use crate::mailbox::time::clock_duration;
use crate::protocol::adhoc::{
    field, form, table, Command, CommandAction, CommandResponse, CommandStatus,
};

/// The command listing calls in progress.
pub const CALLS: &str = "calls";
/// The command hanging up a call.
pub const HANG_UP: &str = "hang-up";
/// The command reading the config file again.
pub const RELOAD: &str = "reload";
/// The command listing the mailboxes.
pub const MAILBOXES: &str = "mailboxes";

/// Every admin command: (node, name).
pub const COMMANDS: [(&str, &str); 4] = [
    (CALLS, "Calls in progress"),
    (HANG_UP, "Hang up a call"),
    (RELOAD, "Reload the configuration"),
    (MAILBOXES, "Mailboxes"),
];

/// What an admin sees of a call in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    /// The call's id (what the hang-up form submits).
    pub id: String,
    /// The virtual JID's local part.
    pub callee: String,
    /// The other party.
    pub peer: String,
    /// The codec, once negotiated.
    pub codec: Option<&'static str>,
    /// How long since the call started.
    pub duration: Duration,
    /// Share of the packets expected from the peer that never came, so far.
    pub loss: Option<f64>,
    /// Interarrival jitter, so far.
    pub jitter_ms: Option<f64>,
    /// Round-trip time from RTCP, last reported.
    pub round_trip_ms: Option<f64>,
    /// The ICE pair in use (types and addresses), once selected.
    pub path: Option<String>,
}

/// What an admin sees of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    /// The mailbox's local part.
    pub name: String,
    /// Messages not heard yet.
    pub new: usize,
    /// Messages heard and kept.
    pub saved: usize,
}

/// What the router does for a command.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminAction {
    /// Answer with this.
    Reply(CommandResponse),
    /// Hang up the call with this id, then answer with this.
    HangUp(String, CommandResponse),
    /// Read the config file again; answer with [`reloaded`] when done.
    Reload,
}

/// Runs `command` over the figures given (an administrator's request: the router checked).
pub fn execute(
    command: &Command,
    calls: &[CallRow],
    mailboxes: impl FnOnce() -> Vec<MailboxRow>,
) -> Result<AdminAction, CommandError> {
    let respond = |status, notes, form| respond(command, status, notes, form);
    if command.action == CommandAction::Cancel {
        return Ok(AdminAction::Reply(respond(
            CommandStatus::Canceled,
            Vec::new(),
            None,
        )));
    }
    match command.node.as_str() {
        CALLS => {
            let rows: Vec<Vec<String>> = calls.iter().map(call_cells).collect();
            let columns = [
                ("jid", "Virtual JID"),
                ("peer", "Peer"),
                ("codec", "Codec"),
                ("duration", "Duration"),
                ("loss", "Loss"),
                ("jitter", "Jitter"),
                ("rtt", "Round trip"),
                ("path", "ICE path"),
            ];
            let note = match calls.len() {
                1 => "1 call in progress.".to_string(),
                n => format!("{n} calls in progress."),
            };
            Ok(AdminAction::Reply(respond(
                CommandStatus::Completed,
                vec![("info", note)],
                Some(table("Calls in progress", &columns, &rows)),
            )))
        }
        HANG_UP => {
            let chosen = command.values_of("call");
            let Some(id) = chosen.first() else {
                if calls.is_empty() {
                    return Ok(AdminAction::Reply(respond(
                        CommandStatus::Completed,
                        vec![("info", "No calls in progress.".into())],
                        None,
                    )));
                }
                let options: Vec<(String, String)> = calls
                    .iter()
                    .map(|call| {
                        let label = format!(
                            "{} with {} ({})",
                            call.callee,
                            call.peer,
                            clock_duration(call.duration)
                        );
                        (label, call.id.clone())
                    })
                    .collect();
                let picker = field("call", "list-single", Some("Call"), &[], &options);
                return Ok(AdminAction::Reply(respond(
                    CommandStatus::Executing,
                    Vec::new(),
                    Some(form(
                        "form",
                        "Hang up a call",
                        Some("Pick the call to end. The caller hears that the call ended."),
                        vec![picker],
                    )),
                )));
            };
            let Some(call) = calls.iter().find(|call| &call.id == id) else {
                return Ok(AdminAction::Reply(respond(
                    CommandStatus::Completed,
                    vec![("warn", "That call has ended already.".into())],
                    None,
                )));
            };
            let note = format!("Hung up {} with {}.", call.callee, call.peer);
            Ok(AdminAction::HangUp(
                call.id.clone(),
                respond(CommandStatus::Completed, vec![("info", note)], None),
            ))
        }
        RELOAD => Ok(AdminAction::Reload),
        MAILBOXES => {
            let mailboxes = mailboxes();
            let rows: Vec<Vec<String>> = mailboxes
                .iter()
                .map(|m| vec![m.name.clone(), m.new.to_string(), m.saved.to_string()])
                .collect();
            let columns = [("mailbox", "Mailbox"), ("new", "New"), ("saved", "Saved")];
            let note = match mailboxes.len() {
                1 => "1 mailbox.".to_string(),
                n => format!("{n} mailboxes."),
            };
            Ok(AdminAction::Reply(respond(
                CommandStatus::Completed,
                vec![("info", note)],
                Some(table("Mailboxes", &columns, &rows)),
            )))
        }
        _ => Err(CommandError::Unknown),
    }
}

/// The answer to a reload: how many virtual JIDs the config now has, or its problems (the
/// running config is kept then).
pub fn reloaded(command: &Command, outcome: Result<usize, String>) -> CommandResponse {
    let note = match outcome {
        Ok(jids) => (
            "info",
            format!("Config reloaded: {jids} virtual JIDs. New calls use it; calls in progress keep theirs."),
        ),
        Err(problems) => (
            "error",
            format!("Config refused, the running one is kept:\n{problems}"),
        ),
    };
    respond(command, CommandStatus::Completed, vec![note], None)
}

fn respond(
    command: &Command,
    status: CommandStatus,
    notes: Vec<(&'static str, String)>,
    form: Option<minidom::Element>,
) -> CommandResponse {
    CommandResponse {
        node: command.node.clone(),
        session: command
            .session
            .clone()
            .unwrap_or_else(|| format!("{:x}", rand::random::<u64>())),
        status,
        notes,
        form,
    }
}

fn call_cells(call: &CallRow) -> Vec<String> {
    let unknown = || "-".to_string();
    vec![
        call.callee.clone(),
        call.peer.clone(),
        call.codec.map_or_else(unknown, str::to_string),
        clock_duration(call.duration),
        call.loss
            .map_or_else(unknown, |loss| format!("{:.1} %", loss * 100.0)),
        call.jitter_ms
            .map_or_else(unknown, |jitter| format!("{jitter:.1} ms")),
        call.round_trip_ms
            .map_or_else(unknown, |rtt| format!("{rtt:.0} ms")),
        call.path.clone().unwrap_or_else(unknown),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(node: &str, values: &[(&str, &str)]) -> Command {
        Command {
            node: node.into(),
            action: CommandAction::Execute,
            session: Some("s1".into()),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
        }
    }

    fn call() -> CallRow {
        CallRow {
            id: "7".into(),
            callee: "echo".into(),
            peer: "alice@example.org/phone".into(),
            codec: Some("opus"),
            duration: Duration::from_secs(75),
            loss: Some(0.025),
            jitter_ms: Some(3.25),
            round_trip_ms: Some(41.6),
            path: Some("host 192.0.2.1:10000 - srflx 198.51.100.7:4000".into()),
        }
    }

    fn reply(action: AdminAction) -> CommandResponse {
        match action {
            AdminAction::Reply(response) => response,
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn calls_are_listed_with_their_figures() {
        let response = reply(execute(&command(CALLS, &[]), &[call()], Vec::new).unwrap());
        assert_eq!(response.status, CommandStatus::Completed);
        assert_eq!(response.session, "s1");
        let text = String::from(&response.to_element());
        for cell in [
            "alice@example.org/phone",
            "opus",
            "1:15",
            "2.5 %",
            "3.2 ms",
            "42 ms",
            "srflx 198.51.100.7:4000",
        ] {
            assert!(text.contains(cell), "{cell} missing: {text}");
        }
    }

    #[test]
    fn hang_up_offers_the_calls_then_hangs_up_the_one_picked() {
        let form = reply(execute(&command(HANG_UP, &[]), &[call()], Vec::new).unwrap());
        assert_eq!(form.status, CommandStatus::Executing);
        assert!(String::from(&form.to_element()).contains("echo with alice@example.org/phone"));
        match execute(&command(HANG_UP, &[("call", "7")]), &[call()], Vec::new).unwrap() {
            AdminAction::HangUp(id, response) => {
                assert_eq!(id, "7");
                assert_eq!(response.status, CommandStatus::Completed);
            }
            other => panic!("{other:?}"),
        }
        // A call that ended meanwhile, or none at all.
        let gone =
            reply(execute(&command(HANG_UP, &[("call", "8")]), &[call()], Vec::new).unwrap());
        assert_eq!(gone.notes[0].0, "warn");
        let none = reply(execute(&command(HANG_UP, &[]), &[], Vec::new).unwrap());
        assert_eq!(none.status, CommandStatus::Completed);
    }

    #[test]
    fn mailboxes_reload_and_unknown_nodes() {
        let rows = || {
            vec![MailboxRow {
                name: "voicemail".into(),
                new: 2,
                saved: 1,
            }]
        };
        let response = reply(execute(&command(MAILBOXES, &[]), &[], rows).unwrap());
        assert!(String::from(&response.to_element()).contains("<value>voicemail</value>"));
        assert_eq!(
            execute(&command(RELOAD, &[]), &[], Vec::new).unwrap(),
            AdminAction::Reload
        );
        let refused = reloaded(&command(RELOAD, &[]), Err("media.port: bad".into()));
        assert_eq!(refused.notes[0].0, "error");
        assert_eq!(
            execute(&command("nope", &[]), &[], Vec::new),
            Err(CommandError::Unknown)
        );
    }
}
