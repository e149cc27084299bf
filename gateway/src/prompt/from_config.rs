//! The prompt library a config asks for: every prompt its endpoints name (with the key naming
//! each), found where the config says (its prompt directory, or the built-in samples).

use super::{PromptLibrary, PromptSource};
use crate::config::{Config, ConfigErrors, ConfigOrigin};

impl PromptLibrary {
    /// Loads every prompt `config` names (the check `check-config` and the start share).
    pub fn for_config(config: &Config) -> Result<Self, ConfigErrors> {
        Self::load(
            &source(config),
            &uses(config),
            config.prompts.max_length.0.as_secs(),
            config.prompts.cache_mib as usize * (1 << 20),
        )
        .map_err(ConfigErrors)
    }
}

/// Every prompt `config` names, with the key that names it.
pub fn uses(config: &Config) -> Vec<(String, String)> {
    config
        .endpoints
        .iter()
        .flat_map(|(name, endpoint)| endpoint.settings.prompts(&format!("endpoints.{name}")))
        .collect()
}

/// Where `config`'s prompt files are.
pub fn source(config: &Config) -> PromptSource {
    match &config.origin {
        ConfigOrigin::Builtin => PromptSource::Builtin,
        origin => PromptSource::Directory(origin.resolve(&config.prompts.directory)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mailbox_config as mailbox;

    #[test]
    fn a_broken_missing_or_escaping_greeting_is_named() {
        for (greeting, says) in [
            ("missing.wav", "missing.wav"),
            ("not-audio.wav", "not a WAV"),
            ("../../Cargo.toml", "outside the prompt directory"),
            ("builtin:nope", "not a built-in prompt"),
        ] {
            let settings = format!("owners = [\"a@b\"]\ngreeting = \"{greeting}\"\n");
            let problems = match mailbox(&settings, "") {
                Ok(config) => PromptLibrary::for_config(&config)
                    .unwrap_err()
                    .0
                    .into_iter()
                    .map(|e| (e.key, e.message))
                    .collect(),
                Err(problems) => problems,
            };
            assert_eq!(problems.len(), 1, "{greeting}: {problems:?}");
            assert_eq!(problems[0].0, "endpoints.vm.greeting", "{greeting}");
            assert!(
                problems[0].1.contains(says),
                "{greeting}: {}",
                problems[0].1
            );
        }
        let good = mailbox(
            "owners = [\"a@b\"]\ngreeting = \"tone440-8k-mono.wav\"\n",
            "",
        )
        .unwrap();
        assert!(PromptLibrary::for_config(&good).is_ok());
    }
}
