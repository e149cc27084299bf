//! What a prompt is in the config: a file, `tone:FREQ[+FREQ]:DURATION[:OFF]` (a tone, or a
//! repeating cadence with an off time, for ringback and beeps), `silence:DURATION`, or
//! `builtin:NAME` (a system prompt built into the gateway).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigDuration;
use crate::media::codec::SAMPLE_RATE;

/// A prompt as written in the config.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptSpec {
    /// An audio file, relative to the prompt directory.
    File(PathBuf),
    /// One or two mixed sine tones.
    Tone {
        /// Frequencies in Hz.
        frequencies: Vec<f32>,
        /// How long the tone sounds.
        on: Duration,
        /// Silence after it (0 for none).
        off: Duration,
    },
    /// Silence.
    Silence(Duration),
    /// A system prompt built into the gateway, by name.
    Builtin(String),
}

/// Why a prompt spec is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PromptSpecError(pub String);

impl PromptSpec {
    /// Reads `tone:440:500ms`, `tone:440+480:2s:4s`, `silence:1s`, or a file name.
    pub fn parse(text: &str) -> Result<Self, PromptSpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PromptSpecError("an empty prompt".into()));
        }
        if let Some(name) = text.strip_prefix("builtin:") {
            return match super::system::find(name) {
                Some(_) => Ok(Self::Builtin(name.to_string())),
                None => Err(PromptSpecError(format!(
                    "`{name}` is not a built-in prompt (built in: {})",
                    super::system::names().join(", ")
                ))),
            };
        }
        if let Some(duration) = text.strip_prefix("silence:") {
            return Ok(Self::Silence(parse_duration(duration)?));
        }
        if let Some(rest) = text.strip_prefix("tone:") {
            let mut parts = rest.split(':');
            let frequencies = parts
                .next()
                .unwrap_or_default()
                .split('+')
                .map(|f| match f.trim().parse::<f32>() {
                    Ok(hz) if (20.0..=20_000.0).contains(&hz) => Ok(hz),
                    _ => Err(PromptSpecError(format!(
                        "`{f}` is not a frequency from 20 to 20000 Hz"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if frequencies.is_empty() || frequencies.len() > 2 {
                return Err(PromptSpecError("a tone has one or two frequencies".into()));
            }
            let on = parse_duration(parts.next().unwrap_or_default())?;
            let off = match parts.next() {
                Some(off) => parse_duration(off)?,
                None => Duration::ZERO,
            };
            if parts.next().is_some() {
                return Err(PromptSpecError(format!(
                    "`{text}`: expected tone:FREQ[+FREQ]:ON[:OFF]"
                )));
            }
            return Ok(Self::Tone {
                frequencies,
                on,
                off,
            });
        }
        Ok(Self::File(PathBuf::from(text)))
    }

    /// The samples of an inline prompt (48 kHz mono); `None` for a file.
    pub fn synthesize(&self) -> Option<Vec<i16>> {
        let samples = |d: Duration| (d.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize;
        match self {
            Self::File(_) | Self::Builtin(_) => None,
            Self::Silence(duration) => Some(vec![0; samples(*duration)]),
            Self::Tone {
                frequencies,
                on,
                off,
            } => {
                let n = samples(*on);
                let amplitude = 12_000.0 / frequencies.len() as f64;
                let ramp = samples(Duration::from_millis(5)).max(1);
                let mut out: Vec<i16> = (0..n)
                    .map(|i| {
                        let t = i as f64 / f64::from(SAMPLE_RATE);
                        // Short fades avoid clicks at both ends.
                        let envelope = (i.min(n - i) as f64 / ramp as f64).min(1.0);
                        let sum: f64 = frequencies
                            .iter()
                            .map(|f| (2.0 * std::f64::consts::PI * f64::from(*f) * t).sin())
                            .sum();
                        (amplitude * envelope * sum) as i16
                    })
                    .collect();
                out.resize(n + samples(*off), 0);
                Some(out)
            }
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, PromptSpecError> {
    let duration = ConfigDuration::parse(text).map_err(PromptSpecError)?.0;
    if duration.is_zero() || duration > Duration::from_secs(600) {
        return Err(PromptSpecError(format!(
            "`{text}`: a duration from 1ms to 10m"
        )));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::tests::tone_share;

    #[test]
    fn inline_prompts_parse_and_sound() {
        let beep = PromptSpec::parse("tone:440:500ms").unwrap();
        let samples = beep.synthesize().unwrap();
        assert_eq!(samples.len(), 24_000);
        assert!(tone_share(&samples, 440.0) > 0.9);
        let ringback = PromptSpec::parse("tone:440+480:2s:4s").unwrap();
        assert_eq!(ringback.synthesize().unwrap().len(), 6 * 48_000);
        assert_eq!(
            PromptSpec::parse("silence:1s")
                .unwrap()
                .synthesize()
                .unwrap()
                .len(),
            48_000
        );
        assert_eq!(
            PromptSpec::parse("menus/welcome.wav").unwrap(),
            PromptSpec::File("menus/welcome.wav".into())
        );
    }

    #[test]
    fn bad_inline_prompts_say_why() {
        for bad in [
            "tone:abc:1s",
            "tone:440",
            "tone:440:0s",
            "tone:1+2+3:1s",
            "silence:forever",
            "tone:440:1s:1s:1s",
            "builtin:nothing-like-this",
            "",
        ] {
            assert!(PromptSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
