//! `sound-device`: the caller is played on this machine's output device and hears its input
//! device. The devices themselves live on their own thread (see `crate::sound`); this side only
//! moves 20 ms frames into and out of the call's queues.

use std::sync::Arc;

use super::{Endpoint, Kind, NewCall};
use crate::config::{read_settings, Config, ConfigError, EndpointSettings, SoundDeviceConfig};
use crate::types::EndReason;
#[cfg(feature = "sound")]
use {
    super::{EndpointEvent, Incoming, Outgoing},
    crate::config::DeviceChoice,
    crate::media::codec::{AudioFrame, FRAME_SAMPLES},
    crate::media::dtmf::Digit,
    crate::sound::{lock, CallLink},
};

/// `kind = "sound-device"`, with the settings of [`SoundDeviceConfig`]; in a build without the
/// `sound` feature its JIDs are listed and refuse calls.
pub static KIND: SoundDeviceKind = SoundDeviceKind;

/// The kind `sound-device`.
pub struct SoundDeviceKind;

impl Kind for SoundDeviceKind {
    fn name(&self) -> &'static str {
        "sound-device"
    }

    fn settings(
        &self,
        key: &str,
        table: toml::Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        read_settings::<SoundDeviceConfig>(key, table, errors)
    }

    #[cfg(feature = "sound")]
    fn create(
        &self,
        settings: &Arc<dyn EndpointSettings>,
        call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        let config = super::settings_of::<SoundDeviceConfig>(settings)?;
        let link = crate::sound::SoundDevices::global()
            .attach(call.virtual_jid, &config)
            .map_err(|crate::sound::AttachError::Busy| EndReason::Busy)?;
        Ok(Box::new(SoundEndpoint::new(link, &config)))
    }

    #[cfg(not(feature = "sound"))]
    fn create(
        &self,
        _settings: &Arc<dyn EndpointSettings>,
        _call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        Err(EndReason::EndpointUnavailable)
    }
}

impl EndpointSettings for SoundDeviceConfig {
    fn available(&self) -> bool {
        cfg!(feature = "sound")
    }

    fn validate(&self, key: &str, _config: &Config) -> Vec<ConfigError> {
        SoundDeviceConfig::validate(self, key)
    }

    /// A room's microphone is not for the federation to listen to.
    fn default_callers(&self) -> Option<Vec<String>> {
        Some(vec![crate::config::callers::LOCAL.to_string()])
    }
}

/// A call bridged to a sound device.
#[cfg(feature = "sound")]
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

#[cfg(feature = "sound")]
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

#[cfg(feature = "sound")]
impl Drop for SoundEndpoint {
    fn drop(&mut self) {
        self.link.end();
    }
}

#[cfg(feature = "sound")]
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
