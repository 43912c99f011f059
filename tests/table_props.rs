//! Routing-table properties against a brute-force model, over thousands of seeded random
//! addresses: `closest()` is exactly the n nearest known, caps and bucket sizes hold, order
//! is least-recently-seen first, and only contacts that failed to answer are ever evicted.

use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use telekad::addr::subnet;
use telekad::id::NodeId;
use telekad::table::{RoutingTable, Seen, TableConfig};
use telekad::time::Time;

#[derive(Debug, Clone)]
enum Op {
    /// Address index answered us.
    Seen(usize),
    /// Address index failed to answer.
    Failed(usize),
    /// Check closest() for a random target.
    Closest([u8; 32], usize),
}

/// A pool of addresses crowded onto few IPs and /24s, so that caps bite.
fn pool(n: usize, seed: u64) -> Vec<SocketAddr> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            let ip = Ipv4Addr::new(
                127,
                (r % 3) as u8,
                ((r >> 8) % 40) as u8,
                1 + ((r >> 16) % 4) as u8,
            );
            SocketAddr::new(IpAddr::V4(ip), 1000 + ((r >> 24) % 50_000) as u16)
        })
        .collect()
}

fn op_strategy(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..n).prop_map(Op::Seen),
        2 => (0..n).prop_map(Op::Failed),
        1 => (any::<[u8; 32]>(), 0usize..40).prop_map(|(t, k)| Op::Closest(t, k)),
    ]
}

fn check_invariants(t: &RoutingTable, cfg: &TableConfig) {
    let own = t.own_id();
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    let mut per_net: HashMap<telekad::addr::Subnet, usize> = HashMap::new();
    let mut count = 0;
    for idx in 0..256 {
        let b = t.bucket(idx);
        assert!(b.len() <= cfg.k, "bucket {idx} over k");
        for w in b.windows(2) {
            assert!(
                w[0].last_seen() <= w[1].last_seen(),
                "bucket {idx} not LRS-first"
            );
        }
        for c in b {
            assert_eq!(c.id(), NodeId::of_addr(c.addr()));
            assert_eq!(
                own.bucket_index(&c.id()),
                Some(idx),
                "contact in wrong bucket"
            );
            *per_ip.entry(c.addr().ip()).or_default() += 1;
            *per_net.entry(subnet(c.addr().ip())).or_default() += 1;
            count += 1;
        }
    }
    assert_eq!(count, t.len());
    assert!(
        per_ip.values().all(|&v| v <= cfg.max_per_ip),
        "per-IP cap broken"
    );
    assert!(
        per_net.values().all(|&v| v <= cfg.max_per_subnet),
        "per-subnet cap broken"
    );
}

fn run_ops(ops: &[Op], addrs: &[SocketAddr], own: SocketAddr, cfg: TableConfig) {
    let mut t = RoutingTable::new(NodeId::of_addr(own), cfg.clone());
    // Addresses that failed to answer since they last answered: the only ones that may go.
    let mut unresponsive: HashSet<SocketAddr> = HashSet::new();
    for (step, op) in ops.iter().enumerate() {
        let now = Time::from_millis(step as u64);
        let before: HashSet<SocketAddr> = t.contacts().map(|c| c.addr()).collect();
        match op {
            Op::Seen(i) => {
                let a = addrs[*i];
                let room = t.admits(a);
                let was_in = before.contains(&a);
                let outcome = t.seen(a, now, None);
                unresponsive.remove(&a);
                if was_in {
                    assert_eq!(outcome, Seen::Refreshed);
                    let b = t.bucket(t.own_id().bucket_index(&NodeId::of_addr(a)).unwrap());
                    assert_eq!(
                        b.last().map(|c| c.addr()),
                        Some(a),
                        "refreshed contact not MRS"
                    );
                } else if room {
                    assert_eq!(outcome, Seen::Added, "room but not added");
                } else {
                    assert!(matches!(outcome, Seen::Full { .. } | Seen::Capped));
                    if let Seen::Full { lrs, .. } = outcome {
                        let idx = t.own_id().bucket_index(&NodeId::of_addr(a)).unwrap();
                        assert_eq!(t.bucket(idx).first().map(|c| c.addr()), Some(lrs));
                    }
                }
                assert_eq!(t.contains(a), was_in || room);
            }
            Op::Failed(i) => {
                let a = addrs[*i];
                if before.contains(&a) {
                    unresponsive.insert(a);
                }
                t.failed(a);
            }
            Op::Closest(target, n) => {
                let target = NodeId(*target);
                let got: Vec<SocketAddr> =
                    t.closest(&target, *n).iter().map(|c| c.addr()).collect();
                let mut all: Vec<(telekad::id::Distance, SocketAddr)> = t
                    .contacts()
                    .map(|c| (c.id().distance(&target), c.addr()))
                    .collect();
                all.sort();
                let want: Vec<SocketAddr> = all.into_iter().take(*n).map(|(_, a)| a).collect();
                assert_eq!(got, want, "closest() differs from brute force");
            }
        }
        let after: HashSet<SocketAddr> = t.contacts().map(|c| c.addr()).collect();
        for gone in before.difference(&after) {
            assert!(
                unresponsive.contains(gone),
                "evicted {gone}, which never failed to answer"
            );
        }
        check_invariants(&t, &cfg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(seed in any::<u64>(), ops in prop::collection::vec(op_strategy(3000), 1..1500)) {
        let addrs = pool(3000, seed);
        let own: SocketAddr = "127.9.9.9:24254".parse().unwrap();
        run_ops(&ops, &addrs, own, TableConfig::default());
    }

    #[test]
    fn small_buckets_and_tight_caps(seed in any::<u64>(), ops in prop::collection::vec(op_strategy(500), 1..800)) {
        let addrs = pool(500, seed);
        let own: SocketAddr = "127.9.9.9:24254".parse().unwrap();
        let cfg = TableConfig { k: 3, replacements: 2, max_per_ip: 1, max_per_subnet: 2, max_failures: 2 };
        run_ops(&ops, &addrs, own, cfg);
    }
}

/// With thousands of distinct addresses (no caps biting), closest() and closest_addrs() over
/// a large table equal brute force for many random targets, including the own ID.
#[test]
fn closest_equals_brute_force_on_a_large_table() {
    let cfg = TableConfig {
        k: 20,
        max_per_ip: 0,
        max_per_subnet: 0,
        ..TableConfig::default()
    };
    let own: SocketAddr = "127.200.0.1:24254".parse().unwrap();
    let mut t = RoutingTable::new(NodeId::of_addr(own), cfg);
    for i in 0..20_000usize {
        t.seen(telekad::sim::node_addr(i, 24254), Time::ZERO, None);
    }
    assert!(
        t.len() > 200,
        "table should hold a few hundred contacts, has {}",
        t.len()
    );
    let contacts: Vec<(NodeId, SocketAddr)> = t.contacts().map(|c| (c.id(), c.addr())).collect();
    let mut targets: Vec<NodeId> = (0..500u32)
        .map(|i| NodeId::hash(&i.to_le_bytes()))
        .collect();
    targets.push(t.own_id());
    targets.extend(contacts.iter().take(20).map(|(id, _)| *id));
    for target in targets {
        for n in [1, 3, 20, 50] {
            let got: Vec<SocketAddr> = t.closest(&target, n).iter().map(|c| c.addr()).collect();
            let mut all: Vec<_> = contacts
                .iter()
                .map(|(id, a)| (id.distance(&target), *a))
                .collect();
            all.sort();
            let want: Vec<SocketAddr> = all.iter().take(n).map(|(_, a)| *a).collect();
            assert_eq!(got, want);
            // The answer to a WhereAreThey: the same, leaving out the asker (the nearest
            // contact, a farther one, or an address the table does not hold).
            for except in [all[0].1, all[n].1, own] {
                let mut got = Vec::new();
                t.closest_addrs(&target, n, Some(except), &mut got);
                let want: Vec<SocketAddr> = all
                    .iter()
                    .map(|(_, a)| *a)
                    .filter(|a| *a != except)
                    .take(n)
                    .collect();
                assert_eq!(got, want, "leaving out {except}");
            }
        }
    }
}

/// A full bucket keeps its old contacts while they answer; a failed one is replaced by the
/// freshest spare.
#[test]
fn ping_before_evict() {
    let cfg = TableConfig {
        k: 2,
        replacements: 2,
        max_per_ip: 0,
        max_per_subnet: 0,
        max_failures: 3,
    };
    let own: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let own_id = NodeId::of_addr(own);
    let mut t = RoutingTable::new(own_id, cfg);
    // Four addresses in bucket 0 of own. (Contacts keep times to the tenth of a second.)
    let in_b0: Vec<SocketAddr> = (2..60_000u16)
        .map(|p| SocketAddr::from(([127, 0, 0, 2], p)))
        .filter(|a| own_id.bucket_index(&NodeId::of_addr(*a)) == Some(0))
        .take(4)
        .collect();
    assert_eq!(t.seen(in_b0[0], Time::from_millis(100), None), Seen::Added);
    assert_eq!(t.seen(in_b0[1], Time::from_millis(200), None), Seen::Added);
    assert_eq!(
        t.seen(in_b0[2], Time::from_millis(300), None),
        Seen::Full {
            lrs: in_b0[0],
            lrs_seen: Time::from_millis(100)
        }
    );
    // The old contact answers the eviction ping: it stays and becomes most recent.
    assert_eq!(
        t.seen(in_b0[0], Time::from_millis(400), None),
        Seen::Refreshed
    );
    assert_eq!(
        t.seen(in_b0[3], Time::from_millis(500), None),
        Seen::Full {
            lrs: in_b0[1],
            lrs_seen: Time::from_millis(200)
        }
    );
    // in_b0[1] fails: it is replaced by the freshest spare, in_b0[3].
    assert!(t.failed(in_b0[1]));
    let b: Vec<SocketAddr> = t.bucket(0).iter().map(|c| c.addr()).collect();
    assert_eq!(b, vec![in_b0[0], in_b0[3]]);
}
