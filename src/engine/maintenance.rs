//! Timed upkeep: bootstrap retries, bucket refresh, liveness pings, cookie rotation.

use super::requests::Purpose;
use super::{Engine, LookupKind};
use crate::time::Time;
use crate::wire::Message;

/// Self-lookup rounds counted as done once a node has settled: the next wait is 2^8 = 256 s.
const SETTLED_ATTEMPTS: u32 = 9;

/// Idle-bucket refresh lookups a node runs at once; the others wait their turn in
/// `Engine::refresh_queue`. (A joining node sweeps its buckets instead: see
/// `Engine::sweep_bucket`.)
pub(super) const REFRESHES_AT_ONCE: usize = 2;

impl Engine {
    /// The periodic maintenance tick.
    pub(super) fn tick(&mut self, now: Time) {
        self.jar.maybe_rotate(now, &mut self.rng);
        let have_seeds =
            !self.bootstrap.is_empty() || !self.saved.is_empty() || !self.table.is_empty();
        if have_seeds
            && self.last_bootstrap.is_some_and(|t| {
                now >= t + self.self_lookup_backoff() * self.bootstrap_jitter / 100
            })
        {
            self.bootstrap_now(now);
        } else {
            self.refresh_idle(now);
        }
        self.ping_stale(now);
        self.reannounce_due(now);
        self.shrink(now);
        // A settled node has nothing due every second: tick five times less often.
        let settled = self.bootstrap_attempts >= SETTLED_ATTEMPTS;
        self.next_tick = now + self.cfg.tick * if settled { 5 } else { 1 };
    }

    /// Gives back memory reserved during bursts (joining, lookups): a long-running node
    /// holds what its steady state needs, not its peak.
    fn shrink(&mut self, now: Time) {
        self.requests.shrink();
        let table = &self.table;
        self.peers.shrink(now, |a| table.peer(*a).is_some());
        // Queues shrink to twice what they hold, and are let go once empty: a settled node
        // holds none of the candidates, datagrams and events of its join.
        crate::slack::shrink_set(&mut self.candidate_set);
        crate::slack::shrink_deque(&mut self.candidates);
        crate::slack::shrink_deque(&mut self.outbox);
        crate::slack::shrink_deque(&mut self.events);
        // An emptied BTreeMap keeps its last leaf (room for eleven); let it go.
        if self.lookups.is_empty() {
            self.lookups = std::collections::BTreeMap::new();
        }
    }

    /// The wait before the next self-lookup: 1 s, 2 s, 4 s, ... after joining, then every
    /// `bootstrap_retry`; a node whose table is still short of k contacts retries at most
    /// 8 s apart.
    fn self_lookup_backoff(&self) -> std::time::Duration {
        let doublings = self.bootstrap_attempts.saturating_sub(1).min(20);
        let mut d = std::time::Duration::from_secs(1 << doublings).min(self.cfg.bootstrap_retry);
        if self.table.len() < self.cfg.table.k {
            d = d.min(std::time::Duration::from_secs(8));
        }
        d
    }

    /// `PleaseSendPeers` to every bootstrap node (while the table is short), and a lookup of
    /// the own ID.
    pub(super) fn bootstrap_now(&mut self, now: Time) {
        self.last_bootstrap = Some(now);
        self.bootstrap_attempts = self.bootstrap_attempts.saturating_add(1);
        self.bootstrap_jitter = rand::RngExt::random_range(&mut self.rng, 75..=125);
        let nodes = if self.table.len() < self.cfg.table.k {
            self.bootstrap.clone()
        } else {
            Vec::new()
        };
        for a in nodes {
            if !self.requests.pending(a, |p| matches!(p, Purpose::Peers)) {
                self.send_request(now, a, Purpose::Peers, &[Message::PleaseSendPeers]);
            }
        }
        let busy = self
            .lookups
            .values()
            .any(|t| t.kind == LookupKind::Bootstrap);
        if !busy {
            let own = self.id();
            self.start(now, own, LookupKind::Bootstrap);
        }
    }

    /// After a self-lookup: when joining (the first one that found contacts), a sweep of
    /// every bucket up to the deepest in use; after later ones, if the table grew since the
    /// previous round, only of buckets that still have room, since those may miss nodes that
    /// exist. Idle full buckets are refreshed by lookups on the refresh interval.
    pub(super) fn refresh_all(&mut self, now: Time) {
        // The table grew since the last round if it holds more than the buckets did then.
        let grew = self.table.len() > self.bucket_lens.iter().sum::<usize>();
        // The first round after growth stops sweeps every bucket with room once more.
        let sweep = self.joined && !grew && !self.swept;
        if self.table.is_empty() {
            return;
        }
        if self.joined && !grew && !sweep {
            // Settled: the table stopped growing and was swept. The neighbourhood is
            // checked every 4 to 5 minutes from now on, not every few
            // seconds.
            self.bootstrap_attempts = self.bootstrap_attempts.max(SETTLED_ATTEMPTS);
            return;
        }
        self.swept = !grew;
        if sweep {
            // Growth stopped; this closing sweep is the last of the joining rounds. Later
            // rounds check the neighbourhood every 4 to 5 minutes.
            self.bootstrap_attempts = self.bootstrap_attempts.max(SETTLED_ATTEMPTS);
        }
        let joining = !self.joined;
        self.joined = true;
        let k = self.cfg.table.k;
        let depth = self.table.depth();
        self.bucket_lens.resize(depth, 0);
        for idx in 0..depth {
            let len = self.table.bucket(idx).len();
            // A bucket with room that gained contacts since the last round may have more
            // nodes still unknown; one that did not is probably complete.
            if joining || (len < k && (sweep || len > self.bucket_lens[idx])) {
                self.sweep_bucket(now, idx);
            }
            self.bucket_lens[idx] = len;
        }
    }

    fn refresh_idle(&mut self, now: Time) {
        for idx in self.table.idle_buckets(now, self.cfg.refresh_interval) {
            self.refresh_bucket(now, idx);
        }
    }

    fn refresh_bucket(&mut self, now: Time, idx: usize) {
        if self.lookups.len() >= self.cfg.max_lookups {
            return;
        }
        self.table.touch(idx, now);
        let running = self
            .lookups
            .values()
            .filter(|t| t.kind == LookupKind::Refresh)
            .count();
        if running >= REFRESHES_AT_ONCE {
            if !self.refresh_queue.contains(&idx) {
                self.refresh_queue.push_back(idx);
            }
            return;
        }
        let target = self.id().random_in_bucket(idx, &mut self.rng);
        self.start(now, target, LookupKind::Refresh);
    }

    /// A joining node's look into bucket `idx`: one `WhereAreThey` for a random ID in its
    /// range to each of the alpha contacts closest to that ID. The answers are candidates
    /// (pinged before they enter the table); nothing else is kept. A full lookup per bucket
    /// walked on to the k nodes nearest each random ID, which the bucket does not need: at
    /// 2,000 simulated nodes, sweeping instead halves the datagrams of the whole run and
    /// fills the tables as well (`tests/sim.rs`), and a node joining among 1,000 others no
    /// longer holds a refresh lookup's candidates and requests at its peak.
    fn sweep_bucket(&mut self, now: Time, idx: usize) {
        self.table.touch(idx, now);
        let target = self.id().random_in_bucket(idx, &mut self.rng);
        let mut addrs = Vec::new();
        self.table
            .closest_addrs(&target, self.cfg.lookup.alpha, None, &mut addrs);
        for addr in addrs {
            self.send_request(
                now,
                addr,
                Purpose::Sweep(target),
                &[Message::WhereAreThey { target }],
            );
        }
    }

    /// Starts the next waiting bucket refresh, if any (a refresh just finished).
    pub(super) fn next_refresh(&mut self, now: Time) {
        if let Some(idx) = self.refresh_queue.pop_front() {
            self.refresh_bucket(now, idx);
        }
    }

    /// Pings the least-recently-seen contact of buckets not heard from for a while, a few per
    /// tick, so dead contacts are found before a lookup trips over them.
    fn ping_stale(&mut self, now: Time) {
        const PER_TICK: usize = 2;
        let mut sent = 0;
        for idx in 0..self.table.depth() {
            if sent >= PER_TICK || self.requests.pings() >= self.cfg.max_pings_in_flight {
                break;
            }
            let Some(lrs) = self.table.bucket(idx).first() else {
                continue;
            };
            if now.since(lrs.last_seen()) < self.cfg.ping_interval {
                continue;
            }
            let addr = lrs.addr();
            if !self.requests.pending(addr, |_| true) {
                self.send_request(now, addr, Purpose::Ping, &[]);
                sent += 1;
            }
        }
    }
}
