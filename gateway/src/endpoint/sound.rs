//! `sound-device`: the caller is played on this machine's output device and hears its input
//! device. The devices themselves live on their own thread (see `crate::sound`); this side only
//! moves 20 ms frames into and out of the call's queues.

use std::sync::Arc;

use super::{Endpoint, EndpointEvent, Incoming, Outgoing};
use crate::config::{DeviceChoice, SoundDeviceConfig};
use crate::media::codec::{AudioFrame, FRAME_SAMPLES};
use crate::media::dtmf::Digit;
use crate::sound::{lock, CallLink};
use crate::types::EndReason;

/// A call bridged to a sound device.
pub struct SoundEndpoint {
    link: Arc<CallLink>,
    output_volume: f32,
    input_volume: f32,
    plays: bool,
    records: bool,
    frame: AudioFrame,
    captured: Vec<f32>,
    failure_told: bool,
}

impl SoundEndpoint {
    /// A call on `link`, with the levels and directions of `config`.
    pub fn new(link: Arc<CallLink>, config: &SoundDeviceConfig) -> Self {
        Self {
            link,
            output_volume: config.output_volume,
            input_volume: config.input_volume,
            plays: config.output != DeviceChoice::Off,
            records: config.input != DeviceChoice::Off,
            frame: [0; FRAME_SAMPLES],
            captured: vec![0.0; FRAME_SAMPLES],
            failure_told: false,
        }
    }
}

impl Drop for SoundEndpoint {
    fn drop(&mut self) {
        self.link.end();
    }
}

impl Endpoint for SoundEndpoint {
    fn wants_pcm(&self) -> bool {
        self.plays
    }

    fn on_audio(&mut self, audio: Incoming<'_>) {
        let pcm = match audio {
            Incoming::Audio { pcm, .. } | Incoming::Lost { pcm, .. } => pcm,
        };
        // Decoded only when `wants_pcm`, that is when this endpoint plays.
        if let Some(pcm) = pcm {
            let scale = self.output_volume / 32768.0;
            lock(&self.link.to_device).push(pcm.iter().map(|&s| f32::from(s) * scale));
        }
    }

    fn on_dtmf(&mut self, digit: Digit) {
        tracing::info!(digit = %digit.as_char(), "key pressed");
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        if !self.records || !lock(&self.link.from_device).pop_into(&mut self.captured) {
            return Outgoing::Silence;
        }
        let scale = self.input_volume * 32767.0;
        for (out, &sample) in self.frame.iter_mut().zip(&self.captured) {
            // `as` saturates: a loud input clips instead of wrapping.
            *out = (sample * scale) as i16;
        }
        Outgoing::Pcm(&self.frame)
    }

    fn unavailable(&mut self) -> Option<EndReason> {
        self.poll_event().map(|_| EndReason::SoundDeviceFailed)
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        if self.failure_told {
            return None;
        }
        let why = self.link.failure()?;
        self.failure_told = true;
        tracing::warn!("ending the call: {why}");
        Some(EndpointEvent::Fail(EndReason::SoundDeviceFailed))
    }
}
