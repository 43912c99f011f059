//! Learning the own public address from what verified peers report seeing.

use crate::addr::PackedAddr;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// Recent `YourAddressIs` reports, one per reporting IP; a new address is adopted only when a
/// majority of them agree and at least `quorum` distinct IPs said so. A report is kept in 34
/// bytes: the reporter's IP (IPv4 in its IPv6-mapped form) and the address it sees, packed.
#[derive(Debug, Clone)]
pub struct AddressVotes {
    reports: VecDeque<([u8; 16], PackedAddr)>,
    window: usize,
    quorum: usize,
}

impl AddressVotes {
    /// Keeps the last `window` reports; adoption needs `quorum` agreeing reporters.
    pub fn new(window: usize, quorum: usize) -> AddressVotes {
        AddressVotes {
            reports: VecDeque::new(),
            window: window.max(1),
            quorum: quorum.max(1),
        }
    }

    /// Records that `reporter` sees us at `seen`; returns the address the majority now agrees
    /// on, if any.
    pub fn report(&mut self, reporter: IpAddr, seen: SocketAddr) -> Option<SocketAddr> {
        let reporter = match reporter {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let seen = crate::addr::canonical(seen);
        let packed = PackedAddr::new(&seen);
        self.reports.retain(|(ip, _)| *ip != reporter);
        if self.reports.len() >= self.window {
            self.reports.pop_front();
        }
        self.reports.push_back((reporter, packed));
        let agree = self.reports.iter().filter(|(_, a)| *a == packed).count();
        (agree >= self.quorum && agree * 2 > self.reports.len()).then_some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_majority_of_distinct_reporters() {
        let mut v = AddressVotes::new(8, 3);
        let a: SocketAddr = "192.0.2.1:24254".parse().unwrap();
        let b: SocketAddr = "192.0.2.9:24254".parse().unwrap();
        let ip = |n: u8| IpAddr::from([198, 51, 100, n]);
        assert_eq!(v.report(ip(1), a), None);
        assert_eq!(v.report(ip(1), a), None, "same reporter twice counts once");
        assert_eq!(v.report(ip(2), a), None);
        assert_eq!(v.report(ip(3), b), None);
        assert_eq!(v.report(ip(4), a), Some(a));
        assert_eq!(v.report(ip(5), b), None, "b has 2 of 5");
        assert_eq!(v.report(ip(6), b), None, "b has 3 of 6, not a majority");
        assert_eq!(v.report(ip(7), b), Some(b));
        assert_eq!(
            std::mem::size_of::<([u8; 16], PackedAddr)>(),
            34,
            "reports stay compact"
        );
        // An IPv4 reporter and its IPv6-mapped form are one reporter.
        let mut v = AddressVotes::new(8, 2);
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped());
        assert_eq!(v.report(ip(1), a), None);
        assert_eq!(
            v.report(mapped, a),
            None,
            "the same reporter twice counts once"
        );
        assert_eq!(v.report(ip(2), a), Some(a));
    }
}
