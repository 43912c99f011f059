//! `telekad run --share DIR` through the real binary: a file already in the directory and a
//! file added later are both served as cjp2p `Content` blocks to a plain client, and Ctrl-C
//! still saves and exits 0. Loopback only.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ask(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    id: &str,
    cookie: &mut Option<Value>,
) -> Option<Value> {
    let mut msgs = vec![json!({"PleaseSendContent": {"id": id, "offset": 0, "length": 4096}})];
    if let Some(c) = cookie.as_ref() {
        msgs.push(json!({ "AlwaysReturned": c }));
    }
    sock.send_to(&serde_json::to_vec(&msgs).unwrap(), to).ok()?;
    let mut buf = vec![0u8; 65_536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let arr: Vec<Value> = serde_json::from_slice(&buf[..n]).ok()?;
    for m in &arr {
        if let Some(c) = m.get("PleaseAlwaysReturnThisMessage") {
            *cookie = Some(c.clone());
        }
    }
    arr.into_iter().find_map(|m| m.get("Content").cloned())
}

fn wait_for_block(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    data: &[u8],
    cookie: &mut Option<Value>,
) {
    let id = hex::encode(Sha256::digest(data));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(c) = ask(sock, to, &id, cookie) {
            if c["eof"] == data.len() as u64 && c["base64"].as_str().is_some_and(|b| b.len() > 5000)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{id} never served");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_share_serves_existing_and_new_files() {
    let dir = std::env::temp_dir().join(format!("telekad-share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(shared.join("a.bin"), &a).unwrap();
    let port = 21_000 + (std::process::id() % 20_000) as u16;
    let addr: SocketAddr = format!("127.0.45.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_telekad"))
        .args(["run", "--bind", &addr.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--share")
        .arg(&shared)
        .args(["--rescan", "1"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = std::net::UdpSocket::bind("127.0.45.2:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut cookie = None;
    wait_for_block(&sock, addr, &a, &mut cookie);
    // A file added later is picked up by the next scan.
    let b: Vec<u8> = (0..50_000u32).map(|i| (i % 199) as u8 ^ 0x5a).collect();
    std::fs::write(shared.join("b.bin"), &b).unwrap();
    wait_for_block(&sock, addr, &b, &mut cookie);
    // Ctrl-C: state saved, exit 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(dir.join("data").join("state.json").exists());
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains(&hex::encode(Sha256::digest(&a))), "{out}");
    assert!(out.contains(&hex::encode(Sha256::digest(&b))), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
