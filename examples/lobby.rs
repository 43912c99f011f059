//! A game lobby on telekad, all on loopback: a few nodes form a small network, two game
//! servers announce themselves under the topic `mygame/lobby` with a note players see,
//! and a player's node lists them with their round-trip times.
//!
//! Run it with `cargo run --release --example lobby`. It exits 0 when the player sees
//! every server, and 1 with the reason otherwise. Every socket is on 127.0.0.0/8.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use telekad::driver::{Node, NodeConfig};
use telekad::id::NodeId;

const TOPIC: &str = "mygame/lobby";

/// Starts a node on `127.0.77.{host}` (any free port) that joins through `seed`.
async fn start(host: u8, seed: Option<SocketAddr>) -> Node {
    let mut cfg = NodeConfig::new(SocketAddr::from(([127, 0, 77, host], 0)));
    cfg.loopback_only = true; // never send anywhere but 127.0.0.0/8
    cfg.bootstrap = seed.into_iter().collect();
    Node::start(cfg).await.expect("bind a loopback UDP socket")
}

#[tokio::main]
async fn main() -> ExitCode {
    // A seed node and four more: the network the lobby lives on. A real game would
    // bootstrap from known nodes instead (`NodeConfig::bootstrap`, or the public ones).
    let seed = start(1, None).await;
    let mut network = vec![seed.clone()];
    for host in 2..6 {
        network.push(start(host, Some(seed.local_addr())).await);
    }

    // Two game servers announce under the topic's key (SHA-256 of its name). The note is
    // free text up to 256 bytes; JSON keeps it easy for the game to read back.
    let key = NodeId::topic_key(TOPIC);
    let rooms = [
        r#"{"name":"Red room","players":3}"#,
        r#"{"name":"Blue room","players":1}"#,
    ];
    let mut servers = Vec::new();
    for (i, note) in rooms.iter().enumerate() {
        let server = start(10 + i as u8, Some(seed.local_addr())).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // let it learn some peers
        match server.announce(key, note).await {
            Ok(Ok(())) => println!("server {} announced {note}", server.local_addr()),
            Ok(Err(e)) => return fail(&format!("announce refused: {e}")),
            Err(e) => return fail(&e.to_string()),
        }
        servers.push(server);
    }

    // A player lists the servers: a lookup toward the key collects the announcements
    // held by the nodes closest to it. Announcing takes a lookup too, so poll briefly.
    let player = start(20, Some(seed.local_addr())).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let holders = loop {
        let holders = match player.find_holders(key).await {
            Ok((holders, _lookup)) => holders,
            Err(e) => return fail(&e.to_string()),
        };
        let all = servers
            .iter()
            .all(|s| holders.iter().any(|h| h.addr == s.local_addr()));
        if all {
            break holders;
        }
        if Instant::now() > deadline {
            return fail(&format!(
                "the player saw {} of {} servers under {TOPIC:?} after 15 s",
                holders.len(),
                servers.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!("{} server(s) under {TOPIC:?}:", holders.len());
    for h in &holders {
        let rtt = match player.ping(h.addr).await {
            Ok(Some(d)) => format!("{:.2} ms", d.as_secs_f64() * 1000.0),
            _ => "no answer".to_string(),
        };
        println!("  {:<22} {:>10}  {}", h.addr, rtt, h.note);
    }
    for node in network.iter().chain(&servers).chain([&player]) {
        let _ = node.shutdown().await;
    }
    ExitCode::SUCCESS
}

fn fail(why: &str) -> ExitCode {
    eprintln!("lobby: error: {why}");
    ExitCode::FAILURE
}
