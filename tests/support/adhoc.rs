//! XEP-0050 ad-hoc commands as a client sends them, and the tables they answer with.

use minidom::Element;

/// An ad-hoc command: `execute`, or `complete` with the values of `field` picked.
pub fn command(node: &str, session: Option<&str>, field: &str, picked: &[&str]) -> Element {
    let action = if picked.is_empty() {
        "execute"
    } else {
        "complete"
    };
    let mut command = Element::builder("command", NS_COMMANDS)
        .attr(minidom::rxml::xml_ncname!("node").to_owned(), node)
        .attr(minidom::rxml::xml_ncname!("action").to_owned(), action);
    if let Some(session) = session {
        command = command.attr(minidom::rxml::xml_ncname!("sessionid").to_owned(), session);
    }
    let mut command = command.build();
    if !picked.is_empty() {
        let mut field = Element::builder("field", NS_DATA)
            .attr(minidom::rxml::xml_ncname!("var").to_owned(), field)
            .build();
        for id in picked {
            field.append_child(Element::builder("value", NS_DATA).append(*id).build());
        }
        command.append_child(
            Element::builder("x", NS_DATA)
                .attr(minidom::rxml::xml_ncname!("type").to_owned(), "submit")
                .append(field)
                .build(),
        );
    }
    command
}

pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
pub const NS_DATA: &str = "jabber:x:data";

/// The rows of a result table: one `(var, value)` list per row.
pub fn listed(answer: &Element) -> Vec<Vec<(String, String)>> {
    answer
        .get_child("command", NS_COMMANDS)
        .and_then(|c| c.get_child("x", NS_DATA))
        .map(|x| {
            x.children()
                .filter(|i| i.is("item", NS_DATA))
                .map(|item| {
                    item.children()
                        .map(|f| {
                            let value = f
                                .get_child("value", NS_DATA)
                                .map(|v| v.text())
                                .unwrap_or_default();
                            (f.attr("var").unwrap_or_default().to_string(), value)
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The session of a command's form and the value of its first field's first option.
pub fn first_option(answer: &Element) -> (String, String) {
    let command = answer.get_child("command", NS_COMMANDS).expect("command");
    let session = command.attr("sessionid").expect("session").to_string();
    let option = command
        .get_child("x", NS_DATA)
        .and_then(|x| x.get_child("field", NS_DATA))
        .and_then(|f| f.get_child("option", NS_DATA))
        .and_then(|o| o.get_child("value", NS_DATA))
        .map(|v| v.text())
        .expect("an option");
    (session, option)
}
