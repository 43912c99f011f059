use std::time::Duration;
use telekad::id::NodeId;
use telekad::sim::{Sim, SimConfig};

fn main() {
    let n = 200;
    let mut sim = Sim::new(SimConfig::new(n, 1));
    sim.join_all(Duration::from_millis(5), Duration::from_secs(30));
    let mut shown = 0;
    for l in 0..200 {
        let from = (l * 7919) % n;
        let tgt = NodeId::of_addr(sim.addr((l * 104729 + 13) % n));
        let truth0 = sim.true_closest(&tgt, 20);
        let kb: Vec<usize> = truth0.iter().map(|m| truth0.iter().filter(|a| sim.engine(sim.index_of(**a).unwrap()).unwrap().table().contains(*m)).count()).collect();
        let in_from: usize = truth0.iter().filter(|m| sim.engine(from).unwrap().table().contains(**m)).count();
        let r = sim.lookup(from, tgt).unwrap();
        let truth = sim.true_closest(&tgt, 20);
        let got: Vec<_> = r.closest.iter().map(|f| f.addr).collect();
        if got != truth && shown < 3 {
            shown += 1;
            let missing: Vec<_> = truth.iter().filter(|a| !got.contains(a)).collect();
            println!("before: known_by_truth {:?} in_from_table {in_from} from_is_truth {}", kb, truth0.contains(&sim.addr(from)));
            println!("lookup {l}: got {} queried {} answered {} hops {} missing {}", got.len(), r.queried, r.answered, r.hops, missing.len());
            for m in missing {
                let i = sim.index_of(*m).unwrap();
                let pos = truth.iter().position(|a| a == m).unwrap();
                let known_by = (0..n).filter(|&j| sim.engine(j).unwrap().table().contains(*m)).count();
                // known by any of the truth set?
                let known_by_truth = truth.iter().filter(|a| sim.engine(sim.index_of(**a).unwrap()).unwrap().table().contains(*m)).count();
                println!("   missing rank {pos} node {i} table {} known_by {known_by} known_by_truth {known_by_truth}", sim.engine(i).unwrap().table().len());
            }
        }
    }
}
