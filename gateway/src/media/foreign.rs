//! Audio a peer sends in a codec that was offered but not answered. RFC 3264 says a peer sends
//! only what the answer lists, but libwebrtc answering PCMU to the gateway's offer of Opus and
//! PCMU keeps sending Opus (seen with Chromium). Such packets are decoded and encoded again in
//! the call's codec, their timestamps moved to its clock, so that everything after the receive
//! path (jitter buffer, endpoints, bridges) sees one stream in one codec. Costs nothing until a
//! foreign packet arrives.

use bytes::Bytes;

use crate::media::codec::{CodecError, Decoder, Encoder, FRAME_SAMPLES, SAMPLE_RATE};
use crate::types::Codec;

/// Most 20 ms frames encoded into one payload (60 ms, the longest Opus frame); decoded audio
/// beyond that waiting to be encoded is dropped, so a peer sending long packets cannot grow the
/// delay.
const MOST_FRAMES: usize = 3;

/// A foreign packet, now in the call's codec.
#[derive(Debug, PartialEq, Eq)]
pub struct Transcoded {
    /// RTP timestamp in the call codec's clock.
    pub timestamp: u32,
    /// The payload in the call's codec.
    pub payload: Bytes,
    /// Duration in samples at 48 kHz.
    pub duration: usize,
}

/// Turns one call's foreign audio into its own codec.
pub struct ForeignAudio {
    target: Codec,
    decoders: Vec<(Codec, Decoder)>,
    encoder: Option<Encoder>,
    /// Decoded samples waiting to fill a frame.
    pcm: Vec<i16>,
    encoded: Vec<u8>,
    /// The latest foreign timestamp seen, its codec, and where it maps to.
    anchor: Option<(Codec, u32, u32)>,
}

impl ForeignAudio {
    /// Foreign audio into `target`, the call's codec.
    pub fn new(target: Codec) -> Self {
        Self {
            target,
            decoders: Vec::new(),
            encoder: None,
            pcm: Vec::with_capacity(FRAME_SAMPLES * (MOST_FRAMES + 1)),
            encoded: vec![0; 1500],
            anchor: None,
        }
    }

    /// The call-clock timestamp of `timestamp` in a `codec` stream: continuous while that codec
    /// goes on (reordered packets map back), starting afresh when the codec changes.
    pub fn timestamp(&mut self, codec: Codec, timestamp: u32) -> u32 {
        let Some((_, from, to)) = self.anchor.filter(|(c, _, _)| *c == codec) else {
            self.anchor = Some((codec, timestamp, timestamp));
            return timestamp;
        };
        let elapsed = i64::from(timestamp.wrapping_sub(from) as i32);
        let scaled = elapsed * i64::from(self.target.clock_rate()) / i64::from(codec.clock_rate());
        let mapped = to.wrapping_add(scaled as i32 as u32);
        if elapsed >= 0 {
            self.anchor = Some((codec, timestamp, mapped));
        }
        mapped
    }

    /// Decodes a `codec` payload whose call-clock timestamp is `timestamp` and encodes what
    /// fills whole frames in the call's codec; `None` while less than a frame is decoded.
    pub fn transcode(
        &mut self,
        codec: Codec,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<Transcoded>, CodecError> {
        if payload.is_empty() {
            // Not audio (libopus would conceal 120 ms for it).
            return Ok(None);
        }
        let waiting = self.pcm.len();
        let decoder = match self.decoders.iter().position(|(c, _)| *c == codec) {
            Some(i) => &mut self.decoders[i].1,
            None => {
                self.decoders.push((codec, Decoder::new(codec)?));
                &mut self.decoders.last_mut().expect("just pushed").1
            }
        };
        decoder.decode(Some(payload), 0, &mut self.pcm)?;
        let frames = (self.pcm.len() / FRAME_SAMPLES).min(MOST_FRAMES);
        if frames == 0 {
            return Ok(None);
        }
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None => self.encoder.insert(Encoder::new(self.target)?),
        };
        let samples = frames * FRAME_SAMPLES;
        let n = encoder.encode_samples(&self.pcm[..samples], &mut self.encoded)?;
        self.pcm.drain(..samples);
        let excess = self.pcm.len().saturating_sub(MOST_FRAMES * FRAME_SAMPLES);
        self.pcm.drain(..excess);
        if n == 0 {
            return Ok(None);
        }
        // The payload starts with the samples that were waiting before this packet.
        let waiting_units =
            (waiting as u64 * u64::from(self.target.clock_rate()) / u64::from(SAMPLE_RATE)) as u32;
        Ok(Some(Transcoded {
            timestamp: timestamp.wrapping_sub(waiting_units),
            payload: Bytes::copy_from_slice(&self.encoded[..n]),
            duration: samples,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::tests::{tone, tone_share};

    #[test]
    fn timestamps_follow_the_call_clock_through_reordering_and_wrap() {
        let mut foreign = ForeignAudio::new(Codec::Pcmu);
        let start = u32::MAX - 960;
        assert_eq!(foreign.timestamp(Codec::Opus, start), start);
        assert_eq!(
            foreign.timestamp(Codec::Opus, start.wrapping_add(1920)),
            start.wrapping_add(320)
        );
        // A late packet maps back.
        assert_eq!(
            foreign.timestamp(Codec::Opus, start.wrapping_add(960)),
            start.wrapping_add(160)
        );
        assert_eq!(
            foreign.timestamp(Codec::Opus, start.wrapping_add(2880)),
            start.wrapping_add(480)
        );
        // Another codec starts afresh.
        assert_eq!(foreign.timestamp(Codec::Pcma, 7), 7);
    }

    #[test]
    fn opus_becomes_pcmu_frame_by_frame_and_the_tone_survives() {
        let mut opus = Encoder::new(Codec::Opus).unwrap();
        let mut foreign = ForeignAudio::new(Codec::Pcmu);
        let mut pcmu = Decoder::new(Codec::Pcmu).unwrap();
        let mut heard = Vec::new();
        let mut buf = [0u8; 1500];
        for (i, frame) in (0u32..).zip(tone(440.0, 50)) {
            let n = opus.encode(&frame, &mut buf).unwrap();
            let ts = foreign.timestamp(Codec::Opus, 960 * i);
            let out = foreign
                .transcode(Codec::Opus, ts, &buf[..n])
                .unwrap()
                .expect("a frame per packet");
            assert_eq!(
                (out.payload.len(), out.duration, out.timestamp),
                (160, 960, 160 * i)
            );
            pcmu.decode(Some(&out.payload), 0, &mut heard).unwrap();
        }
        let share = tone_share(&heard[9600..], 440.0);
        assert!(share > 0.8, "share {share}");
    }

    #[test]
    fn garbage_and_empty_payloads_give_nothing() {
        let mut foreign = ForeignAudio::new(Codec::Pcmu);
        assert!(!matches!(
            foreign.transcode(Codec::Opus, 0, &[0xff; 3]),
            Ok(Some(_))
        ));
        assert_eq!(foreign.transcode(Codec::Opus, 0, &[]).ok(), Some(None));
        assert_eq!(foreign.transcode(Codec::Pcma, 0, &[]).ok(), Some(None));
    }
}
