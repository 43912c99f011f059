//! Timed upkeep: bootstrap retries, bucket refresh, liveness pings, cookie rotation.

use super::requests::Purpose;
use super::{Engine, LookupKind};
use crate::time::Time;
use crate::wire::Message;

impl Engine {
    /// The periodic maintenance tick.
    pub(super) fn tick(&mut self, now: Time) {
        self.jar.maybe_rotate(now, &mut self.rng);
        let k = self.cfg.table.k;
        let have_seeds = !self.bootstrap.is_empty() || !self.saved.is_empty();
        let retry_due = self
            .last_bootstrap
            .is_none_or(|t| now.since(t) >= self.cfg.bootstrap_retry);
        if self.table.len() < k && have_seeds && retry_due {
            self.bootstrap_now(now);
        } else {
            self.refresh_idle(now);
        }
        self.ping_stale(now);
        self.next_tick = now + self.cfg.tick;
    }

    /// `PleaseSendPeers` to every bootstrap node, and a lookup of the own ID.
    pub(super) fn bootstrap_now(&mut self, now: Time) {
        self.last_bootstrap = Some(now);
        let nodes = self.bootstrap.clone();
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

    /// After joining: a lookup of a random ID in every bucket up to the deepest in use.
    pub(super) fn refresh_all(&mut self, now: Time) {
        for idx in 0..self.table.depth() {
            self.refresh_bucket(now, idx);
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
        let target = self.id().random_in_bucket(idx, &mut self.rng);
        self.start(now, target, LookupKind::Refresh);
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
            if now.since(lrs.last_seen) < self.cfg.ping_interval {
                continue;
            }
            let addr = lrs.addr;
            if !self.requests.pending(addr, |_| true) {
                self.send_request(now, addr, Purpose::Ping, &[]);
                sent += 1;
            }
        }
    }
}
