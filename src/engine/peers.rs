//! What the engine remembers per remote address: its cookie, and whether it echoes ours.

use crate::addr::PackedAddr;
use crate::hashing::Map;
use crate::time::Time;
use crate::wire::Echo;
use std::net::SocketAddr;

/// Bytes of cookie kept inline in a book entry: the reference node's cookies are 8
/// characters, kept as they are; telekad's are 16 lowercase hex digits, kept as 8 bytes.
const INLINE_COOKIE: usize = 8;
/// Longest cookie text an entry gives back inline.
const INLINE_TEXT: usize = 2 * INLINE_COOKIE;
/// `cookie_len` of an entry whose cookie is 16 lowercase hex digits, kept as 8 bytes.
const HEX_COOKIE: u8 = INLINE_TEXT as u8;
/// `cookie_len` of an entry with no cookie.
const NO_COOKIE: u8 = u8::MAX;
/// `cookie_len` of an entry whose cookie body is kept verbatim in the book's side map.
const RAW_COOKIE: u8 = u8::MAX - 1;
const ECHOES_OURS: u8 = 1;
const TELEKAD: u8 = 2;

/// What the book keeps per address, packed to 14 bytes with byte alignment: the cookie the
/// peer asked us to return (`PleaseAlwaysReturnThisMessage`; the text of a plain
/// `{"cookie":"..."}` inline if it is up to 8 plain characters or 16 lowercase hex digits,
/// any other body in a side map), two flags and when it was last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    cookie_len: u8,
    cookie: [u8; INLINE_COOKIE],
    flags: u8,
    /// Engine time in tenths of a second when it was last heard (enough to tell the
    /// stalest; wraps after 13 years), little-endian.
    heard_ds: [u8; 4],
}

impl Default for PeerInfo {
    fn default() -> PeerInfo {
        PeerInfo {
            cookie_len: NO_COOKIE,
            cookie: [0; INLINE_COOKIE],
            flags: 0,
            heard_ds: [0; 4],
        }
    }
}

impl PeerInfo {
    /// Whether it handed us a cookie to return.
    pub fn has_their_cookie(&self) -> bool {
        self.cookie_len != NO_COOKIE
    }

    /// Whether its last packet carried our current cookie.
    pub fn echoes_ours(&self) -> bool {
        self.flags & ECHOES_OURS != 0
    }

    /// Sets [`PeerInfo::echoes_ours`].
    pub fn set_echoes_ours(&mut self, yes: bool) {
        self.flags = if yes {
            self.flags | ECHOES_OURS
        } else {
            self.flags & !ECHOES_OURS
        };
    }

    /// Whether it showed telekad extensions (so it needs no `PleaseSendPeers` beside a
    /// `WhereAreThey`).
    pub fn telekad(&self) -> bool {
        self.flags & TELEKAD != 0
    }

    /// Marks it as a telekad node.
    pub fn set_telekad(&mut self) {
        self.flags |= TELEKAD;
    }

    fn heard_ds(&self) -> u32 {
        u32::from_le_bytes(self.heard_ds)
    }

    /// The inline cookie text, if the cookie is kept inline.
    fn inline_cookie(&self) -> Option<InlineText> {
        let mut text = InlineText([0; INLINE_TEXT], 0);
        match self.cookie_len {
            HEX_COOKIE => {
                crate::id::hex_into(&self.cookie, &mut text.0);
                text.1 = INLINE_TEXT;
            }
            len if usize::from(len) <= INLINE_COOKIE => {
                let len = usize::from(len);
                text.0[..len].copy_from_slice(&self.cookie[..len]);
                text.1 = len;
            }
            _ => return None,
        }
        Some(text)
    }

    /// Keeps `text` (as [`inline_text`] accepted it) inline.
    fn set_inline_cookie(&mut self, text: &str) {
        self.cookie = [0; INLINE_COOKIE];
        // `inline_text` lets through only lowercase hex digits at this length.
        if text.len() == INLINE_TEXT && crate::id::unhex_into(text.as_bytes(), &mut self.cookie) {
            self.cookie_len = HEX_COOKIE;
        } else if let Some(inline) = self.cookie.get_mut(..text.len()) {
            inline.copy_from_slice(text.as_bytes());
            self.cookie_len = text.len() as u8;
        } else {
            // Not reachable through `inline_text`; nothing is kept rather than a part.
            self.cookie_len = NO_COOKIE;
        }
    }
}

/// A cookie text rebuilt from an entry: bytes and length.
struct InlineText([u8; INLINE_TEXT], usize);

impl InlineText {
    fn as_str(&self) -> &str {
        // Only plain ASCII is ever kept inline (see `inline_text`).
        std::str::from_utf8(&self.0[..self.1]).unwrap_or_default()
    }
}

/// The text of a `{"cookie":"..."}` body if it can be kept inline, so that writing it back
/// gives the same bytes: at most 8 plain ASCII characters, or 16 lowercase hex digits.
fn inline_text(e: &Echo) -> Option<&str> {
    let inner = e
        .as_json()
        .strip_prefix("{\"cookie\":\"")
        .and_then(|r| r.strip_suffix("\"}"))?;
    let plain = inner
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let hex = inner.len() == INLINE_TEXT
        && inner
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ((plain && inner.len() <= INLINE_COOKIE) || hex).then_some(inner)
}

/// A bounded map of remote addresses; the least recently heard are forgotten first. It also
/// tracks addresses that keep leaving our requests unanswered (gone nodes that other nodes'
/// tables still list), so that lookups stop waiting for them.
///
/// The entries are one list sorted by address, found by binary search: 32 bytes each, no
/// hash-table slack, and pruning works in place instead of rebuilding a table.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    entries: Vec<(PackedAddr, PeerInfo)>,
    /// Cookies too long or too unusual to keep inline (rare: other implementations).
    raw_cookies: Map<PackedAddr, Box<str>>,
    cap: usize,
    /// Unanswered requests in a row and when the last one expired (tenths of a second).
    silent: Map<PackedAddr, (u8, u32)>,
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
            entries: Vec::new(),
            raw_cookies: Map::default(),
            cap: cap.max(16),
            silent: Map::default(),
        }
    }

    fn find(&self, key: &PackedAddr) -> Result<usize, usize> {
        self.entries.binary_search_by(|(a, _)| a.cmp(key))
    }

    fn entry(&self, key: &PackedAddr) -> Option<&PeerInfo> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        self.entry(&PackedAddr::new(addr))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The cookie `addr` asked us to return, as it must be echoed.
    pub fn their_cookie(&self, addr: &SocketAddr) -> Option<Echo> {
        self.get_with_cookie(addr).1
    }

    /// The entry for `addr` and its cookie, found with one look-up (for every request sent).
    pub fn get_with_cookie(&self, addr: &SocketAddr) -> (Option<PeerInfo>, Option<Echo>) {
        let key = PackedAddr::new(addr);
        let Some(info) = self.entry(&key) else {
            return (None, None);
        };
        let cookie = match info.cookie_len {
            NO_COOKIE => None,
            RAW_COOKIE => self.raw_cookies.get(&key).map(|raw| Echo::raw(raw)),
            _ => info.inline_cookie().map(|t| Echo::cookie(t.as_str())),
        };
        (Some(*info), cookie)
    }

    /// Stores the cookie `addr` asked us to return (its entry must exist: see
    /// [`PeerBook::heard`]); returns whether it differs from the one stored.
    pub fn set_their_cookie(&mut self, addr: &SocketAddr, e: &Echo) -> bool {
        let key = PackedAddr::new(addr);
        let Ok(at) = self.find(&key) else {
            return false;
        };
        let info = &mut self.entries[at].1;
        if let Some(text) = inline_text(e) {
            if info.inline_cookie().is_some_and(|t| t.as_str() == text) {
                return false;
            }
            info.set_inline_cookie(text);
            self.raw_cookies.remove(&key);
            return true;
        }
        if info.cookie_len == RAW_COOKIE
            && self.raw_cookies.get(&key).map(|r| &**r) == Some(e.as_json())
        {
            return false;
        }
        info.cookie_len = RAW_COOKIE;
        self.raw_cookies.insert(key, e.as_json().into());
        true
    }

    /// Gives back memory a burst left reserved, and forgets silent addresses whose time ran
    /// out.
    pub fn shrink(&mut self, now: Time) {
        crate::slack::shrink_vec(&mut self.entries);
        crate::slack::shrink_map(&mut self.raw_cookies);
        let now = deciseconds(now);
        self.silent
            .retain(|_, (_, at)| now.wrapping_sub(*at) < SILENT_FOR_DS);
        crate::slack::shrink_map(&mut self.silent);
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
                self.entries.insert(at, (key, PeerInfo::default()));
                at
            }
        };
        let p = &mut self.entries[at].1;
        p.heard_ds = deciseconds(now).to_le_bytes();
        p
    }

    /// Forgets the least recently heard quarter (ties broken by address, so the outcome does
    /// not depend on hash order): a busy node meeting new addresses all the time prunes once
    /// per 56 of them.
    fn prune(&mut self) {
        let mut ages: Vec<(u32, PackedAddr)> = self
            .entries
            .iter()
            .map(|(a, p)| (p.heard_ds(), *a))
            .collect();
        let drop = (ages.len() / 4).max(1);
        // Addresses are unique, so (heard, address) orders entries totally: the `drop`
        // smallest are those up to the pivot.
        let (_, pivot, _) = ages.select_nth_unstable(drop - 1);
        let pivot = *pivot;
        let raw = &mut self.raw_cookies;
        self.entries.retain(|(a, p)| {
            let keep = (p.heard_ds(), *a) > pivot;
            if !keep && !raw.is_empty() {
                raw.remove(a);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_compact() {
        assert_eq!(std::mem::size_of::<(PackedAddr, PeerInfo)>(), 32);
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
                book.heard(a, Time::from_millis(u64::from(ds) * 100));
                let kept: Vec<(PackedAddr, u32)> =
                    book.entries.iter().map(|(a, p)| (*a, p.heard_ds())).collect();
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
