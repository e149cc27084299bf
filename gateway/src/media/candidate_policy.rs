//! Which remote candidates the gateway sends connectivity checks to. Anyone who gets a
//! session-initiate through names these addresses, so the media port must not become a way to
//! send packets where the gateway should not: its own addresses, privileged ports, addresses
//! that are not on the public Internet (unless configured), and the same addresses in IPv6
//! disguise (IPv4-mapped, IPv4-compatible, NAT64).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::protocol::ice_udp::Candidate;

/// The rules, from `[media]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidatePolicy {
    /// Accept loopback addresses (tests on one machine).
    pub allow_loopback: bool,
    /// Accept private-network addresses (RFC 1918, shared address space, unique local).
    pub allow_private: bool,
    /// Accept IPv6 (else IPv4) addresses: the family of our own candidate.
    pub ipv6: bool,
    /// Lowest port accepted (privileged services live below 1024).
    pub min_port: u16,
    /// The gateway's own addresses (local, public, bound), never checked (but for loopback,
    /// when loopback is allowed).
    pub own: Vec<IpAddr>,
}

impl CandidatePolicy {
    /// Why `candidate` is refused, or `Ok` if it may be checked.
    pub fn admits(&self, candidate: &Candidate) -> Result<(), &'static str> {
        if candidate.protocol != "udp" {
            return Err("not UDP");
        }
        if candidate.component != 1 {
            return Err("not component 1 (rtcp-mux is used)");
        }
        if candidate.port < self.min_port.max(1) {
            return Err("a port below media.min_candidate_port");
        }
        let ip = candidate.ip;
        if ip.is_ipv6() != self.ipv6 {
            return Err("other address family");
        }
        // On one machine (tests, a caller beside the gateway) loopback is shared by both.
        let shared_loopback = ip.is_loopback() && self.allow_loopback;
        if self.own.contains(&ip) && !shared_loopback {
            return Err("one of the gateway's own addresses");
        }
        match ip {
            IpAddr::V4(v4) => self.admits_v4(v4),
            IpAddr::V6(v6) => self.admits_v6(v6),
        }
    }

    fn admits_v4(&self, ip: Ipv4Addr) -> Result<(), &'static str> {
        let [a, b, c, _] = ip.octets();
        if ip.is_loopback() {
            return match self.allow_loopback {
                true => Ok(()),
                false => Err("loopback address"),
            };
        }
        let private = ip.is_private() || (a == 100 && (b & 0xC0) == 64);
        if private {
            return match self.allow_private {
                true => Ok(()),
                false => Err("private address"),
            };
        }
        let refused = match (a, b, c) {
            (0, _, _) => Some("\"this network\" (0.0.0.0/8)"),
            (169, 254, _) => Some("link-local address"),
            (192, 0, 0) => Some("IETF protocol assignment (192.0.0.0/24)"),
            (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation address"),
            (192, 88, 99) => Some("6to4 relay anycast (192.88.99.0/24)"),
            (198, 18..=19, _) => Some("benchmarking address (198.18.0.0/15)"),
            (224..=239, _, _) => Some("multicast address"),
            (240..=255, _, _) => Some("reserved address (240.0.0.0/4, broadcast)"),
            _ => None,
        };
        refused.map_or(Ok(()), Err)
    }

    fn admits_v6(&self, ip: Ipv6Addr) -> Result<(), &'static str> {
        let segments = ip.segments();
        if ip.is_loopback() {
            return match self.allow_loopback {
                true => Ok(()),
                false => Err("loopback address"),
            };
        }
        if ip.is_unspecified() {
            return Err("unspecified address");
        }
        // IPv4 in IPv6 clothing is judged as IPv4, and an IPv4-mapped address is refused
        // outright: the socket would send it as IPv4.
        if ip.to_ipv4_mapped().is_some() {
            return Err("IPv4-mapped IPv6 address");
        }
        if segments[..6] == [0; 6] {
            return Err("IPv4-compatible IPv6 address");
        }
        let nat64 =
            segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1];
        if nat64 {
            let [_, _, _, _, _, _, hi, lo] = segments;
            let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            return match v4.is_loopback() || self.admits_v4(v4).is_err() {
                true => Err("NAT64 of a refused IPv4 address"),
                false => Ok(()),
            };
        }
        if (segments[0] & 0xFE00) == 0xFC00 {
            return match self.allow_private {
                true => Ok(()),
                false => Err("unique local address"),
            };
        }
        let refused = match segments[0] {
            s if (s & 0xFFC0) == 0xFE80 => Some("link-local address"),
            s if (s & 0xFF00) == 0xFF00 => Some("multicast address"),
            0x2001 if segments[1] == 0x0db8 => Some("documentation address"),
            0x2001 if segments[1] < 0x0200 => Some("IETF protocol assignment (2001::/23)"),
            0x0100 if segments[1..4] == [0, 0, 0] => Some("discard-only address (100::/64)"),
            0x2002 => Some("6to4 address"),
            _ => None,
        };
        refused.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ice_udp::CandidateType;

    fn candidate(ip: &str, port: u16) -> Candidate {
        Candidate {
            component: 1,
            foundation: "1".into(),
            generation: 0,
            id: None,
            ip: ip.parse().unwrap(),
            port,
            priority: 2122260223,
            protocol: "udp".into(),
            candidate_type: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            network: None,
        }
    }

    fn strict(ipv6: bool) -> CandidatePolicy {
        CandidatePolicy {
            allow_loopback: false,
            allow_private: false,
            ipv6,
            min_port: 1024,
            own: vec![
                "93.184.216.34".parse().unwrap(),
                "2a00:1450::34".parse().unwrap(),
            ],
        }
    }

    /// Each rule, with an address it refuses.
    #[test]
    fn every_rule_refuses_what_it_names() {
        let v4 = [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.1.1", "link-local"),
            ("0.1.2.3", "this network"),
            ("192.0.0.8", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.5", "documentation"),
            ("192.88.99.1", "6to4"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("93.184.216.34", "own"),
        ];
        for (ip, why) in v4 {
            let refusal = strict(false).admits(&candidate(ip, 5000)).unwrap_err();
            assert!(refusal.contains(why), "{ip}: {refusal}");
        }
        let v6 = [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::a01:203", "NAT64"),
            ("64:ff9b:1::c000:201", "NAT64"),
            ("fd00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001:0:1::1", "IETF"),
            ("100::1", "discard"),
            ("2002:c000:201::1", "6to4"),
            ("2a00:1450::34", "own"),
        ];
        for (ip, why) in v6 {
            let refusal = strict(true).admits(&candidate(ip, 5000)).unwrap_err();
            assert!(refusal.contains(why), "{ip}: {refusal}");
        }
    }

    #[test]
    fn ports_families_and_transports() {
        let policy = strict(false);
        assert!(policy.admits(&candidate("8.8.8.8", 5000)).is_ok());
        assert!(policy.admits(&candidate("8.8.8.8", 1024)).is_ok());
        assert!(policy.admits(&candidate("8.8.8.8", 1023)).is_err());
        assert!(policy.admits(&candidate("8.8.8.8", 0)).is_err());
        assert!(policy.admits(&candidate("2a00:1450::1", 5000)).is_err());
        let mut tcp = candidate("8.8.8.8", 5000);
        tcp.protocol = "tcp".into();
        assert!(policy.admits(&tcp).is_err());
        let mut rtcp = candidate("8.8.8.8", 5000);
        rtcp.component = 2;
        assert!(policy.admits(&rtcp).is_err());
        let low = CandidatePolicy {
            min_port: 0,
            ..strict(false)
        };
        assert!(low.admits(&candidate("8.8.8.8", 53)).is_ok());
        assert!(low.admits(&candidate("8.8.8.8", 0)).is_err());
        assert!(strict(true)
            .admits(&candidate("2a00:1450::1", 5000))
            .is_ok());
        assert!(strict(true)
            .admits(&candidate("64:ff9b::808:808", 5000))
            .is_ok());
    }

    #[test]
    fn what_the_config_allows_is_allowed() {
        let open = CandidatePolicy {
            allow_loopback: true,
            allow_private: true,
            ..strict(false)
        };
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.2", "100.64.1.1"] {
            assert!(open.admits(&candidate(ip, 5000)).is_ok(), "{ip}");
        }
        let open6 = CandidatePolicy { ipv6: true, ..open };
        assert!(open6.admits(&candidate("fd00::1", 5000)).is_ok());
        assert!(open6.admits(&candidate("::1", 5000)).is_ok());
        // Still refused, whatever the config: the IPv4-mapped form of a loopback address.
        assert!(open6.admits(&candidate("::ffff:127.0.0.1", 5000)).is_err());
        // A gateway on loopback (tests on one machine) shares the address with its callers.
        let tests = CandidatePolicy {
            own: vec!["127.0.0.1".parse().unwrap()],
            ..open
        };
        assert!(tests.admits(&candidate("127.0.0.1", 5000)).is_ok());
        let production = CandidatePolicy {
            allow_loopback: false,
            ..tests
        };
        assert!(production.admits(&candidate("127.0.0.1", 5000)).is_err());
    }
}
