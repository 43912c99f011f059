//! Interop with a minimal plain cjp2p peer written here: it knows only `PleaseSendPeers`,
//! `Peers`, `PleaseAlwaysReturnThisMessage` and `AlwaysReturned`. Peers flow both ways, and
//! telekad always returns the plain peer's cookie once it has it.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telekad::driver::{Node, NodeConfig};
use telekad::engine::amplification_limit;
use telekad::sim::node_addr;
use telekad::swarm::{Swarm, SwarmConfig};
use tokio::net::UdpSocket;

/// One datagram the plain peer received.
#[derive(Debug, Clone)]
struct Received {
    from: SocketAddr,
    len: usize,
    /// (name, body) of every one-key object in the array.
    msgs: Vec<(String, Value)>,
}

impl Received {
    fn get(&self, name: &str) -> Option<&Value> {
        self.msgs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn peers(&self) -> Option<Vec<SocketAddr>> {
        let list = self.get("Peers")?.get("peers")?.as_array()?;
        Some(
            list.iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .expect("Peers entry is an ip:port string")
                })
                .collect(),
        )
    }
}

#[derive(Default)]
struct State {
    log: Vec<Received>,
    /// The cookie we issued, per source IP (as the reference node does).
    ours: HashMap<IpAddr, String>,
    /// Source IPs that have returned our cookie.
    verified: HashSet<IpAddr>,
    /// Cookies others asked us to return, verbatim.
    theirs: HashMap<SocketAddr, Value>,
    /// Addresses we hand out in `Peers`.
    offer: Vec<SocketAddr>,
    /// `PleaseSendPeers` we answered.
    answered: usize,
}

/// A plain cjp2p peer: issues its own `{"cookie":"<8 hex>"}`, expects it back, echoes the
/// cookies it is given, answers `PleaseSendPeers` (one peer while the asker is unverified,
/// like the reference node), and ignores every other message.
struct PlainPeer {
    sock: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

fn cookie_for(state: &mut State, ip: IpAddr, rng: &mut StdRng) -> String {
    state
        .ours
        .entry(ip)
        .or_insert_with(|| format!("{:08x}", rng.random::<u32>()))
        .clone()
}

fn parse(bytes: &[u8]) -> Vec<(String, Value)> {
    let Ok(items) = serde_json::from_slice::<Vec<Value>>(bytes) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(m) if m.len() == 1 => m.into_iter().next(),
            _ => None,
        })
        .collect()
}

fn packet(msgs: Vec<(&str, Value)>) -> Vec<u8> {
    let arr: Vec<Value> = msgs
        .into_iter()
        .map(|(n, v)| {
            let mut m = Map::new();
            m.insert(n.to_string(), v);
            Value::Object(m)
        })
        .collect();
    serde_json::to_vec(&arr).expect("json")
}

impl PlainPeer {
    async fn start(bind: SocketAddr, seed: u64, offer: Vec<SocketAddr>) -> PlainPeer {
        assert!(bind.ip().is_loopback());
        let sock = Arc::new(UdpSocket::bind(bind).await.expect("bind plain peer"));
        let state = Arc::new(Mutex::new(State {
            offer,
            ..State::default()
        }));
        let (s, st) = (sock.clone(), state.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    continue;
                };
                let msgs = parse(&buf[..n]);
                let reply = {
                    let mut g = st.lock().unwrap();
                    let rec = Received { from, len: n, msgs };
                    let mut wants_peers = false;
                    for (name, body) in &rec.msgs {
                        match name.as_str() {
                            "PleaseAlwaysReturnThisMessage" => {
                                g.theirs.insert(from, body.clone());
                            }
                            "AlwaysReturned" => {
                                let ours = g.ours.get(&from.ip()).cloned();
                                if ours.is_some()
                                    && body.get("cookie").and_then(Value::as_str) == ours.as_deref()
                                {
                                    g.verified.insert(from.ip());
                                }
                            }
                            "PleaseSendPeers" => wants_peers = true,
                            _ => {}
                        }
                    }
                    g.log.push(rec);
                    if wants_peers {
                        g.answered += 1;
                        let verified = g.verified.contains(&from.ip());
                        let list: Vec<String> = g
                            .offer
                            .iter()
                            .filter(|a| **a != from)
                            .take(if verified { usize::MAX } else { 1 })
                            .map(|a| a.to_string())
                            .collect();
                        let mut out = vec![("Peers", json!({ "peers": list }))];
                        if let Some(c) = g.theirs.get(&from) {
                            out.push(("AlwaysReturned", c.clone()));
                        }
                        if !verified {
                            let c = cookie_for(&mut g, from.ip(), &mut rng);
                            out.push(("PleaseAlwaysReturnThisMessage", json!({ "cookie": c })));
                        }
                        Some(packet(out))
                    } else {
                        None
                    }
                };
                if let Some(p) = reply {
                    assert!(from.ip().is_loopback());
                    let _ = s.send_to(&p, from).await;
                }
            }
        });
        PlainPeer { sock, state, task }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends `PleaseSendPeers` to `to` with the cookie housekeeping a cjp2p node adds.
    /// Returns the datagram's length.
    async fn ask_peers(&self, to: SocketAddr, seed: u64) -> usize {
        assert!(to.ip().is_loopback());
        let p = {
            let mut g = self.state.lock().unwrap();
            let mut out = vec![("PleaseSendPeers", json!({}))];
            if let Some(c) = g.theirs.get(&to) {
                out.push(("AlwaysReturned", c.clone()));
            }
            if !g.verified.contains(&to.ip()) {
                let mut rng = StdRng::seed_from_u64(seed);
                let c = cookie_for(&mut g, to.ip(), &mut rng);
                out.push(("PleaseAlwaysReturnThisMessage", json!({ "cookie": c })));
            }
            packet(out)
        };
        self.sock.send_to(&p, to).await.expect("send");
        p.len()
    }

    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Polls until `cond` holds or `timeout` passes; returns whether it held.
    async fn wait(&self, timeout: Duration, cond: impl Fn(&State) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.with(&cond) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every packet from `from` that arrived after the first one carrying our cookie must
    /// carry exactly our cookie; none may carry another value. Returns how many carried it.
    fn check_cookie_returned(&self, from: SocketAddr) -> usize {
        self.with(|g| {
            let ours = g
                .ours
                .get(&from.ip())
                .unwrap_or_else(|| panic!("we never issued a cookie to {from}"));
            let want = json!({ "cookie": ours });
            let mut carrying = 0;
            for (i, r) in g.log.iter().filter(|r| r.from == from).enumerate() {
                let echoes: Vec<&Value> = r
                    .msgs
                    .iter()
                    .filter(|(n, _)| n == "AlwaysReturned")
                    .map(|(_, v)| v)
                    .collect();
                for e in &echoes {
                    assert_eq!(**e, want, "packet {i} from {from} returned a wrong cookie");
                }
                if echoes.is_empty() {
                    assert_eq!(
                        carrying, 0,
                        "packet {i} from {from} lacks our cookie after it had returned it: {:?}",
                        r.msgs
                    );
                } else {
                    carrying += 1;
                }
            }
            carrying
        })
    }
}

impl Drop for PlainPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn id_of(addr: SocketAddr) -> [u8; 32] {
    Sha256::digest(addr.to_string().as_bytes()).into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// (a) The plain peer asks a telekad node for peers: a first (possibly trimmed) answer while
/// unverified, then full lists once it returns telekad's cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_peer_gets_peers_from_telekad() {
    const N: usize = 24;
    let swarm = Swarm::start(SwarmConfig::new(N)).await.expect("swarm");
    let (report, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
    assert!(settled.is_some(), "swarm did not settle: {report:?}");
    let members: HashSet<SocketAddr> = swarm.addrs().iter().copied().collect();
    let node0 = swarm.addrs()[0];

    let plain = PlainPeer::start("127.200.0.1:0".parse().unwrap(), 7, Vec::new()).await;
    let me = plain.addr();

    // First request: unverified.
    let req_len = plain.ask_peers(node0, 7).await;
    assert!(
        plain
            .wait(Duration::from_secs(5), |g| g
                .log
                .iter()
                .any(|r| r.from == node0 && r.get("Peers").is_some()))
            .await,
        "no Peers answer from telekad"
    );
    let first = plain.with(|g| {
        g.log
            .iter()
            .find(|r| r.from == node0 && r.get("Peers").is_some())
            .cloned()
            .unwrap()
    });
    assert!(
        first.len <= amplification_limit(req_len),
        "first answer {} bytes to a {req_len}-byte request from an unverified peer",
        first.len
    );
    let first_peers = first.peers().unwrap();
    assert!(!first_peers.is_empty(), "first answer lists no peer");
    for a in &first_peers {
        assert!(members.contains(a), "{a} is not a swarm member");
    }
    let tk_cookie = first
        .get("PleaseAlwaysReturnThisMessage")
        .expect("telekad issues its cookie to an unverified peer")
        .clone();
    assert!(
        tk_cookie.get("cookie").and_then(Value::as_str).is_some(),
        "telekad's cookie has the {{\"cookie\":\"...\"}} shape: {tk_cookie}"
    );

    // The full answer: the 20 contacts of node 0 closest to the plain peer's ID.
    let status = swarm.nodes()[0].status().await.unwrap();
    let target = id_of(me);
    let mut table: Vec<SocketAddr> = status.contacts.iter().map(|c| c.addr()).collect();
    assert_eq!(table.len(), N - 1);
    table.sort_by_key(|a| xor(&id_of(*a), &target));
    let full: Vec<SocketAddr> = table.into_iter().take(20).collect();

    // Further requests carry telekad's cookie (the plain peer echoes it) and get full lists.
    for round in 0..4 {
        let before = plain.with(|g| g.log.iter().filter(|r| r.from == node0).count());
        let sent = plain.ask_peers(node0, 7).await;
        assert!(sent > 0);
        assert!(
            plain
                .wait(Duration::from_secs(5), |g| g
                    .log
                    .iter()
                    .filter(|r| r.from == node0 && r.get("Peers").is_some())
                    .count()
                    >= round + 2)
                .await,
            "round {round}: no answer"
        );
        let reply = plain.with(|g| {
            g.log
                .iter()
                .filter(|r| r.from == node0)
                .skip(before)
                .find(|r| r.get("Peers").is_some())
                .cloned()
                .unwrap()
        });
        let got = reply.peers().unwrap();
        assert_eq!(
            got, full,
            "round {round}: a verified peer gets the 20 closest contacts, nearest first"
        );
    }
    assert!(
        plain.with(|g| g.theirs.get(&node0) == Some(&tk_cookie)),
        "telekad's cookie stayed the one it issued"
    );
    let carrying = plain.check_cookie_returned(node0);
    let total = plain.with(|g| g.log.iter().filter(|r| r.from == node0).count());
    // Node 0 got our cookie in our very first packet, so every packet it sent carries it.
    assert_eq!(
        carrying, total,
        "every packet from telekad returns our cookie"
    );
    assert!(total >= 5);
    println!(
        "(a) first answer: {} of {req_len} request bytes, {} peers; then {total} packets from telekad, all returning our cookie",
        first.len,
        first_peers.len()
    );
    swarm.shutdown().await;
}

/// (b) telekad bootstraps from the plain peer: it asks for peers, the plain peer lists other
/// telekad nodes, and telekad's table grows to include them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telekad_learns_peers_from_plain_peer() {
    // Standalone telekad nodes that know nobody: telekad can only learn them from the plain
    // peer.
    let mut others = Vec::new();
    for i in 0..5 {
        let mut nc = NodeConfig::new(node_addr(1000 + i, 0));
        nc.loopback_only = true;
        nc.seed = Some(100 + i as u64);
        others.push(Node::start(nc).await.expect("start"));
    }
    let offer: Vec<SocketAddr> = others.iter().map(|n| n.local_addr()).collect();
    let plain = PlainPeer::start("127.201.0.1:0".parse().unwrap(), 9, offer.clone()).await;

    let mut nc = NodeConfig::new(node_addr(2000, 0));
    nc.loopback_only = true;
    nc.seed = Some(42);
    nc.bootstrap = vec![plain.addr()];
    let node = Node::start(nc).await.expect("start");
    let tk = node.local_addr();

    let want: HashSet<SocketAddr> = offer.iter().copied().collect();
    let end = Instant::now() + Duration::from_secs(20);
    let mut have: HashSet<SocketAddr>;
    loop {
        let s = node.status().await.unwrap();
        have = s.contacts.iter().map(|c| c.addr()).collect();
        if have.is_superset(&want) || Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        have.is_superset(&want),
        "telekad learned {have:?}, the plain peer offered {want:?}"
    );
    for a in &have {
        assert!(
            want.contains(a) || *a == plain.addr(),
            "{a} came from nowhere"
        );
    }

    // telekad asked first, with PleaseSendPeers.
    let first = plain.with(|g| g.log.iter().find(|r| r.from == tk).cloned());
    let first = first.expect("telekad contacted the plain peer");
    assert!(first.get("PleaseSendPeers").is_some(), "{:?}", first.msgs);
    assert!(plain.with(|g| g.answered) >= 1);
    // The plain peer gave telekad a cookie in its first answer; from then on telekad returns
    // it. Wait for one more bootstrap round so later packets exist to check.
    let asks = plain.with(|g| g.log.iter().filter(|r| r.from == tk).count());
    assert!(
        plain
            .wait(Duration::from_secs(10), |g| g
                .log
                .iter()
                .filter(|r| r.from == tk)
                .count()
                > asks)
            .await,
        "telekad sent nothing more to its bootstrap node"
    );
    let carrying = plain.check_cookie_returned(tk);
    assert!(
        carrying >= 1,
        "telekad never returned the plain peer's cookie"
    );
    let total = plain.with(|g| g.log.iter().filter(|r| r.from == tk).count());
    println!(
        "(b) telekad learned {} contacts; {total} packets to the plain peer, the last {carrying} returning its cookie",
        have.len()
    );
    assert!(
        plain.with(|g| g.verified.contains(&tk.ip())),
        "telekad proved itself to the plain peer"
    );
    node.shutdown().await.unwrap();
    for n in &others {
        n.shutdown().await.unwrap();
    }
}
