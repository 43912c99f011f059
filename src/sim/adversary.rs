//! Eclipse and Sybil attacks in the simulator.
//!
//! The attacker holds many ports on a few IPs in one or two /24s. Since a node's ID is
//! SHA-256 of `ip:port`, it *grinds* ports: it picks target IDs and, for each, keeps the
//! ports whose IDs land nearest it ([`grind_ports`]). Every Sybil address is a real
//! [`Engine`](crate::engine::Engine) in the simulation, so it answers pings, cookies and
//! nonces exactly as an honest node does and gets into routing tables through the
//! protocol alone. What it says is the attack: every `Peers` and `MaybeTheyHaveSome` a
//! Sybil sends is rewritten on its way into the network to list only Sybil addresses, those
//! nearest the target asked about (nearest the recipient for a plain `PleaseSendPeers`),
//! and no holders. Everything else it sends (cookies, echoes, `YourAddressIs`) is left as
//! the engine made it.
//!
//! [`Eclipse`] is the standard run: an honest network joins, the Sybils join through it,
//! then honest nodes look up IDs next to the attacker's clusters, and [`EclipseReport`]
//! says how many lookups still found the true closest honest nodes.

use super::{node_addr, NetConfig, Sim, SimConfig};
use crate::config::Config;
use crate::id::NodeId;
use crate::lookup::LookupResult;
use crate::wire::{decode, encode_packet, Message, MAX_PEERS};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// The attacker's side of a simulated network: which nodes are Sybils, and what they say.
#[derive(Debug, Clone)]
pub(super) struct Sybils {
    /// Indexed by node.
    is_sybil: Vec<bool>,
    /// Every Sybil address with its ID.
    members: Vec<(NodeId, SocketAddr)>,
}

impl Sybils {
    pub(super) fn contains(&self, i: usize) -> bool {
        self.is_sybil.get(i).copied().unwrap_or(false)
    }

    /// Up to [`MAX_PEERS`] Sybil addresses nearest `target`, nearest first, `except` left out.
    fn nearest(&self, target: &NodeId, except: SocketAddr) -> Vec<SocketAddr> {
        let mut v: Vec<(crate::id::Distance, SocketAddr)> = self
            .members
            .iter()
            .filter(|(_, a)| *a != except)
            .map(|(id, a)| (id.distance(target), *a))
            .collect();
        if v.len() > MAX_PEERS {
            v.select_nth_unstable(MAX_PEERS - 1);
            v.truncate(MAX_PEERS);
        }
        v.sort_unstable();
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// A Sybil's datagram to `to` as the attacker sends it: address lists replaced by Sybil
    /// addresses. `None` if it lists no addresses (it goes out unchanged).
    pub(super) fn rewrite(&self, payload: &[u8], to: SocketAddr) -> Option<Vec<u8>> {
        let mut msgs = decode(payload).ok()?.messages;
        let mut changed = false;
        for m in &mut msgs {
            match m {
                Message::Peers { peers, target } => {
                    let t = target.unwrap_or_else(|| NodeId::of_addr(to));
                    *peers = self.nearest(&t, to);
                    changed = true;
                }
                Message::MaybeTheyHaveSome {
                    id,
                    peers,
                    holders,
                    notes,
                } => {
                    *peers = self.nearest(id, to);
                    *holders = 0;
                    notes.clear();
                    changed = true;
                }
                _ => {}
            }
        }
        changed.then(|| encode_packet(&msgs))
    }
}

impl Sim {
    /// Turns nodes `nodes` into the attacker's Sybils: from now on every address list they
    /// send names only Sybils (see the [module docs](self)). Calling it again adds more.
    pub fn make_sybils(&mut self, nodes: impl IntoIterator<Item = usize>) {
        let n = self.len();
        let s = self.sybils.get_or_insert_with(|| {
            Box::new(Sybils {
                is_sybil: vec![false; n],
                members: Vec::new(),
            })
        });
        for i in nodes {
            if i < n && !s.is_sybil[i] {
                s.is_sybil[i] = true;
                s.members.push((self.ids[i], self.addrs[i]));
            }
        }
    }

    /// Whether node `i` is one of the attacker's Sybils.
    pub fn is_sybil(&self, i: usize) -> bool {
        self.sybils.as_ref().is_some_and(|s| s.contains(i))
    }

    /// The `k` live honest (non-Sybil) nodes nearest `target`, nearest first, by brute force.
    pub fn true_closest_honest(&self, target: &NodeId, k: usize) -> Vec<SocketAddr> {
        let mut v: Vec<(crate::id::Distance, usize)> = (0..self.len())
            .filter(|&i| self.is_alive(i) && !self.is_sybil(i))
            .map(|i| (self.ids[i].distance(target), i))
            .collect();
        if k == 0 {
            return Vec::new();
        }
        if v.len() > k {
            v.select_nth_unstable(k - 1);
            v.truncate(k);
        }
        v.sort_unstable();
        v.into_iter().map(|(_, i)| self.addrs[i]).collect()
    }
}

/// The attacker's grinding: for each target, the `per_target` addresses among `ips` ×
/// `ports` whose IDs are nearest it. Returns them all (no address twice), target by target.
pub fn grind_ports(
    ips: &[Ipv4Addr],
    ports: RangeInclusive<u16>,
    targets: &[NodeId],
    per_target: usize,
) -> Vec<SocketAddr> {
    let mut text = Vec::with_capacity(crate::addr::MAX_ADDR_TEXT);
    let mut all: Vec<(NodeId, SocketAddr)> = Vec::new();
    for ip in ips {
        for port in ports.clone() {
            let a = SocketAddr::new(IpAddr::V4(*ip), port);
            text.clear();
            crate::addr::write_addr(&mut text, a);
            all.push((NodeId::hash(&text), a));
        }
    }
    let mut out = Vec::new();
    let mut taken = HashSet::new();
    for t in targets {
        let mut v: Vec<(crate::id::Distance, SocketAddr)> = all
            .iter()
            .filter(|(_, a)| !taken.contains(a))
            .map(|(id, a)| (id.distance(t), *a))
            .collect();
        if v.len() > per_target && per_target > 0 {
            v.select_nth_unstable(per_target - 1);
        }
        v.truncate(per_target);
        v.sort_unstable();
        for (_, a) in v {
            taken.insert(a);
            out.push(a);
        }
    }
    out
}

/// An eclipse attack to simulate.
#[derive(Debug, Clone)]
pub struct Eclipse {
    /// Honest nodes (addresses as [`node_addr`]: one per /24).
    pub honest: usize,
    /// The attacker's IPs (few, in one or two /24s).
    pub sybil_ips: Vec<Ipv4Addr>,
    /// Ports the attacker may bind on each IP.
    pub ports: RangeInclusive<u16>,
    /// IDs the attacker wants to capture.
    pub targets: usize,
    /// Sybil addresses ground near each target (k or more captures an uncapped lookup).
    pub per_target: usize,
    /// Lookups run, each from a random honest node for a random ID sharing the first
    /// `target_prefix_bits` bits with a random target.
    pub lookups: usize,
    /// Leading bits a looked-up ID shares with its target.
    pub target_prefix_bits: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Diversity caps on (the defaults) or off (0 in the table and in the lookup).
    pub caps: bool,
    /// Virtual time between the last Sybil joining and the lookups.
    pub settle: Duration,
    /// Lookups in flight at once across the network.
    pub concurrency: usize,
}

impl Eclipse {
    /// The attacker's default IPs: 4 addresses in 2 /24s, with host bytes no simulated
    /// honest node uses.
    pub fn default_ips() -> Vec<Ipv4Addr> {
        vec![
            Ipv4Addr::new(127, 255, 0, 201),
            Ipv4Addr::new(127, 255, 0, 202),
            Ipv4Addr::new(127, 255, 1, 201),
            Ipv4Addr::new(127, 255, 1, 202),
        ]
    }

    /// `honest` honest nodes against `targets` × `per_target` Sybils on the default IPs,
    /// `lookups` lookups, caps on.
    pub fn new(
        honest: usize,
        targets: usize,
        per_target: usize,
        lookups: usize,
        seed: u64,
    ) -> Eclipse {
        Eclipse {
            honest,
            sybil_ips: Eclipse::default_ips(),
            ports: 1024..=65_535,
            targets,
            per_target,
            lookups,
            target_prefix_bits: 24,
            seed,
            caps: true,
            settle: Duration::from_secs(120),
            concurrency: 64,
        }
    }

    /// The engine configuration of every node: the defaults, or with all four diversity
    /// caps (table and lookup, per IP and per subnet) set to 0.
    pub fn engine_config(&self) -> Config {
        let mut c = Config::default();
        if !self.caps {
            c.table.max_per_ip = 0;
            c.table.max_per_subnet = 0;
            c.lookup.max_per_ip = 0;
            c.lookup.max_per_subnet = 0;
        }
        c
    }
}

/// What an eclipse run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EclipseReport {
    /// Whether the diversity caps were on.
    pub caps: bool,
    /// Honest nodes.
    pub honest: usize,
    /// Sybil addresses.
    pub sybils: usize,
    /// Distinct attacker IPs.
    pub sybil_ips: usize,
    /// Distinct attacker /24s.
    pub sybil_subnets: usize,
    /// Target IDs the attacker ground ports for.
    pub targets: usize,
    /// Lookups run.
    pub lookups: usize,
    /// Share of lookups whose result holds the true closest honest node (origin excluded).
    pub closest_honest_rate: f64,
    /// Mean share of the true k closest honest nodes that the result holds.
    pub honest_k_fraction: f64,
    /// Share of lookups whose honest entries are exactly the nearest honest nodes, in order
    /// (none skipped), and at least one.
    pub honest_prefix_rate: f64,
    /// Share of lookups whose result holds no honest node at all (fully eclipsed).
    pub captured_rate: f64,
    /// Mean Sybils in a result.
    pub sybils_per_result: f64,
    /// Mean honest nodes in a result.
    pub honest_per_result: f64,
    /// Share of honest routing tables holding at least one Sybil.
    pub tables_with_sybils: f64,
    /// Most Sybils in one honest routing table.
    pub max_sybils_in_a_table: usize,
    /// Hash of every delivery, hex.
    pub trace_hash: String,
    /// Wall-clock seconds of the whole run.
    pub wall_seconds: f64,
}

/// The joined network of an eclipse run and the attacker's targets: honest nodes join one
/// by one (as [`super::scenario::join`] does), then every Sybil joins through a random
/// honest node, then `settle` passes.
pub fn join_eclipse(e: &Eclipse) -> (Sim, Vec<NodeId>) {
    let mut rng = ChaCha8Rng::seed_from_u64(e.seed ^ 0xec11_95e0);
    let targets: Vec<NodeId> = (0..e.targets).map(|_| NodeId(rng.random())).collect();
    let sybil_addrs = grind_ports(&e.sybil_ips, e.ports.clone(), &targets, e.per_target);
    let mut addrs: Vec<SocketAddr> = (0..e.honest).map(|i| node_addr(i, 24254)).collect();
    addrs.extend(sybil_addrs.iter().copied());
    let mut cfg = SimConfig::new(addrs.len(), e.seed);
    cfg.engine = e.engine_config();
    cfg.net = NetConfig::default();
    let mut sim = Sim::with_addrs(cfg, addrs);
    let first_sybil = e.honest;
    let total = sim.len();
    sim.make_sybils(first_sybil..total);
    let spacing = Duration::from_micros((10_000_000 / e.honest.max(1) as u64).clamp(100, 5_000));
    for i in 1..e.honest {
        let j = rng.random_range(0..i);
        sim.bootstrap(i, &[j]);
        sim.run_for(spacing);
    }
    sim.run_for(Duration::from_secs(5));
    for i in first_sybil..total {
        let j = rng.random_range(0..e.honest.max(1));
        sim.bootstrap(i, &[j]);
        sim.run_for(spacing);
    }
    sim.run_for(e.settle);
    (sim, targets)
}

/// Runs an eclipse attack from the start: [`join_eclipse`], then the honest lookups.
pub fn run_eclipse(e: &Eclipse) -> EclipseReport {
    let wall = Instant::now();
    let (mut sim, targets) = join_eclipse(e);
    measure_eclipse(&mut sim, e, &targets, wall)
}

/// On a network from [`join_eclipse`]: `e.lookups` lookups from random honest nodes for IDs
/// next to the targets, and what they found. `wall` is when the run began.
pub fn measure_eclipse(
    sim: &mut Sim,
    e: &Eclipse,
    targets: &[NodeId],
    wall: Instant,
) -> EclipseReport {
    let mut rng = ChaCha8Rng::seed_from_u64(e.seed ^ 0x0100_c0e5);
    let honest: Vec<usize> = (0..sim.len())
        .filter(|&i| sim.is_alive(i) && !sim.is_sybil(i))
        .collect();
    let mut results: Vec<(usize, LookupResult)> = Vec::with_capacity(e.lookups);
    let mut pending = Vec::new();
    let mut started = 0;
    while results.len() < e.lookups && !honest.is_empty() && !targets.is_empty() {
        while started < e.lookups && pending.len() < e.concurrency.max(1) {
            let from = honest[rng.random_range(0..honest.len())];
            let base = targets[rng.random_range(0..targets.len())];
            let target = near(&base, e.target_prefix_bits, &mut rng);
            if let Some(id) = sim.start_lookup(from, target) {
                pending.push((from, id));
            }
            started += 1;
        }
        if pending.is_empty() || !sim.step() {
            break;
        }
        let mut i = 0;
        while i < pending.len() {
            let (from, id) = pending[i];
            if let Some(r) = sim.take_result(from, id) {
                results.push((from, r));
                pending.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
    report(sim, e, &results, wall)
}

/// A random ID sharing the first `bits` bits with `base`.
fn near(base: &NodeId, bits: usize, rng: &mut ChaCha8Rng) -> NodeId {
    let mut out: [u8; 32] = rng.random();
    for bit in 0..bits.min(256) {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        out[byte] = (out[byte] & !mask) | (base.0[byte] & mask);
    }
    NodeId(out)
}

fn report(
    sim: &Sim,
    e: &Eclipse,
    results: &[(usize, LookupResult)],
    wall: Instant,
) -> EclipseReport {
    let k = sim.cfg.engine.lookup.k;
    let n = results.len().max(1) as f64;
    let (mut closest, mut prefix, mut captured) = (0usize, 0usize, 0usize);
    let (mut frac, mut sybils_in, mut honest_in) = (0f64, 0usize, 0usize);
    for (from, r) in results {
        let origin = sim.addr(*from);
        let truth: Vec<SocketAddr> = sim
            .true_closest_honest(&r.target, k + 1)
            .into_iter()
            .filter(|a| *a != origin)
            .take(k)
            .collect();
        let got: Vec<SocketAddr> = r.closest.iter().map(|f| f.addr).collect();
        let honest_got: Vec<SocketAddr> = got
            .iter()
            .copied()
            .filter(|a| !sim.index_of(*a).is_some_and(|i| sim.is_sybil(i)))
            .collect();
        sybils_in += got.len() - honest_got.len();
        honest_in += honest_got.len();
        closest += usize::from(truth.first().is_some_and(|t| got.contains(t)));
        captured += usize::from(honest_got.is_empty());
        prefix += usize::from(
            !honest_got.is_empty()
                && honest_got.len() <= truth.len()
                && honest_got[..] == truth[..honest_got.len()],
        );
        let hits = truth.iter().filter(|t| got.contains(t)).count();
        frac += hits as f64 / truth.len().max(1) as f64;
    }
    let honest_nodes: Vec<usize> = (0..sim.len())
        .filter(|&i| sim.is_alive(i) && !sim.is_sybil(i))
        .collect();
    let mut with = 0usize;
    let mut max_in = 0usize;
    for &i in &honest_nodes {
        let count = sim.engine(i).map_or(0, |en| {
            en.table()
                .contacts()
                .filter(|c| sim.index_of(c.addr()).is_some_and(|j| sim.is_sybil(j)))
                .count()
        });
        with += usize::from(count > 0);
        max_in = max_in.max(count);
    }
    let sybil_addrs: Vec<SocketAddr> = (0..sim.len())
        .filter(|&i| sim.is_sybil(i))
        .map(|i| sim.addr(i))
        .collect();
    let ips: HashSet<IpAddr> = sybil_addrs.iter().map(|a| a.ip()).collect();
    let nets: HashSet<crate::addr::Subnet> =
        ips.iter().map(|ip| crate::addr::subnet(*ip)).collect();
    EclipseReport {
        caps: e.caps,
        honest: honest_nodes.len(),
        sybils: sybil_addrs.len(),
        sybil_ips: ips.len(),
        sybil_subnets: nets.len(),
        targets: e.targets,
        lookups: results.len(),
        closest_honest_rate: closest as f64 / n,
        honest_k_fraction: frac / n,
        honest_prefix_rate: prefix as f64 / n,
        captured_rate: captured as f64 / n,
        sybils_per_result: sybils_in as f64 / n,
        honest_per_result: honest_in as f64 / n,
        tables_with_sybils: with as f64 / honest_nodes.len().max(1) as f64,
        max_sybils_in_a_table: max_in,
        trace_hash: format!("{:016x}", sim.trace_hash()),
        wall_seconds: wall.elapsed().as_secs_f64(),
    }
}
