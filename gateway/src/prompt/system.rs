//! System prompts built into every gateway (`config/prompts/system`): what voicemail says to
//! callers and to mailbox owners, and the call doctor's introduction. The config names them `builtin:NAME`; a config can replace
//! the greeting with its own file.

macro_rules! system_prompts {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../../config/prompts/system/", $name, ".opus")))),*]
    };
}

/// What the call doctor says first.
pub const DOCTOR_INTRO: &str = "builtin:doctor-intro";

/// Every system prompt: name and Ogg Opus bytes.
const SYSTEM: &[(&str, &[u8])] = system_prompts!(
    "doctor-intro",
    "no-answer",
    "vm-greeting",
    "vm-saved",
    "vm-too-short",
    "vm-full",
    "vm-storage-error",
    "vm-you-have",
    "vm-new-messages",
    "vm-new-message",
    "vm-and",
    "vm-saved-messages",
    "vm-saved-message",
    "vm-main-menu",
    "vm-message",
    "vm-after-message",
    "vm-deleted",
    "vm-no-more",
    "vm-first",
    "vm-no-messages",
    "vm-goodbye",
    "num-0",
    "num-1",
    "num-2",
    "num-3",
    "num-4",
    "num-5",
    "num-6",
    "num-7",
    "num-8",
    "num-9",
    "num-10",
    "num-11",
    "num-12",
    "num-13",
    "num-14",
    "num-15",
    "num-16",
    "num-17",
    "num-18",
    "num-19",
    "num-20",
    "num-many",
);

/// The Ogg Opus bytes of the system prompt `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    SYSTEM.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of every system prompt.
pub fn names() -> Vec<&'static str> {
    SYSTEM.iter().map(|(n, _)| *n).collect()
}

/// Every system prompt as a spec (`builtin:NAME`); loaded whenever a mailbox is configured.
pub fn specs() -> Vec<String> {
    SYSTEM
        .iter()
        .map(|(name, _)| format!("builtin:{name}"))
        .collect()
}

/// The prompt that says `n` ("no" for 0, "more than twenty" above 20).
pub fn number(n: usize) -> String {
    if n <= 20 {
        format!("builtin:num-{n}")
    } else {
        "builtin:num-many".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_is_built_in() {
        for n in 0..25 {
            let spec = number(n);
            assert!(
                find(spec.strip_prefix("builtin:").unwrap()).is_some(),
                "{n}"
            );
        }
        assert_eq!(specs().len(), names().len());
    }
}
