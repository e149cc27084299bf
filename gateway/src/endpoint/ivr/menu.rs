//! The menu engine, sans-IO: key presses, prompt ends and 20 ms ticks in, commands out (play,
//! stop, hang up, transfer, send a message). Time is counted in ticks, so tests run it without a
//! clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::pattern::{Match, Pattern};
use crate::config::{ActionConfig, IvrConfig, MenuConfig, RingStrategy};
use crate::endpoint::DialPlan;

/// One tick of the call's audio clock.
const TICK: Duration = Duration::from_millis(20);
/// Menus remembered for `back`; a caller going round a loop of menus forgets the oldest.
pub const MAX_MENU_HISTORY: usize = 32;

/// What the engine asks of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Play this prompt (replacing any playing).
    Play(String),
    /// Stop the prompt playing (barge-in).
    Stop,
    /// End the call.
    HangUp,
    /// Hand the call to another virtual JID's endpoint.
    Transfer(String),
    /// Send `body` as a chat message to `to`.
    SendMessage {
        /// Recipient JID.
        to: String,
        /// Message text.
        body: String,
    },
    /// Ring these people for the caller, playing `ringback` (repeated) meanwhile; the engine
    /// waits for [`MenuEngine::on_connect_failed`] (an answer replaces the IVR).
    Connect {
        /// Whom to ring.
        plan: DialPlan,
        /// Played while ringing.
        ringback: String,
    },
}

/// What happens when the prompt playing ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPrompt {
    /// Wait for keys (the prompt may be interrupted by one).
    Collect,
    /// Offer the menu again (the prompt may be interrupted by a key).
    Reoffer,
    /// Hang up (keys are ignored).
    HangUp,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Playing(AfterPrompt),
    Collecting {
        deadline: u64,
    },
    /// People are being rung; this happens if nobody answers.
    Connecting {
        no_answer: Box<ActionConfig>,
    },
    Done,
}

struct Entry {
    pattern: Pattern,
    action: ActionConfig,
}

struct Menu {
    config: MenuConfig,
    entries: Vec<Entry>,
    terminator: Option<char>,
}

/// The menus of one call.
pub struct MenuEngine {
    start: String,
    menus: std::collections::BTreeMap<String, Menu>,
    current: String,
    history: VecDeque<String>,
    state: State,
    keys: String,
    failures: u32,
    timeouts: u32,
    now: u64,
    out: VecDeque<Command>,
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() / TICK.as_millis()).max(1) as u64
}

impl MenuEngine {
    /// An engine for `config` (already validated: patterns parse, targets exist).
    pub fn new(config: &Arc<IvrConfig>) -> Self {
        let menus = config
            .menus
            .iter()
            .map(|(name, menu)| {
                let entries = menu
                    .entries
                    .iter()
                    .filter_map(|(key, action)| {
                        Some(Entry {
                            pattern: Pattern::parse(key).ok()?,
                            action: action.clone(),
                        })
                    })
                    .collect();
                let terminator = menu.terminator.as_deref().and_then(|t| t.chars().next());
                (
                    name.clone(),
                    Menu {
                        config: menu.clone(),
                        entries,
                        terminator,
                    },
                )
            })
            .collect();
        Self {
            start: config.start.clone(),
            menus,
            current: config.start.clone(),
            history: VecDeque::new(),
            state: State::Done,
            keys: String::new(),
            failures: 0,
            timeouts: 0,
            now: 0,
            out: VecDeque::new(),
        }
    }

    /// The next command, if any.
    pub fn poll(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// The call is connected: the first menu begins.
    pub fn start(&mut self) {
        let start = self.start.clone();
        self.enter(start);
    }

    /// The name of the menu the caller is in.
    pub fn current(&self) -> &str {
        &self.current
    }

    fn menu(&self) -> Option<&Menu> {
        self.menus.get(&self.current)
    }

    fn enter(&mut self, name: String) {
        self.current = name;
        self.failures = 0;
        self.timeouts = 0;
        self.keys.clear();
        match self.menu().map(|m| m.config.greeting.clone()) {
            Some(greeting) => self.play(greeting, AfterPrompt::Collect),
            None => self.finish(Command::HangUp),
        }
    }

    fn reoffer(&mut self) {
        self.keys.clear();
        let prompt = self.menu().map(|m| {
            m.config
                .short_greeting
                .clone()
                .unwrap_or_else(|| m.config.greeting.clone())
        });
        match prompt {
            Some(prompt) => self.play(prompt, AfterPrompt::Collect),
            None => self.finish(Command::HangUp),
        }
    }

    fn play(&mut self, prompt: String, after: AfterPrompt) {
        self.out.push_back(Command::Play(prompt));
        self.state = State::Playing(after);
    }

    fn finish(&mut self, command: Command) {
        self.out.push_back(command);
        self.state = State::Done;
    }

    fn collect(&mut self, wait: Duration) {
        self.state = State::Collecting {
            deadline: self.now + ticks(wait),
        };
    }

    /// The prompt playing has ended.
    pub fn on_prompt_done(&mut self) {
        let State::Playing(after) = self.state else {
            return;
        };
        match after {
            AfterPrompt::Collect => {
                let timeout = self
                    .menu()
                    .map_or(Duration::from_secs(5), |m| m.config.timeout.0);
                self.collect(timeout);
            }
            AfterPrompt::Reoffer => self.reoffer(),
            AfterPrompt::HangUp => self.finish(Command::HangUp),
        }
    }

    /// A key press.
    pub fn on_digit(&mut self, key: char) {
        match self.state {
            State::Done | State::Playing(AfterPrompt::HangUp) | State::Connecting { .. } => return,
            State::Playing(_) => {
                // Barge-in: the key interrupts the prompt and counts.
                self.out.push_back(Command::Stop);
                self.keys.clear();
            }
            State::Collecting { .. } => {}
        }
        let Some((terminator, max, inter_digit)) = self.menu().map(|m| {
            (
                m.terminator,
                m.config.max_digits as usize,
                m.config.inter_digit_timeout.0,
            )
        }) else {
            return;
        };
        if terminator == Some(key) {
            self.decide();
            return;
        }
        self.keys.push(key);
        // Act as soon as no longer entry could still match; else wait for the next key.
        let (_, growing) = self.candidates();
        if self.keys.chars().count() >= max || !growing {
            self.decide();
        } else {
            self.collect(inter_digit);
        }
    }

    /// The best entry fully matching the keys so far, and whether some entry could still match
    /// more keys.
    fn candidates(&self) -> (Option<usize>, bool) {
        let Some(menu) = self.menu() else {
            return (None, false);
        };
        let mut best: Option<(u32, usize)> = None;
        let mut growing = false;
        for (i, entry) in menu.entries.iter().enumerate() {
            match entry.pattern.matches(&self.keys) {
                Match::Full => {
                    let breadth = entry.pattern.breadth();
                    if best.is_none_or(|(b, _)| breadth < b) {
                        best = Some((breadth, i));
                    }
                    if entry.pattern.open_ended() {
                        growing = true;
                    }
                }
                Match::Prefix => growing = true,
                Match::No => {}
            }
        }
        (best.map(|(_, i)| i), growing)
    }

    /// Acts on the keys collected: the matching entry, or an invalid entry.
    fn decide(&mut self) {
        let (full, _) = self.candidates();
        match full.and_then(|i| self.menu().map(|m| m.entries[i].action.clone())) {
            Some(action) if !self.keys.is_empty() => {
                self.failures = 0;
                self.timeouts = 0;
                let keys = std::mem::take(&mut self.keys);
                self.act(action, keys);
            }
            _ => self.invalid(),
        }
    }

    fn invalid(&mut self) {
        self.keys.clear();
        self.failures += 1;
        let Some(menu) = self.menu() else { return };
        if self.failures >= menu.config.max_failures {
            let action = menu.config.on_failure.clone();
            self.act(action, String::new());
            return;
        }
        match menu.config.invalid.clone() {
            Some(prompt) => self.play(prompt, AfterPrompt::Reoffer),
            None => self.reoffer(),
        }
    }

    fn act(&mut self, action: ActionConfig, keys: String) {
        match action {
            ActionConfig::Play { prompt } => self.play(prompt, AfterPrompt::Reoffer),
            ActionConfig::Menu { menu } => {
                if self.history.len() == MAX_MENU_HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(self.current.clone());
                self.enter(menu);
            }
            ActionConfig::Back => {
                let previous = self
                    .history
                    .pop_back()
                    .unwrap_or_else(|| self.start.clone());
                self.enter(previous);
            }
            ActionConfig::Top => {
                self.history.clear();
                let start = self.start.clone();
                self.enter(start);
            }
            ActionConfig::Transfer { to } => self.finish(Command::Transfer(to)),
            ActionConfig::Hangup {
                prompt: Some(prompt),
            } => self.play(prompt, AfterPrompt::HangUp),
            ActionConfig::Hangup { prompt: None } => self.finish(Command::HangUp),
            ActionConfig::Connect {
                targets,
                ring,
                ring_timeout,
                ringback,
                no_answer,
            } => {
                let plan = DialPlan {
                    targets: crate::endpoint::jids(&targets),
                    ring_all: ring == RingStrategy::All,
                    ring_timeout: ring_timeout.0,
                };
                self.out.push_back(Command::Connect { plan, ringback });
                self.state = State::Connecting { no_answer };
            }
            ActionConfig::SendDigits { to, prompt } => {
                self.out.push_back(Command::SendMessage { to, body: keys });
                match prompt {
                    Some(prompt) => self.play(prompt, AfterPrompt::Reoffer),
                    None => self.reoffer(),
                }
            }
        }
    }

    /// Nobody the last [`Command::Connect`] rang answered: its `no_answer` action is taken.
    pub fn on_connect_failed(&mut self) {
        let State::Connecting { no_answer } = &self.state else {
            return;
        };
        let action = (**no_answer).clone();
        self.out.push_back(Command::Stop);
        self.act(action, String::new());
    }

    /// One tick (20 ms) has passed.
    pub fn tick(&mut self) {
        self.now += 1;
        let State::Collecting { deadline } = self.state else {
            return;
        };
        if self.now < deadline {
            return;
        }
        if !self.keys.is_empty() {
            // The inter-key time ran out: decide on what was entered.
            self.decide();
            return;
        }
        self.timeouts += 1;
        let Some(menu) = self.menu() else { return };
        if self.timeouts >= menu.config.max_timeouts {
            let action = menu.config.on_failure.clone();
            self.act(action, String::new());
        } else {
            self.reoffer();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDuration;

    fn menu(greeting: &str, entries: &[(&str, ActionConfig)]) -> MenuConfig {
        MenuConfig {
            greeting: greeting.into(),
            short_greeting: Some(format!("{greeting}-short")),
            invalid: Some("invalid".into()),
            timeout: ConfigDuration::secs(2),
            inter_digit_timeout: ConfigDuration::secs(1),
            max_digits: 3,
            terminator: Some("#".into()),
            max_failures: 2,
            max_timeouts: 2,
            on_failure: ActionConfig::Hangup {
                prompt: Some("goodbye".into()),
            },
            entries: entries
                .iter()
                .map(|(k, a)| (k.to_string(), a.clone()))
                .collect(),
        }
    }

    fn engine() -> MenuEngine {
        let config = IvrConfig {
            start: "main".into(),
            menus: [
                (
                    "main".to_string(),
                    menu(
                        "welcome",
                        &[
                            (
                                "1",
                                ActionConfig::Play {
                                    prompt: "info".into(),
                                },
                            ),
                            ("2", ActionConfig::Menu { menu: "sub".into() }),
                            (
                                "12",
                                ActionConfig::Play {
                                    prompt: "twelve".into(),
                                },
                            ),
                            ("9", ActionConfig::Transfer { to: "echo".into() }),
                            ("0", ActionConfig::Hangup { prompt: None }),
                        ],
                    ),
                ),
                (
                    "sub".to_string(),
                    menu(
                        "sub",
                        &[
                            ("*", ActionConfig::Back),
                            (
                                "_X.",
                                ActionConfig::SendDigits {
                                    to: "sales@example.org".into(),
                                    prompt: Some("sent".into()),
                                },
                            ),
                        ],
                    ),
                ),
            ]
            .into_iter()
            .collect(),
            ..IvrConfig::default()
        };
        MenuEngine::new(&Arc::new(config))
    }

    fn drain(e: &mut MenuEngine) -> Vec<Command> {
        std::iter::from_fn(|| e.poll()).collect()
    }

    fn play(p: &str) -> Command {
        Command::Play(p.into())
    }

    fn advance(e: &mut MenuEngine, seconds: f32) {
        for _ in 0..(seconds * 50.0) as usize {
            e.tick();
        }
    }

    #[test]
    fn greeting_then_an_entry_plays_and_reoffers() {
        let mut e = engine();
        e.start();
        assert_eq!(drain(&mut e), [play("welcome")]);
        e.on_prompt_done();
        e.on_digit('1');
        // "1" could still become "12": wait for the inter-key time.
        assert_eq!(drain(&mut e), []);
        advance(&mut e, 1.0);
        assert_eq!(drain(&mut e), [play("info")]);
        e.on_prompt_done();
        assert_eq!(drain(&mut e), [play("welcome-short")]);
    }

    #[test]
    fn an_unambiguous_key_acts_at_once_and_longer_entries_wait() {
        let mut e = engine();
        e.start();
        e.on_prompt_done();
        drain(&mut e);
        e.on_digit('1');
        e.on_digit('2');
        assert_eq!(drain(&mut e), [play("twelve")]);
        e.on_prompt_done();
        e.on_prompt_done();
        drain(&mut e);
        e.on_digit('9');
        assert_eq!(drain(&mut e), [Command::Transfer("echo".into())]);
    }

    #[test]
    fn going_round_menus_keeps_a_bounded_history() {
        let mut e = engine();
        e.start();
        // main -> sub -> back -> main... and main -> sub without going back, over and over.
        for _ in 0..10 * MAX_MENU_HISTORY {
            e.enter("main".into());
            e.act(ActionConfig::Menu { menu: "sub".into() }, String::new());
        }
        assert_eq!(e.history.len(), MAX_MENU_HISTORY);
        e.act(ActionConfig::Back, String::new());
        assert_eq!(e.current(), "main");
    }

    #[test]
    fn barge_in_sub_menus_back_and_send_digits() {
        let mut e = engine();
        e.start();
        drain(&mut e);
        // A key during the greeting interrupts it and counts.
        e.on_digit('2');
        assert_eq!(drain(&mut e), [Command::Stop, play("sub")]);
        assert_eq!(e.current(), "sub");
        e.on_prompt_done();
        for k in "555".chars() {
            e.on_digit(k);
        }
        assert_eq!(
            drain(&mut e),
            [
                Command::SendMessage {
                    to: "sales@example.org".into(),
                    body: "555".into()
                },
                play("sent")
            ]
        );
        e.on_prompt_done();
        e.on_prompt_done();
        drain(&mut e);
        // With the terminator, a shorter number.
        e.on_digit('4');
        e.on_digit('2');
        e.on_digit('#');
        assert_eq!(
            drain(&mut e),
            [
                Command::SendMessage {
                    to: "sales@example.org".into(),
                    body: "42".into()
                },
                play("sent")
            ]
        );
        e.on_prompt_done();
        assert_eq!(drain(&mut e), [play("sub-short")]);
        e.on_prompt_done();
        e.on_digit('*');
        assert_eq!(drain(&mut e), [play("welcome")]);
        assert_eq!(e.current(), "main");
    }

    #[test]
    fn invalid_entries_and_timeouts_run_out_into_on_failure() {
        let mut e = engine();
        e.start();
        e.on_prompt_done();
        drain(&mut e);
        e.on_digit('7');
        assert_eq!(drain(&mut e), [play("invalid")]);
        e.on_prompt_done();
        assert_eq!(drain(&mut e), [play("welcome-short")]);
        e.on_prompt_done();
        e.on_digit('7');
        assert_eq!(drain(&mut e), [play("goodbye")]);
        e.on_digit('1'); // ignored while saying goodbye
        e.on_prompt_done();
        assert_eq!(drain(&mut e), [Command::HangUp]);

        let mut e = engine();
        e.start();
        e.on_prompt_done();
        drain(&mut e);
        advance(&mut e, 1.9);
        assert_eq!(drain(&mut e), []);
        advance(&mut e, 0.2);
        assert_eq!(drain(&mut e), [play("welcome-short")]);
        e.on_prompt_done();
        advance(&mut e, 2.1);
        assert_eq!(drain(&mut e), [play("goodbye")]);
    }

    #[test]
    fn hang_up_without_a_prompt() {
        let mut e = engine();
        e.start();
        e.on_prompt_done();
        e.on_digit('0');
        assert_eq!(drain(&mut e), [play("welcome"), Command::HangUp]);
        e.tick();
        e.on_digit('1');
        assert_eq!(drain(&mut e), []);
    }
}
