//! Rate limits on requests: token buckets per source (an IPv4 address or an IPv6 /64) and
//! one for the whole node, on the engine's clock.
//!
//! A [`TokenBucket`] holds up to `burst` tokens and gains `rate` tokens per second; a
//! request takes one. Credit is kept in millionths of a token, so that with the engine's
//! microsecond clock a bucket gains exactly `rate` units per microsecond: no rounding, and
//! over any window of `t` seconds a bucket grants at most `burst + rate × t` requests.
//!
//! [`PerSource`] keeps one bucket per source in a table of bounded size, whatever the
//! number of (possibly spoofed) sources: a bucket that has filled up again is worth nothing
//! (a new one starts full), so a new source takes the slot of such a bucket when it finds
//! one among a few looked at, and they are swept out once a second; when the table is full
//! of sources in debt, a newcomer takes the place of the one with the most credit among
//! those looked at, so a source deep in debt is the last to be forgotten.
//!
//! [`RateLimiter`] puts together what the engine charges: one per-source table for
//! requests, one for block requests of cookie-verified downloaders, and a global bucket
//! for requests. Where in the packet handling it is charged: `src/engine/incoming.rs`.

use crate::hashing::Map;
use crate::time::Time;
use std::net::IpAddr;
use std::time::Duration;

/// Credit units per token: a bucket with rate `r` gains `r` units per microsecond.
pub const UNITS_PER_TOKEN: u64 = 1_000_000;

/// Entries looked at to pick one to evict when a [`PerSource`] table is full.
const EVICTION_SAMPLE: usize = 8;

/// Most sources a [`PerSource`] table finds by scanning its slots; a larger table keeps a
/// hash index beside them. Nodes mostly hold a handful of sources at once (a joining node's
/// peers, one by one); the index cost a node among 1,000 joining together about 0.6 KB at
/// its peak.
const SCAN_LIMIT: usize = 32;

/// How often a [`PerSource`] table sweeps out its full buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A rate and a burst. A rate of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens gained per second (0: unlimited).
    pub rate: u32,
    /// Most tokens held (a burst of 0 is taken as 1).
    pub burst: u32,
}

impl Limit {
    /// No limit at all.
    pub const UNLIMITED: Limit = Limit { rate: 0, burst: 0 };

    /// `rate` per second with room for `burst` at once.
    pub const fn new(rate: u32, burst: u32) -> Limit {
        Limit { rate, burst }
    }

    /// Whether this limit lets everything through.
    pub const fn is_unlimited(self) -> bool {
        self.rate == 0
    }

    /// The most credit a bucket holds, in units.
    fn cap(self) -> u64 {
        u64::from(self.burst.max(1)) * UNITS_PER_TOKEN
    }
}

/// A token bucket. It does not store its [`Limit`]: every call is given it, so that a table
/// of buckets sharing one limit stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Credit in units (millionths of a token) as of `last`.
    credit: u64,
    /// When `credit` was last brought up to date.
    last: Time,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(limit: Limit, now: Time) -> TokenBucket {
        TokenBucket {
            credit: limit.cap(),
            last: now,
        }
    }

    /// The credit at `now`, in units, without changing the bucket. A time before the last
    /// update adds nothing.
    pub fn credit_at(&self, limit: Limit, now: Time) -> u64 {
        let elapsed = now.as_micros().saturating_sub(self.last.as_micros());
        self.credit
            .saturating_add(elapsed.saturating_mul(u64::from(limit.rate)))
            .min(limit.cap())
    }

    /// Whether a request at `now` would be granted.
    pub fn has_token(&self, limit: Limit, now: Time) -> bool {
        limit.is_unlimited() || self.credit_at(limit, now) >= UNITS_PER_TOKEN
    }

    /// Whether the bucket is full at `now` (it then holds nothing a new bucket would not).
    pub fn is_full(&self, limit: Limit, now: Time) -> bool {
        self.credit_at(limit, now) >= limit.cap()
    }

    /// Takes a token at `now` if there is one; returns whether it did.
    ///
    /// Time is expected not to go back; if it does, the bucket is brought up to date at the
    /// earlier time without gaining credit.
    pub fn try_take(&mut self, limit: Limit, now: Time) -> bool {
        if limit.is_unlimited() {
            return true;
        }
        self.credit = self.credit_at(limit, now);
        self.last = now;
        if self.credit >= UNITS_PER_TOKEN {
            self.credit -= UNITS_PER_TOKEN;
            true
        } else {
            false
        }
    }
}

/// Whom a per-source bucket belongs to: an IPv4 address, or the /64 of an IPv6 address
/// (one host usually holds a whole /64). An IPv4-mapped IPv6 address is its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl SourceKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    key: SourceKey,
    bucket: TokenBucket,
}

/// One token bucket per source, at most `max_entries` of them.
#[derive(Debug, Clone)]
pub struct PerSource {
    limit: Limit,
    max_entries: usize,
    slots: Vec<Slot>,
    /// Where each source's slot is, once there are more than [`SCAN_LIMIT`] (empty, and
    /// holding no memory, until then).
    index: Map<SourceKey, usize>,
    /// Where the next eviction starts looking.
    hand: usize,
    next_sweep: Time,
    evictions: u64,
}

impl PerSource {
    /// A table of buckets with `limit`, holding at most `max_entries` (at least 1).
    pub fn new(limit: Limit, max_entries: usize) -> PerSource {
        PerSource {
            limit,
            max_entries: max_entries.max(1),
            slots: Vec::new(),
            index: Map::default(),
            hand: 0,
            next_sweep: Time::ZERO,
            evictions: 0,
        }
    }

    /// The limit every bucket has.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Sources with a bucket now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no source has a bucket.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sources forgotten while still in debt because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Whether `key` has a bucket now.
    pub fn contains(&self, key: SourceKey) -> bool {
        self.position(key).is_some()
    }

    /// The slot of `key`, if it has one.
    fn position(&self, key: SourceKey) -> Option<usize> {
        if self.slots.len() > SCAN_LIMIT {
            self.index.get(&key).copied()
        } else {
            self.slots.iter().position(|s| s.key == key)
        }
    }

    /// Indexes every slot once the table is past [`SCAN_LIMIT`], and lets go of the index
    /// once it is back within it.
    fn reindex(&mut self) {
        if self.slots.len() > SCAN_LIMIT {
            self.index.clear();
            self.index
                .extend(self.slots.iter().enumerate().map(|(i, s)| (s.key, i)));
            if self.index.capacity() > 4 * self.index.len() + 32 {
                self.index.shrink_to(2 * self.index.len());
            }
        } else {
            self.index = Map::default();
        }
    }

    /// Whether a request from `key` at `now` would be granted (nothing changes).
    pub fn has_token(&self, key: SourceKey, now: Time) -> bool {
        self.limit.is_unlimited()
            || self
                .position(key)
                .is_none_or(|i| self.slots[i].bucket.has_token(self.limit, now))
    }

    /// Charges one request from `key` at `now`; returns whether it is granted.
    pub fn try_take(&mut self, key: SourceKey, now: Time) -> bool {
        if self.limit.is_unlimited() {
            return true;
        }
        if now >= self.next_sweep {
            self.sweep(now);
        }
        let i = match self.position(key) {
            Some(i) => i,
            None => self.insert(key, now),
        };
        self.slots[i].bucket.try_take(self.limit, now)
    }

    /// A new full bucket for `key`; returns its slot. A slot among the next few whose
    /// bucket has filled up again is reused first, so the table holds about as many
    /// sources as are in debt; a full table gives up the most credited of those looked at.
    fn insert(&mut self, key: SourceKey, now: Time) -> usize {
        let bucket = TokenBucket::full(self.limit, now);
        let n = self.slots.len();
        if n > 0 {
            let best = (0..EVICTION_SAMPLE.min(n))
                .map(|d| (self.hand + d) % n)
                .max_by_key(|&i| {
                    (
                        self.slots[i].bucket.credit_at(self.limit, now),
                        std::cmp::Reverse(i),
                    )
                })
                .unwrap_or(0);
            let reusable = self.slots[best].bucket.is_full(self.limit, now);
            if reusable || n >= self.max_entries {
                self.hand = (best + 1) % n;
                if !reusable {
                    self.evictions += 1;
                }
                if n > SCAN_LIMIT {
                    self.index.remove(&self.slots[best].key);
                    self.index.insert(key, best);
                }
                self.slots[best] = Slot { key, bucket };
                return best;
            }
            self.hand = (self.hand + EVICTION_SAMPLE) % n;
        }
        self.slots.push(Slot { key, bucket });
        if n == SCAN_LIMIT {
            self.reindex();
        } else if n > SCAN_LIMIT {
            self.index.insert(key, n);
        }
        n
    }

    /// Forgets every bucket that is full at `now`, and gives back memory held since a busier
    /// time.
    pub fn sweep(&mut self, now: Time) {
        self.next_sweep = now + SWEEP_EVERY;
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].bucket.is_full(self.limit, now) {
                self.slots.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        if self.slots.capacity() > 4 * self.slots.len() + 32 {
            self.slots.shrink_to(2 * self.slots.len());
        }
        self.reindex();
    }
}

/// What the rate limits are: see `Config::rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per source (IPv4 address or IPv6 /64). Default 500/s, burst 1,000.
    ///
    /// A telekad peer sends one node a query or two per lookup that passes it (up to 4
    /// attempts when answers are lost), plus pings and refreshes: even a node running its
    /// 64 lookups at once stays around tens of requests per second to any one node, and a
    /// joining node's first burst (bootstrap, self-lookup, a refresh of every bucket) is a
    /// few hundred. 500/s leaves room for a few dozen nodes behind one NAT address, while
    /// one source can take no more than about 1/300 of what the node answers on one core
    /// (150,000-300,000 requests/s, `benches/throughput.rs`).
    pub per_ip: Limit,
    /// Requests from all sources together, after the per-source limit. Default 50,000/s,
    /// burst 10,000: about a fifth to a third of one core, so a flood spread over many
    /// sources leaves the node time for its own lookups and for the answers they bring
    /// (answers are never charged), and a burst is at most a few tens of milliseconds of
    /// work.
    pub global: Limit,
    /// Block requests (`PleaseSendContent` of held content, alone in a datagram) from a
    /// cookie-verified source: a download in progress. They are charged here instead of to
    /// `per_ip` and `global`, since a download asks for tens of thousands of blocks a
    /// second. Default 100,000/s (about 400 MB/s of 4096-byte blocks, twice what one
    /// downloader reaches on loopback), burst 4,096 (ten times a downloader's window).
    pub blocks_per_ip: Limit,
    /// Most sources with a bucket, in each per-source table. Default 4,096. Only sources
    /// that asked something in the last few seconds hold one (full buckets are forgotten).
    pub max_sources: usize,
}

impl RateLimitConfig {
    /// No limits at all (benchmarks that flood one node from one address).
    pub const fn unlimited() -> RateLimitConfig {
        RateLimitConfig {
            per_ip: Limit::UNLIMITED,
            global: Limit::UNLIMITED,
            blocks_per_ip: Limit::UNLIMITED,
            max_sources: 4096,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_ip: Limit::new(500, 1_000),
            global: Limit::new(50_000, 10_000),
            blocks_per_ip: Limit::new(100_000, 4_096),
            max_sources: 4096,
        }
    }
}

/// What is charged for a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// A request: the source's request bucket, then the global bucket.
    Request,
    /// A block request of a verified downloader: the source's block bucket only.
    Block,
}

/// Whether a request may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// The source's bucket is empty.
    LimitedIp,
    /// The global bucket is empty.
    LimitedGlobal,
}

/// The engine's rate limits.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    requests: PerSource,
    blocks: PerSource,
    global_limit: Limit,
    global: TokenBucket,
}

impl RateLimiter {
    /// Limits as `cfg` describes them, every bucket full at `now`.
    pub fn new(cfg: &RateLimitConfig, now: Time) -> RateLimiter {
        RateLimiter {
            requests: PerSource::new(cfg.per_ip, cfg.max_sources),
            blocks: PerSource::new(cfg.blocks_per_ip, cfg.max_sources),
            global_limit: cfg.global,
            global: TokenBucket::full(cfg.global, now),
        }
    }

    /// Charges one datagram from `ip` at `now`. Nothing is taken from any bucket unless the
    /// verdict is [`Verdict::Allowed`].
    pub fn check(&mut self, now: Time, ip: IpAddr, charge: Charge) -> Verdict {
        let key = SourceKey::of(ip);
        match charge {
            Charge::Block => {
                if self.blocks.try_take(key, now) {
                    Verdict::Allowed
                } else {
                    Verdict::LimitedIp
                }
            }
            Charge::Request => {
                if !self.requests.has_token(key, now) {
                    Verdict::LimitedIp
                } else if !self.global.has_token(self.global_limit, now) {
                    Verdict::LimitedGlobal
                } else {
                    self.requests.try_take(key, now);
                    self.global.try_take(self.global_limit, now);
                    Verdict::Allowed
                }
            }
        }
    }

    /// What a request from `ip` at `now` would get, without charging anything: the check the
    /// engine makes before decoding a datagram. A source that asked for blocks recently is
    /// always let through to be decoded (its datagram may be a block request).
    pub fn peek(&self, now: Time, ip: IpAddr) -> Verdict {
        let key = SourceKey::of(ip);
        if self.blocks.contains(key) {
            Verdict::Allowed
        } else if !self.requests.has_token(key, now) {
            Verdict::LimitedIp
        } else if !self.global.has_token(self.global_limit, now) {
            Verdict::LimitedGlobal
        } else {
            Verdict::Allowed
        }
    }

    /// Sources holding a request bucket now.
    pub fn sources(&self) -> usize {
        self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn bucket_grants_burst_then_rate() {
        let l = Limit::new(10, 5);
        let mut b = TokenBucket::full(l, Time::ZERO);
        assert_eq!((0..20).filter(|_| b.try_take(l, Time::ZERO)).count(), 5);
        // 10/s: one token every 100 ms.
        assert!(!b.try_take(l, ms(99)));
        assert!(b.try_take(l, ms(100)));
        assert!(!b.try_take(l, ms(100)));
        // Refills up to the burst only.
        assert!(b.is_full(l, ms(10_000)));
        assert_eq!(
            (0..20).filter(|_| b.try_take(l, ms(10_000))).count(),
            5,
            "never more than the burst at once"
        );
    }

    #[test]
    fn unlimited_and_zero_burst() {
        let mut b = TokenBucket::full(Limit::UNLIMITED, Time::ZERO);
        assert!((0..10_000).all(|_| b.try_take(Limit::UNLIMITED, Time::ZERO)));
        let l = Limit::new(1, 0);
        let mut b = TokenBucket::full(l, Time::ZERO);
        assert!(b.try_take(l, Time::ZERO), "a burst of 0 is taken as 1");
        assert!(!b.try_take(l, Time::ZERO));
    }

    #[test]
    fn time_going_back_adds_nothing() {
        let l = Limit::new(1000, 1);
        let mut b = TokenBucket::full(l, ms(50));
        assert!(b.try_take(l, ms(50)));
        assert!(!b.try_take(l, ms(10)));
        assert!(!b.try_take(l, ms(10)));
        assert!(b.try_take(l, ms(11)));
    }

    #[test]
    fn huge_times_saturate() {
        let l = Limit::new(u32::MAX, u32::MAX);
        let mut b = TokenBucket::full(l, Time::ZERO);
        assert!(b.try_take(l, Time::from_micros(u64::MAX)));
        assert!(b.is_full(Limit::new(1, 1), Time::from_micros(u64::MAX)));
    }

    #[test]
    fn ipv6_sources_are_keyed_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(
            SourceKey::of(mapped),
            SourceKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_ne!(
            SourceKey::of(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            SourceKey::of(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1)))
        );
    }

    #[test]
    fn sources_do_not_share_a_bucket() {
        let mut t = PerSource::new(Limit::new(1, 2), 16);
        let a = SourceKey::V4(1);
        let b = SourceKey::V4(2);
        assert!(t.try_take(a, Time::ZERO) && t.try_take(a, Time::ZERO));
        assert!(!t.try_take(a, Time::ZERO));
        assert!(!t.has_token(a, Time::ZERO));
        assert!(t.has_token(b, Time::ZERO));
        assert!(t.try_take(b, Time::ZERO));
    }

    #[test]
    fn full_buckets_are_swept_and_memory_given_back() {
        let mut t = PerSource::new(Limit::new(100, 10), 100_000);
        for i in 0..50_000u32 {
            t.try_take(SourceKey::V4(i), Time::ZERO);
        }
        assert_eq!(t.len(), 50_000);
        // 100/s refills one token in 10 ms; a second later all are full and swept.
        t.try_take(SourceKey::V4(u32::MAX), ms(1_000));
        assert_eq!(t.len(), 1);
        assert!(t.slots.capacity() < 100 && t.index.capacity() < 100);
    }

    #[test]
    fn refilled_slots_are_reused_before_the_table_grows() {
        // One request from each of 10,000 sources, one every millisecond: each bucket is
        // full again 2 ms later, so its slot is reused.
        let mut t = PerSource::new(Limit::new(500, 1000), 4096);
        for i in 0..10_000u32 {
            assert!(t.try_take(SourceKey::V4(i), ms(u64::from(i))));
            assert!(t.len() <= 2 * EVICTION_SAMPLE, "{} sources held", t.len());
        }
        assert_eq!(t.evictions(), 0);
    }

    #[test]
    fn a_full_table_forgets_the_most_credited_first() {
        let l = Limit::new(1, 100);
        let mut t = PerSource::new(l, 8);
        // The flooder drains its bucket.
        let flooder = SourceKey::V4(999);
        while t.try_take(flooder, Time::ZERO) {}
        // Spoofed sources, one request each, many more than the table holds.
        for i in 0..10_000u32 {
            t.try_take(SourceKey::V4(i), Time::ZERO);
            assert!(t.len() <= 8);
        }
        assert!(t.contains(flooder), "the source in debt stays");
        assert!(!t.try_take(flooder, Time::ZERO));
        assert!(t.evictions() > 0);
    }

    #[test]
    fn limiter_charges_nothing_when_refused() {
        let cfg = RateLimitConfig {
            per_ip: Limit::new(1, 3),
            global: Limit::new(1, 4),
            blocks_per_ip: Limit::new(1, 2),
            max_sources: 16,
        };
        let mut r = RateLimiter::new(&cfg, Time::ZERO);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        let v: Vec<Verdict> = (0..4)
            .map(|_| r.check(Time::ZERO, a, Charge::Request))
            .collect();
        assert_eq!(v[..3], [Verdict::Allowed; 3]);
        assert_eq!(v[3], Verdict::LimitedIp);
        assert_eq!(r.peek(Time::ZERO, a), Verdict::LimitedIp);
        // One global token left.
        assert_eq!(r.check(Time::ZERO, b, Charge::Request), Verdict::Allowed);
        assert_eq!(r.peek(Time::ZERO, c), Verdict::LimitedGlobal);
        assert_eq!(
            r.check(Time::ZERO, c, Charge::Request),
            Verdict::LimitedGlobal
        );
        // Refused globally: c's own bucket was not charged.
        assert!(r.requests.has_token(SourceKey::of(c), Time::ZERO));
        // Blocks are charged apart and not globally.
        assert_eq!(r.check(Time::ZERO, a, Charge::Block), Verdict::Allowed);
        assert_eq!(r.check(Time::ZERO, a, Charge::Block), Verdict::Allowed);
        assert_eq!(r.check(Time::ZERO, a, Charge::Block), Verdict::LimitedIp);
        // A recent block asker is always decoded.
        assert_eq!(r.peek(Time::ZERO, a), Verdict::Allowed);
    }

    #[test]
    fn unlimited_config_lets_everything_through() {
        let mut r = RateLimiter::new(&RateLimitConfig::unlimited(), Time::ZERO);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..100_000 {
            assert_eq!(r.check(Time::ZERO, a, Charge::Request), Verdict::Allowed);
        }
        assert_eq!(r.sources(), 0, "no table is kept when there is no limit");
    }

    proptest! {
        /// Over every window, a source is granted at most burst + rate × window, unless the
        /// table, full, forgot it while it was in debt; the table never holds more than its
        /// bound. Time moves forward (as the driver's clock does). Up to 64 sources, so that
        /// tables are both scanned and indexed (past `SCAN_LIMIT`).
        #[test]
        fn never_more_than_burst_plus_rate_times_t(
            rate in 1u32..5_000,
            burst in 1u32..50,
            max in 1usize..80,
            steps in proptest::collection::vec((0u8..64, 0u64..3_000), 1..400),
        ) {
            let l = Limit::new(rate, burst);
            let mut t = PerSource::new(l, max);
            let mut now = 0u64;
            let mut granted: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
            // Sources forgotten while in debt: they may start afresh, so are not checked.
            let mut forgotten_in_debt: BTreeSet<u8> = BTreeSet::new();
            for (src, dt) in steps {
                now += dt;
                let at = Time::from_micros(now);
                let in_debt: Vec<u8> = (0u8..64)
                    .filter(|s| {
                        t.position(SourceKey::V4(u32::from(*s)))
                            .is_some_and(|i| !t.slots[i].bucket.is_full(l, at))
                    })
                    .collect();
                if t.try_take(SourceKey::V4(u32::from(src)), at) {
                    granted.entry(src).or_default().push(now);
                }
                for s in in_debt {
                    if !t.contains(SourceKey::V4(u32::from(s))) {
                        forgotten_in_debt.insert(s);
                    }
                }
                prop_assert!(t.len() <= max);
                if t.slots.len() > SCAN_LIMIT {
                    prop_assert_eq!(t.index.len(), t.slots.len());
                    for (i, slot) in t.slots.iter().enumerate() {
                        prop_assert_eq!(t.index.get(&slot.key), Some(&i));
                    }
                } else {
                    prop_assert_eq!(t.index.capacity(), 0, "no index while scanning");
                }
                for (i, slot) in t.slots.iter().enumerate() {
                    prop_assert_eq!(t.position(slot.key), Some(i));
                }
            }
            if max >= 64 {
                prop_assert!(forgotten_in_debt.is_empty(), "room for all, none forgotten");
            }
            for (src, times) in &granted {
                if forgotten_in_debt.contains(src) {
                    continue;
                }
                for i in 0..times.len() {
                    for j in i..times.len() {
                        let n = (j - i + 1) as u64;
                        let window = times[j] - times[i];
                        prop_assert!(
                            n * UNITS_PER_TOKEN
                                <= u64::from(burst) * UNITS_PER_TOKEN
                                    + u64::from(rate) * window,
                            "{} granted in {} us at {}/s, burst {}", n, window, rate, burst
                        );
                    }
                }
            }
        }

        /// With room for every source, nothing is evicted and the bound always holds; the
        /// limiter's request verdicts follow the same bound and the global one.
        #[test]
        fn limiter_respects_both_buckets(
            per in 1u32..2_000,
            per_burst in 1u32..20,
            global in 1u32..5_000,
            global_burst in 1u32..40,
            steps in proptest::collection::vec((0u8..6, 0u64..2_000), 1..300),
        ) {
            let cfg = RateLimitConfig {
                per_ip: Limit::new(per, per_burst),
                global: Limit::new(global, global_burst),
                blocks_per_ip: Limit::UNLIMITED,
                max_sources: 64,
            };
            let mut r = RateLimiter::new(&cfg, Time::ZERO);
            let mut now = 0u64;
            let mut all: Vec<u64> = Vec::new();
            let mut per_src: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
            for (src, dt) in steps {
                now += dt;
                let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, src));
                if r.check(Time::from_micros(now), ip, Charge::Request) == Verdict::Allowed {
                    all.push(now);
                    per_src.entry(src).or_default().push(now);
                }
            }
            let bound = |times: &[u64], rate: u32, burst: u32| {
                (0..times.len()).all(|i| (i..times.len()).all(|j| {
                    (j - i + 1) as u64 * UNITS_PER_TOKEN
                        <= u64::from(burst) * UNITS_PER_TOKEN
                            + u64::from(rate) * (times[j] - times[i])
                }))
            };
            prop_assert!(bound(&all, global, global_burst));
            for times in per_src.values() {
                prop_assert!(bound(times, per, per_burst));
            }
        }
    }
}
