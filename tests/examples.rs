//! The lobby examples work: `examples/lobby.rs` (built by `cargo test` next to the test
//! binaries) exits 0 and lists its servers, and `examples/lobby.py` announces and lists
//! through the HTTP API of nodes in a loopback swarm. Everything stays on 127.0.0.0/8.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use telekad::driver::Node;
use telekad::http::{serve, HttpConfig};
use telekad::swarm::{Swarm, SwarmConfig};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lobby_example_lists_its_servers() {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/lobby
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let lobby = dir
        .join("examples")
        .join(format!("lobby{}", std::env::consts::EXE_SUFFIX));
    assert!(
        lobby.exists(),
        "{} is not built; `cargo test` builds it, or run `cargo build --release --examples`",
        lobby.display()
    );
    let t = Instant::now();
    let out = Command::new(&lobby)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the lobby example");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "lobby failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 server(s) under \"mygame/lobby\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"name":"Red room","players":3}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"name":"Blue room","players":1}"#),
        "{stdout}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
}

/// Serves the HTTP API of `node` on 127.0.0.1 (any free port) and returns its base URL.
fn api(rt: &tokio::runtime::Runtime, node: &Node, tag: &str) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the API");
    let addr: SocketAddr = listener.local_addr().expect("API address");
    let dir = std::env::temp_dir().join(format!("telekad-ex-{tag}-{}", std::process::id()));
    let cfg = HttpConfig::new(dir.join("downloads"));
    rt.spawn(serve(node.clone(), listener, cfg, std::future::pending()));
    format!("http://{addr}")
}

fn python(args: &[&str]) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/lobby.py");
    Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 is needed for this test (Debian: apt-get install python3)")
}

#[test]
fn lobby_py_serves_and_lists_through_the_http_api() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let swarm = rt.block_on(async {
        let swarm = Swarm::start(SwarmConfig::new(8)).await.expect("swarm");
        let (fill, settled) = swarm.settle(Duration::from_secs(15), |_| {}).await;
        assert!(settled.is_some(), "the swarm did not settle: {fill:?}");
        swarm
    });
    // The game server's node and a player's node, each with its own API.
    let server_api = api(&rt, &swarm.nodes()[1], "server");
    let player_api = api(&rt, &swarm.nodes()[5], "player");

    let out = python(&["--api", &server_api, "serve", "Red room", "--players", "3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "serve failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("announced under 'mygame/lobby'"),
        "{stdout}"
    );

    let note = r#"{"name":"Red room","players":3}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = python(&["--api", &player_api, "list"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "list failed:\n{stdout}\n{stderr}");
        if stdout.contains(note) {
            assert!(stdout.contains(&swarm.addrs()[1].to_string()), "{stdout}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server was not listed:\n{stdout}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // No node behind the URL: one clear line and a non-zero exit.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let out = python(&["--api", &url, "list"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach the node's API"), "{stderr}");
    rt.block_on(swarm.shutdown());
}
