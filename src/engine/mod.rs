//! The sans-IO protocol engine: packets and time in; datagrams, events and wake-ups out.
//!
//! The engine never touches a socket or a clock and draws randomness only from its own seeded
//! RNG, so the same inputs give the same outputs. After every input (`handle_packet`,
//! `handle_timeout`, or a command such as `start_lookup`) the owner drains
//! [`Engine::poll_transmit`] and [`Engine::poll_event`], then sleeps until
//! [`Engine::poll_timeout`].

mod announce;
mod content;
mod fetch;
mod incoming;
mod lookups;
mod maintenance;
mod peers;
mod requests;
mod send;

pub use announce::{AnnounceError, MAX_HOLDERS_LISTED};
pub use content::BlockSource;
pub use fetch::{
    BlockSink, DownloadDone, DownloadError, DownloadProgress, MemorySink, SharedMemorySink,
    STALL_TIMEOUT,
};
pub use incoming::amplification_limit;
pub use requests::LookupId;

use crate::addr::{canonical, PackedAddr};
use crate::config::Config;
use crate::cookie::CookieJar;
use crate::hashing::Set;
use crate::id::NodeId;
use crate::lookup::{Lookup, LookupResult};
use crate::public_addr::AddressVotes;
use crate::rng::NodeRng;
use crate::stats::Stats;
use crate::table::{RoutingTable, Seen};
use crate::time::Time;
use peers::PeerBook;
use requests::{Purpose, Requests};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// A datagram the engine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dst: SocketAddr,
    /// The UDP payload (one JSON array).
    pub payload: Vec<u8>,
}

/// Something the owner of the engine may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lookup started with [`Engine::start_lookup`] finished.
    LookupFinished {
        /// Which lookup.
        id: LookupId,
        /// What it found.
        result: LookupResult,
    },
    /// A verified contact entered the routing table.
    ContactAdded(SocketAddr),
    /// A contact left the routing table (it stopped answering).
    ContactRemoved(SocketAddr),
    /// A majority of verified peers agree we are at this address; the node ID changed.
    PublicAddressChanged(SocketAddr),
    /// A ping started with [`Engine::ping`] was answered (`rtt`) or given up (`None`).
    Pong {
        /// Who was pinged.
        addr: SocketAddr,
        /// The round-trip time, if it answered.
        rtt: Option<Duration>,
    },
    /// A lookup started with [`Engine::find_holders`] finished.
    HoldersFound {
        /// Which lookup.
        id: LookupId,
        /// Every announcer of the id that the nodes near it had recorded.
        holders: Vec<Holder>,
        /// The lookup itself (the k nodes closest to the id).
        result: LookupResult,
    },
    /// A download started with [`Engine::start_download`] ended.
    DownloadFinished {
        /// The content id.
        id: NodeId,
        /// Verified and finished, or why not.
        outcome: Result<DownloadDone, DownloadError>,
    },
}

/// A node that announced it holds an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its address.
    pub addr: SocketAddr,
    /// Its note (players, map, ...).
    pub note: String,
}

/// Most events kept for an owner that does not drain them.
const MAX_EVENTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookupKind {
    User,
    Bootstrap,
    Refresh,
    /// Find the k closest to an id, then send them `IHaveSome`.
    Announce,
    /// Collect the recorded holders of an id (`WhoHasSome`).
    Find,
    /// The holder walk of a download: like `Find`, plus a block-0 probe so that holders
    /// among the nodes asked (plain cjp2p ones too) answer with the content itself.
    Fetch,
}

#[derive(Debug, Clone)]
struct Task {
    lookup: Lookup,
    kind: LookupKind,
    /// Holders named in answers (Find lookups), with their notes, by address.
    holders: BTreeMap<SocketAddr, String>,
}

/// A contact saved across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedContact {
    /// Its address.
    pub addr: SocketAddr,
    /// Its smoothed RTT when saved.
    pub rtt: Option<Duration>,
}

/// What the engine persists: enough to bootstrap again after a restart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SavedState {
    /// The public address the node had learned, if any.
    pub public_addr: Option<SocketAddr>,
    /// The routing table's contacts.
    pub contacts: Vec<SavedContact>,
}

/// One telekad node's protocol state.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Shared with every engine built from an equal config on this thread: see
    /// [`shared_config`].
    cfg: std::sync::Arc<Config>,
    rng: NodeRng,
    local: SocketAddr,
    public: SocketAddr,
    table: RoutingTable,
    jar: CookieJar,
    peers: PeerBook,
    requests: Requests,
    /// Running lookups, boxed: a map leaf has room for eleven, and most nodes run one or two.
    lookups: BTreeMap<LookupId, Box<Task>>,
    /// Records of what other nodes announced to us.
    records: crate::records::RecordStore,
    /// What we announce ourselves: id -> (note, next re-announcement).
    announcing: BTreeMap<NodeId, (String, Time)>,
    /// Content we serve.
    held: BTreeMap<NodeId, content::Held>,
    /// Content we fetch.
    downloads: BTreeMap<NodeId, fetch::Fetch>,
    /// Lookups that got input since they were last polled.
    dirty: BTreeSet<LookupId>,
    next_lookup: u64,
    /// Addresses from peer lists waiting to be pinged (packed: 18 bytes each), and the same
    /// as a set.
    candidates: VecDeque<PackedAddr>,
    candidate_set: Set<PackedAddr>,
    bootstrap: Vec<SocketAddr>,
    saved: Vec<SocketAddr>,
    last_bootstrap: Option<Time>,
    bootstrap_attempts: u32,
    /// This round's spread of the self-lookup period, in percent (75..=125), so that nodes
    /// started together do not keep refreshing in step.
    bootstrap_jitter: u32,
    joined: bool,
    /// Bucket sizes at the last self-lookup round.
    bucket_lens: Vec<usize>,
    /// Whether the sweep after growth stopped was done.
    swept: bool,
    /// Buckets waiting for a refresh (see `maintenance::REFRESHES_AT_ONCE`).
    refresh_queue: VecDeque<usize>,
    votes: AddressVotes,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Request budgets per source and for the node (`src/ratelimit.rs`).
    limiter: crate::ratelimit::RateLimiter,
    next_tick: Time,
    rtt_all: Option<Duration>,
}

/// `cfg` behind an `Arc`, the same one as the previous engine built on this thread if its
/// config was equal: a process running a swarm of nodes (or a simulation) holds one copy of
/// their common config per thread instead of one per node, about 0.4 KB each. Engines never
/// change their config.
fn shared_config(cfg: Config) -> std::sync::Arc<Config> {
    use std::cell::RefCell;
    use std::sync::{Arc, Weak};
    thread_local! {
        static LAST: RefCell<Weak<Config>> = const { RefCell::new(Weak::new()) };
    }
    LAST.with(|last| {
        if let Some(a) = last.borrow().upgrade().filter(|a| **a == cfg) {
            return a;
        }
        let a = Arc::new(cfg);
        *last.borrow_mut() = Arc::downgrade(&a);
        a
    })
}

impl Engine {
    /// A node bound at `local`, with all randomness drawn from `seed` (simulations, tests).
    pub fn new(cfg: Config, local: SocketAddr, seed: u64, now: Time) -> Engine {
        Engine::with_rng(cfg, local, NodeRng::from_u64(seed), now)
    }

    /// A node bound at `local` drawing randomness from `rng` (a real node seeds it with 256
    /// bits from the OS).
    pub fn with_rng(cfg: Config, local: SocketAddr, mut rng: NodeRng, now: Time) -> Engine {
        let local = canonical(local);
        let jar = CookieJar::new(&mut rng, now, cfg.cookie_rotation);
        let limiter = crate::ratelimit::RateLimiter::new(&cfg.rate_limit, now);
        Engine {
            table: RoutingTable::new(NodeId::of_addr(local), cfg.table.clone()),
            peers: PeerBook::new(cfg.max_peer_book),
            votes: AddressVotes::new(16, cfg.address_quorum),
            records: crate::records::RecordStore::new(cfg.records.clone()),
            next_tick: now + cfg.tick,
            cfg: shared_config(cfg),
            rng,
            local,
            public: local,
            jar,
            requests: Requests::default(),
            lookups: BTreeMap::new(),
            announcing: BTreeMap::new(),
            held: BTreeMap::new(),
            downloads: BTreeMap::new(),
            dirty: BTreeSet::new(),
            next_lookup: 1,
            candidates: VecDeque::new(),
            candidate_set: Set::default(),
            bootstrap: Vec::new(),
            saved: Vec::new(),
            last_bootstrap: None,
            bootstrap_attempts: 0,
            bootstrap_jitter: 100,
            joined: false,
            bucket_lens: Vec::new(),
            swept: false,
            refresh_queue: VecDeque::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            limiter,
            rtt_all: None,
        }
    }

    /// The node's ID: SHA-256 of its public address.
    pub fn id(&self) -> NodeId {
        self.table.own_id()
    }

    /// The address the engine was bound at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address peers see us at (the bound address until a majority says otherwise).
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Lookups running now (user and maintenance).
    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// Requests waiting for an answer.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Remote addresses remembered in the peer book (cookies, state): all but the routing
    /// table's contacts, which keep their own.
    pub fn peers_remembered(&self) -> usize {
        self.peers.len()
    }

    /// The next datagram to send. Once the queue is empty it lets go of room a burst left
    /// (so a thousand nodes in one process do not each keep their last burst's).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.outbox.pop_front();
        if t.is_none() {
            crate::slack::let_go_of_burst(&mut self.outbox);
        }
        t
    }

    /// The next event. Once the queue is empty it lets go of room a burst left.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() {
            crate::slack::let_go_of_burst(&mut self.events);
        }
        e
    }

    /// When [`Engine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = self.next_tick;
        if let Some(r) = self.requests.next_expiry() {
            t = t.min(r);
        }
        for task in self.lookups.values() {
            if let Some(l) = task.lookup.next_timeout() {
                t = t.min(l);
            }
        }
        if let Some(f) = self.fetch_timeout() {
            t = t.min(f);
        }
        Some(t)
    }

    /// Advances timers to `now`: expires requests, steps lookups, runs maintenance.
    pub fn handle_timeout(&mut self, now: Time) {
        // Lookups keep their own timers (and resend lost queries); an expired request only
        // counts against its contact.
        for req in self.requests.expire(now) {
            self.stats.requests_timed_out += 1;
            match req.purpose {
                Purpose::UserPing => self.emit(Event::Pong {
                    addr: req.addr,
                    rtt: None,
                }),
                Purpose::Greet(id) => self.greeted(now, id, req.addr, false),
                _ => {}
            }
            self.peers.unanswered(req.addr, now);
            if self.table.failed(req.addr) {
                self.adopt_promoted(req.addr);
                self.emit(Event::ContactRemoved(req.addr));
            }
        }
        if now >= self.next_tick {
            self.tick(now);
        }
        self.drive_all(now);
    }

    /// Sets the bootstrap addresses and starts bootstrapping: `PleaseSendPeers` to each, and a
    /// lookup of the own ID.
    pub fn bootstrap(&mut self, now: Time, addrs: &[SocketAddr]) {
        for a in addrs {
            let a = canonical(*a);
            if !self.bootstrap.contains(&a) && !self.is_self(a) {
                self.bootstrap.push(a);
            }
        }
        self.bootstrap_now(now);
        self.drive(now);
    }

    /// Starts a lookup for `target`; its result arrives as [`Event::LookupFinished`].
    pub fn start_lookup(&mut self, now: Time, target: NodeId) -> LookupId {
        let id = self.start(now, target, LookupKind::User);
        self.drive(now);
        id
    }

    /// Pings `addr`; the outcome arrives as [`Event::Pong`]. Returns false if too many
    /// requests are in flight to send it now.
    pub fn ping(&mut self, now: Time, addr: SocketAddr) -> bool {
        let ok = self.send_request(now, canonical(addr), Purpose::UserPing, &[]);
        self.drive(now);
        ok
    }

    /// Remembers contacts from a saved state; they seed the next bootstrap. A saved public
    /// address is taken back only when the node is bound to an unspecified address (it is
    /// what peers saw last time; their reports still override it).
    pub fn restore(&mut self, state: &SavedState) {
        if let Some(p) = state.public_addr {
            let p = canonical(p);
            if self.local.ip().is_unspecified()
                && p.port() == self.local.port()
                && p.is_ipv4() == self.local.is_ipv4()
                && p != self.public
            {
                self.public = p;
                self.table.rebuild(NodeId::of_addr(p));
            }
        }
        for c in &state.contacts {
            let a = canonical(c.addr);
            if !self.saved.contains(&a) && !self.is_self(a) {
                self.saved.push(a);
            }
        }
    }

    /// Puts `addr` in the routing table as if it had answered at `now`; returns whether it
    /// went in. For simulators and tests that build a converged network without running
    /// every join: a real node only inserts contacts that answered one of its nonces.
    pub fn preload_contact(&mut self, now: Time, addr: SocketAddr) -> bool {
        let addr = canonical(addr);
        if self.is_self(addr) || self.table.seen(addr, now, None) != Seen::Added {
            return false;
        }
        self.adopt_peer(addr);
        true
    }

    /// The state worth saving: the routing table's contacts and, while the table holds fewer
    /// contacts than were restored, restored ones not in it (so that a node restarted while
    /// offline, or saved before its contacts answered, does not overwrite a good saved table
    /// with a smaller one).
    pub fn snapshot(&self) -> SavedState {
        let mut contacts: Vec<SavedContact> = self
            .table
            .contacts()
            .map(|c| SavedContact {
                addr: c.addr(),
                rtt: c.rtt(),
            })
            .collect();
        let room = self.saved.len().saturating_sub(contacts.len());
        let unheard = self.saved.iter().filter(|a| !self.table.contains(**a));
        contacts.extend(
            unheard
                .take(room)
                .map(|&addr| SavedContact { addr, rtt: None }),
        );
        SavedState {
            public_addr: (self.public != self.local).then_some(self.public),
            contacts,
        }
    }

    fn is_self(&self, addr: SocketAddr) -> bool {
        addr == self.public || addr == self.local
    }

    fn emit(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}

/// The adaptive timeout for a request to `addr`: three smoothed RTTs (the contact's own, or
/// the node-wide average), within the lookup bounds.
fn timeout_for(
    table: &RoutingTable,
    rtt_all: Option<Duration>,
    cfg: &Config,
    addr: SocketAddr,
) -> Duration {
    let rtt = table.get(addr).and_then(|c| c.rtt()).or(rtt_all);
    match rtt {
        Some(r) => (r * 3).clamp(cfg.lookup.min_timeout, cfg.lookup.max_timeout),
        None => cfg.initial_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn engines_with_equal_configs_share_one_copy() {
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let a = Engine::new(Config::default(), at(1), 1, Time::ZERO);
        let b = Engine::new(Config::default(), at(2), 2, Time::ZERO);
        assert!(Arc::ptr_eq(&a.cfg, &b.cfg));
        let other = Config {
            read_only: !Config::default().read_only,
            ..Config::default()
        };
        let c = Engine::new(other.clone(), at(3), 3, Time::ZERO);
        assert!(!Arc::ptr_eq(&a.cfg, &c.cfg));
        assert_eq!(*c.cfg, other);
        // Each engine still reads its own settings.
        assert_eq!(*a.cfg, Config::default());
        drop((a, b));
        let d = Engine::new(Config::default(), at(4), 4, Time::ZERO);
        assert_eq!(*d.cfg, Config::default());
    }
}
