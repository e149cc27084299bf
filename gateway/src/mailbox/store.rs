//! Messages on disk: one directory per mailbox; per message the recording (`ID.ogg` or
//! `ID.wav`, `ID.ogg.part` while it is being recorded) and its metadata (`ID.json`, written
//! before the first sample so a crash leaves who called and when). At start, recordings a crash
//! cut short are finished in place and marked for delivery.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ogg_opus::complete_pages;
use super::time::{unix_now_millis, Utc};
use super::wav;
use crate::config::RecordingFormat;
use crate::types::EndReason;

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// Still recording (or the gateway stopped before it could say).
    Recording,
    /// The caller hung up.
    HungUp,
    /// The caller's connection was lost (its client went away, or stopped answering).
    ConnectionLost,
    /// An administrator hung the call up.
    HungUpByAdmin,
    /// The call reached `calls.max_duration`.
    MaxDuration,
    /// The call failed otherwise (the log says why).
    CallFailed,
    /// The caller pressed `#`.
    Key,
    /// The mailbox's `max_length` was reached.
    MaxLength,
    /// The caller was silent for the mailbox's `silence_timeout`.
    Silence,
    /// Writing failed (a full disk); the message is kept up to that point.
    StorageFailed,
    /// The gateway stopped during the recording: finished as it stopped, or at the next
    /// start after a crash.
    Interrupted,
}

impl Ending {
    /// How a recording ends when its call ends for `reason` while it records.
    pub fn of_call_end(reason: EndReason) -> Self {
        match reason {
            EndReason::PeerHungUp(_) | EndReason::PeerRetracted | EndReason::EndpointHungUp => {
                Self::HungUp
            }
            EndReason::PeerGone
            | EndReason::IceFailed
            | EndReason::ConsentLost
            | EndReason::PeerError => Self::ConnectionLost,
            EndReason::HungUpByAdmin => Self::HungUpByAdmin,
            EndReason::MaxDuration => Self::MaxDuration,
            EndReason::Shutdown => Self::Interrupted,
            EndReason::StorageFailed => Self::StorageFailed,
            _ => Self::CallFailed,
        }
    }
}

/// A message's metadata, stored beside its recording as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The message's name in its mailbox (`20261124-141312-5073fa9`: time, milliseconds,
    /// random).
    pub id: String,
    /// The mailbox (its virtual JID's local part).
    pub mailbox: String,
    /// The caller's JID.
    pub caller: String,
    /// When the recording started, in seconds since 1970.
    pub received: u64,
    /// The same, for people reading the file.
    pub received_utc: String,
    /// Length of the recording in milliseconds.
    pub duration_ms: u64,
    /// File format.
    pub format: RecordingFormat,
    /// The caller's codec.
    pub codec: String,
    /// Why the recording stopped.
    pub ending: Ending,
    /// The secret part of the gateway's own URL for this message.
    pub token: String,
    /// Whether an owner has listened to it by calling the mailbox.
    pub heard: bool,
    /// Whether the owners were sent it.
    pub delivered: bool,
    /// The URL owners were sent.
    pub url: Option<String>,
}

impl MessageInfo {
    /// A new message's metadata.
    pub fn new(mailbox: &str, caller: &str, format: RecordingFormat, codec: &str) -> Self {
        let now = unix_now_millis();
        let received = now / 1000;
        // Milliseconds, then randomness: ids sort in the order messages came.
        let id = format!(
            "{}-{:03}{:04x}",
            Utc::from_unix(received).compact(),
            now % 1000,
            rand::random::<u16>()
        );
        Self {
            id,
            mailbox: mailbox.to_string(),
            caller: caller.to_string(),
            received,
            received_utc: Utc::from_unix(received).rfc3339(),
            duration_ms: 0,
            format,
            codec: codec.to_string(),
            ending: Ending::Recording,
            token: format!("{:032x}", rand::random::<u128>()),
            heard: false,
            delivered: false,
            url: None,
        }
    }

    /// The recording's file name.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.id, self.format.extension())
    }

    /// The recording's length.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

/// One mailbox's directory.
#[derive(Debug, Clone)]
pub struct MailboxDir {
    path: PathBuf,
    /// Messages stored or being recorded (what `max_messages` counts), kept in memory so that
    /// a call asks without reading the directory: counted when the directory is opened, after
    /// a message is deleted or finished, and raised by each recording that starts.
    messages: Arc<AtomicUsize>,
}

impl MailboxDir {
    /// The directory at `path`, created if missing.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&path)?;
        let directory = Self {
            path,
            messages: Arc::default(),
        };
        directory.recount();
        Ok(directory)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a message's recording is once complete.
    pub fn recording_path(&self, info: &MessageInfo) -> PathBuf {
        self.path.join(info.file_name())
    }

    /// Where a message's recording is while it is being made.
    pub fn part_path(&self, info: &MessageInfo) -> PathBuf {
        self.path.join(format!("{}.part", info.file_name()))
    }

    fn metadata_path(&self, id: &str) -> PathBuf {
        self.path.join(format!("{id}.json"))
    }

    /// Writes a message's metadata: to a new file renamed over the old one, or, when the
    /// disk is too full for a second copy, over the old one in place.
    pub fn save(&self, info: &MessageInfo) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        let path = self.metadata_path(&info.id);
        let temporary = self.path.join(format!("{}.json.new", info.id));
        let atomic = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(&json)?;
            file.sync_data()?;
            fs::rename(&temporary, &path)
        })();
        if atomic.is_err() {
            let _ = fs::remove_file(&temporary);
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all(&json)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// A message's metadata.
    pub fn load(&self, id: &str) -> io::Result<MessageInfo> {
        let file = File::open(self.metadata_path(id))?;
        serde_json::from_reader(BufReader::new(file)).map_err(io::Error::other)
    }

    /// Every complete message, oldest first.
    pub fn messages(&self) -> Vec<MessageInfo> {
        let mut messages: Vec<MessageInfo> = self
            .ids_with("json")
            .iter()
            .filter_map(|id| self.load(id).ok())
            .filter(|info| info.ending != Ending::Recording)
            .collect();
        messages.sort_by(|a, b| (a.received, &a.id).cmp(&(b.received, &b.id)));
        messages
    }

    /// Messages stored or being recorded (what `max_messages` counts), as last counted: no
    /// disk access.
    pub fn count(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }

    /// Takes a place for a new message if fewer than `max` are stored or being recorded; no
    /// disk access. The place is given back by [`MailboxDir::release`] if the recording does not
    /// start, else counted from its files from then on.
    pub fn reserve(&self, max: usize) -> bool {
        self.messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                (count < max).then_some(count + 1)
            })
            .is_ok()
    }

    /// Gives back a place taken by [`MailboxDir::reserve`] for a recording that did not start.
    pub fn release(&self) {
        let _ = self
            .messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                count.checked_sub(1)
            });
    }

    /// Counts the messages on disk again (off the call: the recording's writer, or whoever
    /// deleted one).
    pub fn recount(&self) {
        self.messages
            .store(self.ids_with("json").len(), Ordering::Relaxed);
    }

    /// Removes a message and its recording.
    pub fn delete(&self, info: &MessageInfo) -> io::Result<()> {
        for path in [self.recording_path(info), self.part_path(info)] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let removed = fs::remove_file(self.metadata_path(&info.id));
        self.recount();
        removed
    }

    /// Finishes the recordings a crash cut short: each `.part` file is cut after its last
    /// complete page (Ogg) or gets a header that matches it (WAV), and becomes the message's
    /// recording. Returns the messages finished, and those dropped (too short or unreadable).
    pub fn recover(&self, mailbox: &str, min_length: Duration) -> Recovered {
        let mut recovered = Recovered::default();
        for name in self.names() {
            let Some(file_name) = name.strip_suffix(".part") else {
                continue;
            };
            let Some((id, extension)) = file_name.rsplit_once('.') else {
                continue;
            };
            let Some(format) = RecordingFormat::from_extension(extension) else {
                continue;
            };
            let part = self.path.join(&name);
            let mut info = self.load(id).unwrap_or_else(|_| {
                // The metadata never made it: say what the file can tell.
                let mut info = MessageInfo::new(mailbox, "unknown caller", format, "unknown");
                info.id = id.to_string();
                info
            });
            info.format = format;
            match finish_part(&part, format) {
                Ok(duration) if duration >= min_length => {
                    info.duration_ms = duration.as_millis() as u64;
                    info.ending = Ending::Interrupted;
                    let renamed = fs::rename(&part, self.recording_path(&info));
                    match renamed.and_then(|_| self.save(&info)) {
                        Ok(()) => recovered.finished.push(info),
                        Err(e) => recovered.dropped.push((id.to_string(), e.to_string())),
                    }
                }
                Ok(duration) => {
                    let _ = fs::remove_file(&part);
                    let _ = fs::remove_file(self.metadata_path(id));
                    recovered.dropped.push((
                        id.to_string(),
                        format!("too short ({} ms)", duration.as_millis()),
                    ));
                }
                Err(e) => {
                    let _ = fs::remove_file(&part);
                    let _ = fs::remove_file(self.metadata_path(id));
                    recovered.dropped.push((id.to_string(), e.to_string()));
                }
            }
        }
        // Metadata of a recording that never got a file.
        for id in self.ids_with("json") {
            if let Ok(info) = self.load(&id) {
                if info.ending == Ending::Recording {
                    let _ = fs::remove_file(self.metadata_path(&id));
                }
            }
        }
        for name in self.names() {
            if name.ends_with(".json.new") {
                let _ = fs::remove_file(self.path.join(name));
            }
        }
        self.recount();
        recovered
    }

    fn names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    fn ids_with(&self, extension: &str) -> Vec<String> {
        let suffix = format!(".{extension}");
        self.names()
            .into_iter()
            .filter_map(|name| name.strip_suffix(&suffix).map(str::to_string))
            .collect()
    }
}

/// What [`MailboxDir::recover`] did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Messages finished and kept.
    pub finished: Vec<MessageInfo>,
    /// Messages dropped, with why.
    pub dropped: Vec<(String, String)>,
}

/// Makes a cut-short recording valid in place; returns its length.
pub fn finish_part(path: &Path, format: RecordingFormat) -> io::Result<Duration> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    match format {
        RecordingFormat::OggOpus => {
            let complete = complete_pages(BufReader::new(&mut file))?;
            file.set_len(complete.length)?;
            file.sync_data()?;
            // The granule position comes from the file: a damaged one may be anything.
            Ok(Duration::from_micros(
                complete.samples.saturating_mul(1000) / 48,
            ))
        }
        RecordingFormat::Wav => {
            let repaired = wav::repair(&mut file)?;
            file.sync_data()?;
            Ok(Duration::from_micros(
                repaired.samples.saturating_mul(1_000_000) / u64::from(repaired.rate.max(1)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the part_recovery_ogg fuzzer (which skips Ogg checksums): a page whose granule
    /// position is near the top of u64 overflowed the length computation.
    #[test]
    fn a_damaged_granule_position_does_not_overflow() {
        let dir = temp_dir("granule");
        let path = dir.join("m.opus.part");
        let mut bytes = Vec::new();
        {
            let mut writer = ogg::PacketWriter::new(&mut bytes);
            let mut head = b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec();
            head.truncate(19);
            let end = ogg::PacketWriteEndInfo::EndPage;
            writer.write_packet(head, 1, end, 0).unwrap();
            writer
                .write_packet(b"OpusTags\0\0\0\0\0\0\0\0".to_vec(), 1, end, 0)
                .unwrap();
            writer
                .write_packet(vec![0xf8, 0xff, 0xfe], 1, end, u64::MAX - 7)
                .unwrap();
        }
        fs::write(&path, &bytes).unwrap();
        let length = finish_part(&path, RecordingFormat::OggOpus).unwrap();
        assert!(length > Duration::from_secs(1_000_000));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "jingle-gateway-store-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn metadata_round_trips_and_lists_oldest_first() {
        let dir = temp_dir("list");
        let store = MailboxDir::open(dir.clone()).unwrap();
        let mut first = MessageInfo::new("vm", "a@x/1", RecordingFormat::OggOpus, "opus");
        first.received -= 10;
        first.ending = Ending::HungUp;
        let mut second = MessageInfo::new("vm", "b@x/1", RecordingFormat::Wav, "pcmu");
        second.ending = Ending::Key;
        let recording = MessageInfo::new("vm", "c@x/1", RecordingFormat::Wav, "pcmu");
        for info in [&second, &first, &recording] {
            store.save(info).unwrap();
        }
        let listed = store.messages();
        assert_eq!(listed, vec![first.clone(), second.clone()]);
        assert_eq!(MailboxDir::open(dir.clone()).unwrap().count(), 3);
        assert_eq!(first.token.len(), 32);
        assert_ne!(first.token, second.token);
        store.delete(&first).unwrap();
        assert_eq!(store.messages(), vec![second]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn places_are_taken_in_memory_and_counted_again_from_the_files() {
        let dir = temp_dir("places");
        let kept = MessageInfo::new("vm", "a@x/1", RecordingFormat::Wav, "pcmu");
        MailboxDir::open(dir.clone()).unwrap().save(&kept).unwrap();
        let store = MailboxDir::open(dir.clone()).unwrap();
        let handle = store.clone();
        assert_eq!(store.count(), 1);
        // Two places left of three; a call taking one is seen by every handle.
        assert!(store.reserve(3));
        assert!(handle.reserve(3));
        assert!(!store.reserve(3));
        assert_eq!(handle.count(), 3);
        // One recording did not start; the other's files are written and counted.
        store.release();
        let recorded = MessageInfo::new("vm", "b@x/1", RecordingFormat::Wav, "pcmu");
        store.save(&recorded).unwrap();
        store.recount();
        assert_eq!(handle.count(), 2);
        handle.delete(&kept).unwrap();
        assert_eq!(store.count(), 1);
        // Never below zero, whatever is given back.
        for _ in 0..3 {
            store.release();
        }
        assert_eq!(store.count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recovery_finishes_parts_and_drops_what_cannot_be_kept() {
        let dir = temp_dir("recover");
        let store = MailboxDir::open(dir.clone()).unwrap();
        // A WAV message cut short after 1.5 s, with its metadata.
        let info = MessageInfo::new("vm", "a@x/1", RecordingFormat::Wav, "pcmu");
        store.save(&info).unwrap();
        let mut wav = wav::WavRecorder::new(
            std::io::BufWriter::new(File::create(store.part_path(&info)).unwrap()),
            8000,
        )
        .unwrap();
        wav.samples(&[500; 12_000]).unwrap();
        std::mem::forget(wav); // killed: no final header update
                               // A too-short Ogg part without metadata, and garbage.
        fs::write(dir.join("20260101-000000-aaaaaa.ogg.part"), b"OggS").unwrap();
        fs::write(dir.join("20260101-000000-bbbbbb.wav.part"), b"").unwrap();
        let recovered = store.recover("vm", Duration::from_secs(1));
        assert_eq!(recovered.finished.len(), 1, "{recovered:?}");
        assert_eq!(recovered.dropped.len(), 2, "{recovered:?}");
        let finished = &recovered.finished[0];
        assert_eq!(finished.id, info.id);
        assert_eq!(finished.caller, "a@x/1");
        assert_eq!(finished.ending, Ending::Interrupted);
        assert!(finished.duration_ms >= 1000, "{}", finished.duration_ms);
        assert!(!finished.delivered);
        assert!(store.recording_path(finished).exists());
        assert!(!store.part_path(finished).exists());
        assert_eq!(store.messages().len(), 1);
        let reader = hound::WavReader::open(store.recording_path(finished)).unwrap();
        assert_eq!(
            u64::from(reader.duration()) * 1000 / 8000,
            finished.duration_ms
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
