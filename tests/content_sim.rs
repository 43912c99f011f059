//! Content holders at scale (simulator, 2,000 nodes): 200 ids, each announced by 1..3
//! holders; with 10% datagram loss, holder lookups find a holder for >= 99% of ids, and list
//! only real holders. When announcers vanish their records expire. Thresholds:
//! spec/simulation.md.

use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use telekad::id::NodeId;
use telekad::sim::scenario::{self, Scenario};

#[test]
fn holders_found_with_ten_percent_loss_and_records_expire() {
    let started = Instant::now();
    let mut s = Scenario::new(2000, 0, 31);
    // A short record lifetime so that expiry shows within minutes of virtual time.
    s.engine.records.ttl = Duration::from_secs(120);
    s.engine.reannounce = Duration::from_secs(60);
    let (mut sim, _) = scenario::join(&s, |_, _, _| {});
    sim.set_loss(0.10);
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(32);
    let mut holders: BTreeMap<NodeId, BTreeSet<usize>> = BTreeMap::new();
    for i in 0..200u32 {
        let id = NodeId::hash(format!("content {i}").as_bytes());
        let count = rng.random_range(1..=3);
        let set: BTreeSet<usize> = (0..count).map(|_| rng.random_range(0..2000)).collect();
        for &h in &set {
            assert!(sim.announce(h, id, &format!("copy at {h}")));
        }
        holders.insert(id, set);
    }
    sim.run_for(Duration::from_secs(30));
    let mut found = 0;
    for (id, set) in &holders {
        let finder = loop {
            let f = rng.random_range(0..2000);
            if !set.contains(&f) {
                break f;
            }
        };
        let (listed, _) = sim.find_holders(finder, *id).expect("find finished");
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
    let rate = found as f64 / holders.len() as f64;
    println!(
        "holder lookups with 10% loss: {found}/{} found a holder",
        holders.len()
    );
    assert!(rate >= 0.99, "found_rate {rate}");

    // The holders of the first 50 ids vanish; the others keep announcing.
    let gone: Vec<NodeId> = holders.keys().take(50).copied().collect();
    let mut dead = BTreeSet::new();
    for id in &gone {
        for &h in &holders[id] {
            sim.kill(h);
            dead.insert(h);
        }
    }
    sim.run_for(Duration::from_secs(180));
    let live_finder = (0..2000).find(|i| !dead.contains(i)).unwrap();
    for id in &gone {
        let (listed, _) = sim.find_holders(live_finder, *id).unwrap();
        assert!(
            listed.is_empty(),
            "records of vanished holders outlived the TTL: {listed:?}"
        );
    }
    let mut still = 0;
    let mut checked = 0;
    for (id, set) in holders.iter().skip(50).take(50) {
        if set.iter().all(|h| dead.contains(h)) {
            continue;
        }
        checked += 1;
        let (listed, _) = sim.find_holders(live_finder, *id).unwrap();
        still += usize::from(!listed.is_empty());
    }
    println!("after 3 min: {still}/{checked} ids with live holders still listed");
    assert!(still * 100 >= checked * 98, "{still}/{checked}");
    println!("took {:?}", started.elapsed());
}
