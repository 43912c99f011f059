//! `--config FILE` and the `--json` events of the long-running commands, through the real
//! binary: `docs/telekad.toml` (every key, at its default) is accepted, a flag overrides the
//! file and the file the default, every kind of bad file gives one clear error line and a
//! non-zero exit before the data directory is touched, and `run`, `share` and `announce`
//! print one JSON object per line (started, shared / announced, stopped on SIGINT).
//!
//! Nothing here binds or sends outside 127.0.0.0/8: every node is given a 127.0.0.1 bind
//! address (flag or file) and only loopback bootstrap addresses; `--public` is never passed
//! and the example file leaves `public = false`.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{telekad, TempDir};

/// The example config file, as shipped.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/telekad.toml")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A running `telekad` whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    what: String,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = telekad(args).spawn().expect("spawn telekad");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            child,
            lines,
            stderr: Some(stderr),
            what: format!("telekad {}", args.join(" ")),
        }
    }

    /// The next stdout line, which must be one JSON object; panics after `limit`.
    fn event(&mut self, limit: Duration) -> serde_json::Map<String, Value> {
        let line = match self.lines.recv_timeout(limit) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap());
                panic!(
                    "`{}`: no stdout line within {limit:?} ({e}); stderr:\n{}",
                    self.what,
                    err.unwrap_or_default()
                );
            }
        };
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(m)) => m,
            other => panic!(
                "`{}` printed {line:?}, not a JSON object: {other:?}",
                self.what
            ),
        }
    }

    /// The next event, which must be `name`.
    fn expect(&mut self, name: &str, limit: Duration) -> serde_json::Map<String, Value> {
        let m = self.event(limit);
        assert_eq!(m["event"], name, "`{}`: {m:?}", self.what);
        m
    }

    /// Sends SIGINT (Ctrl-C), waits for the exit, and returns the last event: `stopped`,
    /// after which stdout must end.
    fn interrupt(&mut self) -> serde_json::Map<String, Value> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let r = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(r, 0, "kill -INT {pid}");
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "`{}` still running after SIGINT",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = self.stderr.take().map(|h| h.join().unwrap());
        assert!(
            status.success(),
            "`{}` exited {status:?} after SIGINT; stderr:\n{}",
            self.what,
            err.unwrap_or_default()
        );
        let stopped = self.expect("stopped", Duration::from_secs(2));
        assert_eq!(stopped["saved"], true, "{stopped:?}");
        assert!(stopped["contacts"].is_u64(), "{stopped:?}");
        assert!(
            self.lines.recv_timeout(Duration::from_secs(2)).is_err(),
            "`{}` printed after the stopped event",
            self.what
        );
        stopped
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const UP: Duration = Duration::from_secs(10);

fn addr(v: &Value) -> std::net::SocketAddr {
    v.as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an address: {v}"))
}

#[test]
fn example_file_lists_every_key_at_its_default_and_is_accepted() {
    let text = std::fs::read_to_string(example()).expect("docs/telekad.toml");
    let keys = [
        "bind",
        "data_dir",
        "bootstrap",
        "public",
        "rate_per_ip",
        "rate_global",
        "rate_blocks_per_ip",
        "http",
        "http_public",
        "share",
        "rescan",
        "save_every",
    ];
    let table: toml::Table = toml::from_str(&text).expect("docs/telekad.toml is TOML");
    for k in keys {
        // Set, or (no literal default: data_dir, http) shown commented out.
        let shown = text
            .lines()
            .any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} = ")));
        assert!(shown, "docs/telekad.toml does not show `{k}`");
    }
    for k in table.keys() {
        assert!(keys.contains(&k.as_str()), "unexpected key {k}");
    }
    // The example never contacts the internet by itself.
    assert_eq!(table["public"].as_bool(), Some(false));
    assert_eq!(table["bootstrap"].as_array().map(Vec::len), Some(0));
    assert!(
        !table.contains_key("http"),
        "the example must not enable http"
    );

    // Through the binary, with the file's bind overridden to loopback.
    let dir = TempDir::new("example");
    let data = dir.join("data");
    let mut p = Proc::spawn(&[
        "run",
        "--config",
        s(&example()),
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        s(&data),
        "--json",
    ]);
    let m = p.expect("started", UP);
    println!("{m:?}");
    assert!(addr(&m["bind"]).ip().is_loopback(), "{m:?}");
    assert_eq!(m["id"].as_str().map(str::len), Some(64), "{m:?}");
    assert_eq!(m["data_dir"], s(&data));
    // The documented defaults.
    assert_eq!(m["rate_per_ip"], 500);
    assert_eq!(m["rate_global"], 50_000);
    assert_eq!(m["rate_blocks_per_ip"], 100_000);
    assert_eq!(m["rescan"], 10);
    assert_eq!(m["public"], false);
    assert_eq!(m["http_public"], false);
    assert_eq!(m["http"], Value::Null);
    assert_eq!(m["bootstrap"], serde_json::json!([]));
    assert_eq!(m["share"], serde_json::json!([]));
    assert_eq!(m["config"], s(&example()));
    let stopped = p.interrupt();
    println!("{stopped:?}");
    assert!(data.join("state.json").is_file());
}

#[test]
fn a_flag_overrides_the_file_and_the_file_the_default() {
    let dir = TempDir::new("precedence");
    std::fs::create_dir_all(dir.join("shared")).unwrap();
    std::fs::write(dir.join("shared/a.bin"), b"hello, config file").unwrap();
    let file = dir.join("node.toml");
    // Relative paths are relative to the file's directory.
    std::fs::write(
        &file,
        r#"
bind = "127.0.0.1:0"
data_dir = "data"
bootstrap = ["127.0.0.1:9"]
rate_per_ip = 7
rate_global = 900
http = "127.0.0.1:0"
share = ["shared"]
rescan = 3
"#,
    )
    .unwrap();
    let mut p = Proc::spawn(&[
        "run",
        "--config",
        s(&file),
        "--rate-global",
        "1234",
        "--bootstrap",
        "127.0.0.2:9",
        "--json",
    ]);
    let m = p.expect("started", UP);
    println!("{m:?}");
    assert_eq!(m["rate_per_ip"], 7, "from the file");
    assert_eq!(m["rate_global"], 1234, "the flag wins");
    assert_eq!(
        m["bootstrap"],
        serde_json::json!(["127.0.0.2:9"]),
        "the flag's list replaces the file's"
    );
    assert_eq!(m["rescan"], 3, "from the file");
    assert!(addr(&m["bind"]).ip().is_loopback());
    let http = addr(&m["http"]);
    assert!(http.ip().is_loopback() && http.port() != 0, "{m:?}");
    assert_eq!(m["data_dir"], s(&dir.join("data")));
    assert_eq!(m["share"], serde_json::json!([s(&dir.join("shared"))]));
    assert!(dir.join("data").is_dir());
    // The shared file from the file's `share`.
    let sh = p.expect("shared", UP);
    assert_eq!(sh["path"], s(&dir.join("shared/a.bin")));
    assert_eq!(sh["bytes"], 18);
    p.interrupt();

    // Without the flags, the defaults the file does not set stay the built-in ones.
    std::fs::write(&file, "bind = \"127.0.0.1:0\"\nrate_per_ip = 7\n").unwrap();
    let data = dir.join("data2");
    let mut p = Proc::spawn(&[
        "run",
        "--config",
        s(&file),
        "--data-dir",
        s(&data),
        "--json",
    ]);
    let m = p.expect("started", UP);
    assert_eq!(m["rate_per_ip"], 7);
    assert_eq!(m["rate_global"], 50_000, "built-in default");
    assert_eq!(m["data_dir"], s(&data), "the flag");
    p.interrupt();
}

/// Runs `args`, which must fail at once with one error line containing every string of
/// `mentions`, nothing on stdout, and the data directory `data` untouched.
fn expect_error(args: &[&str], data: &Path, mentions: &[&str]) -> String {
    let before = snapshot(data);
    let what = format!("telekad {}", args.join(" "));
    let out = telekad(args).output().expect("run telekad");
    assert!(!out.status.success(), "`{what}` succeeded");
    assert!(out.status.code().is_some(), "`{what}` died by a signal");
    assert!(out.stdout.is_empty(), "`{what}` printed to stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "`{what}`: one error line, got:\n{err}");
    let line = lines[0];
    assert!(line.starts_with("telekad: error: "), "{line}");
    for m in mentions {
        assert!(line.contains(m), "`{what}`: error line lacks {m:?}: {line}");
    }
    assert_eq!(
        snapshot(data),
        before,
        "`{what}` changed the data directory"
    );
    line.to_string()
}

/// The files of `dir` and their contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map_while(Result::ok)
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn bad_config_files_fail_clearly_before_touching_the_data_dir() {
    let dir = TempDir::new("errors");
    // A data directory with something stored in it, which a bad config must not touch.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("state.json"), b"stored state").unwrap();
    std::fs::write(data.join("keep.txt"), b"keep me").unwrap();
    let file = dir.join("bad.toml");
    let run = |mentions: &[&str], extra: &[&str]| {
        let mut args = vec!["run", "--config", s(&file), "--data-dir", s(&data)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bind", "127.0.0.1:0", "--json"]);
        let line = expect_error(&args, &data, mentions);
        println!("{line}");
    };
    let f = s(&file).to_string();

    // Missing file.
    let missing = dir.join("missing.toml");
    let line = expect_error(
        &[
            "run",
            "--config",
            s(&missing),
            "--data-dir",
            s(&data),
            "--bind",
            "127.0.0.1:0",
        ],
        &data,
        &["cannot read config file", s(&missing), "--config"],
    );
    println!("{line}");
    // Unreadable: a directory.
    let line = expect_error(
        &[
            "run",
            "--config",
            s(&data),
            "--data-dir",
            s(&data),
            "--bind",
            "127.0.0.1:0",
        ],
        &data,
        &["cannot read config file", "--config"],
    );
    println!("{line}");

    let cases: &[(&str, &[&str])] = &[
        // TOML syntax, with toml's line and column.
        (
            "rate_per_ip = 7\nbind = 127.0.0.1:0\n",
            &[&f, "not valid TOML", "line 2, column"],
        ),
        // Unknown keys, named, with the valid ones listed.
        (
            "colour = \"blue\"\n",
            &[
                &f,
                "line 1",
                "unknown key `colour`",
                "bind, data_dir",
                "save_every",
            ],
        ),
        (
            "rate-per-ip = 7\n",
            &["`rate-per-ip`", "write `rate_per_ip`"],
        ),
        ("[node]\nbind = \"127.0.0.1:0\"\n", &["unknown key `node`"]),
        // Wrong types.
        (
            "\nrate_per_ip = \"seven\"\n",
            &[&f, "line 2", "rate_per_ip", "whole number"],
        ),
        ("public = \"yes\"\n", &["public", "true or false"]),
        ("bootstrap = \"127.0.0.1:9\"\n", &["bootstrap", "array"]),
        ("rate_global = -5\n", &["rate_global", "-5"]),
        // Bad values, in the flags' own words.
        (
            "bind = \"nonsense\"\n",
            &[&f, "bind", "'nonsense' is not a bind address", "IP:PORT"],
        ),
        (
            "bootstrap = [\"192.0.2.4\"]\n",
            &["bootstrap", "'192.0.2.4' has no port", "IP:PORT"],
        ),
        (
            "http = \"localhost\"\n",
            &["http", "'localhost' is not a bind address"],
        ),
        ("rescan = 0\n", &["rescan", "1 to 86400"]),
        ("save_every = 0\n", &["save_every", "1 to 86400000"]),
        (
            "http_public = true\n",
            &["http_public", "needs an HTTP address"],
        ),
        (
            "http = \"0.0.0.0:0\"\n",
            &["not a loopback address", "--http-public"],
        ),
        ("share = [\"does/not/exist\"]\n", &["does not exist"]),
    ];
    for (text, mentions) in cases {
        std::fs::write(&file, text).unwrap();
        run(mentions, &[]);
    }
    // The command line does not rescue a bad file: it is still reported.
    std::fs::write(&file, "bind = \"nonsense\"\n").unwrap();
    run(&["'nonsense'"], &["--rate-per-ip", "3"]);
    assert_eq!(
        std::fs::read(data.join("state.json")).unwrap(),
        b"stored state"
    );

    // `share` and `announce` read it too.
    std::fs::write(&file, "colour = 1\n").unwrap();
    let shared = dir.join("keep.bin");
    std::fs::write(&shared, b"x").unwrap();
    for cmd in [
        vec!["share", s(&shared)],
        vec!["announce", "t", "--bootstrap", "127.0.0.1:9"],
    ] {
        let mut args = cmd.clone();
        args.extend_from_slice(&[
            "--config",
            s(&file),
            "--data-dir",
            s(&data),
            "--bind",
            "127.0.0.1:0",
        ]);
        let line = expect_error(&args, &data, &["unknown key `colour`"]);
        println!("{line}");
    }
}

#[test]
fn share_and_announce_print_json_events() {
    let dir = TempDir::new("events");
    // A seed node to announce to.
    let mut seed = Proc::spawn(&[
        "run",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        s(&dir.join("seed")),
        "--json",
    ]);
    let seed_addr = addr(&seed.expect("started", UP)["bind"]).to_string();

    // share: started, one shared event per file, stopped.
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("one.txt"), b"one").unwrap();
    std::fs::write(files.join("sub/two.txt"), vec![7u8; 5000]).unwrap();
    let mut sh = Proc::spawn(&[
        "share",
        s(&files),
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        s(&dir.join("sharer")),
        "--bootstrap",
        &seed_addr,
        "--json",
    ]);
    let m = sh.expect("started", UP);
    assert!(addr(&m["bind"]).ip().is_loopback());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = sh.expect("shared", UP);
        let path = PathBuf::from(e["path"].as_str().expect("path"));
        let body = std::fs::read(&path).expect("shared path exists");
        assert_eq!(e["bytes"], body.len(), "{e:?}");
        use sha2::Digest;
        assert_eq!(e["id"], hex::encode(sha2::Sha256::digest(&body)), "{e:?}");
        seen.push(path);
    }
    seen.sort();
    assert_eq!(seen, vec![files.join("one.txt"), files.join("sub/two.txt")]);
    println!("share: {:?}", sh.interrupt());

    // announce, its node settings from a config file: started, announced, stopped.
    let file = dir.join("announce.toml");
    std::fs::write(
        &file,
        format!(
            "bind = \"127.0.0.1:0\"\nbootstrap = [\"{seed_addr}\"]\ndata_dir = \"announcer\"\n"
        ),
    )
    .unwrap();
    let mut an = Proc::spawn(&[
        "announce",
        "testgame/lobby",
        "--note",
        "players 1/8",
        "--config",
        s(&file),
        "--json",
    ]);
    let m = an.expect("started", UP);
    assert!(addr(&m["bind"]).ip().is_loopback());
    let e = an.expect("announced", UP);
    assert_eq!(e["topic"], "testgame/lobby");
    assert_eq!(e["note"], "players 1/8");
    assert_eq!(
        e["id"],
        telekad::id::NodeId::topic_key("testgame/lobby").to_hex()
    );
    println!("announce: {:?}", an.interrupt());
    assert!(
        dir.join("announcer/state.json").is_file(),
        "data_dir from the file"
    );
    println!("seed: {:?}", seed.interrupt());
}

#[test]
fn every_command_help_has_an_example_and_config_is_documented() {
    for cmd in [
        "run", "swarm", "lookup", "share", "announce", "find", "get", "simulate",
    ] {
        let out = telekad(&[cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Example"),
            "`telekad {cmd} --help` has no example"
        );
        assert!(
            text.contains("--json"),
            "`telekad {cmd} --help` has no --json"
        );
        if ["run", "share", "announce"].contains(&cmd) {
            assert!(
                text.contains("--config <FILE>"),
                "`telekad {cmd} --help`: no --config"
            );
            assert!(
                text.contains("--config /etc/telekad.toml"),
                "`telekad {cmd} --help`: no --config example"
            );
        }
    }
    let out = telekad(&["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The defaults are still shown.
    assert!(text.contains("[default: 0.0.0.0:24254]"), "{text}");
    assert!(text.contains("[default: 500]"), "{text}");
    assert!(text.contains("docs/telekad.toml"), "{text}");
}
