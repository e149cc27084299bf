//! `kind = "voicemail"` mailboxes, the `[voicemail]` section shared by them, and the `[http]`
//! server that hands recordings to their owners. The knobs follow Asterisk's `voicemail.conf`
//! (`maxsecs`, `minsecs`, `maxsilence`, `silencethreshold`, `maxmsg`).

use super::http::HttpConfig;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::duration::ConfigDuration;
use super::error::ConfigError;
use super::ivr::DtmfSourcesConfig;
use super::outbound::{target_keys, validate_ringing, RingStrategy, RINGBACK_PROMPT, RING_TIMEOUT};

/// The beep that marks the start of recording.
pub const BEEP_PROMPT: &str = "tone:1000:250ms";

/// The settings of one mailbox (`[endpoints.<name>]` with `kind = "voicemail"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// Bare JIDs that receive the messages, and may call the mailbox to listen to them or manage
    /// them with ad-hoc commands.
    pub owners: Vec<String>,
    /// Played to callers before the beep: a file in `prompts.directory` (WAV, FLAC, MP3, Ogg),
    /// an inline `tone:`/`silence:` prompt, or a built-in prompt such as `builtin:vm-greeting`.
    pub greeting: String,
    /// Whether a beep marks the start of recording.
    pub beep: bool,
    /// Longest message; recording stops there (Asterisk `maxsecs`).
    pub max_length: ConfigDuration,
    /// Messages shorter than this are dropped, not delivered (Asterisk `minsecs`).
    pub min_length: ConfigDuration,
    /// Level below which the caller counts as silent, in dBFS (Asterisk's `silencethreshold`
    /// of 128 is about -48). Opus callers' own voice-activity flag is used where their packets
    /// carry one (see the README).
    pub silence_threshold: f32,
    /// This much silence ends the message (Asterisk `maxsilence`); `"0s"` never ends it.
    pub silence_timeout: ConfigDuration,
    /// Whether the caller's `#` key ends the message (and skips the greeting).
    pub hash_ends: bool,
    /// Where this mailbox keeps its messages; default `<voicemail.directory>/<name>`.
    pub directory: Option<PathBuf>,
    /// `"ogg-opus"` (Opus callers' packets copied as they are) or `"wav"` (16-bit PCM).
    pub format: RecordingFormat,
    /// Messages kept at most; callers of a full mailbox are told so (Asterisk `maxmsg`).
    pub max_messages: u32,
    /// Which ways of pressing keys are heard (`#`, and the owner's menu). In-band detection
    /// decodes every caller's audio, so it is off by default here.
    pub dtmf: DtmfSourcesConfig,
    /// `[endpoints.<name>.follow_me]`: ring the owner first, and record only when nobody
    /// answers.
    pub follow_me: Option<FollowMeConfig>,
    /// Where the owners' links point: `"upload"` (the server's upload service, found or named
    /// by `voicemail.upload`, else the gateway's own server) or `"gateway"` (always the
    /// gateway's own server, `[http]`: the link lasts as long as the message is kept, where an
    /// upload lasts as long as the server keeps it).
    pub delivery: Delivery,
}

/// A mailbox's follow-me: whom to ring before recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowMeConfig {
    /// JIDs to ring; the mailbox's owners when left empty.
    pub targets: Vec<String>,
    /// `all` at once, or `hunt` one after the other.
    pub ring: RingStrategy,
    /// How long each target rings.
    pub ring_timeout: ConfigDuration,
    /// Played to the caller, repeated, while ringing.
    pub ringback: String,
}

impl Default for FollowMeConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            ring: RingStrategy::All,
            ring_timeout: RING_TIMEOUT,
            ringback: RINGBACK_PROMPT.into(),
        }
    }
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            owners: Vec::new(),
            greeting: "builtin:vm-greeting".into(),
            beep: true,
            max_length: ConfigDuration::secs(180),
            min_length: ConfigDuration::secs(1),
            silence_threshold: -48.0,
            silence_timeout: ConfigDuration::secs(10),
            hash_ends: true,
            directory: None,
            format: RecordingFormat::OggOpus,
            max_messages: 100,
            dtmf: DtmfSourcesConfig {
                rfc4733: true,
                inband: false,
                chat: true,
            },
            follow_me: None,
            delivery: Delivery::Upload,
        }
    }
}

/// Where a mailbox's links point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// The server's upload service where there is one, else the gateway's own server.
    Upload,
    /// The gateway's own server.
    Gateway,
}

/// How messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordingFormat {
    /// Ogg Opus (`.ogg`): Opus callers' packets as they came, G.711 callers encoded.
    OggOpus,
    /// WAV (`.wav`), 16-bit mono: 8 kHz for G.711 callers, 16 kHz for Opus callers.
    Wav,
}

impl RecordingFormat {
    /// The file name extension.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::OggOpus => "ogg",
            Self::Wav => "wav",
        }
    }

    /// The MIME type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::OggOpus => "audio/ogg",
            Self::Wav => "audio/wav",
        }
    }

    /// The format of a file name extension.
    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "ogg" => Some(Self::OggOpus),
            "wav" => Some(Self::Wav),
            _ => None,
        }
    }
}

/// `[voicemail]`: what all mailboxes share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoicemailConfig {
    /// Directory of the mailboxes (each in a subdirectory named after it); relative to
    /// `storage.data_dir`.
    pub directory: PathBuf,
    /// XEP-0363 HTTP upload of recordings: `"auto"` (the XMPP server's upload service, found
    /// by service discovery; the gateway's own `[http]` server when there is none), `"off"`, or
    /// the JID of an upload service.
    pub upload: String,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("voicemail"),
            upload: "auto".into(),
        }
    }
}

impl MailboxConfig {
    /// Whether `jid` (a bare or full JID) is one of the owners.
    pub fn is_owner(&self, jid: &str) -> bool {
        let bare = jid.split('/').next().unwrap_or(jid);
        self.owners.iter().any(|o| o.eq_ignore_ascii_case(bare))
    }

    /// Problems in one mailbox's settings.
    pub fn validate(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.owners.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.owners"),
                "a mailbox needs at least one owner JID to deliver messages to",
            ));
        }
        for (i, owner) in self.owners.iter().enumerate() {
            match jid::BareJid::new(owner) {
                Ok(jid) if jid.node().is_some() => {}
                _ => errors.push(ConfigError::new(
                    format!("{key}.owners[{i}]"),
                    format!("`{owner}` is not a user's bare JID such as \"alice@example.org\""),
                )),
            }
        }
        if self.greeting.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.greeting"),
                "must name a prompt (default \"builtin:vm-greeting\")",
            ));
        }
        if self.max_length.0.as_secs() < 1 {
            errors.push(ConfigError::new(
                format!("{key}.max_length"),
                "must be at least 1s",
            ));
        }
        if self.min_length >= self.max_length {
            errors.push(ConfigError::new(
                format!("{key}.min_length"),
                format!("must be shorter than max_length ({})", self.max_length),
            ));
        }
        if !(-96.0..=0.0).contains(&self.silence_threshold) {
            errors.push(ConfigError::new(
                format!("{key}.silence_threshold"),
                "must be a level from -96 to 0 (dBFS)",
            ));
        }
        if self.max_messages == 0 {
            errors.push(ConfigError::new(
                format!("{key}.max_messages"),
                "must be at least 1",
            ));
        }
        if let Some(follow_me) = &self.follow_me {
            errors.extend(validate_ringing(
                &format!("{key}.follow_me"),
                &self.follow_me_targets(),
                follow_me.ring_timeout,
            ));
        }
        errors
    }

    /// Whom follow-me rings: its targets, or the owners.
    pub fn follow_me_targets(&self) -> Vec<String> {
        match &self.follow_me {
            Some(f) if !f.targets.is_empty() => f.targets.clone(),
            Some(_) => self.owners.clone(),
            None => Vec::new(),
        }
    }

    /// Every JID the mailbox may ring, with the key that names it.
    pub fn dial_targets(&self, key: &str) -> Vec<(String, String)> {
        match &self.follow_me {
            Some(f) if f.targets.is_empty() => self
                .owners
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("{key}.owners[{i}]"), o.clone()))
                .collect(),
            Some(f) => target_keys(&format!("{key}.follow_me"), &f.targets),
            None => Vec::new(),
        }
    }

    /// Every prompt the mailbox plays, with the key that names it.
    pub fn prompts(&self, key: &str) -> Vec<(String, String)> {
        let mut uses = vec![(format!("{key}.greeting"), self.greeting.clone())];
        if self.beep {
            uses.push((format!("{key}.beep"), BEEP_PROMPT.to_string()));
        }
        if let Some(follow_me) = &self.follow_me {
            uses.push((
                format!("{key}.follow_me.ringback"),
                follow_me.ringback.clone(),
            ));
        }
        uses
    }
}

/// Problems in `[voicemail]` and `[http]`, given whether any mailbox is configured.
pub fn validate_delivery(
    voicemail: &VoicemailConfig,
    http: &HttpConfig,
    has_mailboxes: bool,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    match voicemail.upload.as_str() {
        "auto" | "off" => {}
        other => {
            if jid::BareJid::new(other).is_err() {
                errors.push(ConfigError::new(
                    "voicemail.upload",
                    format!("`{other}` is not \"auto\", \"off\" or the JID of an upload service"),
                ));
            }
        }
    }
    if voicemail.directory.as_os_str().is_empty() {
        errors.push(ConfigError::new("voicemail.directory", "must not be empty"));
    }
    if let Some(url) = &http.public_url {
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() > "https://".len()
            && !url.contains(char::is_whitespace);
        if !valid {
            errors.push(ConfigError::new(
                "http.public_url",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        if http.bind.is_none() {
            errors.push(ConfigError::new(
                "http.public_url",
                "is set but http.bind is not: the gateway serves nothing there",
            ));
        }
    }
    if has_mailboxes && voicemail.upload == "off" && http.bind.is_none() {
        errors.push(ConfigError::new(
            "http.bind",
            "mailboxes need a way to hand recordings to their owners: set http.bind (the \
             gateway serves them) or voicemail.upload",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::testing::mailbox_config as mailbox;

    #[test]
    fn mailbox_mistakes_name_their_key() {
        let errors = mailbox(
            "owners = [\"not a jid\", \"gw.test\"]\nmin_length = \"5m\"\nsilence_threshold = 3.0\n\
             max_messages = 0\nformat = \"mp3\"\n",
            "[voicemail]\nupload = \"off\"\n[http]\npublic_url = \"ftp://x\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "endpoints.vm.owners[0]",
            "endpoints.vm.owners[1]",
            "endpoints.vm.min_length",
            "endpoints.vm.silence_threshold",
            "endpoints.vm.max_messages",
            "endpoints.vm.format",
            "http.public_url",
            "http.bind",
        ] {
            assert!(keys.contains(&key), "{key} missing from {errors:?}");
        }
        let errors = mailbox("", "").unwrap_err();
        assert_eq!(errors[0].0, "endpoints.vm.owners");
        // Links from the gateway's own server need that server.
        let errors = mailbox("owners = [\"a@b\"]\ndelivery = \"gateway\"\n", "").unwrap_err();
        assert_eq!(errors[0].0, "endpoints.vm.delivery", "{errors:?}");
        let served = "[http]\nbind = \"127.0.0.1:0\"\n";
        assert!(mailbox("owners = [\"a@b\"]\ndelivery = \"gateway\"\n", served).is_ok());
        let errors = mailbox("owners = [\"a@b\"]\ndelivery = \"ftp\"\n", "").unwrap_err();
        assert!(errors[0].0.starts_with("endpoints.vm"), "{errors:?}");
    }
}
