//! Loopback download throughput: 64 MiB from 1 and from 3 telekad holders into a telekad
//! node (real sockets, drivers, JSON + base64 blocks, SHA-256 verification), next to a
//! baseline measured in the same run: a bare request/response UDP transfer written here
//! (two threads with blocking sockets, binary 4096-byte blocks, a fixed window of 256, the same socket buffers, no
//! encoding, no hashing), the loopback limit for this style of transfer. Prints MB/s and telekad's fraction of the baseline.
//!
//! `cargo bench --bench download`; `TELEKAD_BENCH_QUICK=1` (or `cargo test --benches`)
//! moves 8 MiB instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::driver::{Node, NodeConfig};
use telekad::engine::{BlockSource, MemorySink};
use telekad::id::NodeId;
use telekad::swarm::Shard;

fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Each node on its own loopback IP and its own thread (a single-threaded runtime), as
/// holders and downloaders on a real network are separate processes: they share no per-IP
/// request budget and no scheduler. The thread ends once the node has shut down and the
/// shard is dropped.
async fn node(seed: u64) -> (Node, Shard) {
    let ip = [127, 0, 62 + (seed / 100) as u8, (seed % 100) as u8 + 1];
    let mut cfg = NodeConfig::new(SocketAddr::from((ip, 0)));
    cfg.loopback_only = true;
    cfg.seed = Some(seed);
    let shard = Shard::start(seed as usize).expect("shard thread");
    let node = shard
        .handle()
        .spawn(Node::start(cfg))
        .await
        .expect("node task")
        .expect("node starts");
    (node, shard)
}

/// CPU seconds (user + system) used so far by this process's thread named `name`.
fn thread_cpu(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    // Clock ticks per second: 100 on Linux for /proc stat figures.
    let tick = 100.0;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15, that is 11 and 12 after the name.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        return (ticks(11) + ticks(12)) / tick;
    }
    0.0
}

/// One download: seconds, and CPU microseconds per block used by the downloader's thread
/// and by the holders' threads together.
struct Run {
    secs: f64,
    client_us_per_block: f64,
    holders_us_per_block: f64,
}

/// Downloads `data` from `holders` fresh holder nodes into a fresh node.
async fn telekad_download(data: &Arc<Vec<u8>>, holders: usize, round: u64) -> Run {
    let id = NodeId::hash(data);
    let mut nodes = Vec::new();
    let mut shards = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..holders {
        let (n, shard) = node(round * 100 + i as u64).await;
        shards.push(shard);
        let src: Arc<dyn BlockSource> = data.clone();
        n.hold(id, src).await.expect("hold");
        addrs.push(n.local_addr());
        nodes.push(n);
    }
    let (client, shard) = node(round * 100 + 99).await;
    shards.push(shard);
    // The kernel keeps 15 bytes of a thread's name: seeds stay below 1000 to fit.
    let comm = |seed: u64| telekad::swarm::Shard::thread_name(seed as usize);
    let cpu_of_holders = || -> f64 {
        (0..holders as u64)
            .map(|i| thread_cpu(&comm(round * 100 + i)))
            .sum()
    };
    let (client0, holders0) = (thread_cpu(&comm(round * 100 + 99)), cpu_of_holders());
    let t = Instant::now();
    let rx = client
        .download(id, Box::new(MemorySink::default()), None, addrs)
        .await
        .expect("start");
    let done = rx.await.expect("node alive").expect("download verifies");
    let secs = t.elapsed().as_secs_f64();
    let blocks = data.len().div_ceil(4096) as f64;
    let client_cpu = thread_cpu(&comm(round * 100 + 99)) - client0;
    let holders_cpu = cpu_of_holders() - holders0;
    assert_eq!(done.len, data.len() as u64);
    for n in nodes.iter().chain([&client]) {
        let _ = n.shutdown().await;
    }
    drop(shards);
    Run {
        secs,
        client_us_per_block: client_cpu * 1e6 / blocks,
        holders_us_per_block: holders_cpu * 1e6 / blocks,
    }
}

/// The baseline: two OS threads with blocking std sockets. The client asks for blocks by
/// number (8-byte requests), 64 in flight; the server answers each with the raw 4096 bytes.
/// A receive timeout (nothing is lost on loopback at this window) re-asks what is missing.
fn baseline_download(data: &Arc<Vec<u8>>) -> f64 {
    use std::net::UdpSocket;
    const WINDOW: usize = 256;
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let server_addr = server.local_addr().expect("addr");
    big_buffers(&server);
    let d = data.clone();
    let serve = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut out = Vec::with_capacity(4104);
        loop {
            let Ok((n, src)) = server.recv_from(&mut buf) else {
                return;
            };
            if n != 8 {
                return;
            }
            let b = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8])) as usize;
            let start = (b * 4096).min(d.len());
            let end = (start + 4096).min(d.len());
            out.clear();
            out.extend_from_slice(&(b as u64).to_le_bytes());
            out.extend_from_slice(&d[start..end]);
            let _ = server.send_to(&out, src);
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    big_buffers(&client);
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let blocks = data.len().div_ceil(4096);
    let mut have = vec![false; blocks];
    let mut sink = vec![0u8; data.len()];
    let mut next = 0usize;
    let mut in_flight = 0usize;
    let mut got = 0usize;
    let mut buf = vec![0u8; 8192];
    let t = Instant::now();
    while got < blocks {
        while in_flight < WINDOW && next < blocks {
            client
                .send_to(&(next as u64).to_le_bytes(), server_addr)
                .expect("send");
            next += 1;
            in_flight += 1;
        }
        match client.recv_from(&mut buf) {
            Ok((n, _)) if n >= 8 => {
                let b = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8])) as usize;
                in_flight = in_flight.saturating_sub(1);
                if b < blocks && !have[b] {
                    have[b] = true;
                    got += 1;
                    sink[b * 4096..b * 4096 + n - 8].copy_from_slice(&buf[8..n]);
                }
            }
            _ => {
                in_flight = 0;
                next = have.iter().position(|h| !h).unwrap_or(blocks);
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // A short datagram stops the server thread.
    let _ = client.send_to(&[0u8; 1], server_addr);
    let _ = serve.join();
    assert!(sink == **data);
    secs
}

/// The same socket buffers telekad's driver asks for.
fn big_buffers(s: &std::net::UdpSocket) {
    let r = socket2::SockRef::from(s);
    let _ = r.set_recv_buffer_size(telekad::driver::RECV_BUFFER);
    let _ = r.set_send_buffer_size(telekad::driver::SEND_BUFFER);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("TELEKAD_BENCH_QUICK").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let (mib, runs) = if quick { (8, 1) } else { (64, 3) };
    // The bench itself only waits: the nodes run on their own threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = Arc::new(content(mib << 20));
    let mb = data.len() as f64 / 1e6;
    rt.block_on(async {
        let base = median((0..runs).map(|_| baseline_download(&data)).collect());
        let one = median_run(futures_lite_collect(runs, |r| telekad_download(&data, 1, r)).await);
        let three =
            median_run(futures_lite_collect(runs, |r| telekad_download(&data, 3, 3 + r)).await);
        println!("download of {mib} MiB over loopback, median of {runs} run(s):");
        println!(
            "{:<34} {:>8} {:>9} {:>10} {:>18} {:>18}",
            "case", "seconds", "MB/s", "vs baseline", "downloader us/blk", "holders us/blk"
        );
        println!(
            "{:<34} {base:>8.3} {:>9.1} {:>10.2}",
            "baseline raw UDP, 1 server",
            mb / base,
            1.0
        );
        for (name, r) in [("telekad, 1 holder", one), ("telekad, 3 holders", three)] {
            println!(
                "{name:<34} {:>8.3} {:>9.1} {:>10.2} {:>18.1} {:>18.1}",
                r.secs,
                mb / r.secs,
                base / r.secs,
                r.client_us_per_block,
                r.holders_us_per_block
            );
        }
    });
}

/// The run with the median time.
fn median_run(mut v: Vec<Run>) -> Run {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mid = v.len() / 2;
    v.swap_remove(mid)
}

/// Runs `f(0..runs)` one after another and collects the results.
async fn futures_lite_collect<F, Fut, T>(runs: u64, mut f: F) -> Vec<T>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    for r in 0..runs {
        out.push(f(r).await);
    }
    out
}
