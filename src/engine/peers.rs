//! What the engine remembers per remote address: its cookie, and whether it echoes ours.

use crate::time::Time;
use crate::wire::Echo;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A peer's cookie as it must be echoed. Nearly all are `{"cookie":"<short text>"}`
/// (telekad: 16 hex digits, the reference node: 8), kept inline without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredCookie {
    /// The text of a `{"cookie":"..."}` body, up to 22 plain ASCII characters.
    Inline { len: u8, text: [u8; 22] },
    /// Any other body, verbatim.
    Raw(Box<str>),
}

impl StoredCookie {
    pub fn from_echo(e: &Echo) -> StoredCookie {
        let json = e.as_json();
        if let Some(inner) = json
            .strip_prefix("{\"cookie\":\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            let plain = inner
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if plain && inner.len() <= 22 {
                let mut text = [0u8; 22];
                text[..inner.len()].copy_from_slice(inner.as_bytes());
                return StoredCookie::Inline {
                    len: inner.len() as u8,
                    text,
                };
            }
        }
        StoredCookie::Raw(json.into())
    }

    pub fn to_echo(&self) -> Echo {
        match self {
            StoredCookie::Inline { len, text } => {
                Echo::cookie(std::str::from_utf8(&text[..usize::from(*len)]).unwrap_or_default())
            }
            StoredCookie::Raw(raw) => Echo::raw(raw),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerInfo {
    /// The cookie this peer asked us to return (`PleaseAlwaysReturnThisMessage`).
    pub their_cookie: Option<StoredCookie>,
    /// Whether its last packet carried our current cookie.
    pub echoes_ours: bool,
    /// Whether it showed telekad extensions (so it needs no `PleaseSendPeers` beside a
    /// `WhereAreThey`).
    pub telekad: bool,
    /// Engine time in tenths of a second when it was last heard (enough to tell the
    /// stalest; wraps after 13 years).
    heard_ds: u32,
}

/// A socket address packed into 18 bytes with byte alignment (an IPv4 address is kept in its
/// IPv4-mapped IPv6 form), so that a book entry costs 56 bytes instead of 72.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PackedAddr([u8; 18]);

impl PackedAddr {
    fn new(a: &SocketAddr) -> PackedAddr {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut b = [0u8; 18];
        b[..16].copy_from_slice(&ip.octets());
        b[16..].copy_from_slice(&a.port().to_be_bytes());
        PackedAddr(b)
    }
}

/// A bounded map of remote addresses; the least recently heard are forgotten first. It also
/// tracks addresses that keep leaving our requests unanswered (gone nodes that other nodes'
/// tables still list), so that lookups stop waiting for them.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    map: HashMap<PackedAddr, PeerInfo>,
    cap: usize,
    /// Unanswered requests in a row and when the last one expired (tenths of a second).
    silent: HashMap<PackedAddr, (u8, u32)>,
}

/// Most addresses tracked as silent.
const MAX_SILENT: usize = 256;
/// Requests in a row that must expire unanswered before an address is presumed gone: as
/// many as a lookup sends one peer, so that datagram loss alone (10% each way: 0.13%) rarely
/// condemns a live node.
pub(crate) const SILENT_AFTER: u8 = 4;
/// How long a silent address stays presumed gone after its last unanswered request.
const SILENT_FOR_DS: u32 = 3_000;

fn deciseconds(now: Time) -> u32 {
    (now.as_micros() / 100_000) as u32
}

impl PeerBook {
    pub fn new(cap: usize) -> PeerBook {
        PeerBook {
            map: HashMap::new(),
            cap: cap.max(16),
            silent: HashMap::new(),
        }
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        self.map.get(&PackedAddr::new(addr))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Gives back memory a burst left reserved, and forgets silent addresses whose time ran
    /// out.
    pub fn shrink(&mut self, now: Time) {
        super::requests::shrink_map(&mut self.map);
        let now = deciseconds(now);
        self.silent
            .retain(|_, (_, at)| now.wrapping_sub(*at) < SILENT_FOR_DS);
        super::requests::shrink_map(&mut self.silent);
    }

    /// A request to `addr` expired unanswered at `now`.
    pub fn unanswered(&mut self, addr: SocketAddr, now: Time) {
        let key = PackedAddr::new(&addr);
        let now = deciseconds(now);
        if self.silent.len() >= MAX_SILENT && !self.silent.contains_key(&key) {
            // Forget the one silent longest ago (ties by address).
            if let Some(old) = self.silent.iter().map(|(a, (_, t))| (*t, *a)).min() {
                self.silent.remove(&old.1);
            }
        }
        let e = self.silent.entry(key).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }

    /// Whether `addr` left [`SILENT_AFTER`] requests in a row unanswered, the last less than
    /// five minutes ago, and has sent nothing since.
    pub fn presumed_gone(&self, addr: &SocketAddr, now: Time) -> bool {
        if self.silent.is_empty() {
            return false;
        }
        self.silent
            .get(&PackedAddr::new(addr))
            .is_some_and(|(n, at)| {
                *n >= SILENT_AFTER && deciseconds(now).wrapping_sub(*at) < SILENT_FOR_DS
            })
    }

    /// The entry for `addr`, created if needed, marked heard at `now`.
    pub fn heard(&mut self, addr: SocketAddr, now: Time) -> &mut PeerInfo {
        let key = PackedAddr::new(&addr);
        if !self.silent.is_empty() {
            self.silent.remove(&key);
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.prune();
        }
        let p = self.map.entry(key).or_default();
        p.heard_ds = deciseconds(now);
        p
    }

    /// Forgets the least recently heard eighth (ties broken by address, so the outcome does
    /// not depend on hash order).
    fn prune(&mut self) {
        let mut ages: Vec<(u32, PackedAddr)> =
            self.map.iter().map(|(a, p)| (p.heard_ds, *a)).collect();
        let drop = (ages.len() / 8).max(1);
        ages.select_nth_unstable(drop - 1);
        for (_, a) in &ages[..drop] {
            self.map.remove(a);
        }
        // Removals leave tombstones, and a table that runs out of room with more than half
        // its slots live doubles instead of cleaning up in place: rebuild it at its bound.
        let mut fresh = HashMap::with_capacity(self.cap);
        fresh.extend(self.map.drain());
        self.map = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_compact() {
        assert!(std::mem::size_of::<(PackedAddr, PeerInfo)>() <= 56);
        let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let b: SocketAddr = "[::1]:5".parse().unwrap();
        assert_ne!(PackedAddr::new(&a), PackedAddr::new(&b));
        let mut book = PeerBook::new(16);
        for port in 0..100u16 {
            let now = Time::from_millis(u64::from(port) * 200);
            book.heard(SocketAddr::new(a.ip(), port), now);
            assert!(book.len() <= 16);
        }
        assert!(
            book.map.capacity() < 32,
            "pruning keeps the table at its bound"
        );
        // The most recently heard survive pruning.
        assert!(book.get(&SocketAddr::new(a.ip(), 99)).is_some());
        assert!(book.get(&SocketAddr::new(a.ip(), 0)).is_none());
    }

    #[test]
    fn silent_addresses_are_presumed_gone_until_heard() {
        let a: SocketAddr = "127.0.0.9:9".parse().unwrap();
        let mut book = PeerBook::new(16);
        let t = Time::from_millis(1_000);
        for _ in 1..SILENT_AFTER {
            book.unanswered(a, t);
        }
        assert!(
            !book.presumed_gone(&a, t),
            "fewer than SILENT_AFTER is loss, not death"
        );
        book.unanswered(a, t);
        assert!(book.presumed_gone(&a, t));
        assert!(!book.presumed_gone(&a, t + std::time::Duration::from_secs(301)));
        book.heard(a, t);
        assert!(!book.presumed_gone(&a, t), "any datagram clears it");
        for port in 0..1_000u16 {
            book.unanswered(SocketAddr::new(a.ip(), port), t);
        }
        assert!(book.silent.len() <= MAX_SILENT);
    }

    #[test]
    fn cookies_round_trip_exactly() {
        for body in [
            r#"{"cookie":"0123456789abcdef"}"#,
            r#"{"cookie":"b941170a"}"#,
            r#"{"cookie":"a-much-longer-cookie-than-fits-inline"}"#,
            r#"["any",{"valid":"JSON"}]"#,
            r#"{"cookie":"with\"quote"}"#,
            r#"{"cookie": "spaced"}"#,
        ] {
            let e = Echo::raw(body);
            assert_eq!(StoredCookie::from_echo(&e).to_echo(), e, "{body}");
        }
        assert!(matches!(
            StoredCookie::from_echo(&Echo::cookie("b941170a")),
            StoredCookie::Inline { .. }
        ));
    }
}
