//! Warm start: fill every table from the true population, as a converged network would
//! have it, without running the joins (for measuring lookups at 100,000 nodes).

use super::Sim;
use crate::id::NodeId;
use crate::rng::NodeRng;
use rand::RngExt;

/// The IDs sharing the first `bits` bits with `id`, as a range of `sorted` (by ID).
fn prefix_range(sorted: &[(NodeId, usize)], id: &NodeId, bits: usize) -> (usize, usize) {
    let mut lo = [0u8; 32];
    let mut hi = [0xffu8; 32];
    for bit in 0..bits {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        if id.0[byte] & mask != 0 {
            lo[byte] |= mask;
        } else {
            hi[byte] &= !mask;
        }
    }
    let start = sorted.partition_point(|(x, _)| x.0 < lo);
    let end = sorted.partition_point(|(x, _)| x.0 <= hi);
    (start, end)
}

impl Sim {
    /// Fills each live node's table with up to k random members of each of its buckets,
    /// chosen from the live population with a seeded RNG. Bucket b of node x holds the IDs
    /// that share exactly b leading bits with x: a contiguous range in ID order.
    pub fn warm_start(&mut self, seed: u64) {
        let mut rng = NodeRng::from_u64(seed);
        let mut sorted: Vec<(NodeId, usize)> = (0..self.len())
            .filter(|&i| self.is_alive(i))
            .map(|i| (self.id(i), i))
            .collect();
        sorted.sort_unstable();
        let now = self.now();
        for i in 0..self.len() {
            if !self.is_alive(i) {
                continue;
            }
            let me = self.id(i);
            let k = self.cfg.engine.table.k;
            let mut picks = Vec::new();
            for b in 0..256 {
                // Members of bucket b: share b bits, differ at bit b.
                let (s0, e0) = prefix_range(&sorted, &me, b);
                let (s1, e1) = prefix_range(&sorted, &me, b + 1);
                let count = (e0 - s0) - (e1 - s1);
                if count > 0 {
                    let members: Vec<usize> = (s0..s1).chain(e1..e0).collect();
                    if members.len() <= k {
                        picks.extend(members.iter().map(|&j| sorted[j].1));
                    } else {
                        for _ in 0..k {
                            picks.push(sorted[members[rng.random_range(0..members.len())]].1);
                        }
                    }
                }
                if e1 - s1 <= 1 {
                    break;
                }
            }
            for j in picks {
                let a = self.addr(j);
                if let Some(e) = self.engine_mut(i) {
                    e.preload_contact(now, a);
                }
            }
        }
        for i in 0..self.len() {
            self.reschedule(i);
        }
    }
}
