//! The iterative Kademlia lookup as a small pure state machine (no I/O, no clock).
//!
//! The owner feeds it seeds, asks [`Lookup::poll`] whom to query next, and reports each
//! answer ([`Lookup::on_success`]) or loss ([`Lookup::on_failure`]). A query whose adaptive
//! timeout passes becomes *slow*: it stops counting against alpha but a late answer still
//! counts until its hard deadline.
//!
//! Like the routing table, the candidate list is diverse: it holds at most
//! [`LookupConfig::max_per_ip`] live candidates per IP and [`LookupConfig::max_per_subnet`]
//! per /24 (or /48), so an attacker holding many ports on a few IPs cannot fill the k
//! nearest places with its own addresses, however near their IDs lie (spec/simulation.md,
//! "Eclipse and Sybil attacks").

use crate::addr::PackedAddr;
use crate::id::NodeId;
use crate::time::Time;
use std::net::SocketAddr;
use std::time::Duration;

/// Lookup parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupConfig {
    /// Result size and the width of the set that must have answered.
    pub k: usize,
    /// Queries in flight at once (slow ones excepted).
    pub alpha: usize,
    /// Overall time limit; the partial result is returned when it passes (at most one hour:
    /// a longer one is cut to that).
    pub deadline: Duration,
    /// Lower bound of a query's adaptive timeout.
    pub min_timeout: Duration,
    /// Upper bound of a query's adaptive timeout.
    pub max_timeout: Duration,
    /// Most addresses taken from one answer.
    pub max_from_answer: usize,
    /// Times a query is sent before its peer is given up (a timed-out query is re-sent).
    pub attempts: u8,
    /// Most candidates from one IP that the lookup holds at once, failed ones not counted
    /// (0 = no cap). A nearer newcomer from a full IP takes the place of the farthest one
    /// not yet asked; otherwise it is left out (and may be named again later).
    pub max_per_ip: usize,
    /// The same for one /24 (IPv4) or /48 (IPv6) (0 = no cap).
    pub max_per_subnet: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: 20,
            alpha: 3,
            deadline: Duration::from_secs(10),
            min_timeout: Duration::from_millis(250),
            max_timeout: Duration::from_secs(2),
            max_from_answer: 64,
            attempts: 4,
            max_per_ip: 2,
            max_per_subnet: 8,
        }
    }
}

/// Where one candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Known, not asked yet.
    NotContacted,
    /// Asked; a first query counts against alpha until `slow_at`.
    Waiting {
        /// When the query went out.
        sent: Time,
        /// When it turns slow.
        slow_at: Time,
        /// When it is given up.
        fail_at: Time,
    },
    /// Asked, past its timeout, to be asked again (at once: resends do not count against
    /// alpha); a late answer to the earlier query still counts.
    Resend {
        /// When the last query went out.
        sent: Time,
    },
    /// Asked as often as allowed, past its timeout; no longer counts against alpha.
    Slow {
        /// When the query went out.
        sent: Time,
        /// When it is given up.
        fail_at: Time,
    },
    /// Answered after `rtt`.
    Succeeded {
        /// Time from query to answer.
        rtt: Duration,
    },
    /// Did not answer.
    Failed,
}

/// Where one candidate stands, without its times (kept beside it in [`Entry::times`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotContacted,
    Waiting,
    Resend,
    Slow,
    Succeeded,
    Failed,
}

/// One candidate: 48 bytes. A lookup holds up to 4k of them while it runs, a joining node
/// a few lookups.
/// - Its place is the first 64 bits of its distance to the target: the lookup never holds
///   two addresses whose distances share them (an address met again is found by them), so
///   they order the list as the whole distances would. Its ID is the hash of its address.
/// - Its address is packed.
/// - Times are microseconds after the lookup started, saturating at 71 minutes (past any
///   deadline, which is at most one hour).
#[derive(Debug, Clone)]
struct Entry {
    key: u64,
    addr: PackedAddr,
    hop: u16,
    attempts: u8,
    phase: Phase,
    /// Waiting: when sent, when slow, when failed. Resend: when sent. Slow: when sent and
    /// (third) when failed. Succeeded: the RTT.
    times: [u32; 3],
    /// When it was first asked (RTTs in results run from here).
    asked_at: u32,
}

/// The longest deadline a lookup takes: its times are kept to 71 minutes.
const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// Microseconds from `base` to `t` (0 before it), saturating.
fn offset(base: Time, t: Time) -> u32 {
    u32::try_from(t.since(base).as_micros()).unwrap_or(u32::MAX)
}

/// The time `off` microseconds after `base`.
fn at_offset(base: Time, off: u32) -> Time {
    base + Duration::from_micros(u64::from(off))
}

impl Entry {
    /// Its state, with times, for a lookup started at `base`.
    fn state(&self, base: Time) -> PeerState {
        let [a, b, c] = self.times.map(|t| at_offset(base, t));
        match self.phase {
            Phase::NotContacted => PeerState::NotContacted,
            Phase::Waiting => PeerState::Waiting {
                sent: a,
                slow_at: b,
                fail_at: c,
            },
            Phase::Resend => PeerState::Resend { sent: a },
            Phase::Slow => PeerState::Slow {
                sent: a,
                fail_at: c,
            },
            Phase::Succeeded => PeerState::Succeeded {
                rtt: Duration::from_micros(u64::from(self.times[0])),
            },
            Phase::Failed => PeerState::Failed,
        }
    }

    /// Sets its state, for a lookup started at `base`.
    fn set_state(&mut self, s: PeerState, base: Time) {
        let off = |t| offset(base, t);
        (self.phase, self.times) = match s {
            PeerState::NotContacted => (Phase::NotContacted, [0; 3]),
            PeerState::Waiting {
                sent,
                slow_at,
                fail_at,
            } => (Phase::Waiting, [off(sent), off(slow_at), off(fail_at)]),
            PeerState::Resend { sent } => (Phase::Resend, [off(sent), 0, 0]),
            PeerState::Slow { sent, fail_at } => (Phase::Slow, [off(sent), 0, off(fail_at)]),
            PeerState::Succeeded { rtt } => (
                Phase::Succeeded,
                [u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX), 0, 0],
            ),
            PeerState::Failed => (Phase::Failed, [0; 3]),
        };
    }
}

/// One contact in a lookup's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its address.
    pub addr: SocketAddr,
    /// Its ID.
    pub id: NodeId,
    /// How long it took to answer this lookup's query.
    pub rtt: Duration,
    /// On which hop it was reached (seeds are hop 1).
    pub hop: u32,
}

/// What a finished lookup learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The ID looked up.
    pub target: NodeId,
    /// Up to k contacts that answered, nearest to `target` first.
    pub closest: Vec<Found>,
    /// Whether the node whose ID is `target` itself answered.
    pub found: bool,
    /// Hop on which the nearest answering contact was reached (0 if none answered).
    pub hops: u32,
    /// Queries sent.
    pub queried: u32,
    /// Answers received.
    pub answered: u32,
    /// Time from start to finish.
    pub elapsed: Duration,
    /// Whether the overall deadline cut the lookup short.
    pub timed_out: bool,
}

/// An iterative lookup for one target.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: NodeId,
    cfg: LookupConfig,
    started: Time,
    entries: Vec<Entry>,
    queried: u32,
    answered: u32,
    finished_at: Option<Time>,
    timed_out: bool,
    /// First queries in the Waiting state (resends do not count against alpha).
    waiting: usize,
    /// Earliest time a Waiting or Slow entry changes state on its own.
    next_timer: Option<Time>,
}

impl Lookup {
    /// Starts a lookup for `target` from `seeds` (normally the table's closest contacts).
    pub fn new(
        target: NodeId,
        cfg: LookupConfig,
        now: Time,
        seeds: impl IntoIterator<Item = SocketAddr>,
    ) -> Lookup {
        let mut cfg = cfg;
        cfg.deadline = cfg.deadline.min(MAX_DEADLINE);
        let mut l = Lookup {
            target,
            cfg,
            started: now,
            entries: Vec::new(),
            queried: 0,
            answered: 0,
            finished_at: None,
            timed_out: false,
            waiting: 0,
            next_timer: None,
        };
        for s in seeds {
            l.add(s, NodeId::of_addr(s), 1);
        }
        l
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Most candidates kept; farther ones that were never asked are forgotten. Four times k:
    /// in simulations with 70% of the nodes gone at once, as many lookups find their exact
    /// target as with eight times k; with three times k, fewer do.
    fn capacity(&self) -> usize {
        self.cfg.k * 4
    }

    fn add(&mut self, addr: SocketAddr, id: NodeId, hop: u32) {
        let key = id.distance(&self.target).prefix();
        // Met before: it is still in the list, or it was dropped as the farthest of a full
        // list, which only ever gets nearer, so it would be dropped again.
        let Err(at) = self.entries.binary_search_by_key(&key, |e| e.key) else {
            return;
        };
        if at >= self.capacity() {
            return;
        }
        let addr = PackedAddr::new(&crate::addr::canonical(addr));
        if !self.make_room(&addr, at) {
            return;
        }
        // The list holds its bound plus, for a moment, the one that may go over it.
        let bound = self.capacity() + 1;
        crate::slack::make_room_for_one(&mut self.entries, bound);
        self.entries.insert(
            at,
            Entry {
                key,
                addr,
                hop: u16::try_from(hop).unwrap_or(u16::MAX),
                attempts: 0,
                phase: Phase::NotContacted,
                times: [0; 3],
                asked_at: 0,
            },
        );
        if self.entries.len() > self.capacity() {
            if let Some(last) = self.entries.last() {
                if last.phase == Phase::NotContacted {
                    self.entries.pop();
                }
            }
        }
    }

    /// Applies the diversity caps to a newcomer at `addr` that would go in at position `at`:
    /// true if it may go in, having evicted (and forgotten) the farthest not-yet-asked
    /// candidate of a full IP or subnet if that one lies beyond `at`.
    fn make_room(&mut self, addr: &PackedAddr, at: usize) -> bool {
        let (ip_cap, net_cap) = (self.cfg.max_per_ip, self.cfg.max_per_subnet);
        if ip_cap == 0 && net_cap == 0 {
            return true;
        }
        let (mut same_ip, mut same_net) = (0, 0);
        let (mut last_ip, mut last_net) = (None, None);
        for (i, e) in self.entries.iter().enumerate() {
            if e.phase == Phase::Failed {
                continue;
            }
            let spare = i >= at && e.phase == Phase::NotContacted;
            if e.addr.same_ip(addr) {
                same_ip += 1;
                if spare {
                    last_ip = Some(i);
                }
            }
            if e.addr.same_subnet(addr) {
                same_net += 1;
                if spare {
                    last_net = Some(i);
                }
            }
        }
        let evict = if ip_cap > 0 && same_ip >= ip_cap {
            match last_ip {
                Some(i) => i,
                None => return false,
            }
        } else if net_cap > 0 && same_net >= net_cap {
            match last_net {
                Some(i) => i,
                None => return false,
            }
        } else {
            return true;
        };
        self.entries.remove(evict);
        true
    }

    /// First queries waiting for an answer (those counting against alpha).
    pub fn in_flight(&self) -> usize {
        self.waiting
    }

    /// Whether the lookup is over.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    fn expire(&mut self, now: Time) {
        if self.next_timer.is_none_or(|t| now < t) {
            return;
        }
        let mut next: Option<Time> = None;
        let mut waiting = 0;
        let attempts = self.cfg.attempts;
        let base = self.started;
        for e in &mut self.entries {
            if !matches!(e.phase, Phase::Waiting | Phase::Slow) {
                continue;
            }
            let state = match e.state(base) {
                PeerState::Waiting { fail_at, .. } | PeerState::Slow { fail_at, .. }
                    if now >= fail_at && e.attempts >= attempts =>
                {
                    PeerState::Failed
                }
                PeerState::Waiting { sent, slow_at, .. }
                    if now >= slow_at && e.attempts < attempts =>
                {
                    PeerState::Resend { sent }
                }
                PeerState::Waiting {
                    sent,
                    slow_at,
                    fail_at,
                } if now >= slow_at => PeerState::Slow { sent, fail_at },
                s => s,
            };
            e.set_state(state, base);
            match state {
                PeerState::Waiting { slow_at, .. } => {
                    waiting += usize::from(e.attempts <= 1);
                    next = Some(next.map_or(slow_at, |n| n.min(slow_at)));
                }
                PeerState::Slow { fail_at, .. } => {
                    next = Some(next.map_or(fail_at, |n| n.min(fail_at)));
                }
                _ => {}
            }
        }
        self.waiting = waiting;
        self.next_timer = next;
    }

    /// Advances timers and returns the next address to query, if one may be sent now.
    /// `timeout_for` gives the adaptive timeout for a peer (clamped to the configured bounds);
    /// the peer is given up at twice that.
    pub fn poll(
        &mut self,
        now: Time,
        mut timeout_for: impl FnMut(SocketAddr) -> Duration,
    ) -> Option<SocketAddr> {
        if self.finished_at.is_some() {
            return None;
        }
        self.expire(now);
        if now >= self.started + self.cfg.deadline {
            self.timed_out = true;
            self.finished_at = Some(now);
            return None;
        }
        let k = self.cfg.k;
        let waiting = self.in_flight();
        let mut pending = false;
        let mut next = None;
        let mut resend = None;
        for (i, e) in self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.phase != Phase::Failed)
            .take(k)
        {
            match e.phase {
                Phase::NotContacted => {
                    if next.is_none() {
                        next = Some(i);
                    }
                    pending = true;
                }
                Phase::Resend => {
                    if resend.is_none() {
                        resend = Some(i);
                    }
                    pending = true;
                }
                Phase::Waiting | Phase::Slow => pending = true,
                _ => {}
            }
        }
        if !pending {
            self.finished_at = Some(now);
            return None;
        }
        // A resend goes out at once and does not count against alpha: a peer that let a
        // query time out (gone, or its datagram lost) must not hold up the rest of the
        // lookup while it is asked again.
        let i = match resend {
            Some(i) => i,
            None if waiting >= self.cfg.alpha => return None,
            None => next?,
        };
        if self.entries[i].attempts == 0 {
            self.entries[i].asked_at = offset(self.started, now);
        }
        self.entries[i].attempts += 1;
        let addr = self.entries[i].addr.get();
        let timeout = timeout_for(addr).clamp(self.cfg.min_timeout, self.cfg.max_timeout);
        let waiting = PeerState::Waiting {
            sent: now,
            slow_at: now + timeout,
            fail_at: now + timeout * 2,
        };
        self.entries[i].set_state(waiting, self.started);
        self.waiting += usize::from(self.entries[i].attempts == 1);
        self.next_timer = Some(
            self.next_timer
                .map_or(now + timeout, |t| t.min(now + timeout)),
        );
        self.queried += 1;
        Some(addr)
    }

    /// The next time [`Lookup::poll`] has something to do on its own.
    pub fn next_timeout(&self) -> Option<Time> {
        if self.finished_at.is_some() {
            return None;
        }
        let deadline = self.started + self.cfg.deadline;
        Some(self.next_timer.map_or(deadline, |t| t.min(deadline)))
    }

    /// Whether `addr` has a query of this lookup outstanding (waiting or slow).
    pub fn is_waiting_for(&self, addr: SocketAddr) -> bool {
        let addr = PackedAddr::new(&crate::addr::canonical(addr));
        self.entries.iter().any(|e| {
            e.addr == addr && matches!(e.phase, Phase::Waiting | Phase::Slow | Phase::Resend)
        })
    }

    /// `addr` answered with `peers`. Returns false (and changes nothing) if no query to `addr`
    /// was outstanding.
    pub fn on_success(&mut self, addr: SocketAddr, peers: &[SocketAddr], now: Time) -> bool {
        let with_ids: Vec<(SocketAddr, NodeId)> = peers
            .iter()
            .take(self.cfg.max_from_answer)
            .map(|p| (*p, NodeId::of_addr(*p)))
            .collect();
        self.on_success_with_ids(addr, &with_ids, now)
    }

    /// [`Lookup::on_success`] for a caller that already hashed the addresses.
    pub fn on_success_with_ids(
        &mut self,
        addr: SocketAddr,
        peers: &[(SocketAddr, NodeId)],
        now: Time,
    ) -> bool {
        if self.finished_at.is_some() {
            return false;
        }
        let addr = PackedAddr::new(&crate::addr::canonical(addr));
        let Some(e) = self.entries.iter_mut().find(|e| e.addr == addr) else {
            return false;
        };
        match e.phase {
            Phase::Waiting => self.waiting -= usize::from(e.attempts <= 1),
            Phase::Slow | Phase::Resend => {}
            _ => return false,
        }
        let sent = at_offset(self.started, e.asked_at);
        let rtt = now.since(sent);
        e.set_state(PeerState::Succeeded { rtt }, self.started);
        let hop = u32::from(e.hop) + 1;
        self.answered += 1;
        for (p, id) in peers.iter().take(self.cfg.max_from_answer) {
            self.add(*p, *id, hop);
        }
        true
    }

    /// The query to `addr` is lost (the owner knows better than the timer, e.g. an ICMP error
    /// or a request that could not be sent).
    pub fn on_failure(&mut self, addr: SocketAddr) {
        let addr = PackedAddr::new(&crate::addr::canonical(addr));
        if let Some(e) = self.entries.iter_mut().find(|e| e.addr == addr) {
            if e.phase == Phase::Waiting {
                self.waiting -= usize::from(e.attempts <= 1);
            }
            if matches!(
                e.phase,
                Phase::Waiting | Phase::Slow | Phase::Resend | Phase::NotContacted
            ) {
                e.phase = Phase::Failed;
                e.times = [0; 3];
            }
        }
    }

    /// Ends the lookup now, keeping what it has.
    pub fn cancel(&mut self, now: Time) {
        if self.finished_at.is_none() {
            self.finished_at = Some(now);
        }
    }

    /// The current state of every candidate, nearest first (for tests and diagnostics).
    pub fn states(&self) -> impl Iterator<Item = (SocketAddr, PeerState)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.addr.get(), e.state(self.started)))
    }

    /// The result so far (final once [`Lookup::is_finished`]).
    pub fn result(&self) -> LookupResult {
        let closest: Vec<Found> = self
            .entries
            .iter()
            .filter_map(|e| match e.state(self.started) {
                PeerState::Succeeded { rtt } => {
                    let addr = e.addr.get();
                    Some(Found {
                        addr,
                        id: NodeId::of_addr(addr),
                        rtt,
                        hop: u32::from(e.hop),
                    })
                }
                _ => None,
            })
            .take(self.cfg.k)
            .collect();
        let end = self.finished_at.unwrap_or(self.started);
        LookupResult {
            target: self.target,
            found: closest.first().is_some_and(|f| f.id == self.target),
            hops: closest.first().map_or(0, |f| f.hop),
            closest,
            queried: self.queried,
            answered: self.answered,
            elapsed: end.since(self.started),
            timed_out: self.timed_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn at(a: u8, b: u8, c: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), port)
    }

    /// Addresses of candidates that are not failed.
    fn live(l: &Lookup) -> Vec<SocketAddr> {
        l.states()
            .filter(|(_, s)| *s != PeerState::Failed)
            .map(|(a, _)| a)
            .collect()
    }

    fn same_ip(l: &Lookup, ip: IpAddr) -> usize {
        live(l).iter().filter(|a| a.ip() == ip).count()
    }

    #[test]
    fn one_ip_holds_at_most_its_cap_and_the_nearest_win() {
        let target = NodeId::hash(b"target");
        let ports: Vec<SocketAddr> = (1..=40).map(|p| at(9, 9, 9, p)).collect();
        let mut by_dist = ports.clone();
        by_dist.sort_by_key(|a| NodeId::of_addr(*a).distance(&target));
        let honest: Vec<SocketAddr> = (0..30).map(|i| at(1, i, 1, 1)).collect();
        let mut l = Lookup::new(
            target,
            LookupConfig::default(),
            Time::ZERO,
            honest.iter().copied(),
        );
        let first = l.poll(Time::ZERO, |_| Duration::from_millis(300)).unwrap();
        // One answer naming 40 ports of one IP, farthest first.
        let answer: Vec<SocketAddr> = by_dist.iter().rev().copied().collect();
        assert!(l.on_success(first, &answer, Time::from_millis(10)));
        let ip = ports[0].ip();
        assert_eq!(same_ip(&l, ip), 2);
        // The two kept are the two nearest of the 40 (each nearer one took a farther one's
        // place while none had been asked).
        let kept: Vec<SocketAddr> = live(&l).into_iter().filter(|a| a.ip() == ip).collect();
        assert_eq!(kept, by_dist[..2].to_vec());
        // Every honest address stays.
        assert!(honest.iter().all(|h| live(&l).contains(h)));
    }

    #[test]
    fn one_subnet_holds_at_most_its_cap_and_failures_free_places() {
        let target = NodeId::hash(b"t2");
        let cfg = LookupConfig {
            alpha: 100,
            ..LookupConfig::default()
        };
        let seeds: Vec<SocketAddr> = (0..3).map(|i| at(1, i, 1, 1)).collect();
        let mut l = Lookup::new(target, cfg, Time::ZERO, seeds.iter().copied());
        let asked = l.poll(Time::ZERO, |_| Duration::from_millis(300)).unwrap();
        // 20 IPs of one /24, one port each.
        let net: Vec<SocketAddr> = (1..=20).map(|h| at(7, 7, h, 5)).collect();
        assert!(l.on_success(asked, &net, Time::from_millis(5)));
        let in_net = |l: &Lookup| live(l).iter().filter(|a| net.contains(a)).count();
        assert_eq!(in_net(&l), 8);
        // Ask everything; the subnet's members never answer and fail.
        while let Some(a) = l.poll(Time::from_millis(6), |_| Duration::from_millis(300)) {
            if net.contains(&a) {
                l.on_failure(a);
            }
        }
        assert_eq!(in_net(&l), 0);
        // Named again, the ones left out earlier may now come in.
        let other = seeds.iter().find(|s| **s != asked).copied().unwrap();
        assert!(l.on_success(other, &net, Time::from_millis(7)));
        let fresh = live(&l).iter().filter(|a| net.contains(a)).count();
        assert_eq!(fresh, 8, "8 places free again, filled by the 12 left out");
    }

    #[test]
    fn candidates_stay_compact() {
        assert!(std::mem::size_of::<Entry>() <= 48);
        // The candidate list grows to its bound plus one, not to the next power of two.
        let target = NodeId::hash(b"t");
        let cfg = LookupConfig {
            max_per_ip: 0,
            max_per_subnet: 0,
            ..LookupConfig::default()
        };
        let seeds = (0..1000u32).map(|i| at((i >> 8) as u8, i as u8, 1, 7));
        let l = Lookup::new(target, cfg.clone(), Time::ZERO, seeds);
        assert_eq!(l.entries.len(), l.capacity());
        assert!(
            l.entries.capacity() <= l.capacity() + 1,
            "{}",
            l.entries.capacity()
        );
        // The list is in order of the whole distances.
        let order: Vec<_> = l
            .states()
            .map(|(a, _)| NodeId::of_addr(a).distance(&target))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn caps_of_zero_take_everything() {
        let target = NodeId::hash(b"t3");
        let cfg = LookupConfig {
            max_per_ip: 0,
            max_per_subnet: 0,
            ..LookupConfig::default()
        };
        let ports: Vec<SocketAddr> = (1..=40).map(|p| at(9, 9, 9, p)).collect();
        let l = Lookup::new(target, cfg, Time::ZERO, ports.iter().copied());
        assert_eq!(live(&l).len(), 40);
    }
}
