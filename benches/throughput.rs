//! Single-node request throughput over loopback: a load generator in this process keeps
//! many requests in flight to one telekad node running in a child process (so that the
//! node's CPU time can be read alone from `/proc/<pid>/stat`), and counts the replies to
//! `PleaseSendPeers`, `WhereAreThey` and 4096-byte `PleaseSendContent`, every request
//! carrying the node's cookie (a verified source, so nothing is trimmed). In the same run,
//! a bare UDP echo loop written here (one thread, a blocking std socket: `recv_from`, then
//! `send_to` the same bytes back, padded to the size of telekad's reply where that is
//! asked) is driven by the same generator: the loopback limit for this generator. Prints
//! replies/s (wall), the server's CPU as % of one core, replies per CPU-second of the
//! server ("per core"), µs of server CPU per reply, and telekad's rates as fractions of
//! the echo loop's.
//!
//! Two nodes are measured, each one child process:
//! - `telekad run` (the real binary) with `--share` of one 1 MiB file. Its routing table
//!   admits at most 2 contacts per IP (`TableConfig::max_per_ip`, not settable from the
//!   command line) and this bench uses 127.0.0.1 only, so its `Peers` answers hold 2
//!   addresses.
//! - the same library node (`Node::start`, the same file served through `FileSource`, the
//!   same runtime as the binary's `main`) started by re-running this bench executable
//!   with `--throughput-node`, with the table's diversity caps off, bootstrapped from 30
//!   idle library nodes in this process on 127.0.0.1: its `Peers` answers hold 20 addresses.
//!
//! Both run with the rate limits off (`--rate-per-ip 0 --rate-global 0 --rate-blocks-per-ip 0`,
//! `RateLimitConfig::unlimited()`): the generator is one source IP asking far above the
//! default limit of 500 requests/s per IP.
//!
//! The generator is one thread with 4 non-blocking sockets (4 source ports), 256 requests
//! in flight on each, busy polling; a socket with no reply for 500 ms counts its requests
//! as lost and sends again. A sample of replies (1 in 256) is decoded and checked: a
//! `Peers` of the expected length (with the asked `target` for `WhereAreThey`), or a
//! `Content` whose base64 holds the 4096 asked bytes of the file. CPU times are the
//! server's utime + stime over the measured window: the node's whole process (its tokio
//! runtime has one worker per CPU), or the echo thread. The table also shows the
//! generator's CPU and the rest of the machine's ("others"), since the generator and the
//! server share the machine's cores: anything else running lowers the wall rates, and
//! also shifts the rates per CPU-second (a starved node reads bigger batches per wakeup).
//!
//! `cargo bench --bench throughput` (cargo builds the `telekad` binary of the same profile
//! first: `target/release/telekad`, found through `CARGO_BIN_EXE_telekad`). Each case runs
//! 3 rounds of 1 s (after 0.3 s of warm-up each), the rounds going through the cases in
//! turn; the median round is shown. `TELEKAD_BENCH_QUICK=1` (or `cargo test --benches`,
//! which runs the debug binary) runs 1 round of 0.5 s. `TELEKAD_BENCH_SECS=S` and
//! `TELEKAD_BENCH_ROUNDS=N` override these; `TELEKAD_BENCH_FILTER=word` runs only the
//! telekad cases whose name holds `word` (for profiling: the node pids are printed on
//! stderr, e.g. `perf record -g -p PID`). `TELEKAD_BENCH_PIN=1` pins every server (both
//! node processes with all their threads, the echo threads) to the last CPU and the
//! generator to CPU 0 with `taskset`: the servers' wall rates are then rates on one core.
//! Linux only (CPU times come from `/proc`). Every socket is on 127.0.0.1.

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::driver::{Node, NodeConfig};
use telekad::id::NodeId;

/// Argument that makes this executable run the library node under test instead.
const NODE_MODE: &str = "--throughput-node";
/// Generator sockets (source ports) and requests in flight on each.
const SOCKETS: usize = 4;
const WINDOW: usize = 256;
/// One reply in this many is decoded and checked.
const SAMPLE: u64 = 256;
/// A socket with no reply for this long gives its requests up as lost and sends anew.
const GIVE_UP: Duration = Duration::from_millis(500);
/// Size of the shared file.
const FILE_LEN: usize = 1 << 20;
/// Idle library nodes that give the library node under test its contacts.
const CONTACTS: usize = 30;
/// `USER_HZ`: Linux reports CPU times in ticks of 1/100 s on every architecture.
const USER_HZ: f64 = 100.0;

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

/// User plus system CPU seconds from a `/proc/.../stat` file (a process or one thread).
fn cpu_seconds(stat: &Path) -> f64 {
    let text = std::fs::read_to_string(stat)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (Linux /proc needed)", stat.display()));
    // The command name may hold spaces; fields resume after its closing parenthesis, the
    // first of them being field 3 (state): utime is field 14, stime field 15.
    let rest = &text[text.rfind(')').expect("stat format") + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    ticks as f64 / USER_HZ
}

/// The `stat` file of the calling thread.
fn this_thread_stat() -> PathBuf {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    Path::new("/proc").join(link).join("stat")
}

/// The thread id in a `/proc/<pid>/task/<tid>/stat` path (or the pid in `/proc/<pid>/stat`).
fn tid_of(stat: &Path) -> u32 {
    stat.parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a /proc stat path")
}

/// Pins thread `tid` (with `all`: every thread of process `tid`) to `cpu` with taskset(1).
fn pin(tid: u32, cpu: usize, all: bool) {
    let mut c = Command::new("taskset");
    if all {
        c.arg("-a");
    }
    let ok = c
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "taskset -p -c {cpu} {tid} failed (TELEKAD_BENCH_PIN needs util-linux taskset)"
    );
}

/// Socket buffers as large as telekad's driver asks for.
fn big_buffers(s: &UdpSocket) {
    let r = socket2::SockRef::from(s);
    let _ = r.set_recv_buffer_size(telekad::driver::RECV_BUFFER);
    let _ = r.set_send_buffer_size(telekad::driver::RECV_BUFFER);
}

fn loopback_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    big_buffers(&s);
    s
}

/// The messages of a reply as (name, body) pairs.
fn messages(reply: &[u8]) -> Vec<(String, Value)> {
    serde_json::from_slice::<Vec<serde_json::Map<String, Value>>>(reply)
        .map(|v| v.into_iter().flat_map(|m| m.into_iter()).collect())
        .unwrap_or_default()
}

fn find<'a>(msgs: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    msgs.iter().find(|(n, _)| n == name).map(|(_, b)| b)
}

/// Sends `req` to `dst` until a reply that `accept` takes arrives (`None` after `patience`).
fn ask<T>(
    dst: SocketAddr,
    req: &[u8],
    patience: Duration,
    mut accept: impl FnMut(&[(String, Value)]) -> Option<T>,
) -> Option<T> {
    let s = loopback_socket();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let until = Instant::now() + patience;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < until {
        s.send_to(req, dst).expect("send");
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == dst {
                if let Some(t) = accept(&messages(&buf[..n])) {
                    return Some(t);
                }
            }
        }
    }
    None
}

/// The node's cookie for 127.0.0.1, as the JSON body to return in `AlwaysReturned`.
fn cookie_of(dst: SocketAddr) -> String {
    ask(
        dst,
        br#"[{"PleaseSendPeers":{}}]"#,
        Duration::from_secs(20),
        |m| find(m, "PleaseAlwaysReturnThisMessage").map(|b| b.to_string()),
    )
    .unwrap_or_else(|| panic!("no cookie from the node at {dst}"))
}

fn peers_len(b: &Value) -> Option<usize> {
    b.get("peers").and_then(Value::as_array).map(Vec::len)
}

/// Waits until the node's `WhereAreThey` answers hold `want` peers, up to `patience`;
/// returns the number they hold then.
fn wait_for_peers(dst: SocketAddr, cookie: &str, want: usize, patience: Duration) -> usize {
    let req = format!(
        r#"[{{"WhereAreThey":{{"target":"{}"}}}},{{"AlwaysReturned":{cookie}}}]"#,
        "ab".repeat(32)
    );
    let until = Instant::now() + patience;
    let mut best = 0;
    while Instant::now() < until {
        let n = ask(dst, req.as_bytes(), Duration::from_secs(5), |m| {
            find(m, "Peers").and_then(peers_len)
        })
        .unwrap_or(0);
        best = best.max(n);
        if best >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    best
}

/// The node's reply to one `PleaseSendContent` (waits until the file is being served).
fn content_reply_len(dst: SocketAddr, req: &[u8]) -> usize {
    let s = loopback_socket();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let until = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < until {
        s.send_to(req, dst).expect("send");
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == dst && find(&messages(&buf[..n]), "Content").is_some() {
                return n;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the node at {dst} does not serve the shared file");
}

/// A child process killed when dropped (also when the bench panics).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1 (released again; the child binds it a moment later).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

/// `telekad run` sharing `share`, bootstrapped from `boot`.
fn start_binary(tmp: &Path, share: &Path, boot: &[SocketAddr]) -> (ChildGuard, SocketAddr) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_telekad"));
    assert!(
        exe.exists(),
        "the telekad binary is missing at {}; run `cargo build --release` (cargo bench builds it)",
        exe.display()
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(tmp.join("telekad-run.log")).expect("log file");
    let mut cmd = Command::new(&exe);
    cmd.arg("run")
        .arg("--bind")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(tmp.join("data"))
        .arg("--share")
        .arg(share)
        // The generator is one source IP asking far above the default per-IP limit.
        .args(["--rate-per-ip", "0", "--rate-global", "0"])
        .args(["--rate-blocks-per-ip", "0"]);
    for b in boot {
        cmd.arg("--bootstrap").arg(b.to_string());
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    (ChildGuard(child), addr)
}

/// This executable in [`NODE_MODE`]: the library node, which prints its address.
fn start_library_node(file: &Path, boot: &[SocketAddr]) -> (ChildGuard, SocketAddr) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.arg(NODE_MODE).arg(file);
    for b in boot {
        cmd.arg(b.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the library node");
    let out = child.stdout.take().expect("stdout");
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("node address");
    let addr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the library node printed {line:?}, not its address"));
    (guard, addr)
}

/// [`NODE_MODE`]: serve `file` from a library node on 127.0.0.1 whose table takes any
/// number of contacts per IP, bootstrapped from the given addresses, until stdin closes.
fn node_mode(args: &[String]) {
    let file = PathBuf::from(&args[0]);
    let boot: Vec<SocketAddr> = args[1..]
        .iter()
        .map(|a| a.parse().expect("bootstrap address"))
        .collect();
    assert!(boot.iter().all(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST));
    // The same runtime as the binary's `main`: one thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut cfg = NodeConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.loopback_only = true;
        cfg.engine.table.max_per_ip = 0;
        cfg.engine.table.max_per_subnet = 0;
        cfg.engine.rate_limit = telekad::ratelimit::RateLimitConfig::unlimited();
        cfg.bootstrap = boot;
        let node = Node::start(cfg).await.expect("node starts");
        let (id, _) = telekad::files::hash_file(&file, |_, _| {}).expect("hash");
        let src = telekad::files::FileSource::open(&file).expect("open");
        node.hold(id, Arc::new(src)).await.expect("hold");
        println!("{}", node.local_addr());
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await;
        let _ = node.shutdown().await;
    });
}

/// The bare echo loop: returns each datagram to its sender, padded with whatever the
/// buffer holds to `reply_len` bytes when shorter. A 1-byte datagram stops it.
struct Echo {
    addr: SocketAddr,
    stat: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(reply_len: usize) -> Echo {
        let s = loopback_socket();
        let addr = s.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(this_thread_stat());
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, src)) = s.recv_from(&mut buf) else {
                    return;
                };
                if n <= 1 {
                    return;
                }
                let _ = s.send_to(&buf[..n.max(reply_len)], src);
            }
        });
        let stat = rx.recv().expect("echo thread");
        Echo {
            addr,
            stat,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(&[0u8], self.addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One case: where to send what, and how to check a reply.
struct Case<'a> {
    name: String,
    dst: SocketAddr,
    /// `stat` file of the server (the node process, or the echo thread).
    stat: PathBuf,
    requests: &'a [Vec<u8>],
    /// Every counted reply holds this within its first 64 bytes.
    marker: &'static [u8],
    check: &'a dyn Fn(&[u8]) -> Result<(), String>,
    /// Row of the echo case this one is compared with.
    baseline: Option<usize>,
}

/// One measured round of a case.
#[derive(Clone, Copy)]
struct Round {
    /// Replies per second.
    rate: f64,
    /// The server's CPU seconds per second.
    server_cpu: f64,
    /// Replies per CPU-second of the server.
    per_cpu: f64,
    us_per_reply: f64,
    reply_bytes: f64,
    /// The generator thread's CPU seconds per second.
    gen_cpu: f64,
    /// CPU seconds per second used by everything else on the machine.
    others_cpu: f64,
    /// Requests given up after 500 ms without a reply.
    lost: u64,
    /// Datagrams the kernel dropped for a full receive buffer (all UDP sockets).
    drops: u64,
}

/// Busy and total CPU seconds of the whole machine, from `/proc/stat`.
fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let f: Vec<f64> = text
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().expect("cpu ticks"))
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = f[3] + f[4];
    let total: f64 = f.iter().sum();
    ((total - idle) / USER_HZ, total / USER_HZ)
}

/// UDP datagrams dropped so far for a full receive buffer (`RcvbufErrors`).
fn udp_rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs one case: `warm` of warm-up, then `secs` measured.
fn drive(case: &Case, warm: Duration, secs: Duration) -> Round {
    let socks: Vec<UdpSocket> = (0..SOCKETS)
        .map(|_| {
            let s = loopback_socket();
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let gen_stat = this_thread_stat();
    let mut in_flight = [0usize; SOCKETS];
    let mut last = [Instant::now(); SOCKETS];
    let mut buf = vec![0u8; 65_536];
    let (mut next, mut replies, mut bytes, mut lost) = (0usize, 0u64, 0u64, 0u64);
    let mut bad: Vec<String> = Vec::new();
    let mut checked = 0u64;
    let start = Instant::now();
    let measure_from = start + warm;
    let end = measure_from + secs;
    let mut at_start: Option<(Instant, u64, u64, f64, f64, f64, u64)> = None;
    let mut now = start;
    while now < end {
        if at_start.is_none() && now >= measure_from {
            at_start = Some((
                now,
                replies,
                bytes,
                cpu_seconds(&case.stat),
                cpu_seconds(&gen_stat),
                machine_cpu().0,
                udp_rcvbuf_errors(),
            ));
        }
        for (i, s) in socks.iter().enumerate() {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let r = &buf[..n];
                        if from != case.dst || !contains(&r[..n.min(64)], case.marker) {
                            continue;
                        }
                        replies += 1;
                        bytes += n as u64;
                        in_flight[i] = in_flight[i].saturating_sub(1);
                        last[i] = now;
                        if replies % SAMPLE == 1 {
                            checked += 1;
                            if let Err(e) = (case.check)(r) {
                                bad.push(e);
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("receive: {e}"),
                }
            }
            if in_flight[i] > 0 && now.duration_since(last[i]) > GIVE_UP {
                lost += in_flight[i] as u64;
                in_flight[i] = 0;
            }
            while in_flight[i] < WINDOW {
                let req = &case.requests[next % case.requests.len()];
                match s.send_to(req, case.dst) {
                    Ok(_) => {
                        if in_flight[i] == 0 {
                            last[i] = now;
                        }
                        in_flight[i] += 1;
                        next += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("send: {e}"),
                }
            }
        }
        now = Instant::now();
    }
    let (t0, r0, b0, c0, g0, m0, d0) = at_start.expect("measured");
    let wall = now.duration_since(t0).as_secs_f64();
    let server = cpu_seconds(&case.stat) - c0;
    let gen = cpu_seconds(&gen_stat) - g0;
    let machine = machine_cpu().0 - m0;
    let drops = udp_rcvbuf_errors().saturating_sub(d0);
    let n = replies - r0;
    assert!(n > 0, "{}: no replies", case.name);
    assert!(
        bad.is_empty(),
        "{}: {} of {checked} checked replies are wrong, first: {}",
        case.name,
        bad.len(),
        bad[0]
    );
    Round {
        rate: n as f64 / wall,
        server_cpu: server / wall,
        per_cpu: n as f64 / server.max(1.0 / USER_HZ),
        us_per_reply: server * 1e6 / n as f64,
        reply_bytes: (bytes - b0) as f64 / n as f64,
        gen_cpu: gen / wall,
        others_cpu: (machine - server - gen).max(0.0) / wall,
        lost,
        drops,
    }
}

/// Checks a `Peers` answer: `want` addresses on 127.0.0.1, and the `target` (one of
/// `targets`) or none.
fn check_peers(r: &[u8], want: usize, targets: Option<&HashSet<String>>) -> Result<(), String> {
    let m = messages(r);
    let p = find(&m, "Peers").ok_or("no Peers")?;
    let list = p.get("peers").and_then(Value::as_array).ok_or("no list")?;
    if list.len() != want {
        return Err(format!("{} peers, not {want}", list.len()));
    }
    for a in list {
        let a: SocketAddr = a
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or("bad address")?;
        if a.ip() != std::net::Ipv4Addr::LOCALHOST {
            return Err(format!("peer {a} is not on 127.0.0.1"));
        }
    }
    let target = p.get("target").and_then(Value::as_str);
    match (targets, target) {
        (Some(t), Some(x)) if t.contains(x) => Ok(()),
        (None, None) => Ok(()),
        _ => Err(format!("target {target:?}")),
    }
}

/// Checks a `Content` answer: the asked 4096 bytes of `data`.
fn check_content(r: &[u8], id: &str, data: &[u8]) -> Result<(), String> {
    use base64::Engine as _;
    let m = messages(r);
    let c = find(&m, "Content").ok_or("no Content")?;
    if c.get("id").and_then(Value::as_str) != Some(id) {
        return Err("wrong id".into());
    }
    if c.get("eof").and_then(Value::as_u64) != Some(data.len() as u64) {
        return Err("wrong eof".into());
    }
    let off = c.get("offset").and_then(Value::as_u64).ok_or("no offset")? as usize;
    let b = c.get("base64").and_then(Value::as_str).ok_or("no base64")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b)
        .map_err(|e| e.to_string())?;
    if bytes.len() != 4096 || data.get(off..off + 4096) != Some(&bytes[..]) {
        return Err(format!(
            "{} bytes at {off}, not the file's 4096",
            bytes.len()
        ));
    }
    Ok(())
}

fn random_targets(n: usize) -> Vec<String> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            let mut t = [0u8; 32];
            for b in &mut t {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 24) as u8;
            }
            hex::encode(t)
        })
        .collect()
}

/// The request sets of a node with cookie `cookie`.
struct Requests {
    peers: Vec<Vec<u8>>,
    where_: Vec<Vec<u8>>,
    content: Vec<Vec<u8>>,
}

fn requests(cookie: &str, targets: &[String], id: &str) -> Requests {
    let peers =
        vec![format!(r#"[{{"PleaseSendPeers":{{}}}},{{"AlwaysReturned":{cookie}}}]"#).into_bytes()];
    let where_ = targets
        .iter()
        .map(|t| {
            format!(r#"[{{"WhereAreThey":{{"target":"{t}"}}}},{{"AlwaysReturned":{cookie}}}]"#)
                .into_bytes()
        })
        .collect();
    let content = (0..FILE_LEN / 4096)
        .map(|b| {
            format!(
                r#"[{{"PleaseSendContent":{{"id":"{id}","offset":{},"length":4096}}}},{{"AlwaysReturned":{cookie}}}]"#,
                b * 4096
            )
            .into_bytes()
        })
        .collect();
    Requests {
        peers,
        where_,
        content,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(NODE_MODE) {
        node_mode(&args[2..]);
        return;
    }
    let quick =
        std::env::var_os("TELEKAD_BENCH_QUICK").is_some() || !args.iter().any(|a| a == "--bench");
    let secs: f64 = std::env::var("TELEKAD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.5 } else { 1.0 });
    let n_rounds: usize = std::env::var("TELEKAD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(if quick { 1 } else { 3 });
    let warm = Duration::from_secs_f64(if quick { 0.1 } else { 0.3 });
    let dur = Duration::from_secs_f64(secs);
    let filter = std::env::var("TELEKAD_BENCH_FILTER").unwrap_or_default();
    let pin_cpus = std::env::var("TELEKAD_BENCH_PIN").is_ok_and(|v| v == "1");

    // The shared file.
    let tmp = std::env::temp_dir().join(format!("telekad-throughput-{}", std::process::id()));
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).expect("temp dir");
    let data = content(FILE_LEN);
    let file = share.join("block.bin");
    std::fs::write(&file, &data).expect("write the shared file");
    let id = NodeId::hash(&data).to_string();

    // Idle contacts (library nodes in this process) for both nodes under test.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let contacts: Vec<Node> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..CONTACTS {
            let mut cfg = NodeConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
            cfg.loopback_only = true;
            cfg.seed = Some(1000 + i as u64);
            v.push(Node::start(cfg).await.expect("contact starts"));
        }
        v
    });
    let contact_addrs: Vec<SocketAddr> = contacts.iter().map(Node::local_addr).collect();

    let (bin, bin_addr) = start_binary(&tmp, &share, &contact_addrs[..2]);
    let (lib, lib_addr) = start_library_node(&file, &contact_addrs);
    eprintln!(
        "nodes under test: telekad run pid {} at {bin_addr}; library node pid {} at {lib_addr}",
        bin.0.id(),
        lib.0.id()
    );
    let bin_cookie = cookie_of(bin_addr);
    let lib_cookie = cookie_of(lib_addr);
    // The binary admits 2 contacts from 127.0.0.1; the library node 20 and more.
    let bin_peers = wait_for_peers(bin_addr, &bin_cookie, 2, Duration::from_secs(10));
    let lib_peers = wait_for_peers(lib_addr, &lib_cookie, 20, Duration::from_secs(30));
    assert!(bin_peers >= 1, "telekad run found no contact");
    assert_eq!(
        lib_peers, 20,
        "the library node's answers hold {lib_peers} peers"
    );
    let targets = random_targets(4096);
    let target_set: HashSet<String> = targets.iter().cloned().collect();
    let bin_req = requests(&bin_cookie, &targets, &id);
    let lib_req = requests(&lib_cookie, &targets, &id);
    let content_len = content_reply_len(bin_addr, &bin_req.content[0]);
    let _ = content_reply_len(lib_addr, &lib_req.content[0]);

    let echo_small = Echo::start(0);
    let echo_big = Echo::start(content_len);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = if pin_cpus && cpus >= 2 {
        // Every server (both node processes, all their threads, and the echo threads) on
        // the last CPU, the generator on the first.
        let server = cpus - 1;
        pin(bin.0.id(), server, true);
        pin(lib.0.id(), server, true);
        pin(tid_of(&echo_small.stat), server, false);
        pin(tid_of(&echo_big.stat), server, false);
        pin(tid_of(&this_thread_stat()), 0, false);
        format!("pinned: servers on CPU {server}, generator on CPU 0")
    } else {
        "not pinned (TELEKAD_BENCH_PIN=1 pins)".to_string()
    };
    let where_len = lib_req.where_[0].len();
    let content_req_len = lib_req.content[0].len();
    let check_echo_small = |r: &[u8]| {
        (r.len() == where_len && r.starts_with(b"[{"))
            .then_some(())
            .ok_or_else(|| format!("echo of {} bytes", r.len()))
    };
    let check_echo_big = |r: &[u8]| {
        (r.len() == content_len.max(content_req_len) && r.starts_with(b"[{"))
            .then_some(())
            .ok_or_else(|| format!("echo of {} bytes", r.len()))
    };
    let bin_stat = PathBuf::from(format!("/proc/{}/stat", bin.0.id()));
    let lib_stat = PathBuf::from(format!("/proc/{}/stat", lib.0.id()));
    let peers_check = |want: usize| move |r: &[u8]| check_peers(r, want, None);
    let where_check = |want: usize| {
        let t = &target_set;
        move |r: &[u8]| check_peers(r, want, Some(t))
    };
    let content_check = |r: &[u8]| check_content(r, &id, &data);
    let (bin_p, bin_w, lib_p, lib_w) = (
        peers_check(bin_peers),
        where_check(bin_peers),
        peers_check(20),
        where_check(20),
    );
    let mut cases = vec![
        Case {
            name: format!("echo, {where_len} B request and reply"),
            dst: echo_small.addr,
            stat: echo_small.stat.clone(),
            requests: &lib_req.where_,
            marker: b"[{",
            check: &check_echo_small,
            baseline: None,
        },
        Case {
            name: format!("echo, {content_len} B reply"),
            dst: echo_big.addr,
            stat: echo_big.stat.clone(),
            requests: &lib_req.content,
            marker: b"[{",
            check: &check_echo_big,
            baseline: None,
        },
    ];
    const PEERS: &[u8] = b"\"Peers\"";
    const CONTENT: &[u8] = b"\"Content\"";
    let node_cases = [
        Case {
            name: format!("run: PleaseSendPeers ({bin_peers} peers)"),
            dst: bin_addr,
            stat: bin_stat.clone(),
            requests: &bin_req.peers,
            marker: PEERS,
            check: &bin_p,
            baseline: Some(0),
        },
        Case {
            name: format!("run: WhereAreThey ({bin_peers} peers)"),
            dst: bin_addr,
            stat: bin_stat.clone(),
            requests: &bin_req.where_,
            marker: PEERS,
            check: &bin_w,
            baseline: Some(0),
        },
        Case {
            name: "run: Content 4096 B".to_string(),
            dst: bin_addr,
            stat: bin_stat,
            requests: &bin_req.content,
            marker: CONTENT,
            check: &content_check,
            baseline: Some(1),
        },
        Case {
            name: "lib: PleaseSendPeers (20 peers)".to_string(),
            dst: lib_addr,
            stat: lib_stat.clone(),
            requests: &lib_req.peers,
            marker: PEERS,
            check: &lib_p,
            baseline: Some(0),
        },
        Case {
            name: "lib: WhereAreThey (20 peers)".to_string(),
            dst: lib_addr,
            stat: lib_stat.clone(),
            requests: &lib_req.where_,
            marker: PEERS,
            check: &lib_w,
            baseline: Some(0),
        },
        Case {
            name: "lib: Content 4096 B".to_string(),
            dst: lib_addr,
            stat: lib_stat,
            requests: &lib_req.content,
            marker: CONTENT,
            check: &content_check,
            baseline: Some(1),
        },
    ];
    cases.extend(
        node_cases
            .into_iter()
            .filter(|c| c.name.contains(filter.as_str())),
    );

    // Rounds go through the cases in turn, so that a burst of load from elsewhere on the
    // machine does not fall on one case only; each case reports its median round (by rate).
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); cases.len()];
    for _ in 0..n_rounds {
        for (c, out) in cases.iter().zip(rounds.iter_mut()) {
            out.push(drive(c, warm, dur));
            // Let the server work off what is still queued before the next case.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let rows: Vec<Round> = rounds
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            v[v.len() / 2]
        })
        .collect();

    println!(
        "single-node throughput over loopback: median of {n_rounds} round(s) of {secs} s after \
         {} s warm-up; {SOCKETS} source ports x {WINDOW} requests in flight, one generator \
         thread; {cpus} CPUs, {pinned}",
        warm.as_secs_f64(),
    );
    println!(
        "{:<34} {:>9} {:>7} {:>11} {:>8} {:>7} {:>7} {:>9} {:>5} {:>6} {:>5}",
        "case",
        "replies/s",
        "srv CPU",
        "replies/CPU",
        "us CPU/r",
        "reply B",
        "vs echo",
        "vs echo/C",
        "gen",
        "others",
        "lost"
    );
    for (c, r) in cases.iter().zip(&rows) {
        let (f, fc) = match c.baseline {
            Some(b) => (
                format!("{:.2}", r.rate / rows[b].rate),
                format!("{:.2}", r.per_cpu / rows[b].per_cpu),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<34} {:>9.0} {:>6.0}% {:>11.0} {:>8.2} {:>7.0} {:>7} {:>9} {:>4.0}% {:>5.0}% {:>5}",
            c.name,
            r.rate,
            r.server_cpu * 100.0,
            r.per_cpu,
            r.us_per_reply,
            r.reply_bytes,
            f,
            fc,
            r.gen_cpu * 100.0,
            r.others_cpu * 100.0,
            r.lost + r.drops
        );
    }
    println!(
        "srv CPU: the server's user+system CPU as % of one core (the telekad process, all its \
         threads; or the echo thread). replies/CPU: replies per CPU-second of the server. \
         vs echo: replies/s as a fraction of the echo row with the same reply class (small \
         for Peers, 4096-byte block for Content); vs echo/C: the same per CPU-second. gen: \
         the generator thread's CPU; others: the rest of the machine's busy CPU (other \
         processes, this bench's idle contacts, interrupts); lost: requests without a reply \
         for 500 ms plus kernel UDP receive-buffer drops."
    );
    for (c, r) in cases.iter().zip(&rows) {
        let target = if c.name.contains("WhereAreThey (20") {
            150_000.0
        } else if c.name.contains("Content") {
            100_000.0
        } else {
            continue;
        };
        println!(
            "target {:>7.0}/s for {:<32}: wall {:>5.0}%, per CPU-second {:>5.0}% of it",
            target,
            c.name,
            100.0 * r.rate / target,
            100.0 * r.per_cpu / target
        );
    }

    drop(cases);
    drop(echo_small);
    drop(echo_big);
    drop(bin);
    drop(lib);
    rt.block_on(async {
        for n in &contacts {
            let _ = n.shutdown().await;
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
}
