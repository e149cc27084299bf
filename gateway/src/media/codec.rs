//! Audio codecs: Opus (libopus), PCMU and PCMA (G.711), decoding to and encoding from the one
//! frame type endpoints see: 20 ms of 48 kHz mono 16-bit samples. G.711 is resampled between
//! 8 kHz and 48 kHz with rubato. Encoders and decoders are made per call, only when an endpoint
//! needs samples (echo and Opus recording pass packets through untouched).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::plc::G711Concealer;
use crate::types::Codec;

/// Sample rate of the audio endpoints see.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// One 20 ms frame of 48 kHz mono audio.
pub type AudioFrame = [i16; FRAME_SAMPLES];

/// Samples per 20 ms at 8 kHz.
const G711_FRAME: usize = 160;
/// Largest Opus packet duration (120 ms at 48 kHz).
const OPUS_MAX_SAMPLES: usize = 5760;

/// A codec could not be set up or could not process a packet.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus reported an error.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The resampler could not be built or run.
    #[error("resampler: {0}")]
    Resampler(String),
}

impl Codec {
    /// RTP timestamp units in one 20 ms frame.
    pub fn frame_timestamp_units(&self) -> u32 {
        self.clock_rate() / 50
    }

    /// Appends the 8 kHz samples of a G.711 payload to `out` (nothing for Opus).
    pub fn decode_g711(&self, payload: &[u8], out: &mut Vec<i16>) {
        if *self != Codec::Opus {
            let law = Law::of(*self);
            out.extend(payload.iter().map(|b| law.decode(*b)));
        }
    }

    /// Duration of an encoded payload in samples at 48 kHz, if it can be told.
    pub fn payload_duration(&self, payload: &[u8]) -> Option<usize> {
        match self {
            Codec::Opus => opus::packet::get_nb_samples(payload, SAMPLE_RATE).ok(),
            Codec::Pcmu | Codec::Pcma => Some(payload.len() * 6),
        }
    }
}

/// Decodes one call's received audio to 48 kHz mono.
pub struct Decoder {
    kind: DecoderKind,
}

enum DecoderKind {
    Opus {
        decoder: opus::Decoder,
        scratch: Vec<i16>,
    },
    G711 {
        law: Law,
        upsampler: Box<G711Resampler>,
        concealer: Box<G711Concealer>,
        narrow: Vec<i16>,
    },
}

/// How lost audio was filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concealment {
    /// From the in-band FEC data (Opus LBRR) of the packet after it: the audio itself, at a
    /// lower rate.
    Fec,
    /// Made up from the audio before it (packet loss concealment).
    Plc,
}

impl Decoder {
    /// A decoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let kind = match codec {
            Codec::Opus => DecoderKind::Opus {
                decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
                scratch: vec![0; OPUS_MAX_SAMPLES],
            },
            Codec::Pcmu | Codec::Pcma => DecoderKind::G711 {
                law: Law::of(codec),
                upsampler: Box::new(G711Resampler::new(8000, 48000, G711_FRAME)?),
                concealer: Box::default(),
                narrow: Vec::with_capacity(G711_FRAME * 3),
            },
        };
        Ok(Self { kind })
    }

    /// Fills in `lost_samples` (at 48 kHz) of audio that did not arrive, appending 48 kHz
    /// samples to `out`: from `next`'s FEC data when `next` (the packet after the loss) is an
    /// Opus packet that carries some, else by concealment.
    pub fn recover(
        &mut self,
        next: Option<&[u8]>,
        lost_samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<Concealment, CodecError> {
        if let (DecoderKind::Opus { decoder, scratch }, Some(next)) = (&mut self.kind, next) {
            let len = lost_samples.min(OPUS_MAX_SAMPLES) / 120 * 120;
            if len > 0 && opus_has_fec(next) {
                let n = decoder.decode(next, &mut scratch[..len], true)?;
                out.extend_from_slice(&scratch[..n]);
                return Ok(Concealment::Fec);
            }
        }
        self.decode(None, lost_samples, out)?;
        Ok(Concealment::Plc)
    }

    /// Decodes `payload`, or conceals `lost_samples` (at 48 kHz) of lost audio when `payload` is
    /// `None`, appending 48 kHz samples to `out`.
    pub fn decode(
        &mut self,
        payload: Option<&[u8]>,
        lost_samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        match &mut self.kind {
            DecoderKind::Opus { decoder, scratch } => {
                let n = match payload {
                    Some(payload) => decoder.decode(payload, scratch, false)?,
                    None => {
                        // Concealment covers exactly the length of the buffer given.
                        let len = lost_samples.min(OPUS_MAX_SAMPLES) / 120 * 120;
                        if len == 0 {
                            return Ok(());
                        }
                        decoder.decode(&[], &mut scratch[..len], false)?
                    }
                };
                out.extend_from_slice(&scratch[..n]);
            }
            DecoderKind::G711 {
                law,
                upsampler,
                concealer,
                narrow,
            } => {
                narrow.clear();
                match payload {
                    Some(payload) => {
                        narrow.extend(payload.iter().map(|b| law.decode(*b)));
                        concealer.heard(narrow);
                    }
                    None => concealer.conceal(lost_samples / 6, narrow),
                }
                upsampler.push(narrow.iter().copied());
                upsampler.drain_into(out)?;
            }
        }
        Ok(())
    }
}

/// Encodes 20 ms frames of 48 kHz mono for one call.
pub struct Encoder {
    kind: EncoderKind,
}

enum EncoderKind {
    Opus(Box<opus::Encoder>),
    G711 {
        law: Law,
        downsampler: Box<G711Resampler>,
        narrow: Vec<i16>,
    },
}

impl Encoder {
    /// An encoder for `codec` (Opus: VoIP mode, 32 kbit/s, complexity 5, in-band FEC once
    /// loss is expected: see [`Encoder::expect_loss`]).
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let kind = match codec {
            Codec::Opus => {
                let mut encoder =
                    opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
                encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
                encoder.set_complexity(5)?;
                encoder.set_inband_fec(true)?;
                EncoderKind::Opus(Box::new(encoder))
            }
            Codec::Pcmu | Codec::Pcma => EncoderKind::G711 {
                law: Law::of(codec),
                downsampler: Box::new(G711Resampler::new(48000, 8000, FRAME_SAMPLES)?),
                narrow: Vec::with_capacity(G711_FRAME * 2),
            },
        };
        Ok(Self { kind })
    }

    /// Tells an Opus encoder how much of what it sends is lost (in percent, from the peer's
    /// RTCP reports): libopus adds in-band FEC, sized for that loss, only when it is above 0.
    /// Nothing for G.711.
    pub fn expect_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        if let EncoderKind::Opus(encoder) = &mut self.kind {
            encoder.set_packet_loss_perc(i32::from(percent.min(100)))?;
        }
        Ok(())
    }

    /// Encodes one frame into `out`; returns the payload length.
    pub fn encode(&mut self, frame: &AudioFrame, out: &mut [u8]) -> Result<usize, CodecError> {
        self.encode_samples(frame, out)
    }

    /// Encodes 48 kHz samples into one payload in `out`; returns its length. Opus takes 2.5,
    /// 5, 10, 20, 40 or 60 ms; G.711 any length (what does not fill a resampler chunk waits
    /// for the next call).
    pub fn encode_samples(&mut self, samples: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        match &mut self.kind {
            EncoderKind::Opus(encoder) => Ok(encoder.encode(samples, out)?),
            EncoderKind::G711 {
                law,
                downsampler,
                narrow,
            } => {
                downsampler.push(samples.iter().copied());
                narrow.clear();
                downsampler.drain_into(narrow)?;
                let n = narrow.len().min(out.len());
                for (byte, sample) in out.iter_mut().zip(narrow.iter()).take(n) {
                    *byte = law.encode(*sample);
                }
                Ok(n)
            }
        }
    }
}

/// Whether an Opus packet carries in-band FEC (SILK LBRR) data for the audio before it: the
/// LBRR flag after the voice-activity flags of its first frame's SILK header (RFC 6716 4.2.3;
/// libopus' `opus_packet_has_lbrr`). CELT-only and unparsable packets have none.
pub fn opus_has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    let config = toc >> 3;
    let silk_frames: u32 = match config {
        // SILK-only: 10, 20, 40 or 60 ms, one SILK frame per 20 ms (at least one).
        0..=11 => [1, 1, 2, 3][usize::from(config % 4)],
        // Hybrid: 10 or 20 ms, one SILK frame.
        12..=15 => 1,
        _ => return false,
    };
    let first_frame = match toc & 0x03 {
        0 | 1 => packet.get(1).copied(),
        _ => opus::packet::parse(packet)
            .ok()
            .and_then(|parsed| parsed.frames.first().and_then(|f| f.first().copied())),
    };
    first_frame.is_some_and(|byte| (byte >> (7 - silk_frames)) & 1 == 1)
}

/// Fixed-ratio resampling in whole chunks, buffering what does not fill one.
struct G711Resampler {
    resampler: Fft<f32>,
    pending: Vec<f32>,
    chunk_in: usize,
    output: Vec<f32>,
}

impl G711Resampler {
    fn new(rate_in: usize, rate_out: usize, chunk_in: usize) -> Result<Self, CodecError> {
        let resampler = Fft::<f32>::new(rate_in, rate_out, chunk_in, 1, FixedSync::Both)
            .map_err(|e| CodecError::Resampler(e.to_string()))?;
        let chunk_in = resampler.input_frames_next();
        let output = vec![0.0; resampler.output_frames_next()];
        Ok(Self {
            resampler,
            pending: Vec::with_capacity(chunk_in * 2),
            chunk_in,
            output,
        })
    }

    fn push(&mut self, samples: impl Iterator<Item = i16>) {
        self.pending.extend(samples.map(|s| f32::from(s) / 32768.0));
    }

    fn drain_into(&mut self, out: &mut Vec<i16>) -> Result<(), CodecError> {
        let mut consumed = 0;
        while self.pending.len() - consumed >= self.chunk_in {
            let input = &self.pending[consumed..consumed + self.chunk_in];
            let frames_out = self.output.len();
            let input = InterleavedSlice::new(input, 1, self.chunk_in)
                .map_err(|e| CodecError::Resampler(e.to_string()))?;
            let mut output = InterleavedSlice::new_mut(&mut self.output, 1, frames_out)
                .map_err(|e| CodecError::Resampler(e.to_string()))?;
            let (_, written) = self
                .resampler
                .process_into_buffer(&input, &mut output, None)
                .map_err(|e| CodecError::Resampler(e.to_string()))?;
            out.extend(
                self.output[..written]
                    .iter()
                    .map(|s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16),
            );
            consumed += self.chunk_in;
        }
        self.pending.drain(..consumed);
        Ok(())
    }
}

/// G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Law {
    Mu,
    A,
}

impl Law {
    fn of(codec: Codec) -> Self {
        if codec == Codec::Pcma {
            Law::A
        } else {
            Law::Mu
        }
    }

    fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => linear_to_ulaw(sample),
            Law::A => linear_to_alaw(sample),
        }
    }

    fn decode(self, byte: u8) -> i16 {
        match self {
            Law::Mu => ulaw_to_linear(byte),
            Law::A => alaw_to_linear(byte),
        }
    }
}

/// ITU-T G.711 µ-law encoding of a 16-bit sample.
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// ITU-T G.711 A-law encoding of a 16-bit sample.
fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3; // 13-bit
    let sign = if s >= 0 {
        0xD5
    } else {
        s = -s - 1;
        0x55
    };
    let s = s.min(0x0FFF);
    let encoded = if s < 32 {
        (s >> 1) as u8
    } else {
        let exponent = (31 - (s as u32).leading_zeros() - 4) as i32; // 1..=7
        ((exponent << 4) | ((s >> exponent) & 0x0F)) as u8
    };
    encoded ^ sign
}

fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `frames` frames of a sine at `freq` Hz.
    pub(crate) fn tone(freq: f32, frames: usize) -> Vec<AudioFrame> {
        (0..frames)
            .map(|f| {
                let mut frame = [0i16; FRAME_SAMPLES];
                for (i, s) in frame.iter_mut().enumerate() {
                    let t = (f * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                    *s = (8000.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16;
                }
                frame
            })
            .collect()
    }

    /// Energy of `samples` at `freq` relative to their total energy (Goertzel).
    pub(crate) fn tone_share(samples: &[i16], freq: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * freq / SAMPLE_RATE as f32;
        let (mut s1, mut s2) = (0f32, 0f32);
        let mut total = 0f32;
        for &x in samples {
            let x = f32::from(x);
            let s0 = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
            total += x * x;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        if total == 0.0 {
            0.0
        } else {
            2.0 * power / (samples.len() as f32 * total)
        }
    }

    #[test]
    fn g711_laws_round_trip_closely() {
        for law in [Law::Mu, Law::A] {
            for sample in (-32768i32..32768).step_by(37) {
                let sample = sample as i16;
                let back = law.decode(law.encode(sample));
                let error = (i32::from(back) - i32::from(sample)).abs();
                // Logarithmic companding: the error grows with the magnitude.
                let allowed = (i32::from(sample).abs() / 16).max(16);
                assert!(error <= allowed, "{law:?}: {sample} -> {back}");
            }
        }
        // Known code points.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    fn round_trip(codec: Codec, freq: f32) -> Vec<i16> {
        let mut encoder = Encoder::new(codec).unwrap();
        let mut decoder = Decoder::new(codec).unwrap();
        let mut out = Vec::new();
        let mut packet = [0u8; 1500];
        for frame in tone(freq, 50) {
            let n = encoder.encode(&frame, &mut packet).unwrap();
            assert!(n > 0);
            decoder.decode(Some(&packet[..n]), 0, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn every_codec_carries_a_tone() {
        for codec in [Codec::Opus, Codec::Pcmu, Codec::Pcma] {
            let out = round_trip(codec, 440.0);
            assert!(
                out.len() >= 40 * FRAME_SAMPLES,
                "{codec:?}: {} samples",
                out.len()
            );
            let tail = &out[out.len() - 20 * FRAME_SAMPLES..];
            let share = tone_share(tail, 440.0);
            assert!(share > 0.8, "{codec:?}: 440 Hz share {share}");
        }
    }

    #[test]
    fn lost_opus_audio_is_concealed_for_its_duration() {
        let mut decoder = Decoder::new(Codec::Opus).unwrap();
        let mut out = Vec::new();
        decoder.decode(None, FRAME_SAMPLES, &mut out).unwrap();
        assert_eq!(out.len(), FRAME_SAMPLES);
    }

    /// Speech-like audio: a buzz with harmonics whose pitch and level move every frame.
    pub(crate) fn voice(frames: usize) -> Vec<AudioFrame> {
        (0..frames)
            .map(|f| {
                let mut frame = [0i16; FRAME_SAMPLES];
                let pitch = 140.0 + 60.0 * (f as f64 * 0.7).sin();
                let level = 4000.0 + 3000.0 * (f as f64 * 0.45).cos();
                for (n, sample) in frame.iter_mut().enumerate() {
                    let t = (f * FRAME_SAMPLES + n) as f64 / 48_000.0;
                    let wave: f64 = (1..6)
                        .map(|h| {
                            (2.0 * std::f64::consts::PI * pitch * h as f64 * t).sin() / h as f64
                        })
                        .sum();
                    *sample = (level * wave) as i16;
                }
                frame
            })
            .collect()
    }

    fn distance(a: &[i16], b: &[i16]) -> f64 {
        let error: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        (error / a.len() as f64).sqrt()
    }

    #[test]
    fn a_lost_opus_packet_is_recovered_from_the_next_ones_fec_better_than_concealed() {
        let mut encoder = Encoder::new(Codec::Opus).unwrap();
        encoder.expect_loss(20).unwrap();
        let mut buf = [0u8; 1500];
        let packets: Vec<Vec<u8>> = voice(60)
            .iter()
            .map(|frame| {
                let n = encoder.encode(frame, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect();
        let with_fec = packets.iter().filter(|p| opus_has_fec(p)).count();
        // (49 of 60 here: libopus leaves it out of a few frames it finds unimportant.)
        assert!(with_fec > 40, "{with_fec} of 60 packets carry FEC");
        // Without an expected loss, libopus adds none.
        let mut plain = Encoder::new(Codec::Opus).unwrap();
        let without: usize = voice(30)
            .iter()
            .filter(|frame| {
                let n = plain.encode(frame, &mut buf).unwrap();
                opus_has_fec(&buf[..n])
            })
            .count();
        assert_eq!(without, 0);

        let lost = (30..58).find(|i| opus_has_fec(&packets[i + 1])).unwrap();
        let decode_all = |skip: bool, fec: bool| {
            let mut decoder = Decoder::new(Codec::Opus).unwrap();
            let mut out = Vec::new();
            let mut how = None;
            for (i, packet) in packets.iter().enumerate() {
                if skip && i == lost {
                    let next = fec.then(|| &packets[lost + 1][..]);
                    how = Some(decoder.recover(next, FRAME_SAMPLES, &mut out).unwrap());
                } else {
                    decoder.decode(Some(packet), 0, &mut out).unwrap();
                }
            }
            (out, how)
        };
        let (reference, _) = decode_all(false, false);
        let (recovered, how) = decode_all(true, true);
        assert_eq!(how, Some(Concealment::Fec));
        let (concealed, how) = decode_all(true, false);
        assert_eq!(how, Some(Concealment::Plc));
        let span = lost * FRAME_SAMPLES..(lost + 1) * FRAME_SAMPLES;
        let fec_error = distance(&recovered[span.clone()], &reference[span.clone()]);
        let plc_error = distance(&concealed[span.clone()], &reference[span]);
        assert!(
            fec_error < plc_error * 0.7,
            "FEC {fec_error:.0} against concealment {plc_error:.0} (RMS error)"
        );
    }

    #[test]
    fn lost_g711_audio_continues_the_tone_instead_of_silence() {
        let mut encoder = Encoder::new(Codec::Pcmu).unwrap();
        let mut decoder = Decoder::new(Codec::Pcmu).unwrap();
        let mut out = Vec::new();
        let mut packet = [0u8; 1500];
        for (i, frame) in tone(400.0, 30).into_iter().enumerate() {
            let n = encoder.encode(&frame, &mut packet).unwrap();
            if i == 20 {
                let how = decoder.recover(Some(&packet[..n]), FRAME_SAMPLES, &mut out);
                assert_eq!(how.unwrap(), Concealment::Plc);
            } else {
                decoder.decode(Some(&packet[..n]), 0, &mut out).unwrap();
            }
        }
        // The concealed 20 ms (delayed by the resampler by less than a frame) still sound.
        let around = &out[20 * FRAME_SAMPLES..21 * FRAME_SAMPLES];
        assert!(
            tone_share(around, 400.0) > 0.6,
            "{}",
            tone_share(around, 400.0)
        );
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        let mut decoder = Decoder::new(Codec::Opus).unwrap();
        let mut out = Vec::new();
        for payload in [&[0xFFu8; 3][..], &[0x0Bu8; 1200], &[]] {
            let _ = decoder.decode(Some(payload), 0, &mut out);
        }
        assert_eq!(Codec::Opus.payload_duration(&[0xFF, 0xFF]), None);
        for packet in [&[][..], &[0x0B], &[0x0B, 0xFF], &[0x03, 0x01], &[0xFF; 5]] {
            let _ = opus_has_fec(packet);
            let _ = decoder.recover(Some(packet), FRAME_SAMPLES, &mut out);
        }
    }
}
