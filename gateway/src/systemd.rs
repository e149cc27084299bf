//! Tells systemd how the service is doing (the `sd_notify` protocol, for a `Type=notify` unit):
//! `READY=1` once the component is attached to the server, `WATCHDOG=1` every half
//! `WatchdogSec=` while the async runtime is responsive, `STOPPING=1` when asked to stop. Does
//! nothing when systemd did not ask for it (no `NOTIFY_SOCKET`).
//!
//! The protocol is one datagram of `KEY=value` lines to a Unix socket, small enough to write
//! here rather than take a crate for.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::xmpp::requests::XmppHandle;

/// The socket systemd listens on for this service's notifications.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for in the environment, if it did.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Notifier::new(Path::new(&path)) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                tracing::warn!(socket = ?path, error = %e, "cannot reach systemd's notify socket");
                None
            }
        }
    }

    /// A notifier sending to the socket at `path` (a leading `@` names an abstract socket).
    pub fn new(path: &Path) -> std::io::Result<Notifier> {
        let address = match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => abstract_address(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            address,
        })
    }

    /// Sends `state` (`READY=1`, `STATUS=...`, one or more lines).
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::debug!(error = %e, "systemd notification not sent");
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &str) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux only",
    ))
}

/// How often systemd wants a `WATCHDOG=1` (half its `WATCHDOG_USEC`), if it wants them from
/// this process.
fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Reports to systemd until `stopping` is cancelled: ready once `xmpp` is online, the watchdog
/// meanwhile, and stopping at the end. Returns at once when systemd asked for nothing.
pub async fn report(mut xmpp: XmppHandle, stopping: CancellationToken) {
    let Some(notifier) = Notifier::from_env() else {
        return;
    };
    let watchdog = watchdog_interval();
    let ready = async {
        if xmpp.wait_online().await {
            notifier.notify("READY=1\nSTATUS=attached to the XMPP server");
        }
        std::future::pending::<()>().await;
    };
    let pings = async {
        let Some(interval) = watchdog else {
            return std::future::pending::<()>().await;
        };
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            notifier.notify("WATCHDOG=1");
        }
    };
    tokio::select! {
        _ = stopping.cancelled() => notifier.notify("STOPPING=1"),
        _ = ready => {}
        _ = pings => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("gw-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(&path).expect("notifier");
        notifier.notify("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).expect("a notification");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_sockets_are_named_with_an_at() {
        let name = format!("gw-notify-{}", std::process::id());
        let systemd =
            UnixDatagram::bind_addr(&abstract_address(&name).expect("address")).expect("bind");
        Notifier::new(Path::new(&format!("@{name}")))
            .expect("notifier")
            .notify("WATCHDOG=1");
        let mut buf = [0u8; 16];
        let n = systemd.recv(&mut buf).expect("a notification");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
