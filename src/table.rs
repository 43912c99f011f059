//! The routing table: k-buckets by common-prefix length, diversity caps, replacement caches.

use crate::addr::PackedAddr;
use crate::id::NodeId;
use crate::peer_info::PeerInfo;
use crate::time::Time;
use std::net::SocketAddr;
use std::time::Duration;

/// The longest round-trip time a contact keeps (2^24 - 1 microseconds, 16.8 s; a lookup
/// gives up on an answer after 2 s by default): a longer one is kept as this.
pub const MAX_RTT: Duration = Duration::from_micros((1 << 24) - 1);

/// A verified contact: an address that answered us, what we measured about it, and its
/// cookie and flags. It costs 48 bytes: its address packed, times to the tenth of a second,
/// its round-trip time in 3 bytes, and of its ID (SHA-256 of the address, see
/// [`Contact::id`]) only the first 64 bits, which order contacts by distance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The first 64 bits of its ID.
    key: u64,
    /// The address that answered (see [`Contact::addr`]).
    addr: PackedAddr,
    /// Smoothed round-trip time in microseconds, little-endian in 24 bits, 0 until measured
    /// (see [`Contact::rtt`]).
    rtt_us: [u8; 3],
    /// When it last answered, in tenths of a second (see [`Contact::last_seen`]).
    last_seen_ds: u32,
    /// When it first entered the table, in tenths of a second.
    first_seen_ds: u32,
    /// Requests it failed to answer since it last answered.
    pub failures: u8,
    /// Its cookie and flags (kept here rather than in the engine's bounded peer book, so
    /// that no contact's cookie is ever forgotten while it is in the table).
    peer: PeerInfo,
}

impl Contact {
    /// A contact first seen at `now`.
    pub fn new(addr: SocketAddr, now: Time) -> Contact {
        let addr = crate::addr::canonical(addr);
        Contact {
            addr: PackedAddr::new(&addr),
            key: NodeId::of_addr(addr).prefix(),
            rtt_us: [0; 3],
            last_seen_ds: now.as_deciseconds(),
            first_seen_ds: now.as_deciseconds(),
            failures: 0,
            peer: PeerInfo::default(),
        }
    }

    /// The address that answered, in canonical form.
    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Its ID: SHA-256 of its address (hashed again, or found in the per-thread cache).
    pub fn id(&self) -> NodeId {
        NodeId::of_addr(self.addr())
    }

    /// When it last answered, to the tenth of a second below (kept in 4 bytes: wraps
    /// after 13 years of uptime).
    pub fn last_seen(&self) -> Time {
        Time::from_deciseconds(self.last_seen_ds)
    }

    /// When it first entered the table, to the tenth of a second below.
    pub fn first_seen(&self) -> Time {
        Time::from_deciseconds(self.first_seen_ds)
    }

    /// What is kept about it (cookie, flags): default until the engine moves it here.
    pub(crate) fn peer_info(&self) -> &PeerInfo {
        &self.peer
    }

    /// Smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        let [a, b, c] = self.rtt_us;
        let us = u32::from_le_bytes([a, b, c, 0]);
        (us != 0).then(|| Duration::from_micros(u64::from(us)))
    }

    /// Sets the smoothed round-trip time (kept to the microsecond, at least 1 us and at
    /// most [`MAX_RTT`]).
    pub fn set_rtt(&mut self, rtt: Option<Duration>) {
        let us = rtt.map_or(0, |d| d.as_micros().clamp(1, MAX_RTT.as_micros()) as u32);
        let [a, b, c, _] = us.to_le_bytes();
        self.rtt_us = [a, b, c];
    }

    fn observe(&mut self, now: Time, rtt: Option<Duration>) {
        self.last_seen_ds = now.as_deciseconds();
        self.failures = 0;
        if let Some(sample) = rtt {
            self.set_rtt(Some(match self.rtt() {
                // RFC 6298 smoothing, 1/8 gain.
                Some(s) => (s * 7 + sample) / 8,
                None => sample,
            }));
        }
    }
}

/// Routing-table parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Contacts per bucket.
    pub k: usize,
    /// Verified spares kept per full bucket.
    pub replacements: usize,
    /// Most contacts from one IP in the whole table (0 = no cap).
    pub max_per_ip: usize,
    /// Most contacts from one /24 (IPv4) or /48 (IPv6) in the whole table (0 = no cap).
    pub max_per_subnet: usize,
    /// Unanswered requests after which a contact with no replacement is dropped.
    pub max_failures: u8,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            k: 20,
            replacements: 4,
            max_per_ip: 2,
            max_per_subnet: 8,
            max_failures: 3,
        }
    }
}

/// What [`RoutingTable::seen`] did with a contact that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// It is new and went into its bucket.
    Added,
    /// It was there and moved to the most-recently-seen end.
    Refreshed,
    /// Its bucket is full: it waits in the replacement cache, and the caller should ping
    /// `lrs`, the least-recently-seen entry, and report the outcome.
    Full {
        /// The entry to ping before anything is evicted.
        lrs: SocketAddr,
        /// When that entry last answered.
        lrs_seen: Time,
    },
    /// A diversity cap (per IP or per subnet) keeps it out.
    Capped,
    /// It is our own ID.
    Own,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Least-recently-seen first.
    entries: Vec<Contact>,
    /// Most-recently-seen last.
    spares: Vec<Contact>,
    last_active: Time,
}

/// Pushes onto a list that never holds more than `max` (a full bucket holds exactly k
/// slots, not the next power of two).
fn push_bounded(v: &mut Vec<Contact>, c: Contact, max: usize) {
    crate::slack::make_room_for_one(v, max);
    v.push(c);
}

/// Kademlia k-buckets around one own ID.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    cfg: TableConfig,
    buckets: Vec<Bucket>,
    len: usize,
}

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: NodeId, cfg: TableConfig) -> RoutingTable {
        RoutingTable {
            own,
            cfg,
            buckets: Vec::new(),
            len: 0,
        }
    }

    /// The own ID.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Number of contacts (spares not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bucket slots in use (deepest non-empty index + 1, or more).
    pub fn depth(&self) -> usize {
        self.buckets.len()
    }

    /// The contacts of bucket `index`, least-recently-seen first.
    pub fn bucket(&self, index: usize) -> &[Contact] {
        self.buckets.get(index).map_or(&[], |b| &b.entries)
    }

    /// All contacts, by bucket index then least-recently-seen first.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// The contact at `addr`, if present.
    pub fn get(&self, addr: SocketAddr) -> Option<&Contact> {
        self.get_id(addr, &NodeId::of_addr(addr))
    }

    /// [`RoutingTable::get`] for a caller that already has the ID of `addr`.
    pub fn get_id(&self, addr: SocketAddr, id: &NodeId) -> Option<&Contact> {
        let (idx, pos) = self.locate(addr, id)?;
        Some(&self.buckets[idx].entries[pos])
    }

    /// Where the contact at `addr` (whose ID is `id`) is: its bucket and its place there.
    fn locate(&self, addr: SocketAddr, id: &NodeId) -> Option<(usize, usize)> {
        let key = PackedAddr::new(&addr);
        let idx = self.own.bucket_index(id)?;
        let pos = (self.buckets.get(idx)?.entries.iter()).position(|c| c.addr == key)?;
        Some((idx, pos))
    }

    /// What is kept about `addr` (cookie, flags) if it is a contact. Spares keep nothing
    /// here: they come and go too often, so the peer book keeps theirs.
    pub(crate) fn peer(&self, addr: SocketAddr) -> Option<&PeerInfo> {
        self.get(addr).map(|c| &c.peer)
    }

    /// [`RoutingTable::peer`], to change.
    pub(crate) fn peer_mut(&mut self, addr: SocketAddr) -> Option<&mut PeerInfo> {
        let (idx, pos) = self.locate(addr, &NodeId::of_addr(addr))?;
        Some(&mut self.buckets[idx].entries[pos].peer)
    }

    /// Whether `addr` is in the table.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.get(addr).is_some()
    }

    /// [`RoutingTable::contains`] for a caller that already has the ID of `addr`.
    pub fn contains_id(&self, addr: SocketAddr, id: &NodeId) -> bool {
        self.get_id(addr, id).is_some()
    }

    /// Whether a new contact at `addr` would go straight into its bucket (room, caps).
    pub fn admits(&self, addr: SocketAddr) -> bool {
        self.admits_id(addr, &NodeId::of_addr(addr))
    }

    /// [`RoutingTable::admits`] for a caller that already has the ID of `addr`.
    pub fn admits_id(&self, addr: SocketAddr, id: &NodeId) -> bool {
        let Some(idx) = self.own.bucket_index(id) else {
            return false;
        };
        self.bucket(idx).len() < self.cfg.k && !self.capped(addr)
    }

    fn slot(&mut self, idx: usize) -> &mut Bucket {
        if self.buckets.len() <= idx {
            // Exactly as deep as needed: a table grows a bucket at a time, a dozen times
            // at most in a network of thousands, and doubling left a node about 0.4 KB of
            // empty buckets.
            self.buckets.reserve_exact(idx + 1 - self.buckets.len());
            self.buckets.resize_with(idx + 1, Bucket::default);
        }
        &mut self.buckets[idx]
    }

    /// Whether a diversity cap keeps `addr` out. Counted over the table on demand (a few
    /// hundred compares, only when a new contact could go in) rather than kept in maps.
    fn capped(&self, addr: SocketAddr) -> bool {
        let (ip_cap, net_cap) = (self.cfg.max_per_ip, self.cfg.max_per_subnet);
        if ip_cap == 0 && net_cap == 0 {
            return false;
        }
        let key = PackedAddr::new(&crate::addr::canonical(addr));
        let (mut same_ip, mut same_net) = (0, 0);
        for c in self.contacts() {
            same_ip += usize::from(c.addr.same_ip(&key));
            same_net += usize::from(c.addr.same_subnet(&key));
        }
        (ip_cap > 0 && same_ip >= ip_cap) || (net_cap > 0 && same_net >= net_cap)
    }

    /// Records that `addr` answered us at `now` (with an RTT sample if one was measured).
    pub fn seen(&mut self, addr: SocketAddr, now: Time, rtt: Option<Duration>) -> Seen {
        let addr = crate::addr::canonical(addr);
        let key = PackedAddr::new(&addr);
        let id = NodeId::of_addr(addr);
        let Some(idx) = self.own.bucket_index(&id) else {
            return Seen::Own;
        };
        let k = self.cfg.k;
        let spares_max = self.cfg.replacements;
        let bucket = self.slot(idx);
        if let Some(pos) = bucket.entries.iter().position(|c| c.addr == key) {
            let mut c = bucket.entries.remove(pos);
            c.observe(now, rtt);
            bucket.entries.push(c);
            bucket.last_active = now;
            return Seen::Refreshed;
        }
        let spare = bucket
            .spares
            .iter()
            .position(|c| c.addr == key)
            .map(|p| bucket.spares.remove(p));
        let full = bucket.entries.len() >= k;
        if !full && self.capped(addr) {
            // A spare kept out by the caps stays a spare, now the freshest.
            if let Some(mut s) = spare {
                s.observe(now, rtt);
                push_bounded(&mut self.slot(idx).spares, s, spares_max);
            }
            return Seen::Capped;
        }
        let mut c = spare.unwrap_or_else(|| Contact::new(addr, now));
        c.observe(now, rtt);
        let bucket = self.slot(idx);
        if full {
            if spares_max > 0 {
                if bucket.spares.len() >= spares_max {
                    bucket.spares.remove(0);
                }
                push_bounded(&mut bucket.spares, c, spares_max);
            }
            return Seen::Full {
                lrs: bucket.entries[0].addr(),
                lrs_seen: bucket.entries[0].last_seen(),
            };
        }
        push_bounded(&mut bucket.entries, c, k);
        bucket.last_active = now;
        self.len += 1;
        Seen::Added
    }

    /// Records that `addr` failed to answer a request. An unresponsive contact is replaced by
    /// the freshest spare that passes the caps, or dropped after `max_failures` misses.
    /// Returns whether it left the table.
    pub fn failed(&mut self, addr: SocketAddr) -> bool {
        let Some((idx, pos)) = self.locate(addr, &NodeId::of_addr(addr)) else {
            return false;
        };
        let max_failures = self.cfg.max_failures;
        let bucket = &mut self.buckets[idx];
        let c = &mut bucket.entries[pos];
        c.failures = c.failures.saturating_add(1);
        let failures = c.failures;
        if bucket.spares.is_empty() && failures < max_failures {
            return false;
        }
        bucket.entries.remove(pos);
        self.len -= 1;
        self.promote_spare(idx);
        true
    }

    /// Moves the freshest spare of bucket `idx` that passes the caps into the bucket.
    fn promote_spare(&mut self, idx: usize) {
        let Some(bucket) = self.buckets.get(idx) else {
            return;
        };
        let pick = bucket.spares.iter().rposition(|s| !self.capped(s.addr()));
        if let Some(p) = pick {
            let bucket = &mut self.buckets[idx];
            let c = bucket.spares.remove(p);
            // Keep least-recently-seen order.
            let at = bucket
                .entries
                .iter()
                .position(|e| e.last_seen_ds > c.last_seen_ds)
                .unwrap_or(bucket.entries.len());
            bucket.entries.insert(at, c);
            self.len += 1;
        }
    }

    /// Removes `addr` (and any spare at that address). Returns whether it was a contact.
    pub fn remove(&mut self, addr: SocketAddr) -> bool {
        let addr = crate::addr::canonical(addr);
        let key = PackedAddr::new(&addr);
        let Some(idx) = self.own.bucket_index(&NodeId::of_addr(addr)) else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(idx) else {
            return false;
        };
        bucket.spares.retain(|c| c.addr != key);
        let Some(pos) = bucket.entries.iter().position(|c| c.addr == key) else {
            return false;
        };
        bucket.entries.remove(pos);
        self.len -= 1;
        self.promote_spare(idx);
        true
    }

    /// The `n` contacts closest to `target`, nearest first (ties cannot occur: IDs differ).
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<&Contact> {
        self.nearest(target, n, None)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// The addresses of the `n` contacts closest to `target`, nearest first, leaving out
    /// `except`, appended to `out` (the answer to every `WhereAreThey`: no list of contacts
    /// in between).
    pub fn closest_addrs(
        &self,
        target: &NodeId,
        n: usize,
        except: Option<SocketAddr>,
        out: &mut Vec<SocketAddr>,
    ) {
        let except = except.map(|a| PackedAddr::new(&crate::addr::canonical(a)));
        out.extend(
            self.nearest(target, n, except)
                .iter()
                .map(|(_, c)| c.addr()),
        );
    }

    /// The `n` contacts nearest to `target` (not `except`), nearest first, each with the
    /// first 64 bits of its distance.
    fn nearest<'a>(
        &'a self,
        target: &NodeId,
        n: usize,
        except: Option<PackedAddr>,
    ) -> Vec<(u64, &'a Contact)> {
        let mut keyed: Vec<(u64, &Contact)> = Vec::with_capacity(n + self.cfg.k);
        if n == 0 {
            return keyed;
        }
        let depth = self.buckets.len();
        let buckets = &self.buckets;
        let target_key = target.prefix();
        let take = |i: usize, out: &mut Vec<(u64, &'a Contact)>| {
            if let Some(b) = buckets.get(i) {
                out.extend(
                    b.entries
                        .iter()
                        .filter(|c| except != Some(c.addr))
                        .map(|c| (c.key ^ target_key, c)),
                );
            }
        };
        match self.own.bucket_index(target) {
            Some(d) => {
                // Bucket d is nearest, then every deeper bucket together, then d-1 down to 0.
                take(d, &mut keyed);
                if keyed.len() < n {
                    for i in d + 1..depth {
                        take(i, &mut keyed);
                    }
                }
                for i in (0..d.min(depth)).rev() {
                    if keyed.len() >= n {
                        break;
                    }
                    take(i, &mut keyed);
                }
            }
            None => {
                for i in (0..depth).rev() {
                    if keyed.len() >= n {
                        break;
                    }
                    take(i, &mut keyed);
                }
            }
        }
        // Ordered by the distance's first 64 bits, and by the whole distance only on a tie
        // (two IDs sharing 64 leading bits with the target: practically never).
        let full = |a: &(u64, &Contact), b: &(u64, &Contact)| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.id().distance(target).cmp(&b.1.id().distance(target)))
        };
        // Only the n nearest need ordering: select them first, then sort just those.
        if keyed.len() > n {
            keyed.select_nth_unstable_by(n - 1, full);
            keyed.truncate(n);
        }
        keyed.sort_unstable_by(full);
        keyed
    }

    /// Marks bucket `index` as active now (a lookup went through its range).
    pub fn touch(&mut self, index: usize, now: Time) {
        if index < 256 {
            self.slot(index).last_active = now;
        }
    }

    /// Indices of buckets, up to the deepest one in use, idle for at least `idle`.
    pub fn idle_buckets(&self, now: Time, idle: Duration) -> Vec<usize> {
        (0..self.buckets.len())
            .filter(|&i| now.since(self.buckets[i].last_active) >= idle)
            .collect()
    }

    /// Rebuilds the table around a new own ID (after the public address changed).
    pub fn rebuild(&mut self, own: NodeId) {
        let old: Vec<Contact> = self
            .buckets
            .drain(..)
            .flat_map(|b| b.entries.into_iter())
            .collect();
        *self = RoutingTable::new(own, self.cfg.clone());
        for c in old {
            self.seen(c.addr(), c.last_seen(), c.rtt());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_spare_that_answers_stays_a_spare() {
        let cfg = TableConfig {
            k: 2,
            replacements: 2,
            max_per_ip: 1,
            max_per_subnet: 0,
            max_failures: 3,
        };
        let own = NodeId::of_addr("127.0.0.1:1".parse().unwrap());
        let mut t = RoutingTable::new(own, cfg);
        // Addresses of bucket 0 on a given IP.
        let in_b0 = |ip: [u8; 4]| {
            (2..60_000u16)
                .map(move |p| SocketAddr::from((ip, p)))
                .filter(move |a| own.bucket_index(&NodeId::of_addr(*a)) == Some(0))
        };
        let a = in_b0([127, 0, 0, 2]).next().unwrap();
        let c = in_b0([127, 0, 0, 2]).nth(1).unwrap();
        let b = in_b0([127, 0, 0, 3]).next().unwrap();
        let ms = Time::from_millis;
        assert_eq!(t.seen(a, ms(100), None), Seen::Added);
        assert_eq!(t.seen(b, ms(200), None), Seen::Added);
        assert!(matches!(t.seen(c, ms(300), None), Seen::Full { .. }));
        // b leaves; c cannot take its place (a holds its IP's one slot).
        assert!(t.failed(b));
        assert_eq!(t.bucket(0).len(), 1);
        assert_eq!(t.buckets[0].spares.len(), 1);
        // c answers again: still capped, and still a spare.
        assert_eq!(t.seen(c, ms(400), None), Seen::Capped);
        assert_eq!(t.buckets[0].spares.len(), 1, "the spare was kept");
        assert_eq!(t.buckets[0].spares[0].last_seen(), ms(400));
        // Once a leaves, c is promoted.
        assert!(t.remove(a));
        assert!(t.contains(c));
    }

    #[test]
    fn contacts_stay_compact() {
        assert!(std::mem::size_of::<Contact>() <= 48);
        for a in ["127.0.0.1:5", "[2001:db8::1]:65535", "[::ffff:10.0.0.1]:7"] {
            let a: SocketAddr = a.parse().unwrap();
            let c = Contact::new(a, Time::ZERO);
            assert_eq!(c.addr(), crate::addr::canonical(a));
            assert_eq!(c.id(), NodeId::of_addr(c.addr()));
            assert_eq!(c.key, c.id().prefix());
        }
        let mut c = Contact::new("127.0.0.1:5".parse().unwrap(), Time::ZERO);
        assert_eq!(c.rtt(), None);
        for us in [1u64, 1_500, 250_000, 2_000_000, (1 << 24) - 1] {
            c.set_rtt(Some(Duration::from_micros(us)));
            assert_eq!(c.rtt(), Some(Duration::from_micros(us)));
        }
        c.set_rtt(Some(Duration::from_secs(3600)));
        assert_eq!(
            c.rtt(),
            Some(MAX_RTT),
            "a longer one is kept as the longest"
        );
        c.set_rtt(Some(Duration::ZERO));
        assert_eq!(c.rtt(), Some(Duration::from_micros(1)));
        c.set_rtt(None);
        assert_eq!(c.rtt(), None);
    }

    #[test]
    fn packed_comparisons_agree_with_subnet() {
        use crate::addr::subnet;
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:1",
            "127.0.0.2:1",
            "127.0.1.1:1",
            "10.0.0.1:1",
            "[::1]:1",
            "[::2]:1",
            "[2001:db8::1]:1",
            "[2001:db8:0:1::1]:1",
            "[2001:db8:1::1]:1",
            "[::ffff:127.0.0.9]:1",
        ]
        .iter()
        .map(|a| crate::addr::canonical(a.parse().unwrap()))
        .collect();
        for a in &addrs {
            for b in &addrs {
                let (pa, pb) = (PackedAddr::new(a), PackedAddr::new(b));
                assert_eq!(pa.same_ip(&pb), a.ip() == b.ip(), "{a} {b}");
                assert_eq!(
                    pa.same_subnet(&pb),
                    subnet(a.ip()) == subnet(b.ip()),
                    "{a} {b}"
                );
            }
        }
    }
}
