//! Configuration: one documented TOML schema, `GATEWAY_*` environment overrides, validated once at
//! start with every problem listed.

mod admin;
pub mod callers;
mod duration;
mod endpoints;
mod env;
mod error;
mod http;
mod ivr;
mod load;
mod outbound;
mod schema;
mod sound;
mod validate;
mod voicemail;

pub use admin::AdminConfig;
pub use callers::{CallerList, CallerPattern};
pub use duration::ConfigDuration;
pub use endpoints::{no_settings, read_settings, EndpointConfig, EndpointKinds, EndpointSettings};
pub use error::{ConfigError, ConfigErrors};
pub use http::{HttpConfig, MetricsConfig};
pub use ivr::{ActionConfig, DtmfSourcesConfig, IvrConfig, MenuConfig};
pub use outbound::{OutboundConfig, RingStrategy, RINGBACK_PROMPT};
pub use schema::{
    CallsConfig, Config, ConfigOrigin, DtlsRoleConfig, LogConfig, LogFormat, MediaConfig,
    PromptsConfig, StorageConfig, TurnServerConfig, XmppConfig,
};
pub use sound::{DeviceChoice, SoundDeviceConfig, WhenBusy};
pub use validate::parse_port_range;
pub use voicemail::{
    Delivery, FollowMeConfig, MailboxConfig, RecordingFormat, VoicemailConfig, BEEP_PROMPT,
};

/// The example configuration shipped in `config/gateway.example.toml`, used when no `--config`
/// is given: it works against an XMPP server on localhost:5347 with the component domain
/// `gw.localhost` and the secret `secret`.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../config/gateway.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_valid() {
        let config =
            Config::from_toml_str(EXAMPLE_CONFIG, Vec::new(), &crate::endpoint::KINDS).unwrap();
        assert_eq!(config.xmpp.domain.as_deref(), Some("gw.localhost"));
        assert_eq!(config.xmpp.secret.as_deref(), Some("secret"));
        assert_eq!(config.xmpp.port, 5347);
        for name in ["echo", "voicemail", "ivr"] {
            assert!(config.endpoints.contains_key(name), "example lacks {name}@");
        }
    }

    #[test]
    fn example_config_shows_the_defaults() {
        let config =
            Config::from_toml_str(EXAMPLE_CONFIG, Vec::new(), &crate::endpoint::KINDS).unwrap();
        let defaults = Config::default();
        // domain and secret have no default; everything else in the example is the default.
        let xmpp = XmppConfig {
            domain: None,
            secret: None,
            ..config.xmpp.clone()
        };
        assert_eq!(xmpp, defaults.xmpp);
        assert_eq!(config.calls, defaults.calls);
        assert_eq!(config.media, defaults.media);
        assert_eq!(config.storage, defaults.storage);
        assert_eq!(config.log, defaults.log);
    }
}
