//! `echo`: the caller hears themselves, with no delay added beyond the jitter buffer. Packets are
//! returned as they came (no decoding, no encoding), and key presses are sent back as DTMF.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{Endpoint, EndpointEvent, Incoming, Kind, NewCall, Outgoing};
use crate::config::{no_settings, ConfigError, EndpointSettings};
use crate::media::dtmf::Digit;
use crate::types::EndReason;

/// `kind = "echo"`, which has no settings of its own.
pub static KIND: EchoKind = EchoKind;

/// The kind `echo`.
pub struct EchoKind;

/// An echo endpoint's settings: none.
#[derive(Debug)]
struct EchoSettings;

impl EndpointSettings for EchoSettings {}

impl Kind for EchoKind {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn settings(
        &self,
        key: &str,
        table: toml::Table,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Arc<dyn EndpointSettings>> {
        no_settings(self.name(), key, &table, errors);
        Some(Arc::new(EchoSettings))
    }

    fn create(
        &self,
        _settings: &Arc<dyn EndpointSettings>,
        _call: &NewCall<'_>,
    ) -> Result<Box<dyn Endpoint>, EndReason> {
        Ok(Box::new(Echo::default()))
    }
}

/// Packets held at most (more means the sender runs ahead of our clock: the oldest go).
const MAX_QUEUED: usize = 5;

/// The echo endpoint.
#[derive(Debug, Default)]
pub struct Echo {
    queue: VecDeque<Bytes>,
    events: VecDeque<EndpointEvent>,
}

impl Endpoint for Echo {
    fn on_audio(&mut self, audio: Incoming<'_>) {
        if let Incoming::Audio { payload, .. } = audio {
            if self.queue.len() >= MAX_QUEUED {
                self.queue.pop_front();
            }
            self.queue.push_back(payload.clone());
        }
    }

    fn on_dtmf(&mut self, digit: Digit) {
        tracing::info!(digit = %digit.as_char(), "key pressed");
        self.events.push_back(EndpointEvent::SendDtmf(digit));
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        match self.queue.pop_front() {
            Some(payload) => Outgoing::Encoded(payload),
            None => Outgoing::Silence,
        }
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_it_hears_in_order_and_echoes_keys() {
        let mut echo = Echo::default();
        assert!(matches!(echo.next_frame(), Outgoing::Silence));
        for n in 0..3u8 {
            let payload = Bytes::from(vec![n]);
            echo.on_audio(Incoming::Audio {
                payload: &payload,
                timestamp: u32::from(n) * 960,
                duration: 960,
                pcm: None,
            });
        }
        echo.on_audio(Incoming::Lost {
            duration: 960,
            pcm: None,
        });
        for n in 0..3u8 {
            assert!(matches!(echo.next_frame(), Outgoing::Encoded(p) if p[0] == n));
        }
        assert!(matches!(echo.next_frame(), Outgoing::Silence));
        let five = Digit::from_char('5').unwrap();
        echo.on_dtmf(five);
        assert_eq!(echo.poll_event(), Some(EndpointEvent::SendDtmf(five)));
        assert_eq!(echo.poll_event(), None);
    }
}
