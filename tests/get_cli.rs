//! `telekad get ID` through the real binary: content shared by two `telekad share` processes
//! on a `telekad run` seed is found, downloaded from the holders and verified; a partial file
//! left by an earlier run (with one block damaged on disk) is resumed and still verifies; and
//! bad input fails with one clear line and touches nothing. Every process binds 127.0.0.1
//! (port 0, the real address is read from its log) and nothing is sent anywhere else.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use telekad::engine::BlockSink;
use telekad::id::NodeId;
use telekad::partial::{partial_path, progress_path, PartialFile};

mod common;
use common::TempDir;

/// Bytes per block (one bit of the progress bitmap).
const BLOCK: usize = 4096;

/// Child processes, killed when the test ends (passing or not).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn telekad(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_telekad"));
    c.args(args)
        .env_remove("RUST_LOG")
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null());
    c
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Spawns a long-running telekad and waits (up to 15 s) for the log line containing
/// `ready`; returns the `addr=` it logged. Its stderr keeps being drained afterwards.
fn spawn_ready(procs: &mut Procs, args: &[&str], ready: &str) -> SocketAddr {
    let mut child = telekad(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn telekad");
    let stderr = child.stderr.take().unwrap();
    procs.0.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Once nobody listens, keep draining anyway so the child never blocks.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains(ready) {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .unwrap_or_else(|| panic!("no addr= in {line:?}"));
                    let addr: SocketAddr = addr.parse().unwrap();
                    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line}");
                    assert_ne!(addr.port(), 0, "{line}");
                    return addr;
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "telekad {args:?} never logged {ready:?}; stderr so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// A seed node: `telekad run`.
fn seed(procs: &mut Procs, dir: &TempDir) -> SocketAddr {
    spawn_ready(
        procs,
        &[
            "run",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &s(&dir.join("seed")),
        ],
        "telekad node running",
    )
}

/// `telekad share FILE` bootstrapped from `seed`; ready once the file is announced.
fn share(
    procs: &mut Procs,
    dir: &TempDir,
    name: &str,
    file: &Path,
    seed: SocketAddr,
) -> SocketAddr {
    spawn_ready(
        procs,
        &[
            "share",
            &s(file),
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &s(&dir.join(name)),
            "--bootstrap",
            &seed.to_string(),
        ],
        "sharing; Ctrl-C to stop",
    )
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs a one-shot telekad in `cwd`, killing it if it runs longer than `limit`.
fn run_limited(args: &[&str], cwd: &Path, limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = telekad(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn telekad");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "telekad {args:?} still running after {limit:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: started.elapsed(),
    }
}

/// `telekad get` with a private data directory and an ephemeral loopback port.
fn get(dir: &TempDir, id: &str, out: &Path, extra: &[&str], limit: Duration) -> Run {
    let data = s(&dir.join("getter-data"));
    let out = s(out);
    let mut args = vec![
        "get",
        id,
        "-o",
        &out,
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        &data,
    ];
    args.extend_from_slice(extra);
    run_limited(&args, dir.path(), limit)
}

/// Seeded pseudo-random bytes (splitmix64), so every run shares the same content.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn id_of(data: &[u8]) -> NodeId {
    NodeId(Sha256::digest(data).into())
}

/// A seed and two sharers of `data`; returns the seed and the sharers' addresses.
fn network(procs: &mut Procs, dir: &TempDir, data: &[u8]) -> (SocketAddr, Vec<SocketAddr>) {
    let shared = dir.join("shared.bin");
    std::fs::write(&shared, data).unwrap();
    let seed = seed(procs, dir);
    let a = share(procs, dir, "sharer-a", &shared, seed);
    let b = share(procs, dir, "sharer-b", &shared, seed);
    assert_ne!(a, b);
    (seed, vec![a, b])
}

fn parse_json(r: &Run) -> Value {
    let line = r.stdout.trim();
    assert_eq!(line.lines().count(), 1, "--json prints one line: {line}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The checks every successful `get --json` must pass.
fn assert_downloaded(r: &Run, out: &Path, data: &[u8], sharers: &[SocketAddr]) -> Value {
    assert!(
        r.status.success(),
        "get failed ({}):\nstdout: {}\nstderr: {}",
        r.status,
        r.stdout,
        r.stderr
    );
    let v = parse_json(r);
    let got = std::fs::read(out).expect("output file written");
    assert_eq!(got.len(), data.len(), "output length");
    assert!(got == data, "output differs from the shared content");
    assert!(!partial_path(out).exists(), "partial file left behind");
    assert!(!progress_path(out).exists(), "progress record left behind");
    assert_eq!(v["id"], id_of(data).to_hex().as_str());
    assert_eq!(v["path"], s(out).as_str());
    assert_eq!(v["bytes"].as_u64(), Some(data.len() as u64));
    assert!(v["seconds"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    assert!(v["mb_per_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
    let holders = v["holders"].as_array().expect("holders");
    assert!(!holders.is_empty(), "no holders reported: {v}");
    for h in holders {
        let h: SocketAddr = h.as_str().expect("holder string").parse().unwrap();
        assert!(sharers.contains(&h), "{h} is not a sharer ({sharers:?})");
    }
    assert_eq!(v["bad_holders"], serde_json::json!([]), "{v}");
    v
}

#[test]
fn get_fetches_and_verifies() {
    let dir = TempDir::new("fetch");
    let mut procs = Procs(Vec::new());
    let data = content(3 << 20, 1);
    let (seed, sharers) = network(&mut procs, &dir, &data);
    let out = dir.join("out.bin");
    let id = id_of(&data).to_hex();
    let r = get(
        &dir,
        &id,
        &out,
        &["--bootstrap", &seed.to_string(), "--json"],
        Duration::from_secs(40),
    );
    let v = assert_downloaded(&r, &out, &data, &sharers);
    assert_eq!(v["resumed_blocks"].as_u64(), Some(0), "{v}");
    // Without --bootstrap, a --holder is enough (the fresh data directory has no table).
    let out2 = dir.join("out2.bin");
    let r = get(
        &dir,
        &id,
        &out2,
        &["--holder", &sharers[0].to_string(), "--json"],
        Duration::from_secs(40),
    );
    assert_downloaded(&r, &out2, &data, &sharers);
    // A one-shot client never writes its data directory.
    assert!(
        !dir.join("getter-data").exists(),
        "get created its --data-dir"
    );
    drop(procs);
}

/// Leaves what an earlier run of `get` would have: `out`'s partial file with the blocks for
/// which `mark` holds written correctly and recorded in the progress record, the others
/// garbage and not recorded; then damages block `bad` (recorded as present) on disk.
/// Returns how many blocks the record marks.
fn leave_partial(out: &Path, data: &[u8], mark: impl Fn(usize) -> bool, bad: usize) -> usize {
    let id = id_of(data);
    let blocks = data.len().div_ceil(BLOCK);
    let (mut sink, resume) = PartialFile::open(out, id).unwrap();
    assert!(resume.is_none());
    let mut have = vec![false; blocks];
    for (b, chunk) in data.chunks(BLOCK).enumerate() {
        let off = (b * BLOCK) as u64;
        if mark(b) {
            sink.write_at(off, chunk).unwrap();
            have[b] = true;
        } else {
            sink.write_at(off, &vec![0xa5; chunk.len()]).unwrap();
        }
    }
    sink.checkpoint(data.len() as u64, &have).unwrap();
    assert!(have[bad], "the damaged block must be one the record claims");
    let end = ((bad + 1) * BLOCK).min(data.len());
    let wrong: Vec<u8> = data[bad * BLOCK..end].iter().map(|b| b ^ 0xff).collect();
    sink.write_at((bad * BLOCK) as u64, &wrong).unwrap();
    drop(sink);
    // The record is in the documented format.
    let rec: Value = serde_json::from_slice(&std::fs::read(progress_path(out)).unwrap()).unwrap();
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["id"], id.to_hex().as_str());
    assert_eq!(rec["len"].as_u64(), Some(data.len() as u64));
    assert!(rec["have"].is_string());
    assert_eq!(
        std::fs::metadata(partial_path(out)).unwrap().len(),
        data.len() as u64
    );
    have.iter().filter(|h| **h).count()
}

/// Shares `data`, leaves a damaged partial download of it, and checks that `get` resumes
/// it into the right bytes.
fn resume_case(name: &str, data: &[u8], mark: impl Fn(usize) -> bool, bad: usize) -> usize {
    let dir = TempDir::new(name);
    let mut procs = Procs(Vec::new());
    let (seed, sharers) = network(&mut procs, &dir, data);
    let out = dir.join("out.bin");
    let marked = leave_partial(&out, data, mark, bad);
    let r = get(
        &dir,
        &id_of(data).to_hex(),
        &out,
        &["--bootstrap", &seed.to_string(), "--json"],
        Duration::from_secs(40),
    );
    let v = assert_downloaded(&r, &out, data, &sharers);
    assert_eq!(v["resumed_blocks"].as_u64(), Some(marked as u64), "{v}");
    drop(procs);
    marked
}

#[test]
fn get_resumes_a_partial_file() {
    // Not a multiple of the block size: the last block is short.
    let data = content((3 << 20) + 1000, 2);
    let blocks = data.len().div_ceil(BLOCK);
    // Every other block, the short last one included; block 100 damaged on disk.
    let marked = resume_case("resume", &data, |b| b % 2 == 0, 100);
    assert_eq!(marked, blocks.div_ceil(2));
    assert!(blocks % 2 == 1, "the last block is among the marked");
}

#[test]
fn get_resumes_when_a_few_resumed_blocks_include_a_bad_one() {
    // Fewer resumed blocks than either holder provides: the holders are suspected (and
    // cleared) first, then the resumed blocks are fetched again. Nobody is blamed.
    let data = content(3 << 20, 3);
    let marked = resume_case("resume-few", &data, |b| b % 50 == 7, 407);
    assert_eq!(marked, (3 << 20) / BLOCK / 50 + 1);
}

/// `get --json --bootstrap seed` of `data` to `out` (the network already shares it).
fn get_json(dir: &TempDir, data: &[u8], out: &Path, seed: SocketAddr) -> Run {
    get(
        dir,
        &id_of(data).to_hex(),
        out,
        &["--bootstrap", &seed.to_string(), "--json"],
        Duration::from_secs(40),
    )
}

#[test]
fn get_ignores_a_record_whose_partial_file_is_missing_or_short() {
    // A valid record (right id and length, blocks marked) whose partial file is gone, or
    // shorter than the last marked block's end: the record is ignored and the download
    // starts over; nothing is counted as resumed and nobody is blamed.
    let dir = TempDir::new("short-partial");
    let mut procs = Procs(Vec::new());
    let data = content(3 << 20, 4);
    let (seed, sharers) = network(&mut procs, &dir, &data);
    let blocks = data.len().div_ceil(BLOCK);

    // (a) The partial file is missing.
    let out = dir.join("missing.bin");
    let marked = leave_partial(&out, &data, |b| b % 3 == 0, 30);
    assert!(marked > 0);
    std::fs::remove_file(partial_path(&out)).unwrap();
    assert!(progress_path(&out).exists());
    let r = get_json(&dir, &data, &out, seed);
    let v = assert_downloaded(&r, &out, &data, &sharers);
    assert_eq!(v["resumed_blocks"].as_u64(), Some(0), "{v}");

    // (b) The partial file is one byte short of the last marked block's end (the marked
    // blocks before it are all inside the file).
    let out = dir.join("short.bin");
    let last = blocks / 2;
    let marked = leave_partial(&out, &data, |b| b <= last && b % 4 == last % 4, last);
    assert!(marked > 1);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(partial_path(&out))
        .unwrap();
    f.set_len(((last + 1) * BLOCK) as u64 - 1).unwrap();
    drop(f);
    let r = get_json(&dir, &data, &out, seed);
    let v = assert_downloaded(&r, &out, &data, &sharers);
    assert_eq!(v["resumed_blocks"].as_u64(), Some(0), "{v}");
    drop(procs);
}

/// Shares 3 MiB, leaves a record of the right id but the wrong length (5000 bytes, two
/// blocks, those in `have` marked) with a partial file that matches it (the content's first
/// 5000 bytes), and checks that `get` still fetches the right bytes and blames nobody: the
/// record is wrong, not the holders.
fn wrong_len_case(name: &str, have: [bool; 2]) {
    let dir = TempDir::new(name);
    let mut procs = Procs(Vec::new());
    let data = content(3 << 20, 5);
    let (seed, sharers) = network(&mut procs, &dir, &data);
    let out = dir.join("out.bin");
    let wrong_len = 5000u64;
    let (mut sink, resume) = PartialFile::open(&out, id_of(&data)).unwrap();
    assert!(resume.is_none());
    sink.write_at(0, &data[..wrong_len as usize]).unwrap();
    sink.checkpoint(wrong_len, &have).unwrap();
    drop(sink);
    let rec: Value = serde_json::from_slice(&std::fs::read(progress_path(&out)).unwrap()).unwrap();
    assert_eq!(rec["id"], id_of(&data).to_hex().as_str());
    assert_eq!(rec["len"].as_u64(), Some(wrong_len));
    assert_eq!(
        std::fs::metadata(partial_path(&out)).unwrap().len(),
        wrong_len
    );
    let r = get_json(&dir, &data, &out, seed);
    // Identical bytes, no partial file or record left, bad_holders empty.
    let v = assert_downloaded(&r, &out, &data, &sharers);
    assert_eq!(v["bad_holders"], serde_json::json!([]), "{v}");
    drop(procs);
}

#[test]
fn get_starts_over_when_the_record_has_the_wrong_length() {
    // Block 0 marked, block 1 not: the first block from a holder contradicts the record's
    // length, and the download starts over at the holder's length.
    wrong_len_case("wrong-len", [true, false]);
}

#[test]
fn get_starts_over_when_a_wrong_length_record_marks_every_block() {
    wrong_len_case("wrong-len-full", [true, true]);
}

#[test]
fn get_errors() {
    let dir = TempDir::new("errors");
    let mut procs = Procs(Vec::new());
    let seed = seed(&mut procs, &dir).to_string();
    let quick = Duration::from_secs(20);
    let fails = |r: &Run, what: &str| {
        assert!(
            !r.status.success(),
            "{what}: exited 0\nstdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stderr.contains("telekad: error: "),
            "{what}: no error line: {}",
            r.stderr
        );
        assert!(r.stdout.trim().is_empty(), "{what}: stdout: {}", r.stdout);
    };
    let nobody = hex::encode(Sha256::digest(b"telekad get_cli: content nobody holds"));

    // (a) Not a content id: too short, and the right length but not hex.
    for bad in ["xyz".to_string(), "g".repeat(64), nobody[..63].to_string()] {
        let bad = bad.as_str();
        let out = dir.join("a.bin");
        let r = get(&dir, bad, &out, &["--bootstrap", &seed], quick);
        fails(&r, bad);
        assert!(r.stderr.contains("not a content id"), "{bad}: {}", r.stderr);
        assert!(!out.exists() && !partial_path(&out).exists());
    }

    // (b) The output file exists already: refused, and left as it was.
    let out = dir.join("exists.bin");
    std::fs::write(&out, b"precious bytes").unwrap();
    let r = get(
        &dir,
        &nobody,
        &out,
        &["--bootstrap", &seed, "--json"],
        quick,
    );
    fails(&r, "existing output");
    assert!(r.stderr.contains("exists already"), "{}", r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious bytes");
    assert!(!partial_path(&out).exists() && !progress_path(&out).exists());

    // (c) Nobody holds the id: fails once the holder walk is over (deadline 10 s).
    let out = dir.join("nobody.bin");
    let r = get(
        &dir,
        &nobody,
        &out,
        &["--bootstrap", &seed],
        Duration::from_secs(30),
    );
    fails(&r, "unheld id");
    assert!(r.stderr.contains("no holder found"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(30), "took {:?}", r.took);
    assert!(!out.exists());
    // A failed run with nothing received leaves neither the partial file nor its record.
    assert!(
        !partial_path(&out).exists(),
        "partial file left by a failed run"
    );
    assert!(
        !progress_path(&out).exists(),
        "progress record left by a failed run"
    );

    // (d) Nothing to start from: no --bootstrap, no --holder, a fresh data directory.
    let fresh = dir.join("fresh-data");
    let out = dir.join("d.bin");
    let r = run_limited(
        &[
            "get",
            &nobody,
            "-o",
            &s(&out),
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &s(&fresh),
        ],
        dir.path(),
        quick,
    );
    fails(&r, "no bootstrap");
    assert!(
        r.stderr.contains("nothing to bootstrap from"),
        "{}",
        r.stderr
    );
    assert!(!fresh.exists(), "get created the fresh --data-dir");
    assert!(!out.exists() && !partial_path(&out).exists());
    drop(procs);
}
