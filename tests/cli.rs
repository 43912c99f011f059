//! The `telekad` binary end to end: bad flags and an unusable data directory give one error
//! line and a non-zero exit, `simulate`, `swarm` and `lookup` print the JSON they promise,
//! every command's help has an example, and `run` saves its table and exits 0 on Ctrl-C.
//!
//! Nothing here binds or sends outside 127.0.0.0/8: every command that could start a node is
//! given `--bind 127.0.0.1:0` and only loopback bootstrap addresses, and `--public` is never
//! passed.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use telekad::id::NodeId;
use telekad::swarm::{Swarm, SwarmConfig};

mod common;
use common::{telekad, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_telekad");

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Reads a pipe to the end on its own thread (so a full pipe never blocks the child).
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits up to `limit` for `child`; kills it and panics if it is still running.
fn wait_limited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` still running after {limit:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args`, failing the test if it takes longer than `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let what = format!("telekad {}", args.join(" "));
    let start = Instant::now();
    let mut child = telekad(args).spawn().expect("spawn telekad");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_limited(&mut child, limit, &what);
    let took = start.elapsed();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took,
    }
}

/// The lines of an error report, without blank lines and clap's "For more information, try
/// '--help'." hint.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect()
}

/// Runs a command that must fail: non-zero exit, nothing on stdout, one error line that
/// contains every string in `mentions`. Returns that line.
fn expect_error(args: &[&str], mentions: &[&str]) -> String {
    let o = run(args, Duration::from_secs(10));
    let what = format!("telekad {}", args.join(" "));
    assert!(
        !o.status.success(),
        "`{what}` succeeded; stdout: {}",
        o.stdout
    );
    assert!(
        o.status.code().is_some(),
        "`{what}` died by a signal: {:?}",
        o.status
    );
    assert!(
        o.stdout.trim().is_empty(),
        "`{what}` printed to stdout: {}",
        o.stdout
    );
    let lines = error_lines(&o.stderr);
    assert_eq!(
        lines.len(),
        1,
        "`{what}` should print one error line, printed:\n{}",
        o.stderr
    );
    let line = lines[0];
    assert!(
        line.contains("error"),
        "`{what}`: the line does not say it is an error: {line}"
    );
    for m in mentions {
        assert!(line.contains(m), "`{what}`: error line lacks {m:?}: {line}");
    }
    line.to_string()
}

#[test]
fn bad_flags_give_one_error_line_and_fail() {
    let dir = TempDir::new("badflags");
    let d = dir.arg();
    let line = expect_error(
        &["run", "--bind", "nonsense", "--data-dir", d],
        &["nonsense", "IP:PORT"],
    );
    println!("{line}");
    let line = expect_error(
        &[
            "run",
            "--bootstrap",
            "192.0.2.4",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            d,
        ],
        &["192.0.2.4", "no port"],
    );
    println!("{line}");
    // The message must say what is wrong with the target and what a good one looks like.
    let line = expect_error(
        &["lookup", "zzz", "--bind", "127.0.0.1:0", "--data-dir", d],
        &["'zzz'", "64-hex", "IP:PORT"],
    );
    println!("{line}");
    let line = expect_error(&["simulate", "--loss", "2"], &["2", "--loss", "range"]);
    println!("{line}");
    let line = expect_error(&["swarm", "--nodes", "1"], &["1", "--nodes"]);
    println!("{line}");
}

#[test]
fn unusable_data_dir_fails_quickly_with_one_line() {
    // A regular file where the data directory should be.
    let file = TempDir::path_only("file-not-dir");
    std::fs::write(file.path(), b"not a directory").unwrap();
    let args = ["run", "--data-dir", file.arg(), "--bind", "127.0.0.1:0"];
    let o = run(&args, Duration::from_secs(10));
    assert!(
        !o.status.success(),
        "run with a file as data dir exited {:?}",
        o.status
    );
    assert!(
        o.status.code().is_some(),
        "died by a signal: {:?}",
        o.status
    );
    let lines = error_lines(&o.stderr);
    assert_eq!(lines.len(), 1, "one error line, got:\n{}", o.stderr);
    assert!(lines[0].contains("error"), "{}", lines[0]);
    assert!(
        lines[0].contains("data directory"),
        "does not mention the data directory: {}",
        lines[0]
    );
    assert!(
        lines[0].contains(file.arg()),
        "does not name the path: {}",
        lines[0]
    );
    assert!(o.took < Duration::from_secs(10));
    // The file is left alone.
    assert_eq!(std::fs::read(file.path()).unwrap(), b"not a directory");
    println!("{} ({:?})", lines[0], o.took);
}

fn parse_json(o: &Output, what: &str) -> serde_json::Map<String, serde_json::Value> {
    let text = o.stdout.trim();
    assert_eq!(
        text.lines().count(),
        1,
        "`{what}` should print one JSON line, printed:\n{}",
        o.stdout
    );
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("`{what}` printed {other:?}, not a JSON object: {text}"),
    }
}

#[test]
fn simulate_json_has_the_documented_keys_and_is_deterministic() {
    let args = [
        "simulate",
        "--nodes",
        "200",
        "--lookups",
        "20",
        "--seed",
        "3",
        "--json",
    ];
    let want: BTreeSet<&str> = [
        "nodes",
        "lookups",
        "exact_rate",
        "found_rate",
        "hops_p50",
        "hops_p95",
        "messages_per_lookup",
        "virtual_ms_p50",
        "virtual_ms_p95",
        "wall_seconds",
        "bytes_per_node",
        "trace_hash",
        "datagrams",
    ]
    .into_iter()
    .collect();
    let mut hashes = Vec::new();
    for round in 0..2 {
        let o = run(&args, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "simulate exited {:?}: {}",
            o.status,
            o.stderr
        );
        let m = parse_json(&o, "telekad simulate");
        let keys: BTreeSet<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, want, "simulate --json keys");
        assert_eq!(m["nodes"], 200);
        assert_eq!(m["lookups"], 20);
        for k in ["exact_rate", "found_rate"] {
            let r = m[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} is not a number"));
            assert!((0.0..=1.0).contains(&r), "{k} = {r}");
        }
        let hash = m["trace_hash"]
            .as_str()
            .expect("trace_hash is a string")
            .to_string();
        assert!(!hash.is_empty());
        println!("round {round}: {} in {:?}", o.stdout.trim(), o.took);
        hashes.push(hash);
    }
    assert_eq!(hashes[0], hashes[1], "same seed, different trace_hash");
}

#[test]
fn swarm_json_reports_full_tables_and_found_lookups() {
    let args = ["swarm", "--nodes", "20", "--lookups", "20", "--json"];
    let o = run(&args, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "swarm exited {:?}: {}\n{}",
        o.status,
        o.stdout,
        o.stderr
    );
    let m = parse_json(&o, "telekad swarm");
    assert_eq!(m["nodes"], 20, "{m:?}");
    assert_eq!(m["filled"], 20, "every table filled: {m:?}");
    assert_eq!(m["settled"], true, "{m:?}");
    assert!(m["settle_seconds"].is_number(), "{m:?}");
    assert_eq!(m["all_lookups_found"], true, "{m:?}");
    for phase in ["lookups_sequential", "lookups_concurrent"] {
        let l = &m[phase];
        assert_eq!(l["lookups"], 20, "{phase}: {l}");
        assert_eq!(l["found"], 20, "{phase}: {l}");
    }
    assert_eq!(m["lookups_sequential"]["concurrency"], 1);
    // With every node in every table, each contact count is n - 1.
    assert_eq!(m["contacts_min"], 19, "{m:?}");
    assert_eq!(m["contacts_max"], 19, "{m:?}");
    println!("{} ({:?})", o.stdout.trim(), o.took);
}

/// Runs the binary on a blocking thread so the in-process swarm keeps running meanwhile.
async fn run_async(args: Vec<String>, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&a, limit)
    })
    .await
    .expect("command thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_a_node_of_a_loopback_swarm() {
    let swarm = Swarm::start(SwarmConfig::new(12))
        .await
        .expect("swarm starts on loopback");
    let (r, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    assert!(settled.is_some(), "swarm did not settle: {r:?}");
    let addrs = swarm.addrs().to_vec();
    for a in &addrs {
        assert!(a.ip().is_loopback());
    }
    let bootstrap = addrs[0].to_string();

    // By address, and by the 64-hex ID of another node.
    let cases = [
        (addrs[5].to_string(), addrs[5]),
        (NodeId::of_addr(addrs[9]).to_hex(), addrs[9]),
    ];
    for (target, target_addr) in cases {
        let dir = TempDir::new("lookup");
        let args: Vec<String> = [
            "lookup",
            &target,
            "--bootstrap",
            &bootstrap,
            "--json",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = run_async(args, Duration::from_secs(30)).await;
        assert!(
            o.status.success(),
            "lookup {target} exited {:?}: {}\n{}",
            o.status,
            o.stdout,
            o.stderr
        );
        let m = parse_json(&o, "telekad lookup");
        assert_eq!(m["found"], true, "lookup {target}: {m:?}");
        assert_eq!(
            m["target"],
            NodeId::of_addr(target_addr).to_hex(),
            "lookup {target}"
        );
        let closest = m["closest"].as_array().expect("closest is an array");
        assert!(!closest.is_empty(), "lookup {target}: {m:?}");
        assert_eq!(
            closest[0]["addr"],
            target_addr.to_string(),
            "lookup {target}: first closest entry"
        );
        for c in closest {
            let a: std::net::SocketAddr = c["addr"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad addr in {c}"));
            assert!(addrs.contains(&a), "{a} is not a swarm member");
        }
        // The lookup node reads the data dir but never writes it.
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "lookup wrote into its data dir"
        );
        println!("lookup {target}: {} entries, {:?}", closest.len(), o.took);
    }
    swarm.shutdown().await;
}

#[test]
fn lookup_without_bootstrap_says_to_pass_bootstrap() {
    let dir = TempDir::new("nobootstrap");
    let target = "ab".repeat(32);
    let line = expect_error(
        &[
            "lookup",
            &target,
            "--data-dir",
            dir.arg(),
            "--bind",
            "127.0.0.1:0",
        ],
        &["--bootstrap"],
    );
    println!("{line}");
}

#[test]
fn every_help_has_an_example() {
    let mut missing = Vec::new();
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["swarm", "--help"],
        vec!["lookup", "--help"],
        vec!["simulate", "--help"],
    ] {
        let o = run(&args, Duration::from_secs(10));
        let what = format!("telekad {}", args.join(" "));
        assert!(o.status.success(), "`{what}` exited {:?}", o.status);
        assert!(!o.stdout.trim().is_empty(), "`{what}` printed nothing");
        if !o.stdout.contains("Example") {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "help without an example: {missing:?}");
}

#[test]
fn run_saves_state_and_exits_0_on_ctrl_c() {
    let dir = TempDir::path_only("run");
    let mut child = Command::new(BIN)
        .args(["run", "--bind", "127.0.0.1:0", "--data-dir", dir.arg()])
        .env("RUST_LOG", "telekad=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn telekad run");
    let pid = child.id().to_string();
    // Forward stderr lines so the test can see the node announce itself.
    let stderr = child.stderr.take().unwrap();
    let (rx, reader) = common::forward_lines(stderr);

    // Up: the data dir exists and the node has said it is running.
    let end = Instant::now() + Duration::from_secs(5);
    let mut announced = false;
    while !(announced && dir.path().is_dir()) {
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node not up after 5 s (data dir exists: {}, announced: {announced}); stderr:\n{}",
                dir.path().is_dir(),
                reader.join().unwrap()
            );
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            announced |= line.contains("Ctrl-C to stop");
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "node exited early ({s:?}); stderr:\n{}",
                reader.join().unwrap()
            );
        }
    }

    let t = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -INT {pid} failed");
    let status = wait_limited(&mut child, Duration::from_secs(10), "telekad run");
    let took = t.elapsed();
    let log = reader.join().unwrap();
    assert!(
        status.success(),
        "run exited {status:?} after SIGINT; stderr:\n{log}"
    );
    let state = dir.path().join("state.json");
    assert!(
        state.is_file(),
        "{} missing after Ctrl-C; stderr:\n{log}",
        state.display()
    );
    assert!(
        telekad::driver::load_state(dir.path()).is_ok(),
        "saved state does not load"
    );
    println!("stopped {took:?} after SIGINT; saved {}", state.display());
}
