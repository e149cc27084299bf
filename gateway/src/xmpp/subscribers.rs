//! Who subscribed to each virtual JID's presence. A component has no roster on the server, so
//! the gateway keeps this list itself (in the data directory) to announce its presence again
//! after a reconnect or restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jid::BareJid;

/// Subscribers kept per virtual JID, at most.
pub const MAX_PER_JID: usize = 10_000;

/// Subscribers per virtual JID local part, saved as `callee subscriber` lines. Saving happens
/// on a blocking thread; the newest snapshot always wins.
#[derive(Debug, Default)]
pub struct Subscribers {
    path: Option<PathBuf>,
    by_callee: BTreeMap<String, BTreeSet<BareJid>>,
    version: u64,
    /// The version last written, shared with the writing threads.
    written: Arc<Mutex<u64>>,
}

impl Subscribers {
    /// Loads the list from `path` (a missing file is an empty list; unreadable lines are skipped
    /// with a warning).
    pub fn load(path: &Path) -> io::Result<Self> {
        let mut subscribers = Self {
            path: Some(path.to_path_buf()),
            ..Self::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(subscribers),
            Err(e) => return Err(e),
        };
        for (number, line) in text.lines().enumerate() {
            let parsed = line
                .split_once(' ')
                .and_then(|(callee, jid)| Some((callee, BareJid::new(jid.trim()).ok()?)));
            match parsed {
                Some((callee, jid)) => {
                    subscribers
                        .by_callee
                        .entry(callee.to_string())
                        .or_default()
                        .insert(jid);
                }
                None if line.trim().is_empty() => {}
                None => {
                    tracing::warn!(file = %path.display(), line = number + 1, "skipping an unreadable subscriber line")
                }
            }
        }
        Ok(subscribers)
    }

    /// Records `jid` as a subscriber of `callee` (saving when it is new). False when the JID
    /// already has [`MAX_PER_JID`] subscribers.
    pub fn add(&mut self, callee: &str, jid: BareJid) -> bool {
        let set = self.by_callee.entry(callee.to_string()).or_default();
        if set.contains(&jid) {
            return true;
        }
        if set.len() >= MAX_PER_JID {
            return false;
        }
        set.insert(jid);
        self.save();
        true
    }

    /// Forgets `jid` as a subscriber of `callee`; saves when it was known.
    pub fn remove(&mut self, callee: &str, jid: &BareJid) {
        if self
            .by_callee
            .get_mut(callee)
            .is_some_and(|set| set.remove(jid))
        {
            self.save();
        }
    }

    /// Every (callee, subscriber) pair.
    pub fn all(&self) -> impl Iterator<Item = (&str, &BareJid)> {
        self.by_callee
            .iter()
            .flat_map(|(callee, set)| set.iter().map(move |jid| (callee.as_str(), jid)))
    }

    fn save(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut text = String::new();
        for (callee, jid) in self.all() {
            text.push_str(callee);
            text.push(' ');
            text.push_str(jid.as_str());
            text.push('\n');
        }
        self.version += 1;
        let version = self.version;
        let written = self.written.clone();
        let write = move || {
            let Ok(mut last) = written.lock() else { return };
            if *last >= version {
                return; // A newer snapshot is already on disk.
            }
            let tmp = path.with_extension("tmp");
            match std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
                Ok(()) => *last = version,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot save presence subscribers")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_skips_garbage() {
        let dir = std::env::temp_dir().join(format!("subscribers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("subscribers");
        let alice = BareJid::new("alice@localhost").unwrap();
        let bob = BareJid::new("bob@localhost").unwrap();
        {
            let mut subscribers = Subscribers::load(&path).unwrap();
            subscribers.add("echo", alice.clone());
            subscribers.add("echo", bob.clone());
            subscribers.add("ivr", alice.clone());
            subscribers.remove("echo", &bob);
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage-without-jid\nivr not a jid@@\n");
        std::fs::write(&path, text).unwrap();
        let subscribers = Subscribers::load(&path).unwrap();
        let all: Vec<_> = subscribers
            .all()
            .map(|(c, j)| (c.to_string(), j.clone()))
            .collect();
        assert_eq!(
            all,
            [
                ("echo".to_string(), alice.clone()),
                ("ivr".to_string(), alice)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
