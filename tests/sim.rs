//! The deterministic simulator at 2,000 nodes: lookup quality without loss, with 10% loss,
//! and after 30% of nodes die at once; holder lookups for 200 announced ids with 10% loss;
//! the same seed gives the same trace; a joining node fills its table from its bootstrap
//! alone. Thresholds: spec/simulation.md.

use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use telekad::id::NodeId;
use telekad::sim::scenario::{self, Scenario};
use telekad::sim::{Sim, SimConfig};
use telekad::swarm::room;

const NODES: usize = 2000;
const LOOKUPS: usize = 300;

/// One joined 2,000-node network, shared: each test measures on its own copy.
fn joined() -> &'static (Sim, u64) {
    static JOINED: OnceLock<(Sim, u64)> = OnceLock::new();
    JOINED.get_or_init(|| scenario::join(&Scenario::new(NODES, LOOKUPS, 1), |_, _, _| {}))
}

fn measure(s: &Scenario) -> scenario::SimReport {
    let (sim, bytes) = joined();
    let mut sim = sim.clone();
    let r = scenario::measure(&mut sim, s, Instant::now(), *bytes, |_, _, _| {});
    println!("{}", serde_json::to_string(&r).unwrap());
    r
}

#[test]
fn no_loss_lookups_are_exact() {
    let r = measure(&Scenario::new(NODES, LOOKUPS, 2));
    assert_eq!(r.lookups, LOOKUPS);
    assert!(r.exact_rate >= 0.99, "exact_rate {}", r.exact_rate);
    assert_eq!(r.found_rate, 1.0);
    assert!(r.hops_p95 <= 5.0, "hops_p95 {}", r.hops_p95);
}

#[test]
fn ten_percent_loss_still_finds_targets() {
    let mut s = Scenario::new(NODES, LOOKUPS, 3);
    s.loss = 0.10;
    let r = measure(&s);
    assert_eq!(r.lookups, LOOKUPS);
    assert!(r.found_rate >= 0.99, "found_rate {}", r.found_rate);
}

#[test]
fn thirty_percent_killed_then_one_refresh_period() {
    let mut s = Scenario::new(NODES, LOOKUPS, 4);
    s.churn = 0.30;
    s.after_churn = s.engine.refresh_interval;
    let r = measure(&s);
    assert_eq!(r.lookups, LOOKUPS);
    assert!(r.found_rate >= 0.98, "found_rate {}", r.found_rate);
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| scenario::run(&Scenario::new(300, 40, seed), |_, _, _| {});
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.exact_rate, b.exact_rate);
    assert_eq!(a.virtual_ms_p95, b.virtual_ms_p95);
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "a different seed should change the trace"
    );
}

#[test]
fn joining_node_fills_its_table_from_one_bootstrap() {
    let n = 400;
    let mut sim = Sim::new(SimConfig::new(n + 1, 5));
    for i in 1..n {
        sim.bootstrap(i, &[(i * 7919) % i]);
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(60));
    let newcomer = n;
    sim.bootstrap(newcomer, &[0]);
    // Joining, it sweeps every bucket with one round of queries instead of a lookup each:
    // its self-lookup is the only lookup it runs (and holds memory for).
    let end = sim.now() + Duration::from_secs(10);
    let mut most_running = 0;
    while sim.now() < end && sim.step() {
        let running = sim.engine(newcomer).unwrap().lookups_running();
        most_running = most_running.max(running);
    }
    sim.run_until(end);
    assert_eq!(
        most_running, 1,
        "the newcomer ran up to {most_running} lookups at once"
    );
    let all: Vec<_> = (0..=n).map(|i| sim.addr(i)).collect();
    let me = sim.addr(newcomer);
    let table = sim.engine(newcomer).unwrap().table();
    let want = room(me, &all, table.config());
    println!(
        "newcomer has {} of {} contacts it has room for",
        table.len(),
        want
    );
    assert!(table.len() * 10 >= want * 9, "{} of {}", table.len(), want);
    // It knows its 20 true nearest, and they know it.
    let mine = NodeId::of_addr(me);
    let nearest: Vec<_> = sim
        .true_closest(&mine, 21)
        .into_iter()
        .filter(|a| *a != me)
        .take(20)
        .collect();
    for a in &nearest {
        assert!(table.contains(*a), "newcomer misses its neighbour {a}");
    }
    let known_by = nearest
        .iter()
        .filter(|a| {
            sim.engine(sim.index_of(**a).unwrap())
                .unwrap()
                .table()
                .contains(me)
        })
        .count();
    assert!(
        known_by >= 18,
        "only {known_by} of its 20 nearest know the newcomer"
    );
}

#[test]
fn holders_of_200_ids_found_with_ten_percent_loss() {
    let (sim, _) = joined();
    let mut sim = sim.clone();
    sim.set_loss(0.10);
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(32);
    let mut holders: BTreeMap<NodeId, BTreeSet<usize>> = BTreeMap::new();
    for i in 0..200u32 {
        let id = NodeId::hash(format!("content {i}").as_bytes());
        let count = rng.random_range(1..=3);
        let set: BTreeSet<usize> = (0..count).map(|_| rng.random_range(0..NODES)).collect();
        for &h in &set {
            assert!(sim.announce(h, id, &format!("copy at {h}")));
        }
        holders.insert(id, set);
    }
    sim.run_for(Duration::from_secs(5));
    // All 200 holder lookups at once, each from a random node that is not a holder.
    let mut pending = Vec::new();
    for (id, set) in &holders {
        let finder = loop {
            let f = rng.random_range(0..NODES);
            if !set.contains(&f) {
                break f;
            }
        };
        pending.push((finder, *id, sim.start_find_holders(finder, *id).unwrap()));
    }
    let mut found = 0;
    for (finder, id, l) in pending {
        let outcome = loop {
            if let Some(o) = sim.take_found(finder, l) {
                break o;
            }
            assert!(sim.step(), "simulation ran dry");
        };
        let (listed, _) = outcome;
        let set = &holders[&id];
        let real: BTreeSet<SocketAddr> = set.iter().map(|&h| sim.addr(h)).collect();
        for h in &listed {
            assert!(
                real.contains(&h.addr),
                "{} is not a holder of {id:?}",
                h.addr
            );
        }
        found += usize::from(!listed.is_empty());
    }
    println!(
        "holder lookups with 10% loss: {found}/{} found a holder",
        holders.len()
    );
    assert!(
        found * 100 >= holders.len() * 99,
        "{found}/{}",
        holders.len()
    );
}
