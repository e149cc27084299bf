//! Server-reflexive candidates: a STUN Binding request (RFC 8489) from the call's socket (the
//! shared port, or the call's own) to each of `media.stun_servers` in turn, until one answers;
//! the address it saw is offered as a `srflx` candidate whose base is the call's host
//! candidate. webrtc-ice does not gather these on a muxed socket, and it needs none: checks to
//! the candidate reach the same socket through the NAT, and its own checks leave from that
//! base.
//!
//! The guard hands the answer over (it reads the socket); the request goes out directly, since
//! the server is the administrator's choice, not the caller's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::message::{Getter, Message, BINDING_REQUEST};
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

use super::guard::Guard;
use crate::protocol::ice_udp::{Candidate, CandidateType};

/// When a request is sent again without an answer, counted from the first send (RFC 8489's
/// doubling from a 250 ms RTO, shortened: a call does not wait long for this candidate).
const RETRANSMITS: [Duration; 3] = [
    Duration::from_millis(0),
    Duration::from_millis(250),
    Duration::from_millis(750),
];
/// How long a server has to answer after the first send.
const SERVER_TIMEOUT: Duration = Duration::from_millis(1750);
/// RFC 8445 type preference of server-reflexive candidates.
const TYPE_PREFERENCE: u32 = 100;

/// Asks `servers` (`host:port`, in order) what address `socket`, bound at `base` and offered
/// as the host candidate `offered`, has from outside; the candidate for it, or `None` when no
/// server answered or it saw the host candidate itself (no NAT: the candidate would be
/// redundant).
pub async fn discover(
    socket: Arc<UdpSocket>,
    guard: Arc<Guard>,
    servers: Vec<String>,
    base: SocketAddr,
    offered: SocketAddr,
) -> Option<Candidate> {
    for server in &servers {
        let Some(address) = resolve(server, base.is_ipv6()).await else {
            tracing::debug!(server, "STUN server not resolved");
            continue;
        };
        match ask(&socket, &guard, address).await {
            Some(mapped) if mapped == offered || mapped == base => return None,
            Some(mapped) => return Some(candidate(mapped, base, server)),
            None => tracing::debug!(server, "STUN server did not answer"),
        }
    }
    None
}

/// The first address of `server` in the family of our host candidate.
async fn resolve(server: &str, ipv6: bool) -> Option<SocketAddr> {
    let addresses = tokio::time::timeout(SERVER_TIMEOUT, tokio::net::lookup_host(server))
        .await
        .ok()?
        .ok()?;
    addresses.into_iter().find(|a| a.is_ipv6() == ipv6)
}

/// One Binding transaction with `server`: the mapped address it answered.
async fn ask(socket: &UdpSocket, guard: &Guard, server: SocketAddr) -> Option<SocketAddr> {
    let mut request = Message::new();
    request
        .build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
        .ok()?;
    let id = request.transaction_id.0;
    let mut response = guard.await_response(id, server);
    let started = tokio::time::Instant::now();
    let mut answer = None;
    for (i, at) in RETRANSMITS.iter().enumerate() {
        tokio::time::sleep_until(started + *at).await;
        if let Err(e) = socket.send_to(&request.raw, server).await {
            tracing::debug!(%server, error = %e, "STUN request not sent");
            break;
        }
        let until = RETRANSMITS.get(i + 1).copied().unwrap_or(SERVER_TIMEOUT);
        if let Ok(received) = tokio::time::timeout_at(started + until, &mut response).await {
            answer = received.ok();
            break;
        }
    }
    guard.forget_response(&id);
    mapped_address(&answer?)
}

/// The XOR-MAPPED-ADDRESS of a Binding success response.
fn mapped_address(datagram: &[u8]) -> Option<SocketAddr> {
    let mut message = Message::new();
    message.unmarshal_binary(datagram).ok()?;
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&message).ok()?;
    Some(SocketAddr::new(mapped.ip, mapped.port))
}

/// The `srflx` candidate at `mapped`, based on `host`, learnt from `server`.
fn candidate(mapped: SocketAddr, host: SocketAddr, server: &str) -> Candidate {
    // RFC 8445 5.1.1.3: the same foundation for the same type, base address and server.
    let foundation = fnv1a(format!("srflx {} {server}", host.ip()).as_bytes()).to_string();
    Candidate {
        component: 1,
        foundation,
        generation: 0,
        id: Some(format!("{:016x}", rand::random::<u64>())),
        ip: mapped.ip(),
        port: mapped.port(),
        // RFC 8445 5.1.2.1, local preference 65535, component 1.
        priority: (TYPE_PREFERENCE << 24) | (65535 << 8) | 255,
        protocol: "udp".into(),
        candidate_type: CandidateType::ServerReflexive,
        rel_addr: Some(host.ip()),
        rel_port: Some(host.port()),
        network: Some(0),
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::guard::GuardedSocket;
    use crate::media::stats::MediaStats;
    use stun::message::{Setter, BINDING_SUCCESS};
    use webrtc_util::Conn;

    /// A STUN server on loopback answering every request with `mapped`, after `ignore` requests
    /// it lets pass unanswered.
    async fn server(mapped: SocketAddr, ignore: usize) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut seen = 0;
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                seen += 1;
                if seen <= ignore {
                    continue;
                }
                let mut request = Message::new();
                request.unmarshal_binary(&buf[..n]).unwrap();
                let mut response = Message::new();
                response
                    .build(&[
                        Box::new(BINDING_SUCCESS),
                        Box::new(request.transaction_id),
                        Box::new(XorMappedAddress {
                            ip: mapped.ip(),
                            port: mapped.port(),
                        }) as Box<dyn Setter>,
                    ])
                    .unwrap();
                socket.send_to(&response.raw, from).await.unwrap();
            }
        });
        address
    }

    /// The call's socket, read as the mux reads it: through the guard.
    async fn call_socket(guard: Arc<Guard>) -> (Arc<UdpSocket>, SocketAddr) {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let host = socket.local_addr().unwrap();
        let reader = GuardedSocket::new(socket.clone(), guard);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while reader.recv_from(&mut buf).await.is_ok() {}
        });
        (socket, host)
    }

    fn guard() -> Arc<Guard> {
        Guard::new(100, Arc::new(MediaStats::default()))
    }

    #[tokio::test]
    async fn the_address_the_server_saw_is_offered_based_on_the_host() {
        let guard = guard();
        let (socket, host) = call_socket(guard.clone()).await;
        let outside: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        // The first server never answers; the second drops the first request.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let servers = vec![
            silent.local_addr().unwrap().to_string(),
            server(outside, 1).await.to_string(),
        ];
        let found = discover(socket, guard, servers, host, host)
            .await
            .expect("srflx");
        assert_eq!((found.ip, found.port), (outside.ip(), outside.port()));
        assert_eq!(found.candidate_type, CandidateType::ServerReflexive);
        assert_eq!(
            (found.rel_addr, found.rel_port),
            (Some(host.ip()), Some(host.port()))
        );
        assert_eq!(found.priority >> 24, TYPE_PREFERENCE);
    }

    #[tokio::test]
    async fn no_candidate_without_a_nat_or_an_answer() {
        let guard = guard();
        let (socket, host) = call_socket(guard.clone()).await;
        let servers = vec![server(host, 0).await.to_string()];
        assert!(discover(socket.clone(), guard.clone(), servers, host, host)
            .await
            .is_none());
        let servers = vec!["no-such-host.invalid:3478".to_string()];
        assert!(discover(socket, guard, servers, host, host).await.is_none());
    }

    #[tokio::test]
    async fn an_answer_from_another_address_is_not_taken() {
        let guard = guard();
        let (socket, host) = call_socket(guard.clone()).await;
        let outside: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        let real = server(outside, 0).await;
        let mut request = Message::new();
        request
            .build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
            .unwrap();
        let mut response = guard.await_response(request.transaction_id.0, real);
        // The right transaction id, from a stranger.
        let mut forged = Message::new();
        forged
            .build(&[
                Box::new(stun::message::BINDING_SUCCESS),
                Box::new(request.transaction_id),
                Box::new(XorMappedAddress {
                    ip: "203.0.113.1".parse().unwrap(),
                    port: 9,
                }) as Box<dyn Setter>,
            ])
            .unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger.send_to(&forged.raw, host).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(response.try_recv().is_err());
        socket.send_to(&request.raw, real).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mapped_address(&answer), Some(outside));
    }
}
