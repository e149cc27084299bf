//! Ogg Opus files (RFC 7845) written as packets arrive, and read back after a crash.
//!
//! Pages are built in memory and written whole, one page per second of audio, so after a
//! crash or a full disk the file holds complete pages that play. A recording cut short is
//! repaired in place (no new space needed on a full disk) by cutting it after its last
//! complete page.

use std::borrow::Cow;
use std::io::{self, Read, Seek, Write};

use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};

/// Samples per second of every Ogg Opus granule position.
const GRANULE_RATE: u64 = 48_000;
/// Audio packets per page (50 × 20 ms = one second).
const PACKETS_PER_PAGE: usize = 50;
/// A 20 ms Opus packet that decodes to silence (CELT, full band, one frame, the silence flag).
pub const SILENCE_20MS: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Samples in 20 ms at 48 kHz.
const SAMPLES_20MS: u64 = 960;
/// The stream serial number (one stream per file).
const SERIAL: u32 = 0x6a67_7776;

/// Writes one mono Ogg Opus stream to `out`.
pub struct OggOpusWriter<W: Write> {
    pages: PacketWriter<'static, Vec<u8>>,
    out: W,
    /// Samples (48 kHz, pre-skip included) of the packets handed over so far.
    granule: u64,
    pre_skip: u16,
    in_page: usize,
    /// The last packet, held back so the final one can close the stream.
    held: Option<(Vec<u8>, u64)>,
    /// Bytes of complete pages written to `out`.
    committed: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream: writes the identification and comment headers. `pre_skip` is the
    /// encoder's delay in 48 kHz samples (0 when the packets come from an unknown encoder).
    pub fn new(out: W, pre_skip: u16, vendor: &str, comments: &[(&str, &str)]) -> io::Result<Self> {
        let mut writer = Self {
            pages: PacketWriter::new(Vec::new()),
            out,
            granule: u64::from(pre_skip),
            pre_skip,
            in_page: 0,
            held: None,
            committed: 0,
        };
        let head = opus_head(pre_skip);
        writer.put(head, 0, PacketWriteEndInfo::EndPage)?;
        let tags = opus_tags(vendor, comments);
        writer.put(tags, 0, PacketWriteEndInfo::EndPage)?;
        Ok(writer)
    }

    /// Adds one Opus packet (a whole packet, as carried in RTP). A packet that is not valid
    /// Opus is replaced by silence of `fallback_samples` (48 kHz), so the timing holds.
    pub fn packet(&mut self, packet: &[u8], fallback_samples: u64) -> io::Result<()> {
        match opus::packet::get_nb_samples(packet, GRANULE_RATE as u32) {
            Ok(samples) if samples > 0 => self.push(packet.to_vec(), samples as u64),
            _ => self.silence(fallback_samples),
        }
    }

    /// Adds `samples` (48 kHz) of silence, rounded to whole 20 ms packets (at least one when
    /// 10 ms or more).
    pub fn silence(&mut self, samples: u64) -> io::Result<()> {
        let packets = (samples + SAMPLES_20MS / 2) / SAMPLES_20MS;
        for _ in 0..packets {
            self.push(SILENCE_20MS.to_vec(), SAMPLES_20MS)?;
        }
        Ok(())
    }

    /// Audio written so far, in 48 kHz samples (pre-skip excluded).
    pub fn samples(&self) -> u64 {
        self.granule - u64::from(self.pre_skip)
    }

    /// Bytes of complete pages written: where a damaged file may be cut.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Ends the stream (the last page carries the end-of-stream flag) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let (last, granule) = match self.held.take() {
            Some(held) => held,
            None => {
                self.granule += SAMPLES_20MS;
                (SILENCE_20MS.to_vec(), self.granule)
            }
        };
        self.put(last, granule, PacketWriteEndInfo::EndStream)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The output so far.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    fn push(&mut self, packet: Vec<u8>, samples: u64) -> io::Result<()> {
        self.granule += samples;
        if let Some((previous, granule)) = self.held.replace((packet, self.granule)) {
            self.in_page += 1;
            let end = if self.in_page >= PACKETS_PER_PAGE {
                self.in_page = 0;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.put(previous, granule, end)?;
        }
        Ok(())
    }

    /// Hands a packet to the page builder and writes out the pages it completed.
    fn put(&mut self, packet: Vec<u8>, granule: u64, end: PacketWriteEndInfo) -> io::Result<()> {
        self.pages
            .write_packet(Cow::Owned(packet), SERIAL, end, granule)?;
        let pages = self.pages.inner_mut();
        if !pages.is_empty() {
            self.out.write_all(pages)?;
            // Through any buffer to the file: a page is kept whole or not at all.
            self.out.flush()?;
            self.committed += pages.len() as u64;
            pages.clear();
        }
        Ok(())
    }
}

/// The `OpusHead` identification header: version 1, mono, 48 kHz input, no gain, family 0.
fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(1);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

/// The `OpusTags` comment header.
fn opus_tags(vendor: &str, comments: &[(&str, &str)]) -> Vec<u8> {
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for (key, value) in comments {
        let comment = format!("{key}={value}");
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment.as_bytes());
    }
    tags
}

/// The complete part of a possibly cut-short Ogg Opus recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// Bytes up to the end of the last complete page: where the file may be cut.
    pub length: u64,
    /// Audio in those pages, in 48 kHz samples (pre-skip excluded).
    pub samples: u64,
}

/// Finds where the complete pages of an Ogg Opus recording end (pages whose checksum holds).
/// Fails when not even the headers are complete.
pub fn complete_pages<R: Read + Seek>(input: R) -> io::Result<Complete> {
    let mut reader = PacketReader::new(input);
    let mut pre_skip = 0u64;
    let mut packets = 0usize;
    let mut last = Complete {
        length: 0,
        samples: 0,
    };
    // Up to the end, or the first damaged or incomplete page: what came before is kept.
    while let Ok(Some(packet)) = reader.read_packet() {
        if packets == 0 {
            if packet.data.len() < 19 || &packet.data[..8] != b"OpusHead" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an Ogg Opus recording",
                ));
            }
            pre_skip = u64::from(u16::from_le_bytes([packet.data[10], packet.data[11]]));
        }
        packets += 1;
        if packet.last_in_page() && packets >= 2 {
            // The reader takes a page only when it needs the next packet: it is at this
            // page's end.
            last = Complete {
                length: reader.get_mut().stream_position()?,
                samples: if packets > 2 {
                    packet.absgp_page().saturating_sub(pre_skip)
                } else {
                    0
                },
            };
        }
    }
    if last.length == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the recording ends before its headers",
        ));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tone_packets(seconds: usize) -> Vec<Vec<u8>> {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut out = vec![0u8; 1500];
        (0..seconds * 50)
            .map(|i| {
                let frame: Vec<i16> = (0..960)
                    .map(|n| {
                        let t = (i * 960 + n) as f64 / 48_000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                let len = encoder.encode(&frame, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    fn decoded(file: &[u8]) -> Vec<i16> {
        crate::prompt::decode::decode(file, Some("ogg"), 600).unwrap()
    }

    #[test]
    fn packets_and_gaps_make_a_stream_of_the_right_length() {
        let mut writer = OggOpusWriter::new(Vec::new(), 0, "test", &[("CALLER", "a@b")]).unwrap();
        for packet in tone_packets(2) {
            writer.packet(&packet, 960).unwrap();
        }
        writer.silence(48_000).unwrap();
        writer.packet(&[], 960).unwrap();
        assert_eq!(writer.samples(), 3 * 48_000 + 960);
        let file = writer.finish().unwrap();
        let samples = decoded(&file);
        assert_eq!(samples.len(), 3 * 48_000 + 960);
        assert!(crate::media::codec::tests::tone_share(&samples[24_000..72_000], 440.0) > 0.8);
        let quiet = &samples[2 * 48_000 + 2000..3 * 48_000];
        assert!(
            quiet.iter().all(|s| s.abs() < 50),
            "the silence packet is silent"
        );
    }

    #[test]
    fn pages_reach_the_output_as_they_fill() {
        let mut writer = OggOpusWriter::new(Vec::new(), 0, "test", &[]).unwrap();
        let headers = writer.committed();
        assert!(headers > 0);
        for packet in tone_packets(1) {
            writer.packet(&packet, 960).unwrap();
        }
        writer.packet(&SILENCE_20MS, 960).unwrap();
        assert!(
            writer.committed() > headers + 1000,
            "one second is one page"
        );
        assert_eq!(writer.committed(), writer.out.len() as u64);
    }

    #[test]
    fn a_cut_short_file_keeps_its_complete_pages() {
        let mut writer = OggOpusWriter::new(Vec::new(), 0, "test", &[]).unwrap();
        let mut whole_pages = 0;
        for (i, packet) in tone_packets(3).iter().enumerate() {
            writer.packet(packet, 960).unwrap();
            if i == 120 {
                whole_pages = writer.committed();
            }
        }
        let file = writer.finish().unwrap();
        let finished = complete_pages(Cursor::new(&file[..])).unwrap();
        assert_eq!(finished.length, file.len() as u64);
        assert_eq!(finished.samples, 3 * 48_000);
        // Killed in the middle of writing the third page.
        let cut = &file[..whole_pages as usize + 100];
        let complete = complete_pages(Cursor::new(cut)).unwrap();
        assert_eq!(complete.length, whole_pages);
        assert_eq!(complete.samples, 2 * 48_000);
        let kept = &cut[..complete.length as usize];
        assert_eq!(decoded(kept).len(), 2 * 48_000, "the pages kept play");
        // Headers alone are a (silent) recording; less is not.
        let writer = OggOpusWriter::new(Vec::new(), 0, "test", &[]).unwrap();
        let headers = writer.into_inner();
        let complete = complete_pages(Cursor::new(&headers[..])).unwrap();
        assert_eq!(complete.samples, 0);
        assert!(complete_pages(Cursor::new(&headers[..20])).is_err());
        assert!(complete_pages(Cursor::new(&b"RIFF...."[..])).is_err());
    }
}
