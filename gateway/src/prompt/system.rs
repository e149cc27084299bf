//! System prompts built into every gateway (`config/prompts/system`): what voicemail says to
//! callers and to mailbox owners. The config names them `builtin:NAME`; a config can replace
//! the greeting with its own file.

macro_rules! system_prompts {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../../config/prompts/system/", $name, ".opus")))),*]
    };
}

/// Every system prompt: name and Ogg Opus bytes.
const SYSTEM: &[(&str, &[u8])] = system_prompts!(
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

/// The prompts voicemail plays besides each mailbox's greeting; loaded whenever a mailbox is
/// configured.
pub const VOICEMAIL_PROMPTS: &[&str] = &[
    "builtin:vm-saved",
    "builtin:vm-too-short",
    "builtin:vm-full",
    "builtin:vm-storage-error",
    "builtin:vm-you-have",
    "builtin:vm-new-messages",
    "builtin:vm-new-message",
    "builtin:vm-and",
    "builtin:vm-saved-messages",
    "builtin:vm-saved-message",
    "builtin:vm-main-menu",
    "builtin:vm-message",
    "builtin:vm-after-message",
    "builtin:vm-deleted",
    "builtin:vm-no-more",
    "builtin:vm-first",
    "builtin:vm-no-messages",
    "builtin:vm-goodbye",
    "builtin:num-0",
    "builtin:num-1",
    "builtin:num-2",
    "builtin:num-3",
    "builtin:num-4",
    "builtin:num-5",
    "builtin:num-6",
    "builtin:num-7",
    "builtin:num-8",
    "builtin:num-9",
    "builtin:num-10",
    "builtin:num-11",
    "builtin:num-12",
    "builtin:num-13",
    "builtin:num-14",
    "builtin:num-15",
    "builtin:num-16",
    "builtin:num-17",
    "builtin:num-18",
    "builtin:num-19",
    "builtin:num-20",
    "builtin:num-many",
];

/// The Ogg Opus bytes of the system prompt `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    SYSTEM.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of every system prompt.
pub fn names() -> Vec<&'static str> {
    SYSTEM.iter().map(|(n, _)| *n).collect()
}

/// The prompt that says `n` ("no" for 0, "more than twenty" above 20).
pub fn number(n: usize) -> &'static str {
    const NUMBERS: [&str; 21] = [
        "builtin:num-0",
        "builtin:num-1",
        "builtin:num-2",
        "builtin:num-3",
        "builtin:num-4",
        "builtin:num-5",
        "builtin:num-6",
        "builtin:num-7",
        "builtin:num-8",
        "builtin:num-9",
        "builtin:num-10",
        "builtin:num-11",
        "builtin:num-12",
        "builtin:num-13",
        "builtin:num-14",
        "builtin:num-15",
        "builtin:num-16",
        "builtin:num-17",
        "builtin:num-18",
        "builtin:num-19",
        "builtin:num-20",
    ];
    NUMBERS.get(n).copied().unwrap_or("builtin:num-many")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_voicemail_prompt_is_built_in() {
        for spec in VOICEMAIL_PROMPTS {
            let name = spec.strip_prefix("builtin:").unwrap();
            assert!(find(name).is_some(), "{spec}");
        }
        for n in 0..25 {
            assert!(VOICEMAIL_PROMPTS.contains(&number(n)), "{n}");
        }
    }
}
