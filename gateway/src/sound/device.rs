//! The thread of one sound endpoint in use: opens its output and input, plays every attached
//! call's audio through the output's mixer, hands captured audio to every attached call, and
//! notices a device that stops (no audio pulled or delivered for [`STALL_LIMIT`]).

use std::num::NonZero;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rodio::cpal::traits::DeviceTrait;
use rodio::cpal::BufferSize;
use rodio::microphone::{Microphone, MicrophoneBuilder};
use rodio::{DeviceSinkBuilder, MixerDeviceSink, Source};

use super::devices::{find_input, find_output};
use super::drift::DriftResampler;
use super::{lock, CallLink, SoundDevices};
use crate::config::{DeviceChoice, SoundDeviceConfig};

/// A device that neither takes nor gives audio for this long has stopped.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// How often the queues are logged (at debug level).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The device period asked for (audio moves to and from the device in pieces this long), where
/// the device allows.
const PERIOD_MS: u32 = 20;
/// How often the thread looks for new calls and stalls when it has no input to wait on.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// A sound endpoint in use: its settings and the calls attached.
pub(super) struct DeviceState {
    pub(super) endpoint: String,
    pub(super) config: SoundDeviceConfig,
    pub(super) calls: Mutex<Vec<Arc<CallLink>>>,
}

impl DeviceState {
    pub(super) fn new(endpoint: String, config: SoundDeviceConfig, first: Arc<CallLink>) -> Self {
        Self {
            endpoint,
            config,
            calls: Mutex::new(vec![first]),
        }
    }
}

/// Runs the device of `state` until its last call ends or it fails.
pub(super) fn run(state: Arc<DeviceState>, registry: &'static SoundDevices) {
    let endpoint = &state.endpoint;
    let mut streams = match Streams::open(&state.config) {
        Ok(streams) => streams,
        Err(why) => {
            tracing::warn!(endpoint = %endpoint, "sound device failed: {why}");
            registry.fail_all(endpoint, &why);
            return;
        }
    };
    tracing::info!(endpoint = %endpoint, output = %streams.describe_output(),
        input = %streams.describe_input(), "sound device opened");
    match streams.serve(&state, registry) {
        Ok(()) => tracing::info!(endpoint = %endpoint, "sound device closed"),
        Err(why) => {
            // The calls are told before the streams are dropped: closing a stalled device
            // can itself stall.
            tracing::warn!(endpoint = %endpoint, "sound device failed: {why}");
            registry.fail_all(endpoint, &why);
        }
    }
}

/// The open output and input of one endpoint.
struct Streams {
    output: Option<Output>,
    input: Option<Capture>,
    /// Calls already wired to the streams.
    wired: Vec<Arc<CallLink>>,
}

struct Output {
    sink: MixerDeviceSink,
    rate: u32,
    /// Milliseconds since `epoch` when the device last pulled audio.
    last_pull: Arc<AtomicU64>,
    epoch: Instant,
}

struct Capture {
    microphone: Microphone,
    rate: u32,
    channels: usize,
    /// Per call: the resampler towards that call's queue.
    calls: Vec<(Arc<CallLink>, DriftResampler)>,
    last_audio: Instant,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
}

impl Streams {
    fn open(config: &SoundDeviceConfig) -> Result<Self, String> {
        let output = match &config.output {
            DeviceChoice::Off => None,
            choice => Some(open_output(choice)?),
        };
        let input = match &config.input {
            DeviceChoice::Off => None,
            choice => Some(open_input(choice)?),
        };
        Ok(Self {
            output,
            input,
            wired: Vec::new(),
        })
    }

    fn describe_output(&self) -> String {
        self.output
            .as_ref()
            .map_or("none".into(), |o| format!("{} Hz", o.rate))
    }

    fn describe_input(&self) -> String {
        self.input.as_ref().map_or("none".into(), |i| {
            format!("{} Hz, {} channels", i.rate, i.channels)
        })
    }

    fn serve(&mut self, state: &DeviceState, registry: &SoundDevices) -> Result<(), String> {
        let mut next_report = Instant::now() + REPORT_EVERY;
        loop {
            if Instant::now() >= next_report {
                next_report += REPORT_EVERY;
                self.report(&state.endpoint);
            }
            if registry.release_if_idle(&state.endpoint) {
                return Ok(());
            }
            self.wire_new_calls(state)?;
            if let Some(output) = &self.output {
                let pulled = Duration::from_millis(output.last_pull.load(Ordering::Relaxed));
                if output.epoch.elapsed().saturating_sub(pulled) > STALL_LIMIT {
                    return Err("the output device stopped playing".into());
                }
            }
            match &mut self.input {
                Some(input) => input.step()?,
                None => std::thread::sleep(IDLE_POLL),
            }
        }
    }

    /// Logs the queues of every call (debug level): how full, how often they ran dry or were
    /// cut back, and the capture side's rate correction.
    fn report(&self, endpoint: &str) {
        for (n, call) in self.wired.iter().enumerate() {
            let playback = lock(&call.to_device);
            let capture = lock(&call.from_device);
            let correction = self
                .input
                .as_ref()
                .and_then(|i| i.calls.iter().find(|(c, _)| Arc::ptr_eq(c, call)))
                .map_or(0.0, |(_, resampler)| resampler.correction());
            tracing::debug!(
                endpoint,
                call = n,
                playback_ms = playback.len() / 48,
                playback_underruns = playback.underruns(),
                playback_trims = playback.trims(),
                capture_ms = capture.len() / 48,
                capture_underruns = capture.underruns(),
                capture_trims = capture.trims(),
                capture_correction = correction,
                "sound queues"
            );
        }
    }

    fn wire_new_calls(&mut self, state: &DeviceState) -> Result<(), String> {
        self.wired.retain(|call| !call.has_ended());
        let calls: Vec<_> = lock(&state.calls).clone();
        for call in calls {
            if call.has_ended() || self.wired.iter().any(|w| Arc::ptr_eq(w, &call)) {
                continue;
            }
            if let Some(output) = &self.output {
                let resampler = DriftResampler::playback(output.rate, output.rate as usize / 100)?;
                output.sink.mixer().add(CallSource {
                    call: call.clone(),
                    resampler,
                    input: Vec::new(),
                    output: Vec::new(),
                    position: 0,
                    rate: NonZero::new(output.rate).unwrap_or(NonZero::<u32>::MIN),
                    last_pull: output.last_pull.clone(),
                    epoch: output.epoch,
                });
            }
            if let Some(input) = &mut self.input {
                let resampler = DriftResampler::capture(input.rate, input.rate as usize / 100)?;
                input.calls.push((call.clone(), resampler));
            }
            self.wired.push(call);
        }
        Ok(())
    }
}

fn open_output(choice: &DeviceChoice) -> Result<Output, String> {
    let device = find_output(choice)?;
    let rate = device
        .default_output_config()
        .map_or(48_000, |config| config.sample_rate());
    let mut sink = DeviceSinkBuilder::from_device(device)
        .and_then(|builder| {
            builder
                .with_buffer_size(BufferSize::Fixed(rate / 1000 * PERIOD_MS))
                .with_error_callback(|e| tracing::warn!("sound output: {e}"))
                .open_sink_or_fallback()
        })
        .map_err(|e| format!("cannot open the output device: {e}"))?;
    sink.log_on_drop(false);
    let rate = sink.config().sample_rate().get();
    Ok(Output {
        sink,
        rate,
        last_pull: Arc::new(AtomicU64::new(0)),
        epoch: Instant::now(),
    })
}

fn open_input(choice: &DeviceChoice) -> Result<Capture, String> {
    let input = find_input(choice)?;
    let builder = MicrophoneBuilder::new()
        .device(input)
        .and_then(|builder| builder.default_config())
        .map_err(|e| format!("cannot open the input device: {e}"))?;
    let period = builder.get_config().sample_rate.get() / 1000 * PERIOD_MS;
    let microphone = builder
        .try_buffer_size(period)
        .unwrap_or(builder)
        .open_stream()
        .map_err(|e| format!("cannot open the input device: {e}"))?;
    let config = microphone.config();
    Ok(Capture {
        rate: config.sample_rate.get(),
        channels: usize::from(config.channel_count.get()),
        microphone,
        calls: Vec::new(),
        last_audio: Instant::now(),
        interleaved: Vec::new(),
        mono: Vec::new(),
    })
}

impl Capture {
    /// Moves 10 ms of captured audio to every call, or waits a little for it.
    fn step(&mut self) -> Result<(), String> {
        self.calls.retain(|(call, _)| !call.has_ended());
        let frames = self.rate as usize / 100;
        let wanted = frames * self.channels;
        if self.microphone.size_hint().0 < wanted {
            if self.last_audio.elapsed() > STALL_LIMIT {
                return Err("the input device stopped recording".into());
            }
            std::thread::sleep(Duration::from_millis(5));
            return Ok(());
        }
        self.interleaved.clear();
        self.interleaved
            .extend(self.microphone.by_ref().take(wanted));
        if self.interleaved.len() < wanted {
            return Err("the input device stopped recording".into());
        }
        self.last_audio = Instant::now();
        self.mono.clear();
        let scale = 1.0 / self.channels as f32;
        self.mono.extend(
            self.interleaved
                .chunks_exact(self.channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        for (call, resampler) in &mut self.calls {
            let mut queue = lock(&call.from_device);
            resampler.follow(&queue);
            queue.push(resampler.process(&self.mono).iter().copied());
        }
        Ok(())
    }
}

/// One call's audio as a source of the output's mixer (pulled on the audio callback thread).
struct CallSource {
    call: Arc<CallLink>,
    resampler: DriftResampler,
    input: Vec<f32>,
    output: Vec<f32>,
    position: usize,
    rate: rodio::SampleRate,
    last_pull: Arc<AtomicU64>,
    epoch: Instant,
}

impl CallSource {
    fn refill(&mut self) {
        {
            let mut queue = lock(&self.call.to_device);
            self.resampler.follow(&queue);
            self.input.resize(self.resampler.input_frames_next(), 0.0);
            queue.pop_into(&mut self.input);
        }
        self.output.clear();
        self.output
            .extend_from_slice(self.resampler.process(&self.input));
        self.position = 0;
        let now = self.epoch.elapsed().as_millis();
        self.last_pull
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Iterator for CallSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.position >= self.output.len() {
            if self.call.has_ended() {
                return None;
            }
            self.refill();
        }
        let sample = self.output.get(self.position).copied().unwrap_or(0.0);
        self.position += 1;
        Some(sample)
    }
}

impl Source for CallSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }

    fn channels(&self) -> rodio::ChannelCount {
        NonZero::<u16>::MIN
    }

    fn sample_rate(&self) -> rodio::SampleRate {
        self.rate
    }

    fn total_duration(&self) -> Option<Duration> {
        None
    }
}
