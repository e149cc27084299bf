//! Test signals: a sine tone in 20 ms frames, and the dominant frequency of received audio.

use jingle_gateway::media::codec::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

/// A sine tone at half of full scale, frame after frame.
pub struct Tone {
    hz: f32,
    n: u64,
}

impl Tone {
    /// A tone at `hz`.
    pub fn new(hz: f32) -> Self {
        Self { hz, n: 0 }
    }

    /// The next 20 ms.
    pub fn next_frame(&mut self) -> AudioFrame {
        let mut frame = [0i16; FRAME_SAMPLES];
        for sample in frame.iter_mut() {
            let t = self.n as f64 / f64::from(SAMPLE_RATE);
            *sample =
                (16000.0 * (2.0 * std::f64::consts::PI * f64::from(self.hz) * t).sin()) as i16;
            self.n += 1;
        }
        frame
    }
}

/// Power of `samples` at `hz` (Goertzel), normalised by length.
fn power_at(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// The strongest frequency between 100 and 4000 Hz (5 Hz steps) in the last `seconds` of
/// `samples`, and the share of the signal's energy near it.
pub fn dominant_frequency(samples: &[i16], seconds: f64) -> (f64, f64) {
    let take = ((seconds * f64::from(SAMPLE_RATE)) as usize).min(samples.len());
    let tail = &samples[samples.len() - take..];
    let (mut best, mut best_power) = (0.0, 0.0);
    let mut hz = 100.0;
    while hz <= 4000.0 {
        let p = power_at(tail, hz);
        if p > best_power {
            best = hz;
            best_power = p;
        }
        hz += 5.0;
    }
    (best, tone_share(tail, best))
}

/// The tones heard, in order: received audio cut in 100 ms windows, each named after the
/// candidate frequency that carries most of it (windows with none, or silent, are skipped);
/// runs shorter than two windows are dropped and repeats merged. Each entry is (Hz, windows).
pub fn tone_sequence(samples: &[i16], candidates: &[f64]) -> Vec<(f64, usize)> {
    const WINDOW: usize = 4800;
    let mut runs: Vec<(f64, usize)> = Vec::new();
    for window in samples.chunks(WINDOW).filter(|w| w.len() == WINDOW) {
        let energy: f64 = window
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            / WINDOW as f64;
        if energy < 1e4 {
            continue;
        }
        let best = candidates
            .iter()
            .map(|&hz| (hz, 2.0 * power_at(window, hz) / (WINDOW as f64 * energy)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((hz, _)) = best.filter(|(_, share)| *share > 0.5) else {
            continue;
        };
        match runs.last_mut() {
            Some((last, count)) if *last == hz => *count += 1,
            _ => runs.push((hz, 1)),
        }
    }
    let mut merged: Vec<(f64, usize)> = Vec::new();
    for (hz, count) in runs.into_iter().filter(|(_, count)| *count >= 2) {
        match merged.last_mut() {
            Some((last, total)) if *last == hz => *total += count,
            _ => merged.push((hz, count)),
        }
    }
    merged
}

/// The share of the energy of `samples` that a tone at `hz` carries (1.0: nothing else).
pub fn tone_share(samples: &[i16], hz: f64) -> f64 {
    let energy = samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    if energy > 0.0 {
        2.0 * power_at(samples, hz) / (samples.len() as f64 * energy)
    } else {
        0.0
    }
}

/// Just the frequencies of [`tone_sequence`].
pub fn tones_heard(samples: &[i16], candidates: &[f64]) -> Vec<f64> {
    tone_sequence(samples, candidates)
        .into_iter()
        .map(|(hz, _)| hz)
        .collect()
}
