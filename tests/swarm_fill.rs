//! End to end on loopback: a real-socket swarm fills every routing table from `Peers` replies
//! to exactly the room a brute-force view of the swarm says it has.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use telekad::swarm::{room, Swarm, SwarmConfig};

/// SHA-256 of `ip:port`, computed here without telekad's own ID code.
fn id_of(addr: SocketAddr) -> [u8; 32] {
    Sha256::digest(addr.to_string().as_bytes()).into()
}

/// Length of the common bit prefix of two IDs (the k-bucket index); `None` if equal.
fn common_prefix(a: &[u8; 32], b: &[u8; 32]) -> Option<usize> {
    for i in 0..32 {
        let x = a[i] ^ b[i];
        if x != 0 {
            return Some(i * 8 + x.leading_zeros() as usize);
        }
    }
    None
}

/// The other swarm members by bucket index, as seen from `own`.
fn buckets_of(own: SocketAddr, all: &[SocketAddr]) -> BTreeMap<usize, Vec<SocketAddr>> {
    let me = id_of(own);
    let mut out: BTreeMap<usize, Vec<SocketAddr>> = BTreeMap::new();
    for &a in all {
        if a == own {
            continue;
        }
        let idx = common_prefix(&me, &id_of(a)).expect("distinct addresses have distinct IDs");
        out.entry(idx).or_default().push(a);
    }
    out
}

/// Brute force: every node on its own /24, so only k limits a bucket.
fn brute_force_room(own: SocketAddr, all: &[SocketAddr], k: usize) -> usize {
    buckets_of(own, all).values().map(|v| v.len().min(k)).sum()
}

async fn fill_and_check(n: usize) {
    let cfg = SwarmConfig::new(n);
    let k = cfg.engine.table.k;
    assert_eq!(k, 20);
    let table_cfg = cfg.engine.table.clone();
    let swarm = Swarm::start(cfg).await.expect("swarm starts on loopback");
    let addrs = swarm.addrs().to_vec();
    assert_eq!(addrs.len(), n);
    for a in &addrs {
        assert!(a.ip().is_loopback(), "{a} is not loopback");
    }
    // Every node on its own /24, so the diversity caps never bind here.
    let subnets: HashSet<[u8; 3]> = addrs
        .iter()
        .map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                [o[0], o[1], o[2]]
            }
            std::net::IpAddr::V6(_) => panic!("swarm uses IPv4 loopback"),
        })
        .collect();
    assert_eq!(subnets.len(), n, "each node on its own /24");

    let (report, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    let statuses = swarm.statuses().await;
    swarm.shutdown().await;
    println!(
        "{n} nodes: settled in {:?}, filled {}/{}, contacts min {} mean {:.1} max {} (room mean {:.1}), {} datagrams, {} skipped",
        settled, report.filled, report.nodes, report.contacts_min, report.contacts_mean,
        report.contacts_max, report.expected_mean, report.datagrams, report.skipped
    );
    assert!(settled.is_some(), "swarm did not settle: {report:?}");
    assert_eq!(statuses.len(), n, "every node still running");

    let members: HashSet<SocketAddr> = addrs.iter().copied().collect();
    let mut full_buckets_seen = 0;
    for s in &statuses {
        let own = s.local_addr;
        let want = room(own, &addrs, &table_cfg);
        let brute = brute_force_room(own, &addrs, k);
        assert_eq!(want, brute, "room() disagrees with brute force for {own}");
        let have: Vec<SocketAddr> = s.contacts.iter().map(|c| c.addr()).collect();
        assert_eq!(
            have.len(),
            want,
            "{own} holds {} contacts, room for {want}",
            have.len()
        );
        let unique: HashSet<SocketAddr> = have.iter().copied().collect();
        assert_eq!(unique.len(), have.len(), "{own} holds duplicate contacts");
        assert!(!unique.contains(&own), "{own} holds itself");
        for a in &have {
            assert!(members.contains(a), "{own} holds {a}, not a swarm member");
        }
        // Bucket by bucket: a bucket with room for all its members holds all of them; a
        // bucket with more members than k holds exactly k of them.
        for (idx, in_bucket) in buckets_of(own, &addrs) {
            let held: Vec<&SocketAddr> = have
                .iter()
                .filter(|a| common_prefix(&id_of(own), &id_of(**a)) == Some(idx))
                .collect();
            if in_bucket.len() <= k {
                let held: HashSet<SocketAddr> = held.into_iter().copied().collect();
                let all: HashSet<SocketAddr> = in_bucket.iter().copied().collect();
                assert_eq!(held, all, "{own}: bucket {idx} misses members");
            } else {
                full_buckets_seen += 1;
                assert_eq!(held.len(), k, "{own}: bucket {idx} not full");
            }
        }
        // The contact IDs the node reports are SHA-256 of their addresses.
        for c in &s.contacts {
            assert_eq!(c.id().0, id_of(c.addr()), "contact id of {}", c.addr());
        }
        assert_eq!(s.id.0, id_of(own), "node id of {own}");
    }
    if n >= 64 {
        assert!(
            full_buckets_seen > 0,
            "with {n} nodes some bucket must overflow k"
        );
    }
}

/// 30 nodes: every bucket has room for all members, so every table holds the whole swarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_fill_their_tables() {
    fill_and_check(30).await;
}

/// 64 nodes: bucket 0 holds about half the swarm, more than k, so room is below n - 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_nodes_fill_full_buckets_to_k() {
    fill_and_check(64).await;
}
