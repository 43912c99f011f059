//! Crash safety of the state file, through the real binary.
//!
//! `sigkill_while_saving_never_leaves_a_bad_state`: a `telekad run` node joins a loopback
//! swarm and saves its table every 10 ms; then, 50 times in a row, it is restarted from its
//! data directory (no bootstrap address: only the saved table brings it back) and killed
//! with SIGKILL after a random, seeded delay. After every kill the state file must decode,
//! nothing may have been set aside, at most one temporary file (the killed save's) may be
//! left, and the next start must not warn about the state file.
//!
//! `unusable_state_file_gives_one_warning_and_the_node_starts`: a corrupt and a
//! future-version state file each give one warning line that says what happened and where
//! the file went; the node starts and the file is kept aside byte for byte.
//!
//! Nothing here binds or sends outside 127.0.0.0/8, and `--public` is never passed.
//! `TELEKAD_CRASH_SEED=<u64>` replays another sequence of kill delays.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use telekad::persist::{self, STATE_FILE};
use telekad::swarm::{Swarm, SwarmConfig};

mod common;
use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_telekad");

/// Restarts, each ended by SIGKILL.
const KILLS: usize = 50;
/// The node's save interval, short so that kills land during saves.
const SAVE_EVERY_MS: u64 = 10;
/// Kill delays after the start, uniform in this range (milliseconds).
const KILL_AFTER_MS: (u64, u64) = (5, 250);

/// SplitMix64: a small seeded generator for the kill delays.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A running `telekad run`, its stderr read line by line on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<String>,
}

impl Running {
    /// `telekad run` on a fresh port of 127.77.0.1 with `extra` arguments, default logging.
    fn start(dir: &TempDir, extra: &[String]) -> Running {
        let mut child = Command::new(BIN)
            .args(["run", "--bind", "127.77.0.1:0", "--data-dir", dir.arg()])
            .args(extra)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn telekad run");
        let stderr = child.stderr.take().unwrap();
        let (lines, reader) = common::forward_lines(stderr);
        Running {
            child,
            lines,
            reader,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends on Unix); returns everything it wrote to stderr.
    fn kill(mut self) -> String {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reap");
        assert!(!status.success(), "killed node exited {status:?}");
        self.reader.join().unwrap()
    }

    /// Waits until a stderr line contains `what`; panics with the log after `limit`.
    fn wait_for_line(&mut self, what: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                if line.contains(what) {
                    return line;
                }
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("node exited early ({s:?}) before logging {what:?}");
            }
            assert!(Instant::now() < end, "no {what:?} line after {limit:?}");
        }
    }

    /// SIGINT, then waits (at most 10 s) for the exit; returns the status and stderr.
    fn interrupt(mut self) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "kill -INT");
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("node still running 10 s after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.reader.join().unwrap())
    }
}

/// What lies in the data directory besides `state.json`.
#[derive(Debug, Default)]
struct Leftovers {
    /// Temporary files of an interrupted save (`.state.json.tmp.<pid>.<n>`).
    temps: Vec<String>,
    /// The data directory's write test (`.telekad-write-test.<pid>`), left by a kill at start.
    probes: Vec<String>,
    /// Files set aside as unusable (`state.json.bad-*`).
    set_aside: Vec<String>,
    /// Anything else.
    other: Vec<String>,
}

fn leftovers(dir: &Path) -> Leftovers {
    let mut l = Leftovers::default();
    for e in std::fs::read_dir(dir).expect("read data dir") {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == STATE_FILE {
            continue;
        } else if name.starts_with(&format!(".{STATE_FILE}.tmp.")) {
            l.temps.push(name);
        } else if name.starts_with(".telekad-write-test.") {
            l.probes.push(name);
        } else if name.starts_with(&format!("{STATE_FILE}.bad-")) {
            l.set_aside.push(name);
        } else {
            l.other.push(name);
        }
    }
    l
}

/// Stderr lines that would mean the state file was not usable or not saved.
fn state_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("state file")
                || l.contains("moved it to")
                || l.contains("could not save")
                || l.contains("starting fresh")
        })
        .collect()
}

fn saved_contacts(dir: &Path) -> Option<usize> {
    persist::load(dir)
        .unwrap_or_else(|e| panic!("state file does not load: {e}"))
        .map(|s| s.contacts.len())
}

#[test]
fn sigkill_while_saving_never_leaves_a_bad_state() {
    let t0 = Instant::now();
    let seed = std::env::var("TELEKAD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de_u64);
    let mut rng = SplitMix(seed);

    // The swarm the node joins lives in this process, on its own runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let swarm = rt.block_on(async {
        let swarm = Swarm::start(SwarmConfig::new(8)).await.expect("swarm");
        let (r, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
        assert!(settled.is_some(), "swarm did not settle: {r:?}");
        swarm
    });
    let members = swarm.addrs().len();
    let dir = TempDir::new("sigkill");
    let save_every = vec!["--save-every".to_string(), SAVE_EVERY_MS.to_string()];

    // First run: join through a bootstrap address and let the saves catch up with the table.
    let mut args = save_every.clone();
    args.extend(["--bootstrap".to_string(), swarm.addrs()[0].to_string()]);
    let node = Running::start(&dir, &args);
    let end = Instant::now() + Duration::from_secs(20);
    while persist::load(dir.path())
        .ok()
        .flatten()
        .map_or(0, |s| s.contacts.len())
        < members
    {
        assert!(
            Instant::now() < end,
            "the node's saved table never held the swarm"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = node.kill();
    assert!(state_complaints(&log).is_empty(), "first run:\n{log}");
    let first = saved_contacts(dir.path()).expect("saved");
    println!("joined: {first} contacts saved (swarm of {members})");

    // Then restart it from the data directory alone and kill it at random moments.
    let mut during_save = 0;
    let mut loaded_logged = 0;
    let mut contacts = Vec::with_capacity(KILLS);
    let mut delays = Vec::with_capacity(KILLS);
    for i in 0..KILLS {
        let delay = rng.between(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        delays.push(delay);
        let node = Running::start(&dir, &save_every);
        let pid = node.pid();
        std::thread::sleep(Duration::from_millis(delay));
        let log = node.kill();

        let what = format!("kill {i} (pid {pid}, after {delay} ms)");
        // Every start found a usable file, so none complained and none set a file aside.
        let complaints = state_complaints(&log);
        assert!(complaints.is_empty(), "{what}: {complaints:?}\n{log}");
        if log.contains("loaded saved state") {
            loaded_logged += 1;
        }
        let left = leftovers(dir.path());
        assert!(left.set_aside.is_empty(), "{what}: set aside {left:?}");
        assert!(left.other.is_empty(), "{what}: stray files {left:?}");
        // At most the killed save's own temp file; those of earlier kills are gone.
        assert!(
            left.temps.len() <= 1,
            "{what}: temp files pile up: {left:?}"
        );
        if let Some(t) = left.temps.first() {
            assert!(
                t.starts_with(&format!(".{STATE_FILE}.tmp.{pid}.")),
                "{what}: a temp file of an earlier run survived the restart: {t}"
            );
            during_save += 1;
        }
        assert!(
            left.probes.iter().all(|p| p.ends_with(&format!(".{pid}"))),
            "{what}: write tests of earlier runs pile up: {left:?}"
        );
        // The file the next start will load decodes (checksum and all).
        let n = saved_contacts(dir.path())
            .unwrap_or_else(|| panic!("{what}: the state file disappeared"));
        contacts.push(n);
    }

    // A last, clean run: it comes back from the file and stops with exit 0.
    let mut node = Running::start(&dir, &save_every);
    node.wait_for_line("Ctrl-C to stop", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = node.interrupt();
    assert!(status.success(), "last run exited {status:?}:\n{log}");
    assert!(state_complaints(&log).is_empty(), "last run:\n{log}");
    assert!(log.contains("loaded saved state"), "last run:\n{log}");
    let last = saved_contacts(dir.path()).expect("saved at exit");
    assert!(
        leftovers(dir.path()).temps.is_empty(),
        "temp files after a clean run"
    );

    rt.block_on(swarm.shutdown());
    let short = contacts.iter().filter(|&&n| n < first).count();
    let min = contacts.iter().min().copied().unwrap_or(0);
    let max = contacts.iter().max().copied().unwrap_or(0);
    println!(
        "seed {seed:#x}: {KILLS} SIGKILLs after {}-{} ms (mean {} ms), saves every {SAVE_EVERY_MS} ms",
        delays.iter().min().unwrap(),
        delays.iter().max().unwrap(),
        delays.iter().sum::<u64>() / KILLS as u64
    );
    println!(
        "kills during a save (temp file left): {during_save}/{KILLS}; restarts that loaded a \
         valid state: {KILLS}/{KILLS} ({loaded_logged} logged it before the kill); \
         contacts saved: {min}-{max} ({short} kills left fewer than {first}), {last} after \
         a clean run; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(last > 0, "the node lost its table over the restarts");
}

/// Starts a node on a data dir holding `bad` as its state file; checks the one warning, the
/// start, and the copy set aside. Returns the warning line.
fn starts_despite(name: &str, bad: &[u8], says: &str) -> String {
    let dir = TempDir::new(name);
    std::fs::write(dir.path().join(STATE_FILE), bad).unwrap();
    assert!(persist::load(dir.path()).is_err(), "{name}: rejected");

    let mut node = Running::start(&dir, &[]);
    node.wait_for_line("Ctrl-C to stop", Duration::from_secs(5));
    let (status, log) = node.interrupt();
    assert!(status.success(), "{name}: exited {status:?}:\n{log}");

    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{name}: one warning, got:\n{log}");
    let line = warnings[0];
    let left = leftovers(dir.path());
    assert_eq!(left.set_aside.len(), 1, "{name}: {left:?}");
    let aside = dir.path().join(&left.set_aside[0]);
    for want in [
        "state file",
        says,
        "moved it to",
        aside.to_str().unwrap(),
        "starting fresh",
    ] {
        assert!(line.contains(want), "{name}: no {want:?} in: {line}");
    }
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        bad,
        "{name}: the bad file is kept byte for byte"
    );
    // The node ran and saved a new, valid state file beside the one set aside.
    assert!(log.contains("telekad node running"), "{name}:\n{log}");
    assert_eq!(
        saved_contacts(dir.path()),
        Some(0),
        "{name}: new state file"
    );
    line.to_string()
}

#[test]
fn unusable_state_file_gives_one_warning_and_the_node_starts() {
    let corrupt = b"{\"version\":1,\"checksum\":\"00\",\"body\":{\"contacts\":[{\"addr\":";
    let line = starts_despite("corrupt", corrupt, "is corrupt");
    println!("{line}");

    let body = r#"{"public_addr":null,"contacts":[{"addr":"127.9.9.9:1"}]}"#;
    let mismatch = format!(
        "{{\"version\":1,\"checksum\":\"{}\",\"body\":{body}}}\n",
        "ab".repeat(32)
    );
    let line = starts_despite("checksum", mismatch.as_bytes(), "checksum mismatch");
    println!("{line}");

    let body = r#"{"public_addr":null,"contacts":[],"new_field":{"x":1}}"#;
    let future = format!(
        "{{\"version\":99,\"checksum\":\"{}\",\"body\":{body}}}\n",
        "00".repeat(32)
    );
    let line = starts_despite("future", future.as_bytes(), "format version 99");
    println!("{line}");
}
