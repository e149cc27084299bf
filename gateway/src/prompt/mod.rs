//! Prompts: audio files and inline tones played to callers. Every prompt the config names is
//! loaded and checked at start (missing, corrupt, empty, too long, outside the prompt
//! directory); its audio is kept once as 48 kHz mono, encoded once per codec on first use, and
//! the encoded frames are shared by every call in a cache of bounded size.

pub mod decode;
mod from_config;
mod library;
mod spec;
pub mod system;

pub use from_config::{source, uses};
pub use library::{blocking, EncodedPrompt, PromptLibrary, PromptSource};
pub use spec::{PromptSpec, PromptSpecError};
