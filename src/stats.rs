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
    /// Answers that matched no request we sent to that address (ignored).
    pub unsolicited: u64,
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests given up.
    pub requests_timed_out: u64,
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

    /// Every element or datagram dropped or skipped, all reasons together.
    pub fn total_skipped(&self) -> u64 {
        self.dropped_not_array
            + self.dropped_too_large
            + self.dropped_empty
            + self.skipped_unknown
            + self.skipped_malformed
            + self.skipped_excess
    }
}
