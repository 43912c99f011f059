//! The game lobby through the real binary: three `telekad announce` servers under one topic
//! on a small network of `telekad run` nodes; `telekad find` lists all three with their
//! notes and RTTs. Every process binds 127.0.0.0/8 only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    c.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

fn spawn(args: &[&str]) -> Child {
    telekad(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn telekad")
}

#[test]
fn announcers_are_listed_by_find() {
    let dir = std::env::temp_dir().join(format!("telekad-lobby-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let seed = format!("127.0.41.1:{port}");
    let mut procs = Procs(Vec::new());
    procs
        .0
        .push(spawn(&["run", "--bind", &seed, "--data-dir", &d("seed")]));
    std::thread::sleep(Duration::from_millis(200));
    for i in 2..6 {
        let bind = format!("127.0.41.{i}:{port}");
        procs.0.push(spawn(&[
            "run",
            "--bind",
            &bind,
            "--data-dir",
            &d(&format!("n{i}")),
            "--bootstrap",
            &seed,
        ]));
    }
    std::thread::sleep(Duration::from_millis(500));
    for i in 1..4 {
        let bind = format!("127.0.42.{i}:{port}");
        let note = format!("server {i}: players {i}/8");
        procs.0.push(spawn(&[
            "announce",
            "testgame/lobby",
            "--note",
            &note,
            "--bind",
            &bind,
            "--data-dir",
            &d(&format!("s{i}")),
            "--bootstrap",
            &seed,
        ]));
    }
    // Poll until all three are listed (announcing takes a lookup and a round trip).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = telekad(&[
            "find",
            "testgame/lobby",
            "--bootstrap",
            &seed,
            "--bind",
            "127.0.43.1:0",
            "--data-dir",
            &d("finder"),
            "--json",
        ])
        .output()
        .expect("run find");
        assert!(
            out.status.success(),
            "find failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(last.trim()).expect("find --json");
        let list = v["announcers"].as_array().expect("announcers").clone();
        if list.len() == 3 {
            for i in 1..4 {
                let addr = format!("127.0.42.{i}:{port}");
                let a = list
                    .iter()
                    .find(|a| a["addr"] == addr.as_str())
                    .expect("announcer listed");
                assert_eq!(a["note"], format!("server {i}: players {i}/8").as_str());
                assert!(a["rtt_ms"]
                    .as_f64()
                    .is_some_and(|r| (0.0..1000.0).contains(&r)));
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all announcers found: {last}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // An over-long note is refused with one clear line.
    let long = "x".repeat(300);
    let out = telekad(&[
        "announce",
        "t",
        "--note",
        &long,
        "--bind",
        "127.0.44.1:0",
        "--data-dir",
        &d("bad"),
        "--bootstrap",
        &seed,
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("256"), "{err}");
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
