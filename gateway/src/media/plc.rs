//! Concealment of lost G.711 audio, after ITU-T G.711 Appendix I: the last pitch period heard
//! before the loss is repeated, full for 10 ms and then fading out so that 60 ms after the loss
//! began only silence is left (a repeated buzz is worse than a gap); the first audio after a
//! loss is cross-faded with the concealment over a quarter pitch period, so no click is heard.
//! Works at 8 kHz, before the call's resampler.

/// Audio kept for finding the pitch: 48.75 ms at 8 kHz, as in Appendix I.
const HISTORY: usize = 390;
/// Shortest and longest pitch period looked for (5 to 15 ms at 8 kHz).
const MIN_PITCH: usize = 40;
const MAX_PITCH: usize = 120;
/// Samples compared when looking for the pitch (20 ms).
const CORRELATION_WINDOW: usize = 160;
/// Concealment at full level before it starts to fade (10 ms).
const FULL: usize = 80;
/// Concealment after which only silence is left (60 ms).
const FADED: usize = 480;

/// The concealment state of one G.711 stream.
#[derive(Debug, Clone)]
pub struct G711Concealer {
    /// The last [`HISTORY`] samples heard, oldest first.
    history: Vec<i16>,
    /// The pitch period repeated during the current loss.
    period: Vec<i16>,
    /// Samples concealed in the current loss (0: not in a loss).
    concealed: usize,
}

impl Default for G711Concealer {
    fn default() -> Self {
        Self {
            history: vec![0; HISTORY],
            period: Vec::with_capacity(MAX_PITCH),
            concealed: 0,
        }
    }
}

impl G711Concealer {
    /// Audio that arrived: after a loss, its start is cross-faded with the concealment.
    pub fn heard(&mut self, samples: &mut [i16]) {
        if self.concealed > 0 && self.concealed < FADED {
            let overlap = (self.period.len() / 4).min(samples.len());
            for (i, sample) in samples.iter_mut().take(overlap).enumerate() {
                let new_weight = (i + 1) as f32 / (overlap + 1) as f32;
                let old = f32::from(self.next_concealed());
                *sample = (f32::from(*sample) * new_weight + old * (1.0 - new_weight)) as i16;
            }
        }
        self.concealed = 0;
        if samples.len() >= HISTORY {
            self.history
                .copy_from_slice(&samples[samples.len() - HISTORY..]);
        } else {
            self.history.drain(..samples.len());
            self.history.extend_from_slice(samples);
        }
    }

    /// Appends `count` samples standing in for audio that did not arrive.
    pub fn conceal(&mut self, count: usize, out: &mut Vec<i16>) {
        if self.concealed == 0 {
            let pitch = self.find_pitch();
            self.period.clear();
            self.period
                .extend_from_slice(&self.history[HISTORY - pitch..]);
        }
        out.reserve(count);
        for _ in 0..count {
            let sample = self.next_concealed();
            out.push(sample);
        }
    }

    /// The next sample of the repeated period, faded by how long the loss has lasted.
    fn next_concealed(&mut self) -> i16 {
        let gain = match self.concealed {
            n if n < FULL => 1.0,
            n if n < FADED => 1.0 - (n - FULL) as f32 / (FADED - FULL) as f32,
            _ => 0.0,
        };
        let sample = self.period[self.concealed % self.period.len()];
        self.concealed += 1;
        (f32::from(sample) * gain) as i16
    }

    /// The lag, 5 to 15 ms, at which the last 20 ms best match what came before them.
    fn find_pitch(&self) -> usize {
        let recent = &self.history[HISTORY - CORRELATION_WINDOW..];
        let mut best = (MIN_PITCH, f64::MIN);
        for lag in MIN_PITCH..=MAX_PITCH {
            let earlier = &self.history[HISTORY - CORRELATION_WINDOW - lag..HISTORY - lag];
            let (mut cross, mut energy) = (0.0f64, 0.0f64);
            for (a, b) in recent.iter().zip(earlier) {
                cross += f64::from(*a) * f64::from(*b);
                energy += f64::from(*b) * f64::from(*b);
            }
            let score = if energy > 0.0 {
                cross / energy.sqrt()
            } else {
                0.0
            };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, start: usize, count: usize) -> Vec<i16> {
        (start..start + count)
            .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_short_loss_in_a_tone_is_filled_with_the_tone() {
        let mut plc = G711Concealer::default();
        // 200 Hz: a 40-sample period, found as the pitch.
        let mut heard = tone(200.0, 0, 800);
        plc.heard(&mut heard);
        let mut out = Vec::new();
        plc.conceal(80, &mut out);
        let expected = tone(200.0, 800, 80);
        let error: f64 = out
            .iter()
            .zip(&expected)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / 80.0;
        assert!(error < 400.0, "mean error {error} of 8000");
    }

    #[test]
    fn a_long_loss_fades_to_silence_and_audio_after_it_is_cross_faded() {
        let mut plc = G711Concealer::default();
        let mut heard = tone(250.0, 0, 400);
        plc.heard(&mut heard);
        let mut out = Vec::new();
        for _ in 0..5 {
            plc.conceal(160, &mut out);
        }
        assert_eq!(out.len(), 800);
        assert!(out[..80].iter().any(|s| s.abs() > 6000), "full level first");
        assert!(out[FADED..].iter().all(|s| *s == 0), "silence after 60 ms");
        // Long after the fade, new audio comes as it is.
        let mut next = tone(250.0, 0, 160);
        let original = next.clone();
        plc.heard(&mut next);
        assert_eq!(next, original);
        // Within the fade, it starts from the concealment.
        plc.conceal(40, &mut Vec::new());
        let mut next = vec![0i16; 160];
        plc.heard(&mut next);
        assert!(
            next[0] != 0 || next[1] != 0,
            "no cross-fade: {:?}",
            &next[..4]
        );
    }

    #[test]
    fn silence_and_extremes_do_not_panic() {
        let mut plc = G711Concealer::default();
        let mut out = Vec::new();
        plc.conceal(1000, &mut out);
        assert!(out.iter().all(|s| *s == 0));
        let mut loud = vec![i16::MAX; 500];
        plc.heard(&mut loud);
        plc.conceal(3, &mut out);
        let mut one = [i16::MIN];
        plc.heard(&mut one);
    }
}
