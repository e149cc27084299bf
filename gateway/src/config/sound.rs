//! `kind = "sound-device"`: a bridge between the caller and this machine's speaker and
//! microphone (an intercom, a doorbell speaker, a paging line).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::ConfigError;

/// The settings of a sound device endpoint (`[endpoints.<name>]` with `kind = "sound-device"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SoundDeviceConfig {
    /// Where the caller is heard: a device name from `jingle-gateway devices`, or `false` for
    /// none (a one-way bridge). Not set: the system's default output.
    pub output: DeviceChoice,
    /// What the caller hears: a device name from `jingle-gateway devices`, or `false` for none.
    /// Not set: the system's default input.
    pub input: DeviceChoice,
    /// Gain applied to the caller's audio before it is played (1.0 leaves it as it is).
    pub output_volume: f32,
    /// Gain applied to the captured audio before it is sent to the caller.
    pub input_volume: f32,
    /// What a second call gets while the device is in use: `"busy"` (refused with `<busy/>`)
    /// or `"mix"` (every caller is played at once and hears the input).
    pub when_busy: WhenBusy,
}

impl Default for SoundDeviceConfig {
    fn default() -> Self {
        Self {
            output: DeviceChoice::Default,
            input: DeviceChoice::Default,
            output_volume: 1.0,
            input_volume: 1.0,
            when_busy: WhenBusy::Busy,
        }
    }
}

/// Loudest gain accepted for `output_volume` and `input_volume`.
const MAX_VOLUME: f32 = 8.0;

impl SoundDeviceConfig {
    /// Problems with these settings, keyed under `key` (`endpoints.<name>`).
    pub fn validate(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (name, volume) in [
            ("output_volume", self.output_volume),
            ("input_volume", self.input_volume),
        ] {
            if !(0.0..=MAX_VOLUME).contains(&volume) {
                errors.push(ConfigError::new(
                    format!("{key}.{name}"),
                    format!("must be between 0 and {MAX_VOLUME} (1.0 leaves the level as it is)"),
                ));
            }
        }
        for (name, choice) in [("output", &self.output), ("input", &self.input)] {
            if matches!(choice, DeviceChoice::Named(n) if n.trim().is_empty()) {
                errors.push(ConfigError::new(
                    format!("{key}.{name}"),
                    "is empty: name a device from `jingle-gateway devices`, or false for none",
                ));
            }
        }
        if self.output == DeviceChoice::Off && self.input == DeviceChoice::Off {
            errors.push(ConfigError::new(
                format!("{key}.output"),
                "output and input are both off: enable at least one",
            ));
        }
        errors
    }
}

/// Which device one direction uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The system's default device (`true`, or the key left out).
    Default,
    /// The device with this name (as `jingle-gateway devices` lists it).
    Named(String),
    /// None: this direction is not bridged (`false`).
    Off,
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Default => serializer.serialize_bool(true),
            Self::Named(name) => serializer.serialize_str(name),
            Self::Off => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl Visitor<'_> for ChoiceVisitor {
            type Value = DeviceChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device name, true for the default device, or false for none")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<DeviceChoice, E> {
                Ok(if on {
                    DeviceChoice::Default
                } else {
                    DeviceChoice::Off
                })
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<DeviceChoice, E> {
                Ok(DeviceChoice::Named(name.to_string()))
            }
        }
        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// What a call to a sound device in use gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenBusy {
    /// Refused with the Jingle reason `<busy/>`.
    Busy,
    /// Joined: all callers are played at once, and all hear the input.
    Mix,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(extra: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n\
             [endpoints.lobby]\nkind = \"sound-device\"\n{extra}"
        );
        Config::from_toml_str(&text, Vec::new(), &crate::endpoint::KINDS)
            .map_err(|e| e.0.iter().map(|e| e.key.clone()).collect())
    }

    fn sound(config: &Config) -> &SoundDeviceConfig {
        config.endpoints["lobby"]
            .settings_as::<SoundDeviceConfig>()
            .expect("a sound device")
    }

    #[test]
    fn defaults_use_the_default_devices_and_refuse_a_second_caller() {
        let config = parse("").unwrap();
        let sound = sound(&config);
        assert_eq!(
            (&sound.output, &sound.input),
            (&DeviceChoice::Default, &DeviceChoice::Default)
        );
        assert_eq!((sound.output_volume, sound.input_volume), (1.0, 1.0));
        assert_eq!(sound.when_busy, WhenBusy::Busy);
    }

    #[test]
    fn example_config_shows_the_defaults_of_a_sound_device() {
        let example = crate::config::EXAMPLE_CONFIG;
        let block = &example[example.find("# [endpoints.lobby]").unwrap()..];
        let uncommented: String = block
            .lines()
            .filter(|line| !line.starts_with("# #"))
            .map(|line| line.trim_start_matches("# ").to_string() + "\n")
            .collect();
        let settings = uncommented
            .split_once("name = \"Lobby speaker\"\n")
            .unwrap()
            .1;
        assert_eq!(
            *sound(&parse(settings).unwrap()),
            SoundDeviceConfig::default()
        );
    }

    #[test]
    fn devices_by_name_default_or_off() {
        let config =
            parse("output = \"plughw:CARD=PCH,DEV=0\"\ninput = false\nwhen_busy = \"mix\"\n")
                .unwrap();
        let sound = sound(&config);
        assert_eq!(
            sound.output,
            DeviceChoice::Named("plughw:CARD=PCH,DEV=0".into())
        );
        assert_eq!(sound.input, DeviceChoice::Off);
        assert_eq!(sound.when_busy, WhenBusy::Mix);
        assert_eq!(
            self::sound(&parse("input = true\n").unwrap()).input,
            DeviceChoice::Default
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let keys = parse(
            "output = false\ninput = false\noutput_volume = -1.0\ninput_volume = 99.0\n\
             speaker = \"x\"\n",
        )
        .unwrap_err();
        for key in [
            "endpoints.lobby.output",
            "endpoints.lobby.output_volume",
            "endpoints.lobby.input_volume",
            "endpoints.lobby.speaker",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
        let keys = parse("output = 3\n").unwrap_err();
        assert_eq!(keys, ["endpoints.lobby.output"]);
        assert_eq!(
            parse("input = \"\"\n").unwrap_err(),
            ["endpoints.lobby.input"]
        );
        let keys = parse("input = \"\"\nwhen_busy = \"queue\"\n").unwrap_err();
        assert!(
            keys.iter().any(|k| k == "endpoints.lobby.when_busy"),
            "{keys:?}"
        );
    }
}
