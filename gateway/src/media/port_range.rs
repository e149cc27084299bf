//! Per-call ports from `media.port_range`: each call binds one port of the range for its own
//! socket, which then runs under the same guard as the shared port.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// No port of the range could be bound for a call.
#[derive(Debug, thiserror::Error)]
#[error("no media port free in {low}-{high}: {source}")]
pub struct NoMediaPort {
    /// The range.
    pub low: u16,
    /// Its last port.
    pub high: u16,
    /// The last bind error (address in use, or no file descriptor).
    pub source: std::io::Error,
}

/// The range and where the next call starts looking in it.
#[derive(Debug)]
pub struct PortRange {
    ip: IpAddr,
    low: u16,
    high: u16,
    /// Offset of the next port tried. Ports are taken round the range, so a port just freed is
    /// the last to be taken again (late packets of an old call do not reach a new one).
    next: AtomicU32,
}

impl PortRange {
    /// Ports `low..=high` on `ip`.
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let size = u32::from(high.saturating_sub(low)) + 1;
        Self {
            ip,
            low,
            high,
            next: AtomicU32::new(rand::random::<u32>() % size),
        }
    }

    /// A socket on a free port of the range; [`NoMediaPort`] when every port is taken or no
    /// file descriptor is left.
    pub fn bind(&self) -> Result<UdpSocket, NoMediaPort> {
        let size = u32::from(self.high - self.low) + 1;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        for attempt in 0..size {
            let offset = start.wrapping_add(attempt) % size;
            // `offset < size <= 65536`, and `low + offset <= high`.
            let port = self.low + offset as u16;
            match bind(SocketAddr::new(self.ip, port)) {
                Ok(socket) => {
                    self.next.store(offset + 1, Ordering::Relaxed);
                    return Ok(socket);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = e,
                // No descriptor, no address: another port will not do better.
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(NoMediaPort {
            low: self.low,
            high: self.high,
            source: last,
        })
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_ports(count: u16) -> (u16, u16) {
        // A run of ports found free just now (another process may still take one).
        loop {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let low = probe.local_addr().unwrap().port();
            drop(probe);
            if low.checked_add(count).is_none() {
                continue;
            }
            let high = low + count - 1;
            let free = (low..=high).all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok());
            if free {
                return (low, high);
            }
        }
    }

    #[tokio::test]
    async fn each_call_gets_its_own_port_until_the_range_is_full() {
        let (low, high) = free_ports(3);
        let range = PortRange::new("127.0.0.1".parse().unwrap(), low, high);
        let sockets: Vec<UdpSocket> = (0..3).map(|_| range.bind().unwrap()).collect();
        let mut ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, (low..=high).collect::<Vec<_>>());
        let full = range.bind().unwrap_err();
        assert_eq!(full.source.kind(), std::io::ErrorKind::AddrInUse);
        assert!(full.to_string().contains(&format!("{low}-{high}")));
        drop(sockets);
        assert!(range.bind().is_ok(), "a freed port is taken again");
    }

    #[tokio::test]
    async fn a_port_just_freed_is_the_last_taken_again() {
        let (low, high) = free_ports(3);
        let range = PortRange::new("127.0.0.1".parse().unwrap(), low, high);
        let first = range.bind().unwrap();
        let freed = first.local_addr().unwrap().port();
        drop(first);
        let second = range.bind().unwrap();
        assert_ne!(second.local_addr().unwrap().port(), freed);
    }
}
