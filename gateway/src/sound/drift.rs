//! Two clocks, one stream: the call delivers and takes 20 ms frames on the network's clock, the
//! sound card plays and captures on its own crystal. Between them sits a queue. While its fill,
//! averaged over about a second, stays within 30 % of its target either way nothing is touched;
//! beyond that the resampling ratio is nudged in proportion, by at most ±0.5 % (about 9 cents
//! of pitch, inaudible on speech; crystals differ by 0.01 % or so), until the drift is absorbed.
//! So there are no clicks and the delay does not grow. Only an empty queue (a stall) makes a
//! gap of silence, and only a queue twice over its target (a device that stopped for a while)
//! is cut back to it, once. In the first second after the queue fills, anything more than one
//! frame over the target (a burst as a device starts) is cut back at once, so a call does not
//! start with delay that would take the resampler long to remove.

use std::collections::VecDeque;

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};

/// The rate calls use.
pub const CALL_RATE: u32 = 48_000;
/// Largest ratio correction, relative (0.5 %).
const MAX_CORRECTION: f64 = 0.005;
/// Fill error (relative to the target) left alone.
const DEADBAND: f64 = 0.3;
/// Ratio correction per unit of fill error beyond the dead band.
const GAIN: f64 = 0.01;
/// Pushes after the queue fills during which a burst is cut back at once.
const WARMUP_PUSHES: u32 = 50;
/// Samples over the target a queue may hold during warm-up (one 20 ms frame).
const WARMUP_SLACK: usize = 960;
/// Weight of each new fill reading (one per 10 ms) in the averaged fill.
const SMOOTHING: f64 = 0.01;

/// Samples (48 kHz mono) between the call and the device, held near a target fill.
#[derive(Debug)]
pub struct SampleQueue {
    samples: VecDeque<f32>,
    target: usize,
    primed: bool,
    warmup: u32,
    underruns: u64,
    trims: u64,
}

impl SampleQueue {
    /// A queue aiming to hold `target` samples; it starts delivering once it holds that many.
    pub fn new(target: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(target * 2),
            target,
            primed: false,
            warmup: 0,
            underruns: 0,
            trims: 0,
        }
    }

    /// The fill aimed at.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Samples held now.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no samples are held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Appends samples; a queue twice over its target (the other side stalled), or during
    /// warm-up more than a frame over it (a burst), is cut back to the target, dropping the
    /// oldest.
    pub fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        self.samples.extend(samples);
        let limit = if self.warmup > 0 {
            self.warmup -= 1;
            self.target + WARMUP_SLACK
        } else {
            self.target * 2
        };
        if self.samples.len() > limit {
            let excess = self.samples.len() - self.target;
            self.samples.drain(..excess);
            self.trims += 1;
        }
        if !self.primed && self.samples.len() >= self.target {
            self.primed = true;
            self.warmup = WARMUP_PUSHES;
        }
    }

    /// Takes `n` samples into `out`, or fills `out` with silence while the queue is filling
    /// (at the start, and again after it ran dry).
    pub fn pop_into(&mut self, out: &mut [f32]) -> bool {
        if self.primed && self.samples.len() >= out.len() {
            let n = out.len();
            for (slot, sample) in out.iter_mut().zip(self.samples.drain(..n)) {
                *slot = sample;
            }
            return true;
        }
        if self.primed {
            self.primed = false;
            self.underruns += 1;
        }
        out.fill(0.0);
        false
    }

    /// Times the queue ran dry after it had started.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Times the queue was cut back after the other side stalled.
    pub fn trims(&self) -> u64 {
        self.trims
    }
}

/// A rate converter whose ratio follows a queue's fill (see the module doc).
pub struct DriftResampler {
    resampler: Async<f32>,
    smoothed_fill: Option<f64>,
    correction: f64,
    output: Vec<f32>,
}

impl DriftResampler {
    /// For playback: takes call audio from a queue and makes `chunk` frames at the device's
    /// `rate` per call to [`Self::process`] (fixed output).
    pub fn playback(rate: u32, chunk: usize) -> Result<Self, String> {
        Self::new(CALL_RATE, rate, chunk, FixedAsync::Output)
    }

    /// For capture: takes `chunk` frames at the device's `rate` per call to
    /// [`Self::process`] and makes call audio for a queue (fixed input).
    pub fn capture(rate: u32, chunk: usize) -> Result<Self, String> {
        Self::new(rate, CALL_RATE, chunk, FixedAsync::Input)
    }

    fn new(rate_in: u32, rate_out: u32, chunk: usize, fixed: FixedAsync) -> Result<Self, String> {
        let ratio = f64::from(rate_out) / f64::from(rate_in);
        let resampler = Async::<f32>::new_poly(
            ratio,
            1.0 + 2.0 * MAX_CORRECTION,
            PolynomialDegree::Septic,
            chunk,
            1,
            fixed,
        )
        .map_err(|e| e.to_string())?;
        let output = vec![0.0; resampler.output_frames_max()];
        Ok(Self {
            resampler,
            smoothed_fill: None,
            correction: 0.0,
            output,
        })
    }

    /// Input frames the next [`Self::process`] takes (after [`Self::follow`]).
    pub fn input_frames_next(&self) -> usize {
        self.resampler.input_frames_next()
    }

    /// Sets the ratio for `queue`'s fill against its target. Above the target the ratio drops:
    /// playback takes more input per output, capture makes less output per input. While the
    /// queue is filling (at the start, after a stall) the ratio is left at its nominal value.
    pub fn follow(&mut self, queue: &SampleQueue) {
        if !queue.primed {
            self.smoothed_fill = None;
            self.set_correction(0.0);
            return;
        }
        let (fill, target) = (queue.len() as f64, queue.target());
        let smoothed = match self.smoothed_fill {
            Some(previous) => previous + SMOOTHING * (fill - previous),
            None => fill,
        };
        self.smoothed_fill = Some(smoothed);
        let error = (smoothed - target as f64) / target.max(1) as f64;
        let outside = (error.abs() - DEADBAND).max(0.0) * error.signum();
        self.set_correction((outside * GAIN).clamp(-MAX_CORRECTION, MAX_CORRECTION));
    }

    fn set_correction(&mut self, correction: f64) {
        if correction == self.correction {
            return;
        }
        self.correction = correction;
        if let Some(adjustable) = self.resampler.as_adjustable() {
            // In bounds by construction (the resampler allows twice this correction).
            let _ = adjustable.set_resample_ratio_relative(1.0 - correction, true);
        }
    }

    /// The ratio correction in use (relative: 0.001 is 0.1 % slower).
    pub fn correction(&self) -> f64 {
        self.correction
    }

    /// Converts `input`: exactly [`Self::input_frames_next`] frames.
    pub fn process(&mut self, input: &[f32]) -> &[f32] {
        let frames_in = input.len();
        let frames_out = self.output.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(input, 1, frames_in),
            InterleavedSlice::new_mut(&mut self.output, 1, frames_out),
        ) else {
            return &[];
        };
        match self
            .resampler
            .process_into_buffer(&input, &mut output, None)
        {
            Ok((_, written)) => &self.output[..written],
            Err(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a producer and a consumer on clocks `drift` apart for `seconds`, through a queue
    /// and a drift resampler on the consumer (playback) side; returns the queue and the output.
    fn playback_run(device_rate: u32, drift: f64, seconds: usize) -> (SampleQueue, Vec<f32>) {
        let chunk = device_rate as usize / 100;
        let mut resampler = DriftResampler::playback(device_rate, chunk).unwrap();
        let mut queue = SampleQueue::new(3840);
        let mut output = Vec::new();
        let mut phase = 0.0f64;
        // The call pushes 20 ms frames every 20 ms of its clock; the device pulls 10 ms chunks
        // every 10 ms of its own, which runs `drift` fast.
        let mut call_clock = 0.0;
        let mut device_clock = 0.0;
        let mut input = Vec::new();
        while call_clock < seconds as f64 {
            if call_clock <= device_clock {
                let frame: Vec<f32> = (0..960)
                    .map(|_| {
                        phase += 440.0 / f64::from(CALL_RATE);
                        (phase * std::f64::consts::TAU).sin() as f32 * 0.5
                    })
                    .collect();
                queue.push(frame);
                call_clock += 0.020;
            } else {
                resampler.follow(&queue);
                input.resize(resampler.input_frames_next(), 0.0);
                queue.pop_into(&mut input);
                output.extend_from_slice(resampler.process(&input));
                device_clock += 0.010 / (1.0 + drift);
            }
        }
        (queue, output)
    }

    #[test]
    fn drift_is_absorbed_without_gaps_or_growing_delay() {
        for (rate, drift) in [
            (48_000, 0.001),
            (48_000, -0.001),
            (44_100, 0.0005),
            (16_000, -0.001),
        ] {
            let (queue, output) = playback_run(rate, drift, 120);
            assert_eq!(queue.underruns(), 0, "{rate} Hz, drift {drift}");
            assert_eq!(queue.trims(), 0, "{rate} Hz, drift {drift}");
            // The fill settles near the target: the delay does not grow.
            let fill = queue.len() as f64 / queue.target() as f64;
            assert!((0.25..=1.8).contains(&fill), "fill {fill} at {rate} Hz");
            // No clicks: after the start, a 440 Hz sine at 0.5 never jumps further than its
            // steepest slope allows.
            let max_step = 0.5 * std::f64::consts::TAU * 440.0 / f64::from(rate) * 1.2;
            let steady = &output[rate as usize..];
            let worst = steady
                .windows(2)
                .map(|w| (w[1] - w[0]).abs() as f64)
                .fold(0.0, f64::max);
            assert!(worst <= max_step, "step {worst} > {max_step} at {rate} Hz");
        }
    }

    #[test]
    fn capture_keeps_the_queue_near_its_target() {
        let rate = 44_100;
        let chunk = 441;
        let mut resampler = DriftResampler::capture(rate, chunk).unwrap();
        let mut queue = SampleQueue::new(2880);
        let mut frame = [0.0f32; 960];
        let (mut device_clock, mut call_clock) = (0.0, 0.0);
        let input = vec![0.25f32; chunk];
        while call_clock < 120.0 {
            if device_clock <= call_clock {
                resampler.follow(&queue);
                let out = resampler.process(&input).to_vec();
                queue.push(out);
                device_clock += 0.010 * 0.9995;
            } else {
                queue.pop_into(&mut frame);
                call_clock += 0.020;
            }
        }
        assert!(queue.underruns() <= 1, "{}", queue.underruns());
        assert_eq!(queue.trims(), 0);
        let fill = queue.len() as f64 / queue.target() as f64;
        assert!((0.3..=2.0).contains(&fill), "fill {fill}");
    }

    #[test]
    fn queue_starts_when_primed_and_cuts_back_after_a_stall() {
        let mut queue = SampleQueue::new(100);
        let mut out = [1.0f32; 10];
        queue.push(vec![0.5; 50]);
        assert!(!queue.pop_into(&mut out));
        assert_eq!(out, [0.0; 10]);
        queue.push(vec![0.5; 50]);
        assert!(queue.pop_into(&mut out));
        assert_eq!(out, [0.5; 10]);
        // A burst just after the start is cut back at once.
        queue.push(vec![0.5; 1000]);
        assert_eq!((queue.trims(), queue.len()), (1, 100));
        for _ in 0..WARMUP_PUSHES {
            queue.push([]);
        }
        // Later only a queue twice over its target is.
        queue.push(vec![0.5; 90]);
        assert_eq!(queue.trims(), 1);
        queue.push(vec![0.5; 20]);
        assert_eq!((queue.trims(), queue.len()), (2, 100));
        while queue.pop_into(&mut out) {}
        assert_eq!(queue.underruns(), 1);
    }
}
