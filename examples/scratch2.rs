use std::time::Duration;
use telekad::sim::{Sim, SimConfig};

fn main() {
    let n = 200;
    let mut sim = Sim::new(SimConfig::new(n, 1));
    sim.join_all(Duration::from_millis(5), Duration::from_secs(30));
    let mut v: Vec<(usize, usize)> = (0..n).map(|i| (sim.engine(i).unwrap().table().len(), i)).collect();
    v.sort();
    println!("{:?}", &v[..10]);
    let (_, i) = v[0];
    let e = sim.engine(i).unwrap();
    println!("node {i} {} stats {:?}", e.local_addr(), e.stats());
    // how many tables contain node i
    let a = sim.addr(i);
    let c = (0..n).filter(|&j| sim.engine(j).unwrap().table().contains(a)).count();
    println!("known by {c}");
    let t = e.table();
    let own = e.id();
    let mut expect = vec![0usize; 256];
    for j in 0..n { if j != i { let b = own.bucket_index(&telekad::id::NodeId::of_addr(sim.addr(j))).unwrap(); expect[b] += 1; } }
    for b in 0..12 { println!("bucket {b}: have {} expect {}", t.bucket(b).len(), expect[b].min(20)); }
}
#[allow(dead_code)]
fn unused() {}
