//! A plain cjp2p client that knows only `PleaseSendContent`, `Content`, `MaybeTheyHaveSome`
//! and the cookie messages asks a telekad node that lacks a file, follows the
//! `MaybeTheyHaveSome` answers to the holder, and downloads the file, byte-identical.
//! Everything runs on 127.0.0.0/8.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use telekad::id::NodeId;
use telekad::swarm::{Swarm, SwarmConfig};
use tokio::net::UdpSocket;

/// The plain client: one socket, cookies per peer, nothing else.
struct Plain {
    sock: UdpSocket,
    their_cookie: HashMap<SocketAddr, Value>,
}

impl Plain {
    async fn ask(&mut self, to: SocketAddr, id: &str, offset: u64) -> Vec<Value> {
        let mut msgs =
            vec![json!({"PleaseSendContent": {"id": id, "offset": offset, "length": 4096}})];
        if let Some(c) = self.their_cookie.get(&to) {
            msgs.push(json!({ "AlwaysReturned": c }));
        }
        let pkt = serde_json::to_vec(&msgs).unwrap();
        self.sock.send_to(&pkt, to).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut out = Vec::new();
        // Collect what comes back from `to` for a short while.
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(300), self.sock.recv_from(&mut buf)).await
        {
            if from != to {
                continue;
            }
            let arr: Vec<Value> = serde_json::from_slice(&buf[..n]).unwrap_or_default();
            for m in arr {
                if let Some(c) = m.get("PleaseAlwaysReturnThisMessage") {
                    self.their_cookie.insert(to, c.clone());
                }
                out.push(m);
            }
            if out
                .iter()
                .any(|m| m.get("Content").is_some() || m.get("MaybeTheyHaveSome").is_some())
            {
                break;
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_walks_to_the_holder() {
    let swarm = Swarm::start(SwarmConfig::new(40)).await.expect("swarm");
    let (_, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    assert!(settled.is_some(), "swarm did not settle");
    // A 20,000-byte file held by node 33 only, announced under its id.
    let data: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let id = NodeId::hash(&data);
    let holder = &swarm.nodes()[33];
    holder.hold(id, Arc::new(data.clone())).await.unwrap();
    holder.announce(id, "").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut client = Plain {
        sock: UdpSocket::bind("127.0.201.7:0").await.unwrap(),
        their_cookie: HashMap::new(),
    };
    let hex = id.to_hex();
    let start = swarm.addrs()[0];
    let holder_addr = swarm.addrs()[33];
    let mut queue: VecDeque<SocketAddr> = VecDeque::from([start]);
    let mut asked: HashSet<SocketAddr> = HashSet::new();
    let mut got = Vec::new();
    let mut server = None;
    let mut hops = 0;
    while let Some(peer) = queue.pop_front() {
        hops += 1;
        assert!(hops < 200, "walked too long");
        let mut reply = client.ask(peer, &hex, 0).await;
        if reply
            .iter()
            .all(|m| m.get("Content").is_none() && m.get("MaybeTheyHaveSome").is_none())
        {
            // An unverified first ask may be trimmed to the cookie alone: ask again with it.
            reply = client.ask(peer, &hex, 0).await;
        }
        asked.insert(peer);
        if let Some(c) = reply.iter().find_map(|m| m.get("Content")) {
            server = Some(peer);
            assert_eq!(c["offset"], 0);
            assert_eq!(c["eof"], data.len() as u64);
            break;
        }
        if let Some(m) = reply.iter().find_map(|m| m.get("MaybeTheyHaveSome")) {
            let listed: Vec<SocketAddr> = m["peers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p.as_str()?.parse().ok())
                .collect();
            // A plain client tries the listed peers in order, before older ones.
            for p in listed.into_iter().rev() {
                if !asked.contains(&p) {
                    queue.push_front(p);
                }
            }
        }
    }
    let server = server.expect("the walk reached a node serving the content");
    assert_eq!(server, holder_addr, "only node 33 holds it");
    assert_ne!(start, holder_addr);
    // Download every block from the holder.
    let mut offset = 0u64;
    while offset < data.len() as u64 {
        let reply = client.ask(server, &hex, offset).await;
        let c = reply
            .iter()
            .find_map(|m| m.get("Content"))
            .expect("a block");
        assert_eq!(c["offset"], offset);
        let block = base64_decode(c["base64"].as_str().unwrap());
        assert!(!block.is_empty());
        offset += block.len() as u64;
        got.extend(block);
    }
    assert_eq!(got, data);
    assert_eq!(hex::encode(Sha256::digest(&got)), hex);
    swarm.shutdown().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
