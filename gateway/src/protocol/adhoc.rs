//! XEP-0050 ad-hoc commands (xmpp-parsers has no parser for them): the `<command/>` a client
//! sends, and the `<command/>` answered, with XEP-0004 forms built here since xmpp-parsers'
//! forms have no `<reported/>` tables.

use minidom::Element;

/// The ad-hoc commands namespace (also the disco node listing the commands).
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";

/// What the requester asks of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandAction {
    /// Start it, or go on with the default action.
    Execute,
    /// Go to the next stage.
    Next,
    /// Go to the previous stage.
    Prev,
    /// Finish with the data given.
    Complete,
    /// Stop.
    Cancel,
}

/// A `<command/>` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Which command.
    pub node: String,
    /// The action asked for.
    pub action: CommandAction,
    /// The session of a command in several stages.
    pub session: Option<String>,
    /// Submitted form values: (field, values).
    pub values: Vec<(String, Vec<String>)>,
}

impl Command {
    /// Reads a `<command/>` element.
    pub fn parse(element: &Element) -> Result<Self, String> {
        if !element.is("command", NS_COMMANDS) {
            return Err("not an ad-hoc command".into());
        }
        let node = element
            .attr("node")
            .filter(|n| !n.is_empty())
            .ok_or("a command needs a node")?
            .to_string();
        let action = match element.attr("action") {
            None | Some("execute") => CommandAction::Execute,
            Some("next") => CommandAction::Next,
            Some("prev") => CommandAction::Prev,
            Some("complete") => CommandAction::Complete,
            Some("cancel") => CommandAction::Cancel,
            Some(other) => return Err(format!("unknown action `{other}`")),
        };
        let values = element
            .get_child("x", NS_DATA)
            .filter(|x| x.attr("type") == Some("submit"))
            .map(|x| {
                x.children()
                    .filter(|f| f.is("field", NS_DATA))
                    .filter_map(|f| {
                        let var = f.attr("var")?.to_string();
                        let values = f
                            .children()
                            .filter(|v| v.is("value", NS_DATA))
                            .map(|v| v.text())
                            .collect();
                        Some((var, values))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            node,
            action,
            session: element.attr("sessionid").map(str::to_string),
            values,
        })
    }

    /// The values submitted for `field`.
    pub fn values_of(&self, field: &str) -> &[String] {
        self.values
            .iter()
            .find(|(var, _)| var == field)
            .map(|(_, values)| values.as_slice())
            .unwrap_or(&[])
    }
}

/// Where a command stands after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Waiting for the requester (a form to fill in).
    Executing,
    /// Done.
    Completed,
    /// Stopped.
    Canceled,
}

/// A `<command/>` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResponse {
    /// Which command.
    pub node: String,
    /// Its session.
    pub session: String,
    /// Where it stands.
    pub status: CommandStatus,
    /// Notes for the user: (`info`, `warn` or `error`, text).
    pub notes: Vec<(&'static str, String)>,
    /// A form (to fill in, or a result).
    pub form: Option<Element>,
}

impl CommandResponse {
    /// The `<command/>` element.
    pub fn to_element(&self) -> Element {
        let status = match self.status {
            CommandStatus::Executing => "executing",
            CommandStatus::Completed => "completed",
            CommandStatus::Canceled => "canceled",
        };
        let mut command = Element::builder("command", NS_COMMANDS)
            .attr(
                minidom::rxml::xml_ncname!("node").to_owned(),
                self.node.as_str(),
            )
            .attr(
                minidom::rxml::xml_ncname!("sessionid").to_owned(),
                self.session.as_str(),
            )
            .attr(minidom::rxml::xml_ncname!("status").to_owned(), status)
            .build();
        if self.status == CommandStatus::Executing {
            command.append_child(
                Element::builder("actions", NS_COMMANDS)
                    .attr(minidom::rxml::xml_ncname!("execute").to_owned(), "complete")
                    .append(Element::builder("complete", NS_COMMANDS).build())
                    .build(),
            );
        }
        for (type_, text) in &self.notes {
            command.append_child(
                Element::builder("note", NS_COMMANDS)
                    .attr(minidom::rxml::xml_ncname!("type").to_owned(), *type_)
                    .append(text.as_str())
                    .build(),
            );
        }
        if let Some(form) = &self.form {
            command.append_child(form.clone());
        }
        command
    }
}

/// disco#info of the command `node` named `name`.
pub fn command_info(node: &str, name: &str) -> xmpp_parsers::disco::DiscoInfoResult {
    xmpp_parsers::disco::DiscoInfoResult {
        node: Some(node.to_string()),
        identities: vec![xmpp_parsers::disco::Identity::new(
            "automation",
            "command-node",
            "en",
            name,
        )],
        features: [NS_COMMANDS, NS_DATA]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        extensions: Vec::new(),
    }
}

/// A form field: `var`, `type`, an optional label, values, and (label, value) options.
pub fn field(
    var: &str,
    type_: &str,
    label: Option<&str>,
    values: &[&str],
    options: &[(String, String)],
) -> Element {
    let mut field = Element::builder("field", NS_DATA)
        .attr(minidom::rxml::xml_ncname!("var").to_owned(), var)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), type_);
    if let Some(label) = label {
        field = field.attr(minidom::rxml::xml_ncname!("label").to_owned(), label);
    }
    let mut field = field.build();
    for (label, value) in options {
        field.append_child(
            Element::builder("option", NS_DATA)
                .attr(
                    minidom::rxml::xml_ncname!("label").to_owned(),
                    label.as_str(),
                )
                .append(
                    Element::builder("value", NS_DATA)
                        .append(value.as_str())
                        .build(),
                )
                .build(),
        );
    }
    for value in values {
        field.append_child(Element::builder("value", NS_DATA).append(*value).build());
    }
    field
}

/// A form of `type_` (`form` or `result`) with a title, optional instructions and fields.
pub fn form(type_: &str, title: &str, instructions: Option<&str>, fields: Vec<Element>) -> Element {
    let mut form = Element::builder("x", NS_DATA)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), type_)
        .append(Element::builder("title", NS_DATA).append(title).build())
        .build();
    if let Some(instructions) = instructions {
        form.append_child(
            Element::builder("instructions", NS_DATA)
                .append(instructions)
                .build(),
        );
    }
    for field in fields {
        form.append_child(field);
    }
    form
}

/// A result table: `columns` as (var, label), one item per row of values.
pub fn table(title: &str, columns: &[(&str, &str)], rows: &[Vec<String>]) -> Element {
    let mut reported = Element::builder("reported", NS_DATA).build();
    for (var, label) in columns {
        reported.append_child(field(var, "text-single", Some(label), &[], &[]));
    }
    let mut table = form("result", title, None, vec![reported]);
    for row in rows {
        let mut item = Element::builder("item", NS_DATA).build();
        for ((var, _), value) in columns.iter().zip(row) {
            let mut cell = Element::builder("field", NS_DATA)
                .attr(minidom::rxml::xml_ncname!("var").to_owned(), *var)
                .build();
            cell.append_child(
                Element::builder("value", NS_DATA)
                    .append(value.as_str())
                    .build(),
            );
            item.append_child(cell);
        }
        table.append_child(item);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_submitted_values() {
        let element: Element =
            "<command xmlns='http://jabber.org/protocol/commands' node='delete' \
             sessionid='s1' action='complete'><x xmlns='jabber:x:data' type='submit'>\
             <field var='messages'><value>a</value><value>b</value></field></x></command>"
                .parse()
                .unwrap();
        let command = Command::parse(&element).unwrap();
        assert_eq!(command.node, "delete");
        assert_eq!(command.action, CommandAction::Complete);
        assert_eq!(command.session.as_deref(), Some("s1"));
        assert_eq!(command.values_of("messages"), ["a", "b"]);
        assert!(command.values_of("other").is_empty());
        for bad in [
            "<command xmlns='http://jabber.org/protocol/commands'/>",
            "<command xmlns='http://jabber.org/protocol/commands' node='x' action='dance'/>",
            "<command xmlns='urn:other' node='x'/>",
        ] {
            assert!(Command::parse(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_carry_status_actions_notes_and_forms() {
        let response = CommandResponse {
            node: "delete".into(),
            session: "s1".into(),
            status: CommandStatus::Executing,
            notes: vec![("info", "pick".into())],
            form: Some(form(
                "form",
                "Delete",
                None,
                vec![field(
                    "messages",
                    "list-multi",
                    None,
                    &[],
                    &[("one".into(), "1".into())],
                )],
            )),
        };
        let xml = String::from(&response.to_element());
        for part in [
            "status='executing'",
            "<complete",
            "pick",
            "list-multi",
            "label='one'",
        ] {
            assert!(xml.contains(part), "{part} missing from {xml}");
        }
        let rows = vec![vec!["a@b".to_string(), "0:42".to_string()]];
        let xml = String::from(&table(
            "Messages",
            &[("from", "From"), ("length", "Length")],
            &rows,
        ));
        assert!(
            xml.contains("<reported") && xml.contains("<item") && xml.contains("0:42"),
            "{xml}"
        );
    }
}
