//! `ivr`: menus from the config. The menu engine decides; this endpoint plays its prompts from
//! the shared prompt library (already encoded in the call's codec, so playing to many callers
//! costs no encoding) and passes its requests to the call.

mod menu;
mod pattern;

use std::collections::VecDeque;
use std::sync::Arc;

pub use menu::{Command, MenuEngine};
pub use pattern::{Match, Pattern};

use super::{settings_of, CallInfo, Endpoint, EndpointEvent, Incoming, Kind, NewCall, Outgoing};
use crate::config::{
    read_settings, Config, ConfigError, DtmfSourcesConfig, EndpointSettings, IvrConfig,
};
use crate::media::dtmf::Digit;
use crate::prompt::{EncodedPrompt, PromptLibrary};
use crate::types::{Codec, EndReason};

/// `kind = "ivr"`: menus, with the settings of [`IvrConfig`].
pub static KIND: IvrKind = IvrKind;

/// The kind `ivr`.
pub struct IvrKind;

impl Kind for IvrKind {
    fn name(&self) -> &'static str {
        "ivr"
    }

    fn settings(
        &self,
        key: &str,
        table: toml::Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        read_settings::<IvrConfig>(key, table, errors)
    }

    fn create(
        &self,
        settings: &Arc<dyn EndpointSettings>,
        call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        let config = settings_of::<IvrConfig>(settings)?;
        Ok(Box::new(Ivr::new(
            &config,
            call.prompts.clone(),
            call.codec,
        )))
    }
}

impl EndpointSettings for IvrConfig {
    fn validate(&self, key: &str, config: &Config) -> Vec<ConfigError> {
        let available = config
            .endpoints
            .iter()
            .map(|(name, endpoint)| (name.clone(), endpoint.settings.available()))
            .collect();
        IvrConfig::validate(self, key, &available)
    }

    fn dial_targets(&self, key: &str) -> Vec<(String, String)> {
        IvrConfig::dial_targets(self, key)
    }

    fn prompts(&self, key: &str) -> Vec<(String, String)> {
        IvrConfig::prompts(self, key)
    }
}

/// The IVR endpoint of one call.
pub struct Ivr {
    engine: MenuEngine,
    prompts: Arc<PromptLibrary>,
    sources: DtmfSourcesConfig,
    codec: Codec,
    playing: Option<(Arc<EncodedPrompt>, usize)>,
    /// Repeated while people are rung for the caller.
    ringback: Option<Arc<EncodedPrompt>>,
    ringback_position: usize,
    events: VecDeque<EndpointEvent>,
}

impl Ivr {
    /// An IVR for `config`, playing prompts from `prompts` in `codec`.
    pub fn new(config: &Arc<IvrConfig>, prompts: Arc<PromptLibrary>, codec: Codec) -> Self {
        Self {
            engine: MenuEngine::new(config),
            prompts,
            sources: config.dtmf,
            codec,
            playing: None,
            ringback: None,
            ringback_position: 0,
            events: VecDeque::new(),
        }
    }

    /// Carries out what the engine asked.
    fn run_commands(&mut self) {
        while let Some(command) = self.engine.poll() {
            match command {
                Command::Play(prompt) => {
                    tracing::debug!(%prompt, menu = self.engine.current(), "playing");
                    self.playing = self.prompts.encoded(&prompt, self.codec).map(|p| (p, 0));
                    if self.playing.is_none() {
                        // Checked at start, so this is a codec failure: carry on without it.
                        tracing::warn!(%prompt, "prompt not available");
                        self.engine.on_prompt_done();
                    }
                }
                Command::Stop => self.playing = None,
                Command::HangUp => self.events.push_back(EndpointEvent::HangUp),
                Command::Transfer(to) => self.events.push_back(EndpointEvent::Transfer(to)),
                Command::SendMessage { to, body } => match jid::Jid::new(&to) {
                    Ok(to) => self
                        .events
                        .push_back(EndpointEvent::SendMessage { to, body }),
                    Err(_) => tracing::warn!(%to, "not a JID; message not sent"),
                },
                Command::Connect { plan, ringback } => {
                    tracing::info!(targets = ?plan.targets, menu = self.engine.current(), "connecting the caller");
                    self.ringback = self.prompts.encoded(&ringback, self.codec);
                    self.playing = None;
                    self.events.push_back(EndpointEvent::Connect(plan));
                }
            }
        }
    }
}

impl Endpoint for Ivr {
    fn dtmf_sources(&self) -> DtmfSourcesConfig {
        self.sources
    }

    fn start(&mut self, _call: &CallInfo) {
        self.engine.start();
        self.run_commands();
    }

    fn on_audio(&mut self, _audio: Incoming<'_>) {}

    fn on_dtmf(&mut self, digit: Digit) {
        tracing::info!(digit = %digit.as_char(), menu = self.engine.current(), "key pressed");
        self.engine.on_digit(digit.as_char());
        self.run_commands();
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        self.engine.tick();
        self.run_commands();
        if let Some(ringback) = &self.ringback {
            let frame = ringback
                .frames
                .get(self.ringback_position % ringback.frames.len().max(1))
                .cloned();
            self.ringback_position += 1;
            return frame.map_or(Outgoing::Silence, Outgoing::Encoded);
        }
        let Some((prompt, position)) = self.playing.as_mut() else {
            return Outgoing::Silence;
        };
        let frame = prompt.frames.get(*position).cloned();
        *position += 1;
        if *position >= prompt.frames.len() {
            self.playing = None;
            self.engine.on_prompt_done();
            self.run_commands();
        }
        match frame {
            Some(frame) => Outgoing::Encoded(frame),
            None => Outgoing::Silence,
        }
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    fn on_connect_failed(&mut self, reason: crate::types::EndReason) {
        tracing::info!(reason = %reason, "nobody answered");
        self.ringback = None;
        self.ringback_position = 0;
        self.engine.on_connect_failed();
        self.run_commands();
    }
}
