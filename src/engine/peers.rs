//! What the engine remembers per remote address (its cookie, whether it echoes ours, whether
//! it is telekad): with its contact for a routing-table contact, in the bounded peer book
//! for any other address.

use crate::addr::PackedAddr;
use crate::hashing::Map;
use crate::id::NodeId;
use crate::peer_info::{inline_text, PeerInfo, NO_COOKIE, RAW_COOKIE};
use crate::table::RoutingTable;
use crate::time::Time;
use crate::wire::Echo;
use std::net::SocketAddr;

/// A bounded map of remote addresses outside the routing table (spares, candidates, nodes
/// met in lookups, requesters); the least recently heard are forgotten first. It also
/// tracks addresses that keep leaving our requests unanswered (gone nodes that other nodes'
/// tables still list), so that lookups stop waiting for them.
///
/// The entries are one list sorted by address, found by binary search: 32 bytes each, no
/// hash-table slack, and pruning works in place instead of rebuilding a table.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    entries: Vec<Kept>,
    /// Cookies too long or too unusual to keep inline (rare: other implementations).
    raw_cookies: Map<PackedAddr, Box<str>>,
    cap: usize,
    /// Unanswered requests in a row and when the last one expired (tenths of a second).
    silent: Map<PackedAddr, (u8, u32)>,
}

/// One address in the book: what is kept about it, and when it was last heard (engine time
/// in tenths of a second, enough to tell the stalest; wraps after 13 years). 32 bytes with
/// byte alignment.
#[derive(Debug, Clone, Copy)]
struct Kept {
    addr: PackedAddr,
    info: PeerInfo,
    heard_ds: [u8; 4],
}

impl Kept {
    fn heard_ds(&self) -> u32 {
        u32::from_le_bytes(self.heard_ds)
    }
}

/// Most addresses tracked as silent.
const MAX_SILENT: usize = 256;
/// Requests in a row that must expire unanswered before an address is presumed gone: as
/// many as a lookup sends one peer, so that datagram loss alone (10% each way: 0.13%) rarely
/// condemns a live node.
pub(crate) const SILENT_AFTER: u8 = 4;
/// How long a silent address stays presumed gone after its last unanswered request.
const SILENT_FOR_DS: u32 = 3_000;

impl PeerBook {
    pub fn new(cap: usize) -> PeerBook {
        PeerBook {
            entries: Vec::new(),
            raw_cookies: Map::default(),
            cap: cap.max(16),
            silent: Map::default(),
        }
    }

    fn find(&self, key: &PackedAddr) -> Result<usize, usize> {
        find_in(&self.entries, key)
    }

    fn entry(&self, key: &PackedAddr) -> Option<&PeerInfo> {
        self.find(key).ok().map(|i| &self.entries[i].info)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        self.entry(&PackedAddr::new(addr))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The cookie `addr` asked us to return, as it must be echoed.
    #[cfg(test)]
    pub fn their_cookie(&self, addr: &SocketAddr) -> Option<Echo> {
        self.get_with_cookie(addr).1
    }

    /// The entry for `addr` and its cookie, found with one look-up (for every request sent).
    pub fn get_with_cookie(&self, addr: &SocketAddr) -> (Option<PeerInfo>, Option<Echo>) {
        let key = PackedAddr::new(addr);
        let Some(info) = self.entry(&key) else {
            return (None, None);
        };
        (Some(*info), self.cookie_in(&key, info))
    }

    /// The cookie that `info`, kept for `addr` (in this book or with a routing-table
    /// contact), holds.
    pub fn cookie_of(&self, addr: &SocketAddr, info: &PeerInfo) -> Option<Echo> {
        self.cookie_in(&PackedAddr::new(addr), info)
    }

    fn cookie_in(&self, key: &PackedAddr, info: &PeerInfo) -> Option<Echo> {
        match info.cookie_len {
            NO_COOKIE => None,
            RAW_COOKIE => self.raw_cookies.get(key).map(|raw| Echo::raw(raw)),
            _ => info.inline_cookie().map(|t| Echo::cookie(t.as_str())),
        }
    }

    /// Stores the cookie `addr` asked us to return (its entry must exist: see
    /// [`PeerBook::heard`]); returns whether it differs from the one stored.
    pub fn set_their_cookie(&mut self, addr: &SocketAddr, e: &Echo) -> bool {
        let key = PackedAddr::new(addr);
        let Ok(at) = self.find(&key) else {
            return false;
        };
        store_cookie(&mut self.raw_cookies, key, &mut self.entries[at].info, e)
    }

    /// [`PeerBook::set_their_cookie`] for an entry kept outside the book (a routing-table
    /// contact's); a cookie too unusual to keep inline goes in the book's side map.
    pub fn set_cookie_of(&mut self, addr: &SocketAddr, info: &mut PeerInfo, e: &Echo) -> bool {
        store_cookie(&mut self.raw_cookies, PackedAddr::new(addr), info, e)
    }

    /// Takes the entry of `addr` out of the book (it moves to the routing table with its
    /// contact); a cookie in the side map stays there.
    pub fn take(&mut self, addr: &SocketAddr) -> Option<PeerInfo> {
        let at = self.find(&PackedAddr::new(addr)).ok()?;
        Some(self.entries.remove(at).info)
    }

    /// Gives back memory a burst left reserved, forgets silent addresses whose time ran
    /// out, and drops side-map cookies of addresses that neither the book nor `elsewhere`
    /// (the routing table) keeps any more.
    pub fn shrink(&mut self, now: Time, elsewhere: impl Fn(&SocketAddr) -> bool) {
        crate::slack::shrink_vec(&mut self.entries);
        if !self.raw_cookies.is_empty() {
            let entries = &self.entries;
            self.raw_cookies
                .retain(|a, _| find_in(entries, a).is_ok() || elsewhere(&a.get()));
        }
        crate::slack::shrink_map(&mut self.raw_cookies);
        let now = now.as_deciseconds();
        self.silent
            .retain(|_, (_, at)| now.wrapping_sub(*at) < SILENT_FOR_DS);
        crate::slack::shrink_map(&mut self.silent);
    }

    /// A request to `addr` expired unanswered at `now`.
    pub fn unanswered(&mut self, addr: SocketAddr, now: Time) {
        let key = PackedAddr::new(&addr);
        let now = now.as_deciseconds();
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
                *n >= SILENT_AFTER && now.as_deciseconds().wrapping_sub(*at) < SILENT_FOR_DS
            })
    }

    /// The entry for `addr`, created if needed, marked heard at `now`.
    pub fn heard(&mut self, addr: SocketAddr, now: Time) -> &mut PeerInfo {
        let key = PackedAddr::new(&addr);
        if !self.silent.is_empty() {
            self.silent.remove(&key);
        }
        let at = match self.find(&key) {
            Ok(at) => at,
            Err(at) => {
                let at = if self.entries.len() >= self.cap {
                    self.prune();
                    // Where it goes moved with the pruning.
                    self.find(&key).unwrap_or_else(|at| at)
                } else {
                    at
                };
                crate::slack::make_room_for_one(&mut self.entries, self.cap);
                self.entries.insert(
                    at,
                    Kept {
                        addr: key,
                        info: PeerInfo::default(),
                        heard_ds: [0; 4],
                    },
                );
                at
            }
        };
        let k = &mut self.entries[at];
        k.heard_ds = now.as_deciseconds().to_le_bytes();
        &mut k.info
    }

    /// Forgets that `addr` kept silent (it was heard).
    pub fn heard_from(&mut self, addr: &SocketAddr) {
        if !self.silent.is_empty() {
            self.silent.remove(&PackedAddr::new(addr));
        }
    }

    /// Forgets the least recently heard quarter (ties broken by address, so the outcome does
    /// not depend on hash order): a busy node meeting new addresses all the time prunes once
    /// per 56 of them.
    fn prune(&mut self) {
        let mut ages: Vec<(u32, PackedAddr)> = self
            .entries
            .iter()
            .map(|k| (k.heard_ds(), k.addr))
            .collect();
        let drop = (ages.len() / 4).max(1);
        // Addresses are unique, so (heard, address) orders entries totally: the `drop`
        // smallest are those up to the pivot.
        let (_, pivot, _) = ages.select_nth_unstable(drop - 1);
        let pivot = *pivot;
        let raw = &mut self.raw_cookies;
        self.entries.retain(|k| {
            let keep = (k.heard_ds(), k.addr) > pivot;
            if !keep && !raw.is_empty() {
                raw.remove(&k.addr);
            }
            keep
        });
    }
}

/// What is kept about `addr`: with its contact if it is one, else in `book` (for callers that
/// hold other parts of the engine borrowed; others call [`super::Engine::peer`]).
pub(super) fn peer_in<'a>(
    table: &'a RoutingTable,
    book: &'a PeerBook,
    addr: &SocketAddr,
) -> Option<&'a PeerInfo> {
    table.peer(*addr).or_else(|| book.get(addr))
}

/// What the engine keeps per remote address lives in one of two places: a routing-table
/// contact keeps its own, for as long as it is a contact; any other address (a spare
/// included) has an entry in the bounded [`PeerBook`]. These methods look in the table first.
impl super::Engine {
    /// What is kept about `addr`, wherever it is.
    pub(super) fn peer(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        peer_in(&self.table, &self.peers, addr)
    }

    /// What is kept about `addr` and the cookie it asked us to return.
    pub(super) fn peer_with_cookie(&self, addr: &SocketAddr) -> (Option<PeerInfo>, Option<Echo>) {
        match self.table.peer(*addr) {
            Some(info) => (Some(*info), self.peers.cookie_of(addr, info)),
            None => self.peers.get_with_cookie(addr),
        }
    }

    /// The cookie `addr` asked us to return.
    pub(super) fn their_cookie(&self, addr: &SocketAddr) -> Option<Echo> {
        self.peer_with_cookie(addr).1
    }

    /// What is kept about `addr`, created in the book if it is new, marked heard at `now`.
    pub(super) fn peer_heard(&mut self, addr: SocketAddr, now: Time) -> &mut PeerInfo {
        match self.table.peer_mut(addr) {
            Some(info) => {
                self.peers.heard_from(&addr);
                info
            }
            None => self.peers.heard(addr, now),
        }
    }

    /// Stores the cookie `addr` asked us to return (after [`Self::peer_heard`]); returns
    /// whether it differs from the one stored.
    pub(super) fn set_their_cookie(&mut self, addr: &SocketAddr, e: &Echo) -> bool {
        match self.table.peer_mut(*addr) {
            Some(info) => self.peers.set_cookie_of(addr, info, e),
            None => self.peers.set_their_cookie(addr, e),
        }
    }

    /// `addr` has just become a contact: what the book kept about it moves to the contact.
    pub(super) fn adopt_peer(&mut self, addr: SocketAddr) {
        if let Some(slot) = self.table.peer_mut(addr) {
            if let Some(info) = self.peers.take(&addr) {
                *slot = info;
            }
        }
    }

    /// A contact of the bucket of `addr` left it, and a spare may have taken its place:
    /// what the book kept about a newly promoted contact moves to it.
    pub(super) fn adopt_promoted(&mut self, addr: SocketAddr) {
        let Some(idx) = self.table.own_id().bucket_index(&NodeId::of_addr(addr)) else {
            return;
        };
        let fresh: Vec<SocketAddr> = (self.table.bucket(idx).iter())
            .filter(|c| *c.peer_info() == PeerInfo::default())
            .map(|c| c.addr())
            .collect();
        for a in fresh {
            self.adopt_peer(a);
        }
    }
}

/// Where `key` is, or would go, in a book's sorted entries.
fn find_in(entries: &[Kept], key: &PackedAddr) -> Result<usize, usize> {
    entries.binary_search_by(|k| k.addr.cmp(key))
}

/// Stores cookie `e` in `info`, kept for `key`: inline if it fits, else in `raw`. Returns
/// whether it differs from the one stored.
fn store_cookie(
    raw: &mut Map<PackedAddr, Box<str>>,
    key: PackedAddr,
    info: &mut PeerInfo,
    e: &Echo,
) -> bool {
    if let Some(text) = inline_text(e) {
        if info.inline_cookie().is_some_and(|t| t.as_str() == text) {
            return false;
        }
        info.set_inline_cookie(text);
        raw.remove(&key);
        return true;
    }
    if info.cookie_len == RAW_COOKIE && raw.get(&key).map(|r| &**r) == Some(e.as_json()) {
        return false;
    }
    info.cookie_len = RAW_COOKIE;
    raw.insert(key, e.as_json().into());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_keeps_its_cookie_however_many_strangers_write() {
        use crate::config::Config;
        use crate::engine::Engine;
        use std::time::Duration;
        let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
            "127.0.0.1:24001".parse().unwrap(),
            "127.0.0.2:24002".parse().unwrap(),
        );
        let cfg = Config::default();
        let mut a = Engine::new(cfg.clone(), a_addr, 1, Time::ZERO);
        let mut b = Engine::new(cfg.clone(), b_addr, 2, Time::ZERO);
        a.bootstrap(Time::ZERO, &[b_addr]);
        let mut now = Time::ZERO;
        for _ in 0..20 {
            now = now + Duration::from_millis(1);
            while let Some(t) = a.poll_transmit() {
                b.handle_packet(now, a_addr, &t.payload);
            }
            while let Some(t) = b.poll_transmit() {
                a.handle_packet(now, b_addr, &t.payload);
            }
        }
        assert!(a.table().contains(b_addr));
        let cookie = a.their_cookie(&b_addr).expect("b gave a its cookie");
        assert!(
            a.peers.get(&b_addr).is_none(),
            "kept with the contact, not in the book"
        );
        // Ten times the book's bound of strangers, each handing a its own cookie.
        for i in 0..cfg.max_peer_book * 10 {
            now = now + Duration::from_millis(1);
            let src = SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 9000));
            let pkt = br#"[{"PleaseSendPeers":{}},{"PleaseAlwaysReturnThisMessage":{"cookie":"s7r4ng3r"}}]"#;
            a.handle_packet(now, src, pkt);
            while a.poll_transmit().is_some() {}
            assert!(a.peers_remembered() <= cfg.max_peer_book);
        }
        assert_eq!(
            a.their_cookie(&b_addr),
            Some(cookie),
            "the contact's cookie survived"
        );
        assert!(a.table().contains(b_addr));
    }

    #[test]
    fn entries_stay_compact() {
        assert_eq!(std::mem::size_of::<Kept>(), 32);
        assert_eq!(std::mem::align_of::<Kept>(), 1);
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
            book.entries.capacity() <= 16,
            "pruning keeps the list at its bound"
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
        let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let mut book = PeerBook::new(16);
        book.heard(a, Time::ZERO);
        assert_eq!(book.their_cookie(&a), None);
        for body in [
            r#"{"cookie":"0123456789abcdef"}"#,
            r#"{"cookie":"b941170a"}"#,
            r#"{"cookie":"a-much-longer-cookie-than-fits-inline"}"#,
            r#"["any",{"valid":"JSON"}]"#,
            r#"{"cookie":"with\"quote"}"#,
            r#"{"cookie": "spaced"}"#,
            r#"{"cookie":""}"#,
        ] {
            let e = Echo::raw(body);
            assert!(book.set_their_cookie(&a, &e), "{body} is new");
            assert!(!book.set_their_cookie(&a, &e), "{body} again is not");
            assert_eq!(book.their_cookie(&a), Some(e), "{body}");
        }
        // Plain short cookies stay inline; the side map is emptied when one replaces a raw one.
        book.set_their_cookie(&a, &Echo::cookie("b941170a"));
        assert!(book.raw_cookies.is_empty());
        // A raw cookie goes with its entry when the entry is pruned.
        book.set_their_cookie(&a, &Echo::raw("[1,2,3]"));
        for port in 100..200u16 {
            book.heard(
                SocketAddr::new(a.ip(), port),
                Time::from_millis(1_000 * (1 + u64::from(port))),
            );
        }
        assert!(book.get(&a).is_none());
        assert!(book.raw_cookies.is_empty());
    }

    proptest::proptest! {
        /// The sorted list keeps what a map with the same rule keeps: at its bound, a new
        /// address first forgets the least recently heard quarter (ties by address).
        #[test]
        fn the_book_keeps_what_a_map_would(
            heard in proptest::collection::vec((0..40u16, 0..3u8), 1..300),
        ) {
            let cap = 16;
            let mut book = PeerBook::new(cap);
            let mut model: std::collections::BTreeMap<PackedAddr, u32> = Default::default();
            let mut ds = 0u32;
            for (port, step) in heard {
                ds += u32::from(step);
                let a = SocketAddr::from(([127, 0, 0, 1], port));
                let key = PackedAddr::new(&a);
                if !model.contains_key(&key) && model.len() >= cap {
                    let mut ages: Vec<(u32, PackedAddr)> =
                        model.iter().map(|(a, t)| (*t, *a)).collect();
                    ages.sort();
                    for (_, gone) in ages.iter().take(model.len() / 4) {
                        model.remove(gone);
                    }
                }
                model.insert(key, ds);
                book.heard(a, Time::from_deciseconds(ds));
                let kept: Vec<(PackedAddr, u32)> =
                    book.entries.iter().map(|k| (k.addr, k.heard_ds())).collect();
                let want: Vec<(PackedAddr, u32)> = model.iter().map(|(a, t)| (*a, *t)).collect();
                proptest::prop_assert_eq!(kept, want);
                proptest::prop_assert!(book.entries.capacity() <= cap);
            }
        }

        /// Any cookie text comes back byte for byte, whichever way it is kept (8 plain
        /// characters as they are, 16 lowercase hex digits as 8 bytes, anything else in the
        /// side map), and only telekad- and reference-style cookies stay inline.
        #[test]
        fn any_cookie_text_comes_back(text in "[0-9a-fA-F]{16}|[0-9a-f]{15,17}|[ -~]{0,20}") {
            let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
            let mut book = PeerBook::new(16);
            book.heard(a, Time::ZERO);
            let e = Echo::cookie(&text);
            book.set_their_cookie(&a, &e);
            proptest::prop_assert_eq!(book.their_cookie(&a), Some(e.clone()));
            let hex16 = text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let plain8 = text.len() <= 8 && text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(book.raw_cookies.is_empty(), hex16 || plain8);
        }
    }
}
