//! WAV recordings (16-bit mono PCM) with hound, and the header repair after a crash.
//!
//! The header is brought up to date once a second (hound's `flush`), so a file cut short by a
//! crash is valid up to the last second; [`repair`] makes its sizes match what the file holds.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Samples between header updates: one second.
const FLUSH_EVERY_SECONDS: u64 = 1;

/// Writes one mono 16-bit WAV stream.
pub struct WavRecorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
    rate: u32,
    samples: u64,
    unflushed: u64,
}

impl<W: Write + Seek> WavRecorder<W> {
    /// Starts a file at `rate` samples per second.
    pub fn new(out: W, rate: u32) -> io::Result<Self> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::new(out, spec).map_err(into_io)?;
        Ok(Self {
            writer,
            rate,
            samples: 0,
            unflushed: 0,
        })
    }

    /// The sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Appends samples.
    pub fn samples(&mut self, samples: &[i16]) -> io::Result<()> {
        for sample in samples {
            self.writer.write_sample(*sample).map_err(into_io)?;
        }
        self.advance(samples.len() as u64)
    }

    /// Appends `count` samples of silence.
    pub fn silence(&mut self, count: u64) -> io::Result<()> {
        for _ in 0..count {
            self.writer.write_sample(0i16).map_err(into_io)?;
        }
        self.advance(count)
    }

    /// Samples written so far.
    pub fn written(&self) -> u64 {
        self.samples
    }

    /// Brings the header up to date and flushes.
    pub fn finish(self) -> io::Result<()> {
        self.writer.finalize().map_err(into_io)
    }

    fn advance(&mut self, count: u64) -> io::Result<()> {
        self.samples += count;
        self.unflushed += count;
        if self.unflushed >= u64::from(self.rate) * FLUSH_EVERY_SECONDS {
            self.unflushed = 0;
            self.writer.flush().map_err(into_io)?;
        }
        Ok(())
    }
}

fn into_io(error: hound::Error) -> io::Error {
    match error {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// What a repaired WAV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Samples per second.
    pub rate: u32,
    /// Whole samples (per channel) in the data chunk.
    pub samples: u64,
}

/// Makes a WAV file's sizes match what it holds: the data chunk runs to the end of the file,
/// cut to whole sample frames. Only the layout [`WavRecorder`] writes is repaired (a 16-byte
/// `fmt ` chunk of 16-bit mono PCM at 12, `data` at 36): anything else is not one of our
/// recordings, and walking a crafted chunk list could end in a file no reader opens.
/// Fails when the header itself is incomplete.
pub fn repair<F: Read + Write + Seek + SetLen>(file: &mut F) -> io::Result<Repaired> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let length = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)
        .map_err(|_| invalid("the recording ends before its header"))?;
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if &header[..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return Err(invalid("not a WAV recording"));
    }
    let rate = u32_at(24);
    let ours = &header[12..16] == b"fmt "
        && u32_at(16) == 16
        && u16_at(20) == 1
        && u16_at(22) == 1
        && (8_000..=48_000).contains(&rate)
        && u32_at(28) == rate * 2
        && u16_at(32) == 2
        && u16_at(34) == 16
        && &header[36..40] == b"data";
    if !ours {
        return Err(invalid("not a recording of this gateway (format)"));
    }
    let available = length - HEADER_LEN;
    let data = available - available % 2;
    let too_long = |_| invalid("too long for WAV");
    let data32 = u32::try_from(data).map_err(too_long)?;
    let riff32 = u32::try_from(HEADER_LEN + data - 8).map_err(too_long)?;
    file.set_len(HEADER_LEN + data)?;
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff32.to_le_bytes())?;
    file.seek(SeekFrom::Start(40))?;
    file.write_all(&data32.to_le_bytes())?;
    file.flush()?;
    Ok(Repaired {
        rate,
        samples: data / 2,
    })
}

/// Bytes before the samples in a recording: RIFF header, `fmt ` chunk, `data` chunk header.
const HEADER_LEN: u64 = 44;

/// Files can be cut to a length (what [`repair`] needs besides reading and writing).
pub trait SetLen {
    /// Truncates or extends to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl SetLen for std::fs::File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    impl SetLen for Cursor<Vec<u8>> {
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.get_mut().truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_file_cut_mid_sample_is_repaired_to_what_it_holds() {
        let mut out = Cursor::new(Vec::new());
        let mut recorder = WavRecorder::new(&mut out, 8000).unwrap();
        recorder.samples(&[1000; 11_001]).unwrap();
        recorder.silence(1000).unwrap();
        assert_eq!(recorder.written(), 12_001);
        recorder.finish().unwrap();
        let mut bytes = out.into_inner();
        bytes.truncate(44 + 2 * 10_000 + 1);
        // The header still says 12 001 samples; the file holds 10 000 and a half.
        let mut file = Cursor::new(bytes);
        let repaired = repair(&mut file).unwrap();
        assert_eq!(
            repaired,
            Repaired {
                rate: 8000,
                samples: 10_000
            }
        );
        let reader = hound::WavReader::new(Cursor::new(file.into_inner())).unwrap();
        assert_eq!(reader.duration(), 10_000);
        assert_eq!(reader.spec().sample_rate, 8000);
    }

    /// Found by the part_recovery_wav fuzzer: a format chunk claiming 1,040-bit samples was
    /// "repaired" into a file no WAV reader opens.
    #[test]
    fn a_format_the_recorder_never_writes_is_not_a_recording() {
        let header = |channels: u16, bits: u16, block_align: u16, rate: u32| {
            let mut bytes = b"RIFF\x64\x1f\0\0WAVEfmt \x10\0\0\0\x01\0".to_vec();
            bytes.extend_from_slice(&channels.to_le_bytes());
            bytes.extend_from_slice(&rate.to_le_bytes());
            bytes.extend_from_slice(&(rate * 2).to_le_bytes());
            bytes.extend_from_slice(&block_align.to_le_bytes());
            bytes.extend_from_slice(&bits.to_le_bytes());
            bytes.extend_from_slice(b"data\x40\x1f\0\0");
            bytes.extend_from_slice(&[0; 64]);
            bytes
        };
        assert!(repair(&mut Cursor::new(header(1, 16, 2, 8000))).is_ok());
        let mut wrong_byte_rate = header(1, 16, 2, 8000);
        wrong_byte_rate[31] = 0x20;
        for bad in [
            wrong_byte_rate,
            header(1, 1040, 2, 8000),
            header(2, 16, 4, 8000),
            header(1, 16, 2, 0),
            header(1, 8, 1, 8000),
        ] {
            assert!(repair(&mut Cursor::new(bad)).is_err());
        }
    }

    /// Found by the part_recovery_wav fuzzer: an unknown chunk of odd size before `fmt ` (RIFF
    /// pads it, hound does not) was "repaired" into a file hound could not read.
    #[test]
    fn chunks_the_recorder_never_writes_are_not_a_recording() {
        let mut bytes = b"RIFF\x64\x1f\0\0WAVE\0\0\0\0\x27\0\0\0".to_vec();
        bytes.extend_from_slice(&[0; 40]);
        bytes.extend_from_slice(b"fmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0");
        bytes.extend_from_slice(b"data\x40\x1f\0\0");
        bytes.extend_from_slice(&[0; 64]);
        assert!(repair(&mut Cursor::new(bytes)).is_err());
    }

    #[test]
    fn a_file_without_its_header_is_not_a_recording() {
        assert!(repair(&mut Cursor::new(b"RIFF\0\0\0\0WA".to_vec())).is_err());
        assert!(repair(&mut Cursor::new(b"OggS not a wav file at all".to_vec())).is_err());
    }
}
