//! One message being recorded: the caller's packets placed on their RTP timeline (gaps become
//! silence, so the recording lasts as long as the call did), written in the mailbox's format,
//! and whether each packet holds voice (for the silence that ends a message).
//!
//! | caller | `ogg-opus` | `wav` |
//! | --- | --- | --- |
//! | Opus | packets copied into Ogg pages | decoded at 16 kHz |
//! | PCMU/PCMA | decoded, Opus-encoded at 8 kHz | decoded, 8 kHz |
//!
//! A short gap (lost packets, up to [`MAX_REPAIRED`]) is filled with the audio itself where the
//! next packet's in-band FEC holds it (Opus), else with concealment; only longer gaps (a caller
//! on hold, DTX) become silence. For the Ogg copy of an Opus caller, what fills the gap is
//! encoded as packets of its own.

use std::io::{self, Seek, Write};
use std::time::Duration;

use super::activity::{level_dbfs, opus_voice_activity};
use super::ogg_opus::OggOpusWriter;
use super::wav::WavRecorder;
use crate::config::RecordingFormat;
use crate::media::codec::{opus_has_fec, Concealment, Decoder, Encoder};
use crate::media::plc::G711Concealer;
use crate::types::Codec;

/// A jump in RTP time longer than this is a new stream, not a gap to fill.
const MAX_GAP: Duration = Duration::from_secs(30);
/// Samples per 20 ms at 8 kHz.
const NARROW_FRAME: usize = 160;
/// Bit rate of the Opus encoding of G.711 callers: transparent for narrowband speech.
const NARROWBAND_OPUS_BITRATE: i32 = 16_000;
/// The longest gap filled in (in 48 kHz samples: 60 ms, three lost 20 ms packets); longer ones
/// are silence.
pub const MAX_REPAIRED: u64 = 3 * 960;

/// Records one caller's audio.
pub struct Recorder<W: Write + Seek> {
    sink: Sink<W>,
    codec: Codec,
    next_timestamp: Option<u32>,
    silence_threshold: f32,
    /// Decodes CELT-only Opus packets (which carry no voice flag) at 8 kHz for their level.
    level_decoder: Option<opus::Decoder>,
    scratch: Vec<i16>,
    /// The last Opus packet recorded, to start a decoder for filling a gap after it.
    last_opus: Vec<u8>,
    /// Encodes what fills a gap in the Ogg copy of an Opus caller (made at the first gap).
    gap_encoder: Option<Box<Encoder>>,
    /// Conceals gaps in G.711 callers' audio.
    concealer: G711Concealer,
    /// Lost packets filled in from the next packet's FEC data.
    recovered: u64,
}

enum Sink<W: Write + Seek> {
    Ogg {
        writer: OggOpusWriter<W>,
        /// Encodes G.711 callers' audio; `None` for Opus callers (copied as they are).
        encoder: Option<NarrowbandEncoder>,
    },
    Wav {
        writer: WavRecorder<W>,
        /// Decodes Opus callers' audio at 16 kHz; `None` for G.711 callers.
        decoder: Option<opus::Decoder>,
    },
}

/// Opus at 8 kHz for G.711 callers' audio.
struct NarrowbandEncoder {
    encoder: opus::Encoder,
    pending: Vec<i16>,
    packet: Vec<u8>,
}

impl NarrowbandEncoder {
    fn new() -> io::Result<(Self, u16)> {
        let mut encoder = opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(io::Error::other)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(NARROWBAND_OPUS_BITRATE))
            .map_err(io::Error::other)?;
        // The encoder's delay, counted in 48 kHz samples as Ogg Opus wants.
        let lookahead = encoder.get_lookahead().map_err(io::Error::other)?;
        let pre_skip = u16::try_from(lookahead.max(0) * 6).unwrap_or(0);
        Ok((
            Self {
                encoder,
                pending: Vec::with_capacity(NARROW_FRAME * 2),
                packet: vec![0; 1500],
            },
            pre_skip,
        ))
    }

    /// Encodes what fills whole frames into `writer`.
    fn push<W: Write>(
        &mut self,
        samples: impl Iterator<Item = i16>,
        writer: &mut OggOpusWriter<W>,
    ) -> io::Result<()> {
        self.pending.extend(samples);
        let mut start = 0;
        while self.pending.len() - start >= NARROW_FRAME {
            let frame = &self.pending[start..start + NARROW_FRAME];
            let n = self
                .encoder
                .encode(frame, &mut self.packet)
                .map_err(io::Error::other)?;
            writer.packet(&self.packet[..n], 960)?;
            start += NARROW_FRAME;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Encodes the last partial frame, padded with silence.
    fn flush<W: Write>(&mut self, writer: &mut OggOpusWriter<W>) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let missing = NARROW_FRAME - self.pending.len();
        self.push(std::iter::repeat_n(0, missing), writer)
    }
}

impl<W: Write + Seek> Recorder<W> {
    /// Starts a recording of a caller using `codec` into `out`. `comments` go into the file's
    /// tags where the format has them.
    pub fn new(
        out: W,
        format: RecordingFormat,
        codec: Codec,
        silence_threshold: f32,
        comments: &[(&str, &str)],
    ) -> io::Result<Self> {
        let vendor = concat!("jingle-gateway ", env!("CARGO_PKG_VERSION"));
        let sink = match (format, codec) {
            (RecordingFormat::OggOpus, Codec::Opus) => Sink::Ogg {
                writer: OggOpusWriter::new(out, 0, vendor, comments)?,
                encoder: None,
            },
            (RecordingFormat::OggOpus, Codec::Pcmu | Codec::Pcma) => {
                let (encoder, pre_skip) = NarrowbandEncoder::new()?;
                Sink::Ogg {
                    writer: OggOpusWriter::new(out, pre_skip, vendor, comments)?,
                    encoder: Some(encoder),
                }
            }
            (RecordingFormat::Wav, Codec::Opus) => Sink::Wav {
                writer: WavRecorder::new(out, 16_000)?,
                decoder: Some(
                    opus::Decoder::new(16_000, opus::Channels::Mono).map_err(io::Error::other)?,
                ),
            },
            (RecordingFormat::Wav, Codec::Pcmu | Codec::Pcma) => Sink::Wav {
                writer: WavRecorder::new(out, 8000)?,
                decoder: None,
            },
        };
        Ok(Self {
            sink,
            codec,
            next_timestamp: None,
            silence_threshold,
            level_decoder: None,
            scratch: Vec::with_capacity(5760),
            last_opus: Vec::new(),
            gap_encoder: None,
            concealer: G711Concealer::default(),
            recovered: 0,
        })
    }

    /// Lost packets filled in from FEC data so far.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Records a packet the caller sent with RTP `timestamp`; returns whether it holds voice.
    pub fn packet(&mut self, timestamp: u32, payload: &[u8]) -> io::Result<bool> {
        let clock = u64::from(self.codec.clock_rate());
        let duration48 = self.codec.payload_duration(payload).unwrap_or(960).max(1) as u64;
        let gap48 = self.place(timestamp, duration48, clock);
        if gap48 > MAX_REPAIRED {
            self.silence(gap48)?;
        } else if gap48 > 0 {
            self.fill(gap48, payload)?;
        }
        match self.codec {
            Codec::Opus => {
                // Only the Ogg copy starts a decoder on it to fill a gap.
                if matches!(self.sink, Sink::Ogg { .. }) {
                    self.last_opus.clear();
                    self.last_opus.extend_from_slice(payload);
                }
                self.opus_packet(payload, duration48)
            }
            Codec::Pcmu | Codec::Pcma => self.g711_packet(payload),
        }
    }

    /// Fills a short gap of `gap48` samples (at 48 kHz) before the packet `next`: from its FEC
    /// data where it has some, else concealed; silence only if neither can be made.
    fn fill(&mut self, gap48: u64, next: &[u8]) -> io::Result<()> {
        match (&mut self.sink, self.codec) {
            (_, Codec::Pcmu | Codec::Pcma) => {
                self.scratch.clear();
                self.concealer
                    .conceal((gap48 / 6) as usize, &mut self.scratch);
                match &mut self.sink {
                    Sink::Ogg {
                        writer,
                        encoder: Some(encoder),
                    } => encoder.push(self.scratch.iter().copied(), writer),
                    Sink::Ogg { encoder: None, .. } => self.silence(gap48),
                    Sink::Wav { writer, .. } => writer.samples(&self.scratch),
                }
            }
            (
                Sink::Wav {
                    writer,
                    decoder: Some(decoder),
                },
                Codec::Opus,
            ) => {
                // At 16 kHz, in whole 2.5 ms steps: concealment, then the last packet's worth
                // from the FEC data.
                let gap16 = (gap48 / 3) as usize / 40 * 40;
                let fec16 = if opus_has_fec(next) {
                    (self.codec.payload_duration(next).unwrap_or(960) / 3).min(gap16) / 40 * 40
                } else {
                    0
                };
                self.scratch.resize(gap16, 0);
                let (plc, fec) = self.scratch.split_at_mut(gap16 - fec16);
                let made = (plc.is_empty() || decoder.decode(&[], plc, false).is_ok())
                    && (fec.is_empty() || decoder.decode(next, fec, true).is_ok());
                if !made {
                    return writer.silence(gap48 / 3);
                }
                if fec16 > 0 {
                    self.recovered += 1;
                }
                writer.samples(&self.scratch)
            }
            (Sink::Ogg { .. }, Codec::Opus) => match self.opus_gap_packets(gap48, next) {
                Some(packets) => {
                    let Sink::Ogg { writer, .. } = &mut self.sink else {
                        return Ok(());
                    };
                    for (packet, duration) in packets {
                        writer.packet(&packet, duration)?;
                    }
                    Ok(())
                }
                None => self.silence(gap48),
            },
            (Sink::Wav { decoder: None, .. }, Codec::Opus) => self.silence(gap48),
        }
    }

    /// Opus packets holding `gap48` samples of audio for a gap before `next`: a decoder
    /// started on the packet before the gap conceals it, the last packet's worth from `next`'s
    /// FEC data where it has some, and the result is encoded in 20 ms packets (the rest in a
    /// shorter one). `None` when that fails.
    fn opus_gap_packets(&mut self, gap48: u64, next: &[u8]) -> Option<Vec<(Vec<u8>, u64)>> {
        let gap = gap48 as usize / 120 * 120;
        let mut decoder = Decoder::new(Codec::Opus).ok()?;
        let mut pcm = Vec::with_capacity(gap + 960);
        if !self.last_opus.is_empty() {
            decoder.decode(Some(&self.last_opus), 0, &mut pcm).ok()?;
        }
        pcm.clear();
        let next_duration = self.codec.payload_duration(next).unwrap_or(960);
        let fec = next_duration.min(gap);
        if gap > fec {
            decoder.decode(None, gap - fec, &mut pcm).ok()?;
        }
        if decoder.recover(Some(next), fec, &mut pcm).ok()? == Concealment::Fec {
            self.recovered += 1;
        }
        if self.gap_encoder.is_none() {
            self.gap_encoder = Some(Box::new(Encoder::new(Codec::Opus).ok()?));
        }
        let encoder = self.gap_encoder.as_mut()?;
        let mut packets = Vec::new();
        let mut buffer = [0u8; 1500];
        let mut rest = &pcm[..pcm.len().min(gap)];
        while !rest.is_empty() {
            // Opus frame sizes: 20, 10, 5 or 2.5 ms.
            let size = [960, 480, 240, 120]
                .into_iter()
                .find(|s| *s <= rest.len())?;
            let n = encoder.encode_samples(&rest[..size], &mut buffer).ok()?;
            packets.push((buffer[..n].to_vec(), size as u64));
            rest = &rest[size..];
        }
        Some(packets)
    }

    /// Recorded audio so far.
    pub fn duration(&self) -> Duration {
        match &self.sink {
            Sink::Ogg { writer, .. } => Duration::from_micros(writer.samples() * 1000 / 48),
            Sink::Wav { writer, .. } => {
                Duration::from_micros(writer.written() * 1_000_000 / u64::from(writer.rate()))
            }
        }
    }

    /// Ends the file properly.
    pub fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Ogg {
                mut writer,
                encoder,
            } => {
                if let Some(mut encoder) = encoder {
                    encoder.flush(&mut writer)?;
                }
                writer.finish()?;
            }
            Sink::Wav { writer, .. } => writer.finish()?,
        }
        Ok(())
    }

    /// Where a damaged file may be cut so that it holds only complete pages (Ogg); `None`
    /// when any length will do once repaired (WAV).
    pub fn committed(&self) -> Option<u64> {
        match &self.sink {
            Sink::Ogg { writer, .. } => Some(writer.committed()),
            Sink::Wav { .. } => None,
        }
    }

    /// The gap before a packet, in 48 kHz samples; moves the expected next timestamp on.
    fn place(&mut self, timestamp: u32, duration48: u64, clock: u64) -> u64 {
        let units = (duration48 * clock / 48_000) as u32;
        let gap = match self.next_timestamp {
            None => 0,
            Some(expected) => {
                let ahead = timestamp.wrapping_sub(expected) as i32;
                let limit = MAX_GAP.as_secs() * clock;
                if ahead > 0 && (ahead as u64) <= limit {
                    ahead as u64 * 48_000 / clock
                } else {
                    // Overlap, reordering or a new stream: no gap.
                    0
                }
            }
        };
        self.next_timestamp = Some(timestamp.wrapping_add(units));
        gap
    }

    fn silence(&mut self, samples48: u64) -> io::Result<()> {
        match &mut self.sink {
            Sink::Ogg {
                writer,
                encoder: None,
            } => writer.silence(samples48),
            Sink::Ogg {
                writer,
                encoder: Some(encoder),
            } => encoder.push(std::iter::repeat_n(0, (samples48 / 6) as usize), writer),
            Sink::Wav { writer, .. } => {
                let rate = u64::from(writer.rate());
                writer.silence(samples48 * rate / 48_000)
            }
        }
    }

    fn opus_packet(&mut self, payload: &[u8], duration48: u64) -> io::Result<bool> {
        let flagged = opus_voice_activity(payload);
        match &mut self.sink {
            Sink::Ogg { writer, .. } => writer.packet(payload, duration48)?,
            Sink::Wav {
                writer,
                decoder: Some(decoder),
            } => {
                self.scratch.resize(1920 * 3, 0);
                match decoder.decode(payload, &mut self.scratch, false) {
                    Ok(n) => {
                        writer.samples(&self.scratch[..n])?;
                        // Decoded anyway: the level counts too.
                        let loud = level_dbfs(&self.scratch[..n]) > self.silence_threshold;
                        return Ok(flagged == Some(true) || loud);
                    }
                    Err(_) => writer.silence(duration48 / 3)?,
                }
            }
            Sink::Wav { decoder: None, .. } => unreachable!("Opus callers' WAV has a decoder"),
        }
        Ok(match flagged {
            Some(voice) => voice,
            None => self.level_of_opus(payload),
        })
    }

    /// The level of a packet without a voice flag, decoded at 8 kHz.
    fn level_of_opus(&mut self, payload: &[u8]) -> bool {
        if self.level_decoder.is_none() {
            self.level_decoder = opus::Decoder::new(8000, opus::Channels::Mono).ok();
        }
        let Some(decoder) = self.level_decoder.as_mut() else {
            return true;
        };
        self.scratch.resize(960, 0);
        match decoder.decode(payload, &mut self.scratch, false) {
            Ok(n) => level_dbfs(&self.scratch[..n]) > self.silence_threshold,
            Err(_) => false,
        }
    }

    fn g711_packet(&mut self, payload: &[u8]) -> io::Result<bool> {
        self.scratch.clear();
        self.codec.decode_g711(payload, &mut self.scratch);
        self.concealer.heard(&mut self.scratch);
        let voice = level_dbfs(&self.scratch) > self.silence_threshold;
        match &mut self.sink {
            Sink::Ogg {
                writer,
                encoder: Some(encoder),
            } => encoder.push(self.scratch.iter().copied(), writer)?,
            Sink::Ogg { encoder: None, .. } => unreachable!("G.711 callers' Ogg has an encoder"),
            Sink::Wav { writer, .. } => writer.samples(&self.scratch)?,
        }
        Ok(voice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::{tests::tone_share, Encoder, FRAME_SAMPLES};
    use std::io::Cursor;

    /// 20 ms frames of a tone, then of silence.
    fn frames(tone_seconds: usize, silent_seconds: usize) -> Vec<[i16; FRAME_SAMPLES]> {
        let mut frames = Vec::new();
        for i in 0..(tone_seconds + silent_seconds) * 50 {
            let mut frame = [0i16; FRAME_SAMPLES];
            if i < tone_seconds * 50 {
                for (n, sample) in frame.iter_mut().enumerate() {
                    let t = (i * FRAME_SAMPLES + n) as f64 / 48_000.0;
                    *sample = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                }
            }
            frames.push(frame);
        }
        frames
    }

    /// Records `frames` sent in `codec`, dropping the packets `lost` says; returns the file,
    /// the recorder's duration and how many packets held voice.
    fn record(
        format: RecordingFormat,
        codec: Codec,
        frames: &[[i16; FRAME_SAMPLES]],
        lost: impl Fn(usize) -> bool,
    ) -> (Vec<u8>, Duration, usize) {
        let mut encoder = Encoder::new(codec).unwrap();
        let mut packet = vec![0u8; 1500];
        let mut out = Cursor::new(Vec::new());
        let mut recorder = Recorder::new(&mut out, format, codec, -48.0, &[]).unwrap();
        let units = codec.frame_timestamp_units();
        let mut voiced = 0;
        for (i, frame) in frames.iter().enumerate() {
            let n = encoder.encode(frame, &mut packet).unwrap();
            if lost(i) {
                continue;
            }
            let timestamp = 1_000_000u32.wrapping_add(i as u32 * units);
            if recorder.packet(timestamp, &packet[..n]).unwrap() {
                voiced += 1;
            }
        }
        let duration = recorder.duration();
        recorder.finish().unwrap();
        (out.into_inner(), duration, voiced)
    }

    fn decoded(file: &[u8], extension: &str) -> Vec<i16> {
        crate::prompt::decode::decode(file, Some(extension), 600).unwrap()
    }

    #[test]
    fn opus_packets_are_copied_and_losses_keep_the_timing() {
        let frames = frames(2, 1);
        // Every tenth packet lost, and a whole 200 ms burst.
        let (file, duration, voiced) =
            record(RecordingFormat::OggOpus, Codec::Opus, &frames, |i| {
                i % 10 == 3 || (60..70).contains(&i)
            });
        assert_eq!(duration, Duration::from_secs(3));
        let samples = decoded(&file, "ogg");
        assert_eq!(samples.len(), 3 * 48_000);
        assert!(tone_share(&samples[10_000..40_000], 440.0) > 0.7);
        // SILK's flag: the steady tone's first second is voice; silence never is.
        assert!(voiced >= 20, "{voiced} packets of the tone held voice");
        assert!(voiced <= 81, "silence counted as voice: {voiced}");
    }

    #[test]
    fn g711_callers_are_encoded_to_opus_or_written_as_wav() {
        let frames = frames(2, 1);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let (file, duration, voiced) =
                record(RecordingFormat::OggOpus, codec, &frames, |i| i == 20);
            assert_eq!(duration, Duration::from_secs(3));
            let samples = decoded(&file, "ogg");
            assert!(
                (samples.len() as i64 - 3 * 48_000).abs() < 960,
                "{}",
                samples.len()
            );
            assert!(tone_share(&samples[10_000..40_000], 440.0) > 0.7);
            assert!((95..=100).contains(&voiced), "{voiced}");
        }
    }

    #[test]
    fn wav_recordings_have_the_right_rate_and_length() {
        let frames = frames(1, 1);
        for (codec, rate) in [(Codec::Opus, 16_000), (Codec::Pcmu, 8000)] {
            let (file, duration, _) = record(RecordingFormat::Wav, codec, &frames, |i| i == 10);
            assert_eq!(duration, Duration::from_secs(2));
            let reader = hound::WavReader::new(Cursor::new(file)).unwrap();
            assert_eq!(reader.spec().sample_rate, rate);
            assert_eq!(reader.duration(), 2 * rate);
        }
    }

    #[test]
    fn lost_packets_are_filled_from_fec_or_concealed_not_left_silent() {
        let frames = crate::media::codec::tests::voice(100);
        let lost = |i: usize| i % 10 == 5;
        for (format, codec, extension) in [
            (RecordingFormat::OggOpus, Codec::Opus, "ogg"),
            (RecordingFormat::Wav, Codec::Opus, "wav"),
            (RecordingFormat::Wav, Codec::Pcmu, "wav"),
            (RecordingFormat::OggOpus, Codec::Pcma, "ogg"),
        ] {
            let mut encoder = Encoder::new(codec).unwrap();
            encoder.expect_loss(10).unwrap();
            let mut out = Cursor::new(Vec::new());
            let mut recorder = Recorder::new(&mut out, format, codec, -48.0, &[]).unwrap();
            let mut packet = vec![0u8; 1500];
            let units = codec.frame_timestamp_units();
            for (i, frame) in frames.iter().enumerate() {
                let n = encoder.encode(frame, &mut packet).unwrap();
                if !lost(i) {
                    recorder.packet(i as u32 * units, &packet[..n]).unwrap();
                }
            }
            let recovered = recorder.recovered();
            recorder.finish().unwrap();
            if codec == Codec::Opus {
                assert!(recovered >= 7, "{format:?}: {recovered} of 9 from FEC");
            }
            let samples = decoded(&out.into_inner(), extension);
            // Each lost 20 ms holds sound at the level around it, not silence.
            for i in (5..95).step_by(10) {
                let level = |frame: usize| {
                    level_dbfs(&samples[frame * FRAME_SAMPLES..(frame + 1) * FRAME_SAMPLES])
                };
                let around = (level(i - 1) + level(i + 1)) / 2.0;
                assert!(
                    level(i) > around - 10.0,
                    "{format:?} {codec:?}: frame {i} at {} dBFS, {around} around it",
                    level(i)
                );
            }
        }
    }

    #[test]
    fn timestamp_jumps_are_gaps_only_when_plausible() {
        let mut recorder = Recorder::new(
            Cursor::new(Vec::new()),
            RecordingFormat::OggOpus,
            Codec::Opus,
            -48.0,
            &[],
        )
        .unwrap();
        let packet = crate::mailbox::ogg_opus::SILENCE_20MS;
        recorder.packet(u32::MAX - 959, &packet).unwrap();
        // Across the wrap, 1 s later.
        recorder.packet(48_000 - 960, &packet).unwrap();
        assert_eq!(recorder.duration(), Duration::from_millis(1020));
        // A new stream far away: no gap.
        recorder.packet(2_000_000_000, &packet).unwrap();
        // Backwards: no gap.
        recorder.packet(1_000, &packet).unwrap();
        assert_eq!(recorder.duration(), Duration::from_millis(1060));
    }
}
