//! A caller leaving a message: greeting, beep, recording until they hang up, press `#`, fall
//! silent or reach the mailbox's limit; then "saved" and goodbye. `#` during the greeting skips
//! to the beep, as in Asterisk. With follow-me, the owner is rung first (the caller hears
//! ringback) and the greeting plays only when nobody answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RingStrategy;
use crate::config::{MailboxConfig, BEEP_PROMPT};
use crate::endpoint::player::Player;
use crate::endpoint::{CallInfo, DialPlan, EndpointEvent, Incoming, Outgoing};
use crate::mailbox::{Ending, Finished, Mailboxes, Recording, StartError};
use crate::media::dtmf::Digit;
use crate::types::EndReason;

/// One packet time.
const TICK: Duration = Duration::from_millis(20);

enum State {
    /// Before the call is connected.
    Waiting,
    /// Follow-me: the owner is being rung.
    Ringing,
    Greeting,
    Beep,
    Recording {
        recording: Box<Recording>,
        /// Packet times since recording started.
        ticks: u32,
        /// Packet times since the caller last made a sound.
        quiet_ticks: u32,
    },
    /// Playing a last prompt; then the call ends this way.
    Closing(EndpointEvent),
    Done,
}

/// A caller's side of a mailbox.
pub struct LeaveMessage {
    voicemail: Arc<Mailboxes>,
    mailbox: String,
    config: Arc<MailboxConfig>,
    player: Player,
    caller: String,
    info: Option<CallInfo>,
    state: State,
    events: VecDeque<EndpointEvent>,
}

impl LeaveMessage {
    /// A caller of `mailbox`, with prompts played by `player`.
    pub fn new(
        voicemail: Arc<Mailboxes>,
        mailbox: String,
        config: Arc<MailboxConfig>,
        player: Player,
    ) -> Self {
        Self {
            voicemail,
            mailbox,
            config,
            player,
            caller: String::new(),
            info: None,
            state: State::Waiting,
            events: VecDeque::new(),
        }
    }

    /// The call is connected: the greeting plays.
    pub fn start(&mut self, call: &CallInfo) {
        self.caller = call.peer.to_string();
        self.info = Some(call.clone());
        let full = self
            .voicemail
            .mailbox(&self.mailbox)
            .is_some_and(|m| m.is_full());
        if full {
            tracing::info!(mailbox = %self.mailbox, "mailbox full: no message taken");
            self.close(
                "builtin:vm-full",
                EndpointEvent::Fail(EndReason::MailboxFull),
            );
            return;
        }
        if let Some(follow_me) = &self.config.follow_me {
            tracing::info!(mailbox = %self.mailbox, "follow-me: ringing before the greeting");
            self.events.push_back(EndpointEvent::Connect(DialPlan {
                targets: crate::endpoint::jids(&self.config.follow_me_targets()),
                ring_all: follow_me.ring == RingStrategy::All,
                ring_timeout: follow_me.ring_timeout.0,
            }));
            self.player.play(&follow_me.ringback);
            self.state = State::Ringing;
            return;
        }
        self.player.play(&self.config.greeting);
        self.state = State::Greeting;
    }

    /// Follow-me rang nobody who answered: the caller leaves a message.
    pub fn on_connect_failed(&mut self) {
        if matches!(self.state, State::Ringing) {
            self.player.play(&self.config.greeting);
            self.state = State::Greeting;
        }
    }

    /// Audio from the caller: recorded while recording.
    pub fn on_audio(&mut self, audio: Incoming<'_>) {
        let State::Recording {
            recording,
            quiet_ticks,
            ..
        } = &mut self.state
        else {
            return;
        };
        let Incoming::Audio {
            payload, timestamp, ..
        } = audio
        else {
            return;
        };
        match recording.packet(timestamp, payload) {
            Ok(true) => *quiet_ticks = 0,
            Ok(false) => {}
            Err(_) => self.stop(Ending::StorageFailed),
        }
    }

    /// A key: `#` skips the greeting or ends the message.
    pub fn on_dtmf(&mut self, digit: Digit) {
        if digit.as_char() != '#' || !self.config.hash_ends {
            return;
        }
        match self.state {
            State::Greeting => self.beep(),
            State::Recording { .. } => self.stop(Ending::Key),
            _ => {}
        }
    }

    /// The next packet time: moves the flow on, then plays.
    pub fn next_frame(&mut self) -> Outgoing<'_> {
        match &mut self.state {
            State::Ringing if !self.player.is_busy() => {
                if let Some(follow_me) = &self.config.follow_me {
                    self.player.play(&follow_me.ringback);
                }
            }
            State::Greeting if !self.player.is_busy() => self.beep(),
            State::Beep if !self.player.is_busy() => self.record(),
            State::Recording {
                recording,
                ticks,
                quiet_ticks,
            } => {
                *ticks += 1;
                *quiet_ticks += 1;
                let silence = self.config.silence_timeout.0;
                if TICK * *ticks >= self.config.max_length.0
                    || recording.duration() >= self.config.max_length.0
                {
                    self.stop(Ending::MaxLength);
                } else if !silence.is_zero() && TICK * *quiet_ticks >= silence {
                    self.stop(Ending::Silence);
                }
            }
            State::Closing(_) if !self.player.is_busy() => {
                if let State::Closing(event) = std::mem::replace(&mut self.state, State::Done) {
                    self.events.push_back(event);
                }
            }
            _ => {}
        }
        self.player.next_frame()
    }

    /// A request to the call, if any.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The call ended for `reason`: a recording in progress is kept, saying how.
    pub fn on_end(&mut self, reason: EndReason) {
        if let State::Recording { recording, .. } = std::mem::replace(&mut self.state, State::Done)
        {
            recording.finish(Ending::of_call_end(reason));
        }
    }

    fn beep(&mut self) {
        if self.config.beep {
            self.player.play(BEEP_PROMPT);
            self.state = State::Beep;
        } else {
            self.player.stop();
            self.record();
        }
    }

    fn record(&mut self) {
        let codec = self.info.as_ref().map(|i| i.codec);
        let started = match codec {
            Some(codec) => self
                .voicemail
                .start_recording(&self.mailbox, &self.caller, codec),
            None => return,
        };
        match started {
            Ok(recording) => {
                tracing::info!(mailbox = %self.mailbox, "recording");
                self.state = State::Recording {
                    recording: Box::new(recording),
                    ticks: 0,
                    quiet_ticks: 0,
                };
            }
            Err(StartError::Full) => {
                self.close(
                    "builtin:vm-full",
                    EndpointEvent::Fail(EndReason::MailboxFull),
                );
            }
            Err(StartError::Storage(e)) => {
                tracing::warn!(mailbox = %self.mailbox, error = %e, "cannot start a recording");
                self.close(
                    "builtin:vm-storage-error",
                    EndpointEvent::Fail(EndReason::StorageFailed),
                );
            }
        }
    }

    /// Ends the recording and says how it went.
    fn stop(&mut self, ending: Ending) {
        let State::Recording { recording, .. } = std::mem::replace(&mut self.state, State::Done)
        else {
            return;
        };
        match (ending, recording.finish(ending)) {
            (Ending::StorageFailed, _) | (_, Finished::StorageFailed) => self.close(
                "builtin:vm-storage-error",
                EndpointEvent::Fail(EndReason::StorageFailed),
            ),
            (_, Finished::Kept) => self.close("builtin:vm-saved", EndpointEvent::HangUp),
            (_, Finished::TooShort) => self.close("builtin:vm-too-short", EndpointEvent::HangUp),
        }
    }

    fn close(&mut self, prompt: &str, then: EndpointEvent) {
        self.player.play(prompt);
        self.state = State::Closing(then);
    }
}
