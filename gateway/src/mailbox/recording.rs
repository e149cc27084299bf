//! A message being recorded, from its first packet to the recording handed over for delivery.
//! Whatever ends it (the caller, a limit, a full disk, the call task failing), the recording
//! is finished: [`Recording::finish`] or, failing that, its `Drop`.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::sync::Arc;
use std::time::Duration;

use super::recorder::Recorder;
use super::store::{finish_part, Ending, MailboxDir, MessageInfo};
use super::Mailboxes;
use crate::config::MailboxConfig;
use crate::types::Codec;

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

/// A message being recorded.
pub struct Recording {
    voicemail: Arc<Mailboxes>,
    directory: MailboxDir,
    min_length: Duration,
    info: MessageInfo,
    recorder: Option<Recorder<BufWriter<File>>>,
    /// The first write error; nothing is written after it.
    failed: bool,
}

impl Recording {
    /// Starts a message from `caller` in `mailbox`: writes its metadata, then opens the
    /// recording as `ID.ext.part`.
    pub(super) fn start(
        voicemail: Arc<Mailboxes>,
        directory: MailboxDir,
        mailbox: &str,
        config: &MailboxConfig,
        caller: &str,
        codec: Codec,
    ) -> Result<Self, StartError> {
        if directory.count() >= config.max_messages as usize {
            return Err(StartError::Full);
        }
        let info = MessageInfo::new(mailbox, caller, config.format, codec.name());
        directory.save(&info)?;
        let part = directory.part_path(&info);
        let opened = File::create(&part).and_then(|file| {
            let comments = [
                ("TITLE", format!("Voicemail from {caller}")),
                ("ARTIST", caller.to_string()),
                ("DATE", info.received_utc.clone()),
            ];
            let comments: Vec<(&str, &str)> =
                comments.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Recorder::new(
                BufWriter::new(file),
                config.format,
                codec,
                config.silence_threshold,
                &comments,
            )
        });
        match opened {
            Ok(recorder) => Ok(Self {
                voicemail,
                directory,
                min_length: config.min_length.0,
                info,
                recorder: Some(recorder),
                failed: false,
            }),
            Err(e) => {
                let _ = fs::remove_file(&part);
                let _ = directory.delete(&info);
                Err(StartError::Storage(e))
            }
        }
    }

    /// Records a packet; returns whether it holds voice. After a write error (a full disk)
    /// nothing more is written and every call returns that error.
    pub fn packet(&mut self, timestamp: u32, payload: &[u8]) -> io::Result<bool> {
        let Some(recorder) = self.recorder.as_mut().filter(|_| !self.failed) else {
            return Err(io::Error::other("the recording has stopped"));
        };
        recorder.packet(timestamp, payload).inspect_err(|e| {
            tracing::warn!(id = %self.info.id, error = %e, "cannot write the recording; keeping what was written");
            self.failed = true;
        })
    }

    /// Recorded audio so far.
    pub fn duration(&self) -> Duration {
        self.recorder
            .as_ref()
            .map(Recorder::duration)
            .unwrap_or_default()
    }

    /// Ends the recording: finishes the file (or, after a write error, cuts it after its last
    /// complete page), then keeps and delivers it, or drops it when shorter than the mailbox's
    /// `min_length`. Returns the message kept.
    pub fn finish(mut self, ending: Ending) -> Option<MessageInfo> {
        self.finish_now(ending)
    }

    fn finish_now(&mut self, ending: Ending) -> Option<MessageInfo> {
        let recorder = self.recorder.take()?;
        let ending = if self.failed {
            Ending::StorageFailed
        } else {
            ending
        };
        let part = self.directory.part_path(&self.info);
        let mut duration = recorder.duration();
        let committed = recorder.committed();
        let finished = if self.failed {
            // Dropped first: its buffer must not reach the file after the cut below.
            drop(recorder);
            Err(io::Error::other("write failed earlier"))
        } else {
            recorder.finish()
        };
        if finished.is_err() {
            // Cut what a failed write left half done; the file holds what came before.
            if let Some(length) = committed {
                if let Ok(file) = fs::OpenOptions::new().write(true).open(&part) {
                    let _ = file.set_len(length);
                }
            }
            match finish_part(&part, self.info.format) {
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
            return None;
        }
        self.info.duration_ms = duration.as_millis() as u64;
        self.info.ending = ending;
        if let Err(e) = fs::rename(&part, self.directory.recording_path(&self.info)) {
            tracing::error!(id = %self.info.id, error = %e, "cannot rename the recording; it is recovered at the next start");
            return None;
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
        self.voicemail.recorded(self.info.clone());
        Some(self.info.clone())
    }
}

impl Drop for Recording {
    /// A recording its endpoint did not finish (the call task panicked) is kept as if the
    /// caller hung up.
    fn drop(&mut self) {
        self.finish_now(Ending::HungUp);
    }
}
