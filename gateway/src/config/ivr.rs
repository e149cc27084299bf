//! `kind = "ivr"`: menus of prompts and key presses, and what each key does. Checked at start:
//! unknown targets, unreachable menus, menus that loop without input, duplicate keys, entries
//! longer than a menu collects.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::duration::ConfigDuration;
use super::error::ConfigError;
use super::outbound::{target_keys, validate_ringing, RingStrategy, RINGBACK_PROMPT, RING_TIMEOUT};

/// The settings of an IVR endpoint (`[endpoints.<name>]` with `kind = "ivr"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {
    /// The menu a call starts in.
    pub start: String,
    /// Which ways of pressing keys are heard.
    pub dtmf: DtmfSourcesConfig,
    /// The menus, by name: `[endpoints.<name>.menus.<menu>]`.
    pub menus: BTreeMap<String, MenuConfig>,
}

impl Default for IvrConfig {
    fn default() -> Self {
        Self {
            start: "main".into(),
            dtmf: DtmfSourcesConfig::default(),
            menus: BTreeMap::new(),
        }
    }
}

/// Which ways of pressing keys an endpoint hears (each can be switched off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DtmfSourcesConfig {
    /// RFC 4733 `telephone-event` packets (browsers, Conversations).
    pub rfc4733: bool,
    /// Tones played into the audio (found by a DTMF detector on the decoded audio).
    pub inband: bool,
    /// Digits typed as a chat message to the virtual JID during the call (clients with no
    /// dial pad: Dino, Monal, Siskin).
    pub chat: bool,
}

impl Default for DtmfSourcesConfig {
    fn default() -> Self {
        Self {
            rfc4733: true,
            inband: true,
            chat: true,
        }
    }
}

/// One menu: `[endpoints.<name>.menus.<menu>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MenuConfig {
    /// Played when the menu is entered (a file in `prompts.directory`, `tone:440:500ms` or
    /// `silence:1s`).
    pub greeting: String,
    /// Played when the menu is offered again (after an invalid entry, a timeout, or an action
    /// that returns here); the greeting when unset.
    pub short_greeting: Option<String>,
    /// Played after an entry that matches nothing.
    pub invalid: Option<String>,
    /// Time to wait for the first key after the greeting.
    pub timeout: ConfigDuration,
    /// Time to wait for the next key once one was pressed.
    pub inter_digit_timeout: ConfigDuration,
    /// Most keys collected for one entry (an entry is matched as soon as it cannot grow into
    /// another).
    pub max_digits: u32,
    /// Key that ends an entry early (not part of it), e.g. `"#"`.
    pub terminator: Option<String>,
    /// Invalid entries before `on_failure` is taken.
    pub max_failures: u32,
    /// Timeouts in a row before `on_failure` is taken.
    pub max_timeouts: u32,
    /// What happens when failures or timeouts run out.
    pub on_failure: ActionConfig,
    /// Entries: keys (`"1"`, `"42"`) or Asterisk-style patterns (`"_1XX"`: X any key 0-9, Z 1-9,
    /// N 2-9, `[1-3]` a range, `.` one or more keys, `!` zero or more) and their actions.
    pub entries: BTreeMap<String, ActionConfig>,
}

impl Default for MenuConfig {
    fn default() -> Self {
        Self {
            greeting: String::new(),
            short_greeting: None,
            invalid: None,
            timeout: ConfigDuration::secs(5),
            inter_digit_timeout: ConfigDuration::secs(2),
            max_digits: 1,
            terminator: None,
            max_failures: 3,
            max_timeouts: 3,
            on_failure: ActionConfig::Hangup { prompt: None },
            entries: BTreeMap::new(),
        }
    }
}

/// What an entry does: `{ action = "...", ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Play a prompt, then offer the menu again.
    Play {
        /// The prompt.
        prompt: String,
    },
    /// Go to another menu.
    Menu {
        /// Its name.
        menu: String,
    },
    /// Go back to the menu this one was entered from.
    Back,
    /// Go back to the first menu.
    Top,
    /// Hand the call to another virtual JID's endpoint (its local part, e.g. `"voicemail"`),
    /// without the caller redialling.
    Transfer {
        /// The virtual JID's local part.
        to: String,
    },
    /// Hang up, after a prompt if given.
    Hangup {
        /// Played before hanging up.
        prompt: Option<String>,
    },
    /// Send the keys of the entry as a chat message to `to`, play `prompt` if given, and offer
    /// the menu again.
    SendDigits {
        /// The JID that gets the message.
        to: String,
        /// Played after sending.
        prompt: Option<String>,
    },
    /// Ring people (`[outbound]` must allow them) and bridge the caller with whoever answers;
    /// the caller hears `ringback` meanwhile, and `no_answer` happens when nobody answers.
    Connect {
        /// JIDs to ring: a bare JID rings every device of the user.
        targets: Vec<String>,
        /// `all` at once, or `hunt` one after the other.
        #[serde(default)]
        ring: RingStrategy,
        /// How long each target rings.
        #[serde(default = "default_ring_timeout")]
        ring_timeout: ConfigDuration,
        /// Played to the caller, repeated, while ringing.
        #[serde(default = "default_ringback")]
        ringback: String,
        /// What happens when nobody answers (or nobody can be rung): by default a prompt, then
        /// the menu again.
        #[serde(default = "default_no_answer")]
        no_answer: Box<ActionConfig>,
    },
}

fn default_ring_timeout() -> ConfigDuration {
    RING_TIMEOUT
}

fn default_ringback() -> String {
    RINGBACK_PROMPT.into()
}

/// Said when nobody answers a `connect`.
pub const NO_ANSWER_PROMPT: &str = "builtin:no-answer";

fn default_no_answer() -> Box<ActionConfig> {
    Box::new(ActionConfig::Play {
        prompt: NO_ANSWER_PROMPT.into(),
    })
}

impl ActionConfig {
    /// The prompts the action plays, with the key (under the action's) naming each.
    fn prompts(&self, key: &str) -> Vec<(String, String)> {
        match self {
            Self::Play { prompt } => vec![(format!("{key}.prompt"), prompt.clone())],
            Self::Hangup { prompt } | Self::SendDigits { prompt, .. } => prompt
                .iter()
                .map(|p| (format!("{key}.prompt"), p.clone()))
                .collect(),
            Self::Connect {
                ringback,
                no_answer,
                ..
            } => {
                let mut prompts = vec![(format!("{key}.ringback"), ringback.clone())];
                prompts.extend(no_answer.prompts(&format!("{key}.no_answer")));
                prompts
            }
            _ => Vec::new(),
        }
    }

    /// The actions inside this one (a `connect`'s `no_answer`), with their keys.
    fn nested(&self, key: &str) -> Vec<(String, &ActionConfig)> {
        match self {
            Self::Connect { no_answer, .. } => {
                let inner = format!("{key}.no_answer");
                let mut all = no_answer.nested(&inner);
                all.push((inner, no_answer));
                all
            }
            _ => Vec::new(),
        }
    }
}

impl IvrConfig {
    /// Every prompt the IVR plays, with the key that names it.
    pub fn prompts(&self, key: &str) -> Vec<(String, String)> {
        let mut uses = Vec::new();
        for (name, menu) in &self.menus {
            let menu_key = format!("{key}.menus.{name}");
            uses.push((format!("{menu_key}.greeting"), menu.greeting.clone()));
            if let Some(p) = &menu.short_greeting {
                uses.push((format!("{menu_key}.short_greeting"), p.clone()));
            }
            if let Some(p) = &menu.invalid {
                uses.push((format!("{menu_key}.invalid"), p.clone()));
            }
            uses.extend(menu.on_failure.prompts(&format!("{menu_key}.on_failure")));
            for (entry, action) in &menu.entries {
                uses.extend(action.prompts(&format!("{menu_key}.entries.\"{entry}\"")));
            }
        }
        uses
    }

    /// Every JID the IVR may ring, with the key that names it.
    pub fn dial_targets(&self, key: &str) -> Vec<(String, String)> {
        let mut targets = Vec::new();
        for (action_key, action) in self.all_actions(key) {
            if let ActionConfig::Connect { targets: t, .. } = action {
                targets.extend(target_keys(&action_key, t));
            }
        }
        targets
    }

    /// Every action of every menu (nested ones too), with its key.
    fn all_actions(&self, key: &str) -> Vec<(String, &ActionConfig)> {
        let mut all = Vec::new();
        for (name, menu) in &self.menus {
            let menu_key = format!("{key}.menus.{name}");
            let top = menu
                .entries
                .iter()
                .map(|(entry, action)| (format!("{menu_key}.entries.\"{entry}\""), action))
                .chain([(format!("{menu_key}.on_failure"), &menu.on_failure)]);
            for (action_key, action) in top {
                all.extend(action.nested(&action_key));
                all.push((action_key, action));
            }
        }
        all
    }

    /// Problems in the menus. `endpoints` gives each virtual JID's local part and whether it can
    /// take a call now (transfer targets).
    pub fn validate(&self, key: &str, endpoints: &BTreeMap<String, bool>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.menus.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.menus"),
                "an IVR needs at least one menu",
            ));
            return errors;
        }
        if !self.menus.contains_key(&self.start) {
            errors.push(ConfigError::new(
                format!("{key}.start"),
                format!("no menu named `{}`", self.start),
            ));
        }
        for (name, menu) in &self.menus {
            let menu_key = format!("{key}.menus.{name}");
            if menu.greeting.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{menu_key}.greeting"),
                    "is required",
                ));
            }
            if menu.max_digits == 0 || menu.max_digits > 32 {
                errors.push(ConfigError::new(
                    format!("{menu_key}.max_digits"),
                    "must be from 1 to 32",
                ));
            }
            if menu.max_failures == 0 {
                errors.push(ConfigError::new(
                    format!("{menu_key}.max_failures"),
                    "must be at least 1",
                ));
            }
            if menu.max_timeouts == 0 {
                errors.push(ConfigError::new(
                    format!("{menu_key}.max_timeouts"),
                    "must be at least 1",
                ));
            }
            let terminator = match menu.terminator.as_deref() {
                None => None,
                Some(t) if t.len() == 1 && "0123456789*#ABCD".contains(t) => t.chars().next(),
                Some(t) => {
                    errors.push(ConfigError::new(
                        format!("{menu_key}.terminator"),
                        format!("`{t}` is not one key (0-9, *, #, A-D)"),
                    ));
                    None
                }
            };
            let mut seen = BTreeMap::new();
            for (entry, action) in &menu.entries {
                let entry_key = format!("{menu_key}.entries.\"{entry}\"");
                match super::super::endpoint::ivr::Pattern::parse(entry) {
                    Ok(pattern) => {
                        if let Some(other) = seen.insert(pattern.canonical(), entry.clone()) {
                            errors.push(ConfigError::new(
                                entry_key.clone(),
                                format!("the same keys as entry `{other}`"),
                            ));
                        }
                        if pattern.min_len() > menu.max_digits as usize {
                            errors.push(ConfigError::new(
                                entry_key.clone(),
                                format!("longer than max_digits ({})", menu.max_digits),
                            ));
                        }
                        if terminator.is_some_and(|t| pattern.starts_with_key(t)) {
                            errors.push(ConfigError::new(
                                entry_key.clone(),
                                "starts with the terminator key, so it can never be entered",
                            ));
                        }
                    }
                    Err(e) => errors.push(ConfigError::new(entry_key.clone(), e)),
                }
                errors.extend(self.check_action(action, &entry_key, endpoints));
            }
            errors.extend(self.check_action(
                &menu.on_failure,
                &format!("{menu_key}.on_failure"),
                endpoints,
            ));
        }
        errors.extend(self.check_reachable(key));
        errors.extend(self.check_idle_loops(key));
        errors
    }

    fn check_action(
        &self,
        action: &ActionConfig,
        key: &str,
        endpoints: &BTreeMap<String, bool>,
    ) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        match action {
            ActionConfig::Menu { menu } if !self.menus.contains_key(menu) => {
                errors.push(ConfigError::new(
                    format!("{key}.menu"),
                    format!("no menu named `{menu}`"),
                ));
            }
            ActionConfig::Transfer { to } => match endpoints.get(to) {
                None => errors.push(ConfigError::new(
                    format!("{key}.to"),
                    format!("no virtual JID `{to}` in [endpoints]"),
                )),
                Some(false) => errors.push(ConfigError::new(
                    format!("{key}.to"),
                    format!("`{to}` is not available in this version"),
                )),
                Some(true) => {}
            },
            ActionConfig::SendDigits { to, .. } if jid::BareJid::new(to).is_err() => {
                errors.push(ConfigError::new(
                    format!("{key}.to"),
                    format!("`{to}` is not a JID"),
                ));
            }
            ActionConfig::Play { prompt } if prompt.trim().is_empty() => {
                errors.push(ConfigError::new(format!("{key}.prompt"), "is required"));
            }
            ActionConfig::Connect {
                targets,
                ring_timeout,
                no_answer,
                ..
            } => {
                errors.extend(validate_ringing(key, targets, *ring_timeout));
                errors.extend(self.check_action(no_answer, &format!("{key}.no_answer"), endpoints));
            }
            _ => {}
        }
        errors
    }

    /// Menus no caller can get to from `start`.
    fn check_reachable(&self, key: &str) -> Vec<ConfigError> {
        let mut reached = BTreeSet::new();
        let mut todo = vec![self.start.as_str()];
        while let Some(name) = todo.pop() {
            if !reached.insert(name) {
                continue;
            }
            if let Some(menu) = self.menus.get(name) {
                for action in menu.entries.values().chain([&menu.on_failure]) {
                    let nested = action.nested("").into_iter().map(|(_, a)| a);
                    for action in nested.chain([action]) {
                        if let ActionConfig::Menu { menu } = action {
                            todo.push(menu.as_str());
                        }
                    }
                }
            }
        }
        if !self.menus.contains_key(&self.start) {
            return Vec::new();
        }
        self.menus
            .keys()
            .filter(|name| !reached.contains(name.as_str()))
            .map(|name| {
                ConfigError::new(format!("{key}.menus.{name}"), "no entry leads to this menu")
            })
            .collect()
    }

    /// Menus whose `on_failure` leads back to themselves: a caller who presses nothing would go
    /// round them for ever.
    fn check_idle_loops(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for start in self.menus.keys() {
            let mut path = vec![start.as_str()];
            let mut current = start.as_str();
            while let Some(ActionConfig::Menu { menu }) =
                self.menus.get(current).map(|m| &m.on_failure)
            {
                if menu == start {
                    errors.push(ConfigError::new(
                        format!("{key}.menus.{start}.on_failure"),
                        format!("loops without input: {} -> {menu}", path.join(" -> ")),
                    ));
                    break;
                }
                if path.contains(&menu.as_str()) {
                    break; // A loop that does not pass through `start`; reported from its own menus.
                }
                path.push(menu);
                current = menu;
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(ivr: &str) -> Vec<(String, String)> {
        let text = format!(
            "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n[endpoints.echo]\nkind = \"echo\"\n\
             [endpoints.voicemail]\nkind = \"voicemail\"\nowners = [\"a@b\"]\n\
             [endpoints.lobby]\nkind = \"sound-device\"\n[endpoints.ivr]\nkind = \"ivr\"\n{ivr}"
        );
        match Config::from_toml_str(&text, Vec::new(), &crate::endpoint::KINDS) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| (e.key, e.message)).collect(),
        }
    }

    fn keys(ivr: &str) -> Vec<String> {
        problems(ivr).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_good_menu_has_no_problems() {
        let ivr = r###"
            [endpoints.ivr.menus.main]
            greeting = "tone:440:1s"
            max_digits = 3
            terminator = "#"
            [endpoints.ivr.menus.main.entries]
            "1" = { action = "menu", menu = "sub" }
            "_2XX" = { action = "send_digits", to = "sales@example.org" }
            "9" = { action = "transfer", to = "echo" }
            [endpoints.ivr.menus.sub]
            greeting = "silence:1s"
            on_failure = { action = "back" }
            [endpoints.ivr.menus.sub.entries]
            "*" = { action = "top" }
        "###;
        assert_eq!(problems(ivr), []);
    }

    #[test]
    fn every_menu_mistake_names_its_key() {
        let ivr = r###"
            start = "nowhere"
            [endpoints.ivr.menus.main]
            greeting = "tone:440:1s"
            terminator = "##"
            [endpoints.ivr.menus.main.entries]
            "1" = { action = "menu", menu = "ghost" }
            "_1" = { action = "top" }
            "42" = { action = "back" }
            "_Q" = { action = "back" }
            "3" = { action = "transfer", to = "lobby" }
            "4" = { action = "transfer", to = "nobody" }
            "5" = { action = "send_digits", to = "not a jid@@" }
            "6" = { action = "dance" }
            [endpoints.ivr.menus.lonely]
            greeting = "tone:440:1s"
        "###;
        let keys = keys(ivr);
        for expected in [
            "endpoints.ivr.start",
            "endpoints.ivr.menus.main.terminator",
            "endpoints.ivr.menus.main.entries.\"1\".menu",
            "endpoints.ivr.menus.main.entries.\"_1\"",
            "endpoints.ivr.menus.main.entries.\"42\"",
            "endpoints.ivr.menus.main.entries.\"_Q\"",
            "endpoints.ivr.menus.main.entries.\"4\".to",
            "endpoints.ivr.menus.main.entries.\"5\".to",
            "endpoints.ivr.menus.main.entries.6",
        ] {
            assert!(
                keys.iter().any(|k| k == expected),
                "{expected} missing from {keys:#?}"
            );
        }
        // A sound device can be transferred to only where this build has sound support.
        let to_sound = "endpoints.ivr.menus.main.entries.\"3\".to";
        assert_eq!(
            keys.iter().any(|k| k == to_sound),
            !cfg!(feature = "sound"),
            "{keys:#?}"
        );
    }

    #[test]
    fn unreachable_menus_and_idle_loops_are_refused() {
        let ivr = r###"
            [endpoints.ivr.menus.main]
            greeting = "tone:440:1s"
            on_failure = { action = "menu", menu = "a" }
            [endpoints.ivr.menus.a]
            greeting = "tone:440:1s"
            on_failure = { action = "menu", menu = "main" }
            [endpoints.ivr.menus.island]
            greeting = "tone:440:1s"
        "###;
        let problems = problems(ivr);
        assert!(problems
            .iter()
            .any(|(k, m)| k == "endpoints.ivr.menus.island" && m.contains("no entry leads")));
        assert!(problems
            .iter()
            .any(|(k, m)| k == "endpoints.ivr.menus.main.on_failure"
                && m.contains("loops without input")));
    }
}
