//! A real-socket swarm in one process: N drivers on distinct 127.0.0.0/8 addresses,
//! bootstrapped from one seed. The project's main demo and its end-to-end test bed.

use crate::config::Config;
use crate::driver::{Node, NodeConfig, StartError, Status};
use crate::id::NodeId;
use crate::sim::node_addr;
use crate::sim::scenario::percentile;
use crate::table::{RoutingTable, TableConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Swarm settings.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// UDP port of every node (0: each picks a free port on its own loopback IP).
    pub port: u16,
    /// Engine settings for every node.
    pub engine: Config,
    /// Seed of node i is `seed + i`.
    pub seed: u64,
    /// Threads that run the nodes, each a single-threaded runtime holding every
    /// `shards`-th node (0: run them on the caller's runtime). Default: one per core.
    pub shards: usize,
}

impl SwarmConfig {
    /// `nodes` nodes with default settings.
    pub fn new(nodes: usize) -> SwarmConfig {
        SwarmConfig {
            nodes,
            port: 0,
            engine: Config::default(),
            seed: 1,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How full the swarm's routing tables are compared with what they have room for.
#[derive(Debug, Clone, PartialEq)]
pub struct FillReport {
    /// Nodes whose table holds every contact the brute-force view says it has room for.
    pub filled: usize,
    /// Nodes in the swarm.
    pub nodes: usize,
    /// Smallest, mean and largest table size.
    pub contacts_min: usize,
    /// Mean table size.
    pub contacts_mean: f64,
    /// Largest table size.
    pub contacts_max: usize,
    /// Mean of what the tables have room for.
    pub expected_mean: f64,
    /// Datagrams sent by all nodes.
    pub datagrams: u64,
    /// Bytes sent by all nodes.
    pub bytes: u64,
    /// Elements and datagrams dropped or skipped by all nodes.
    pub skipped: u64,
}

/// Figures of a batch of lookups run across the swarm.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LookupStats {
    /// Lookups run.
    pub lookups: usize,
    /// Lookups in flight at once.
    pub concurrency: usize,
    /// Lookups whose target node itself answered.
    pub found: usize,
    /// Median hops.
    pub hops_p50: f64,
    /// 95th percentile hops.
    pub hops_p95: f64,
    /// Median latency, milliseconds.
    pub latency_ms_p50: f64,
    /// 95th percentile latency, milliseconds.
    pub latency_ms_p95: f64,
    /// 99th percentile latency, milliseconds.
    pub latency_ms_p99: f64,
    /// Mean datagrams per lookup (queries sent plus answers received).
    pub datagrams_per_lookup: f64,
    /// Process CPU time over the batch divided by its lookups, milliseconds (every node's
    /// share of the work: queries, answers and the asking nodes' bookkeeping).
    pub cpu_ms_per_lookup: f64,
}

impl LookupStats {
    /// Share of lookups that found their target.
    pub fn success_rate(&self) -> f64 {
        self.found as f64 / self.lookups.max(1) as f64
    }
}

/// Figures of announcing and listing topics across the swarm.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicStats {
    /// Topics announced.
    pub topics: usize,
    /// Announcements made (topics x announcers per topic).
    pub announcers: usize,
    /// Announcers that `find` listed with their note.
    pub listed: usize,
    /// Median time of one `find`, milliseconds.
    pub find_ms_p50: f64,
}

/// Figures of one content download between swarm nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DownloadStats {
    /// Content length.
    pub bytes: u64,
    /// Nodes that held and announced it.
    pub holders: usize,
    /// Holders that provided blocks.
    pub holders_used: usize,
    /// Seconds from asking to verified (holder walk included).
    pub seconds: f64,
    /// Megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Whether the content arrived and matched its id.
    pub verified: bool,
    /// Why not, if it did not.
    pub error: Option<String>,
}

/// `k` distinct random node indices below `n` (at most `n` of them).
fn distinct_nodes(rng: &mut impl rand::Rng, n: usize, k: usize) -> Vec<usize> {
    use rand::RngExt;
    let mut out: Vec<usize> = Vec::with_capacity(k);
    while out.len() < k.min(n) {
        let i = rng.random_range(0..n);
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// A running swarm.
#[derive(Debug)]
pub struct Swarm {
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    /// What each node's table has room for (brute force, computed once).
    rooms: Vec<usize>,
    started: Instant,
    /// Held so that the shard threads run as long as the swarm.
    _shards: Vec<Shard>,
}

/// A thread running a single-threaded runtime that holds some of the swarm's nodes (or one
/// node, as a separate process would). A node's wake-ups, datagrams and timers then stay on
/// one thread: no work stealing and no cross-thread wake-up between the nodes of a shard
/// (on a 1,000-node swarm this cut the CPU time per datagram and the latency of concurrent
/// lookups).
///
/// Start nodes on it with `shard.handle().spawn(Node::start(cfg))`. Dropping the shard lets
/// its thread end once its nodes have stopped (at most 5 s later).
#[derive(Debug)]
pub struct Shard {
    handle: tokio::runtime::Handle,
    /// Dropped (with the swarm) to let the thread end once its nodes have stopped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Shard {
    /// The name of shard `i`'s thread (the kernel shows the first 15 bytes of it).
    pub fn thread_name(i: usize) -> String {
        format!("swarm-shard-{i}")
    }

    /// Starts the thread [`Shard::thread_name`] and its runtime.
    pub fn start(i: usize) -> Result<Shard, std::io::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(Shard::thread_name(i))
            .spawn(move || {
                rt.block_on(async move {
                    let _ = stopped.await;
                    // Nodes whose every handle is gone save their state and end; give them
                    // a moment before the runtime (and any node still held) is dropped.
                    let metrics = tokio::runtime::Handle::current().metrics();
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while metrics.num_alive_tasks() > 0 && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            })?;
        Ok(Shard {
            handle,
            _stop: stop,
        })
    }

    /// The shard's runtime, to spawn nodes (and anything else) on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// How many contacts `own` has room for when every address in `all` is live: the size of a
/// fresh table that was shown all of them (buckets of k, diversity caps applied).
pub fn room(own: SocketAddr, all: &[SocketAddr], cfg: &TableConfig) -> usize {
    let mut t = RoutingTable::new(NodeId::of_addr(own), cfg.clone());
    for a in all {
        if *a != own {
            t.seen(*a, crate::time::Time::ZERO, None);
        }
    }
    t.len()
}

impl Swarm {
    /// Starts `cfg.nodes` nodes; node 0 is the seed every other node bootstraps from.
    pub async fn start(cfg: SwarmConfig) -> Result<Swarm, StartError> {
        let mut nodes = Vec::with_capacity(cfg.nodes);
        let mut addrs = Vec::with_capacity(cfg.nodes);
        let shards = (0..cfg.shards)
            .map(Shard::start)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StartError::Bind(node_addr(0, cfg.port), e))?;
        for i in 0..cfg.nodes {
            let mut nc = NodeConfig::new(node_addr(i, cfg.port));
            nc.engine = cfg.engine.clone();
            nc.seed = Some(cfg.seed.wrapping_add(i as u64));
            nc.loopback_only = true;
            if let Some(seed) = addrs.first() {
                nc.bootstrap = vec![*seed];
            }
            let node = match shards.get(i % shards.len().max(1)) {
                Some(shard) => match shard.handle.spawn(Node::start(nc)).await {
                    Ok(started) => started?,
                    Err(e) => {
                        let e = std::io::Error::other(format!("node task failed: {e}"));
                        return Err(StartError::Bind(node_addr(i, cfg.port), e));
                    }
                },
                None => Node::start(nc).await?,
            };
            addrs.push(node.local_addr());
            nodes.push(node);
        }
        let rooms = addrs
            .iter()
            .map(|a| room(*a, &addrs, &cfg.engine.table))
            .collect();
        Ok(Swarm {
            nodes,
            addrs,
            rooms,
            started: Instant::now(),
            _shards: shards,
        })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Their addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Time since the swarm started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Status of every node that is still running.
    pub async fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            if let Ok(s) = n.status().await {
                out.push(s);
            }
        }
        out
    }

    /// Compares every table with the brute-force room of its node.
    pub async fn fill(&self) -> FillReport {
        let mut filled = 0;
        let mut running = 0;
        let (mut min, mut max, mut sum, mut exp_sum) = (usize::MAX, 0, 0, 0);
        let (mut datagrams, mut bytes, mut skipped) = (0, 0, 0);
        for (node, &want) in self.nodes.iter().zip(&self.rooms) {
            let Ok(s) = node.status().await else {
                continue;
            };
            running += 1;
            let have = s.contacts.len();
            if have >= want {
                filled += 1;
            }
            min = min.min(have);
            max = max.max(have);
            sum += have;
            exp_sum += want;
            datagrams += s.stats.datagrams_out;
            bytes += s.stats.bytes_out;
            skipped += s.stats.total_skipped();
        }
        let n = running.max(1) as f64;
        FillReport {
            filled,
            nodes: running,
            contacts_min: if running == 0 { 0 } else { min },
            contacts_mean: sum as f64 / n,
            contacts_max: max,
            expected_mean: exp_sum as f64 / n,
            datagrams,
            bytes,
            skipped,
        }
    }

    /// Polls until every table is filled or `timeout` passes; `progress` sees each report.
    /// Returns the last report and the time it took to settle (`None` if it did not).
    pub async fn settle(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&FillReport),
    ) -> (FillReport, Option<Duration>) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.fill().await;
            progress(&r);
            if r.filled == r.nodes && r.nodes == self.nodes.len() {
                return (r, Some(self.elapsed()));
            }
            if Instant::now() >= deadline {
                return (r, None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `count` lookups, `concurrency` at a time, each from a random node for the ID of
    /// another random node (choices from a seeded RNG).
    pub async fn lookups(&self, count: usize, concurrency: usize, seed: u64) -> LookupStats {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let n = self.nodes.len();
        let jobs: Vec<(usize, usize)> = (0..count)
            .map(|_| {
                let from = rng.random_range(0..n);
                let to = (from + rng.random_range(1..n.max(2))) % n;
                (from, to)
            })
            .collect();
        let concurrency = concurrency.max(1);
        let mut results = Vec::with_capacity(count);
        let cpu0 = crate::procstat::cpu_time();
        // Keep `concurrency` lookups in flight: a new one starts as soon as one ends.
        let mut set = tokio::task::JoinSet::new();
        let mut next = jobs.iter();
        loop {
            while set.len() < concurrency {
                let Some(&(from, to)) = next.next() else {
                    break;
                };
                let node = self.nodes[from].clone();
                let target = NodeId::of_addr(self.addrs[to]);
                set.spawn(async move { node.lookup(target).await });
            }
            match set.join_next().await {
                Some(Ok(Ok(r))) => results.push(r),
                Some(_) => {}
                None => break,
            }
        }
        let cpu = match (cpu0, crate::procstat::cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1000.0,
            _ => f64::NAN,
        };
        let mut hops: Vec<f64> = results.iter().map(|r| f64::from(r.hops)).collect();
        let mut ms: Vec<f64> = results
            .iter()
            .map(|r| r.elapsed.as_secs_f64() * 1000.0)
            .collect();
        let datagrams: u64 = results
            .iter()
            .map(|r| u64::from(r.queried) + u64::from(r.answered))
            .sum();
        LookupStats {
            lookups: count,
            concurrency,
            found: results.iter().filter(|r| r.found).count(),
            hops_p50: percentile(&mut hops, 0.5),
            hops_p95: percentile(&mut hops, 0.95),
            latency_ms_p50: percentile(&mut ms, 0.5),
            latency_ms_p95: percentile(&mut ms, 0.95),
            latency_ms_p99: percentile(&mut ms, 0.99),
            datagrams_per_lookup: datagrams as f64 / results.len().max(1) as f64,
            cpu_ms_per_lookup: cpu / count.max(1) as f64,
        }
    }

    /// Announces `topics` topics, each by `per_topic` random nodes with a note naming the
    /// node, then lists each topic from a node that did not announce it. Counts the
    /// announcers listed with the right note.
    pub async fn topics(&self, topics: usize, per_topic: usize, seed: u64) -> TopicStats {
        use rand::SeedableRng;
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let n = self.nodes.len();
        let per_topic = per_topic.min(n.saturating_sub(1));
        let mut plan = Vec::new();
        for t in 0..topics {
            let key = NodeId::of_topic(&format!("swarm/topic-{seed}-{t}"));
            let who = distinct_nodes(&mut rng, n, per_topic);
            for &i in &who {
                let _ = self.nodes[i].announce(key, &format!("node {i}")).await;
            }
            plan.push((key, who));
        }
        // Announcements are sent when each announce lookup ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut listed = 0;
        let mut ms = Vec::new();
        for (key, who) in &plan {
            let asker = (0..n).find(|i| !who.contains(i)).unwrap_or(0);
            let t = Instant::now();
            let Ok((holders, _)) = self.nodes[asker].find_holders(*key).await else {
                continue;
            };
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            listed += who
                .iter()
                .filter(|&&i| {
                    holders
                        .iter()
                        .any(|h| h.addr == self.addrs[i] && h.note == format!("node {i}"))
                })
                .count();
        }
        TopicStats {
            topics,
            announcers: topics * per_topic,
            listed,
            find_ms_p50: percentile(&mut ms, 0.5),
        }
    }

    /// `holders` random nodes hold `bytes` of seeded content and announce it; another node
    /// downloads it by id, verified against the id.
    pub async fn download(&self, bytes: usize, holders: usize, seed: u64) -> DownloadStats {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let data: Vec<u8> = (0..bytes).map(|_| rng.random::<u8>()).collect();
        let id = NodeId::hash(&data);
        let data = std::sync::Arc::new(data);
        let n = self.nodes.len();
        let holders = holders.clamp(1, n.saturating_sub(1).max(1));
        let chosen = distinct_nodes(&mut rng, n, holders);
        for &i in &chosen {
            let src: std::sync::Arc<dyn crate::engine::BlockSource> = data.clone();
            let _ = self.nodes[i].hold(id, src).await;
            let _ = self.nodes[i].announce(id, "").await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let getter = (0..n).find(|i| !chosen.contains(i)).unwrap_or(0);
        let t = Instant::now();
        let outcome = match self.nodes[getter]
            .download(
                id,
                Box::new(crate::engine::MemorySink::default()),
                None,
                Vec::new(),
            )
            .await
        {
            Ok(rx) => rx.await.ok(),
            Err(_) => None,
        };
        let seconds = t.elapsed().as_secs_f64();
        let (verified, used, error) = match outcome {
            Some(Ok(d)) => (d.len == bytes as u64, d.holders.len(), None),
            Some(Err(e)) => (false, 0, Some(e.to_string())),
            None => (false, 0, Some("the node stopped".to_string())),
        };
        DownloadStats {
            bytes: bytes as u64,
            holders,
            holders_used: used,
            seconds,
            mb_per_s: bytes as f64 / seconds.max(1e-9) / 1e6,
            verified,
            error,
        }
    }

    /// Datagrams sent so far by all running nodes.
    pub async fn datagrams_sent(&self) -> u64 {
        let mut total = 0;
        for n in &self.nodes {
            if let Ok(s) = n.status().await {
                total += s.stats.datagrams_out;
            }
        }
        total
    }

    /// Waits until the swarm sends fewer than `per_node_per_s` datagrams per node per second
    /// for three seconds in a row (joining rounds over), at most `timeout`. Returns how long
    /// it waited, or `None`.
    pub async fn quiet(&self, per_node_per_s: f64, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let mut last = self.datagrams_sent().await;
        let mut calm = 0;
        while t0.elapsed() < timeout {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.datagrams_sent().await;
            let rate = (now - last) as f64 / self.nodes.len().max(1) as f64;
            last = now;
            calm = if rate < per_node_per_s { calm + 1 } else { 0 };
            if calm >= 3 {
                return Some(t0.elapsed());
            }
        }
        None
    }

    /// Stops every node (saving state where a node has a data directory).
    pub async fn shutdown(&self) {
        for n in &self.nodes {
            let _ = n.shutdown().await;
        }
    }
}
