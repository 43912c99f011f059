//! Persistence across restarts: a node saves its table (at shutdown and periodically), comes
//! back from it without any bootstrap address, and survives a corrupt or future state file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use telekad::driver::{load_state, Node, NodeConfig};
use telekad::persist::STATE_FILE;
use telekad::sim::node_addr;
use telekad::swarm::{Swarm, SwarmConfig};

mod common;
use common::TempDir;

fn config(bind: SocketAddr, dir: &Path, seed: u64) -> NodeConfig {
    let mut nc = NodeConfig::new(bind);
    nc.loopback_only = true;
    nc.data_dir = Some(dir.to_path_buf());
    nc.seed = Some(seed);
    nc
}

async fn contacts(node: &Node) -> HashSet<SocketAddr> {
    node.status()
        .await
        .expect("node running")
        .contacts
        .iter()
        .map(|c| c.addr())
        .collect()
}

/// Polls until the node's table holds every address in `want`; returns what it holds.
async fn wait_for_contacts(
    node: &Node,
    want: &HashSet<SocketAddr>,
    timeout: Duration,
) -> HashSet<SocketAddr> {
    let end = Instant::now() + timeout;
    loop {
        let have = contacts(node).await;
        if have.is_superset(want) || Instant::now() >= end {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn settled_swarm(n: usize) -> Swarm {
    let swarm = Swarm::start(SwarmConfig::new(n)).await.expect("swarm");
    let (r, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    assert!(settled.is_some(), "swarm did not settle: {r:?}");
    swarm
}

/// The restarted node binds the same IP on a fresh port, an address no swarm node has ever
/// seen: nobody contacts it, so only its saved state can bring its contacts back.
fn fresh_port(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_saves_and_restart_without_bootstrap_refills() {
    let swarm = settled_swarm(6).await;
    let members: HashSet<SocketAddr> = swarm.addrs().iter().copied().collect();
    let dir = TempDir::new("shutdown");

    let mut nc = config(node_addr(5000, 0), dir.path(), 11);
    nc.bootstrap = vec![swarm.addrs()[0]];
    let node = Node::start(nc).await.expect("start");
    let first_addr = node.local_addr();
    let joined = wait_for_contacts(&node, &members, Duration::from_secs(20)).await;
    assert_eq!(joined, members, "node did not join the swarm");
    node.shutdown().await.expect("shutdown saves");
    assert!(node.status().await.is_err(), "node stopped");

    let saved = load_state(dir.path())
        .expect("state readable")
        .expect("state saved at shutdown");
    let saved_addrs: HashSet<SocketAddr> = saved.contacts.iter().map(|c| c.addr).collect();
    assert_eq!(saved_addrs, members, "the saved contacts are the table");
    assert!(
        saved.contacts.iter().all(|c| c.rtt.is_some()),
        "RTTs were saved"
    );

    // Restart: same data dir, no bootstrap.
    let nc = config(fresh_port(first_addr), dir.path(), 12);
    assert!(nc.bootstrap.is_empty());
    let node = Node::start(nc).await.expect("restart");
    assert_ne!(node.local_addr(), first_addr);
    let back = wait_for_contacts(&node, &members, Duration::from_secs(20)).await;
    assert_eq!(back, members, "contacts came back from the saved state");
    node.shutdown().await.unwrap();
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_periodic_save_restarts_with_contacts() {
    let swarm = settled_swarm(6).await;
    let members: HashSet<SocketAddr> = swarm.addrs().iter().copied().collect();
    let dir = TempDir::new("crash");

    let mut nc = config(node_addr(5001, 0), dir.path(), 21);
    nc.bootstrap = vec![swarm.addrs()[0]];
    nc.save_interval = Duration::from_millis(200);
    let node = Node::start(nc).await.expect("start");
    let first_addr = node.local_addr();
    let joined = wait_for_contacts(&node, &members, Duration::from_secs(20)).await;
    assert_eq!(joined, members, "node did not join the swarm");

    // The periodic save catches up with the table (no shutdown involved).
    let end = Instant::now() + Duration::from_secs(10);
    let saved = loop {
        if let Ok(Some(s)) = load_state(dir.path()) {
            let a: HashSet<SocketAddr> = s.contacts.iter().map(|c| c.addr).collect();
            if a == members {
                break a;
            }
        }
        assert!(
            Instant::now() < end,
            "the periodic save never held the whole table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    node.abort();
    // The aborted node is gone without a goodbye.
    let end = Instant::now() + Duration::from_secs(5);
    while node.status().await.is_ok() {
        assert!(Instant::now() < end, "aborted node still answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let node = Node::start(config(fresh_port(first_addr), dir.path(), 22))
        .await
        .expect("restart after crash");
    let back = wait_for_contacts(&node, &saved, Duration::from_secs(20)).await;
    assert_eq!(back, members, "contacts came back after the crash");
    node.shutdown().await.unwrap();
    swarm.shutdown().await;
}

/// Files named `state.json.bad-*` in `dir`.
fn set_aside_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{STATE_FILE}.bad-")))
        })
        .collect();
    v.sort();
    v
}

/// A node whose state file is unusable starts anyway, fresh, and keeps the bad file aside.
async fn starts_despite(name: &str, bad: &[u8], seed: u64, bind: SocketAddr) {
    // A running node to join, to show the fresh node works.
    let mut hc = NodeConfig::new(node_addr(5100 + seed as usize, 0));
    hc.loopback_only = true;
    hc.seed = Some(seed + 1000);
    let helper = Node::start(hc).await.expect("helper");

    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join(STATE_FILE), bad).unwrap();
    assert!(
        load_state(dir.path()).is_err(),
        "{name}: the file is rejected"
    );

    let mut nc = config(bind, dir.path(), seed);
    nc.bootstrap = vec![helper.local_addr()];
    let node = Node::start(nc)
        .await
        .unwrap_or_else(|e| panic!("{name}: node refused to start: {e}"));
    let want: HashSet<SocketAddr> = [helper.local_addr()].into_iter().collect();
    let have = wait_for_contacts(&node, &want, Duration::from_secs(10)).await;
    assert_eq!(have, want, "{name}: the fresh node joins");

    let aside = set_aside_files(dir.path());
    assert_eq!(aside.len(), 1, "{name}: one file set aside: {aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        bad,
        "{name}: the bad file is kept byte for byte"
    );
    node.shutdown().await.unwrap();
    // The next save writes a good file beside the one set aside.
    let state = load_state(dir.path())
        .unwrap_or_else(|e| panic!("{name}: new state file unreadable: {e}"))
        .expect("saved at shutdown");
    assert_eq!(state.contacts.len(), 1);
    assert_eq!(set_aside_files(dir.path()), aside);
    helper.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_file_is_set_aside() {
    starts_despite(
        "corrupt",
        b"{\"version\":1,\"checksum\":\"00\",\"body\":{\"contacts\":[{\"addr\":",
        1,
        node_addr(5200, 0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_is_set_aside() {
    let body = r#"{"public_addr":null,"contacts":[{"addr":"127.9.9.9:1"}]}"#;
    let file = format!(
        "{{\"version\":1,\"checksum\":\"{}\",\"body\":{body}}}\n",
        "ab".repeat(32)
    );
    starts_despite("checksum", file.as_bytes(), 2, node_addr(5201, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_version_state_file_is_set_aside() {
    let body = r#"{"public_addr":null,"contacts":[],"new_field":{"x":1}}"#;
    let file = format!(
        "{{\"version\":99,\"checksum\":\"{}\",\"body\":{body}}}\n",
        "00".repeat(32)
    );
    starts_despite("future", file.as_bytes(), 3, node_addr(5202, 0)).await;
}
