//! Decoding prompt files to 48 kHz mono: WAV, FLAC, MP3 and Ogg Vorbis with symphonia, Ogg Opus
//! with the `ogg` crate and libopus (symphonia has no Opus decoder). Any sample rate and channel
//! count: channels are averaged, the rate is converted with rubato.

use std::io::{Cursor, Read};

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::media::codec::SAMPLE_RATE;

/// Why a prompt file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a format the gateway reads, or not audio at all.
    #[error("not a WAV, FLAC, MP3, Ogg Vorbis or Ogg Opus file ({0})")]
    Unsupported(String),
    /// The file is damaged.
    #[error("damaged audio: {0}")]
    Corrupt(String),
    /// It decodes to nothing.
    #[error("contains no audio")]
    Empty,
    /// Longer than allowed.
    #[error("longer than {0} seconds")]
    TooLong(u64),
}

/// Decodes `bytes` (a whole audio file; `extension` is a hint) to 48 kHz mono samples, refusing
/// more than `max_seconds` of audio.
pub fn decode(
    bytes: &[u8],
    extension: Option<&str>,
    max_seconds: u64,
) -> Result<Vec<i16>, DecodeError> {
    let (samples, rate) = if is_ogg_opus(bytes) {
        decode_ogg_opus(bytes, max_seconds)?
    } else {
        // symphonia's decoders do arithmetic a crafted file can overflow (its FLAC predictor,
        // found by the prompt_file fuzzer): a panic there is a broken file, not a crash.
        let decoded = std::panic::catch_unwind(|| decode_symphonia(bytes, extension, max_seconds));
        match decoded {
            Ok(result) => result?,
            Err(_) => return Err(DecodeError::Corrupt("the decoder failed on it".into())),
        }
    };
    if samples.is_empty() {
        return Err(DecodeError::Empty);
    }
    let samples = if rate == SAMPLE_RATE {
        samples
    } else {
        resample(&samples, rate)?
    };
    Ok(samples
        .iter()
        .map(|s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Whether `bytes` is an Ogg stream whose first packet is an `OpusHead`.
fn is_ogg_opus(bytes: &[u8]) -> bool {
    // First page: "OggS", 22 bytes of header, segment table, then the packet.
    if bytes.len() < 28 || &bytes[..4] != b"OggS" {
        return false;
    }
    let segments = usize::from(bytes[26]);
    let start = 27 + segments;
    bytes.get(start..start + 8) == Some(b"OpusHead")
}

/// (mono samples in -1..1, sample rate)
fn decode_symphonia(
    bytes: &[u8],
    extension: Option<&str>,
    max_seconds: u64,
) -> Result<(Vec<f32>, u32), DecodeError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| DecodeError::Unsupported(e.to_string()))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| DecodeError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| DecodeError::Unsupported("no audio codec parameters".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| DecodeError::Unsupported(e.to_string()))?;
    let mut mono = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut rate = 0;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break
            }
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            // A damaged packet is skipped, as players do; a file with only damage is empty.
            Err(symphonia::core::errors::Error::DecodeError(_)) => continue,
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        };
        let spec = buffer.spec();
        rate = spec.rate();
        let channels = spec.channels().count().max(1);
        interleaved.resize(buffer.samples_interleaved(), 0.0);
        buffer.copy_to_slice_interleaved(&mut interleaved);
        mono.extend(
            interleaved
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if rate > 0 && mono.len() as u64 > max_seconds * u64::from(rate) {
            return Err(DecodeError::TooLong(max_seconds));
        }
    }
    if rate == 0 {
        return Err(DecodeError::Empty);
    }
    // A file cut short still decodes what it has; its header says how much there should be.
    if let Some(declared) = declared_frames {
        if (mono.len() as u64) < declared * 9 / 10 {
            return Err(DecodeError::Corrupt(format!(
                "truncated: {} of {declared} samples",
                mono.len()
            )));
        }
    }
    Ok((mono, rate))
}

/// (mono samples in -1..1, 48000)
fn decode_ogg_opus(bytes: &[u8], max_seconds: u64) -> Result<(Vec<f32>, u32), DecodeError> {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let corrupt = |e: ogg::OggReadError| DecodeError::Corrupt(e.to_string());
    let head = reader
        .read_packet()
        .map_err(corrupt)?
        .ok_or_else(|| DecodeError::Corrupt("no OpusHead".into()))?;
    let head = head.data;
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return Err(DecodeError::Corrupt("bad OpusHead".into()));
    }
    let channels = head[9];
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    let (opus_channels, count) = match channels {
        1 => (opus::Channels::Mono, 1),
        2 => (opus::Channels::Stereo, 2),
        n => {
            return Err(DecodeError::Unsupported(format!(
                "Ogg Opus with {n} channels"
            )))
        }
    };
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus_channels)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let mut pcm = vec![0f32; 5760 * count];
    let mut mono = Vec::new();
    let mut packets = 0usize;
    while let Some(packet) = reader.read_packet().map_err(corrupt)? {
        packets += 1;
        if packets == 1 {
            continue; // OpusTags
        }
        if packet.data.is_empty() {
            continue;
        }
        let n = decoder
            .decode_float(&packet.data, &mut pcm, false)
            .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        mono.extend(
            pcm[..n * count]
                .chunks(count)
                .map(|frame| frame.iter().sum::<f32>() / count as f32),
        );
        if mono.len() as u64 > max_seconds * u64::from(SAMPLE_RATE) {
            return Err(DecodeError::TooLong(max_seconds));
        }
    }
    let skip = pre_skip.min(mono.len());
    mono.drain(..skip);
    Ok((mono, SAMPLE_RATE))
}

fn resample(samples: &[f32], rate: u32) -> Result<Vec<f32>, DecodeError> {
    let error =
        |e: &dyn std::fmt::Display| DecodeError::Unsupported(format!("sample rate {rate}: {e}"));
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| error(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| error(&e))?;
    let needed = resampler.process_all_needed_output_len(samples.len());
    let mut output = vec![0f32; needed];
    let mut output_buffer =
        InterleavedSlice::new_mut(&mut output, 1, needed).map_err(|e| error(&e))?;
    let (_, written) = resampler
        .process_all_into_buffer(&input, &mut output_buffer, samples.len(), None)
        .map_err(|e| error(&e))?;
    output.truncate(written);
    Ok(output)
}

/// Reads a whole file, refusing more than `max_bytes`.
pub fn read_limited(path: &std::path::Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", max_bytes >> 20),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::tests::tone_share;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/audio/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn every_format_decodes_to_48k_mono() {
        for (name, hz) in [
            ("tone440-8k-mono.wav", 440.0),
            ("tone660-44k-stereo.flac", 660.0),
            ("tone550-22k.mp3", 550.0),
            ("tone770-16k-stereo.ogg", 770.0),
            ("tone880.opus", 880.0),
        ] {
            let extension = name.rsplit('.').next();
            let samples =
                decode(&fixture(name), extension, 60).unwrap_or_else(|e| panic!("{name}: {e}"));
            let seconds = samples.len() as f64 / 48000.0;
            assert!((0.45..0.6).contains(&seconds), "{name}: {seconds} s");
            let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
            assert!(
                tone_share(middle, hz) > 0.8,
                "{name}: {hz} Hz share {}",
                tone_share(middle, hz)
            );
        }
    }

    #[test]
    fn broken_files_are_refused_with_a_reason() {
        for (name, expected) in [
            ("not-audio.wav", "not a WAV"),
            ("empty.wav", "not a WAV"),
            ("truncated.flac", "truncated"),
        ] {
            let error = decode(&fixture(name), name.rsplit('.').next(), 60).unwrap_err();
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
        let too_long = decode(&fixture("speech-16k.flac"), Some("flac"), 5).unwrap_err();
        assert_eq!(too_long, DecodeError::TooLong(5));
    }
}
