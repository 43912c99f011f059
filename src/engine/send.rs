//! Sending: requests with fresh nonces and the peer's cookie, first-contact padding, message
//! counting, RTT smoothing, and turning answers into contacts and candidates.

use super::requests::{nonce_text, Purpose, Request};
use super::{timeout_for, Engine, Event, Transmit};
use crate::addr::PackedAddr;
use crate::id::NodeId;
use crate::table::Seen;
use crate::time::Time;
use crate::wire::{Echo, Message, PacketWriter, MAX_DATAGRAM};
use rand::RngExt;
use std::net::SocketAddr;
use std::time::Duration;

impl Engine {
    /// Sends a request with a fresh nonce to `addr`. Returns false if too many are in flight.
    pub(super) fn send_request(
        &mut self,
        now: Time,
        addr: SocketAddr,
        purpose: Purpose,
        body: &[Message],
    ) -> bool {
        if self.requests.len() >= self.cfg.max_requests_in_flight {
            self.stats.requests_refused += 1;
            return false;
        }
        let nonce: u64 = self.rng.random();
        let timeout = timeout_for(&self.table, self.rtt_all, &self.cfg, addr);
        let (info, their) = self.peer_with_cookie(&addr);
        let echoes = info.is_some_and(|p| p.echoes_ours());
        let mut w = PacketWriter::new(MAX_DATAGRAM);
        for m in body {
            self.put(&mut w, m);
        }
        self.put(
            &mut w,
            &Message::PleaseReturnThisMessage(Echo::cookie(&nonce_text(nonce))),
        );
        let with_their_cookie = their.is_some();
        match their {
            Some(c) => {
                self.put(&mut w, &Message::AlwaysReturned(c));
            }
            None if !matches!(purpose, Purpose::Ping | Purpose::EvictCheck) => {
                self.pad(&mut w);
            }
            None => {}
        }
        if !echoes {
            let ours = Echo::cookie(&self.jar.issue(addr.ip()));
            self.put(&mut w, &Message::PleaseAlwaysReturnThisMessage(ours));
        }
        self.requests.insert(
            nonce,
            Request {
                addr,
                purpose,
                sent: now,
                expires: now + timeout * 2,
                with_their_cookie,
            },
        );
        self.stats.requests_sent += 1;
        self.transmit(addr, w);
        true
    }

    /// Pads a first-contact request so the peer may answer it in full.
    pub(super) fn pad(&mut self, w: &mut PacketWriter) {
        const PADDING_OVERHEAD: usize = 24;
        let want = self.cfg.first_contact_padding;
        let have = w.bytes() + PADDING_OVERHEAD + 100;
        if want > have {
            self.put(w, &Message::Padding { len: want - have });
        }
    }

    pub(super) fn put(&mut self, w: &mut PacketWriter, m: &Message) -> bool {
        let ok = w.push(m);
        if ok {
            self.stats.count_out(m.name());
        }
        ok
    }

    pub(super) fn transmit(&mut self, dst: SocketAddr, w: PacketWriter) {
        // Nobody is at port 0 or an unspecified, multicast or broadcast address: a datagram
        // "from" one is spoofed, and an answer would go nowhere, or to a whole multicast
        // group (224.0.0.1 is every host on the link), with our address in it.
        if !crate::addr::is_routable_peer(dst) {
            return;
        }
        if let Some(payload) = w.finish() {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += payload.len() as u64;
            self.outbox.push_back(Transmit { dst, payload });
        }
    }

    pub(super) fn observe_rtt(&mut self, rtt: Duration) {
        self.rtt_all = Some(match self.rtt_all {
            Some(s) => (s * 7 + rtt) / 8,
            None => rtt,
        });
    }

    /// `addr` proved it is reachable (it echoed one of our nonces).
    pub(super) fn contact_answered(&mut self, now: Time, addr: SocketAddr, rtt: Option<Duration>) {
        match self.table.seen(addr, now, rtt) {
            Seen::Added => {
                self.adopt_peer(addr);
                self.emit(Event::ContactAdded(addr));
            }
            Seen::Full { lrs, lrs_seen } => {
                let fresh = now.since(lrs_seen) < self.cfg.evict_check_after;
                let checking = self
                    .requests
                    .pending(lrs, |p| matches!(p, Purpose::EvictCheck));
                if !fresh && !checking && self.requests.pings() < self.cfg.max_pings_in_flight {
                    self.send_request(now, lrs, Purpose::EvictCheck, &[]);
                }
            }
            Seen::Refreshed | Seen::Capped | Seen::Own => {}
        }
    }

    /// Queues addresses learned from a peer list to be pinged, if their bucket has room.
    pub(super) fn add_candidates(&mut self, addrs: &[(SocketAddr, NodeId)]) {
        for (a, id) in addrs {
            let a = *a;
            if self.candidates.len() >= self.cfg.max_candidates {
                break;
            }
            let key = PackedAddr::new(&a);
            if self.is_self(a)
                || self.table.contains_id(a, id)
                || self.candidate_set.contains(&key)
                || !self.table.admits_id(a, id)
                || !self.candidate_set.insert(key)
            {
                continue;
            }
            self.candidates.push_back(key);
        }
    }

    pub(super) fn flush_candidates(&mut self, now: Time) {
        while self.requests.pings() < self.cfg.max_pings_in_flight {
            let Some(key) = self.candidates.pop_front() else {
                break;
            };
            self.candidate_set.remove(&key);
            let a = key.get();
            if self.table.contains(a) || !self.table.admits(a) || self.is_self(a) {
                continue;
            }
            if self.requests.pending(a, |_| true) {
                continue;
            }
            self.send_request(now, a, Purpose::Ping, &[]);
        }
    }
}
