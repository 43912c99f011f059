//! End to end on loopback: in a settled real-socket swarm of 100 nodes every lookup for a
//! live node's ID finds that node, one at a time and many at once, from many nodes; after a
//! fifth of the swarm stops, lookups for live nodes still find them and a lookup for a
//! stopped node does not claim to have found it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use telekad::driver::Node;
use telekad::id::NodeId;
use telekad::lookup::LookupResult;
use telekad::swarm::{Swarm, SwarmConfig};
use tokio::task::JoinSet;

const NODES: usize = 100;

/// How long one lookup may take before the test gives up on it (the engine's own lookup
/// deadline is 10 s).
const LOOKUP_LIMIT: Duration = Duration::from_secs(15);

/// Checks what every lookup result must satisfy, found or not: IDs match addresses, entries
/// are distinct swarm members sorted by XOR distance to the target, nearest first.
fn check_shape(r: &LookupResult, target: NodeId, members: &HashSet<SocketAddr>, what: &str) {
    assert_eq!(r.target, target, "{what}: result for another target");
    let mut seen = HashSet::new();
    for f in &r.closest {
        assert!(
            members.contains(&f.addr),
            "{what}: result {} is not a swarm member",
            f.addr
        );
        assert!(seen.insert(f.addr), "{what}: {} listed twice", f.addr);
        assert_eq!(f.id, NodeId::of_addr(f.addr), "{what}: id of {}", f.addr);
    }
    for w in r.closest.windows(2) {
        let (d0, d1) = (w[0].id.distance(&target), w[1].id.distance(&target));
        assert!(
            d0 < d1,
            "{what}: results not sorted by XOR distance: {} (2^{}) before {} (2^{})",
            w[0].addr,
            d0.log2(),
            w[1].addr,
            d1.log2()
        );
    }
}

/// Checks a lookup for the live node at `target_addr`: found, nearest entry is the target.
fn check_found(
    r: &LookupResult,
    from: SocketAddr,
    target_addr: SocketAddr,
    members: &HashSet<SocketAddr>,
) {
    let target = NodeId::of_addr(target_addr);
    let what = format!("lookup from {from} for {target_addr}");
    check_shape(r, target, members, &what);
    assert!(
        r.found,
        "{what}: not found (closest: {:?}, timed out: {})",
        r.closest.iter().map(|f| f.addr).collect::<Vec<_>>(),
        r.timed_out
    );
    let first = r.closest.first().expect("found lookup has results");
    assert_eq!(first.addr, target_addr, "{what}: nearest result");
    assert_eq!(first.id, target, "{what}: nearest result's id");
}

/// Runs a lookup with a time limit; panics if the node is gone or the limit passes.
async fn lookup(node: Node, target: NodeId) -> LookupResult {
    let from = node.local_addr();
    tokio::time::timeout(LOOKUP_LIMIT, node.lookup(target))
        .await
        .unwrap_or_else(|_| panic!("lookup from {from} took over {LOOKUP_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("lookup from {from}: {e}"))
}

/// Runs `jobs` (from, to) as direct node lookups, `concurrency` at a time, and checks each.
/// Returns the slowest lookup's time.
async fn run_jobs(
    swarm: &Swarm,
    jobs: &[(usize, usize)],
    concurrency: usize,
    members: &HashSet<SocketAddr>,
) -> Duration {
    let addrs = swarm.addrs();
    let mut slowest = Duration::ZERO;
    for chunk in jobs.chunks(concurrency) {
        let mut set = JoinSet::new();
        for &(from, to) in chunk {
            assert_ne!(from, to);
            let node = swarm.nodes()[from].clone();
            let target_addr = addrs[to];
            set.spawn(async move {
                let r = lookup(node, NodeId::of_addr(target_addr)).await;
                (from, to, r)
            });
        }
        let mut done = 0;
        while let Some(j) = set.join_next().await {
            let (from, to, r) = j.expect("lookup task panicked");
            check_found(&r, addrs[from], addrs[to], members);
            slowest = slowest.max(r.elapsed);
            done += 1;
        }
        assert_eq!(done, chunk.len());
    }
    slowest
}

/// (from, to) pairs spread over the swarm: `count` lookups, every node a source, sources
/// and targets from different strides, never a node looking itself up.
fn spread_jobs(
    count: usize,
    from_stride: usize,
    to_stride: usize,
    offset: usize,
    ok: impl Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut jobs = Vec::with_capacity(count);
    let mut i = 0;
    while jobs.len() < count {
        let from = (i * from_stride) % NODES;
        let to = (i * to_stride + offset) % NODES;
        i += 1;
        if from != to && ok(from) && ok(to) {
            jobs.push((from, to));
        }
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lookup_for_a_live_node_finds_it() {
    let t0 = Instant::now();
    let swarm = Swarm::start(SwarmConfig::new(NODES))
        .await
        .expect("swarm starts on loopback");
    assert_eq!(swarm.nodes().len(), NODES);
    assert_eq!(swarm.addrs().len(), NODES);
    for a in swarm.addrs() {
        assert!(a.ip().is_loopback(), "{a} is not loopback");
    }
    let members: HashSet<SocketAddr> = swarm.addrs().iter().copied().collect();
    assert_eq!(members.len(), NODES, "distinct addresses");

    let (report, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    let settled = settled.unwrap_or_else(|| panic!("swarm did not settle in 30 s: {report:?}"));
    println!("{NODES} nodes settled after {settled:?}");

    // One at a time: every node looks up some other node.
    let t = Instant::now();
    let seq = spread_jobs(NODES, 1, 37, 11, |_| true);
    let sources: HashSet<usize> = seq.iter().map(|j| j.0).collect();
    let targets: HashSet<usize> = seq.iter().map(|j| j.1).collect();
    assert!(sources.len() >= 90 && targets.len() >= 90);
    run_jobs(&swarm, &seq, 1, &members).await;
    let mut total = seq.len();
    println!(
        "{} sequential direct lookups in {:?}",
        seq.len(),
        t.elapsed()
    );

    // Twelve at a time, other sources and targets.
    let t = Instant::now();
    let conc = spread_jobs(120, 7, 13, 5, |_| true);
    run_jobs(&swarm, &conc, 12, &members).await;
    total += conc.len();
    println!(
        "{} concurrent direct lookups (12 at a time) in {:?}",
        conc.len(),
        t.elapsed()
    );

    // The swarm's own batch runner, one at a time and ten at a time.
    let t = Instant::now();
    for (count, concurrency, seed) in [(60, 1, 101), (100, 10, 102)] {
        let s = swarm.lookups(count, concurrency, seed).await;
        assert_eq!(s.lookups, count);
        assert_eq!(s.concurrency, concurrency);
        assert_eq!(
            s.found, count,
            "swarm.lookups({count}, {concurrency}, {seed}): {s:?}"
        );
        assert!(s.hops_p95 >= 1.0, "{s:?}");
        total += count;
    }
    println!("160 swarm.lookups in {:?}", t.elapsed());
    assert!(total >= 200, "only {total} lookups");

    // Stop a fifth of the swarm, the seed among them.
    let stopped: Vec<usize> = (0..NODES).filter(|i| i % 5 == 0).collect();
    assert_eq!(stopped.len(), NODES / 5);
    for &i in &stopped {
        swarm.nodes()[i]
            .shutdown()
            .await
            .expect("stopping a node without a data dir");
    }
    for &i in &stopped {
        assert!(
            swarm.nodes()[i].status().await.is_err(),
            "node {i} still running after shutdown"
        );
    }
    let is_live = |i: usize| i % 5 != 0;
    // From here on only live nodes can answer, so only they may appear in results.
    let live: HashSet<SocketAddr> = (0..NODES)
        .filter(|&i| is_live(i))
        .map(|i| swarm.addrs()[i])
        .collect();

    // Live nodes still find live nodes, even though tables still list the stopped ones (a
    // lookup waits out each stopped node among the k nearest: about 1.25 s per round).
    let t = Instant::now();
    let live_jobs = spread_jobs(40, 3, 11, 7, is_live);
    let slowest = run_jobs(&swarm, &live_jobs, 20, &live).await;
    println!(
        "{} lookups for live nodes after stopping {} (20 at a time) in {:?}, slowest {slowest:?}",
        live_jobs.len(),
        stopped.len(),
        t.elapsed()
    );

    // A lookup for a stopped node's ID does not report it found, and never lists it.
    let t = Instant::now();
    let mut set = JoinSet::new();
    for &dead in stopped.iter().take(5) {
        let from = dead + 1;
        assert!(is_live(from));
        let node = swarm.nodes()[from].clone();
        let dead_addr = swarm.addrs()[dead];
        set.spawn(async move { (dead_addr, lookup(node, NodeId::of_addr(dead_addr)).await) });
    }
    while let Some(j) = set.join_next().await {
        let (dead_addr, r) = j.expect("lookup task panicked");
        let target = NodeId::of_addr(dead_addr);
        check_shape(
            &r,
            target,
            &live,
            &format!("lookup for stopped {dead_addr}"),
        );
        assert!(!r.found, "lookup for stopped {dead_addr} reports found");
        assert!(
            !r.closest.is_empty(),
            "lookup for stopped {dead_addr}: no live node answered"
        );
    }
    println!("5 lookups for stopped nodes in {:?}", t.elapsed());

    swarm.shutdown().await;
    println!("total {:?}", t0.elapsed());
}
