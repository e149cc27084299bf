//! The endpoint kinds: each is a [`Kind`] in its own file (its config keys, their checks, and how
//! it answers a call), and [`KINDS`] lists them. Adding a kind is its file plus one line there.

use std::any::Any;
use std::sync::Arc;

use toml::Table;

use super::Endpoint;
use crate::config::{ConfigError, EndpointKinds, EndpointSettings};
use crate::mailbox::Mailboxes;
use crate::prompt::PromptLibrary;
use crate::types::{Codec, EndReason};

/// Every endpoint kind of this gateway, in the order `kind`'s error message lists them.
pub static KINDS: Kinds = Kinds(&[
    &super::echo::KIND,
    &super::voicemail::KIND,
    &super::ivr::KIND,
    &super::sound::KIND,
    &super::doctor::KIND,
]);

/// One kind of endpoint, picked in the config by `kind = "<name>"`.
pub trait Kind: Sync {
    /// The value of `kind` that picks it.
    fn name(&self) -> &'static str;

    /// Reads its settings (the endpoint's keys besides `kind`, `name` and `callers`, found at
    /// `key`), every problem in `errors`; `None` when they cannot be used. Checks that need
    /// the rest of the config are [`EndpointSettings::validate`].
    fn settings(
        &self,
        key: &str,
        table: Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>>;

    /// A new endpoint for `call`, with the settings this kind read, or why there is none.
    fn create(
        &self,
        settings: &Arc<dyn EndpointSettings>,
        call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason>;
}

/// What a kind may use to answer a call.
pub struct NewCall<'a> {
    /// The local part of the virtual JID called.
    pub virtual_jid: &'a str,
    /// The caller.
    pub peer: &'a jid::FullJid,
    /// The call's codec.
    pub codec: Codec,
    /// The prompts of the running config, encoded on demand.
    pub prompts: &'a Arc<PromptLibrary>,
    /// The mailboxes of the running config.
    pub mailboxes: &'a Arc<Mailboxes>,
}

/// A list of kinds, as the config loader asks for them.
pub struct Kinds(&'static [&'static dyn Kind]);

impl Kinds {
    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&'static dyn Kind> {
        self.0.iter().copied().find(|kind| kind.name() == name)
    }
}

impl EndpointKinds for Kinds {
    fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|kind| kind.name()).collect()
    }

    fn read(
        &self,
        kind: &str,
        key: &str,
        table: Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        self.get(kind)?.settings(key, table, errors)
    }
}

/// `settings` as the kind's own type `T` (a kind's `create` gets the settings its `settings`
/// made, so this fails only on a kind mixing up its types: the call is refused, not panicked on).
pub fn settings_of<T: EndpointSettings>(
    settings: &Arc<dyn EndpointSettings>,
) -> Result<Arc<T>, EndReason> {
    let any: Arc<dyn Any + Send + Sync> = settings.clone();
    any.downcast::<T>()
        .map_err(|_| EndReason::EndpointUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{read_settings, Config};

    /// A kind written as a new one would be: its settings, its checks and its endpoint in one
    /// place, known to the config only through the list it is in.
    struct Beacon;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BeaconSettings {
        prompt: String,
        repeat: u32,
    }

    impl EndpointSettings for BeaconSettings {
        fn validate(&self, key: &str, config: &Config) -> Vec<ConfigError> {
            if self.repeat > config.calls.max_calls {
                return vec![ConfigError::new(format!("{key}.repeat"), "too many")];
            }
            Vec::new()
        }

        fn prompts(&self, key: &str) -> Vec<(String, String)> {
            vec![(format!("{key}.prompt"), self.prompt.clone())]
        }

        fn default_callers(&self) -> Option<Vec<String>> {
            Some(vec!["@local".into()])
        }
    }

    impl Kind for Beacon {
        fn name(&self) -> &'static str {
            "beacon"
        }

        fn settings(
            &self,
            key: &str,
            table: Table,
            errors: &mut Vec<ConfigError>,
        ) -> Option<Arc<dyn EndpointSettings>> {
            read_settings::<BeaconSettings>(key, table, errors)
        }

        fn create(
            &self,
            settings: &Arc<dyn EndpointSettings>,
            _call: &NewCall<'_>,
        ) -> Result<Box<dyn Endpoint>, EndReason> {
            let settings = settings_of::<BeaconSettings>(settings)?;
            assert_eq!(settings.repeat, 3);
            Ok(Box::new(super::super::Echo::default()))
        }
    }

    static WITH_BEACON: Kinds = Kinds(&[&Beacon, &super::super::echo::KIND]);

    fn load(settings: &str) -> Result<Config, Vec<(String, String)>> {
        let text = format!(
            "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n\
             [endpoints.lighthouse]\nkind = \"beacon\"\n{settings}"
        );
        Config::from_toml_str(&text, Vec::new(), &WITH_BEACON)
            .map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
    }

    #[test]
    fn a_new_kind_is_read_checked_and_created_through_the_list_alone() {
        let config = load("prompt = \"tone:440:250ms\"\nrepeat = 3\n").unwrap();
        let lighthouse = &config.endpoints["lighthouse"];
        assert_eq!(lighthouse.kind, "beacon");
        assert_eq!(
            crate::prompt::uses(&config),
            [(
                "endpoints.lighthouse.prompt".to_string(),
                "tone:440:250ms".to_string()
            )]
        );
        assert_eq!(lighthouse.callers_entries(&["*".into()]), ["@local"]);
        let prompts = Arc::new(crate::prompt::PromptLibrary::for_config(&config).unwrap());
        let (mailboxes, _) =
            Mailboxes::open(&config, Arc::new(crate::metrics::Metrics::new())).unwrap();
        let peer = jid::FullJid::new("alice@localhost/phone").unwrap();
        let call = NewCall {
            virtual_jid: "lighthouse",
            peer: &peer,
            codec: Codec::Pcmu,
            prompts: &prompts,
            mailboxes: &mailboxes,
        };
        assert!(Beacon.create(&lighthouse.settings, &call).is_ok());
        // Another kind's settings are refused, not panicked on.
        let echo = Config::from_toml_str(
            "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n[endpoints.e]\nkind = \"echo\"\n",
            Vec::new(),
            &WITH_BEACON,
        )
        .unwrap();
        assert_eq!(
            Beacon.create(&echo.endpoints["e"].settings, &call).err(),
            Some(EndReason::EndpointUnavailable)
        );
    }

    #[test]
    fn a_new_kinds_mistakes_name_their_keys() {
        let keys = |settings: &str| -> Vec<String> {
            load(settings)
                .unwrap_err()
                .into_iter()
                .map(|(key, _)| key)
                .collect()
        };
        assert_eq!(
            keys("prompt = \"x\"\nrepeat = 99999\n"),
            ["endpoints.lighthouse.repeat"]
        );
        assert_eq!(
            keys("prompt = \"x\"\nrepeat = 1\nvolume = 2\n"),
            ["endpoints.lighthouse.volume"]
        );
        // Missing settings: the endpoint is named, and without it the config has none.
        assert_eq!(keys(""), ["endpoints.lighthouse", "endpoints"]);
        let text = "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n\
                    [endpoints.v]\nkind = \"voicemail\"\n";
        let other = Config::from_toml_str(text, Vec::new(), &WITH_BEACON).unwrap_err();
        assert_eq!(other.0[0].key, "endpoints.v.kind");
        assert!(
            other.0[0].message.contains("beacon, echo"),
            "{}",
            other.0[0].message
        );
    }
}
