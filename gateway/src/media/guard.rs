//! The shared media socket, guarded so it is no reflector. webrtc-ice sends connectivity checks
//! to whatever addresses a caller names, and media to its best pair even before that pair
//! answered; under it, every datagram passes here:
//!
//! - An address has *answered* once a STUN message carrying one of our calls' ufrags came from
//!   it (only that call's peer knows the ufrag), or any datagram came from an address that had.
//! - To an address that has not answered, only STUN goes, paid from the call's budget (what its
//!   signalling earned: bytes credited per offer and per remote candidate admitted, less than
//!   what the caller had to send for them) and from a gateway-wide budget of packets a second.
//!   Anything else to it (media after an ICE restart, say) is dropped.
//!
//! So what a caller can make the gateway send to addresses that never answered is bounded by
//! what it sent, whatever it sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use webrtc_util::Conn;

use super::stats::MediaStats;
use crate::rate::{Rate, TokenBucket};

/// Bytes a call may send to addresses that have not answered, for its offer: the smallest
/// session-initiate the gateway accepts (a payload type, rtcp-mux, ICE credentials and a
/// SHA-256 fingerprint, in an IQ) is about 700 bytes.
pub const CREDIT_PER_CALL: i64 = 500;
/// Bytes more for each remote candidate admitted: the smallest candidate element is about 110
/// bytes.
pub const CREDIT_PER_CANDIDATE: i64 = 100;
/// Addresses remembered as having answered.
const MAX_ANSWERED: usize = 65_536;
/// An answered address is forgotten after this long without a datagram.
const ANSWERED_FOR: Duration = Duration::from_secs(60);

const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// The guard's state, shared by the socket and the calls' legs.
#[derive(Debug)]
pub struct Guard {
    answered: Mutex<HashMap<SocketAddr, Instant>>,
    /// Per call (by our local ufrag): bytes it may still send to addresses that did not answer.
    budgets: Mutex<HashMap<String, i64>>,
    unanswered: Mutex<TokenBucket>,
    stats: Arc<MediaStats>,
}

impl Guard {
    /// A guard allowing `checks_per_second` packets a second to addresses that did not answer,
    /// over all calls.
    pub fn new(checks_per_second: u32, stats: Arc<MediaStats>) -> Arc<Self> {
        let rate = Rate {
            burst: checks_per_second.max(1),
            per_second: f64::from(checks_per_second.max(1)),
        };
        Arc::new(Self {
            answered: Mutex::default(),
            budgets: Mutex::default(),
            unanswered: Mutex::new(TokenBucket::new(rate, Instant::now())),
            stats,
        })
    }

    /// A call's local ufrag (new, or after an ICE restart), with its initial credit.
    pub fn register(&self, ufrag: &str) {
        lock(&self.budgets)
            .entry(ufrag.to_string())
            .or_insert(CREDIT_PER_CALL);
    }

    /// `bytes` more for the call with local ufrag `ufrag`.
    pub fn credit(&self, ufrag: &str, bytes: i64) {
        if let Some(budget) = lock(&self.budgets).get_mut(ufrag) {
            *budget = budget.saturating_add(bytes);
        }
    }

    /// The call with local ufrag `old` now has `new` (an ICE restart): its budget carries over.
    pub fn rename(&self, old: &str, new: &str) {
        let mut budgets = lock(&self.budgets);
        let budget = budgets.remove(old).unwrap_or(0);
        budgets.insert(new.to_string(), budget);
    }

    /// The call with local ufrag `ufrag` is over.
    pub fn forget(&self, ufrag: &str) {
        lock(&self.budgets).remove(ufrag);
    }

    /// Notes a datagram from `from`.
    fn received(&self, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let mut answered = lock(&self.answered);
        if let Some(seen) = answered.get_mut(&from) {
            *seen = now;
            return;
        }
        // A check for one of our calls (its ufrag is the first part of USERNAME), or an answer
        // to one of ours (a response carries no USERNAME; the agent checks its integrity).
        let ours = stun_username(datagram)
            .and_then(|username| username.split(':').next())
            .is_some_and(|ufrag| lock(&self.budgets).contains_key(ufrag));
        if !ours && !is_stun_response(datagram) {
            return;
        }
        if answered.len() >= MAX_ANSWERED {
            answered.retain(|_, seen| now.duration_since(*seen) < ANSWERED_FOR);
            if answered.len() >= MAX_ANSWERED {
                return;
            }
        }
        answered.insert(from, now);
    }

    /// Whether `datagram` may go to `target`.
    fn may_send(&self, datagram: &[u8], target: SocketAddr) -> bool {
        if lock(&self.answered).contains_key(&target) {
            return true;
        }
        // Not answered: a check, paid by its call and from the gateway's budget, or nothing.
        let Some(username) = stun_username(datagram) else {
            MediaStats::bump(&self.stats.unanswered_dropped);
            return false;
        };
        let ufrag = username.rsplit(':').next().unwrap_or_default();
        let cost = datagram.len() as i64;
        let paid = {
            let mut budgets = lock(&self.budgets);
            match budgets.get_mut(ufrag) {
                Some(budget) if *budget >= cost => {
                    *budget -= cost;
                    true
                }
                _ => false,
            }
        };
        if !paid || !lock(&self.unanswered).try_take(Instant::now()) {
            MediaStats::bump(&self.stats.unanswered_dropped);
            return false;
        }
        MediaStats::bump(&self.stats.unanswered_sent);
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `datagram` is a STUN success or error response.
fn is_stun_response(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[4..8] == STUN_COOKIE
        && matches!(
            u16::from_be_bytes([datagram[0], datagram[1]]) & 0x0110,
            0x0100 | 0x0110
        )
}

/// The USERNAME of a STUN message, if `datagram` is one and has it.
fn stun_username(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < 20 || datagram[0] > 3 || datagram[4..8] != STUN_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + length)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == STUN_USERNAME {
            return std::str::from_utf8(value).ok();
        }
        rest = rest.get(4 + len.div_ceil(4) * 4..).unwrap_or_default();
    }
    None
}

/// The shared media socket with its [`Guard`]: what webrtc-ice's mux reads and writes.
pub struct GuardedSocket {
    socket: UdpSocket,
    guard: Arc<Guard>,
}

impl GuardedSocket {
    /// `socket`, guarded by `guard`.
    pub fn new(socket: UdpSocket, guard: Arc<Guard>) -> Self {
        Self { socket, guard }
    }
}

#[async_trait::async_trait]
impl Conn for GuardedSocket {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        self.guard.received(&buf[..n], from);
        Ok((n, from))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !self.guard.may_send(buf, target) {
            // Dropped as if lost on the way: the agent retries, or gives the pair up.
            return Ok(buf.len());
        }
        Ok(self.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

impl std::fmt::Debug for GuardedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedSocket")
            .field("local", &self.socket.local_addr().ok())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with `username`, as webrtc-ice sends one.
    fn check(username: &str) -> Vec<u8> {
        let mut attribute = Vec::new();
        attribute.extend_from_slice(&STUN_USERNAME.to_be_bytes());
        attribute.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attribute.extend_from_slice(username.as_bytes());
        while attribute.len() % 4 != 0 {
            attribute.push(0);
        }
        // A second attribute after it, as PRIORITY would be.
        attribute.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&(attribute.len() as u16).to_be_bytes());
        message.extend_from_slice(&STUN_COOKIE);
        message.extend_from_slice(&[7; 12]);
        message.extend_from_slice(&attribute);
        message
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn usernames_are_read_and_junk_is_not_stun() {
        assert_eq!(stun_username(&check("theirs:ours")), Some("theirs:ours"));
        assert_eq!(
            stun_username(b"\x80\x00 an RTP packet of some length"),
            None
        );
        let mut truncated = check("theirs:ours");
        truncated.truncate(30);
        assert_eq!(stun_username(&truncated), None);
        assert_eq!(stun_username(&[0u8; 20]), None);
    }

    #[test]
    fn unanswered_addresses_get_checks_the_call_paid_for_and_nothing_else() {
        let guard = Guard::new(1000, Arc::default());
        guard.register("ours");
        let request = check(&format!("{}:ours", "r".repeat(256)));
        let cost = request.len() as i64;
        // The offer's credit pays for this many checks to addresses that never answer.
        let affordable = CREDIT_PER_CALL / cost;
        let sent = (0..100)
            .filter(|n| guard.may_send(&request, addr(20000 + n)))
            .count() as i64;
        assert_eq!(sent, affordable);
        // A check of another call, or of none, is not paid by this one.
        assert!(!guard.may_send(&check("x:unknown"), addr(20500)));
        // Media to an address that never answered is dropped.
        guard.credit("ours", 10_000);
        assert!(!guard.may_send(b"\x80\x6f media", addr(20001)));
        // Once the peer's check came (with our ufrag), anything may go to it.
        guard.received(&check("ours:theirs"), addr(20001));
        assert!(guard.may_send(b"\x80\x6f media", addr(20001)));
        // A check naming no call of ours proves nothing.
        guard.received(&check("nobody:theirs"), addr(20002));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20002)));
        // Junk from an address does not make it answered either; an answer to a check does.
        guard.received(b"junk", addr(20003));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20003)));
        let mut response = check("x:y");
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        guard.received(&response, addr(20003));
        assert!(guard.may_send(b"\x80\x6f media", addr(20003)));
        guard.forget("ours");
        assert!(!guard.may_send(&check("theirs:ours"), addr(20004)));
    }

    #[test]
    fn the_gateway_wide_budget_is_shared() {
        let guard = Guard::new(10, Arc::default());
        for call in ["a1", "b2"] {
            guard.register(call);
            guard.credit(call, 1_000_000);
        }
        let sent = (0..40)
            .filter(|n| {
                let call = if n % 2 == 0 { "a1" } else { "b2" };
                guard.may_send(&check(&format!("theirs:{call}")), addr(30000 + n))
            })
            .count();
        assert_eq!(sent, 10);
    }
}
