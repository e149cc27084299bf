//! A mailbox's owner calling it: the classic voicemail menu, with Asterisk's keys.
//!
//! "You have three new messages and one saved message. Press 1 to listen to your messages."
//! While a message plays or after it: 5 hears it again, 6 the next, 4 the previous, 7 deletes
//! it, `#` hangs up. A key stops the prompt playing (barge-in). New messages come first, oldest
//! first, then saved (heard) ones; a message counts as heard once it has played.
//!
//! The mailbox's files are read, decoded and changed off the call ([`off_the_call`]): the
//! menu waits (in silence) for the list of messages, and a message plays once decoded.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::player::Player;
use crate::endpoint::{off_the_call, EndpointEvent, Outgoing};
use crate::mailbox::{Mailboxes, MessageInfo};
use crate::media::dtmf::Digit;
use crate::prompt::system::number;

/// One packet time.
const TICK: Duration = Duration::from_millis(20);
/// How long the menu waits for a key after its prompt.
const KEY_TIMEOUT: Duration = Duration::from_secs(8);
/// Prompts repeated without a key before the call ends.
const MAX_REPEATS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Menu {
    /// "Press 1 to listen to your messages."
    Main,
    /// A message (by index) is playing or was just played.
    Message(usize),
    /// Saying goodbye.
    Closing,
    /// Hung up.
    Done,
}

/// The owner's side of a mailbox.
pub struct OwnerMenu {
    voicemail: Arc<Mailboxes>,
    mailbox: String,
    player: Player,
    /// The list of messages, while it is being read.
    listing: Option<Receiver<Vec<MessageInfo>>>,
    messages: Vec<MessageInfo>,
    menu: Menu,
    /// Packet times since the last prompt ended, while waiting for a key.
    idle_ticks: u32,
    repeats: u32,
    events: VecDeque<EndpointEvent>,
}

impl OwnerMenu {
    /// An owner of `mailbox`, with prompts played by `player`.
    pub fn new(voicemail: Arc<Mailboxes>, mailbox: String, player: Player) -> Self {
        Self {
            voicemail,
            mailbox,
            player,
            listing: None,
            messages: Vec::new(),
            menu: Menu::Main,
            idle_ticks: 0,
            repeats: 0,
            events: VecDeque::new(),
        }
    }

    /// The call is connected: the messages are listed, then counted to the owner.
    pub fn start(&mut self) {
        let (voicemail, mailbox) = (self.voicemail.clone(), self.mailbox.clone());
        self.listing = Some(off_the_call(move || voicemail.messages(&mailbox)));
    }

    /// Says how many messages there are.
    fn announce(&mut self, messages: Vec<MessageInfo>) {
        let (mut new, heard): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| !m.heard);
        let saved = heard.len();
        new.extend(heard);
        let fresh = new.len() - saved;
        self.messages = new;
        tracing::info!(mailbox = %self.mailbox, new = fresh, saved, "owner called the mailbox");
        if self.messages.is_empty() {
            self.player.queue("builtin:vm-no-messages");
            self.goodbye();
            return;
        }
        self.player.queue("builtin:vm-you-have");
        self.player.queue(&number(fresh));
        self.player.queue(if fresh == 1 {
            "builtin:vm-new-message"
        } else {
            "builtin:vm-new-messages"
        });
        if saved > 0 {
            self.player.queue("builtin:vm-and");
            self.player.queue(&number(saved));
            self.player.queue(if saved == 1 {
                "builtin:vm-saved-message"
            } else {
                "builtin:vm-saved-messages"
            });
        }
        self.player.queue("builtin:vm-main-menu");
        self.menu = Menu::Main;
    }

    /// A key from the owner.
    pub fn on_dtmf(&mut self, digit: Digit) {
        let key = digit.as_char();
        tracing::debug!(%key, menu = ?self.menu, "owner pressed a key");
        self.idle_ticks = 0;
        self.repeats = 0;
        match (self.menu, key) {
            (Menu::Closing | Menu::Done, _) => {}
            (_, '#') => {
                self.player.stop();
                self.goodbye();
            }
            (Menu::Main, '1') => self.play_message(0),
            (Menu::Message(i), '5') => self.play_message(i),
            (Menu::Message(i), '6') => self.next(i + 1),
            (Menu::Message(0), '4') => {
                self.player.play("builtin:vm-first");
                self.play_message_queued(0);
            }
            (Menu::Message(i), '4') => self.play_message(i - 1),
            (Menu::Message(i), '7') => self.delete(i),
            _ => {}
        }
    }

    /// The next packet time: waits for the list, for keys, repeats the menu, then plays.
    pub fn next_frame(&mut self) -> Outgoing<'_> {
        if let Some(listing) = &self.listing {
            match listing.try_recv() {
                Ok(messages) => {
                    self.listing = None;
                    self.announce(messages);
                }
                Err(TryRecvError::Empty) => return Outgoing::Silence,
                Err(TryRecvError::Disconnected) => {
                    self.listing = None;
                    self.announce(Vec::new());
                }
            }
        }
        if !self.player.is_busy() {
            match self.menu {
                Menu::Closing => {
                    self.events.push_back(EndpointEvent::HangUp);
                    self.menu = Menu::Done;
                }
                Menu::Done => {}
                menu => {
                    self.idle_ticks += 1;
                    if TICK * self.idle_ticks >= KEY_TIMEOUT {
                        self.idle_ticks = 0;
                        self.repeats += 1;
                        if self.repeats > MAX_REPEATS {
                            self.goodbye();
                        } else if menu == Menu::Main {
                            self.player.queue("builtin:vm-main-menu");
                        } else {
                            self.player.queue("builtin:vm-after-message");
                        }
                    }
                }
            }
        }
        self.player.next_frame()
    }

    /// A request to the call, if any.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    fn play_message(&mut self, index: usize) {
        self.player.stop();
        self.play_message_queued(index);
    }

    /// Queues "Message N", the message and the options after it; marks it heard.
    fn play_message_queued(&mut self, index: usize) {
        let Some(message) = self.messages.get_mut(index) else {
            return;
        };
        self.menu = Menu::Message(index);
        self.player.queue("builtin:vm-message");
        self.player.queue(&number(index + 1));
        let (voicemail, playing) = (self.voicemail.clone(), message.clone());
        self.player
            .queue_samples(off_the_call(move || load_audio(&voicemail, &playing)));
        self.player.queue("builtin:vm-after-message");
        if !message.heard {
            message.heard = true;
            let (voicemail, heard) = (self.voicemail.clone(), message.clone());
            off_the_call(move || {
                if let Err(e) = voicemail.update(&heard) {
                    tracing::warn!(id = %heard.id, error = %e, "cannot mark the message heard");
                }
            });
        }
    }

    fn next(&mut self, index: usize) {
        if index < self.messages.len() {
            self.play_message(index);
        } else {
            self.player.play("builtin:vm-no-more");
            self.player.queue("builtin:vm-main-menu");
            self.menu = Menu::Main;
        }
    }

    fn delete(&mut self, index: usize) {
        let message = self.messages.remove(index);
        self.player.stop();
        self.player.queue("builtin:vm-deleted");
        let voicemail = self.voicemail.clone();
        off_the_call(move || match voicemail.delete(&message) {
            Ok(()) => tracing::info!(id = %message.id, "owner deleted a message"),
            Err(e) => tracing::warn!(id = %message.id, error = %e, "cannot delete a message"),
        });
        if index < self.messages.len() {
            self.play_message_queued(index);
        } else {
            self.player.queue("builtin:vm-no-more");
            self.player.queue("builtin:vm-main-menu");
            self.menu = Menu::Main;
        }
    }

    fn goodbye(&mut self) {
        self.player.queue("builtin:vm-goodbye");
        self.menu = Menu::Closing;
    }
}

/// A message's audio, decoded to 48 kHz mono.
fn load_audio(voicemail: &Mailboxes, message: &MessageInfo) -> Option<Arc<[i16]>> {
    let decoded = voicemail.recording_path(message).and_then(|path| {
        let bytes = std::fs::read(path).ok()?;
        let seconds = message.duration().as_secs() + 60;
        crate::prompt::decode::decode(&bytes, Some(message.format.extension()), seconds).ok()
    });
    if decoded.is_none() {
        tracing::warn!(id = %message.id, "cannot play a message");
    }
    decoded.map(Arc::from)
}
