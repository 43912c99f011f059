//! A deterministic simulator: thousands of real engines over a virtual clock and a seeded,
//! lossy, delayed network, in one process. The same seed gives the same trace
//! ([`Sim::trace_hash`]).

pub mod adversary;
mod network;
pub mod scenario;
mod warm;

pub use adversary::{Eclipse, EclipseReport};
pub use network::NetConfig;
pub use scenario::{Scenario, SimReport};

use crate::config::Config;
use crate::engine::{Engine, Event, Holder, LookupId};
use crate::id::NodeId;
use crate::lookup::LookupResult;
use crate::rng::NodeRng;
use crate::time::Time;
use rand::RngExt;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The loopback address of simulated node `i`: each node gets its own /24 inside
/// 127.0.0.0/8 (two per /24 past 65,536 nodes), so diversity caps stay on.
pub fn node_addr(i: usize, port: u16) -> SocketAddr {
    let s = i % 65_536;
    let host = 1 + (i / 65_536) as u8;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, (s / 256) as u8, (s % 256) as u8, host)),
        port,
    )
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed of everything random (network and engines).
    pub seed: u64,
    /// The network model.
    pub net: NetConfig,
    /// Configuration of every engine.
    pub engine: Config,
}

impl SimConfig {
    /// `nodes` nodes with default engine and network settings.
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            net: NetConfig::default(),
            engine: Config::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    /// A datagram in flight: (sequence, from, to, payload).
    Deliver(u64, usize, usize, Vec<u8>),
    /// A node's timer, valid if the generation still matches.
    Wake(usize, u64),
}

/// The simulated world.
#[derive(Debug, Clone)]
pub struct Sim {
    cfg: SimConfig,
    nodes: Vec<Option<Engine>>,
    addrs: Vec<SocketAddr>,
    ids: Vec<NodeId>,
    index: HashMap<SocketAddr, usize>,
    now: Time,
    queue: BinaryHeap<Reverse<(Time, Pending)>>,
    wake_gen: Vec<u64>,
    wake_at: Vec<Option<Time>>,
    rng: NodeRng,
    seq: u64,
    trace: u64,
    sent: u64,
    delivered: u64,
    results: HashMap<(usize, LookupId), LookupResult>,
    found: HashMap<(usize, LookupId), (Vec<Holder>, LookupResult)>,
    /// The attacker's nodes, if any ([`Sim::make_sybils`]).
    sybils: Option<Box<adversary::Sybils>>,
}

const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl Sim {
    /// Creates the nodes (not yet joined: see [`Sim::join_all`]), node `i` at
    /// [`node_addr`]`(i, 24254)`.
    pub fn new(cfg: SimConfig) -> Sim {
        let addrs: Vec<SocketAddr> = (0..cfg.nodes).map(|i| node_addr(i, 24254)).collect();
        Sim::with_addrs(cfg, addrs)
    }

    /// Creates one node at each of `addrs` (distinct addresses; `cfg.nodes` is taken from
    /// their number), not yet joined.
    pub fn with_addrs(mut cfg: SimConfig, addrs: Vec<SocketAddr>) -> Sim {
        cfg.nodes = addrs.len();
        let mut rng = NodeRng::from_u64(cfg.seed);
        let nodes = addrs
            .iter()
            .map(|a| {
                Some(Engine::new(
                    cfg.engine.clone(),
                    *a,
                    rng.random(),
                    Time::ZERO,
                ))
            })
            .collect();
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let ids = addrs.iter().map(|a| NodeId::of_addr(*a)).collect();
        let n = cfg.nodes;
        let mut sim = Sim {
            cfg,
            nodes,
            addrs,
            ids,
            index,
            now: Time::ZERO,
            queue: BinaryHeap::new(),
            wake_gen: vec![0; n],
            wake_at: vec![None; n],
            rng,
            seq: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            sent: 0,
            delivered: 0,
            results: HashMap::new(),
            found: HashMap::new(),
            sybils: None,
        };
        for i in 0..n {
            sim.reschedule(i);
        }
        sim
    }

    /// Number of nodes (dead ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The virtual time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Node `i`'s engine, if it is alive.
    pub fn engine(&self, i: usize) -> Option<&Engine> {
        self.nodes.get(i).and_then(|n| n.as_ref())
    }

    fn engine_mut(&mut self, i: usize) -> Option<&mut Engine> {
        self.nodes.get_mut(i).and_then(|n| n.as_mut())
    }

    /// Whether node `i` is alive.
    pub fn is_alive(&self, i: usize) -> bool {
        self.engine(i).is_some()
    }

    /// Index of the node at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.index.get(&addr).copied()
    }

    /// Datagrams handed to the network so far.
    pub fn datagrams_sent(&self) -> u64 {
        self.sent
    }

    /// Datagrams delivered so far.
    pub fn datagrams_delivered(&self) -> u64 {
        self.delivered
    }

    /// A hash of every delivery so far (time, endpoints, bytes): equal seeds give equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Changes the datagram loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.net.loss = loss;
    }

    /// Removes node `i` from the network: it stops answering and its datagrams are dropped.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        self.wake_gen[i] += 1;
        self.wake_at[i] = None;
    }

    /// Node `i` bootstraps from the given nodes.
    pub fn bootstrap(&mut self, i: usize, from: &[usize]) {
        let addrs: Vec<SocketAddr> = from.iter().map(|&j| self.addrs[j]).collect();
        let now = self.now;
        if let Some(e) = self.nodes[i].as_mut() {
            e.bootstrap(now, &addrs);
        }
        self.after_input(i);
    }

    /// Joins every node: node 0 first, then the others one every `spacing`, each bootstrapping
    /// from a node that joined before it (chosen by the seeded RNG), then runs `settle` more.
    pub fn join_all(&mut self, spacing: Duration, settle: Duration) {
        self.join_all_with(spacing, settle, |_, _| {});
    }

    /// [`Sim::join_all`] with a progress callback `(joined, total)`.
    pub fn join_all_with(
        &mut self,
        spacing: Duration,
        settle: Duration,
        mut progress: impl FnMut(usize, usize),
    ) {
        let n = self.nodes.len();
        for i in 1..n {
            let j = self.rng.random_range(0..i);
            self.bootstrap(i, &[j]);
            let t = self.now + spacing;
            self.run_until(t);
            if i % 256 == 0 {
                progress(i, n);
            }
        }
        let t = self.now + settle;
        self.run_until(t);
        progress(n, n);
    }

    /// Starts a lookup at node `from`; its result is kept for [`Sim::take_result`].
    pub fn start_lookup(&mut self, from: usize, target: NodeId) -> Option<LookupId> {
        let now = self.now;
        let id = self.nodes[from].as_mut()?.start_lookup(now, target);
        self.after_input(from);
        Some(id)
    }

    /// The result of a finished lookup, once.
    pub fn take_result(&mut self, from: usize, id: LookupId) -> Option<LookupResult> {
        self.results.remove(&(from, id))
    }

    /// Runs one lookup to completion and returns its result.
    pub fn lookup(&mut self, from: usize, target: NodeId) -> Option<LookupResult> {
        let id = self.start_lookup(from, target)?;
        while !self.results.contains_key(&(from, id)) {
            if !self.step() {
                break;
            }
        }
        self.take_result(from, id)
    }

    /// Node `i` announces `id` with `note` (and keeps re-announcing while alive).
    pub fn announce(&mut self, i: usize, id: NodeId, note: &str) -> bool {
        let now = self.now;
        let ok = self
            .nodes
            .get_mut(i)
            .and_then(|n| n.as_mut())
            .is_some_and(|e| e.announce(now, id, note).is_ok());
        self.after_input(i);
        ok
    }

    /// Node `i` starts collecting the holders of `id`; see [`Sim::take_found`].
    pub fn start_find_holders(&mut self, i: usize, id: NodeId) -> Option<LookupId> {
        let now = self.now;
        let l = self.nodes.get_mut(i)?.as_mut()?.find_holders(now, id);
        self.after_input(i);
        Some(l)
    }

    /// The outcome of a finished holder lookup, once.
    pub fn take_found(&mut self, i: usize, l: LookupId) -> Option<(Vec<Holder>, LookupResult)> {
        self.found.remove(&(i, l))
    }

    /// Node `i` collects the holders of `id`; runs until the lookup finishes.
    pub fn find_holders(&mut self, i: usize, id: NodeId) -> Option<(Vec<Holder>, LookupResult)> {
        let l = self.start_find_holders(i, id)?;
        while !self.found.contains_key(&(i, l)) {
            if !self.step() {
                break;
            }
        }
        self.found.remove(&(i, l))
    }

    /// Processes events until virtual time `t`.
    pub fn run_until(&mut self, t: Time) {
        while let Some(Reverse((at, _))) = self.queue.peek() {
            if *at > t {
                break;
            }
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Processes the next event; false if nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, p))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        match p {
            Pending::Deliver(_, from, to, payload) => {
                let src = self.addrs[from];
                if let Some(e) = self.nodes[to].as_mut() {
                    self.delivered += 1;
                    let mut h = fnv(self.trace, &now.as_micros().to_le_bytes());
                    h = fnv(h, &(from as u64).to_le_bytes());
                    h = fnv(h, &(to as u64).to_le_bytes());
                    self.trace = fnv(h, &payload);
                    e.handle_packet(now, src, &payload);
                    self.after_input(to);
                }
            }
            Pending::Wake(i, generation) => {
                if self.wake_gen[i] == generation {
                    self.wake_at[i] = None;
                    if let Some(e) = self.nodes[i].as_mut() {
                        e.handle_timeout(now);
                        self.after_input(i);
                    }
                }
            }
        }
        true
    }

    fn after_input(&mut self, i: usize) {
        let Some(e) = self.nodes[i].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = e.poll_transmit() {
            out.push(t);
        }
        while let Some(ev) = e.poll_event() {
            match ev {
                Event::LookupFinished { id, result } => {
                    self.results.insert((i, id), result);
                }
                Event::HoldersFound {
                    id,
                    holders,
                    result,
                } => {
                    self.found.insert((i, id), (holders, result));
                }
                _ => {}
            }
        }
        for t in out {
            self.sent += 1;
            let Some(&to) = self.index.get(&t.dst) else {
                continue;
            };
            if let Some(delay) = self.cfg.net.sample(&mut self.rng, i, to) {
                let payload = match self.sybils.as_deref().filter(|s| s.contains(i)) {
                    Some(s) => s.rewrite(&t.payload, t.dst).unwrap_or(t.payload),
                    None => t.payload,
                };
                self.seq += 1;
                self.queue.push(Reverse((
                    self.now + delay,
                    Pending::Deliver(self.seq, i, to, payload),
                )));
            }
        }
        self.reschedule(i);
    }

    fn reschedule(&mut self, i: usize) {
        let Some(e) = self.nodes[i].as_ref() else {
            return;
        };
        let Some(t) = e.poll_timeout() else {
            return;
        };
        let t = t.max(self.now);
        if self.wake_at[i] == Some(t) {
            return;
        }
        self.wake_gen[i] += 1;
        self.wake_at[i] = Some(t);
        self.queue
            .push(Reverse((t, Pending::Wake(i, self.wake_gen[i]))));
    }

    /// The ID of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    /// The `k` live nodes nearest to `target`, by brute force, nearest first.
    pub fn true_closest(&self, target: &NodeId, k: usize) -> Vec<SocketAddr> {
        if k == 0 {
            return Vec::new();
        }
        let mut v: Vec<(crate::id::Distance, usize)> = (0..self.nodes.len())
            .filter(|&i| self.is_alive(i))
            .map(|i| (self.ids[i].distance(target), i))
            .collect();
        if v.len() > k {
            v.select_nth_unstable(k - 1);
            v.truncate(k);
        }
        v.sort_unstable();
        v.into_iter().map(|(_, i)| self.addrs[i]).collect()
    }
}
