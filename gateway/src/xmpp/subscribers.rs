//! Who subscribed to each virtual JID's presence. A component has no roster on the server, so
//! the gateway keeps this list itself (in the data directory) to announce its presence again
//! after a reconnect or restart.
//!
//! Anyone may subscribe, so the list is bounded: [`MAX_PER_JID`] per virtual JID, and
//! [`MAX_PER_REMOTE_DOMAIN`] of those from one domain that is not local. Saving never happens
//! on the router task: a change only wakes a writer thread, which waits a moment (so a burst of
//! changes is one write), then writes the whole list to a new file and renames it into place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use jid::BareJid;

/// Subscribers kept per virtual JID, at most.
pub const MAX_PER_JID: usize = 10_000;
/// Subscribers kept per virtual JID from one domain that is not local.
pub const MAX_PER_REMOTE_DOMAIN: usize = 100;
/// How long the writer waits after a change for more before it writes.
const COALESCE: Duration = Duration::from_millis(200);

type Lists = BTreeMap<String, BTreeSet<BareJid>>;

/// Why a subscriber was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// The virtual JID has [`MAX_PER_JID`] subscribers.
    TooMany,
    /// The virtual JID has [`MAX_PER_REMOTE_DOMAIN`] subscribers from this domain.
    TooManyFromDomain,
}

/// Subscribers per virtual JID local part, saved as `virtual-jid subscriber` lines.
#[derive(Debug)]
pub struct Subscribers {
    lists: Arc<Mutex<Lists>>,
    /// How many virtual JIDs each subscriber follows (answers "is this a subscriber?" at once).
    followed: HashMap<BareJid, usize>,
    /// Subscribers per (virtual JID, domain), for the domains that are not local.
    per_domain: HashMap<(String, String), usize>,
    local_domains: Vec<String>,
    writer: Option<Writer>,
}

/// The thread that saves the list, and how to wake it.
#[derive(Debug)]
struct Writer {
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Subscribers {
    /// Loads the list from `path` (a missing file is an empty list; unreadable lines are skipped
    /// with a warning) and starts its writer; `local_domains` are not held to
    /// [`MAX_PER_REMOTE_DOMAIN`].
    pub fn load(path: &Path, local_domains: Vec<String>) -> io::Result<Self> {
        let mut subscribers = Self::in_memory(local_domains);
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut over_limits = 0usize;
                for (number, line) in text.lines().enumerate() {
                    let parsed = line.split_once(' ').and_then(|(virtual_jid, jid)| {
                        Some((virtual_jid, BareJid::new(jid.trim()).ok()?))
                    });
                    match parsed {
                        Some((virtual_jid, jid)) => {
                            over_limits +=
                                usize::from(subscribers.insert(virtual_jid, jid).is_err());
                        }
                        None if line.trim().is_empty() => {}
                        None => {
                            tracing::warn!(file = %path.display(), line = number + 1, "skipping an unreadable subscriber line")
                        }
                    }
                }
                if over_limits > 0 {
                    tracing::warn!(file = %path.display(), over_limits, "presence subscribers beyond the limits were not kept");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        subscribers.writer = Some(Writer::start(
            path.to_path_buf(),
            subscribers.lists.clone(),
        )?);
        Ok(subscribers)
    }

    /// A list kept in memory only (for tests).
    pub fn in_memory(local_domains: Vec<String>) -> Self {
        Self {
            lists: Arc::default(),
            followed: HashMap::new(),
            per_domain: HashMap::new(),
            local_domains,
            writer: None,
        }
    }

    /// Records `jid` as a subscriber of `virtual_jid` (saving when it is new).
    pub fn add(&mut self, virtual_jid: &str, jid: BareJid) -> Result<(), NotKept> {
        let result = self.insert(virtual_jid, jid);
        if result == Ok(true) {
            self.save();
        }
        result.map(|_| ())
    }

    /// Adds without saving; `Ok(false)` when it was already there.
    fn insert(&mut self, virtual_jid: &str, jid: BareJid) -> Result<bool, NotKept> {
        let domain_key = (virtual_jid.to_string(), jid.domain().to_string());
        let remote = !self.local_domains.contains(&domain_key.1);
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        let set = lists.entry(virtual_jid.to_string()).or_default();
        if set.contains(&jid) {
            return Ok(false);
        }
        if set.len() >= MAX_PER_JID {
            return Err(NotKept::TooMany);
        }
        if remote {
            let count = self.per_domain.entry(domain_key).or_default();
            if *count >= MAX_PER_REMOTE_DOMAIN {
                return Err(NotKept::TooManyFromDomain);
            }
            *count += 1;
        }
        *self.followed.entry(jid.clone()).or_default() += 1;
        set.insert(jid);
        Ok(true)
    }

    /// Forgets `jid` as a subscriber of `virtual_jid`; saves when it was known.
    pub fn remove(&mut self, virtual_jid: &str, jid: &BareJid) {
        let removed = {
            let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            lists
                .get_mut(virtual_jid)
                .is_some_and(|set| set.remove(jid))
        };
        if !removed {
            return;
        }
        if let Some(count) = self.followed.get_mut(jid) {
            *count -= 1;
            if *count == 0 {
                self.followed.remove(jid);
            }
        }
        let domain_key = (virtual_jid.to_string(), jid.domain().to_string());
        if let Some(count) = self.per_domain.get_mut(&domain_key) {
            *count -= 1;
            if *count == 0 {
                self.per_domain.remove(&domain_key);
            }
        }
        self.save();
    }

    /// Whether `jid` subscribed to any virtual JID.
    pub fn is_subscriber(&self, jid: &BareJid) -> bool {
        self.followed.contains_key(jid)
    }

    /// Every (virtual JID, subscriber) pair.
    pub fn all(&self) -> Vec<(String, BareJid)> {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        lists
            .iter()
            .flat_map(|(virtual_jid, set)| {
                set.iter()
                    .map(move |jid| (virtual_jid.clone(), jid.clone()))
            })
            .collect()
    }

    /// Wakes the writer (a wake already pending covers this change too).
    fn save(&self) {
        if let Some(writer) = &self.writer {
            let _ = writer.wake.try_send(());
        }
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        // The writer saves what is pending, then ends.
        if let Some(Writer { wake, thread }) = self.writer.take() {
            drop(wake);
            let _ = thread.join();
        }
    }
}

impl Writer {
    fn start(path: PathBuf, lists: Arc<Mutex<Lists>>) -> io::Result<Self> {
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("subscribers".into())
            .spawn(move || {
                // Each wake: wait for more changes, then write them all at once.
                while woken.recv().is_ok() {
                    let open = loop {
                        match woken.recv_timeout(COALESCE) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break true,
                            Err(RecvTimeoutError::Disconnected) => break false,
                        }
                    };
                    write(&path, &lists);
                    if !open {
                        return;
                    }
                }
            })?;
        Ok(Self { wake, thread })
    }
}

/// Writes the list to a new file and renames it over `path`.
fn write(path: &Path, lists: &Mutex<Lists>) {
    let snapshot = lists.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut text = String::new();
    for (virtual_jid, set) in &snapshot {
        for jid in set {
            text.push_str(virtual_jid);
            text.push(' ');
            text.push_str(jid.as_str());
            text.push('\n');
        }
    }
    let tmp = path.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        tracing::warn!(file = %path.display(), error = %e, "cannot save presence subscribers");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn survives_a_restart_and_skips_garbage() {
        let dir = std::env::temp_dir().join(format!("subscribers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("subscribers");
        let (alice, bob) = (jid("alice@localhost"), jid("bob@localhost"));
        {
            let mut subscribers = Subscribers::load(&path, vec!["localhost".into()]).unwrap();
            subscribers.add("echo", alice.clone()).unwrap();
            subscribers.add("echo", bob.clone()).unwrap();
            subscribers.add("ivr", alice.clone()).unwrap();
            subscribers.remove("echo", &bob);
            assert!(subscribers.is_subscriber(&alice));
            assert!(!subscribers.is_subscriber(&bob));
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage-without-jid\nivr not a jid@@\n");
        std::fs::write(&path, text).unwrap();
        let subscribers = Subscribers::load(&path, Vec::new()).unwrap();
        assert_eq!(
            subscribers.all(),
            [
                ("echo".to_string(), alice.clone()),
                ("ivr".to_string(), alice)
            ]
        );
        drop(subscribers);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_remote_domain_holds_a_bounded_share() {
        let mut subscribers = Subscribers::in_memory(vec!["localhost".into()]);
        let kept = (0..1000)
            .filter(|n| {
                subscribers
                    .add("echo", jid(&format!("u{n}@evil.example")))
                    .is_ok()
            })
            .count();
        assert_eq!(kept, MAX_PER_REMOTE_DOMAIN);
        assert_eq!(
            subscribers.add("echo", jid("u5000@evil.example")),
            Err(NotKept::TooManyFromDomain)
        );
        // Another virtual JID, another domain and local users are not held up by it.
        assert!(subscribers.add("ivr", jid("u1@evil.example")).is_ok());
        assert!(subscribers.add("echo", jid("bob@good.example")).is_ok());
        let local = (0..1000)
            .filter(|n| {
                subscribers
                    .add("echo", jid(&format!("u{n}@localhost")))
                    .is_ok()
            })
            .count();
        assert_eq!(local, 1000);
        // Leaving frees the place.
        subscribers.remove("echo", &jid("u0@evil.example"));
        assert!(subscribers.add("echo", jid("u5000@evil.example")).is_ok());
    }

    #[test]
    fn a_virtual_jid_holds_a_bounded_number() {
        let mut subscribers = Subscribers::in_memory(vec!["localhost".into()]);
        for n in 0..MAX_PER_JID {
            subscribers
                .add("echo", jid(&format!("u{n}@localhost")))
                .unwrap();
        }
        assert_eq!(
            subscribers.add("echo", jid("one-more@localhost")),
            Err(NotKept::TooMany)
        );
        assert_eq!(subscribers.all().len(), MAX_PER_JID);
    }
}
