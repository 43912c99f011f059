//! Standard simulator runs: join N nodes, optionally kill some, run M lookups, and measure.

use super::{NetConfig, Sim, SimConfig};
use crate::config::Config;
use crate::id::NodeId;
use crate::lookup::LookupResult;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Nodes in the network.
    pub nodes: usize,
    /// Lookups to run (each from a random live node for the ID of a random live node).
    pub lookups: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Datagram loss probability.
    pub loss: f64,
    /// Share of nodes killed at once after joining, before the lookups.
    pub churn: f64,
    /// Virtual time run after the kill, before the lookups (a refresh period).
    pub after_churn: Duration,
    /// Lookups in flight at once across the network.
    pub concurrency: usize,
    /// Engine configuration.
    pub engine: Config,
    /// Network model (its `loss` is overridden by `loss`).
    pub net: NetConfig,
    /// Fill tables from the true population instead of running every join
    /// ([`Sim::warm_start`]); for measuring lookups in very large networks.
    pub warm_start: bool,
}

impl Scenario {
    /// `nodes` nodes, `lookups` lookups, no loss, no churn.
    pub fn new(nodes: usize, lookups: usize, seed: u64) -> Scenario {
        Scenario {
            nodes,
            lookups,
            seed,
            loss: 0.0,
            churn: 0.0,
            after_churn: Duration::from_secs(15 * 60),
            concurrency: 64,
            engine: Config::default(),
            net: NetConfig::default(),
            warm_start: false,
        }
    }
}

/// The figures of one run (the keys of `telekad simulate --json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimReport {
    /// Nodes in the network.
    pub nodes: usize,
    /// Lookups run.
    pub lookups: usize,
    /// Share of lookups whose result equals the true k closest live nodes (origin excluded).
    pub exact_rate: f64,
    /// Share of lookups that reached the target node itself.
    pub found_rate: f64,
    /// Median hops.
    pub hops_p50: f64,
    /// 95th percentile hops.
    pub hops_p95: f64,
    /// Mean datagrams per lookup: queries sent plus answers received.
    pub messages_per_lookup: f64,
    /// Median lookup time, virtual milliseconds.
    pub virtual_ms_p50: f64,
    /// 95th percentile lookup time, virtual milliseconds.
    pub virtual_ms_p95: f64,
    /// Wall-clock seconds for the whole run (join included).
    pub wall_seconds: f64,
    /// Resident memory per node (process RSS growth divided by nodes).
    pub bytes_per_node: u64,
    /// Hash of every delivery, in hex: equal seeds give equal hashes.
    pub trace_hash: String,
    /// Datagrams delivered in the whole run (join included).
    pub datagrams: u64,
}

/// The `p`-quantile (0..=1) of `v` by nearest rank; 0 for an empty list.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A joined network as a scenario describes it (loss applies from the start), and the
/// memory it took per node.
pub fn join(s: &Scenario, mut progress: impl FnMut(&str, usize, usize)) -> (Sim, u64) {
    // Freed memory of an earlier network in this process would otherwise be reused
    // unseen, and the new network would look almost free.
    crate::procstat::release_free_memory();
    let rss0 = rss_bytes();
    let mut cfg = SimConfig::new(s.nodes, s.seed);
    cfg.engine = s.engine.clone();
    cfg.net = NetConfig {
        loss: s.loss,
        ..s.net.clone()
    };
    let mut sim = Sim::new(cfg);
    if s.warm_start {
        progress("warm", 0, s.nodes);
        sim.warm_start(s.seed);
        progress("warm", s.nodes, s.nodes);
    } else {
        let spacing = Duration::from_micros((10_000_000 / s.nodes.max(1) as u64).clamp(100, 5_000));
        sim.join_all_with(spacing, Duration::from_secs(5), |i, n| {
            progress("join", i, n)
        });
    }
    crate::procstat::release_free_memory();
    let bytes_per_node = rss_bytes().saturating_sub(rss0) / s.nodes.max(1) as u64;
    (sim, bytes_per_node)
}

/// Runs a scenario from the start: join, then [`measure`].
pub fn run(s: &Scenario, mut progress: impl FnMut(&str, usize, usize)) -> SimReport {
    let wall = Instant::now();
    let (mut sim, bytes_per_node) = join(s, &mut progress);
    measure(&mut sim, s, wall, bytes_per_node, progress)
}

/// On a joined network: sets the scenario's loss, kills its churn share of nodes and runs
/// `after_churn`, then runs its lookups and reports. `wall` is when the run began.
pub fn measure(
    sim: &mut Sim,
    s: &Scenario,
    wall: Instant,
    bytes_per_node: u64,
    mut progress: impl FnMut(&str, usize, usize),
) -> SimReport {
    sim.set_loss(s.loss);
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x5eed);
    let n = sim.len();
    if s.churn > 0.0 {
        let kill = ((n as f64) * s.churn).round() as usize;
        let mut order: Vec<usize> = (0..n).filter(|&i| sim.is_alive(i)).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for &i in order.iter().take(kill.min(n.saturating_sub(2))) {
            sim.kill(i);
        }
        sim.run_for(s.after_churn);
    }
    let live: Vec<usize> = (0..n).filter(|&i| sim.is_alive(i)).collect();
    let mut results: Vec<(usize, NodeId, LookupResult)> = Vec::with_capacity(s.lookups);
    let mut pending: Vec<(usize, NodeId, crate::engine::LookupId)> = Vec::new();
    let mut started = 0;
    while results.len() < s.lookups {
        while started < s.lookups && pending.len() < s.concurrency.max(1) {
            let from = live[rng.random_range(0..live.len())];
            let mut to = live[rng.random_range(0..live.len())];
            if to == from && live.len() > 1 {
                to = live[(live.iter().position(|&x| x == from).unwrap_or(0) + 1) % live.len()];
            }
            let target = NodeId::of_addr(sim.addr(to));
            if let Some(id) = sim.start_lookup(from, target) {
                pending.push((from, target, id));
            }
            started += 1;
        }
        if pending.is_empty() || !sim.step() {
            break;
        }
        let mut i = 0;
        while i < pending.len() {
            let (from, target, id) = pending[i];
            if let Some(r) = sim.take_result(from, id) {
                results.push((from, target, r));
                pending.swap_remove(i);
                progress("lookups", results.len(), s.lookups);
            } else {
                i += 1;
            }
        }
    }
    report(sim, s, &results, wall, bytes_per_node)
}

fn report(
    sim: &Sim,
    s: &Scenario,
    results: &[(usize, NodeId, LookupResult)],
    wall: Instant,
    bytes_per_node: u64,
) -> SimReport {
    let k = s.engine.lookup.k;
    let n = results.len().max(1) as f64;
    let nodes = sim.len();
    let mut exact = 0usize;
    let mut found = 0usize;
    let mut hops = Vec::with_capacity(results.len());
    let mut ms = Vec::with_capacity(results.len());
    let mut messages = 0u64;
    for (from, target, r) in results {
        let origin = sim.addr(*from);
        let truth: Vec<SocketAddr> = sim
            .true_closest(target, k + 1)
            .into_iter()
            .filter(|a| *a != origin)
            .take(k)
            .collect();
        let got: Vec<SocketAddr> = r.closest.iter().map(|f| f.addr).collect();
        exact += usize::from(got == truth);
        found += usize::from(r.found);
        hops.push(f64::from(r.hops));
        ms.push(r.elapsed.as_secs_f64() * 1000.0);
        messages += u64::from(r.queried) + u64::from(r.answered);
    }
    SimReport {
        nodes,
        lookups: results.len(),
        exact_rate: exact as f64 / n,
        found_rate: found as f64 / n,
        hops_p50: percentile(&mut hops.clone(), 0.5),
        hops_p95: percentile(&mut hops, 0.95),
        messages_per_lookup: messages as f64 / n,
        virtual_ms_p50: percentile(&mut ms.clone(), 0.5),
        virtual_ms_p95: percentile(&mut ms, 0.95),
        wall_seconds: wall.elapsed().as_secs_f64(),
        bytes_per_node,
        trace_hash: format!("{:016x}", sim.trace_hash()),
        datagrams: sim.datagrams_delivered(),
    }
}
