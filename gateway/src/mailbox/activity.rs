//! Is the caller speaking? From the voice-activity flag Opus encoders put in their SILK layer
//! (no decoding: recording Opus stays a copy), or, for G.711 and CELT-only Opus, from the
//! level of the decoded samples against the mailbox's threshold. SILK's flag marks speech
//! rather than sound: a steady tone soon counts as silence.

/// Whether an Opus packet's SILK layer flags voice activity; `None` when the packet has no
/// SILK layer (CELT-only) or cannot be parsed. Empty frames (DTX) are inactive.
pub fn opus_voice_activity(packet: &[u8]) -> Option<bool> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let silk_frames = match config {
        // SILK-only: 10, 20, 40 or 60 ms, one SILK frame per 20 ms (at least one).
        0..=11 => [1, 1, 2, 3][usize::from(config % 4)],
        // Hybrid: 10 or 20 ms, one SILK frame.
        12..=15 => 1,
        _ => return None,
    };
    let active = |frame: &[u8]| frame.first().is_some_and(|b| b >> (8 - silk_frames) != 0);
    let body = &packet[1..];
    match toc & 0x03 {
        0 => Some(active(body)),
        1 => {
            if !body.len().is_multiple_of(2) {
                return None;
            }
            let (first, second) = body.split_at(body.len() / 2);
            Some(active(first) || active(second))
        }
        _ => {
            let parsed = opus::packet::parse(packet).ok()?;
            Some(parsed.frames.iter().any(|f| active(f)))
        }
    }
}

/// The RMS level of `samples` in dBFS (-96 for digital silence).
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -96.0;
    }
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        -96.0
    } else {
        (20.0 * rms.log10()).max(-96.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: impl Iterator<Item = Vec<i16>>, bitrate: i32) -> Vec<Vec<u8>> {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate)).unwrap();
        encoder.set_complexity(5).unwrap();
        let mut out = vec![0u8; 1500];
        frames
            .map(|frame| {
                let n = encoder.encode(&frame, &mut out).unwrap();
                out[..n].to_vec()
            })
            .collect()
    }

    /// A tone, its level swinging by `swing` (0 steady, 0.5 down to half) three times a second.
    fn tone(seconds: usize, hz: f64, amplitude: f64, swing: f64) -> impl Iterator<Item = Vec<i16>> {
        (0..seconds * 50).map(move |i| {
            (0..960)
                .map(|n| {
                    let t = (i * 960 + n) as f64 / 48_000.0;
                    let wave = (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                    let envelope = 1.0 - swing * (0.5 + 0.5 * wave);
                    let tone = (2.0 * std::f64::consts::PI * hz * t).sin();
                    (amplitude * envelope * tone) as i16
                })
                .collect()
        })
    }

    fn speech() -> Vec<i16> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/audio/speech-16k.flac"
        ))
        .unwrap();
        crate::prompt::decode::decode(&bytes, Some("flac"), 60).unwrap()
    }

    #[test]
    fn speech_is_active_and_silence_is_not() {
        for bitrate in [16_000, 32_000] {
            let speech: Vec<Vec<i16>> = speech().chunks_exact(960).map(|c| c.to_vec()).collect();
            let packets = encode(speech.into_iter(), bitrate);
            let active = packets
                .iter()
                .filter(|p| opus_voice_activity(p) == Some(true))
                .count();
            assert!(
                active * 2 > packets.len(),
                "speech at {bitrate}: {active} of {} packets active",
                packets.len()
            );
            let packets = encode((0..150).map(|_| vec![0i16; 960]), bitrate);
            let quiet = packets[50..]
                .iter()
                .filter(|p| opus_voice_activity(p) == Some(false))
                .count();
            assert_eq!(quiet, 100, "silence at {bitrate}");
        }
    }

    /// SILK's flag marks speech, not sound: a steady tone soon counts as silence, one whose
    /// level moves keeps counting as sound (test callers send such tones).
    #[test]
    fn steady_tones_fade_to_silence_moving_ones_do_not() {
        let longest_quiet = |packets: &[Vec<u8>]| {
            let mut run = 0;
            let mut longest = 0;
            for packet in packets {
                if opus_voice_activity(packet) == Some(false) {
                    run += 1;
                    longest = longest.max(run);
                } else {
                    run = 0;
                }
            }
            longest
        };
        let steady = encode(tone(5, 440.0, 8000.0, 0.0), 32_000);
        assert!(longest_quiet(&steady) > 100);
        let moving = encode(tone(5, 440.0, 8000.0, 0.5), 32_000);
        assert!(longest_quiet(&moving) < 25, "{}", longest_quiet(&moving));
    }

    #[test]
    fn celt_and_garbage_are_unknown() {
        assert_eq!(
            opus_voice_activity(&crate::mailbox::ogg_opus::SILENCE_20MS),
            None
        );
        assert_eq!(opus_voice_activity(&[]), None);
        assert_eq!(
            opus_voice_activity(&[0x0B]),
            None,
            "code 3 without a frame count"
        );
        assert_eq!(opus_voice_activity(&[0x0B, 0]), None, "no frames");
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 160]), -96.0);
        let full: Vec<i16> = tone(1, 1000.0, 32767.0, 0.0).next().unwrap();
        assert!((level_dbfs(&full) + 3.0).abs() < 0.2);
        let quiet: Vec<i16> = tone(1, 1000.0, 100.0, 0.0).next().unwrap();
        assert!((level_dbfs(&quiet) + 53.3).abs() < 0.5);
    }
}
