//! `bridge`: two calls joined, each hearing the other (the caller and the person the gateway
//! rang for it). When both calls use the same codec, payloads are forwarded as they came (each
//! call's own RTP sender gives its side one continuous stream: its SSRC, sequence numbers and
//! timestamps); otherwise each side decodes what it hears and the other side's call encodes it.
//! Key presses cross as RFC 4733 events. When one side's call ends, the other hangs up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{Endpoint, EndpointEvent, Incoming, Outgoing};
use crate::media::codec::{AudioFrame, FRAME_SAMPLES};
use crate::media::dtmf::Digit;
use crate::media::stats::MediaStats;
use crate::types::Codec;

/// Payloads held per direction at most (more means one side's clock runs ahead: the oldest go).
const MAX_QUEUED: usize = 5;

/// What goes to one side.
#[derive(Debug, Default)]
struct Direction {
    /// Payloads in that side's codec (forwarding).
    payloads: VecDeque<Bytes>,
    /// Decoded 48 kHz samples (transcoding).
    samples: VecDeque<i16>,
    /// Key presses from the other side.
    digits: VecDeque<Digit>,
    /// Whether the other side's call has ended.
    other_gone: bool,
}

#[derive(Debug)]
struct Shared {
    /// Indexed by the receiving side.
    towards: [Direction; 2],
}

/// One side of a bridge: the endpoint of one of the two calls.
#[derive(Debug)]
pub struct BridgeEnd {
    shared: Arc<Mutex<Shared>>,
    side: usize,
    /// Whether both calls use the same codec (then nothing is decoded or encoded).
    forward: bool,
    frame: Box<AudioFrame>,
    stats: Arc<MediaStats>,
    hung_up: bool,
    forwarded: u64,
    transcoded: u64,
}

/// Joins two calls: the first end goes to the call using `codec_a`, the second to the call
/// using `codec_b`. What crosses is counted in `stats`.
pub fn pair(codec_a: Codec, codec_b: Codec, stats: &Arc<MediaStats>) -> (BridgeEnd, BridgeEnd) {
    let shared = Arc::new(Mutex::new(Shared {
        towards: [Direction::default(), Direction::default()],
    }));
    let forward = codec_a == codec_b;
    let end = |side| BridgeEnd {
        shared: shared.clone(),
        side,
        forward,
        frame: Box::new([0; FRAME_SAMPLES]),
        stats: stats.clone(),
        hung_up: false,
        forwarded: 0,
        transcoded: 0,
    };
    (end(0), end(1))
}

/// Nothing panics while holding the lock; a poisoned lock still holds consistent queues.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl BridgeEnd {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn other(&self) -> usize {
        1 - self.side
    }
}

impl Endpoint for BridgeEnd {
    fn wants_pcm(&self) -> bool {
        !self.forward
    }

    fn on_audio(&mut self, audio: Incoming<'_>) {
        let other = self.other();
        let forward = self.forward;
        let mut shared = self.lock();
        let towards = &mut shared.towards[other];
        match audio {
            Incoming::Audio { payload, .. } if forward => {
                if towards.payloads.len() >= MAX_QUEUED {
                    towards.payloads.pop_front();
                }
                towards.payloads.push_back(payload.clone());
            }
            Incoming::Audio { pcm: Some(pcm), .. } | Incoming::Lost { pcm: Some(pcm), .. } => {
                towards.samples.extend(pcm.iter().copied());
                let excess = towards
                    .samples
                    .len()
                    .saturating_sub(MAX_QUEUED * FRAME_SAMPLES);
                towards.samples.drain(..excess);
            }
            Incoming::Audio { .. } | Incoming::Lost { .. } => {}
        }
    }

    fn on_dtmf(&mut self, digit: Digit) {
        tracing::debug!(digit = %digit.as_char(), "key pressed: passed across the bridge");
        let other = self.other();
        self.lock().towards[other].digits.push_back(digit);
    }

    fn next_frame(&mut self) -> Outgoing<'_> {
        let side = self.side;
        let forward = self.forward;
        let mut shared = lock(&self.shared);
        let towards = &mut shared.towards[side];
        if forward {
            let payload = towards.payloads.pop_front();
            drop(shared);
            return match payload {
                Some(payload) => {
                    self.forwarded += 1;
                    MediaStats::bump(&self.stats.bridge_forwarded);
                    Outgoing::Encoded(payload)
                }
                None => Outgoing::Silence,
            };
        }
        if towards.samples.len() < FRAME_SAMPLES {
            return Outgoing::Silence;
        }
        for (slot, sample) in self
            .frame
            .iter_mut()
            .zip(towards.samples.drain(..FRAME_SAMPLES))
        {
            *slot = sample;
        }
        drop(shared);
        self.transcoded += 1;
        MediaStats::bump(&self.stats.bridge_transcoded);
        Outgoing::Pcm(&self.frame)
    }

    fn poll_event(&mut self) -> Option<EndpointEvent> {
        let side = self.side;
        let mut shared = self.lock();
        let towards = &mut shared.towards[side];
        if let Some(digit) = towards.digits.pop_front() {
            return Some(EndpointEvent::SendDtmf(digit));
        }
        if towards.other_gone && !self.hung_up {
            drop(shared);
            self.hung_up = true;
            tracing::info!("the other side of the bridge hung up");
            return Some(EndpointEvent::HangUp);
        }
        None
    }
}

impl Drop for BridgeEnd {
    fn drop(&mut self) {
        let other = self.other();
        self.lock().towards[other].other_gone = true;
        tracing::info!(
            forwarded = self.forwarded,
            transcoded = self.transcoded,
            "bridge side closed"
        );
    }
}

/// The endpoint of a call we placed until it is bridged: sends nothing, hears nothing.
#[derive(Debug, Default)]
pub struct Unbridged;

impl Endpoint for Unbridged {
    fn on_audio(&mut self, _audio: Incoming<'_>) {}

    fn next_frame(&mut self) -> Outgoing<'_> {
        Outgoing::Silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hear(end: &mut BridgeEnd, byte: u8) {
        let payload = Bytes::from(vec![byte]);
        end.on_audio(Incoming::Audio {
            payload: &payload,
            timestamp: 0,
            duration: FRAME_SAMPLES,
            pcm: None,
        });
    }

    #[test]
    fn same_codec_forwards_payloads_both_ways_without_decoding() {
        let stats: Arc<MediaStats> = Arc::default();
        let (mut a, mut b) = pair(Codec::Opus, Codec::Opus, &stats);
        assert!(!a.wants_pcm() && !b.wants_pcm());
        hear(&mut a, 1);
        hear(&mut a, 2);
        hear(&mut b, 9);
        assert!(matches!(b.next_frame(), Outgoing::Encoded(p) if p[0] == 1));
        assert!(matches!(b.next_frame(), Outgoing::Encoded(p) if p[0] == 2));
        assert!(matches!(b.next_frame(), Outgoing::Silence));
        assert!(matches!(a.next_frame(), Outgoing::Encoded(p) if p[0] == 9));
        // A side that runs ahead loses its oldest payloads, not the newest.
        for n in 0..10 {
            hear(&mut a, n);
        }
        assert!(matches!(b.next_frame(), Outgoing::Encoded(p) if p[0] == 5));
        assert_eq!(MediaStats::get(&stats.bridge_forwarded), 4);
        assert_eq!(MediaStats::get(&stats.bridge_transcoded), 0);
    }

    #[test]
    fn different_codecs_hand_over_samples_in_frames() {
        let (mut a, mut b) = pair(Codec::Pcmu, Codec::Opus, &Arc::default());
        assert!(a.wants_pcm() && b.wants_pcm());
        let payload = Bytes::from_static(&[0; 80]);
        // 10 ms at a time: a frame is handed over once 20 ms have come.
        let half = vec![7i16; FRAME_SAMPLES / 2];
        a.on_audio(Incoming::Audio {
            payload: &payload,
            timestamp: 0,
            duration: half.len(),
            pcm: Some(&half),
        });
        assert!(matches!(b.next_frame(), Outgoing::Silence));
        a.on_audio(Incoming::Lost {
            duration: half.len(),
            pcm: Some(&half),
        });
        assert!(matches!(b.next_frame(), Outgoing::Pcm(frame) if frame.iter().all(|&s| s == 7)));
        assert!(matches!(b.next_frame(), Outgoing::Silence));
    }

    #[test]
    fn keys_cross_and_a_closed_side_hangs_up_the_other() {
        let (mut a, mut b) = pair(Codec::Opus, Codec::Opus, &Arc::default());
        let five = Digit::from_char('5').unwrap();
        b.on_dtmf(five);
        assert_eq!(a.poll_event(), Some(EndpointEvent::SendDtmf(five)));
        assert_eq!(a.poll_event(), None);
        drop(b);
        assert_eq!(a.poll_event(), Some(EndpointEvent::HangUp));
        assert_eq!(a.poll_event(), None);
    }
}
