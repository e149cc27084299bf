//! In-band DTMF: key presses from clients that play the tones into the audio instead of sending
//! RFC 4733 events. Goertzel filters on 8 kHz blocks of 205 samples (25.6 ms), decimated from the
//! 48 kHz audio endpoints see, with the usual checks so that speech and music do not make digits:
//! one row and one column tone clearly above the others, limited twist between them, little
//! energy outside them and at their second harmonics, and the same digit in two blocks in a row
//! (the press is reported once, then needs two quiet blocks before the next).

use super::dtmf::Digit;

/// Samples per Goertzel block at 8 kHz.
const BLOCK: usize = 205;
/// Row frequencies (Hz).
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column frequencies (Hz).
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keys by row and column.
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Minimum mean-square level of a block to consider (about -40 dBFS).
const MIN_ENERGY: f32 = 3.3e4;
/// The strongest row (column) must beat the others by this ratio (6 dB).
const RELATIVE_PEAK: f32 = 4.0;
/// Column above row by at most 8 dB (normal twist), row above column by at most 4 dB.
const NORMAL_TWIST: f32 = 6.3;
const REVERSE_TWIST: f32 = 2.5;
/// The two tones must carry at least this share of the block's energy.
const TONE_SHARE: f32 = 0.7;
/// A tone's second harmonic must be this much weaker (speech is rich in harmonics).
const HARMONIC_RATIO: f32 = 0.1;

/// Decimation filter taps (windowed sinc, cutoff 3.4 kHz at 48 kHz).
const TAPS: usize = 48;

/// Finds key presses in 48 kHz mono audio.
pub struct InbandDtmf {
    filter: [f32; TAPS],
    history: [f32; TAPS],
    position: usize,
    phase: usize,
    block: Vec<f32>,
    candidate: Option<char>,
    candidate_blocks: u32,
    reported: Option<char>,
    quiet_blocks: u32,
}

impl Default for InbandDtmf {
    fn default() -> Self {
        let mut filter = [0f32; TAPS];
        let cutoff = 3400.0 / 48_000.0;
        let center = (TAPS - 1) as f32 / 2.0;
        let mut sum = 0.0;
        for (i, tap) in filter.iter_mut().enumerate() {
            let x = i as f32 - center;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f32::consts::PI * cutoff * x).sin() / (std::f32::consts::PI * x)
            };
            let window =
                0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (TAPS - 1) as f32).cos();
            *tap = sinc * window;
            sum += *tap;
        }
        for tap in filter.iter_mut() {
            *tap /= sum;
        }
        Self {
            filter,
            history: [0.0; TAPS],
            position: 0,
            phase: 0,
            block: Vec::with_capacity(BLOCK),
            candidate: None,
            candidate_blocks: 0,
            reported: None,
            quiet_blocks: 2,
        }
    }
}

impl InbandDtmf {
    /// Feeds 48 kHz samples; appends each new key press found to `digits`.
    pub fn feed(&mut self, samples: &[i16], digits: &mut Vec<Digit>) {
        for &sample in samples {
            self.history[self.position] = f32::from(sample);
            self.position = (self.position + 1) % TAPS;
            self.phase += 1;
            if self.phase < 6 {
                continue;
            }
            self.phase = 0;
            let mut acc = 0.0;
            for (i, tap) in self.filter.iter().enumerate() {
                acc += tap * self.history[(self.position + i) % TAPS];
            }
            self.block.push(acc);
            if self.block.len() == BLOCK {
                let key = detect(&self.block);
                self.block.clear();
                if let Some(digit) = self.settle(key) {
                    digits.push(digit);
                }
            }
        }
    }

    /// A key is reported when two blocks in a row agree, and only once per press.
    fn settle(&mut self, key: Option<char>) -> Option<Digit> {
        match key {
            Some(key) => {
                if self.candidate == Some(key) {
                    self.candidate_blocks += 1;
                } else {
                    self.candidate = Some(key);
                    self.candidate_blocks = 1;
                }
                self.quiet_blocks = 0;
                if self.candidate_blocks >= 2 && self.reported != Some(key) {
                    self.reported = Some(key);
                    return Digit::from_char(key);
                }
                None
            }
            None => {
                self.candidate = None;
                self.candidate_blocks = 0;
                self.quiet_blocks += 1;
                if self.quiet_blocks >= 2 {
                    self.reported = None;
                }
                None
            }
        }
    }
}

/// Goertzel power of `block` at `hz` (8 kHz), normalised by the block length.
fn power(block: &[f32], hz: f32) -> f32 {
    let k = (0.5 + BLOCK as f32 * hz / 8000.0).floor();
    let w = 2.0 * std::f32::consts::PI * k / BLOCK as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in block {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (BLOCK * BLOCK) as f32
}

/// The key in one block, if the block holds exactly one clean DTMF tone pair.
fn detect(block: &[f32]) -> Option<char> {
    let energy = block.iter().map(|x| x * x).sum::<f32>() / BLOCK as f32;
    if energy < MIN_ENERGY {
        return None;
    }
    let rows: Vec<f32> = ROWS.iter().map(|f| power(block, *f)).collect();
    let columns: Vec<f32> = COLUMNS.iter().map(|f| power(block, *f)).collect();
    let (row, row_power) = strongest(&rows)?;
    let (column, column_power) = strongest(&columns)?;
    // Twist.
    if column_power > row_power * NORMAL_TWIST || row_power > column_power * REVERSE_TWIST {
        return None;
    }
    // The two tones dominate: a sine of amplitude A has mean square A²/2, and Goertzel power
    // A²/4 here, hence the factor 2.
    if 2.0 * (row_power + column_power) < TONE_SHARE * energy {
        return None;
    }
    // Pure tones: little at the second harmonics.
    if power(block, ROWS[row] * 2.0) > row_power * HARMONIC_RATIO
        || power(block, COLUMNS[column] * 2.0) > column_power * HARMONIC_RATIO
    {
        return None;
    }
    Some(KEYS[row][column])
}

/// The strongest of four tones, if it clearly beats the other three.
fn strongest(powers: &[f32]) -> Option<(usize, f32)> {
    let (index, &best) = powers
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let beaten = powers
        .iter()
        .enumerate()
        .all(|(i, p)| i == index || best >= p * RELATIVE_PEAK);
    beaten.then_some((index, best))
}

/// 48 kHz samples of the tone pair of `key` for `ms`, at `level` (amplitude of each tone).
pub fn tone_for(key: char, ms: u32, level: f32) -> Vec<i16> {
    let Some((row, column)) = KEYS
        .iter()
        .enumerate()
        .find_map(|(r, keys)| keys.iter().position(|k| *k == key).map(|c| (r, c)))
    else {
        return vec![0; (ms * 48) as usize];
    };
    (0..ms * 48)
        .map(|i| {
            let t = i as f32 / 48_000.0;
            let a = (2.0 * std::f32::consts::PI * ROWS[row] * t).sin();
            let b = (2.0 * std::f32::consts::PI * COLUMNS[column] * t).sin();
            (level * (a + b)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_all(samples: &[i16]) -> String {
        let mut detector = InbandDtmf::default();
        let mut digits = Vec::new();
        // In 20 ms pieces, as the call feeds it.
        for chunk in samples.chunks(960) {
            detector.feed(chunk, &mut digits);
        }
        digits.iter().map(Digit::as_char).collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (ms * 48) as usize]
    }

    #[test]
    fn every_key_is_found_once_per_press() {
        let mut audio = Vec::new();
        for key in "1234567890*#ABCD".chars() {
            audio.extend(tone_for(key, 100, 6000.0));
            audio.extend(silence(80));
        }
        assert_eq!(detect_all(&audio), "1234567890*#ABCD");
    }

    #[test]
    fn a_long_press_is_one_digit_and_two_presses_are_two() {
        let mut audio = tone_for('5', 1000, 6000.0);
        audio.extend(silence(70));
        audio.extend(tone_for('5', 100, 6000.0));
        assert_eq!(detect_all(&audio), "55");
    }

    #[test]
    fn quiet_presses_are_found_and_blips_are_not() {
        assert_eq!(detect_all(&tone_for('9', 100, 600.0)), "9");
        assert_eq!(detect_all(&tone_for('9', 25, 6000.0)), "");
    }

    #[test]
    fn single_tones_twisted_pairs_and_noise_are_not_digits() {
        let single: Vec<i16> = (0..48_00)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * 770.0 * i as f32 / 48_000.0).sin()) as i16
            })
            .collect();
        assert_eq!(detect_all(&single), "");
        // Column 12 dB above row.
        let twisted: Vec<i16> = (0..4800)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                (1000.0 * (2.0 * std::f32::consts::PI * 697.0 * t).sin()
                    + 4000.0 * (2.0 * std::f32::consts::PI * 1209.0 * t).sin())
                    as i16
            })
            .collect();
        assert_eq!(detect_all(&twisted), "");
        let mut seed = 12345u32;
        let noise: Vec<i16> = (0..48_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((seed >> 16) as i16) / 4
            })
            .collect();
        assert_eq!(detect_all(&noise), "");
    }

    #[test]
    fn speech_does_not_make_digits() {
        let path = format!(
            "{}/../tests/fixtures/audio/speech-16k.flac",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        let speech = crate::prompt::decode::decode(&bytes, Some("flac"), 60).unwrap();
        assert!(speech.len() > 48_000 * 5);
        assert_eq!(detect_all(&speech), "");
        // ...but a key pressed over quiet speech still is.
        let mut mixed: Vec<i16> = speech[..48_000].iter().map(|s| s / 8).collect();
        for (m, t) in mixed[10_000..].iter_mut().zip(tone_for('7', 120, 6000.0)) {
            *m = m.saturating_add(t);
        }
        assert_eq!(detect_all(&mixed), "7");
    }
}
