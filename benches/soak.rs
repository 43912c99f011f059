//! Soak: a loopback swarm under churn for minutes, watched for memory growth, panics and
//! failed lookups.
//!
//! `cargo bench --bench soak` runs 200 nodes for 10 minutes. Every 2 s one random node
//! leaves (a clean shutdown, or an abort as a crash) and a node joins in its place: a NEW
//! node on a fresh 127.x.y.1 address, or the one that left restarted on its old address
//! (fresh table, same ID). A joiner bootstraps from 3 random live nodes. Meanwhile 5
//! lookups a second run, each from a random live node for the ID of another random live
//! node. A lookup succeeds if the target node itself answered (`LookupResult::found`); a
//! lookup whose target or source left while it ran is excused (neither success nor
//! failure). By default a node is source or target from the moment it started (a joiner
//! may not have announced itself yet: the hardest case); `SOAK_GRACE_SECS` keeps nodes
//! younger than that out of both roles.
//!
//! Every 10 s a row is printed: elapsed time, RSS (read after `procstat::release_free_memory`,
//! as `telekad run` does every minute), live nodes, mean table size (`cont`) and how many
//! of those contacts are no live node (`stale`), the window's lookups (started, counted,
//! found, excused, hung, `ddl`: cut short by the engine's 10 s lookup deadline), the
//! window's and the cumulative success rate, latency p50/p95, datagrams per second, CPU (%
//! of one core), threads, joins and leaves. At the end: a summary, `target/soak-rss.csv` (every row) and
//! `target/soak-rss.svg` (the RSS curve and the success rate per window).
//!
//! Pass criteria (the bench panics, so the process exits non-zero, if one fails):
//! - lookup success over the whole run >= `SOAK_MIN_SUCCESS_PCT` (99);
//! - RSS flat after warm-up: no sample after the warm-up baseline (the first sample at or
//!   after `SOAK_WARMUP_SECS`, 60 s) exceeds the baseline by more than `SOAK_RSS_TOL_PCT`
//!   (10%); checked when at least two samples follow the warm-up;
//! - no panic on any thread, and no node task that stopped without being told to.
//!
//! Settings (environment): `SOAK_SECS` (600), `SOAK_NODES` (200), `SOAK_CHURN_SECS` (2; 0 =
//! no churn), `SOAK_RESTART_PCT` (25: share of replacements that restart the leaver on its
//! address), `SOAK_CRASH_PCT` (25: share of leavers aborted instead of shut down),
//! `SOAK_LOOKUPS_PER_S` (5), `SOAK_GRACE_SECS` (0), `SOAK_WARMUP_SECS` (60),
//! `SOAK_SAMPLE_SECS` (10), `SOAK_RSS_TOL_PCT` (10), `SOAK_MIN_SUCCESS_PCT` (99),
//! `SOAK_SEED` (1), `SOAK_ALLOC` (`mimalloc`, the allocator of the `telekad` binary, or
//! `system`). A run without `--bench` (`cargo test --benches`) is a smoke run: 40 nodes,
//! 30 s, 10 s warm-up, RSS criterion reported but not enforced, files named
//! `soak-rss-quick.*`. `cargo test` alone never builds or runs it.
//!
//! Network safety: every node binds a 127.0.0.0/8 address (asserted), bootstraps only from
//! swarm members and runs with `loopback_only`, so it drops any datagram addressed outside
//! loopback.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telekad::driver::{Node, NodeConfig};
use telekad::id::NodeId;
use telekad::procstat;
use telekad::sim::node_addr;
use telekad::sim::scenario::percentile;

/// The allocator, chosen by `SOAK_ALLOC` before the first allocation: mimalloc by default
/// (what the `telekad` binary runs), or the system allocator.
mod alloc_switch {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const MIMALLOC: u8 = 1;
    const SYSTEM: u8 = 2;
    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    pub struct Switch;

    fn mode() -> u8 {
        let m = MODE.load(Ordering::Relaxed);
        if m != UNKNOWN {
            return m;
        }
        // SAFETY: getenv does not allocate and returns NULL or a NUL-terminated string;
        // nothing in this process calls setenv. Racing first calls all read the same value.
        let v = unsafe { libc::getenv(c"SOAK_ALLOC".as_ptr()) };
        // SAFETY: `v` is non-null and NUL-terminated (above).
        let system = !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == b"system";
        let m = if system { SYSTEM } else { MIMALLOC };
        MODE.store(m, Ordering::Relaxed);
        m
    }

    /// Which allocator runs.
    pub fn name() -> &'static str {
        if mode() == SYSTEM {
            "system (glibc malloc)"
        } else {
            "mimalloc"
        }
    }

    // SAFETY: every call goes to the one allocator fixed at the first call, so memory is
    // always freed by the allocator that handed it out.
    unsafe impl GlobalAlloc for Switch {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe {
                if mode() == SYSTEM {
                    System.alloc(l)
                } else {
                    mimalloc::MiMalloc.alloc(l)
                }
            }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe {
                if mode() == SYSTEM {
                    System.dealloc(p, l)
                } else {
                    mimalloc::MiMalloc.dealloc(p, l)
                }
            }
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe {
                if mode() == SYSTEM {
                    System.alloc_zeroed(l)
                } else {
                    mimalloc::MiMalloc.alloc_zeroed(l)
                }
            }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe {
                if mode() == SYSTEM {
                    System.realloc(p, l, new)
                } else {
                    mimalloc::MiMalloc.realloc(p, l, new)
                }
            }
        }
    }
}

#[global_allocator]
static GLOBAL: alloc_switch::Switch = alloc_switch::Switch;

/// Panics on any thread (node tasks included: tokio would otherwise swallow them).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The longest a lookup may take before it counts as hung (the engine's deadline is 10 s).
const LOOKUP_LIMIT: Duration = Duration::from_secs(30);
/// Nodes a joiner bootstraps from.
const BOOTSTRAP_FROM: usize = 3;
/// Failed lookups printed per window (all are counted).
const MISSES_SHOWN: usize = 5;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    secs: u64,
    nodes: usize,
    churn_every: Duration,
    restart_pct: u32,
    crash_pct: u32,
    lookups_per_s: f64,
    grace: Duration,
    warmup_secs: f64,
    sample_every: Duration,
    rss_tol_pct: f64,
    min_success_pct: f64,
    seed: u64,
}

impl Settings {
    fn from_env(quick: bool) -> Settings {
        let s = Settings {
            quick,
            secs: env("SOAK_SECS", if quick { 30 } else { 600 }),
            nodes: env("SOAK_NODES", if quick { 40 } else { 200 }),
            churn_every: Duration::from_secs_f64(env("SOAK_CHURN_SECS", 2.0)),
            restart_pct: env("SOAK_RESTART_PCT", 25),
            crash_pct: env("SOAK_CRASH_PCT", 25),
            lookups_per_s: env("SOAK_LOOKUPS_PER_S", 5.0),
            grace: Duration::from_secs_f64(env("SOAK_GRACE_SECS", 0.0)),
            warmup_secs: env("SOAK_WARMUP_SECS", if quick { 10.0 } else { 60.0 }),
            sample_every: Duration::from_secs_f64(env("SOAK_SAMPLE_SECS", 10.0)),
            rss_tol_pct: env("SOAK_RSS_TOL_PCT", 10.0),
            min_success_pct: env("SOAK_MIN_SUCCESS_PCT", 99.0),
            seed: env("SOAK_SEED", 1),
        };
        assert!(s.nodes >= 8, "SOAK_NODES must be at least 8");
        assert!(s.lookups_per_s > 0.0, "SOAK_LOOKUPS_PER_S must be positive");
        assert!(
            s.sample_every >= Duration::from_secs(1),
            "SOAK_SAMPLE_SECS must be at least 1"
        );
        s
    }
}

/// A live node.
struct Slot {
    node: Node,
    addr: SocketAddr,
    joined: Instant,
}

/// The swarm as it stands, shared by the churn, lookup and sampling tasks. Never held
/// across an `.await`.
#[derive(Default)]
struct World {
    live: Vec<Slot>,
    /// Departures per address: a lookup whose source or target departed while it ran (the
    /// count changed) is excused.
    departures: HashMap<SocketAddr, u64>,
    next_index: usize,
    next_seed: u64,
    /// Datagrams sent by nodes that have left.
    retired_datagrams: u64,
    joins: u64,
    leaves: u64,
    restarts: u64,
    crashes: u64,
    join_failures: u64,
}

impl World {
    fn departures(&self, a: SocketAddr) -> u64 {
        self.departures.get(&a).copied().unwrap_or(0)
    }

    /// A random live node that joined at least `grace` ago, other than `not`.
    fn pick(&self, rng: &mut ChaCha8Rng, grace: Duration, not: &[SocketAddr]) -> Option<usize> {
        let ok: Vec<usize> = (0..self.live.len())
            .filter(|&i| {
                self.live[i].joined.elapsed() >= grace && !not.contains(&self.live[i].addr)
            })
            .collect();
        (!ok.is_empty()).then(|| ok[rng.random_range(0..ok.len())])
    }
}

/// Lookup outcomes over a window or the whole run.
#[derive(Debug, Default, Clone)]
struct Tally {
    started: u64,
    /// Completed with source and target live throughout.
    counted: u64,
    found: u64,
    /// Source or target left while it ran.
    excused: u64,
    /// Counted ones that did not finish within `LOOKUP_LIMIT` or whose source vanished.
    hung: u64,
    /// Counted ones cut short by the engine's lookup deadline (found or not).
    deadline: u64,
    ms: Vec<f64>,
    misses_shown: usize,
}

#[derive(Default)]
struct Tallies {
    window: Tally,
    total: Tally,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Sample {
    t_s: f64,
    rss_mb: f64,
    live: usize,
    contacts_mean: f64,
    stale_mean: f64,
    started: u64,
    counted: u64,
    found: u64,
    excused: u64,
    hung: u64,
    deadline: u64,
    cum_counted: u64,
    cum_found: u64,
    ms_p50: f64,
    ms_p95: f64,
    datagrams_per_s: f64,
    cpu_pct: f64,
    threads: u64,
    joins: u64,
    leaves: u64,
    dead: usize,
    panics: usize,
}

impl Sample {
    fn success(&self) -> Option<f64> {
        (self.counted > 0).then(|| 100.0 * self.found as f64 / self.counted as f64)
    }
    fn cum_success(&self) -> Option<f64> {
        (self.cum_counted > 0).then(|| 100.0 * self.cum_found as f64 / self.cum_counted as f64)
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

const HEADER: &str = "  t_s  rss_MB  live  cont stale  lkups  cntd  found  exc  hung  ddl   win%    cum%  p50ms  p95ms  dgram/s  cpu%  thr  joins leaves dead";

fn print_row(s: &Sample) {
    println!(
        "{:>5.0} {:>7.1} {:>5} {:>5.1} {:>5.1} {:>6} {:>5} {:>6} {:>4} {:>5} {:>4} {:>6} {:>7} {:>6.1} {:>6.1} {:>8.0} {:>5.1} {:>4} {:>6} {:>6} {:>4}",
        s.t_s,
        s.rss_mb,
        s.live,
        s.contacts_mean,
        s.stale_mean,
        s.started,
        s.counted,
        s.found,
        s.excused,
        s.hung,
        s.deadline,
        pct(s.success()),
        pct(s.cum_success()),
        s.ms_p50,
        s.ms_p95,
        s.datagrams_per_s,
        s.cpu_pct,
        s.threads,
        s.joins,
        s.leaves,
        s.dead
    );
}

fn rss_mb() -> f64 {
    procstat::release_free_memory();
    procstat::rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

fn cpu_s() -> f64 {
    procstat::cpu_time().map_or(0.0, |d| d.as_secs_f64())
}

fn node_config(bind: SocketAddr, bootstrap: Vec<SocketAddr>, seed: u64) -> NodeConfig {
    assert!(bind.ip().is_loopback(), "soak node off loopback: {bind}");
    for b in &bootstrap {
        assert!(b.ip().is_loopback(), "soak bootstrap off loopback: {b}");
    }
    let mut nc = NodeConfig::new(bind);
    nc.bootstrap = bootstrap;
    nc.seed = Some(seed);
    nc.loopback_only = true;
    nc
}

/// Starts a node, retrying for a while if its address is still bound (a restart right
/// after an abort, whose socket closes when the aborted task is dropped).
async fn start_node(nc: NodeConfig) -> Option<Node> {
    for attempt in 0..30 {
        match Node::start(nc.clone()).await {
            Ok(n) => {
                assert!(n.local_addr().ip().is_loopback());
                return Some(n);
            }
            Err(e) if attempt == 29 => {
                eprintln!("  join failed at {}: {e}", nc.bind);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// What the live nodes report.
struct Census {
    /// Datagrams sent so far by live and departed nodes.
    sent: u64,
    /// Mean table size.
    contacts_mean: f64,
    /// Mean number of contacts per table at an address no live node holds (nodes that
    /// left; a restarted node's address counts as live again).
    stale_mean: f64,
    live: usize,
    /// Listed nodes that no longer answer (their task stopped without being told).
    dead: usize,
}

async fn census(world: &Arc<Mutex<World>>) -> Census {
    let (nodes, retired, live): (Vec<(Node, u64)>, u64, HashSet<SocketAddr>) = {
        let w = world.lock().unwrap();
        (
            w.live
                .iter()
                .map(|s| (s.node.clone(), w.departures(s.addr)))
                .collect(),
            w.retired_datagrams,
            w.live.iter().map(|s| s.addr).collect(),
        )
    };
    let (mut sent, mut contacts, mut stale, mut answered, mut dead) =
        (retired, 0usize, 0usize, 0usize, 0usize);
    for (n, departures) in &nodes {
        match n.status().await {
            Ok(s) => {
                sent += s.stats.datagrams_out;
                contacts += s.contacts.len();
                stale += s
                    .contacts
                    .iter()
                    .filter(|c| !live.contains(&c.addr()))
                    .count();
                answered += 1;
            }
            // It may have left since the list was taken (and its address may be in use
            // again by a restart): only a node that has not departed since is dead.
            Err(_) => {
                if world.lock().unwrap().departures(n.local_addr()) == *departures {
                    dead += 1;
                }
            }
        }
    }
    Census {
        sent,
        contacts_mean: contacts as f64 / answered.max(1) as f64,
        stale_mean: stale as f64 / answered.max(1) as f64,
        live: nodes.len(),
        dead,
    }
}

/// Replaces one random node every `every` until `stop`.
async fn churn(world: Arc<Mutex<World>>, cfg: Settings, stop: Arc<AtomicBool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xc4u64);
    let mut tick = tokio::time::interval(cfg.churn_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let victim = {
            let mut w = world.lock().unwrap();
            if w.live.len() <= BOOTSTRAP_FROM {
                continue;
            }
            let i = rng.random_range(0..w.live.len());
            let s = w.live.swap_remove(i);
            *w.departures.entry(s.addr).or_default() += 1;
            w.leaves += 1;
            s
        };
        let sent = victim
            .node
            .status()
            .await
            .map_or(0, |s| s.stats.datagrams_out);
        let crash = rng.random_range(0..100u32) < cfg.crash_pct;
        let restart = rng.random_range(0..100u32) < cfg.restart_pct;
        if crash {
            victim.node.abort();
        } else {
            let _ = victim.node.shutdown().await;
        }
        let (bind, bootstrap, seed) = {
            let mut w = world.lock().unwrap();
            w.retired_datagrams += sent;
            if crash {
                w.crashes += 1;
            }
            let bind = if restart {
                victim.addr
            } else {
                w.next_index += 1;
                node_addr(w.next_index - 1, 0)
            };
            let mut from = Vec::new();
            for _ in 0..BOOTSTRAP_FROM {
                let not: Vec<SocketAddr> = from.clone();
                if let Some(i) = w.pick(&mut rng, cfg.grace, &not) {
                    from.push(w.live[i].addr);
                }
            }
            if from.is_empty() {
                from.extend(w.live.iter().take(BOOTSTRAP_FROM).map(|s| s.addr));
            }
            w.next_seed += 1;
            (
                bind,
                from,
                cfg.seed.wrapping_mul(1_000_003).wrapping_add(w.next_seed),
            )
        };
        drop(victim);
        let node = start_node(node_config(bind, bootstrap, seed)).await;
        let mut w = world.lock().unwrap();
        match node {
            Some(node) => {
                w.joins += 1;
                if restart {
                    w.restarts += 1;
                }
                let addr = node.local_addr();
                w.live.push(Slot {
                    node,
                    addr,
                    joined: Instant::now(),
                });
            }
            None => w.join_failures += 1,
        }
    }
}

/// Starts lookups at `cfg.lookups_per_s` until `stop`, then waits for those in flight.
async fn lookups(
    world: Arc<Mutex<World>>,
    tallies: Arc<Mutex<Tallies>>,
    cfg: Settings,
    stop: Arc<AtomicBool>,
    t0: Instant,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x100c);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.lookups_per_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut set = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        // Reap finished tasks so the set does not grow over the run.
        while set.try_join_next().is_some() {}
        let job = {
            let w = world.lock().unwrap();
            let Some(i) = w.pick(&mut rng, cfg.grace, &[]) else {
                continue;
            };
            let Some(j) = w.pick(&mut rng, cfg.grace, &[w.live[i].addr]) else {
                continue;
            };
            let (s, d) = (&w.live[i], &w.live[j]);
            (
                s.node.clone(),
                s.addr,
                w.departures(s.addr),
                d.addr,
                w.departures(d.addr),
                d.joined,
            )
        };
        {
            let mut t = tallies.lock().unwrap();
            t.window.started += 1;
            t.total.started += 1;
        }
        let (world, tallies) = (world.clone(), tallies.clone());
        set.spawn(async move {
            let (node, src, src_dep, dst, dst_dep, dst_joined) = job;
            let r = tokio::time::timeout(LOOKUP_LIMIT, node.lookup(NodeId::of_addr(dst))).await;
            let intact = {
                let w = world.lock().unwrap();
                w.departures(src) == src_dep && w.departures(dst) == dst_dep
            };
            let mut t = tallies.lock().unwrap();
            let Tallies { window, total } = &mut *t;
            if !intact {
                window.excused += 1;
                total.excused += 1;
                return;
            }
            window.counted += 1;
            total.counted += 1;
            let (found, why) = match &r {
                Ok(Ok(res)) => {
                    let ms = res.elapsed.as_secs_f64() * 1000.0;
                    window.ms.push(ms);
                    total.ms.push(ms);
                    if res.timed_out {
                        window.deadline += 1;
                        total.deadline += 1;
                    }
                    (
                        res.found,
                        format!(
                            "hops {} queried {} answered {} timed_out {} closest {} in {ms:.0} ms",
                            res.hops,
                            res.queried,
                            res.answered,
                            res.timed_out,
                            res.closest.len()
                        ),
                    )
                }
                Ok(Err(_)) => (false, "source node task gone".to_string()),
                Err(_) => (false, format!("no answer within {LOOKUP_LIMIT:?}")),
            };
            if !matches!(r, Ok(Ok(_))) {
                window.hung += 1;
                total.hung += 1;
            }
            if found {
                window.found += 1;
                total.found += 1;
            } else if window.misses_shown < MISSES_SHOWN {
                window.misses_shown += 1;
                eprintln!(
                    "  miss at {:.1} s: {src} -> {dst} (target joined {:.1} s ago): {why}",
                    t0.elapsed().as_secs_f64(),
                    dst_joined.elapsed().as_secs_f64()
                );
            }
        });
    }
    let deadline = Instant::now() + LOOKUP_LIMIT + Duration::from_secs(5);
    while !set.is_empty() && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_secs(1), set.join_next()).await;
    }
}

/// Waits until the swarm sends fewer than 2 datagrams per node per second for 3 s in a
/// row (joining over), at most 60 s. Returns the wait.
async fn settle(world: &Arc<Mutex<World>>) -> Duration {
    let t0 = Instant::now();
    let first = census(world).await;
    let (mut last, n) = (first.sent, first.live);
    let mut calm = 0;
    while t0.elapsed() < Duration::from_secs(60) && calm < 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = census(world).await.sent;
        let rate = (now - last) as f64 / n.max(1) as f64;
        last = now;
        calm = if rate < 2.0 { calm + 1 } else { 0 };
    }
    t0.elapsed()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let cfg = Settings::from_env(quick);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let run = rt.block_on(run(&cfg));
    rt.shutdown_timeout(Duration::from_secs(5));
    finish(&cfg, &run);
}

/// What the run measured, for the summary.
struct Run {
    samples: Vec<Sample>,
    total: Tally,
    settle_s: f64,
    rss_before_mb: f64,
    rss_started_mb: f64,
    world: (u64, u64, u64, u64, u64, usize),
    cores: usize,
    load: String,
}

async fn run(cfg: &Settings) -> Run {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "soak: {} nodes, {} s, churn every {:?} ({}% restarts on the same address, {}% \
         crashes), {} lookups/s, grace {:?}, warm-up {} s, sample every {:?}, allocator {}, \
         {cores} cores, load average {}{}",
        cfg.nodes,
        cfg.secs,
        cfg.churn_every,
        cfg.restart_pct,
        cfg.crash_pct,
        cfg.lookups_per_s,
        cfg.grace,
        cfg.warmup_secs,
        cfg.sample_every,
        alloc_switch::name(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if cfg.quick {
            " (smoke run: no --bench)"
        } else {
            ""
        }
    );
    let rss_before_mb = rss_mb();
    let world = Arc::new(Mutex::new(World::default()));
    let mut seed0: Option<SocketAddr> = None;
    for i in 0..cfg.nodes {
        let boot = seed0.into_iter().collect();
        let node = start_node(node_config(
            node_addr(i, 0),
            boot,
            cfg.seed.wrapping_add(i as u64),
        ))
        .await
        .expect("soak node on a 127.x.y.1 address");
        let addr = node.local_addr();
        seed0.get_or_insert(addr);
        let mut w = world.lock().unwrap();
        w.live.push(Slot {
            node,
            addr,
            joined: Instant::now(),
        });
        w.next_index = i + 1;
    }
    let settle_d = settle(&world).await;
    let contacts = census(&world).await.contacts_mean;
    let rss_started_mb = rss_mb();
    println!(
        "started {} nodes and waited {:.1} s for joining to end: {contacts:.1} contacts mean, \
         RSS {rss_started_mb:.1} MB ({:.1} KB per node over the {rss_before_mb:.1} MB before)",
        cfg.nodes,
        settle_d.as_secs_f64(),
        (rss_started_mb - rss_before_mb) * 1024.0 / cfg.nodes as f64
    );
    println!("{HEADER}");

    let stop = Arc::new(AtomicBool::new(false));
    let tallies = Arc::new(Mutex::new(Tallies::default()));
    let t0 = Instant::now();
    let churner = (!cfg.churn_every.is_zero())
        .then(|| tokio::spawn(churn(world.clone(), cfg.clone(), stop.clone())));
    let looker = tokio::spawn(lookups(
        world.clone(),
        tallies.clone(),
        cfg.clone(),
        stop.clone(),
        t0,
    ));

    let mut samples = Vec::new();
    let mut last_sent = census(&world).await.sent;
    let (mut last_cpu, mut last_t) = (cpu_s(), Instant::now());
    let mut k = 1u32;
    loop {
        let at = t0 + cfg.sample_every * k;
        if at > t0 + Duration::from_secs(cfg.secs) {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        k += 1;
        let Census {
            sent,
            contacts_mean,
            stale_mean,
            live,
            dead,
        } = census(&world).await;
        let rss = rss_mb();
        let (cpu, now) = (cpu_s(), Instant::now());
        let dt = (now - last_t).as_secs_f64().max(1e-9);
        let mut win = std::mem::take(&mut tallies.lock().unwrap().window);
        let (cum_counted, cum_found) = {
            let t = tallies.lock().unwrap();
            (t.total.counted, t.total.found)
        };
        let (joins, leaves) = {
            let w = world.lock().unwrap();
            (w.joins, w.leaves)
        };
        let s = Sample {
            t_s: t0.elapsed().as_secs_f64(),
            rss_mb: rss,
            live,
            contacts_mean,
            stale_mean,
            started: win.started,
            counted: win.counted,
            found: win.found,
            excused: win.excused,
            hung: win.hung,
            deadline: win.deadline,
            cum_counted,
            cum_found,
            ms_p50: percentile(&mut win.ms, 0.5),
            ms_p95: percentile(&mut win.ms, 0.95),
            datagrams_per_s: sent.saturating_sub(last_sent) as f64 / dt,
            cpu_pct: 100.0 * (cpu - last_cpu) / dt,
            threads: procstat::threads().unwrap_or(0),
            joins,
            leaves,
            dead,
            panics: PANICS.load(Ordering::Relaxed),
        };
        print_row(&s);
        samples.push(s);
        (last_sent, last_cpu, last_t) = (sent, cpu, now);
    }

    stop.store(true, Ordering::Relaxed);
    if let Some(c) = churner {
        let _ = c.await;
    }
    let _ = looker.await;
    let total = tallies.lock().unwrap().total.clone();
    let nodes: Vec<Node> = {
        let w = world.lock().unwrap();
        w.live.iter().map(|s| s.node.clone()).collect()
    };
    for n in &nodes {
        let _ = n.shutdown().await;
    }
    let w = world.lock().unwrap();
    Run {
        samples,
        total,
        settle_s: settle_d.as_secs_f64(),
        rss_before_mb,
        rss_started_mb,
        world: (
            w.joins,
            w.leaves,
            w.restarts,
            w.crashes,
            w.join_failures,
            w.next_index,
        ),
        cores,
        load,
    }
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

fn finish(cfg: &Settings, run: &Run) {
    let s = &run.samples;
    let t = &run.total;
    let (joins, leaves, restarts, crashes, join_failures, addrs) = run.world;
    let overall = 100.0 * t.found as f64 / t.counted.max(1) as f64;
    let min_window = s
        .iter()
        .filter_map(|x| x.success().map(|v| (v, x.t_s)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let mut ms = t.ms.clone();
    let panics = PANICS.load(Ordering::Relaxed);
    let dead_max = s.iter().map(|x| x.dead).max().unwrap_or(0);
    let after: Vec<&Sample> = s
        .iter()
        .filter(|x| x.t_s >= cfg.warmup_secs - 0.5)
        .collect();
    let base = after.first().map(|x| (x.t_s, x.rss_mb));
    let end = s.last().map(|x| (x.t_s, x.rss_mb));
    let (rmin, rmax) = after.iter().fold((f64::MAX, 0.0f64), |(lo, hi), x| {
        (lo.min(x.rss_mb), hi.max(x.rss_mb))
    });
    let xs: Vec<f64> = after.iter().map(|x| x.t_s / 60.0).collect();
    let ys: Vec<f64> = after.iter().map(|x| x.rss_mb).collect();
    let mb_per_min = slope(&xs, &ys);

    println!();
    println!("summary");
    println!(
        "  machine: {} cores, load average at start {}; CPU% is of one core, this process \
         only",
        run.cores,
        run.load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  swarm: {} nodes, settled in {:.1} s; churn: {leaves} left ({crashes} aborted), \
         {joins} joined ({restarts} restarts on the same address), {join_failures} joins \
         failed, {addrs} loopback IPs used",
        cfg.nodes, run.settle_s
    );
    println!(
        "  lookups: {} started, {} counted, {} found, {} excused (source or target left), \
         {} hung, {} cut by the lookup deadline; success {overall:.3}% overall, lowest window \
         {}; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        t.started,
        t.counted,
        t.found,
        t.excused,
        t.hung,
        t.deadline,
        min_window.map_or("-".to_string(), |(v, at)| format!("{v:.2}% (at {at:.0} s)")),
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.95),
        percentile(&mut ms, 0.99)
    );
    println!(
        "  RSS: {:.1} MB before the nodes, {:.1} MB once joined",
        run.rss_before_mb, run.rss_started_mb
    );
    let rss_checked = after.len() >= 2;
    let rss_ok = match base {
        Some((bt, b)) if rss_checked => {
            let (et, e) = end.unwrap_or((bt, b));
            println!(
                "  RSS after warm-up: {b:.1} MB at {bt:.0} s -> {e:.1} MB at {et:.0} s ({:+.1}%); \
                 min {rmin:.1} max {rmax:.1} MB, max/min {:.3}, max/baseline {:.3}; trend \
                 {mb_per_min:+.3} MB/min",
                100.0 * (e / b - 1.0),
                rmax / rmin,
                rmax / b
            );
            rmax <= b * (1.0 + cfg.rss_tol_pct / 100.0)
        }
        _ => {
            println!("  RSS after warm-up: fewer than two samples after warm-up, not checked");
            true
        }
    };
    let success_ok = overall >= cfg.min_success_pct && t.counted > 0;
    let rss_enforced = rss_checked && !cfg.quick;
    let mut failures = Vec::new();
    if !success_ok {
        failures.push(format!(
            "lookup success {overall:.3}% < {}% ({} of {} counted lookups found their target)",
            cfg.min_success_pct, t.found, t.counted
        ));
    }
    if !rss_ok && rss_enforced {
        failures.push(format!(
            "RSS grew after warm-up: max {rmax:.1} MB > baseline {:.1} MB + {}%",
            base.map_or(0.0, |b| b.1),
            cfg.rss_tol_pct
        ));
    }
    if panics > 0 {
        failures.push(format!("{panics} panics"));
    }
    if dead_max > 0 {
        failures.push(format!(
            "up to {dead_max} node tasks stopped without being told"
        ));
    }
    println!(
        "  criteria: success >= {}% overall: {}; every RSS sample after warm-up <= baseline + \
         {}%: {}{}; no panics: {}; no dead nodes: {}",
        cfg.min_success_pct,
        if success_ok { "pass" } else { "FAIL" },
        cfg.rss_tol_pct,
        if !rss_checked {
            "not checked"
        } else if rss_ok {
            "pass"
        } else {
            "FAIL"
        },
        if rss_checked && !rss_enforced {
            " (smoke run: not enforced)"
        } else {
            ""
        },
        if panics == 0 { "pass" } else { "FAIL" },
        if dead_max == 0 { "pass" } else { "FAIL" },
    );

    let dir = out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let stem = if cfg.quick {
        "soak-rss-quick"
    } else {
        "soak-rss"
    };
    let csv = dir.join(format!("{stem}.csv"));
    let svg = dir.join(format!("{stem}.svg"));
    match std::fs::write(&csv, to_csv(s)) {
        Ok(()) => println!("  rows written to {}", csv.display()),
        Err(e) => println!("  could not write {}: {e}", csv.display()),
    }
    match std::fs::write(&svg, chart(cfg, s, base.map(|b| b.1))) {
        Ok(()) => println!("  chart written to {}", svg.display()),
        Err(e) => println!("  could not write {}: {e}", svg.display()),
    }
    if !failures.is_empty() {
        panic!("soak failed: {}", failures.join("; "));
    }
    println!("  soak passed");
}

fn to_csv(s: &[Sample]) -> String {
    let mut out = String::from(
        "elapsed_s,rss_mb,live_nodes,contacts_mean,stale_contacts_mean,lookups_started,\
         lookups_counted,lookups_found,lookups_excused,lookups_hung,lookups_cut_by_deadline,\
         window_success_pct,cumulative_success_pct,\
         latency_ms_p50,latency_ms_p95,datagrams_per_s,cpu_pct_of_one_core,threads,joins,\
         leaves,dead_nodes,panics\n",
    );
    for x in s {
        let _ = writeln!(
            out,
            "{:.1},{:.2},{},{:.2},{:.2},{},{},{},{},{},{},{},{},{:.2},{:.2},{:.1},{:.1},{},{},{},{},{}",
            x.t_s,
            x.rss_mb,
            x.live,
            x.contacts_mean,
            x.stale_mean,
            x.started,
            x.counted,
            x.found,
            x.excused,
            x.hung,
            x.deadline,
            x.success().map_or(String::new(), |v| format!("{v:.3}")),
            x.cum_success().map_or(String::new(), |v| format!("{v:.3}")),
            x.ms_p50,
            x.ms_p95,
            x.datagrams_per_s,
            x.cpu_pct,
            x.threads,
            x.joins,
            x.leaves,
            x.dead,
            x.panics
        );
    }
    out
}

/// A panel's frame: axes, y grid with labels, x ticks in seconds. Returns the mappings.
#[allow(clippy::too_many_arguments)]
fn frame(
    out: &mut String,
    x0: f64,
    title: &str,
    tmax: f64,
    vmin: f64,
    vmax: f64,
    ylabel_decimals: usize,
) -> (impl Fn(f64) -> f64, impl Fn(f64) -> f64) {
    let (w, h, top, left) = (420.0, 220.0, 40.0, x0 + 50.0);
    let px = move |t: f64| left + t / tmax.max(1e-9) * w;
    let py = move |v: f64| top + h - (v - vmin) / (vmax - vmin).max(1e-9) * h;
    let _ = write!(
        out,
        r#"<text x="{left}" y="24" font-size="14" font-weight="bold">{title}</text>"#
    );
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/>"##,
        top + h,
        left + w,
        top + h,
        top + h
    );
    for i in 0..=4 {
        let v = vmin + (vmax - vmin) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{v:.ylabel_decimals$}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##,
            left - 4.0,
            py(v) + 3.0,
            left + w,
            y = py(v)
        );
    }
    let step = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
        .into_iter()
        .find(|s| tmax / s <= 10.0)
        .unwrap_or(3600.0);
    let mut t = 0.0;
    while t <= tmax + 1e-9 {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{t:.0}</text>"#,
            px(t),
            top + h + 14.0
        );
        t += step;
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">elapsed (s)</text>"#,
        left + w / 2.0,
        top + h + 30.0
    );
    (px, py)
}

fn polyline(out: &mut String, color: &str, pts: &[(f64, f64)]) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        p.join(" ")
    );
    for (x, y) in pts {
        let _ = write!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
        );
    }
}

/// The chart: RSS over time (warm-up shaded, baseline and tolerance dashed) and the lookup
/// success rate of each window.
fn chart(cfg: &Settings, s: &[Sample], base: Option<f64>) -> String {
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1060" height="320" font-family="sans-serif">"#,
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let tmax = s
        .last()
        .map_or(1.0, |x| x.t_s)
        .max(cfg.sample_every.as_secs_f64());
    let rmax = s.iter().map(|x| x.rss_mb).fold(0.0f64, f64::max).max(1.0) * 1.2;
    let (px, py) = frame(&mut out, 0.0, "RSS (MB), whole process", tmax, 0.0, rmax, 0);
    let wx = px(cfg.warmup_secs.min(tmax));
    let _ = write!(
        out,
        r##"<rect x="{}" y="40" width="{}" height="220" fill="#e8e8e8" fill-opacity="0.5"/><text x="{}" y="54" font-size="10" fill="#666">warm-up</text>"##,
        px(0.0) + 1.0,
        (wx - px(0.0) - 1.0).max(0.0),
        px(0.0) + 4.0
    );
    if let Some(b) = base {
        let tol = b * (1.0 + cfg.rss_tol_pct / 100.0);
        for (v, color, label) in [
            (b, "#2ca02c", "baseline".to_string()),
            (tol, "#d62728", format!("+{}% limit", cfg.rss_tol_pct)),
        ] {
            let _ = write!(
                out,
                r#"<line x1="{wx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{color}" text-anchor="end">{label}</text>"#,
                px(tmax),
                px(tmax),
                py(v) - 3.0,
                y = py(v)
            );
        }
    }
    let pts: Vec<(f64, f64)> = s.iter().map(|x| (px(x.t_s), py(x.rss_mb))).collect();
    polyline(&mut out, "#1f77b4", &pts);

    let lows: Vec<f64> = s.iter().filter_map(Sample::success).collect();
    let lo = lows
        .iter()
        .copied()
        .fold(cfg.min_success_pct - 1.0, f64::min)
        .floor()
        .max(0.0);
    let (qx, qy) = frame(
        &mut out,
        530.0,
        "lookup success per window (%)",
        tmax,
        lo,
        100.0,
        1,
    );
    let _ = write!(
        out,
        r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#d62728" text-anchor="end">{}% limit</text>"##,
        qx(0.0),
        qx(tmax),
        qx(tmax),
        qy(cfg.min_success_pct) - 3.0,
        cfg.min_success_pct,
        y = qy(cfg.min_success_pct)
    );
    let pts: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|x| x.success().map(|v| (qx(x.t_s), qy(v))))
        .collect();
    polyline(&mut out, "#ff7f0e", &pts);
    let _ = write!(
        out,
        r##"<text x="10" y="312" font-size="10" fill="#666">telekad soak: {} nodes on loopback, one replaced every {:?}, {} lookups/s, RSS sampled every {:?} (cargo bench --bench soak)</text>"##,
        cfg.nodes, cfg.churn_every, cfg.lookups_per_s, cfg.sample_every
    );
    out.push_str("</svg>\n");
    out
}
