//! The prompt library: every prompt the config names, loaded and checked at start, kept as 48 kHz
//! mono, and encoded per codec on first use into a cache bounded in bytes (least recently used
//! encodings go first and are made again when needed).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::decode::{decode, read_limited};
use super::spec::PromptSpec;
use crate::config::ConfigError;
use crate::media::codec::{AudioFrame, Encoder, FRAME_SAMPLES};
use crate::types::Codec;

/// Largest prompt file read, in bytes.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The sample prompts of `config/prompts`, built in for the built-in example config.
const BUILTIN: &[(&str, &[u8])] = &[
    (
        "welcome.opus",
        include_bytes!("../../../config/prompts/welcome.opus"),
    ),
    (
        "main-short.opus",
        include_bytes!("../../../config/prompts/main-short.opus"),
    ),
    (
        "more.opus",
        include_bytes!("../../../config/prompts/more.opus"),
    ),
    (
        "number-sent.opus",
        include_bytes!("../../../config/prompts/number-sent.opus"),
    ),
    (
        "invalid.opus",
        include_bytes!("../../../config/prompts/invalid.opus"),
    ),
    (
        "goodbye.opus",
        include_bytes!("../../../config/prompts/goodbye.opus"),
    ),
];

/// Where prompt files are found.
#[derive(Debug, Clone)]
pub enum PromptSource {
    /// Files under this directory (paths may not leave it).
    Directory(PathBuf),
    /// The sample prompts built into the binary.
    Builtin,
}

/// A prompt encoded in one codec: one payload per 20 ms.
#[derive(Debug)]
pub struct EncodedPrompt {
    /// The payloads, in order.
    pub frames: Vec<Bytes>,
    bytes: usize,
}

#[derive(Default)]
struct EncodedCache {
    entries: HashMap<(String, Codec), Arc<EncodedPrompt>>,
    recent: VecDeque<(String, Codec)>,
    bytes: usize,
}

/// Every prompt of the config.
pub struct PromptLibrary {
    prompts: HashMap<String, Arc<[i16]>>,
    encoded: Mutex<EncodedCache>,
    cache_limit: usize,
}

impl std::fmt::Debug for PromptLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptLibrary")
            .field("prompts", &self.prompts.len())
            .field("cache_limit", &self.cache_limit)
            .finish()
    }
}

impl PromptLibrary {
    /// Loads every prompt in `uses` (the config key that names it, and its spec), refusing
    /// prompts longer than `max_seconds`. Returns every problem, each with its key.
    pub fn load(
        source: &PromptSource,
        uses: &[(String, String)],
        max_seconds: u64,
        cache_limit: usize,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut prompts = HashMap::new();
        let mut errors = Vec::new();
        for (key, text) in uses {
            if prompts.contains_key(text) {
                continue;
            }
            match load_one(source, text, max_seconds) {
                Ok(samples) => {
                    prompts.insert(text.clone(), Arc::from(samples));
                }
                Err(message) => errors.push(ConfigError::new(key.clone(), message)),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                prompts,
                encoded: Mutex::new(EncodedCache::default()),
                cache_limit,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether `spec` was loaded.
    pub fn contains(&self, spec: &str) -> bool {
        self.prompts.contains_key(spec)
    }

    /// The prompt's audio, 48 kHz mono.
    pub fn samples(&self, spec: &str) -> Option<Arc<[i16]>> {
        self.prompts.get(spec).cloned()
    }

    /// Bytes held by encoded prompts now.
    pub fn cached_bytes(&self) -> usize {
        self.encoded.lock().map(|c| c.bytes).unwrap_or(0)
    }

    /// The prompt encoded in `codec`: from the cache, or encoded now (once, whoever asks).
    pub fn encoded(&self, spec: &str, codec: Codec) -> Option<Arc<EncodedPrompt>> {
        let key = (spec.to_string(), codec);
        let samples = self.prompts.get(spec)?;
        // Encoding under the lock: concurrent callers of the same prompt wait for one encoding
        // rather than each making their own.
        let mut cache = self.encoded.lock().ok()?;
        if let Some(found) = cache.entries.get(&key).cloned() {
            cache.recent.retain(|k| *k != key);
            cache.recent.push_back(key);
            return Some(found);
        }
        let encoded = Arc::new(blocking(|| encode(samples, codec))?);
        cache.bytes += encoded.bytes;
        cache.entries.insert(key.clone(), encoded.clone());
        cache.recent.push_back(key);
        while cache.bytes > self.cache_limit && cache.recent.len() > 1 {
            if let Some(oldest) = cache.recent.pop_front() {
                if let Some(evicted) = cache.entries.remove(&oldest) {
                    cache.bytes -= evicted.bytes;
                }
            }
        }
        Some(encoded)
    }
}

/// Runs CPU-heavy work off the async worker when called from the runtime.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn encode(samples: &[i16], codec: Codec) -> Option<EncodedPrompt> {
    let mut encoder = Encoder::new(codec).ok()?;
    let mut out = vec![0u8; 1500];
    let mut frames = Vec::with_capacity(samples.len() / FRAME_SAMPLES + 1);
    let mut bytes = 0;
    for chunk in samples.chunks(FRAME_SAMPLES) {
        let mut frame: AudioFrame = [0; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        let n = encoder.encode(&frame, &mut out).ok()?;
        bytes += n + std::mem::size_of::<Bytes>();
        frames.push(Bytes::copy_from_slice(&out[..n]));
    }
    Some(EncodedPrompt { frames, bytes })
}

fn load_one(source: &PromptSource, text: &str, max_seconds: u64) -> Result<Vec<i16>, String> {
    let spec = PromptSpec::parse(text).map_err(|e| e.to_string())?;
    if let Some(samples) = spec.synthesize() {
        return Ok(samples);
    }
    let relative = match spec {
        PromptSpec::File(relative) => relative,
        PromptSpec::Builtin(name) => {
            let bytes = super::system::find(&name).ok_or_else(|| format!("`{text}` is unknown"))?;
            return decode(bytes, Some("opus"), max_seconds).map_err(|e| format!("{text}: {e}"));
        }
        _ => return Err(format!("`{text}` is not a prompt")),
    };
    let extension = relative
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_string);
    let bytes = match source {
        PromptSource::Builtin => BUILTIN
            .iter()
            .find(|(name, _)| Path::new(name) == relative)
            .map(|(_, bytes)| bytes.to_vec())
            .ok_or_else(|| {
                format!(
                    "{text}: not a built-in prompt (built in: {}); give a config file with prompts.directory",
                    BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )
            })?,
        PromptSource::Directory(directory) => {
            let path = inside(directory, &relative)?;
            read_limited(&path, MAX_FILE_BYTES).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    decode(&bytes, extension.as_deref(), max_seconds).map_err(|e| format!("{text}: {e}"))
}

/// `relative` resolved under `directory`, refusing paths (or links) that leave it.
fn inside(directory: &Path, relative: &Path) -> Result<PathBuf, String> {
    let escapes = relative.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if escapes {
        return Err(format!(
            "{}: outside the prompt directory {} (use a path inside it)",
            relative.display(),
            directory.display()
        ));
    }
    let root = directory
        .canonicalize()
        .map_err(|e| format!("prompt directory {}: {e}", directory.display()))?;
    let path = root.join(relative);
    let resolved = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "{}: outside the prompt directory {}",
            relative.display(),
            root.display()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PromptSource {
        PromptSource::Directory(
            format!("{}/../tests/fixtures/audio", env!("CARGO_MANIFEST_DIR")).into(),
        )
    }

    fn uses(specs: &[&str]) -> Vec<(String, String)> {
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("menus.m{i}.greeting"), s.to_string()))
            .collect()
    }

    #[test]
    fn every_problem_names_its_key_and_file() {
        let errors = PromptLibrary::load(
            &fixtures(),
            &uses(&[
                "tone440-8k-mono.wav",
                "missing.wav",
                "not-audio.wav",
                "../../../Cargo.toml",
                "truncated.flac",
                "empty.wav",
                "tone:nope:1s",
            ]),
            60,
            1 << 20,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "menus.m1.greeting",
                "menus.m2.greeting",
                "menus.m3.greeting",
                "menus.m4.greeting",
                "menus.m5.greeting",
                "menus.m6.greeting"
            ]
        );
        assert!(errors[0].message.contains("missing.wav"));
        assert!(
            errors[2].message.contains("outside the prompt directory"),
            "{}",
            errors[2].message
        );
    }

    #[test]
    fn encoded_once_per_codec_and_shared() {
        let library = PromptLibrary::load(
            &fixtures(),
            &uses(&["tone880.opus", "tone:440:1s"]),
            60,
            1 << 20,
        )
        .unwrap();
        let first = library.encoded("tone:440:1s", Codec::Pcmu).unwrap();
        assert_eq!(first.frames.len(), 50);
        assert!(first.frames.iter().all(|f| f.len() == 160));
        let again = library.encoded("tone:440:1s", Codec::Pcmu).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second caller must share the first encoding"
        );
        let opus = library.encoded("tone880.opus", Codec::Opus).unwrap();
        assert!(!opus.frames.is_empty());
        assert!(library.encoded("not-loaded.wav", Codec::Opus).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_limit() {
        let library = PromptLibrary::load(
            &fixtures(),
            &uses(&["tone:440:1s", "tone:550:1s", "tone:660:1s"]),
            60,
            20_000,
        )
        .unwrap();
        for spec in ["tone:440:1s", "tone:550:1s", "tone:660:1s"] {
            library.encoded(spec, Codec::Pcma).unwrap();
            assert!(
                library.cached_bytes() <= 20_000,
                "{} bytes cached",
                library.cached_bytes()
            );
        }
        // Evicted encodings come back on demand.
        assert_eq!(
            library
                .encoded("tone:440:1s", Codec::Pcma)
                .unwrap()
                .frames
                .len(),
            50
        );
    }

    #[test]
    fn built_in_samples_load() {
        let library = PromptLibrary::load(
            &PromptSource::Builtin,
            &uses(&["welcome.opus", "goodbye.opus"]),
            60,
            1 << 20,
        )
        .unwrap();
        assert!(library.samples("welcome.opus").unwrap().len() > 48_000);
        let missing =
            PromptLibrary::load(&PromptSource::Builtin, &uses(&["mine.wav"]), 60, 1 << 20)
                .unwrap_err();
        assert!(missing[0].message.contains("not a built-in prompt"));
    }
}
