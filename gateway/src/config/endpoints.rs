//! `[endpoints.<name>]`: the virtual JIDs. The config reads the keys every endpoint has (`kind`,
//! `name`, `callers`) and hands the rest to the kind that `kind` names; the kinds themselves are
//! not known here (they are in `crate::endpoint`, which gives them to the loader), so a new kind
//! does not touch the config module.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::error::ConfigError;
use super::schema::Config;

/// `[endpoints.<name>]`: one virtual JID, `<name>@<xmpp.domain>`.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Name shown to users (disco identity, presence status); defaults to the JID's local part.
    pub name: Option<String>,
    /// Who may call this JID (entries as in `calls.callers`); unset: the kind's default callers,
    /// else `calls.callers`.
    pub callers: Option<Vec<String>>,
    /// The value of `kind`: what answers calls to this JID.
    pub kind: &'static str,
    /// That kind's own settings, read and checked by it.
    pub settings: Arc<dyn EndpointSettings>,
}

impl EndpointConfig {
    /// The settings as the kind's own type `T`, if they are of that type.
    pub fn settings_as<T: Any>(&self) -> Option<&T> {
        (self.settings.as_ref() as &dyn Any).downcast_ref::<T>()
    }

    /// The `callers` entries that apply to this JID, `default` being `calls.callers`.
    pub fn callers_entries(&self, default: &[String]) -> Vec<String> {
        self.callers
            .clone()
            .or_else(|| self.settings.default_callers())
            .unwrap_or_else(|| default.to_vec())
    }
}

/// One endpoint's settings (the keys of its table besides `kind`, `name` and `callers`), as
/// its kind read them; what the rest of the gateway may ask of any kind.
pub trait EndpointSettings: std::fmt::Debug + Send + Sync + Any {
    /// Whether this build of the gateway can answer calls with it (a kind behind a cargo
    /// feature says no when built without it: its JIDs stay listed and refuse calls).
    fn available(&self) -> bool {
        true
    }

    /// Problems only the rest of `config` shows (a menu's transfer to a JID that does not
    /// exist, a delivery the HTTP server cannot serve), each under `key` (`endpoints.<name>`).
    fn validate(&self, _key: &str, _config: &Config) -> Vec<ConfigError> {
        Vec::new()
    }

    /// The JIDs it may ring, each with the key naming it (checked against `[outbound]`).
    fn dial_targets(&self, _key: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The prompts it plays, each with the key naming it (loaded and checked at start).
    fn prompts(&self, _key: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Who may call it when `callers` is unset, if not `calls.callers`.
    fn default_callers(&self) -> Option<Vec<String>> {
        None
    }
}

/// The endpoint kinds a config may name (the gateway's are `crate::endpoint::KINDS`).
pub trait EndpointKinds {
    /// Every value the key `kind` accepts.
    fn names(&self) -> Vec<&'static str>;

    /// `table` (the keys of `[endpoints.<name>]` besides `kind`, `name` and `callers`, found
    /// at `key`) read as the settings of the kind `kind`, one of [`EndpointKinds::names`];
    /// `None` when they cannot be used, with every problem in `errors`.
    fn read(
        &self,
        kind: &str,
        key: &str,
        table: Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>>;
}

/// `table` (found at `key`) read into the settings type `T` with serde, every unknown key and
/// bad value reported; for [`EndpointKinds::read`].
pub fn read_settings<T: DeserializeOwned + EndpointSettings>(
    key: &str,
    table: Table,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn EndpointSettings>> {
    super::load::typed::<T>(Value::Table(table), key, errors)
        .map(|settings| Arc::new(settings) as Arc<dyn EndpointSettings>)
}

/// Reports every key of `table` (found at `key`) as unknown, for a kind that has no settings.
pub fn no_settings(kind: &str, key: &str, table: &Table, errors: &mut Vec<ConfigError>) {
    for extra in table.keys() {
        errors.push(ConfigError::new(
            format!("{key}.{extra}"),
            format!("unknown key (an {kind} endpoint has only `kind`, `name` and `callers`)"),
        ));
    }
}

/// Reads `[endpoints.<name>]` tables: `kind` picks the endpoint among `kinds`, the other keys
/// are its settings.
pub(super) fn endpoints(
    value: Option<Value>,
    kinds: &dyn EndpointKinds,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, EndpointConfig> {
    let mut endpoints = BTreeMap::new();
    let Some(value) = value else {
        return endpoints;
    };
    let Value::Table(table) = value else {
        errors.push(ConfigError::new(
            "endpoints",
            "must be a table of [endpoints.<name>] tables",
        ));
        return endpoints;
    };
    let names = kinds.names();
    for (name, value) in table {
        let key = format!("endpoints.{name}");
        let Value::Table(mut settings) = value else {
            errors.push(ConfigError::new(key, "must be a table"));
            continue;
        };
        let display_name = match settings.remove("name") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                errors.push(ConfigError::new(format!("{key}.name"), "must be a string"));
                None
            }
        };
        let callers = match settings.remove("callers") {
            None => None,
            Some(Value::Array(entries)) => {
                let strings: Option<Vec<String>> = entries
                    .into_iter()
                    .map(|e| e.as_str().map(str::to_string))
                    .collect();
                if strings.is_none() {
                    errors.push(ConfigError::new(
                        format!("{key}.callers"),
                        "must be a list of strings",
                    ));
                }
                strings
            }
            Some(_) => {
                errors.push(ConfigError::new(
                    format!("{key}.callers"),
                    "must be a list of strings",
                ));
                None
            }
        };
        let kind = match settings.remove("kind") {
            Some(Value::String(kind)) => match names.iter().find(|known| **known == kind) {
                Some(known) => *known,
                None => {
                    errors.push(ConfigError::new(
                        format!("{key}.kind"),
                        format!(
                            "unknown endpoint kind `{kind}` (expected one of: {})",
                            names.join(", ")
                        ),
                    ));
                    continue;
                }
            },
            Some(_) => {
                errors.push(ConfigError::new(format!("{key}.kind"), "must be a string"));
                continue;
            }
            None => {
                errors.push(ConfigError::new(
                    format!("{key}.kind"),
                    format!("is required (one of: {})", names.join(", ")),
                ));
                continue;
            }
        };
        let Some(settings) = kinds.read(kind, &key, settings, errors) else {
            continue;
        };
        endpoints.insert(
            name,
            EndpointConfig {
                name: display_name,
                callers,
                kind,
                settings,
            },
        );
    }
    endpoints
}
