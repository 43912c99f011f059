//! telekad against pubky/mainline (the Rust Kademlia DHT a user would pick instead), both on
//! loopback in one run: a mainline `Testnet` and a telekad `Swarm` of the same size, the
//! same number of lookups for random targets on each (one at a time, then several at once),
//! and both sides' figures with their ratios: time until the network is usable, lookup
//! latency p50/p95/p99, UDP datagrams per lookup, RSS per node, threads, idle CPU.
//!
//! `cargo bench --bench vs_mainline` runs 100 and 1,000 nodes (`TELEKAD_BENCH_SIZES=100,500`
//! picks others). `TELEKAD_BENCH_QUICK=1`, or a run without `--bench` (`cargo test
//! --benches`), runs 50 nodes and a few lookups.
//!
//! Each (side, size) runs in a child process of its own (this executable run again with
//! `TELEKAD_VS_MAINLINE_CHILD` set), so neither side's threads, memory or sockets affect
//! the other's figures. Datagram counts come from the kernel (`Udp: OutDatagrams` in
//! `/proc/net/snmp`, which belongs to the network namespace): exact only when nothing else
//! in the namespace sends UDP, e.g. under `unshare -n sh -c 'ip link set lo up && cargo
//! bench --bench vs_mainline'`. The header says whether the namespace is isolated. Before
//! each lookup phase the child waits (up to 20 s) for a 250 ms window in which the network
//! sends at most n/25 datagrams, so a burst of maintenance is not billed to the lookups.
//!
//! Each lookup's result is checked against the brute-force nearest node. Entries that are
//! not members of the network are counted and left out of that check: mainline's testnet
//! nodes all run with an empty bootstrap list, and such a node adds (target, sender's
//! address) to its table for every `find_node` it answers, so every mainline result holds
//! an entry whose ID is the target itself at the querying node's address.
//!
//! Network safety: every node of both sides binds a 127.0.0.0/8 address. telekad's swarm
//! bootstraps from its own node 0 and its nodes drop anything addressed outside loopback.
//! mainline's `Testnet` (8.0.1, pinned in Cargo.toml) binds 127.0.0.1 and builds every node
//! with `no_bootstrap()`, so its default public routers are never used; this bench still
//! refuses to send a single lookup unless every address it hands out or that any mainline
//! routing table holds is loopback.

use mainline::{Dht, Testnet};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::driver::Node;
use telekad::id::NodeId;
use telekad::sim::scenario::percentile;
use telekad::swarm::{Swarm, SwarmConfig};

/// Set in a child process: the JSON of the [`Plan`] it runs.
const CHILD_ENV: &str = "TELEKAD_VS_MAINLINE_CHILD";
/// Prefix of the one stdout line in which a child hands back its [`Figures`].
const RESULT_PREFIX: &str = "VS_MAINLINE_RESULT ";
/// The address every mainline node binds.
const MAINLINE_BIND: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Seeds of the two lookup phases (the same jobs on both sides).
const SEED_SEQUENTIAL: u64 = 7;
const SEED_CONCURRENT: u64 = 8;
/// Linux reports process CPU times in ticks of USER_HZ, 100 per second.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Side {
    Mainline,
    Telekad,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Mainline => "mainline",
            Side::Telekad => "telekad",
        }
    }
}

/// What one child process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    side: Side,
    nodes: usize,
    lookups: usize,
    concurrency: usize,
    idle_secs: u64,
    settle_timeout_secs: u64,
}

/// Figures of one lookup phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Phase {
    lookups: usize,
    concurrency: usize,
    /// Lookups that returned at least one node.
    completed: usize,
    /// Lookups whose nearest returned node is the nearest node of the network (brute force),
    /// the querying node itself left out on both counts, entries that are not members of the
    /// network (see `foreign`) ignored.
    exact: usize,
    /// Lookups whose result held an entry that is no member of the network (an ID that no
    /// node has, or a member's ID at another address).
    foreign: usize,
    /// Seconds waited before the phase for the network to fall quiet (see [`quiet`]).
    quiet_wait_s: f64,
    ms_p50: f64,
    ms_p95: f64,
    ms_p99: f64,
    wall_s: f64,
    /// UDP datagrams the kernel sent in the namespace during the phase, per lookup.
    os_datagrams_per_lookup: f64,
    /// telekad only: queries sent plus answers received, as `LookupStats` counts them.
    self_datagrams_per_lookup: Option<f64>,
    /// telekad only: median hops.
    hops_p50: Option<f64>,
    /// Datagrams the kernel dropped for want of receive buffer during the phase.
    rcvbuf_errors: u64,
}

/// Everything one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Figures {
    side: Side,
    nodes: usize,
    /// Seconds until the network is usable (mainline: the seeded testnet is built;
    /// telekad: started and every routing table filled).
    settle_s: f64,
    settled: bool,
    /// UDP datagrams sent while building or settling, per node.
    settle_datagrams_per_node: f64,
    /// RSS growth per node from before the nodes started to when the network was usable.
    rss_per_node_usable_bytes: f64,
    /// The same at the end (after the lookups and the idle wait).
    rss_per_node_bytes: f64,
    rss_total_bytes: u64,
    threads: u64,
    sequential: Phase,
    concurrent: Phase,
    idle_secs: f64,
    idle_cpu_pct: f64,
    idle_datagrams_per_s: f64,
    netns_isolated: bool,
}

// ---------------------------------------------------------------------------------------
// /proc readings

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Resident memory after the allocator handed freed pages back (glibc's `malloc_trim`, done
/// the same way for both sides; a long-running `telekad run` does it every minute).
fn rss_bytes() -> u64 {
    telekad::procstat::release_free_memory();
    status_kb("VmRSS:") * 1024
}

fn kb_per_node(rss: u64, rss0: u64, n: usize) -> f64 {
    rss.saturating_sub(rss0) as f64 / 1024.0 / n.max(1) as f64
}

fn threads() -> u64 {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count() as u64)
}

/// User plus system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| {
            // Fields resume after the command name's closing parenthesis, at field 3.
            let rest = &t[t.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 / USER_HZ)
        })
        .unwrap_or(0.0)
}

/// The namespace's UDP counters (IPv4 and IPv6 added up).
#[derive(Debug, Clone, Copy, Default)]
struct Udp {
    out: u64,
    rcvbuf_errors: u64,
}

impl Udp {
    fn read() -> Udp {
        let mut u = Udp::default();
        if let Ok(t) = std::fs::read_to_string("/proc/net/snmp") {
            let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("Udp:")).collect();
            if let [names, values] = rows[..] {
                let m: HashMap<&str, u64> = names
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                    .collect();
                u.out += m.get("OutDatagrams").copied().unwrap_or(0);
                u.rcvbuf_errors += m.get("RcvbufErrors").copied().unwrap_or(0);
            }
        }
        if let Ok(t) = std::fs::read_to_string("/proc/net/snmp6") {
            for l in t.lines() {
                let mut it = l.split_whitespace();
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "Udp6OutDatagrams" => u.out += v,
                    "Udp6RcvbufErrors" => u.rcvbuf_errors += v,
                    _ => {}
                }
            }
        }
        u
    }

    fn since(self, earlier: Udp) -> Udp {
        Udp {
            out: self.out.saturating_sub(earlier.out),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
        }
    }
}

/// Whether this process's network namespace has no interface but `lo` (then the UDP
/// counters see nothing but this process).
fn netns_isolated() -> bool {
    std::fs::read_to_string("/proc/net/dev").is_ok_and(|t| {
        t.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo")
    })
}

/// Window of the quiet check.
const QUIET_WINDOW: Duration = Duration::from_millis(250);
/// Longest wait for quiet before a phase starts anyway.
const QUIET_LIMIT: Duration = Duration::from_secs(20);

/// Most datagrams a network of `n` nodes may send in one [`QUIET_WINDOW`] to count as quiet
/// (0.16 per node per second): then the kernel's count during a lookup phase is the
/// lookups' own traffic, not a burst of maintenance that happened to coincide with it.
fn quiet_threshold(n: usize) -> u64 {
    (n as u64 / 25).max(1)
}

/// Waits until `calm` windows in a row each saw at most `per_window` datagrams sent, or
/// `longest` passes; returns the time waited. Blocks the calling thread.
fn wait_quiet(window: Duration, calm: u32, per_window: u64, longest: Duration) -> Duration {
    let t0 = Instant::now();
    let mut quiet_windows = 0;
    while t0.elapsed() < longest && quiet_windows < calm {
        let u0 = Udp::read();
        std::thread::sleep(window);
        if Udp::read().since(u0).out <= per_window {
            quiet_windows += 1;
        } else {
            quiet_windows = 0;
        }
    }
    t0.elapsed()
}

/// Before a lookup phase: one quiet [`QUIET_WINDOW`], at most [`QUIET_LIMIT`].
fn quiet_blocking(n: usize) -> Duration {
    wait_quiet(QUIET_WINDOW, 1, quiet_threshold(n), QUIET_LIMIT)
}

/// Before the idle measurement: three quiet seconds in a row (joining traffic comes in
/// bursts with gaps between), at most a minute.
fn quiet_blocking_for_idle(n: usize) -> Duration {
    wait_quiet(
        Duration::from_secs(1),
        3,
        4 * quiet_threshold(n),
        Duration::from_secs(60),
    )
}

/// [`quiet_blocking`] from async code: the wait runs on a blocking thread so that the
/// runtime keeps serving the nodes meanwhile.
async fn quiet(n: usize) -> Duration {
    tokio::task::spawn_blocking(move || quiet_blocking(n))
        .await
        .unwrap_or_default()
}

/// [`quiet_blocking_for_idle`] from async code.
async fn quiet_for_idle(n: usize) -> Duration {
    tokio::task::spawn_blocking(move || quiet_blocking_for_idle(n))
        .await
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Lookups, shared by both sides

/// `count` lookups: (index of the querying node, random 256-bit target; mainline uses its
/// first 160 bits). The same seed gives both sides the same jobs.
fn jobs(n: usize, count: usize, seed: u64) -> Vec<(usize, [u8; 32])> {
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| (rng.random_range(0..n), rng.random::<[u8; 32]>()))
        .collect()
}

/// What one lookup gave.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    ms: f64,
    completed: bool,
    exact: bool,
    foreign: bool,
    self_datagrams: Option<u64>,
    hops: Option<u32>,
}

fn summarize(
    mut outcomes: Vec<Outcome>,
    lookups: usize,
    concurrency: usize,
    wall: Duration,
    udp: Udp,
) -> Phase {
    let mut ms: Vec<f64> = outcomes.iter().map(|o| o.ms).collect();
    let mut hops: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.hops.map(f64::from))
        .collect();
    let done = outcomes.len().max(1) as f64;
    let self_dg: Vec<u64> = outcomes.iter().filter_map(|o| o.self_datagrams).collect();
    outcomes.retain(|o| o.completed);
    Phase {
        lookups,
        concurrency,
        completed: outcomes.len(),
        exact: outcomes.iter().filter(|o| o.exact).count(),
        foreign: outcomes.iter().filter(|o| o.foreign).count(),
        quiet_wait_s: 0.0,
        ms_p50: percentile(&mut ms, 0.5),
        ms_p95: percentile(&mut ms, 0.95),
        ms_p99: percentile(&mut ms, 0.99),
        wall_s: wall.as_secs_f64(),
        os_datagrams_per_lookup: udp.out as f64 / done,
        self_datagrams_per_lookup: (!self_dg.is_empty())
            .then(|| self_dg.iter().sum::<u64>() as f64 / self_dg.len() as f64),
        hops_p50: (!hops.is_empty()).then(|| percentile(&mut hops, 0.5)),
        rcvbuf_errors: udp.rcvbuf_errors,
    }
}

// ---------------------------------------------------------------------------------------
// telekad side

fn telekad_child(plan: &Plan) -> Figures {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let n = plan.nodes;
        let rss0 = rss_bytes();
        let udp0 = Udp::read();
        let t0 = Instant::now();
        let swarm = Swarm::start(SwarmConfig::new(n))
            .await
            .expect("telekad swarm on 127.x.y.1 addresses");
        let rss_started = rss_bytes();
        let (report, settled) = swarm
            .settle(Duration::from_secs(plan.settle_timeout_secs), |_| {})
            .await;
        let settle = t0.elapsed();
        let settle_udp = Udp::read().since(udp0);
        let rss_usable = rss_bytes();
        eprintln!(
            "  telekad {n}: {} in {:.1} s ({}/{} tables full, {:.1} contacts mean); RSS per \
             node {:.1} KB once started, {:.1} KB once settled",
            if settled.is_some() {
                "settled"
            } else {
                "did NOT settle"
            },
            settle.as_secs_f64(),
            report.filled,
            report.nodes,
            report.contacts_mean,
            kb_per_node(rss_started, rss0, n),
            kb_per_node(rss_usable, rss0, n)
        );
        let threads = threads();
        for a in swarm.addrs() {
            assert!(a.ip().is_loopback(), "telekad node off loopback: {a}");
        }
        let nodes: Arc<Vec<Node>> = Arc::new(swarm.nodes().to_vec());
        let ids: Arc<Vec<NodeId>> =
            Arc::new(swarm.addrs().iter().map(|a| NodeId::of_addr(*a)).collect());
        let members: Arc<HashSet<SocketAddr>> = Arc::new(swarm.addrs().iter().copied().collect());
        let sequential =
            telekad_phase(&nodes, &ids, &members, plan.lookups, 1, SEED_SEQUENTIAL).await;
        eprintln!(
            "  telekad {n}: sequential p50 {:.1} ms, {:.1} s",
            sequential.ms_p50, sequential.wall_s
        );
        let concurrent = telekad_phase(
            &nodes,
            &ids,
            &members,
            plan.lookups,
            plan.concurrency,
            SEED_CONCURRENT,
        )
        .await;
        eprintln!(
            "  telekad {n}: concurrent p50 {:.1} ms, {:.1} s",
            concurrent.ms_p50, concurrent.wall_s
        );
        // Idle means idle: the joining rounds' tail (self-lookups, refreshes) ends first.
        let idle_wait = quiet_for_idle(n).await;
        eprintln!(
            "  telekad {n}: quiet {:.1} s after the lookups",
            idle_wait.as_secs_f64()
        );
        let (cpu0, udp0, t0) = (cpu_seconds(), Udp::read(), Instant::now());
        tokio::time::sleep(Duration::from_secs(plan.idle_secs)).await;
        let (cpu, udp, idle) = (cpu_seconds() - cpu0, Udp::read().since(udp0), t0.elapsed());
        let rss = rss_bytes();
        eprintln!(
            "  telekad {n}: RSS per node {:.1} KB at the end",
            kb_per_node(rss, rss0, n)
        );
        Figures {
            side: Side::Telekad,
            nodes: n,
            settle_s: settle.as_secs_f64(),
            settled: settled.is_some(),
            settle_datagrams_per_node: settle_udp.out as f64 / n as f64,
            rss_per_node_usable_bytes: rss_usable.saturating_sub(rss0) as f64 / n as f64,
            rss_per_node_bytes: rss.saturating_sub(rss0) as f64 / n as f64,
            rss_total_bytes: rss,
            threads,
            sequential,
            concurrent,
            idle_secs: idle.as_secs_f64(),
            idle_cpu_pct: 100.0 * cpu / idle.as_secs_f64(),
            idle_datagrams_per_s: udp.out as f64 / idle.as_secs_f64(),
            netns_isolated: netns_isolated(),
        }
    })
}

async fn telekad_phase(
    nodes: &Arc<Vec<Node>>,
    ids: &Arc<Vec<NodeId>>,
    members: &Arc<HashSet<SocketAddr>>,
    count: usize,
    concurrency: usize,
    seed: u64,
) -> Phase {
    let quiet_wait = quiet(nodes.len()).await;
    let jobs = Arc::new(jobs(nodes.len(), count, seed));
    let next = Arc::new(AtomicUsize::new(0));
    let udp0 = Udp::read();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (nodes, ids, jobs, next) = (nodes.clone(), ids.clone(), jobs.clone(), next.clone());
        let members = members.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            // Each worker starts the next job as soon as its lookup ends: `concurrency`
            // lookups stay in flight.
            while let Some(&(from, target)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let target = NodeId(target);
                let start = Instant::now();
                let r = nodes[from].lookup(target).await;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                out.push(match r {
                    Ok(r) => {
                        let me = ids[from];
                        let member = |f: &&telekad::lookup::Found| {
                            members.contains(&f.addr) && f.id == NodeId::of_addr(f.addr)
                        };
                        let foreign = r.closest.iter().any(|f| !member(&f));
                        let best = r
                            .closest
                            .iter()
                            .filter(member)
                            .map(|f| f.id)
                            .filter(|id| *id != me)
                            .min_by_key(|id| id.distance(&target));
                        let truth = ids
                            .iter()
                            .copied()
                            .filter(|id| *id != me)
                            .min_by_key(|id| id.distance(&target));
                        Outcome {
                            ms,
                            completed: best.is_some(),
                            exact: best.is_some() && best == truth,
                            foreign,
                            self_datagrams: Some(u64::from(r.queried) + u64::from(r.answered)),
                            hops: Some(r.hops),
                        }
                    }
                    Err(_) => Outcome {
                        ms,
                        completed: false,
                        exact: false,
                        foreign: false,
                        self_datagrams: None,
                        hops: None,
                    },
                });
            }
            out
        });
    }
    let mut outcomes = Vec::with_capacity(count);
    while let Some(r) = set.join_next().await {
        outcomes.extend(r.expect("lookup worker"));
    }
    let mut phase = summarize(
        outcomes,
        count,
        concurrency,
        t0.elapsed(),
        Udp::read().since(udp0),
    );
    phase.quiet_wait_s = quiet_wait.as_secs_f64();
    phase
}

// ---------------------------------------------------------------------------------------
// mainline side

/// Stops the process unless every address is loopback: no mainline lookup runs otherwise.
fn require_loopback(what: &str, addrs: &[SocketAddr]) {
    if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        eprintln!("vs_mainline: REFUSING to run: {what} holds non-loopback address {a}");
        std::process::exit(3);
    }
}

fn parse_addrs(what: &str, text: &[String]) -> Vec<SocketAddr> {
    text.iter()
        .map(|s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("vs_mainline: REFUSING to run: {what} holds {s:?}, not an IP address");
                std::process::exit(3);
            })
        })
        .collect()
}

/// Runs `f` on every node from a few threads at once (a mainline node answers its handle
/// only between 50 ms socket reads, so one at a time would take n x 25 ms).
fn par_map<T: Send>(nodes: &[Dht], f: impl Fn(&Dht) -> T + Sync) -> Vec<T> {
    let chunk = nodes.len().div_ceil(64).max(1);
    std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<T>>()))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("mainline query thread"))
            .collect()
    })
}

#[allow(deprecated)] // mainline 8 marks its blocking API deprecated in favour of the async one
fn mainline_child(plan: &Plan) -> Figures {
    let n = plan.nodes;
    // What the bench gives mainline: the bind address (the Testnet builder gives every node
    // `no_bootstrap()`, so no bootstrap address at all; checked in mainline 8.0.1's source).
    require_loopback(
        "the mainline bind address",
        &[SocketAddr::new(IpAddr::V4(MAINLINE_BIND), 0)],
    );
    let rss0 = rss_bytes();
    let udp0 = Udp::read();
    let t0 = Instant::now();
    let testnet = Testnet::builder(n)
        .bind_address(MAINLINE_BIND)
        .seeded(true)
        .build()
        .expect("mainline testnet on 127.0.0.1");
    let settle = t0.elapsed();
    let settle_udp = Udp::read().since(udp0);
    let rss_usable = rss_bytes();
    let threads = threads();
    eprintln!(
        "  mainline {n}: testnet built in {:.1} s; RSS per node {:.1} KB",
        settle.as_secs_f64(),
        kb_per_node(rss_usable, rss0, n)
    );

    // Before any lookup: every address the testnet hands out and every address in every
    // routing table must be loopback.
    require_loopback(
        "the testnet's bootstrap list",
        &parse_addrs("the testnet's bootstrap list", &testnet.bootstrap),
    );
    let infos = par_map(&testnet.nodes, |d| d.info());
    let bound: Vec<SocketAddr> = infos
        .iter()
        .map(|i| SocketAddr::V4(i.local_addr()))
        .collect();
    require_loopback("a mainline node's bound address", &bound);
    let tables = par_map(&testnet.nodes, |d| d.to_bootstrap());
    for t in &tables {
        require_loopback(
            "a mainline routing table",
            &parse_addrs("a mainline routing table", t),
        );
    }
    let contacts = tables.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    eprintln!("  mainline {n}: all addresses loopback, {contacts:.1} contacts per table mean");
    let ids: Vec<mainline::Id> = infos.iter().map(|i| *i.id()).collect();
    let members: HashMap<mainline::Id, SocketAddrV4> =
        infos.iter().map(|i| (*i.id(), i.local_addr())).collect();

    let sequential = mainline_phase(
        &testnet.nodes,
        &ids,
        &members,
        plan.lookups,
        1,
        SEED_SEQUENTIAL,
    );
    eprintln!(
        "  mainline {n}: sequential p50 {:.1} ms, {:.1} s",
        sequential.ms_p50, sequential.wall_s
    );
    let concurrent = mainline_phase(
        &testnet.nodes,
        &ids,
        &members,
        plan.lookups,
        plan.concurrency,
        SEED_CONCURRENT,
    );
    eprintln!(
        "  mainline {n}: concurrent p50 {:.1} ms, {:.1} s",
        concurrent.ms_p50, concurrent.wall_s
    );
    let idle_wait = quiet_blocking_for_idle(n);
    eprintln!(
        "  mainline {n}: quiet {:.1} s after the lookups",
        idle_wait.as_secs_f64()
    );
    let (cpu0, udp0, t0) = (cpu_seconds(), Udp::read(), Instant::now());
    std::thread::sleep(Duration::from_secs(plan.idle_secs));
    let (cpu, udp, t) = (cpu_seconds() - cpu0, Udp::read().since(udp0), t0.elapsed());
    let rss = rss_bytes();
    eprintln!(
        "  mainline {n}: RSS per node {:.1} KB at the end",
        kb_per_node(rss, rss0, n)
    );
    Figures {
        side: Side::Mainline,
        nodes: n,
        settle_s: settle.as_secs_f64(),
        settled: true,
        settle_datagrams_per_node: settle_udp.out as f64 / n as f64,
        rss_per_node_usable_bytes: rss_usable.saturating_sub(rss0) as f64 / n as f64,
        rss_per_node_bytes: rss.saturating_sub(rss0) as f64 / n as f64,
        rss_total_bytes: rss,
        threads,
        sequential,
        concurrent,
        idle_secs: t.as_secs_f64(),
        idle_cpu_pct: 100.0 * cpu / t.as_secs_f64(),
        idle_datagrams_per_s: udp.out as f64 / t.as_secs_f64(),
        netns_isolated: netns_isolated(),
    }
}

#[allow(deprecated)]
fn mainline_phase(
    nodes: &[Dht],
    ids: &[mainline::Id],
    members: &HashMap<mainline::Id, SocketAddrV4>,
    count: usize,
    concurrency: usize,
    seed: u64,
) -> Phase {
    let quiet_wait = quiet_blocking(nodes.len());
    let jobs = jobs(nodes.len(), count, seed);
    let next = AtomicUsize::new(0);
    let udp0 = Udp::read();
    let t0 = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(&(from, target)) = jobs.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        let target =
                            mainline::Id::from_bytes(&target[..20]).expect("160-bit target");
                        let start = Instant::now();
                        let found = nodes[from].find_node(target);
                        let ms = start.elapsed().as_secs_f64() * 1000.0;
                        let me = ids[from];
                        let member =
                            |x: &&mainline::Node| members.get(x.id()) == Some(&x.address());
                        let foreign = found.iter().any(|x| !member(&x));
                        let best = found
                            .iter()
                            .filter(member)
                            .map(|node| *node.id())
                            .filter(|id| *id != me)
                            .min_by_key(|id| *id.xor(&target).as_bytes());
                        let truth = ids
                            .iter()
                            .copied()
                            .filter(|id| *id != me)
                            .min_by_key(|id| *id.xor(&target).as_bytes());
                        out.push(Outcome {
                            ms,
                            completed: best.is_some(),
                            exact: best.is_some() && best == truth,
                            foreign,
                            self_datagrams: None,
                            hops: None,
                        });
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("mainline lookup worker"))
            .collect()
    });
    let mut phase = summarize(
        outcomes,
        count,
        concurrency,
        t0.elapsed(),
        Udp::read().since(udp0),
    );
    phase.quiet_wait_s = quiet_wait.as_secs_f64();
    phase
}

// ---------------------------------------------------------------------------------------
// Parent: runs the children and prints the comparison

fn run_child(plan: &Plan) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .env(CHILD_ENV, serde_json::to_string(plan).expect("plan JSON"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX)) {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("bad child result: {e}")),
        None => Err(format!("child exited with {} and no result", out.status)),
    }
}

fn ratio(t: f64, m: f64) -> String {
    if m == 0.0 || !m.is_finite() || !t.is_finite() {
        "-".to_string()
    } else {
        format!("{:.3}", t / m)
    }
}

fn row(label: &str, m: Option<f64>, t: Option<f64>, decimals: usize) {
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.decimals$}"));
    let r = match (m, t) {
        (Some(m), Some(t)) => ratio(t, m),
        _ => "-".to_string(),
    };
    println!("{label:<44} {:>12} {:>12} {:>10}", cell(m), cell(t), r);
}

fn table(n: usize, m: Option<&Figures>, t: Option<&Figures>) {
    let lookups = m.or(t).map_or(0, |f| f.sequential.lookups);
    let conc = m.or(t).map_or(0, |f| f.concurrent.concurrency);
    println!();
    println!(
        "== {n} nodes: {lookups} lookups one at a time, then {lookups} with {conc} in flight =="
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "metric", "mainline", "telekad", "tk/ml"
    );
    let f = |get: &dyn Fn(&Figures) -> f64| (m.map(get), t.map(get));
    let r = |label: &str, get: &dyn Fn(&Figures) -> f64, d: usize| {
        let (a, b) = f(get);
        row(label, a, b, d);
    };
    r("settle: time to a usable network (s)", &|x| x.settle_s, 2);
    r(
        "settle: UDP datagrams sent per node",
        &|x| x.settle_datagrams_per_node,
        1,
    );
    for (name, ph) in [
        (
            "sequential",
            (&|x: &Figures| x.sequential.clone()) as &dyn Fn(&Figures) -> Phase,
        ),
        ("concurrent", &|x: &Figures| x.concurrent.clone()),
    ] {
        r(&format!("{name}: latency p50 (ms)"), &|x| ph(x).ms_p50, 1);
        r(&format!("{name}: latency p95 (ms)"), &|x| ph(x).ms_p95, 1);
        r(&format!("{name}: latency p99 (ms)"), &|x| ph(x).ms_p99, 1);
        r(
            &format!("{name}: datagrams/lookup (kernel count)"),
            &|x| ph(x).os_datagrams_per_lookup,
            1,
        );
        row(
            &format!("{name}: datagrams/lookup (telekad's own)"),
            None,
            t.and_then(|x| ph(x).self_datagrams_per_lookup),
            1,
        );
        row(
            &format!("{name}: hops p50"),
            None,
            t.and_then(|x| ph(x).hops_p50),
            1,
        );
        r(
            &format!("{name}: nearest node found (share)"),
            &|x| {
                let p = ph(x);
                p.exact as f64 / p.lookups.max(1) as f64
            },
            3,
        );
        r(
            &format!("{name}: results holding a non-member"),
            &|x| ph(x).foreign as f64,
            0,
        );
        r(
            &format!("{name}: lookups that returned nodes"),
            &|x| ph(x).completed as f64,
            0,
        );
        r(
            &format!("{name}: wall time of the phase (s)"),
            &|x| ph(x).wall_s,
            2,
        );
        r(
            &format!("{name}: wait for a quiet network before (s)"),
            &|x| ph(x).quiet_wait_s,
            2,
        );
        r(
            &format!("{name}: UDP receive-buffer drops"),
            &|x| ph(x).rcvbuf_errors as f64,
            0,
        );
    }
    r(
        "concurrent p95 / sequential p95",
        &|x| x.concurrent.ms_p95 / x.sequential.ms_p95.max(f64::MIN_POSITIVE),
        2,
    );
    r(
        "RSS per node once usable (KB)",
        &|x| x.rss_per_node_usable_bytes / 1024.0,
        1,
    );
    r(
        "RSS per node at the end (KB)",
        &|x| x.rss_per_node_bytes / 1024.0,
        1,
    );
    r(
        "RSS of the process (MB)",
        &|x| x.rss_total_bytes as f64 / 1e6,
        1,
    );
    r("threads", &|x| x.threads as f64, 0);
    r("idle CPU (% of one core)", &|x| x.idle_cpu_pct, 2);
    r(
        "idle UDP datagrams per second",
        &|x| x.idle_datagrams_per_s,
        1,
    );
    if let Some(t) = t.filter(|t| !t.settled) {
        println!(
            "note: telekad did not fill every table within the timeout ({:.0} s)",
            t.settle_s
        );
    }
}

/// The targets for telekad, checked at the largest size.
fn targets(m: &Figures, t: &Figures) {
    println!();
    println!("targets at {} nodes:", t.nodes);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let p50 = m.sequential.ms_p50 / t.sequential.ms_p50.max(f64::MIN_POSITIVE);
    println!(
        "  lookup p50 at least 10x lower than mainline's: {:.1} ms vs {:.1} ms, {p50:.1}x lower: {}",
        t.sequential.ms_p50,
        m.sequential.ms_p50,
        verdict(p50 >= 10.0)
    );
    let collapse = t.concurrent.ms_p95 / t.sequential.ms_p95.max(f64::MIN_POSITIVE);
    println!(
        "  no collapse: concurrent p95 within 3x of sequential p95: {:.1} ms vs {:.1} ms, \
         {collapse:.2}x: {}",
        t.concurrent.ms_p95,
        t.sequential.ms_p95,
        verdict(collapse <= 3.0)
    );
    for (name, tp, mp) in [
        ("sequential", &t.sequential, &m.sequential),
        ("concurrent", &t.concurrent, &m.concurrent),
    ] {
        let r = tp.os_datagrams_per_lookup / mp.os_datagrams_per_lookup.max(f64::MIN_POSITIVE);
        println!(
            "  at most 1/2 of mainline's datagrams per lookup ({name}): {:.1} vs {:.1}, \
             {r:.2}x: {}",
            tp.os_datagrams_per_lookup,
            mp.os_datagrams_per_lookup,
            verdict(r <= 0.5)
        );
    }
    for (when, tv, mv) in [
        (
            "once usable",
            t.rss_per_node_usable_bytes,
            m.rss_per_node_usable_bytes,
        ),
        ("at the end", t.rss_per_node_bytes, m.rss_per_node_bytes),
    ] {
        let r = tv / mv.max(f64::MIN_POSITIVE);
        println!(
            "  at most 1/2 of mainline's RSS per node ({when}): {:.1} KB vs {:.1} KB, \
             {r:.2}x: {}",
            tv / 1024.0,
            mv / 1024.0,
            verdict(r <= 0.5)
        );
    }
    println!(
        "  near-zero idle CPU (under 1% of a core): {:.2}% (mainline {:.2}%): {}",
        t.idle_cpu_pct,
        m.idle_cpu_pct,
        verdict(t.idle_cpu_pct < 1.0)
    );
}

fn main() {
    if let Ok(plan) = std::env::var(CHILD_ENV) {
        let plan: Plan = serde_json::from_str(&plan).expect("child plan");
        let figures = match plan.side {
            Side::Mainline => mainline_child(&plan),
            Side::Telekad => telekad_child(&plan),
        };
        println!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(&figures).expect("figures JSON")
        );
        // Skip tearing down a thousand nodes: the figures are out.
        std::process::exit(0);
    }

    // `cargo bench` passes `--bench`; `cargo test --benches` does not: quick run then.
    let quick = std::env::var_os("TELEKAD_BENCH_QUICK").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = if quick {
        vec![50]
    } else {
        std::env::var("TELEKAD_BENCH_SIZES")
            .ok()
            .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| vec![100, 1000])
    };
    let (lookups, concurrency, idle_secs) = if quick { (20, 8, 1) } else { (100, 8, 5) };
    println!(
        "telekad vs mainline 8.0.1 (pubky), loopback only; each side in its own process; \
         {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "mainline: seeded Testnet (tables filled directly, no protocol join), one thread per \
         node, find_node; telekad: Swarm joining through node 0 until every table is full, \
         Node::lookup"
    );
    println!(
        "latency: wall time of the API call; datagrams: kernel `Udp: OutDatagrams` delta over \
         the phase / lookups (all nodes' queries and answers); network namespace: {}",
        if netns_isolated() {
            "isolated (only lo): the kernel counts are this bench's alone"
        } else {
            "SHARED with the host: kernel counts include any other UDP traffic"
        }
    );
    let mut last = None;
    for &n in &sizes {
        let mut got: HashMap<Side, Figures> = HashMap::new();
        for side in [Side::Mainline, Side::Telekad] {
            let plan = Plan {
                side,
                nodes: n,
                lookups,
                concurrency,
                idle_secs,
                settle_timeout_secs: if quick { 60 } else { 300 },
            };
            eprintln!("running {} with {n} nodes...", side.name());
            match run_child(&plan) {
                Ok(f) => {
                    got.insert(side, f);
                }
                Err(e) => eprintln!("  {} {n}: {e}", side.name()),
            }
        }
        table(n, got.get(&Side::Mainline), got.get(&Side::Telekad));
        last = Some(got);
    }
    if let Some(got) = last {
        if let (Some(m), Some(t)) = (got.get(&Side::Mainline), got.get(&Side::Telekad)) {
            targets(m, t);
        }
    }
}
