//! Counters: what came in, what went out, and everything dropped or skipped, by reason.

use std::collections::BTreeMap;

/// Monotonic counters kept by the engine. Everything dropped from the network is counted
/// here instead of being reported as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams handed out to send.
    pub datagrams_out: u64,
    /// Bytes handed out to send.
    pub bytes_out: u64,
    /// Messages received, by name.
    pub messages_in: BTreeMap<&'static str, u64>,
    /// Messages sent, by name.
    pub messages_out: BTreeMap<&'static str, u64>,
    /// Datagrams dropped because they were not a JSON array.
    pub dropped_not_array: u64,
    /// Datagrams dropped for size.
    pub dropped_too_large: u64,
    /// Datagrams that held no message telekad understood.
    pub dropped_empty: u64,
    /// Elements skipped: unknown message name.
    pub skipped_unknown: u64,
    /// Elements skipped: known name, bad shape.
    pub skipped_malformed: u64,
    /// Elements skipped: past the per-datagram message limit.
    pub skipped_excess: u64,
    /// Address entries skipped inside peer lists.
    pub bad_addresses: u64,
    /// `AlwaysReturned` cookies that were not ours.
    pub cookie_invalid: u64,
    /// Replies to unverified sources that had to leave something out to respect the
    /// amplification limit.
    pub replies_trimmed: u64,
    /// Datagrams asking for an answer that went unanswered because their source's token
    /// bucket (its IPv4 address or IPv6 /64, `Config::rate_limit`) was empty, block requests
    /// included. Most are dropped before being decoded.
    pub rate_limited_ip: u64,
    /// Datagrams asking for an answer that went unanswered because the node-wide request
    /// bucket was empty.
    pub rate_limited_global: u64,
    /// Answers that matched no request we sent to that address (ignored).
    pub unsolicited: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests given up.
    pub requests_timed_out: u64,
    /// Lookup queries not sent because the peer left its last requests unanswered (it is
    /// presumed gone for five minutes).
    pub lookup_skipped_silent: u64,
    /// Requests not sent because too many were in flight.
    pub requests_refused: u64,
    /// Lookups started.
    pub lookups_started: u64,
    /// Lookups finished (including those cut by the deadline).
    pub lookups_finished: u64,
    /// Lookups cut short by their deadline.
    pub lookups_timed_out: u64,
    /// Public addresses adopted.
    pub address_changes: u64,
    /// Announcements recorded (new or refreshed).
    pub announcements_stored: u64,
    /// Announcements refused: the sender had not returned our cookie.
    pub announcements_unverified: u64,
    /// Announcements refused by a quota (per IP).
    pub announcements_refused: u64,
    /// `Content` blocks served.
    pub content_blocks_served: u64,
    /// Content bytes served.
    pub content_bytes_served: u64,
    /// Requests for held content at an offset past its end.
    pub content_bad_requests: u64,
    /// `Content` blocks received that a download accepted.
    pub content_blocks_received: u64,
    /// `Content` blocks received that no download asked for (ignored).
    pub content_unsolicited: u64,
    /// Downloads started.
    pub downloads_started: u64,
    /// Downloads verified and finished.
    pub downloads_finished: u64,
    /// Downloads that failed (no holder, holders silent, verification, storage).
    pub downloads_failed: u64,
    /// Holders dropped for sending data that did not verify.
    pub bad_holders: u64,
}

impl Stats {
    pub(crate) fn count_in(&mut self, name: &'static str) {
        *self.messages_in.entry(name).or_insert(0) += 1;
    }

    pub(crate) fn count_out(&mut self, name: &'static str) {
        *self.messages_out.entry(name).or_insert(0) += 1;
    }

    /// Every element or datagram dropped or skipped as malformed, oversized or not
    /// understood, all those reasons together (datagrams refused by the rate limits are
    /// counted apart: `rate_limited_ip`, `rate_limited_global`).
    pub fn total_skipped(&self) -> u64 {
        self.dropped_not_array
            + self.dropped_too_large
            + self.dropped_empty
            + self.skipped_unknown
            + self.skipped_malformed
            + self.skipped_excess
    }
}

/// Upper bounds, in seconds, of the buckets of [`LookupLog::latency`] (a last bucket, +Inf,
/// takes the rest).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Durations counted in the fixed buckets of [`LATENCY_BUCKETS`] (Prometheus style).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is +Inf.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observations, seconds.
    sum: f64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
    }

    /// `(upper bound in seconds, observations at most that long)` for every bucket, the
    /// last bound being `f64::INFINITY` (cumulative, as Prometheus writes them).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds
            .zip(self.counts)
            .map(|(b, c)| {
                total += c;
                (b, total)
            })
            .collect()
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the observations, seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum
    }
}

/// One finished lookup that was asked through a node's handle.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentLookup {
    /// Its number among the lookups of [`LookupLog`] that finished (1, 2, ...).
    pub seq: u64,
    /// `"lookup"` (the closest nodes to an ID) or `"holders"` (the announcers of an id).
    pub kind: &'static str,
    /// The ID looked up.
    pub target: crate::id::NodeId,
    /// When it finished, counted from the node's start.
    pub finished_at: std::time::Duration,
    /// How long it ran.
    pub elapsed: std::time::Duration,
    /// Hop of the nearest answering node.
    pub hops: u32,
    /// Queries sent.
    pub queried: u32,
    /// Answers received.
    pub answered: u32,
    /// Whether the node whose ID is the target answered.
    pub found: bool,
    /// Nodes in the result (the closest that answered).
    pub closest: usize,
    /// Holders found (`"holders"` lookups).
    pub holders: Option<usize>,
    /// Whether its deadline cut it short.
    pub timed_out: bool,
}

/// The lookups a node was asked for through its handle (the HTTP API, the CLI), not those
/// of its own upkeep: how many, how long they took, and the most recent ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookupLog {
    /// Lookups asked for.
    pub started: u64,
    /// Lookups finished.
    pub finished: u64,
    /// Lookups finished with no node answering.
    pub failed: u64,
    /// How long finished lookups took.
    pub latency: Histogram,
    /// The last [`LookupLog::KEEP`] finished lookups, oldest first.
    pub recent: std::collections::VecDeque<RecentLookup>,
}

impl LookupLog {
    /// Finished lookups kept in [`LookupLog::recent`].
    pub const KEEP: usize = 50;

    /// Counts a lookup asked for.
    pub fn started(&mut self) {
        self.started += 1;
    }

    /// Counts a finished lookup and keeps it among the recent ones.
    pub fn finished(
        &mut self,
        kind: &'static str,
        result: &crate::lookup::LookupResult,
        holders: Option<usize>,
        finished_at: std::time::Duration,
    ) {
        self.finished += 1;
        if result.answered == 0 {
            self.failed += 1;
        }
        self.latency.observe(result.elapsed);
        if self.recent.len() >= Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentLookup {
            seq: self.finished,
            kind,
            target: result.target,
            finished_at,
            elapsed: result.elapsed,
            hops: result.hops,
            queried: result.queried,
            answered: result.answered,
            found: result.found,
            closest: result.closest.len(),
            holders,
            timed_out: result.timed_out,
        });
    }
}
