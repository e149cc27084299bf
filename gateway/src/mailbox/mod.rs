//! The mailboxes (voicemail storage and delivery): their directories, recordings that survive crashes and full
//! disks, and the queue of messages to hand to their owners. The endpoint that talks to callers
//! is `endpoint::voicemail`; delivery over XMPP is [`delivery`].

mod activity;
pub mod commands;
pub mod delivery;
mod ogg_opus;
mod recorder;
mod recording;
pub mod store;
pub(crate) mod time;
pub mod upload;
mod wav;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

pub use delivery::{recording_url, RECORDINGS};
pub use recording::{Finished, Recording, StartError};
pub use store::{Ending, MessageInfo};

use crate::config::{Config, MailboxConfig};
use crate::metrics::Metrics;
use crate::types::Codec;
use store::MailboxDir;

/// One mailbox.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Its settings.
    pub config: Arc<MailboxConfig>,
    directory: MailboxDir,
}

impl Mailbox {
    /// Whether the mailbox holds `max_messages` already.
    pub fn is_full(&self) -> bool {
        self.directory.count() >= self.config.max_messages as usize
    }
}

/// A mailbox directory that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("voicemail directory {path}: {source}")]
pub struct OpenError {
    /// The directory.
    pub path: String,
    /// Why.
    pub source: io::Error,
}

/// Every mailbox of the config, shared by the calls, the delivery task and the HTTP server.
/// A reload replaces the mailboxes for new calls; calls in progress keep theirs.
#[derive(Debug)]
pub struct Mailboxes {
    mailboxes: RwLock<BTreeMap<String, Mailbox>>,
    /// Messages by the token of their URL on the gateway's own HTTP server.
    tokens: Mutex<HashMap<String, (String, String)>>,
    recorded: mpsc::UnboundedSender<MessageInfo>,
    metrics: Arc<Metrics>,
}

impl Mailboxes {
    /// Opens every mailbox of `config` (directories are created), finishes recordings a crash
    /// cut short, and queues every message not yet delivered on the returned receiver, where
    /// new messages follow as they are recorded.
    pub fn open(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<MessageInfo>), OpenError> {
        let (recorded, queue) = mpsc::unbounded_channel();
        let voicemail = Arc::new(Self {
            mailboxes: RwLock::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
            recorded,
            metrics,
        });
        voicemail.reload(config)?;
        Ok((voicemail, queue))
    }

    /// Takes the mailboxes of `config`: new directories are opened and recovered as at start;
    /// directories already open are left as they are (their recordings may be in progress).
    /// Nothing changes when a directory cannot be opened.
    pub fn reload(&self, config: &Config) -> Result<(), OpenError> {
        let root = config.storage.data_dir.join(&config.voicemail.directory);
        let open: Vec<MailboxDir> = self.read().values().map(|m| m.directory.clone()).collect();
        let mut mailboxes = BTreeMap::new();
        let mut fresh = Vec::new();
        for (name, endpoint) in &config.endpoints {
            let Some(mailbox) = endpoint.settings_as::<MailboxConfig>() else {
                continue;
            };
            let path = mailbox.directory.clone().unwrap_or_else(|| root.join(name));
            // A directory already open keeps its handle: its recordings in progress count in it.
            let directory = match open.iter().find(|open| open.path() == path) {
                Some(directory) => directory.clone(),
                None => {
                    let directory = MailboxDir::open(path.clone()).map_err(|source| OpenError {
                        path: path.display().to_string(),
                        source,
                    })?;
                    fresh.push((name.clone(), directory.clone(), mailbox.min_length.0));
                    directory
                }
            };
            let config = Arc::new(mailbox.clone());
            mailboxes.insert(name.clone(), Mailbox { config, directory });
        }
        for (name, directory, min_length) in fresh {
            self.open_directory(&name, &directory, min_length);
        }
        *self.mailboxes.write().unwrap_or_else(|e| e.into_inner()) = mailboxes;
        Ok(())
    }

    /// Recovers a directory not open before, indexes its messages and queues the undelivered.
    fn open_directory(&self, name: &str, directory: &MailboxDir, min_length: std::time::Duration) {
        let recovered = directory.recover(name, min_length);
        for info in &recovered.finished {
            tracing::info!(mailbox = %name, id = %info.id, caller = %info.caller,
                duration_ms = info.duration_ms, "recovered a message the last run did not finish");
        }
        for (id, why) in &recovered.dropped {
            tracing::warn!(mailbox = %name, id = %id, why = %why, "dropped an unfinished recording");
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        for info in directory.messages() {
            tokens.insert(info.token.clone(), (name.to_string(), info.id.clone()));
            if !info.delivered {
                let _ = self.recorded.send(info);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Mailbox>> {
        self.mailboxes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The mailboxes' names (their virtual JIDs' local parts), in order.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The mailbox named `name` (its virtual JID's local part).
    pub fn mailbox(&self, name: &str) -> Option<Mailbox> {
        self.read().get(name).cloned()
    }

    /// Starts recording a message from `caller` into `mailbox`.
    pub fn start_recording(
        self: &Arc<Self>,
        mailbox: &str,
        caller: &str,
        codec: Codec,
    ) -> Result<Recording, StartError> {
        let found = self
            .mailbox(mailbox)
            .ok_or_else(|| StartError::Storage(io::Error::other("no such mailbox")))?;
        Recording::start(
            self.clone(),
            found.directory.clone(),
            mailbox,
            &found.config,
            caller,
            codec,
        )
    }

    /// A message was recorded: it becomes reachable by its token and goes to delivery.
    fn recorded(&self, info: MessageInfo) {
        self.metrics.recording_written();
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(info.token.clone(), (info.mailbox.clone(), info.id.clone()));
        }
        let _ = self.recorded.send(info);
    }

    /// The complete messages of `mailbox`, oldest first.
    pub fn messages(&self, mailbox: &str) -> Vec<MessageInfo> {
        self.mailbox(mailbox)
            .map(|m| m.directory.messages())
            .unwrap_or_default()
    }

    /// A message's recording file.
    pub fn recording_path(&self, info: &MessageInfo) -> Option<PathBuf> {
        self.mailbox(&info.mailbox)
            .map(|m| m.directory.recording_path(info))
    }

    /// Stores changed metadata (heard, delivered, URL).
    pub fn update(&self, info: &MessageInfo) -> io::Result<()> {
        let mailbox = self
            .mailbox(&info.mailbox)
            .ok_or_else(|| io::Error::other("no such mailbox"))?;
        mailbox.directory.save(info)
    }

    /// Deletes a message and its recording; its URL on the gateway stops working.
    pub fn delete(&self, info: &MessageInfo) -> io::Result<()> {
        let mailbox = self
            .mailbox(&info.mailbox)
            .ok_or_else(|| io::Error::other("no such mailbox"))?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&info.token);
        }
        mailbox.directory.delete(info)
    }

    /// The message whose gateway URL carries `token`, with its recording file.
    pub fn find_by_token(&self, token: &str) -> Option<(MessageInfo, PathBuf)> {
        let (mailbox, id) = self.tokens.lock().ok()?.get(token).cloned()?;
        let found = self.mailbox(&mailbox)?;
        let info = found.directory.load(&id).ok()?;
        let path = found.directory.recording_path(&info);
        Some((info, path))
    }

    /// Where recordings and deliveries are counted.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
