//! Engine configuration: every tunable with its default.

use crate::lookup::LookupConfig;
use crate::ratelimit::RateLimitConfig;
use crate::records::RecordConfig;
use crate::table::TableConfig;
use std::time::Duration;

/// Everything the engine can be tuned with. `Config::default()` is what a public node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Routing-table parameters (k, caps, spares).
    pub table: TableConfig,
    /// Lookup parameters (alpha, timeouts, deadline).
    pub lookup: LookupConfig,
    /// Limits of the records this node keeps for announcers (TTL, quotas).
    pub records: RecordConfig,
    /// How often our own announcements are repeated (before the records' TTL runs out).
    pub reannounce: Duration,
    /// A bucket with no activity for this long is refreshed by a lookup of a random ID in it.
    pub refresh_interval: Duration,
    /// Longest wait between self-lookups (they start 1 s apart after joining and double).
    pub bootstrap_retry: Duration,
    /// How often the cookie secret rotates (the previous one stays valid for one period).
    pub cookie_rotation: Duration,
    /// Period of the maintenance tick (refresh checks, liveness pings, pruning).
    pub tick: Duration,
    /// A contact not heard from for this long gets a liveness ping.
    pub ping_interval: Duration,
    /// A newcomer to a full bucket gets the bucket's least recently seen contact an
    /// eviction check only when that contact has been silent this long (a bucket all heard
    /// from lately has nobody to evict: the newcomer waits as a spare).
    pub evict_check_after: Duration,
    /// Timeout of a request to a peer with no RTT measured yet (doubled before giving up).
    pub initial_timeout: Duration,
    /// Most candidate addresses waiting to be pinged.
    pub max_candidates: usize,
    /// Most pings (candidate checks, liveness, evictions) in flight.
    pub max_pings_in_flight: usize,
    /// Most requests of any kind in flight.
    pub max_requests_in_flight: usize,
    /// Most remote addresses outside the routing table whose cookie and state are
    /// remembered (32 bytes each, 2 KB). A contact keeps its own in the table for as long
    /// as it stays there, however large the table grows.
    pub max_peer_book: usize,
    /// Most lookups running at once (maintenance lookups included).
    pub max_lookups: usize,
    /// Size first-contact requests are padded to, so a full answer fits the amplification
    /// limit of a peer that has not verified us yet (0 = no padding).
    pub first_contact_padding: usize,
    /// A short-lived client (e.g. `telekad lookup`): it answers no request, so it never
    /// echoes another node's ping and is never put in anyone's routing table.
    pub read_only: bool,
    /// Reports of our address needed (from distinct IPs, and a majority of the recent ones)
    /// before a new public address is adopted.
    pub address_quorum: usize,
    /// Rate limits on requests: per source IP (IPv6: per /64) and for the whole node. Every
    /// datagram that asks for an answer is charged before it is answered; answers to our own
    /// requests never are. Defaults (500/s per source, burst 1,000; 50,000/s globally, burst
    /// 10,000) and why: [`RateLimitConfig`]. `RateLimitConfig::unlimited()` turns them off.
    pub rate_limit: RateLimitConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table: TableConfig::default(),
            lookup: LookupConfig::default(),
            records: RecordConfig::default(),
            reannounce: Duration::from_secs(15 * 60),
            refresh_interval: Duration::from_secs(15 * 60),
            bootstrap_retry: Duration::from_secs(5 * 60),
            cookie_rotation: Duration::from_secs(10 * 60),
            tick: Duration::from_secs(1),
            ping_interval: Duration::from_secs(10 * 60),
            evict_check_after: Duration::from_secs(60),
            initial_timeout: Duration::from_millis(1000),
            max_candidates: 512,
            max_pings_in_flight: 32,
            max_requests_in_flight: 1024,
            max_peer_book: 64,
            max_lookups: 64,
            first_contact_padding: 640,
            address_quorum: 3,
            read_only: false,
            rate_limit: RateLimitConfig::default(),
        }
    }
}
