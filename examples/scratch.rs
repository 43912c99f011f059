use std::time::Duration;
use telekad::id::NodeId;
use telekad::sim::{Sim, SimConfig};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let t0 = std::time::Instant::now();
    let mut sim = Sim::new(SimConfig::new(n, 1));
    sim.join_all(Duration::from_millis(5), Duration::from_secs(30));
    println!("joined in {:?}, sent {}", t0.elapsed(), sim.datagrams_sent());
    let ls: u64 = (0..n).map(|i| sim.engine(i).unwrap().stats().lookups_started).sum();
    println!("lookups per node during join {}", ls as f64 / n as f64);
    let sizes: Vec<usize> = (0..n).map(|i| sim.engine(i).unwrap().table().len()).collect();
    println!("table min {} max {} avg {}", sizes.iter().min().unwrap(), sizes.iter().max().unwrap(), sizes.iter().sum::<usize>() / n);
    let mut exact = 0; let mut found = 0; let mut q = 0;
    let lookups = 200;
    let before = sim.datagrams_sent();
    for l in 0..lookups {
        let from = (l * 7919) % n;
        let tgt = NodeId::of_addr(sim.addr((l * 104729 + 13) % n));
        let r = sim.lookup(from, tgt).unwrap();
        let fa = sim.addr(from);
        let truth: Vec<_> = sim.true_closest(&tgt, 21).into_iter().filter(|a| *a != fa).take(20).collect();
        let got: Vec<_> = r.closest.iter().map(|f| f.addr).collect();
        if got == truth { exact += 1; }
        if r.found { found += 1; }
        q += r.queried;
    }
    println!("exact {exact}/{lookups} found {found}/{lookups} dgrams/lookup(all) {} queried/lookup {}", (sim.datagrams_sent()-before) as f64 / lookups as f64, q as f64 / lookups as f64);
    println!("total {:?}", t0.elapsed());
}
