//! The admin commands on the component domain (`[admin] jids`), from a real client through
//! Prosody and ejabberd: an admin lists the calls in progress with their figures, hangs one
//! up, sees the mailboxes and reloads the config file; anyone else sees no commands and is
//! refused.

use std::time::Duration;

use minidom::Element;

use crate::support::adhoc::{command, first_option, listed, NS_COMMANDS};
use crate::support::caller::{CallSetup, Exchange, TestCaller};
use crate::support::client::XmppClient;
use crate::support::servers::{Kind, Server};
use crate::support::{wait_attached, within, GatewayProcess, TempDir};

const DOMAIN: &str = "gw.localhost";

/// The command nodes `client` is offered on the component domain.
async fn offered(client: &mut XmppClient) -> Vec<String> {
    let query = Element::builder("query", "http://jabber.org/protocol/disco#items")
        .attr(minidom::rxml::xml_ncname!("node").to_owned(), NS_COMMANDS)
        .build();
    let answer = client.iq(DOMAIN, "get", query).await;
    answer
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .map(|q| {
            q.children()
                .filter_map(|item| item.attr("node").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The notes of a command's answer: (type, text).
fn notes(answer: &Element) -> Vec<(String, String)> {
    answer
        .get_child("command", NS_COMMANDS)
        .map(|c| {
            c.children()
                .filter(|n| n.name() == "note")
                .map(|n| (n.attr("type").unwrap_or_default().to_string(), n.text()))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `var` in a table row.
fn cell<'a>(row: &'a [(String, String)], var: &str) -> &'a str {
    row.iter()
        .find(|(v, _)| v == var)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

async fn admin_commands(kind: Kind) {
    let server = Server::start(kind);
    let data = TempDir::new("gw-admin");
    let gateway = GatewayProcess::start(
        &server,
        &data,
        "",
        &[("GATEWAY_ADMIN_JIDS", "alice@localhost")],
        None,
    );
    let mut alice = XmppClient::login(server.c2s_port, "alice", "admin").await;
    let mut bob = XmppClient::login(server.c2s_port, "bob", "desk").await;
    let mut carol = TestCaller::new(server.c2s_port, "carol").await;
    wait_attached(&mut carol.client).await;

    // Only the admin is offered the commands; anyone else is refused them.
    assert_eq!(
        offered(&mut alice).await,
        ["calls", "hang-up", "reload", "mailboxes"]
    );
    assert!(offered(&mut bob).await.is_empty());
    let refused = bob.iq(DOMAIN, "set", command("calls", None, "", &[])).await;
    assert_eq!(refused.attr("type"), Some("error"), "{refused:?}");
    assert!(String::from(&refused).contains("forbidden"), "{refused:?}");

    // A call in progress, with its figures.
    let mut call = carol
        .call("echo@gw.localhost", &CallSetup::browser())
        .await
        .expect("call");
    let talking = tokio::spawn(async move {
        let received = carol.exchange(&mut call, &Exchange::tone(20, 440.0)).await;
        (carol, received)
    });
    // The figures come with the RTCP reports (ours go every 5 s from SRTP up; the caller
    // answers each at once): asked every half second until they are there.
    let mut rows = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = alice
            .iq(DOMAIN, "set", command("calls", None, "", &[]))
            .await;
        rows = listed(&list);
        assert_eq!(rows.len(), 1, "{list:?}");
        if cell(&rows[0], "rtt").ends_with(" ms") {
            break;
        }
    }
    let row = &rows[0];
    eprintln!("the call as an admin sees it: {row:?}");
    assert_eq!(cell(row, "jid"), "echo");
    assert!(cell(row, "peer").starts_with("carol@localhost/"), "{row:?}");
    assert_eq!(cell(row, "codec"), "opus");
    assert!(cell(row, "duration").starts_with("0:"), "{row:?}");
    assert!(cell(row, "loss").ends_with('%'), "{row:?}");
    assert!(cell(row, "jitter").ends_with("ms"), "{row:?}");
    // The test caller answers our RTCP sender reports, so a round trip is known.
    assert!(cell(row, "rtt").ends_with(" ms"), "{row:?}");
    assert!(cell(row, "path").contains("host 127.0.0.1:"), "{row:?}");

    // Hang it up: a form to pick the call, then the call ends for the caller.
    let form = alice
        .iq(DOMAIN, "set", command("hang-up", None, "", &[]))
        .await;
    let (session, call_id) = first_option(&form);
    let done = alice
        .iq(
            DOMAIN,
            "set",
            command("hang-up", Some(&session), "call", &[&call_id]),
        )
        .await;
    assert!(
        notes(&done)[0]
            .1
            .starts_with("Hung up echo with carol@localhost"),
        "{done:?}"
    );
    let (carol, received) = tokio::time::timeout(Duration::from_secs(10), talking)
        .await
        .expect("the call ended")
        .expect("caller task");
    assert_eq!(received.terminated.as_deref(), Some("success"));
    let list = alice
        .iq(DOMAIN, "set", command("calls", None, "", &[]))
        .await;
    assert!(listed(&list).is_empty(), "{list:?}");

    // The mailboxes with their counts.
    let mailboxes = alice
        .iq(DOMAIN, "set", command("mailboxes", None, "", &[]))
        .await;
    let rows = listed(&mailboxes);
    let voicemail = rows
        .iter()
        .find(|row| cell(row, "mailbox") == "voicemail")
        .expect("the example's mailbox");
    assert_eq!(
        (cell(voicemail, "new"), cell(voicemail, "saved")),
        ("0", "0")
    );

    // Reload: a new virtual JID comes; a broken config is refused with its problem.
    gateway.rewrite_config("[endpoints.added]\nkind = \"echo\"\n");
    let reloaded = alice
        .iq(DOMAIN, "set", command("reload", None, "", &[]))
        .await;
    let note = &notes(&reloaded)[0];
    assert_eq!(note.0, "info", "{reloaded:?}");
    assert!(note.1.starts_with("Config reloaded"), "{note:?}");
    let info = Element::builder("query", "http://jabber.org/protocol/disco#info").build();
    let added = alice.iq("added@gw.localhost", "get", info).await;
    assert_eq!(added.attr("type"), Some("result"), "{added:?}");
    gateway.rewrite_config("[endpoints.broken]\nkind = \"no such kind\"\n");
    let refused = alice
        .iq(DOMAIN, "set", command("reload", None, "", &[]))
        .await;
    let note = &notes(&refused)[0];
    assert_eq!(note.0, "error", "{refused:?}");
    assert!(note.1.contains("endpoints.broken"), "{note:?}");

    carol.close().await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_hang_up_and_reload_on_prosody() {
    within(120, admin_commands(Kind::Prosody)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_hang_up_and_reload_on_ejabberd() {
    within(120, admin_commands(Kind::Ejabberd)).await;
}
