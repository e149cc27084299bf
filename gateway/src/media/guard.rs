//! The media sockets (the shared port, or each call's own port from the range), guarded so
//! they are no reflector. webrtc-ice sends connectivity checks to whatever addresses a caller
//! names, and media to its best pair even before that pair answered; under it, every datagram
//! passes here:
//!
//! - An address has *answered*, and proved it is a call's peer, once a check for that call came
//!   from it signed with the call's ICE password (only the peer was told it), or a response to
//!   one of our checks (its transaction id is one we sent there). A check that only names a
//!   call's ufrag proves nothing.
//! - To an address that has not answered, only STUN goes, paid from the call's budget (what its
//!   signalling earned: bytes credited per offer and per remote candidate admitted, less than
//!   what the caller had to send for them) and from a gateway-wide budget of packets a second.
//!   Anything else to it (media after an ICE restart, say) is dropped; so is anything but STUN
//!   from it, so DTLS (which takes plaintext alerts and ClientHellos at epoch 0 from whoever
//!   reaches it) and SRTP hear only addresses that proved they are the peer. A peer may send
//!   from any of its proved addresses: libwebrtc checks from every interface and sends media on
//!   the pair it nominated, which need not be the one webrtc-ice selected.
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
    /// It proved it is a call's peer (a signed check, or an answer to one of ours).
    answered: bool,
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

/// What the guard knows of one call, by its local ufrag.
#[derive(Debug)]
struct Call {
    /// Bytes it may still send to addresses that did not answer.
    budget: i64,
    /// Its local ICE password: the key of the checks its peer sends.
    pwd: String,
}

/// One of our own STUN requests to a server: the server asked, and who waits for its answer.
type AwaitedResponse = (SocketAddr, oneshot::Sender<Vec<u8>>);

/// The guard's state, shared by the socket and the calls' legs.
#[derive(Debug)]
pub struct Guard {
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    calls: Mutex<HashMap<String, Call>>,
    unanswered: Mutex<TokenBucket>,
    /// Our own STUN requests to servers (server-reflexive discovery), by transaction id.
    responses: Mutex<HashMap<[u8; 12], AwaitedResponse>>,
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
            calls: Mutex::default(),
            unanswered: Mutex::new(TokenBucket::new(rate, Instant::now())),
            responses: Mutex::default(),
            stats,
        })
    }

    /// A call's local ICE credentials, with its initial credit.
    pub fn register(&self, ufrag: &str, pwd: &str) {
        lock(&self.calls).entry(ufrag.to_string()).or_insert(Call {
            budget: CREDIT_PER_CALL,
            pwd: pwd.to_string(),
        });
    }

    /// `bytes` more for the call with local ufrag `ufrag`.
    pub fn credit(&self, ufrag: &str, bytes: i64) {
        if let Some(call) = lock(&self.calls).get_mut(ufrag) {
            call.budget = call.budget.saturating_add(bytes);
        }
    }

    /// The call with local ufrag `old` has new local credentials (an ICE restart): its budget
    /// carries over.
    pub fn rename(&self, old: &str, ufrag: &str, pwd: &str) {
        let mut calls = lock(&self.calls);
        let budget = calls.remove(old).map_or(0, |call| call.budget);
        calls.insert(
            ufrag.to_string(),
            Call {
                budget,
                pwd: pwd.to_string(),
            },
        );
    }

    /// The call with local ufrag `ufrag` is over.
    pub fn forget(&self, ufrag: &str) {
        lock(&self.calls).remove(ufrag);
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
    /// it), anything else only from an address that proved it is a call's peer.
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
                return true;
            }
        }
        if !stun {
            MediaStats::bump(&self.stats.unanswered_dropped);
            return false;
        }
        // A check signed with one of our calls' passwords: the address is that call's peer.
        if is_binding_request(datagram) && self.signed_by_a_peer(datagram) {
            if let Some(peer) = peer_entry(&mut peers, from, now) {
                peer.answered = true;
                peer.active = now;
            }
        }
        true
    }

    /// Whether `check` names one of our calls (its ufrag is the first part of USERNAME) and
    /// carries a MESSAGE-INTEGRITY made with that call's password.
    fn signed_by_a_peer(&self, check: &[u8]) -> bool {
        let Some(ufrag) = stun_username(check).and_then(|username| username.split(':').next())
        else {
            return false;
        };
        let calls = lock(&self.calls);
        let Some(call) = calls.get(ufrag) else {
            return false;
        };
        let mut message = stun::message::Message::new();
        if message.unmarshal_binary(check).is_err() {
            return false;
        }
        stun::integrity::MessageIntegrity::new_short_term_integrity(call.pwd.clone())
            .check(&mut message)
            .is_ok()
    }

    /// Whether `datagram` (a STUN response) answers one of our own requests from the server it
    /// went to; it is handed over if so.
    fn answered_our_request(&self, datagram: &[u8], from: SocketAddr) -> bool {
        let mut responses = lock(&self.responses);
        let id = transaction_id(datagram);
        if responses.get(&id).is_none_or(|(server, _)| *server != from) {
            return false;
        }
        if let Some((_, waiting)) = responses.remove(&id) {
            let _ = waiting.send(datagram.to_vec());
        }
        true
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
                let mut calls = lock(&self.calls);
                match calls.get_mut(ufrag) {
                    Some(call) if call.budget >= cost => {
                        call.budget -= cost;
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

    /// A call's local ICE password.
    const PWD: &str = "a password of 22 chars+";

    /// A binding request with `username` and no integrity.
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

    /// A binding request with `username`, signed with `pwd` as a peer signs its checks.
    fn signed_check(username: &str, pwd: &str) -> Vec<u8> {
        use stun::message::{Message, Setter, BINDING_REQUEST};
        let mut message = Message::new();
        let attributes: [Box<dyn Setter>; 4] = [
            Box::new(BINDING_REQUEST),
            Box::new(stun::agent::TransactionId::new()),
            Box::new(stun::textattrs::Username::new(
                stun::attributes::ATTR_USERNAME,
                username.to_string(),
            )),
            Box::new(stun::integrity::MessageIntegrity::new_short_term_integrity(
                pwd.to_string(),
            )),
        ];
        message.build(&attributes).expect("a check");
        message.raw
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
        guard.register("ours", PWD);
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
        // A check that only names the call proves nothing, nor one signed with another key.
        guard.received(&check("ours:theirs"), addr(20001));
        assert!(!guard.may_send(b"\x80\x6f media", addr(20001)));
        guard.received(
            &signed_check("ours:theirs", "not the password"),
            addr(20001),
        );
        assert!(!guard.may_send(b"\x80\x6f media", addr(20001)));
        // Once the peer's signed check came, anything may go to it.
        guard.received(&signed_check("ours:theirs", PWD), addr(20001));
        assert!(guard.may_send(b"\x80\x6f media", addr(20001)));
        // A check naming no call of ours proves nothing, even signed.
        guard.received(&signed_check("nobody:theirs", PWD), addr(20002));
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
    fn dtls_and_media_come_only_from_addresses_that_proved_they_are_the_peer() {
        let stats = Arc::new(MediaStats::default());
        let guard = Guard::new(1000, stats.clone());
        guard.register("ours", PWD);
        let record = b"\x15\xfe\xfd a DTLS alert";
        // Two interfaces of the peer sign their checks; a stranger only names the call.
        for port in [20001, 20002] {
            assert!(guard.received(&signed_check("ours:theirs", PWD), addr(port)));
        }
        assert!(guard.received(&check("ours:theirs"), addr(20003)));
        // The peer may send DTLS and media from either (it nominates the pair it likes).
        for port in [20001, 20002] {
            assert!(guard.received(record, addr(port)));
            assert!(guard.received(b"\x80\x6f media", addr(port)));
        }
        assert!(!guard.received(record, addr(20003)));
        assert!(!guard.received(b"\x80\x6f media", addr(20003)));
        assert_eq!(MediaStats::get(&stats.unanswered_dropped), 2);
        // After an ICE restart, the new password is the key; the old one proves nothing more.
        guard.rename("ours", "restarted", "a new password of 22+ chars");
        assert!(guard.received(&signed_check("restarted:theirs", PWD), addr(20004)));
        assert!(!guard.received(record, addr(20004)));
        let signed = signed_check("restarted:theirs", "a new password of 22+ chars");
        assert!(guard.received(&signed, addr(20004)));
        assert!(guard.received(record, addr(20004)));
    }

    #[test]
    fn consent_is_the_last_answer_to_a_check_not_media() {
        let guard = Guard::new(1000, Arc::default());
        guard.register("ours", PWD);
        let peer = addr(40000);
        // The peer checks us (it proved it is the peer) and sends media: no consent yet.
        guard.received(&signed_check("ours:theirs", PWD), peer);
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
            guard.register(call, PWD);
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
