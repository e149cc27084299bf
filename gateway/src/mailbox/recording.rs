//! A message being recorded, from its first packet to the recording handed over for delivery.
//! The call task keeps the [`Recorder`] (timeline, voice, transcoding: no disk); every byte it
//! writes goes through a bounded channel to the recording's own writer thread, which makes the
//! files, writes them, and finishes them (cut after a failed write, rename, metadata) so that
//! a slow or full disk never holds up a call. Whatever ends the recording (the caller, a limit,
//! a full disk, the call task failing), the writer thread finishes it:
//! [`Recording::finish`] or, failing that, its `Drop`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::recorder::Recorder;
use super::store::{finish_part, Ending, MailboxDir, MessageInfo};
use super::Mailboxes;
use crate::config::MailboxConfig;
use crate::types::Codec;

/// Writes (and seeks) that may wait for a recording's writer thread, each up to
/// [`WRITE_CHUNK`] bytes: about two minutes of a WAV recording, far more of Ogg. A disk slower
/// than that for longer fails the recording (what was written is kept) instead of holding up
/// the call.
const QUEUED_WRITES: usize = 512;

/// Bytes gathered before they go to the writer thread (the recorder writes WAV a sample at a
/// time): what a `BufWriter` holds, so a crash loses no more than it did.
const WRITE_CHUNK: usize = 8 * 1024;

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The mailbox holds `max_messages` already.
    #[error("the mailbox is full")]
    Full,
    /// The files could not be made.
    #[error("cannot store the message: {0}")]
    Storage(#[from] io::Error),
}

/// What became of a finished recording, as far as the call can tell at once (the writer
/// thread finishes the files and delivers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Kept, and on its way to the owners.
    Kept,
    /// Shorter than the mailbox's `min_length`: dropped.
    TooShort,
    /// Writing failed (a full disk): kept up to the last complete part, if any.
    StorageFailed,
}

/// A message being recorded.
pub struct Recording {
    id: String,
    min_length: Duration,
    recorder: Option<Recorder<ToDisk>>,
    /// Set by the writer thread at its first failure; nothing is written after it.
    failed: Arc<AtomicBool>,
    /// How the call finished the recording, read by the writer once the queue is drained.
    finish: Arc<Mutex<Option<Finish>>>,
    /// Keeps the queue open until `finish` is set (the recorder's sender goes first).
    open: Option<SyncSender<Op>>,
}

impl Recording {
    /// Starts a message from `caller` in `mailbox`: its writer thread writes the metadata,
    /// then opens the recording as `ID.ext.part`.
    pub(super) fn start(
        voicemail: Arc<Mailboxes>,
        directory: MailboxDir,
        mailbox: &str,
        config: &MailboxConfig,
        caller: &str,
        codec: Codec,
    ) -> Result<Self, StartError> {
        if !directory.reserve(config.max_messages as usize) {
            return Err(StartError::Full);
        }
        let started =
            Self::start_writer(voicemail, directory.clone(), mailbox, config, caller, codec);
        if started.is_err() {
            directory.release();
        }
        started
    }

    /// [`Recording::start`] once the message has its place.
    fn start_writer(
        voicemail: Arc<Mailboxes>,
        directory: MailboxDir,
        mailbox: &str,
        config: &MailboxConfig,
        caller: &str,
        codec: Codec,
    ) -> Result<Self, StartError> {
        let info = MessageInfo::new(mailbox, caller, config.format, codec.name());
        let (disk, ops) = mpsc::sync_channel(QUEUED_WRITES);
        let failed = Arc::new(AtomicBool::new(false));
        let finish = Arc::new(Mutex::new(None));
        let writer = Writer {
            finish: finish.clone(),
            part: directory.part_path(&info),
            directory,
            info: info.clone(),
            min_length: config.min_length.0,
            voicemail,
            failed: failed.clone(),
        };
        std::thread::Builder::new()
            .name(format!("recording {}", info.id))
            .stack_size(256 * 1024)
            .spawn(move || writer.run(ops))?;
        let comments = [
            ("TITLE", format!("Voicemail from {caller}")),
            ("ARTIST", caller.to_string()),
            ("DATE", info.received_utc.clone()),
        ];
        let comments: Vec<(&str, &str)> = comments.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = ToDisk {
            disk: disk.clone(),
            failed: failed.clone(),
            pending: Vec::with_capacity(WRITE_CHUNK),
            position: 0,
            length: 0,
        };
        let recorder = Recorder::new(
            out,
            config.format,
            codec,
            config.silence_threshold,
            &comments,
        )?;
        Ok(Self {
            id: info.id,
            min_length: config.min_length.0,
            recorder: Some(recorder),
            failed,
            finish,
            open: Some(disk),
        })
    }

    /// Records a packet; returns whether it holds voice. After a write error (a full disk, or
    /// one too slow) nothing more is written and every call returns an error.
    pub fn packet(&mut self, timestamp: u32, payload: &[u8]) -> io::Result<bool> {
        let failed = self.failed.load(Ordering::Relaxed);
        let Some(recorder) = self.recorder.as_mut().filter(|_| !failed) else {
            return Err(io::Error::other("the recording has stopped"));
        };
        recorder.packet(timestamp, payload).inspect_err(|e| {
            tracing::warn!(id = %self.id, error = %e, "cannot write the recording; keeping what was written");
            self.failed.store(true, Ordering::Relaxed);
        })
    }

    /// Recorded audio so far.
    pub fn duration(&self) -> Duration {
        self.recorder
            .as_ref()
            .map(Recorder::duration)
            .unwrap_or_default()
    }

    /// Ends the recording: the writer thread finishes the file (or, after a write error, cuts
    /// it after its last complete page), then keeps and delivers it, or drops it when shorter
    /// than the mailbox's `min_length`.
    pub fn finish(mut self, ending: Ending) -> Finished {
        self.finish_now(ending)
    }

    fn finish_now(&mut self, ending: Ending) -> Finished {
        let Some(recorder) = self.recorder.take() else {
            return Finished::StorageFailed;
        };
        let duration = recorder.duration();
        let committed = recorder.committed();
        tracing::debug!(
            id = %self.id,
            fec_recovered = recorder.recovered(),
            "lost packets filled in from FEC"
        );
        let completed = recorder.finish().is_ok();
        let failed = self.failed.load(Ordering::Relaxed) || !completed;
        let finish = Finish {
            ending,
            duration,
            committed,
            completed,
        };
        // Once the queue closes, the writer drains it, then finishes as said here. Nothing
        // here waits for the disk.
        *self.finish.lock().unwrap_or_else(|e| e.into_inner()) = Some(finish);
        self.open = None;
        match failed {
            true => Finished::StorageFailed,
            false if duration < self.min_length || duration.is_zero() => Finished::TooShort,
            false => Finished::Kept,
        }
    }
}

impl Drop for Recording {
    /// A recording its endpoint did not finish (the call task panicked) is kept as if the
    /// caller hung up.
    fn drop(&mut self) {
        self.finish_now(Ending::HungUp);
    }
}

/// What the call task asks of a recording's writer thread.
enum Op {
    Write(Vec<u8>),
    Seek(u64),
    /// Out of the process's buffer into the file (a page is complete: a crash keeps it).
    Flush,
}

/// How the call task finished the recording.
struct Finish {
    ending: Ending,
    /// Recorded audio.
    duration: Duration,
    /// Where a damaged Ogg file may be cut (see [`Recorder::committed`]).
    committed: Option<u64>,
    /// Whether the recorder's last writes all went out.
    completed: bool,
}

/// The recorder's output: writes gathered into chunks and queued for the writer thread with
/// seeks and flushes, never waiting. The position is kept here (the file mirrors what was
/// queued), so a seek is answered at once.
struct ToDisk {
    disk: SyncSender<Op>,
    failed: Arc<AtomicBool>,
    /// Written, not yet queued.
    pending: Vec<u8>,
    position: u64,
    length: u64,
}

impl ToDisk {
    fn queue(&mut self, op: Op) -> io::Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("an earlier write failed"));
        }
        match self.disk.try_send(op) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(io::Error::other("the disk is not keeping up"))
            }
            Err(TrySendError::Disconnected(_)) => Err(io::Error::other("the writer has stopped")),
        }
    }

    /// Queues what was written and not yet queued.
    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(WRITE_CHUNK));
        self.queue(Op::Write(chunk))
    }
}

impl Drop for ToDisk {
    /// What is left goes out when the recorder is done (a failure to queue it marks the
    /// recording failed).
    fn drop(&mut self) {
        let _ = self.send_pending();
    }
}

impl Write for ToDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("an earlier write failed"));
        }
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= WRITE_CHUNK {
            self.send_pending()?;
        }
        self.position += buf.len() as u64;
        self.length = self.length.max(self.position);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()?;
        self.queue(Op::Flush)
    }
}

impl Seek for ToDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::Current(by) => self.position.checked_add_signed(by),
            SeekFrom::End(by) => self.length.checked_add_signed(by),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.send_pending()?;
        self.queue(Op::Seek(position))?;
        self.position = position;
        Ok(position)
    }
}

/// A recording's writer thread: its files, from the metadata written first to the message
/// handed over for delivery.
struct Writer {
    directory: MailboxDir,
    part: PathBuf,
    info: MessageInfo,
    min_length: Duration,
    voicemail: Arc<Mailboxes>,
    failed: Arc<AtomicBool>,
    finish: Arc<Mutex<Option<Finish>>>,
}

impl Writer {
    fn run(self, ops: Receiver<Op>) {
        let opened = self
            .directory
            .save(&self.info)
            .and_then(|()| File::create(&self.part));
        // The reserved place is now a file (or, on failure, nothing).
        self.directory.recount();
        let mut file = match opened {
            Ok(file) => Some(BufWriter::new(file)),
            Err(e) => {
                tracing::warn!(id = %self.info.id, error = %e, "cannot start a recording");
                self.failed.store(true, Ordering::Relaxed);
                None
            }
        };
        // Until the recorder is gone (finished, or the recording could not start).
        for op in ops.iter() {
            let written = match (&mut file, op) {
                (None, _) => Ok(()),
                (Some(_), _) if self.failed.load(Ordering::Relaxed) => Ok(()),
                (Some(file), Op::Write(bytes)) => file.write_all(&bytes),
                (Some(file), Op::Seek(at)) => file.seek(SeekFrom::Start(at)).map(drop),
                (Some(file), Op::Flush) => file.flush(),
            };
            if let Err(e) = written {
                tracing::warn!(id = %self.info.id, error = %e, "cannot write the recording; keeping what was written");
                self.failed.store(true, Ordering::Relaxed);
            }
        }
        let finish = self.finish.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (Some(file), Some(finish)) = (file, finish) else {
            // Nothing was recorded: no message.
            let _ = fs::remove_file(&self.part);
            let _ = self.directory.delete(&self.info);
            return;
        };
        let flushed = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| {
                file.sync_data()?;
                Ok(())
            });
        let failed = self.failed.load(Ordering::Relaxed) || !finish.completed || flushed.is_err();
        self.keep(finish, failed);
    }

    /// Finishes the file (cut after a failure), then keeps and delivers the message, or drops
    /// it when shorter than `min_length`.
    fn keep(mut self, finish: Finish, failed: bool) {
        let ending = match failed {
            true => Ending::StorageFailed,
            false => finish.ending,
        };
        let mut duration = finish.duration;
        if failed {
            // Cut what a failed write left half done; the file holds what came before.
            if let Some(length) = finish.committed {
                if let Ok(file) = fs::OpenOptions::new().write(true).open(&self.part) {
                    let _ = file.set_len(length);
                }
            }
            match finish_part(&self.part, self.info.format) {
                Ok(kept) => duration = kept,
                Err(e) => {
                    tracing::warn!(id = %self.info.id, error = %e, "the recording is unreadable; dropped");
                    duration = Duration::ZERO;
                }
            }
        }
        if duration < self.min_length || duration.is_zero() {
            tracing::info!(
                id = %self.info.id,
                duration_ms = duration.as_millis() as u64,
                "message shorter than min_length: not kept"
            );
            let _ = self.directory.delete(&self.info);
            return;
        }
        self.info.duration_ms = duration.as_millis() as u64;
        self.info.ending = ending;
        if let Err(e) = fs::rename(&self.part, self.directory.recording_path(&self.info)) {
            tracing::error!(id = %self.info.id, error = %e, "cannot rename the recording; it is recovered at the next start");
            return;
        }
        if let Err(e) = self.directory.save(&self.info) {
            tracing::warn!(id = %self.info.id, error = %e, "cannot update the message's metadata");
        }
        tracing::info!(
            id = %self.info.id,
            mailbox = %self.info.mailbox,
            caller = %self.info.caller,
            duration_ms = self.info.duration_ms,
            ending = ?ending,
            "message recorded"
        );
        self.voicemail.recorded(self.info);
    }
}
