//! The voicemail endpoint driven packet time by packet time, with messages on a real disk.

use std::sync::Arc;

use bytes::Bytes;

use super::VoicemailEndpoint;
use crate::config::Config;
use crate::endpoint::{CallInfo, Endpoint, EndpointEvent, Incoming, Outgoing};
use crate::mailbox::{Ending, Mailboxes};
use crate::media::dtmf::Digit;
use crate::types::Codec;
use crate::types::EndReason;

struct Setup {
    voicemail: Arc<Mailboxes>,
    prompts: Arc<crate::prompt::PromptLibrary>,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(mailbox: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "jg-vm-endpoint-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let text = format!(
        "[xmpp]\ndomain = \"gw.test\"\nsecret = \"s\"\n[storage]\ndata_dir = \"{}\"\n\
         [endpoints.vm]\nkind = \"voicemail\"\nowners = [\"owner@test\"]\n{mailbox}",
        dir.display()
    );
    let config = Config::from_toml_str(&text, Vec::new(), &crate::endpoint::KINDS).unwrap();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (voicemail, _queue) = Mailboxes::open(&config, metrics).unwrap();
    let prompts = Arc::new(crate::prompt::PromptLibrary::for_config(&config).unwrap());
    Setup {
        voicemail,
        prompts,
        dir,
    }
}

impl Setup {
    /// The mailbox's messages once `count` are there (each recording's writer thread finishes
    /// it), waiting at most 5 s.
    fn messages(&self, count: usize) -> Vec<crate::mailbox::MessageInfo> {
        for _ in 0..500 {
            let messages = self.voicemail.messages("vm");
            if messages.len() >= count {
                return messages;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.voicemail.messages("vm")
    }

    fn call(&self, peer: &str) -> VoicemailEndpoint {
        let peer = jid::FullJid::new(peer).unwrap();
        let mailbox = self.voicemail.mailbox("vm").unwrap();
        let mut endpoint = VoicemailEndpoint::new(
            self.voicemail.clone(),
            "vm",
            mailbox.config.clone(),
            self.prompts.clone(),
            &peer,
            Codec::Pcmu,
        );
        endpoint.start(&CallInfo {
            peer,
            codec: Codec::Pcmu,
        });
        endpoint
    }
}

/// Runs `ticks` packet times, sending a loud (or silent) 20 ms PCMU packet each; returns the
/// events and how many frames played sound.
fn run(
    endpoint: &mut VoicemailEndpoint,
    ticks: u32,
    timestamp: &mut u32,
    loud: bool,
) -> (Vec<EndpointEvent>, usize) {
    let mut events = Vec::new();
    let mut sounding = 0;
    // µ-law 0x80 is near full scale, 0xFF silence.
    let payload = Bytes::from(vec![if loud { 0x80 } else { 0xFF }; 160]);
    for _ in 0..ticks {
        endpoint.on_audio(Incoming::Audio {
            payload: &payload,
            timestamp: *timestamp,
            duration: 960,
            pcm: None,
        });
        *timestamp += 160;
        if !matches!(endpoint.next_frame(), Outgoing::Silence) {
            sounding += 1;
        }
        while let Some(event) = endpoint.poll_event() {
            events.push(event);
        }
    }
    (events, sounding)
}

#[test]
fn hash_skips_the_greeting_and_ends_the_message() {
    let setup = setup("greeting = \"tone:500:5s\"\nbeep = true\n");
    let mut call = setup.call("caller@test/phone");
    let mut ts = 0;
    let (events, sounding) = run(&mut call, 10, &mut ts, true);
    assert!(events.is_empty());
    assert_eq!(sounding, 10, "the greeting plays");
    call.on_dtmf(Digit::from_char('#').unwrap());
    // The beep (250 ms), then 2 s of message, then # again.
    run(&mut call, 13, &mut ts, true);
    run(&mut call, 100, &mut ts, true);
    call.on_dtmf(Digit::from_char('#').unwrap());
    let (events, _) = run(&mut call, 400, &mut ts, true);
    assert_eq!(events, [EndpointEvent::HangUp], "saved, goodbye");
    let messages = setup.messages(1);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].ending, Ending::Key);
    let seconds = messages[0].duration_ms as f64 / 1000.0;
    assert!((seconds - 2.0).abs() < 0.1, "{seconds}");
}

#[test]
fn a_recording_keeps_how_its_call_really_ended() {
    use crate::types::EndReason;
    let setup = setup("greeting = \"silence:20ms\"\nbeep = false\n");
    let cases = [
        (
            EndReason::PeerHungUp(crate::protocol::jingle::Reason::Success),
            Ending::HungUp,
        ),
        (EndReason::ConsentLost, Ending::ConnectionLost),
        (EndReason::HungUpByAdmin, Ending::HungUpByAdmin),
        (EndReason::MaxDuration, Ending::MaxDuration),
        (EndReason::Shutdown, Ending::Interrupted),
        (EndReason::MediaError, Ending::CallFailed),
    ];
    for (reason, _) in &cases {
        let mut call = setup.call("caller@test/phone");
        let mut ts = 0;
        run(&mut call, 100, &mut ts, true);
        call.on_end(*reason);
        drop(call);
    }
    let mut endings: Vec<_> = setup
        .messages(cases.len())
        .into_iter()
        .map(|m| m.ending)
        .collect();
    let mut expected: Vec<_> = cases.iter().map(|(_, ending)| *ending).collect();
    let order = |e: &Ending| format!("{e:?}");
    endings.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(endings, expected);
}

#[test]
fn silence_and_max_length_end_the_message() {
    let setup = setup(
        "greeting = \"silence:20ms\"\nbeep = false\nsilence_timeout = \"1s\"\nmax_length = \"3s\"\n",
    );
    let mut call = setup.call("caller@test/phone");
    let mut ts = 0;
    run(&mut call, 60, &mut ts, true);
    let (events, _) = run(&mut call, 300, &mut ts, false);
    assert_eq!(events, [EndpointEvent::HangUp]);
    let mut call = setup.call("caller@test/phone");
    let (events, _) = run(&mut call, 400, &mut ts, true);
    assert_eq!(events, [EndpointEvent::HangUp]);
    let endings: Vec<Ending> = setup.messages(2).iter().map(|m| m.ending).collect();
    assert_eq!(endings, [Ending::Silence, Ending::MaxLength]);
}

#[test]
fn a_full_mailbox_says_so_and_ends_with_a_reason() {
    let setup = setup("greeting = \"silence:20ms\"\nbeep = false\nmax_messages = 1\n");
    let mut call = setup.call("caller@test/phone");
    let mut ts = 0;
    run(&mut call, 100, &mut ts, true);
    drop(call); // The caller hangs up: the message is kept.
    assert_eq!(setup.messages(1).len(), 1);
    let mut call = setup.call("other@test/phone");
    let (events, sounding) = run(&mut call, 400, &mut ts, true);
    assert_eq!(events, [EndpointEvent::Fail(EndReason::MailboxFull)]);
    assert!(sounding > 100, "the caller is told");
    assert_eq!(setup.voicemail.messages("vm").len(), 1);
}

#[test]
fn the_owner_hears_new_messages_first_and_deletes() {
    let setup = setup("greeting = \"silence:20ms\"\nbeep = false\n");
    let mut ts = 0;
    for _ in 0..2 {
        let mut call = setup.call("caller@test/phone");
        run(&mut call, 80, &mut ts, true);
    }
    let mut first = setup.messages(2)[0].clone();
    first.heard = true;
    setup.voicemail.update(&first).unwrap();
    let mut owner = setup.call("owner@test/laptop");
    // The list is read off the call: the count is said once it is in.
    let mut said = 0;
    for _ in 0..500 {
        said += run(&mut owner, 1, &mut ts, false).1;
        if said > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(said > 0, "the owner hears how many messages there are");
    owner.on_dtmf(Digit::from_char('1').unwrap());
    run(&mut owner, 300, &mut ts, false);
    owner.on_dtmf(Digit::from_char('7').unwrap());
    run(&mut owner, 10, &mut ts, false);
    let mut left = setup.voicemail.messages("vm");
    for _ in 0..500 {
        if left.len() < 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = setup.voicemail.messages("vm");
    }
    assert_eq!(left.len(), 1, "one deleted");
    assert_eq!(
        left[0].id, first.id,
        "the new message played (and was deleted) first"
    );
    owner.on_dtmf(Digit::from_char('#').unwrap());
    let (events, _) = run(&mut owner, 200, &mut ts, false);
    assert_eq!(events, [EndpointEvent::HangUp]);
}
