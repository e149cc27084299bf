//! The media sockets (the shared port, or each call's own port from the range), guarded so
//! they are no reflector. webrtc-ice sends connectivity checks to whatever addresses a caller
//! names, and media to its best pair even before that pair answered; under it, every datagram
//! passes here:
//!
//! - An address has *answered* once a check carrying one of our calls' ufrags came from it (only
//!   that call's peer knows the ufrag), or a response to one of our checks (its transaction id
//!   is one we sent there).
//! - To an address that has not answered, only STUN goes, paid from the call's budget (what its
//!   signalling earned: bytes credited per offer and per remote candidate admitted, less than
//!   what the caller had to send for them) and from a gateway-wide budget of packets a second.
//!   Anything else to it (media after an ICE restart, say) is dropped; so is anything but STUN
//!   from it.
//! - Once a call's agent selected a pair, nothing but STUN is taken from the call's other
//!   addresses: DTLS (which takes plaintext alerts and ClientHellos at epoch 0 from whoever
//!   reaches it) and media come on the selected pair.
//! - Consent (RFC 7675) is the last response to one of our checks: [`Guard::consent_age`] tells
//!   a call how long ago its peer last gave it. Media alone does not keep a call.
//! - Answers to our own requests to STUN servers (server-reflexive discovery on a call's own
//!   port) are handed to whoever waits for them, from that server only.
//!
//! So what a caller can make the gateway send to addresses that never answered is bounded by
//! what it sent, whatever it sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
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
/// Addresses remembered (checked, or answered).
const MAX_PEERS: usize = 65_536;
/// An address is forgotten after this long without a datagram either way.
const PEER_IDLE: Duration = Duration::from_secs(60);
/// Transaction ids of our last checks remembered per address.
const CHECKS_REMEMBERED: usize = 8;

const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// What the guard knows of one remote address.
#[derive(Debug, Clone)]
struct Peer {
    answered: bool,
    /// The call (our local ufrag) the address belongs to: the last whose ufrag its checks
    /// named, or the first we sent a check to it for.
    call: Option<String>,
    /// The last datagram to or from it.
    active: Instant,
    /// The last response to one of our checks (RFC 7675 consent).
    consent: Option<Instant>,
    /// Transaction ids of our last checks sent to it (the first `checks_sent` of them, while
    /// fewer than the array holds: an all-zero id was never sent).
    checks: [[u8; 12]; CHECKS_REMEMBERED],
    checks_sent: usize,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Self {
            answered: false,
            call: None,
            active: now,
            consent: None,
            checks: [[0; 12]; CHECKS_REMEMBERED],
            checks_sent: 0,
        }
    }

    fn sent_check(&self, id: &[u8; 12]) -> bool {
        self.checks[..self.checks_sent.min(CHECKS_REMEMBERED)].contains(id)
    }

    fn remember_check(&mut self, id: [u8; 12]) {
        self.checks[self.checks_sent % CHECKS_REMEMBERED] = id;
        self.checks_sent += 1;
    }
}

/// The guard's state, shared by the socket and the calls' legs.
#[derive(Debug)]
pub struct Guard {
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    /// Per call (by our local ufrag): bytes it may still send to addresses that did not answer.
    budgets: Mutex<HashMap<String, i64>>,
    /// Per call (by our local ufrag): the remote address of its selected pair.
    selected: Mutex<HashMap<String, SocketAddr>>,
    unanswered: Mutex<TokenBucket>,
    /// Our own STUN requests to servers (server-reflexive discovery), by transaction id: the
    /// server asked, and who waits for its answer.
    responses: Mutex<HashMap<[u8; 12], (SocketAddr, oneshot::Sender<Vec<u8>>)>>,
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
            peers: Mutex::default(),
            budgets: Mutex::default(),
            selected: Mutex::default(),
            unanswered: Mutex::new(TokenBucket::new(rate, Instant::now())),
            responses: Mutex::default(),
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
        drop(budgets);
        let mut selected = lock(&self.selected);
        if let Some(remote) = selected.remove(old) {
            selected.insert(new.to_string(), remote);
        }
        drop(selected);
        // Restarts are few (rate-limited per call), so walking the addresses is affordable.
        for peer in lock(&self.peers).values_mut() {
            if peer.call.as_deref() == Some(old) {
                peer.call = Some(new.to_string());
            }
        }
    }

    /// The call with local ufrag `ufrag` uses the pair whose remote address is `remote`.
    pub fn select(&self, ufrag: &str, remote: SocketAddr) {
        lock(&self.selected).insert(ufrag.to_string(), remote);
    }

    /// The call with local ufrag `ufrag` is over.
    pub fn forget(&self, ufrag: &str) {
        lock(&self.budgets).remove(ufrag);
        lock(&self.selected).remove(ufrag);
    }

    /// How long ago `peer` last answered one of our checks; `None` if it never did.
    pub fn consent_age(&self, peer: SocketAddr) -> Option<Duration> {
        let consent = lock(&self.peers).get(&peer)?.consent?;
        Some(consent.elapsed())
    }

    /// The answer from `server` to our STUN request `id` (sent past the guard) comes on the
    /// returned channel instead of going to webrtc-ice.
    pub fn await_response(&self, id: [u8; 12], server: SocketAddr) -> oneshot::Receiver<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.responses).insert(id, (server, tx));
        rx
    }

    /// Our request `id` is answered or given up.
    pub fn forget_response(&self, id: &[u8; 12]) {
        lock(&self.responses).remove(id);
    }

    /// Whether a datagram from `from` may go up to webrtc-ice: STUN always (the agent checks
    /// it), anything else only from an address that answered.
    fn received(&self, datagram: &[u8], from: SocketAddr) -> bool {
        let now = Instant::now();
        let stun = is_stun(datagram);
        if stun && datagram[0] & 0x01 == 0x01 && self.answered_our_request(datagram, from) {
            return false;
        }
        let mut peers = lock(&self.peers);
        if let Some(peer) = peers.get_mut(&from) {
            if peer.answered {
                peer.active = now;
            }
            // A response to one of our checks: the peer answers, and gives consent.
            if is_success_response(datagram) && peer.sent_check(&transaction_id(datagram)) {
                peer.answered = true;
                peer.active = now;
                peer.consent = Some(now);
                return true;
            }
            if peer.answered && !stun {
                if self.selected_elsewhere(peer, from) {
                    MediaStats::bump(&self.stats.unselected_dropped);
                    return false;
                }
                return true;
            }
        }
        if !stun {
            MediaStats::bump(&self.stats.unanswered_dropped);
            return false;
        }
        // A check for one of our calls (its ufrag is the first part of USERNAME): the address
        // answers, and belongs to that call.
        let ours = stun_username(datagram)
            .and_then(|username| username.split(':').next())
            .filter(|ufrag| lock(&self.budgets).contains_key(*ufrag));
        if let Some(ufrag) = ours {
            if let Some(peer) = peer_entry(&mut peers, from, now) {
                peer.answered = true;
                peer.active = now;
                if peer.call.as_deref() != Some(ufrag) {
                    peer.call = Some(ufrag.to_string());
                }
            }
        }
        true
    }

    /// Whether `datagram` (a STUN response) answers one of our own requests from the server it
    /// went to; it is handed over if so.
    fn answered_our_request(&self, datagram: &[u8], from: SocketAddr) -> bool {
        let mut responses = lock(&self.responses);
        let id = transaction_id(datagram);
        if !responses
            .get(&id)
            .is_some_and(|(server, _)| *server == from)
        {
            return false;
        }
        if let Some((_, waiting)) = responses.remove(&id) {
            let _ = waiting.send(datagram.to_vec());
        }
        true
    }

    /// Whether `peer` (at `address`) belongs to a call whose selected pair is another address.
    fn selected_elsewhere(&self, peer: &Peer, address: SocketAddr) -> bool {
        peer.call
            .as_ref()
            .and_then(|call| lock(&self.selected).get(call).copied())
            .is_some_and(|selected| selected != address)
    }

    /// Whether `datagram` may go to `target`.
    fn may_send(&self, datagram: &[u8], target: SocketAddr) -> bool {
        let now = Instant::now();
        let mut peers = lock(&self.peers);
        let answered = peers.get(&target).is_some_and(|p| p.answered);
        if !answered {
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
            if !paid || !lock(&self.unanswered).try_take(now) {
                MediaStats::bump(&self.stats.unanswered_dropped);
                return false;
            }
            MediaStats::bump(&self.stats.unanswered_sent);
        }
        // Remember our checks, so that their responses are known.
        if is_binding_request(datagram) {
            if let Some(peer) = peer_entry(&mut peers, target, now) {
                peer.remember_check(transaction_id(datagram));
                peer.active = now;
                if peer.call.is_none() {
                    let ufrag = stun_username(datagram).and_then(|u| u.rsplit(':').next());
                    peer.call = ufrag.map(str::to_string);
                }
            }
        }
        true
    }
}

/// `address`'s entry, made if there is room (idle ones are forgotten to make some).
fn peer_entry(
    peers: &mut HashMap<SocketAddr, Peer>,
    address: SocketAddr,
    now: Instant,
) -> Option<&mut Peer> {
    if !peers.contains_key(&address) && peers.len() >= MAX_PEERS {
        peers.retain(|_, peer| now.duration_since(peer.active) < PEER_IDLE);
        if peers.len() >= MAX_PEERS {
            return None;
        }
    }
    Some(peers.entry(address).or_insert_with(|| Peer::new(now)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `datagram` is a STUN message (RFC 7983: first byte 0 to 3, and the magic cookie).
fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] <= 3 && datagram[4..8] == STUN_COOKIE
}

/// Whether `datagram` is a STUN Binding request.
fn is_binding_request(datagram: &[u8]) -> bool {
    is_stun(datagram) && datagram[0..2] == [0x00, 0x01]
}

/// Whether `datagram` is a STUN Binding success response.
fn is_success_response(datagram: &[u8]) -> bool {
    is_stun(datagram) && datagram[0..2] == [0x01, 0x01]
}

/// The transaction id of a STUN message (`is_stun` holds).
fn transaction_id(datagram: &[u8]) -> [u8; 12] {
    let mut id = [0; 12];
    id.copy_from_slice(&datagram[8..20]);
    id
}

/// The USERNAME of a STUN message, if `datagram` is one and has it.
fn stun_username(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
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

/// A media socket with its [`Guard`]: what webrtc-ice's mux reads and writes.
pub struct GuardedSocket {
    socket: Arc<UdpSocket>,
    guard: Arc<Guard>,
}

impl GuardedSocket {
    /// `socket`, guarded by `guard`.
    pub fn new(socket: Arc<UdpSocket>, guard: Arc<Guard>) -> Self {
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
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if self.guard.received(&buf[..n], from) {
                return Ok((n, from));
            }
        }
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
        // Junk from an address does not make it answered, and does not go up.
        assert!(!guard.received(b"\x80 junk that looks like RTP", addr(20003)));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20003)));
        // A response to a check of ours does; one to a check we never sent does not.
        let mut forged = check("x:y");
        forged[0..2].copy_from_slice(&[0x01, 0x01]);
        forged[8..20].copy_from_slice(&[9; 12]);
        guard.received(&forged, addr(20003));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20003)));
        assert!(guard.may_send(&request, addr(20003)));
        // Not even with the id an unused slot holds.
        forged[8..20].copy_from_slice(&[0; 12]);
        guard.received(&forged, addr(20003));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20003)));
        let mut response = request.clone();
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert!(guard.received(&response, addr(20003)));
        assert!(guard.may_send(b"\x80\x6f media", addr(20003)));
        assert!(guard.received(b"\x80\x6f media back", addr(20003)));
        guard.forget("ours");
        assert!(!guard.may_send(&check("theirs:ours"), addr(20004)));
    }

    #[test]
    fn once_a_pair_is_selected_only_stun_comes_from_the_other_addresses() {
        let stats = Arc::new(MediaStats::default());
        let guard = Guard::new(1000, stats.clone());
        guard.register("ours");
        guard.register("other");
        // Two addresses name the call in checks; a third belongs to another call.
        for port in [20001, 20002] {
            assert!(guard.received(&check("ours:theirs"), addr(port)));
        }
        assert!(guard.received(&check("other:theirs"), addr(20003)));
        let record = b"\x15\xfe\xfd a DTLS alert";
        // Before the agent selected a pair (the handshake may come first), both may send.
        assert!(guard.received(record, addr(20002)));
        guard.select("ours", addr(20001));
        assert!(guard.received(record, addr(20001)));
        assert!(!guard.received(record, addr(20002)));
        assert!(!guard.received(b"\x80\x6f media", addr(20002)));
        // STUN still goes up (the agent may switch pairs), and other calls are not touched.
        assert!(guard.received(&check("ours:theirs"), addr(20002)));
        assert!(guard.received(record, addr(20003)));
        assert_eq!(MediaStats::get(&stats.unselected_dropped), 2);
        // After an ICE restart the selection carries over until the agent picks another.
        guard.rename("ours", "restarted");
        assert!(guard.received(&check("restarted:theirs"), addr(20002)));
        assert!(!guard.received(record, addr(20002)));
        guard.select("restarted", addr(20002));
        assert!(guard.received(record, addr(20002)));
        assert!(!guard.received(record, addr(20001)));
    }

    #[test]
    fn consent_is_the_last_answer_to_a_check_not_media() {
        let guard = Guard::new(1000, Arc::default());
        guard.register("ours");
        let peer = addr(40000);
        // The peer checks us (it is answered) and sends media: no consent yet.
        guard.received(&check("ours:theirs"), peer);
        guard.received(b"\x80\x6f media", peer);
        assert_eq!(guard.consent_age(peer), None);
        // It answers our check: consent, fresh.
        let request = check("theirs:ours");
        assert!(guard.may_send(&request, peer));
        let mut response = request;
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        guard.received(&response, peer);
        assert!(guard
            .consent_age(peer)
            .is_some_and(|age| age < Duration::from_secs(1)));
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
