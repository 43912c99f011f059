//! Socket addresses as the wire writes them: canonical form, parsing, and subnet keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// The canonical form of an address: IPv4-mapped IPv6 becomes IPv4, and IPv6 flow info and
/// scope id are dropped. `Display` of the result is the `ip:port` / `[ip]:port` wire form.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        },
    }
}

/// A socket address packed into 18 bytes with byte alignment (an IPv4 address is kept in its
/// IPv4-mapped IPv6 form; IPv6 flow info and scope id are not kept): 18 bytes instead of
/// `SocketAddr`'s 32 in tables that hold many.
///
/// Compared as a 128-bit number and a 16-bit one (the same order as the bytes'), not by a
/// call to `memcmp`: the peer book's binary search compares addresses on every datagram.
#[derive(Clone, Copy)]
pub struct PackedAddr([u8; 18]);

impl PackedAddr {
    /// The address and port as big-endian numbers: compared, they order as the bytes do.
    fn words(&self) -> (u128, u16) {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&self.0[..16]);
        (
            u128::from_be_bytes(ip),
            u16::from_be_bytes([self.0[16], self.0[17]]),
        )
    }
}

impl PartialEq for PackedAddr {
    fn eq(&self, other: &PackedAddr) -> bool {
        self.words() == other.words()
    }
}

impl Eq for PackedAddr {}

impl std::hash::Hash for PackedAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.words().hash(state);
    }
}

impl PartialOrd for PackedAddr {
    fn partial_cmp(&self, other: &PackedAddr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PackedAddr {
    fn cmp(&self, other: &PackedAddr) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PackedAddr {
    /// Packs `a`.
    pub fn new(a: &SocketAddr) -> PackedAddr {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut b = [0u8; 18];
        b[..16].copy_from_slice(&ip.octets());
        b[16..].copy_from_slice(&a.port().to_be_bytes());
        PackedAddr(b)
    }

    fn is_v4(&self) -> bool {
        self.0[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
    }

    /// Whether both have the same IP.
    pub fn same_ip(&self, other: &PackedAddr) -> bool {
        self.0[..16] == other.0[..16]
    }

    /// Whether both are in the same [`subnet`] (/24 for IPv4, /48 for IPv6).
    pub fn same_subnet(&self, other: &PackedAddr) -> bool {
        if self.is_v4() {
            self.0[..15] == other.0[..15]
        } else {
            !other.is_v4() && self.0[..6] == other.0[..6]
        }
    }

    /// The address, in [`canonical`] form.
    pub fn get(&self) -> SocketAddr {
        let port = u16::from_be_bytes([self.0[16], self.0[17]]);
        if self.is_v4() {
            // The canonical form of a mapped address, built directly (every answer turns
            // twenty of these back into addresses).
            let [a, b, c, d] = [self.0[12], self.0[13], self.0[14], self.0[15]];
            return SocketAddr::from((Ipv4Addr::new(a, b, c, d), port));
        }
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&self.0[..16]);
        canonical(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
    }
}

impl std::fmt::Debug for PackedAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// The decimal text of every byte value: up to three digits, then their count.
const OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        let (h, d, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        t[n] = if n >= 100 {
            [b'0' + h, b'0' + d, b'0' + u, 3]
        } else if n >= 10 {
            [b'0' + d, b'0' + u, 0, 2]
        } else {
            [b'0' + u, 0, 0, 1]
        };
        n += 1;
    }
    t
};

/// Writes the decimal digits of `n` at `buf[at..]`; returns the new end.
fn put_decimal(buf: &mut [u8; 24], at: usize, mut n: u32) -> usize {
    // Digits written in place from the last one back (a copy of variable length was a
    // `memmove` call per octet).
    let len = decimal_len(n);
    for slot in buf[at..at + len].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    at + len
}

/// Decimal digits of `n`, for the values an address has (up to 65535; 5 for anything more).
fn decimal_len(n: u32) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

/// Appends the wire form of `addr` (`ip:port`, `[ip]:port` for IPv6) to `out`, without
/// going through `core::fmt` for IPv4 (the hot path of every peer list): built on the
/// stack, appended in one copy.
pub fn write_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match canonical(addr) {
        SocketAddr::V4(v4) => {
            // "255.255.255.255:65535" is 21 bytes.
            let mut buf = [0u8; 24];
            let mut at = 0;
            for o in v4.ip().octets() {
                // Each octet's table entry copied whole (digits, then their count), the
                // byte after the digits made a dot; the next octet overwrites the rest.
                let text = OCTETS[usize::from(o)];
                buf[at..at + 4].copy_from_slice(&text);
                at += usize::from(text[3]) + 1;
                buf[at - 1] = b'.';
            }
            buf[at - 1] = b':';
            at = put_decimal(&mut buf, at, u32::from(v4.port()));
            // A copy of fixed length is a few moves; one of `at` bytes was a `memmove` call
            // (9% of a WhereAreThey answer's CPU). Copy all, then cut back.
            let len = out.len();
            out.extend_from_slice(&buf);
            out.truncate(len + at);
        }
        v6 => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Length in bytes of [`write_addr`]'s output.
pub fn addr_text_len(addr: SocketAddr) -> usize {
    match canonical(addr) {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            o.iter()
                .map(|x| usize::from(OCTETS[usize::from(*x)][3]))
                .sum::<usize>()
                + 3
                + 1
                + decimal_len(u32::from(v4.port()))
        }
        v6 => v6.to_string().len(),
    }
}

/// Longest `ip:port` string accepted from the wire (`[` + 39-char IPv6 + `]:65535`).
pub const MAX_ADDR_TEXT: usize = 47;

/// Parses one wire address entry (`1.2.3.4:5`, `[::1]:5`). Rejects port 0, unspecified,
/// multicast and broadcast addresses: nobody can be reached there.
pub fn parse_peer(s: &str) -> Option<SocketAddr> {
    if s.len() > MAX_ADDR_TEXT {
        return None;
    }
    let addr = match plain_v4(s.as_bytes()) {
        Some(a) => a,
        None => canonical(s.parse::<SocketAddr>().ok()?),
    };
    is_routable_peer(addr).then_some(addr)
}

/// `a.b.c.d:port` written as [`write_addr`] writes it (no leading zeros, no sign), read
/// without the general parser: peer lists are made of these. Anything else, valid or not,
/// gives `None` and is left to `SocketAddr`'s parser, so the result is the same either way.
fn plain_v4(s: &[u8]) -> Option<SocketAddr> {
    // Reads a decimal number of 1 to `max_digits` digits, no leading zero, ending at `end`.
    fn number(s: &[u8], at: &mut usize, max_digits: usize, end: Option<u8>) -> Option<u32> {
        let start = *at;
        let mut n: u32 = 0;
        while let Some(&b) = s.get(*at) {
            if !b.is_ascii_digit() {
                break;
            }
            n = n * 10 + u32::from(b - b'0');
            *at += 1;
            if *at - start > max_digits {
                return None;
            }
        }
        let len = *at - start;
        if len == 0 || (len > 1 && s[start] == b'0') || s.get(*at).copied() != end {
            return None;
        }
        Some(n)
    }
    let mut at = 0;
    let mut octets = [0u8; 4];
    for (i, o) in octets.iter_mut().enumerate() {
        let end = if i < 3 { b'.' } else { b':' };
        *o = u8::try_from(number(s, &mut at, 3, Some(end))?).ok()?;
        at += 1;
    }
    let port = u16::try_from(number(s, &mut at, 5, None)?).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(octets), port)))
}

/// Whether `addr` could be a peer at all (see [`parse_peer`]).
pub fn is_routable_peer(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

/// The diversity group of an IP: its /24 for IPv4, its /48 for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first three 16-bit groups of an IPv6 address.
    V6([u16; 3]),
}

/// The /24 (IPv4) or /48 (IPv6) that `ip` belongs to.
pub fn subnet(ip: IpAddr) -> Subnet {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Subnet::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => subnet(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Subnet::V6([s[0], s[1], s[2]])
            }
        },
    }
}

/// Whether `addr` is loopback (127.0.0.0/8 or ::1).
pub fn is_loopback(addr: SocketAddr) -> bool {
    match canonical(addr).ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip == Ipv6Addr::LOCALHOST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:24254".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "192.0.2.1:24254");
        let v6: SocketAddr = "[2001:db8::1]:24254".parse().unwrap();
        assert_eq!(canonical(v6).to_string(), "[2001:db8::1]:24254");
    }

    #[test]
    fn fast_writer_matches_display() {
        for s in [
            "1.2.3.4:5",
            "255.255.255.254:65535",
            "127.0.10.1:24254",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:9",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            let mut out = Vec::new();
            write_addr(&mut out, a);
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                canonical(a).to_string()
            );
            assert_eq!(addr_text_len(a), out.len());
        }
    }

    proptest::proptest! {
        /// Packed addresses compare as their bytes do, whether they share a prefix or not.
        #[test]
        fn packed_order_is_the_bytes_order(
            a in proptest::prelude::any::<[u8; 18]>(),
            b in proptest::prelude::any::<[u8; 18]>(),
            shared in 0..=18usize,
        ) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            let (pa, pb) = (PackedAddr(a), PackedAddr(b));
            proptest::prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            proptest::prop_assert_eq!(pa == pb, a == b);
            proptest::prop_assert_eq!(pa.partial_cmp(&pb), Some(a.cmp(&b)));
        }

        /// Any address, appended after whatever the buffer already holds, is written as
        /// `Display` writes it, and `addr_text_len` says how long that is; packed and
        /// unpacked, it comes back in canonical form.
        #[test]
        fn writer_matches_display_for_any_address(
            ip in proptest::prelude::any::<u32>(),
            v6 in proptest::prelude::any::<u128>(),
            port in proptest::prelude::any::<u16>(),
            before in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            for a in [
                SocketAddr::from((std::net::Ipv4Addr::from(ip), port)),
                SocketAddr::from((std::net::Ipv6Addr::from(v6), port)),
            ] {
                proptest::prop_assert_eq!(PackedAddr::new(&a).get(), canonical(a));
                let mut out = before.clone();
                write_addr(&mut out, a);
                proptest::prop_assert_eq!(&out[..before.len()], &before[..]);
                let text = canonical(a).to_string();
                proptest::prop_assert_eq!(&out[before.len()..], text.as_bytes());
                proptest::prop_assert_eq!(addr_text_len(a), text.len());
            }
        }
    }

    proptest::proptest! {
        /// The fast IPv4 reader gives what the general parser gives, on text made of the
        /// characters an IPv4 address uses and on every written address.
        #[test]
        fn plain_v4_agrees_with_the_std_parser(
            junk in "[0-9.:]{0,24}",
            ip in proptest::prelude::any::<u32>(),
            port in proptest::prelude::any::<u16>(),
        ) {
            let written = SocketAddr::from((std::net::Ipv4Addr::from(ip), port)).to_string();
            for text in [junk.as_str(), written.as_str()] {
                let fast = plain_v4(text.as_bytes());
                if let Some(a) = fast {
                    proptest::prop_assert_eq!(Some(a), text.parse::<SocketAddr>().ok());
                }
            }
            proptest::prop_assert!(plain_v4(written.as_bytes()).is_some());
        }
    }

    #[test]
    fn plain_v4_leaves_the_unusual_to_the_std_parser() {
        for s in [
            "01.2.3.4:5",
            "1.2.3.4:05",
            "1.2.3.4:",
            "1.2.3:4",
            "256.1.1.1:1",
            "1.2.3.4:65536",
            "1.2.3.4:5x",
            "1.2.3.4.5:6",
            " 1.2.3.4:5",
            "1.2.3.4:123456",
        ] {
            assert_eq!(plain_v4(s.as_bytes()), None, "{s}");
        }
        assert_eq!(parse_peer("1.2.3.4:05"), "1.2.3.4:05".parse().ok());
    }

    #[test]
    fn parse_peer_rejects_unreachable() {
        assert!(parse_peer("192.0.2.1:24254").is_some());
        assert!(parse_peer("[2001:db8::1]:1").is_some());
        for bad in [
            "0.0.0.0:1",
            "192.0.2.1:0",
            "224.0.0.1:24254",
            "[ff02::1]:24254",
            "x",
            "255.255.255.255:1",
            "192.0.2.1",
        ] {
            assert!(parse_peer(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn subnets_group_by_prefix() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let c: IpAddr = "192.0.3.1".parse().unwrap();
        assert_eq!(subnet(a), subnet(b));
        assert_ne!(subnet(a), subnet(c));
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        assert_eq!(subnet(x), subnet(y));
    }
}
