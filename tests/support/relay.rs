//! A UDP relay between the test caller and the gateway, standing in for the network between
//! them (as a NAT would: each side sees only the relay's address facing it). A test can make
//! it drop what a broken or hostile path drops, such as the caller's answers to the gateway's
//! connectivity checks while media still flows, or what a client with two interfaces does
//! (libwebrtc checks from each, then sends media on the pair it nominated).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the relay drops; switched by the test while a call runs.
#[derive(Debug, Default)]
pub struct RelayRules {
    /// Drop STUN success responses from the caller to the gateway: the caller no longer
    /// answers the gateway's checks (RFC 7675 consent withdrawn), media still flows.
    pub drop_answers_to_gateway: AtomicBool,
    /// STUN responses dropped so far by that rule.
    pub answers_dropped: AtomicU64,
    /// Send the caller's checks from both of the relay's gateway-side addresses and everything
    /// else (DTLS, media) from the second only, as a client does that nominated a pair other
    /// than the one the gateway selected. Answers come back on either.
    pub media_from_second_address: AtomicBool,
    /// When not 0, drop every this many RTP packets from the caller (a lossy path: 10 is 10 %
    /// loss).
    pub drop_every_nth_rtp: AtomicU64,
    /// RTP packets from the caller so far, and those dropped by that rule.
    pub rtp_seen: AtomicU64,
    /// RTP packets dropped so far by that rule.
    pub rtp_dropped: AtomicU64,
}

/// A running relay; stopped when dropped.
#[derive(Debug)]
pub struct Relay {
    /// The address the caller sends to (given to its leg as the gateway's candidate).
    pub caller_side: SocketAddr,
    /// The address the gateway sends to (offered to it as the caller's candidate).
    pub gateway_side: SocketAddr,
    /// The relay's second address facing the gateway (never offered: the gateway learns it
    /// from the checks that come from it, as a peer-reflexive candidate).
    pub second_gateway_side: SocketAddr,
    /// Where the gateway side forwards to: the gateway's media address, once known.
    gateway: Arc<Mutex<Option<SocketAddr>>>,
    /// The switches.
    pub rules: Arc<RelayRules>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Two loopback sockets and the task forwarding between them.
    pub async fn start() -> Relay {
        let caller_socket = UdpSocket::bind("127.0.0.1:0").await.expect("relay socket");
        let gateway_socket = UdpSocket::bind("127.0.0.1:0").await.expect("relay socket");
        let second_socket = UdpSocket::bind("127.0.0.1:0").await.expect("relay socket");
        let caller_side = caller_socket.local_addr().expect("address");
        let gateway_side = gateway_socket.local_addr().expect("address");
        let second_gateway_side = second_socket.local_addr().expect("address");
        let gateway = Arc::new(Mutex::new(None));
        let rules = Arc::new(RelayRules::default());
        let task = tokio::spawn(forward(
            caller_socket,
            [gateway_socket, second_socket],
            gateway.clone(),
            rules.clone(),
        ));
        Relay {
            caller_side,
            gateway_side,
            second_gateway_side,
            gateway,
            rules,
            task,
        }
    }

    /// Forwards the caller's datagrams to `address` (the gateway's candidate).
    pub fn set_gateway(&self, address: SocketAddr) {
        *self.gateway.lock().expect("relay lock") = Some(address);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A STUN binding success response (RFC 5389 message type 0x0101).
fn is_binding_success(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] == 0x01 && datagram[1] == 0x01
}

/// Whether `datagram` is (S)RTP rather than (S)RTCP (RFC 7983 first byte 128 to 191, RFC 5761
/// second byte outside 192 to 223).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// Whether `datagram` is STUN (RFC 7983: first byte 0 to 3).
fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] <= 3
}

async fn forward(
    caller_socket: UdpSocket,
    gateway_sockets: [UdpSocket; 2],
    gateway: Arc<Mutex<Option<SocketAddr>>>,
    rules: Arc<RelayRules>,
) {
    let [first, second] = &gateway_sockets;
    let mut caller: Option<SocketAddr> = None;
    let mut from_caller = vec![0u8; 2048];
    let mut from_gateway = vec![0u8; 2048];
    let mut from_second = vec![0u8; 2048];
    loop {
        tokio::select! {
            received = caller_socket.recv_from(&mut from_caller) => {
                let Ok((n, source)) = received else { return };
                caller = Some(source);
                let datagram = &from_caller[..n];
                if rules.drop_answers_to_gateway.load(Ordering::Relaxed) && is_binding_success(datagram) {
                    rules.answers_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if is_rtp(datagram) {
                    let seen = rules.rtp_seen.fetch_add(1, Ordering::Relaxed) + 1;
                    let every = rules.drop_every_nth_rtp.load(Ordering::Relaxed);
                    if every > 0 && seen.is_multiple_of(every) {
                        rules.rtp_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                let Some(target) = *gateway.lock().expect("relay lock") else { continue };
                let senders: &[&UdpSocket] = if !rules.media_from_second_address.load(Ordering::Relaxed) {
                    &[first]
                } else if is_stun(datagram) {
                    &[first, second]
                } else {
                    &[second]
                };
                for socket in senders {
                    let _ = socket.send_to(datagram, target).await;
                }
            }
            received = first.recv_from(&mut from_gateway) => {
                let Ok((n, _)) = received else { return };
                if let Some(caller) = caller {
                    let _ = caller_socket.send_to(&from_gateway[..n], caller).await;
                }
            }
            received = second.recv_from(&mut from_second) => {
                let Ok((n, _)) = received else { return };
                if let Some(caller) = caller {
                    let _ = caller_socket.send_to(&from_second[..n], caller).await;
                }
            }
        }
    }
}
