//! Hostile and malformed input: random, truncated, mutated, oversized datagrams and every
//! cjp2p message name leave a node running and answering, and are counted, never propagated.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use telekad::config::Config;
use telekad::driver::{Node, NodeConfig};
use telekad::engine::Engine;
use telekad::sim::node_addr;
use telekad::stats::Stats;
use telekad::time::Time;
use tokio::net::UdpSocket;

const MAX_UDP: usize = 65_507;

fn hex64(rng: &mut StdRng) -> String {
    let b: [u8; 32] = rng.random();
    hex::encode(b)
}

/// A variety of well-formed packets, as cjp2p and telekad nodes send them.
fn valid_packets(rng: &mut StdRng) -> Vec<String> {
    let (h1, h2, h3) = (hex64(rng), hex64(rng), hex64(rng));
    vec![
        r#"[{"PleaseSendPeers":{}}]"#.to_string(),
        r#"[{"PleaseSendPeers":{}},{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}}]"#
            .to_string(),
        r#"[{"Peers":{"peers":["127.9.9.1:24254","[::1]:24254","127.9.9.2:1"]}},{"AlwaysReturned":{"cookie":"0011223344556677"}}]"#.to_string(),
        format!(r#"[{{"WhereAreThey":{{"target":"{h1}"}}}},{{"PleaseReturnThisMessage":{{"cookie":"3.108813345"}}}}]"#),
        format!(r#"[{{"WhereAreThey":{{"ed25519h":"{h2}"}}}}]"#),
        r#"[{"ReturnedMessage":{"cookie":"tk.0123456789abcdef"}},{"YourAddressIs":{"addr":"127.0.0.1:24254"}}]"#.to_string(),
        format!(r#"[{{"PleaseSendContent":{{"id":"{h3}","offset":0,"length":4096}}}}]"#),
        format!(r#"[{{"Content":{{"id":"{h3}","offset":0,"base64":"aGk=","eof":2}}}}]"#),
        format!(r#"[{{"MaybeTheyHaveSome":{{"id":"{h1}","peers":["127.8.8.8:5"]}}}}]"#),
        r#"[{"PleaseListSupportedMessages":{}},{"SupportedMessages":{"schema":{"messages":["A"]}}}]"#.to_string(),
        format!(r#"[{{"Peers":{{"peers":["127.1.1.1:2"],"target":"{h2}"}}}},{{"Padding":{{"p":"0000"}}}}]"#),
        r#"[{"ChatMessage":{"message":"hi"}},{"MyPublicKey":{"ed25519h":"00"}}]"#.to_string(),
    ]
}

/// Every other message name wire-notes.md lists, with plausible bodies.
fn cjp2p_messages(rng: &mut StdRng) -> Vec<(&'static str, String)> {
    let h = hex64(rng);
    vec![
        ("MyPublicKey", format!(r#"{{"ed25519h":"{h}"}}"#)),
        (
            "SignedMessage",
            format!(r#"{{"message":[{{"ChatMessage":{{"message":"x"}}}}],"signature":"{h}","ed25519h":"{h}"}}"#),
        ),
        ("ChatMessage", r#"{"message":"hi"}"#.to_string()),
        ("PleaseListSupportedMessages", "{}".to_string()),
        (
            "SupportedMessages",
            r#"{"schema":{"$schema":"http://json-schema.org/draft-07/schema#","oneOf":[{"type":"object"}]}}"#
                .to_string(),
        ),
        ("GroupChatMessage", r#"{"group":"g","message":"hello"}"#.to_string()),
        ("EncryptedMessages", r#"{"nonce":"aa","ciphertext":"bb"}"#.to_string()),
        ("FastEncryptedMessages", r#"{"c":"zz"}"#.to_string()),
        ("Forward", r#"{"to":"127.1.2.3:4","message":[1,2]}"#.to_string()),
        ("Forwarded", r#"{"from":"127.1.2.3:4","message":{}}"#.to_string()),
        ("GetLatest", format!(r#"{{"ed25519h":"{h}"}}"#)),
        ("Latest", format!(r#"{{"id":"{h}","ts":17}}"#)),
        ("ContentList", format!(r#"{{"ids":["{h}"]}}"#)),
    ]
}

/// Names no cjp2p node defines.
const UNKNOWN_NAMES: &[&str] = &[
    "FooBar",
    "PleaseDoSomethingNew",
    "peers",
    "pleasesendpeers",
    "",
    "Peers ",
    "\u{1F600}",
    "WhereAreThey2",
];

/// Known names with a body of the wrong shape, and elements that are not one-key objects.
const MALFORMED: &[&str] = &[
    r#"{"PleaseSendPeers":5}"#,
    r#"{"PleaseSendPeers":"x"}"#,
    r#"{"WhereAreThey":{"target":"zz"}}"#,
    r#"{"WhereAreThey":{}}"#,
    r#"{"Peers":{"peers":"127.0.0.1:1"}}"#,
    r#"{"Peers":{}}"#,
    r#"{"PleaseSendContent":{}}"#,
    r#"{"PleaseSendContent":{"id":"../etc/passwd"}}"#,
    r#"{"YourAddressIs":{"addr":"nope"}}"#,
    r#"{"Content":{"id":"00","offset":0,"base64":"!!","eof":1}}"#,
    r#"{"PleaseSendPeers":{},"Peers":{"peers":[]}}"#,
    r#"{}"#,
    r#"5"#,
    r#""PleaseSendPeers""#,
    r#"[]"#,
    r#"null"#,
];

fn is_json_array(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && serde_json::from_slice::<Vec<Value>>(bytes).is_ok()
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random::<u8>()).collect()
}

fn bit_flips(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    let flips = rng.random_range(1..6usize);
    for _ in 0..flips {
        let i = rng.random_range(0..v.len());
        v[i] ^= 1 << rng.random_range(0..8u32);
    }
    v
}

/// A JSON array of exactly `len` bytes made of copies of `element` (then padded inside a
/// last string element). Returns the bytes and the number of elements.
fn big_array(element: &str, len: usize) -> (Vec<u8>, usize) {
    let filler = r#""""#.len() + 1; // room for `,""`
    let mut s = String::from("[");
    let mut n = 0;
    while s.len() + element.len() + 1 + filler + 2 < len {
        if n > 0 {
            s.push(',');
        }
        s.push_str(element);
        n += 1;
    }
    // Pad with one string element to hit the exact length.
    s.push_str(",\"");
    let pad = len - s.len() - 2;
    s.push_str(&"p".repeat(pad));
    s.push_str("\"]");
    assert_eq!(s.len(), len);
    (s.into_bytes(), n + 1)
}

fn delta(after: &Stats, before: &Stats) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    m.insert("datagrams_in", after.datagrams_in - before.datagrams_in);
    m.insert(
        "dropped_not_array",
        after.dropped_not_array - before.dropped_not_array,
    );
    m.insert(
        "dropped_too_large",
        after.dropped_too_large - before.dropped_too_large,
    );
    m.insert("dropped_empty", after.dropped_empty - before.dropped_empty);
    m.insert(
        "skipped_unknown",
        after.skipped_unknown - before.skipped_unknown,
    );
    m.insert(
        "skipped_malformed",
        after.skipped_malformed - before.skipped_malformed,
    );
    m.insert(
        "skipped_excess",
        after.skipped_excess - before.skipped_excess,
    );
    m
}

struct Blaster {
    sock: UdpSocket,
    node: Node,
    sent: u64,
    marks: u64,
}

impl Blaster {
    /// Sends `batch` in chunks; after each chunk, a marker request whose answer proves the
    /// node has read everything before it (one socket, FIFO), so the socket buffer never
    /// overflows and every counter can be checked exactly even while other nodes talk to it.
    async fn send(&mut self, batch: &[Vec<u8>]) {
        let dst = self.node.local_addr();
        assert!(dst.ip().is_loopback());
        for chunk in batch.chunks(32) {
            for d in chunk {
                self.sock.send_to(d, dst).await.expect("send");
                self.sent += 1;
            }
            self.marks += 1;
            let mark = format!("mark-{}", self.marks);
            let req = format!(
                r#"[{{"PleaseReturnThisMessage":{{"cookie":"{mark}"}}}},{{"Padding":{{"p":"{}"}}}}]"#,
                "0".repeat(200)
            );
            self.sock.send_to(req.as_bytes(), dst).await.expect("send");
            let mut buf = vec![0u8; 65_536];
            let needle = format!(r#"{{"ReturnedMessage":{{"cookie":"{mark}"}}}}"#);
            loop {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("node stopped answering ({mark})"))
                        .expect("recv");
                assert_eq!(from, dst, "only the node talks to the junk socket");
                if String::from_utf8_lossy(&buf[..n]).contains(&needle) {
                    break;
                }
            }
        }
    }

    async fn stats(&self) -> Stats {
        self.node.status().await.expect("node still running").stats
    }
}

/// Asks `node` for peers from a fresh socket and returns the reply's messages.
async fn ask_peers(from: SocketAddr, node: SocketAddr) -> Vec<(String, Value)> {
    assert!(node.ip().is_loopback() && from.ip().is_loopback());
    let sock = UdpSocket::bind(from).await.expect("bind");
    let req = br#"[{"PleaseSendPeers":{}},{"PleaseReturnThisMessage":{"cookie":"probe"}},{"Padding":{"p":"0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}]"#;
    sock.send_to(req, node).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, src) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no reply to PleaseSendPeers")
        .expect("recv");
    assert_eq!(src, node);
    let items: Vec<Value> = serde_json::from_slice(&buf[..n]).expect("reply is a JSON array");
    items
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(m) if m.len() == 1 => m.into_iter().next(),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_over_loopback_leaves_the_node_answering() {
    let mut nc = NodeConfig::new(node_addr(3000, 0));
    nc.loopback_only = true;
    nc.seed = Some(3);
    let node = Node::start(nc).await.expect("start");
    // A few honest nodes, so the node has contacts to hand out.
    let mut friends = Vec::new();
    for i in 0..3 {
        let mut nc = NodeConfig::new(node_addr(3001 + i, 0));
        nc.loopback_only = true;
        nc.seed = Some(30 + i as u64);
        nc.bootstrap = vec![node.local_addr()];
        friends.push(Node::start(nc).await.expect("start"));
    }
    let end = Instant::now() + Duration::from_secs(10);
    while node.status().await.unwrap().contacts.len() < 3 {
        assert!(Instant::now() < end, "friends did not join");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_all = ask_peers("127.211.0.1:0".parse().unwrap(), node.local_addr()).await;
    assert!(before_all.iter().any(|(n, _)| n == "Peers"));

    let sock = UdpSocket::bind("127.210.0.1:0").await.expect("bind");
    let mut b = Blaster {
        sock,
        node: node.clone(),
        sent: 0,
        marks: 0,
    };
    let mut rng = StdRng::seed_from_u64(0xbad);
    let valid = valid_packets(&mut rng);
    let mut expect: HashMap<&'static str, u64> = HashMap::new();
    let s0 = b.stats().await;

    // 1. Random bytes that cannot start a JSON array (and empty datagrams).
    let mut batch = vec![Vec::new(), Vec::new()];
    while batch.len() < 2000 {
        let len = rng.random_range(1..1500usize);
        let mut d = random_bytes(&mut rng, len);
        if matches!(d[0], b'[' | b' ' | b'\t' | b'\n' | b'\r') {
            d[0] = b'x';
        }
        batch.push(d);
    }
    b.send(&batch).await;
    *expect.entry("dropped_not_array").or_default() += batch.len() as u64;

    // 2. Truncated valid packets: every strict prefix is incomplete JSON.
    let mut batch = Vec::new();
    for _ in 0..1000 {
        let p = valid[rng.random_range(0..valid.len())].as_bytes();
        batch.push(p[..rng.random_range(0..p.len())].to_vec());
    }
    b.send(&batch).await;
    *expect.entry("dropped_not_array").or_default() += batch.len() as u64;
    let s1 = b.stats().await;
    let d1 = delta(&s1, &s0);
    assert_eq!(d1["dropped_not_array"], expect["dropped_not_array"]);
    assert!(d1["datagrams_in"] >= 3000);

    // 3. Bit flips of valid packets: whatever they turned into, the node copes; those that
    //    are no longer JSON arrays are counted as such.
    let mut batch = Vec::new();
    for _ in 0..4000 {
        let p = valid[rng.random_range(0..valid.len())].as_bytes();
        batch.push(bit_flips(&mut rng, p));
    }
    let not_arrays = batch.iter().filter(|d| !is_json_array(d)).count() as u64;
    b.send(&batch).await;
    let s2 = b.stats().await;
    let d2 = delta(&s2, &s1);
    assert!(d2["datagrams_in"] >= 4000);
    assert_eq!(
        d2["dropped_not_array"], not_arrays,
        "bit-flipped datagrams that are not JSON arrays"
    );
    assert!(d2["skipped_unknown"] + d2["skipped_malformed"] > 0);

    // 4. Every cjp2p message name, one per datagram, 20 times each: understood (counted by
    //    name) and not choked on.
    let msgs = cjp2p_messages(&mut rng);
    let mut batch = Vec::new();
    for _ in 0..20 {
        for (name, body) in &msgs {
            batch.push(format!(r#"[{{"{name}":{body}}}]"#).into_bytes());
        }
    }
    b.send(&batch).await;
    let s3 = b.stats().await;
    for (name, _) in &msgs {
        let got = s3.messages_in.get(name).copied().unwrap_or(0)
            - s2.messages_in.get(name).copied().unwrap_or(0);
        assert_eq!(got, 20, "{name} received 20 times, counted {got}");
    }
    let d3 = delta(&s3, &s2);
    assert_eq!(d3["skipped_unknown"], 0, "{d3:?}");
    assert_eq!(d3["skipped_malformed"], 0, "{d3:?}");
    assert_eq!(d3["dropped_empty"], 0, "{d3:?}");

    // 5. Made-up names: skipped as unknown; a datagram of nothing else is empty.
    let mut batch = Vec::new();
    for _ in 0..25 {
        for name in UNKNOWN_NAMES {
            batch.push(serde_json::to_vec(&serde_json::json!([{ *name: {"a": 1} }])).unwrap());
        }
    }
    b.send(&batch).await;
    let s4 = b.stats().await;
    let d4 = delta(&s4, &s3);
    assert_eq!(d4["skipped_unknown"], batch.len() as u64, "{d4:?}");
    assert_eq!(d4["dropped_empty"], batch.len() as u64, "{d4:?}");

    // 6. Malformed elements of known names: skipped as malformed.
    let mut batch = Vec::new();
    for _ in 0..25 {
        for m in MALFORMED {
            batch.push(format!("[{m}]").into_bytes());
        }
    }
    b.send(&batch).await;
    let s5 = b.stats().await;
    let d5 = delta(&s5, &s4);
    assert_eq!(d5["skipped_malformed"], batch.len() as u64, "{d5:?}");
    assert_eq!(d5["dropped_empty"], batch.len() as u64, "{d5:?}");

    // 7. Everything in one packet together with a real request: the rest is skipped, the
    //    request is answered.
    let mut elements: Vec<String> = msgs
        .iter()
        .map(|(n, body)| format!(r#"{{"{n}":{body}}}"#))
        .collect();
    elements.extend(
        UNKNOWN_NAMES
            .iter()
            .map(|n| serde_json::json!({ *n: {} }).to_string()),
    );
    elements.extend(MALFORMED.iter().map(|s| s.to_string()));
    elements.push(r#"{"PleaseReturnThisMessage":{"cookie":"mixed-ok"}}"#.to_string());
    assert!(elements.len() <= 64);
    let mixed = format!("[{}]", elements.join(",")).into_bytes();
    let probe = UdpSocket::bind("127.212.0.1:0").await.unwrap();
    probe.send_to(&mixed, node.local_addr()).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), probe.recv_from(&mut buf))
        .await
        .expect("the request inside a packet of junk is answered")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.contains("mixed-ok"), "{reply}");
    let s6 = b.stats().await;
    let d6 = delta(&s6, &s5);
    assert_eq!(d6["skipped_unknown"], UNKNOWN_NAMES.len() as u64);
    assert_eq!(d6["skipped_malformed"], MALFORMED.len() as u64);

    // 8. The largest datagrams UDP/IPv4 carries: 65,507-byte arrays far past the
    //    per-datagram message limit, a deep nesting bomb, a huge non-JSON blob.
    let (unknowns, n_unknown) = big_array(r#"{"X":{}}"#, MAX_UDP);
    let (ints, _) = big_array("1", MAX_UDP);
    let (peers_reqs, n_peers) = big_array(r#"{"PleaseSendPeers":{}}"#, MAX_UDP);
    let nest = {
        let mut s = "[".repeat(MAX_UDP / 2);
        s.push_str(&"]".repeat(MAX_UDP / 2));
        s.into_bytes()
    };
    let mut blob = random_bytes(&mut rng, MAX_UDP);
    blob[0] = b'x';
    for d in [&unknowns, &ints, &peers_reqs, &nest, &blob] {
        assert!(d.len() >= MAX_UDP - 1 && d.len() <= MAX_UDP);
        b.send(std::slice::from_ref(d)).await;
    }
    let s7 = b.stats().await;
    let d7 = delta(&s7, &s6);
    assert!(d7["datagrams_in"] >= 5);
    // 64 elements looked at per datagram; the rest are excess.
    assert_eq!(
        d7["skipped_excess"],
        (n_unknown - 64) as u64
            + (ints.iter().filter(|c| **c == b',').count() + 1 - 64) as u64
            + (n_peers - 64) as u64,
        "{d7:?}"
    );
    assert_eq!(d7["skipped_unknown"], 64, "{d7:?}");
    // The ints, and the nesting bomb: a valid (32,753 deep) JSON array whose one element is
    // not a message.
    assert_eq!(d7["skipped_malformed"], 64 + 1, "{d7:?}");
    assert_eq!(d7["dropped_empty"], 3, "{d7:?}");
    assert_eq!(d7["dropped_not_array"], 1, "the blob: {d7:?}");
    // Larger than UDP/IPv4 can carry: the kernel refuses it, so nothing arrives.
    let too_big = vec![b'['; MAX_UDP + 1];
    assert!(b.sock.send_to(&too_big, node.local_addr()).await.is_err());

    let total = b.stats().await;
    println!(
        "sent {} junk datagrams; node counted: not_array {}, too_large {}, empty {}, unknown {}, malformed {}, excess {}, bad_addresses {}, cookie_invalid {}, unsolicited {}",
        b.sent,
        total.dropped_not_array,
        total.dropped_too_large,
        total.dropped_empty,
        total.skipped_unknown,
        total.skipped_malformed,
        total.skipped_excess,
        total.bad_addresses,
        total.cookie_invalid,
        total.unsolicited
    );
    assert!(
        total.datagrams_in >= b.sent + b.marks + 2,
        "blasted + markers + probes"
    );

    // Still running and answering normally, with its contacts.
    let after = ask_peers("127.213.0.1:0".parse().unwrap(), node.local_addr()).await;
    let peers = after
        .iter()
        .find(|(n, _)| n == "Peers")
        .map(|(_, v)| v["peers"].as_array().unwrap().len())
        .expect("Peers after the junk");
    assert!(peers >= 1);
    assert!(after
        .iter()
        .any(|(n, v)| n == "ReturnedMessage" && v["cookie"] == "probe"));
    assert_eq!(node.status().await.unwrap().contacts.len(), 3);
    node.shutdown().await.unwrap();
    for f in &friends {
        f.shutdown().await.unwrap();
    }
}

/// A source address drawn from a wide range of shapes, some of them absurd.
fn arbitrary_source(rng: &mut StdRng, pool: &[SocketAddr], own: SocketAddr) -> SocketAddr {
    match rng.random_range(0..20u8) {
        0 => own,
        1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        2 => SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(127, 7, rng.random(), 1).to_ipv6_mapped()),
            rng.random(),
        ),
        3 => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(rng.random::<u128>())),
            rng.random(),
        ),
        4 => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
            rng.random(),
        ),
        _ => pool[rng.random_range(0..pool.len())],
    }
}

fn peer_list(rng: &mut StdRng, pool: &[SocketAddr]) -> String {
    let n = rng.random_range(0..30usize);
    let items: Vec<String> = (0..n)
        .map(|_| match rng.random_range(0..6u8) {
            0 => "garbage".to_string(),
            1 => format!("[::1]:{}", rng.random::<u16>()),
            2 => format!("127.{}.{}.1:0", rng.random::<u8>(), rng.random::<u8>()),
            _ => pool[rng.random_range(0..pool.len())].to_string(),
        })
        .map(|s| format!("\"{s}\""))
        .collect();
    format!("[{}]", items.join(","))
}

/// What the fuzzer learned from the engine's output, so it can also speak to it correctly.
#[derive(Default)]
struct Harvest {
    /// Cookie the engine asked each address to return.
    cookies: HashMap<SocketAddr, String>,
    /// Nonces the engine asked each address to echo.
    nonces: HashMap<SocketAddr, Vec<String>>,
}

fn structured(
    rng: &mut StdRng,
    src: SocketAddr,
    pool: &[SocketAddr],
    valid: &[String],
    h: &Harvest,
) -> Vec<u8> {
    let mut els: Vec<String> = Vec::new();
    for _ in 0..rng.random_range(1..6u8) {
        let e = match rng.random_range(0..12u8) {
            0 => r#"{"PleaseSendPeers":{}}"#.to_string(),
            1 => format!(r#"{{"Peers":{{"peers":{}}}}}"#, peer_list(rng, pool)),
            2 => format!(
                r#"{{"Peers":{{"peers":{},"target":"{}"}}}}"#,
                peer_list(rng, pool),
                hex64(rng)
            ),
            3 => format!(r#"{{"WhereAreThey":{{"target":"{}"}}}}"#, hex64(rng)),
            4 => match h.cookies.get(&src) {
                Some(c) if rng.random_range(0..4u8) > 0 => {
                    format!(r#"{{"AlwaysReturned":{c}}}"#)
                }
                _ => format!(
                    r#"{{"AlwaysReturned":{{"cookie":"{:016x}"}}}}"#,
                    rng.random::<u64>()
                ),
            },
            5 => match h.nonces.get(&src).and_then(|v| v.last()) {
                Some(n) => format!(r#"{{"ReturnedMessage":{n}}}"#),
                None => format!(
                    r#"{{"ReturnedMessage":{{"cookie":"tk.{:016x}"}}}}"#,
                    rng.random::<u64>()
                ),
            },
            6 => format!(
                r#"{{"PleaseAlwaysReturnThisMessage":{{"cookie":"{}"}}}}"#,
                "k".repeat(rng.random_range(0..300usize))
            ),
            7 => format!(
                r#"{{"YourAddressIs":{{"addr":"{}"}}}}"#,
                pool[rng.random_range(0..pool.len())]
            ),
            8 => format!(
                r#"{{"PleaseReturnThisMessage":{{"cookie":"{}"}}}}"#,
                rng.random::<u32>()
            ),
            9 => format!(
                r#"{{"MaybeTheyHaveSome":{{"id":"{}","peers":{}}}}}"#,
                hex64(rng),
                peer_list(rng, pool)
            ),
            10 => format!(
                r#"{{"PleaseSendContent":{{"id":"{}","offset":{},"length":{}}}}}"#,
                hex64(rng),
                rng.random::<u64>(),
                rng.random::<u64>()
            ),
            _ => {
                let v = &valid[rng.random_range(0..valid.len())];
                v[1..v.len() - 1].to_string()
            }
        };
        els.push(e);
    }
    format!("[{}]", els.join(",")).into_bytes()
}

/// 100k arbitrary datagrams from arbitrary sources at arbitrary times into one engine: no
/// panic, bounded state, and it still answers.
#[test]
fn engine_survives_100k_arbitrary_datagrams() {
    let cfg = Config {
        max_requests_in_flight: 64,
        max_peer_book: 128,
        max_candidates: 64,
        max_pings_in_flight: 8,
        max_lookups: 8,
        ..Config::default()
    };
    let local = node_addr(0, 24254);
    let mut e = Engine::new(cfg.clone(), local, 99, Time::ZERO);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let pool: Vec<SocketAddr> = (1..400).map(|i| node_addr(i, 24254)).collect();
    let valid = valid_packets(&mut rng);
    let mut h = Harvest::default();
    let mut now = Time::ZERO;
    e.bootstrap(now, &pool[..5]);
    let mut too_large_sent = 0u64;
    let mut max_lookups_seen = 0;
    let mut outputs = 0u64;
    let mut sources_seen: HashSet<SocketAddr> = HashSet::new();

    for i in 0..100_000u32 {
        // Mostly forward in time, sometimes far, sometimes backwards.
        now = match rng.random_range(0..100u8) {
            0 => Time::from_micros(
                now.as_micros()
                    .saturating_sub(rng.random_range(0..5_000_000u64)),
            ),
            1 => now + Duration::from_secs(rng.random_range(60..7200u64)),
            2 => Time::from_micros(rng.random_range(0..u64::MAX / 2)),
            _ => now + Duration::from_micros(rng.random_range(0..20_000u64)),
        };
        let src = arbitrary_source(&mut rng, &pool, local);
        sources_seen.insert(src);
        let data: Vec<u8> = match rng.random_range(0..100u8) {
            0..=19 => {
                let len = rng.random_range(0..1500usize);
                random_bytes(&mut rng, len)
            }
            20..=34 => {
                let p = valid[rng.random_range(0..valid.len())].as_bytes();
                bit_flips(&mut rng, p)
            }
            35..=44 => {
                let p = valid[rng.random_range(0..valid.len())].as_bytes();
                p[..rng.random_range(0..p.len())].to_vec()
            }
            45 => {
                too_large_sent += 1;
                let mut v = vec![b' '; rng.random_range(MAX_UDP + 1..MAX_UDP + 5000)];
                v[0] = b'[';
                v[1] = b']';
                v
            }
            46 => big_array(r#"{"PleaseSendPeers":{}}"#, rng.random_range(2000..MAX_UDP)).0,
            _ => structured(&mut rng, src, &pool, &valid, &h),
        };
        e.handle_packet(now, src, &data);
        if i % 7 == 0 {
            let t = e.poll_timeout().expect("engine always wants a wake-up");
            let t = if rng.random_range(0..2u8) == 0 {
                t
            } else {
                now
            };
            e.handle_timeout(t);
        }
        while let Some(t) = e.poll_transmit() {
            outputs += 1;
            assert!(
                t.payload.len() <= MAX_UDP,
                "datagram of {} bytes",
                t.payload.len()
            );
            let items: Vec<Value> =
                serde_json::from_slice(&t.payload).expect("engine output is a JSON array");
            for it in items {
                let Value::Object(m) = it else {
                    panic!("element is not an object")
                };
                assert_eq!(m.len(), 1);
                let (name, body) = m.into_iter().next().unwrap();
                match name.as_str() {
                    "PleaseAlwaysReturnThisMessage" => {
                        h.cookies.insert(t.dst, body.to_string());
                    }
                    "PleaseReturnThisMessage" => {
                        let v = h.nonces.entry(t.dst).or_default();
                        v.push(body.to_string());
                        if v.len() > 4 {
                            v.remove(0);
                        }
                    }
                    _ => {}
                }
            }
        }
        while e.poll_event().is_some() {}
        assert!(
            e.requests_in_flight() <= cfg.max_requests_in_flight,
            "{} requests in flight",
            e.requests_in_flight()
        );
        assert!(
            e.peers_remembered() <= cfg.max_peer_book,
            "{} peers remembered",
            e.peers_remembered()
        );
        // Maintenance lookups are capped; one bootstrap lookup may run besides.
        assert!(
            e.lookups_running() <= cfg.max_lookups + 1,
            "{} lookups running",
            e.lookups_running()
        );
        max_lookups_seen = max_lookups_seen.max(e.lookups_running());
    }

    // The table respects k and the diversity caps.
    let tc = &cfg.table;
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    for c in e.table().contacts() {
        *per_ip.entry(c.addr().ip()).or_default() += 1;
    }
    assert!(per_ip.values().all(|n| *n <= tc.max_per_ip));
    for idx in 0..e.table().depth() {
        assert!(e.table().bucket(idx).len() <= tc.k);
    }

    let s = e.stats().clone();
    assert_eq!(s.datagrams_in, 100_000);
    assert_eq!(s.dropped_too_large, too_large_sent);
    assert!(s.dropped_not_array > 10_000, "{s:?}");
    assert!(s.skipped_unknown > 0 && s.skipped_malformed > 0 && s.skipped_excess > 0);
    println!(
        "100k datagrams from {} sources -> {outputs} out; table {}, requests {}, peers {}, max lookups {max_lookups_seen}; not_array {}, too_large {}, empty {}, unknown {}, malformed {}, excess {}, bad_addresses {}, cookie_invalid {}, unsolicited {}, answered {}",
        sources_seen.len(),
        e.table().len(),
        e.requests_in_flight(),
        e.peers_remembered(),
        s.dropped_not_array,
        s.dropped_too_large,
        s.dropped_empty,
        s.skipped_unknown,
        s.skipped_malformed,
        s.skipped_excess,
        s.bad_addresses,
        s.cookie_invalid,
        s.unsolicited,
        s.requests_answered,
    );

    // Still answers a plain request from a new source.
    let asker: SocketAddr = "127.222.0.1:5000".parse().unwrap();
    e.handle_packet(
        now,
        asker,
        br#"[{"PleaseSendPeers":{}},{"PleaseReturnThisMessage":{"cookie":"still-here"}}]"#,
    );
    let mut replied = false;
    while let Some(t) = e.poll_transmit() {
        if t.dst == asker {
            let text = String::from_utf8(t.payload).unwrap();
            assert!(text.contains("still-here"), "{text}");
            replied = true;
        }
    }
    assert!(replied, "engine no longer answers");
}

/// Found by `fuzz/` (engine_packets): a request "from" a multicast, broadcast, unspecified or
/// port-0 address was answered, so a spoofer could make a node send its cookie, a peer list
/// and a `YourAddressIs` to a whole multicast group (224.0.0.1 is every host on the link);
/// and an announcement from port 0 of an IP holding our cookie (cookies cover every port)
/// was recorded and listed to others as a holder nobody can reach. Nothing is sent to such
/// an address now, and no such holder is recorded.
#[test]
fn unroutable_sources_get_no_answer_and_record_nothing() {
    let local = node_addr(0, 24254);
    let mut e = Engine::new(Config::default(), local, 5, Time::ZERO);
    let now = Time::from_millis(10);
    let item = hex::encode([7u8; 32]);
    let request = format!(
        r#"[{{"PleaseSendPeers":{{}}}},{{"WhereAreThey":{{"target":"{item}"}}}},{{"WhoHasSome":{{"id":"{item}"}}}},{{"PleaseListSupportedMessages":{{}}}},{{"PleaseReturnThisMessage":{{"cookie":"x"}}}}]"#
    );
    for src in [
        "224.0.0.1:24254",
        "239.255.255.250:1900",
        "255.255.255.255:24254",
        "0.0.0.0:24254",
        "0.0.0.0:0",
        "127.5.5.5:0",
        "[::]:24254",
        "[ff02::1]:24254",
        "[::ffff:224.0.0.1]:24254",
    ] {
        let src: SocketAddr = src.parse().unwrap();
        e.handle_packet(now, src, request.as_bytes());
        while let Some(t) = e.poll_transmit() {
            assert!(
                telekad::addr::is_routable_peer(t.dst),
                "answered {src} with a datagram to {}",
                t.dst
            );
        }
    }
    // A real port of 127.5.5.5 gets an answer, and with it our cookie for that IP.
    let real: SocketAddr = "127.5.5.5:24254".parse().unwrap();
    e.handle_packet(now, real, br#"[{"PleaseSendPeers":{}}]"#);
    let reply = e.poll_transmit().expect("a real address is answered");
    assert_eq!(reply.dst, real);
    let items: Vec<Value> = serde_json::from_slice(&reply.payload).unwrap();
    let cookie = items[0]["PleaseAlwaysReturnThisMessage"].to_string();
    let announce = format!(r#"[{{"IHaveSome":{{"id":"{item}"}}}},{{"AlwaysReturned":{cookie}}}]"#);
    // The cookie is good for every port of the IP, port 0 too: still not recorded.
    e.handle_packet(now, "127.5.5.5:0".parse().unwrap(), announce.as_bytes());
    assert_eq!(e.records_held(), 0);
    assert_eq!(e.stats().announcements_refused, 1);
    e.handle_packet(now, real, announce.as_bytes());
    assert_eq!(e.records_held(), 1, "{:?}", e.stats());
}

/// Found by `fuzz/` (engine_packets): while a download was greeting a holder (asking for its
/// cookie before the first block), `poll_timeout` still named the download's stall time,
/// which `handle_timeout` does not act on while a greeting runs. Once that time had passed
/// (the walk ended early, or the driver slept), every wake-up was due at once: the driver
/// spun at full speed until the greeting ended.
#[test]
fn a_download_greeting_a_holder_does_not_make_the_driver_spin() {
    let mut e = Engine::new(Config::default(), node_addr(0, 24254), 9, Time::ZERO);
    let id = telekad::id::NodeId::hash(b"wanted");
    let holders = [node_addr(1, 24254), node_addr(2, 24254)];
    let sink = Box::new(telekad::engine::MemorySink::default());
    e.start_download(Time::ZERO, id, sink, None, &holders)
        .unwrap();
    while e.poll_transmit().is_some() {}
    // The driver was asleep (a suspended laptop) well past the stall time.
    let mut now = Time::from_millis(93_000);
    for _ in 0..20 {
        e.handle_timeout(now);
        while e.poll_transmit().is_some() {}
        let next = e.poll_timeout().expect("always a wake-up");
        assert!(
            next > now,
            "woken at {now:?}, asked to wake again at {next:?}"
        );
        now = next;
    }
}

/// Found by `fuzz/` (engine_packets): a download sized its per-block bookkeeping by the
/// first `eof` a holder named, so one `Content` with `"eof":18446744073709551615` from any
/// holder (any node the holder walk asked, too) made the downloading node allocate
/// petabytes and abort. A holder naming a length past the largest item a download takes
/// is dropped now, as one whose length contradicts the others'.
#[test]
fn a_holder_naming_an_absurd_length_is_dropped_not_believed() {
    let mut e = Engine::new(Config::default(), node_addr(0, 24254), 11, Time::ZERO);
    let holder = node_addr(1, 24254);
    let now = Time::from_millis(5);
    // The holder gave us its cookie, so it is asked for blocks at once.
    e.handle_packet(
        now,
        holder,
        br#"[{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}},{"ChatMessage":{}}]"#,
    );
    let id = telekad::id::NodeId::hash(b"wanted");
    let sink = Box::new(telekad::engine::MemorySink::default());
    e.start_download(now, id, sink, None, &[holder]).unwrap();
    let mut asked = false;
    while let Some(t) = e.poll_transmit() {
        asked |=
            t.dst == holder && String::from_utf8_lossy(&t.payload).contains("PleaseSendContent");
    }
    assert!(asked, "the holder was asked for a block");
    for eof in [u64::MAX, (1 << 34) + 1] {
        let block = format!(
            r#"[{{"Content":{{"id":"{}","offset":0,"base64":"aGk=","eof":{eof}}}}}]"#,
            id.to_hex()
        );
        e.handle_packet(now, holder, block.as_bytes());
    }
    assert_eq!(e.stats().bad_holders, 1);
    // Its only holder dropped, the download fails (as it would for a real item that long).
    let mut ended = None;
    while let Some(ev) = e.poll_event() {
        if let telekad::engine::Event::DownloadFinished { outcome, .. } = ev {
            ended = Some(outcome);
        }
    }
    assert_eq!(
        ended,
        Some(Err(telekad::engine::DownloadError::HoldersSilent {
            received: 0
        }))
    );
}
