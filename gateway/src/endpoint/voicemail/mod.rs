//! `voicemail`: callers leave a message ([`LeaveMessage`]); the mailbox's owners calling it get
//! their messages ([`OwnerMenu`]). Storage and delivery are in `crate::mailbox`.

mod caller;
mod owner;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use caller::LeaveMessage;
pub use owner::OwnerMenu;

use super::player::Player;
use super::{CallInfo, Endpoint, EndpointEvent, Incoming, Kind, NewCall, Outgoing};
use crate::config::{
    read_settings, Config, ConfigError, Delivery, DtmfSourcesConfig, EndpointSettings,
    MailboxConfig,
};
use crate::mailbox::Mailboxes;
use crate::media::dtmf::Digit;
use crate::prompt::PromptLibrary;
use crate::types::EndReason;

/// `kind = "voicemail"`: a mailbox, with the settings of [`MailboxConfig`].
pub static KIND: VoicemailKind = VoicemailKind;

/// The kind `voicemail`.
pub struct VoicemailKind;

impl Kind for VoicemailKind {
    fn name(&self) -> &'static str {
        "voicemail"
    }

    fn settings(
        &self,
        key: &str,
        table: toml::Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        read_settings::<MailboxConfig>(key, table, errors)
    }

    /// The mailbox's settings are those its storage opened with (the same config's).
    fn create(
        &self,
        _settings: &Arc<dyn EndpointSettings>,
        call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        let mailbox = call
            .mailboxes
            .mailbox(call.virtual_jid)
            .ok_or(EndReason::EndpointUnavailable)?;
        Ok(Box::new(VoicemailEndpoint::new(
            call.mailboxes.clone(),
            call.virtual_jid,
            mailbox.config.clone(),
            call.prompts.clone(),
            call.peer,
            call.codec,
        )))
    }
}

impl EndpointSettings for MailboxConfig {
    fn validate(&self, key: &str, config: &Config) -> Vec<ConfigError> {
        let mut errors = MailboxConfig::validate(self, key);
        if self.delivery == Delivery::Gateway && config.http.bind.is_none() {
            errors.push(ConfigError::new(
                format!("{key}.delivery"),
                "is \"gateway\" but http.bind is not set: the gateway serves nothing",
            ));
        }
        errors
    }

    fn dial_targets(&self, key: &str) -> Vec<(String, String)> {
        MailboxConfig::dial_targets(self, key)
    }

    /// The mailbox's own prompts, and the system prompts its menus speak.
    fn prompts(&self, key: &str) -> Vec<(String, String)> {
        let mut uses = MailboxConfig::prompts(self, key);
        uses.extend(
            crate::prompt::system::specs()
                .into_iter()
                .map(|spec| (key.to_string(), spec)),
        );
        uses
    }
}

/// A call to a mailbox.
pub struct VoicemailEndpoint {
    role: Role,
    dtmf: DtmfSourcesConfig,
}

enum Role {
    Caller(Box<LeaveMessage>),
    Owner(Box<OwnerMenu>),
}

impl VoicemailEndpoint {
    /// A call from `peer` (a full or bare JID) to `mailbox`: its owners get their messages,
    /// everyone else leaves one.
    pub fn new(
        voicemail: Arc<Mailboxes>,
        mailbox: &str,
        config: Arc<MailboxConfig>,
        prompts: Arc<PromptLibrary>,
        peer: &jid::FullJid,
        codec: crate::types::Codec,
    ) -> Self {
        let player = Player::new(prompts, codec);
        let is_owner = config.is_owner(&peer.to_string());
        let dtmf = config.dtmf;
        let role = if is_owner {
            Role::Owner(Box::new(OwnerMenu::new(
                voicemail,
                mailbox.to_string(),
                player,
            )))
        } else {
            Role::Caller(Box::new(LeaveMessage::new(
                voicemail,
                mailbox.to_string(),
                config,
                player,
            )))
        };
        Self { role, dtmf }
    }
}

impl Endpoint for VoicemailEndpoint {
    fn dtmf_sources(&self) -> DtmfSourcesConfig {
        self.dtmf
    }

    fn start(&mut self, call: &CallInfo) {
        match &mut self.role {
            Role::Caller(caller) => caller.start(call),
            Role::Owner(owner) => owner.start(),
        }
    }

    fn on_audio(&mut self, audio: Incoming<'_>) {
        if let Role::Caller(caller) = &mut self.role {
            caller.on_audio(audio);
        }
    }

    fn on_dtmf(&mut self, digit: Digit) {
        match &mut self.role {
            Role::Caller(caller) => caller.on_dtmf(digit),
            Role::Owner(owner) => owner.on_dtmf(digit),
        }
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        match &mut self.role {
            Role::Caller(caller) => caller.next_frame(),
            Role::Owner(owner) => owner.next_frame(),
        }
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        match &mut self.role {
            Role::Caller(caller) => caller.poll_event(),
            Role::Owner(owner) => owner.poll_event(),
        }
    }

    fn on_connect_failed(&mut self, _reason: crate::types::EndReason) {
        if let Role::Caller(caller) = &mut self.role {
            caller.on_connect_failed();
        }
    }

    fn on_end(&mut self, reason: crate::types::EndReason) {
        if let Role::Caller(caller) = &mut self.role {
            caller.on_end(reason);
        }
    }
}
