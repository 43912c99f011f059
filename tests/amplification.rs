//! Anti-amplification, sans-IO: to a source that has not returned our cookie, every reply is at
//! most twice the request on the wire (payload + 28), per datagram and summed per source; a
//! source that returns the cookie gets the full answer.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use telekad::config::Config;
use telekad::engine::{amplification_limit, Engine};
use telekad::sim::node_addr;
use telekad::time::Time;

/// IPv4 + UDP header bytes counted on every datagram.
const HEADER: usize = 28;

fn wire(payload: usize) -> usize {
    payload + HEADER
}

/// A datagram in flight: (arrival, sequence, receiver index, source, payload).
type InFlight = Reverse<(Time, u64, usize, SocketAddr, Vec<u8>)>;

/// A tiny event-driven network of real engines with a fixed one-way delay. Datagrams to
/// addresses outside the network are recorded instead of delivered.
struct Net {
    engines: Vec<Engine>,
    index: HashMap<SocketAddr, usize>,
    now: Time,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    delay: Duration,
    /// Datagrams sent to addresses outside the network: (sender index, dst, payload).
    outside: Vec<(usize, SocketAddr, Vec<u8>)>,
}

impl Net {
    fn new(n: usize, seed: u64) -> Net {
        let mut rng = StdRng::seed_from_u64(seed);
        let engines: Vec<Engine> = (0..n)
            .map(|i| {
                Engine::new(
                    Config::default(),
                    node_addr(i, 24254),
                    rng.random(),
                    Time::ZERO,
                )
            })
            .collect();
        let index = engines
            .iter()
            .enumerate()
            .map(|(i, e)| (e.local_addr(), i))
            .collect();
        Net {
            engines,
            index,
            now: Time::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            delay: Duration::from_millis(3),
            outside: Vec::new(),
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.engines[i].poll_transmit() {
            match self.index.get(&t.dst) {
                Some(&to) => {
                    self.seq += 1;
                    let src = self.engines[i].local_addr();
                    self.queue.push(Reverse((
                        self.now + self.delay,
                        self.seq,
                        to,
                        src,
                        t.payload,
                    )));
                }
                None => self.outside.push((i, t.dst, t.payload)),
            }
        }
        while self.engines[i].poll_event().is_some() {}
    }

    fn bootstrap(&mut self, i: usize, from: usize) {
        let a = self.engines[from].local_addr();
        let now = self.now;
        self.engines[i].bootstrap(now, &[a]);
        self.flush(i);
    }

    /// A datagram from outside the network into engine `i`, handled now.
    fn inject(&mut self, i: usize, src: SocketAddr, payload: &[u8]) {
        let now = self.now;
        self.engines[i].handle_packet(now, src, payload);
        self.flush(i);
    }

    fn run_until(&mut self, t: Time) {
        loop {
            let next_msg = self.queue.peek().map(|Reverse((at, ..))| *at);
            let next_timer = self
                .engines
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.poll_timeout().map(|w| (w, i)))
                .min();
            let msg_first = match (next_msg, next_timer) {
                (Some(m), Some((w, _))) => m <= w,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if msg_first {
                let at = next_msg.unwrap();
                if at > t {
                    break;
                }
                let Reverse((at, _, to, src, payload)) = self.queue.pop().unwrap();
                self.now = self.now.max(at);
                let now = self.now;
                self.engines[to].handle_packet(now, src, &payload);
                self.flush(to);
            } else {
                let (w, i) = next_timer.unwrap();
                if w > t {
                    break;
                }
                self.now = self.now.max(w);
                let now = self.now;
                self.engines[i].handle_timeout(now);
                self.flush(i);
            }
        }
        self.now = self.now.max(t);
    }

    fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }
}

/// A network of `n` engines that joined through node 1; node 0 (the one under test) joins
/// last, so its table is filled from real `Peers` answers.
fn filled_net(n: usize) -> Net {
    let mut net = Net::new(n, 2024);
    for i in 2..n {
        net.bootstrap(i, 1);
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_secs(20));
    net.bootstrap(0, 1);
    net.run_for(Duration::from_secs(40));
    net
}

fn parse(payload: &[u8]) -> Vec<(String, Value)> {
    let items: Vec<Value> = serde_json::from_slice(payload).expect("telekad sends JSON arrays");
    items
        .into_iter()
        .map(|v| match v {
            Value::Object(m) if m.len() == 1 => m.into_iter().next().unwrap(),
            other => panic!("element is not a one-key object: {other}"),
        })
        .collect()
}

fn find<'a>(msgs: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    msgs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn peers_of(body: &Value) -> Vec<String> {
    body["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .map(|v| v.as_str().expect("address string").to_string())
        .collect()
}

fn hex64(rng: &mut StdRng) -> String {
    let b: [u8; 32] = rng.random();
    hex::encode(b)
}

fn el(name: &str, body: &str) -> String {
    format!("{{\"{name}\":{body}}}")
}

fn arr(elements: &[String]) -> Vec<u8> {
    format!("[{}]", elements.join(",")).into_bytes()
}

fn padding(len: usize) -> String {
    el("Padding", &format!("{{\"p\":\"{}\"}}", "0".repeat(len)))
}

/// Every request element an unverified source can send, in several shapes and sizes.
fn request_elements(rng: &mut StdRng) -> Vec<String> {
    vec![
        el("PleaseSendPeers", "{}"),
        el("PleaseSendPeers", "{\"extra\":[1,2,3]}"),
        el(
            "WhereAreThey",
            &format!("{{\"target\":\"{}\"}}", hex64(rng)),
        ),
        el(
            "WhereAreThey",
            &format!("{{\"ed25519h\":\"{}\"}}", hex64(rng)),
        ),
        el("PleaseReturnThisMessage", "{\"cookie\":\"x\"}"),
        el(
            "PleaseReturnThisMessage",
            &format!("{{\"cookie\":\"{}\"}}", "r".repeat(230)),
        ),
        el("PleaseReturnThisMessage", "[\"any\",{\"valid\":\"JSON\"}]"),
        el("PleaseListSupportedMessages", "{}"),
        el(
            "PleaseSendContent",
            &format!("{{\"id\":\"{}\",\"offset\":0,\"length\":4096}}", hex64(rng)),
        ),
        el(
            "PleaseSendContent",
            &format!("{{\"id\":\"{}\"}}", hex64(rng)),
        ),
    ]
}

/// Housekeeping an attacker may add: its own cookie (echoed back to it), a wrong cookie.
fn extra_elements() -> Vec<String> {
    vec![
        el("PleaseAlwaysReturnThisMessage", "{\"cookie\":\"b941170a\"}"),
        el(
            "PleaseAlwaysReturnThisMessage",
            &format!("{{\"cookie\":\"{}\"}}", "c".repeat(240)),
        ),
        el("AlwaysReturned", "{\"cookie\":\"0123456789abcdef\"}"),
        el("AlwaysReturned", "{\"cookie\":\"nope\"}"),
        el("ChatMessage", "{\"message\":\"hi\"}"),
        el("NoSuchMessage", "{}"),
    ]
}

#[derive(Default)]
struct Ledger {
    /// Per source: request wire bytes, reply wire bytes.
    per_source: BTreeMap<SocketAddr, (usize, usize)>,
    max_ratio: f64,
    max_ratio_request: String,
    requests: usize,
    answered: usize,
    with_peers: usize,
}

impl Ledger {
    /// Sends `payload` from `src` to node 0 and checks the replies it provokes at once.
    fn probe(&mut self, net: &mut Net, src: SocketAddr, payload: &[u8]) -> Vec<Vec<u8>> {
        assert!(src.ip().is_loopback());
        let before = net.outside.len();
        net.inject(0, src, payload);
        let replies: Vec<Vec<u8>> = net.outside[before..]
            .iter()
            .filter(|(from, dst, _)| *from == 0 && *dst == src)
            .map(|(_, _, p)| p.clone())
            .collect();
        let req = wire(payload.len());
        let total: usize = replies.iter().map(|r| wire(r.len())).sum();
        for r in &replies {
            assert!(
                wire(r.len()) <= 2 * req,
                "reply of {} wire bytes to a {req}-byte request: {}\nreply: {}",
                wire(r.len()),
                String::from_utf8_lossy(&payload[..payload.len().min(300)]),
                String::from_utf8_lossy(r)
            );
            assert!(r.len() <= amplification_limit(payload.len()));
            if find(&parse(r), "Peers").is_some() {
                self.with_peers += 1;
            }
        }
        assert!(
            total <= 2 * req,
            "replies sum to {total} wire bytes for a {req}-byte request"
        );
        let ratio = total as f64 / req as f64;
        if ratio > self.max_ratio {
            self.max_ratio = ratio;
            self.max_ratio_request =
                String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned();
        }
        self.requests += 1;
        self.answered += usize::from(!replies.is_empty());
        let e = self.per_source.entry(src).or_default();
        e.0 += req;
        replies
    }
}

fn attacker(i: usize) -> SocketAddr {
    // 127.250.x.y: inside loopback, outside every network node's /24.
    SocketAddr::from(([127, 250, (i / 250) as u8, 1 + (i % 250) as u8], 40_000))
}

#[test]
fn unverified_replies_stay_within_twice_the_request() {
    let mut net = filled_net(160);
    let table = net.engines[0].table().len();
    println!("node under test holds {table} contacts");
    assert!(table >= 40, "table too small for the test: {table}");
    let mut rng = StdRng::seed_from_u64(77);
    let mut ledger = Ledger::default();
    let reqs = request_elements(&mut rng);
    let extras = extra_elements();
    let pads = [0usize, 1, 50, 200, 640, 1500, 4000, 20_000, 65_000];
    let mut next_src = 0;

    // Each request alone, with and without padding, each from a fresh source.
    for r in &reqs {
        for &p in &pads {
            let mut e = vec![r.clone()];
            if p > 0 {
                e.push(padding(p));
            }
            let src = attacker(next_src);
            next_src += 1;
            let replies = ledger.probe(&mut net, src, &arr(&e));
            assert_eq!(replies.len(), 1, "every request gets exactly one reply");
        }
    }
    // Every request type together, and with each housekeeping extra.
    let all: Vec<String> = reqs.clone();
    for x in std::iter::once(None).chain(extras.iter().map(Some)) {
        let mut e = all.clone();
        if let Some(x) = x {
            e.push(x.clone());
        }
        let src = attacker(next_src);
        next_src += 1;
        ledger.probe(&mut net, src, &arr(&e));
    }
    // Many echo requests in one packet (past the per-datagram message limit).
    for n in [2usize, 10, 63, 64, 65, 200] {
        let e: Vec<String> = (0..n)
            .map(|i| {
                el(
                    "PleaseReturnThisMessage",
                    &format!("{{\"cookie\":\"{i}.{}\"}}", "z".repeat(i % 200)),
                )
            })
            .collect();
        let src = attacker(next_src);
        next_src += 1;
        ledger.probe(&mut net, src, &arr(&e));
    }
    // Tiny requests with the attacker's large cookie, which telekad echoes.
    for r in &reqs {
        let src = attacker(next_src);
        next_src += 1;
        ledger.probe(&mut net, src, &arr(&[r.clone(), extras[1].clone()]));
    }
    // A padded first contact (as telekad itself sends) gets the full 20 peers even
    // unverified: the limit does not starve honest newcomers.
    let src = attacker(next_src);
    next_src += 1;
    let honest = arr(&[
        el("PleaseSendPeers", "{}"),
        el(
            "PleaseReturnThisMessage",
            "{\"cookie\":\"tk.0123456789abcdef\"}",
        ),
        padding(480),
    ]);
    let r = ledger.probe(&mut net, src, &honest);
    let msgs = parse(&r[0]);
    assert_eq!(
        peers_of(find(&msgs, "Peers").expect("Peers in reply")).len(),
        20,
        "a {}-byte padded first contact gets 20 peers",
        honest.len()
    );

    // Random combinations, repeated from a small set of sources, interleaved with network
    // time so pings and timers run too.
    let fixed_sources = next_src;
    for round in 0..3000 {
        let k = rng.random_range(1..5usize);
        let mut e: Vec<String> = (0..k)
            .map(|_| reqs[rng.random_range(0..reqs.len())].clone())
            .collect();
        if rng.random_range(0..3u8) == 0 {
            e.push(extras[rng.random_range(0..extras.len())].clone());
        }
        if rng.random_range(0..2u8) == 0 {
            e.push(padding(rng.random_range(0..3000usize)));
        }
        // Shuffle so the request is not always first.
        for i in (1..e.len()).rev() {
            let j = rng.random_range(0..=i);
            e.swap(i, j);
        }
        let src = attacker(fixed_sources + rng.random_range(0..40usize));
        ledger.probe(&mut net, src, &arr(&e));
        if round % 50 == 0 {
            net.run_for(Duration::from_millis(rng.random_range(1..500u64)));
        }
    }
    // Let every timer run out: nothing sent later may break the per-source budget.
    net.run_for(Duration::from_secs(60));

    for (_, dst, p) in net.outside.iter().filter(|(from, ..)| *from == 0) {
        if let Some(e) = ledger.per_source.get_mut(dst) {
            e.1 += wire(p.len());
        }
    }
    let mut worst = 0.0f64;
    for (src, (req, rep)) in &ledger.per_source {
        assert!(
            *rep <= 2 * *req,
            "{src} sent {req} wire bytes and got {rep} back"
        );
        worst = worst.max(*rep as f64 / *req as f64);
    }
    // Nothing reached any address that is not a network node or an attacker.
    for (_, dst, _) in &net.outside {
        assert!(
            ledger.per_source.contains_key(dst),
            "unexpected send to {dst}"
        );
    }
    assert_eq!(
        ledger.answered, ledger.requests,
        "every request got some reply"
    );
    assert!(ledger.with_peers > 0);
    println!(
        "{} requests from {} sources; max reply/request wire ratio per datagram {:.3} (request: {}); max per source {:.3}; stats: trimmed {}",
        ledger.requests,
        ledger.per_source.len(),
        ledger.max_ratio,
        ledger.max_ratio_request,
        worst,
        net.engines[0].stats().replies_trimmed
    );
    assert!(ledger.max_ratio <= 2.0);
    assert!(net.engines[0].stats().replies_trimmed > 0);
}

/// The cookie telekad hands `src` in a reply to a tiny request.
fn cookie_from_first_reply(net: &mut Net, src: SocketAddr) -> Value {
    let mut ledger = Ledger::default();
    let r = ledger.probe(net, src, &arr(&[el("PleaseSendPeers", "{}")]));
    let msgs = parse(&r[0]);
    find(&msgs, "PleaseAlwaysReturnThisMessage")
        .expect("an unverified source is given a cookie")
        .clone()
}

fn verified_reply(net: &mut Net, src: SocketAddr, cookie: &Value, request: &str) -> Vec<u8> {
    let payload = arr(&[
        request.to_string(),
        el("AlwaysReturned", &cookie.to_string()),
    ]);
    let before = net.outside.len();
    net.inject(0, src, &payload);
    let replies: Vec<Vec<u8>> = net.outside[before..]
        .iter()
        .filter(|(from, dst, _)| *from == 0 && *dst == src)
        .map(|(_, _, p)| p.clone())
        .collect();
    assert_eq!(replies.len(), 1, "one reply to {request}");
    let r = replies.into_iter().next().unwrap();
    assert!(
        find(&parse(&r), "PleaseAlwaysReturnThisMessage").is_none(),
        "a verified source is not asked again for the cookie"
    );
    println!(
        "verified {}: {} -> {} bytes",
        request.split('"').nth(1).unwrap_or("?"),
        payload.len(),
        r.len()
    );
    r
}

#[test]
fn verified_source_gets_the_full_answer() {
    let mut net = filled_net(120);
    let table = net.engines[0].table().len();
    assert!(table > 20, "table too small: {table}");
    let mut rng = StdRng::seed_from_u64(5);
    let src = attacker(0);
    let cookie = cookie_from_first_reply(&mut net, src);
    assert!(cookie.get("cookie").and_then(Value::as_str).is_some());

    let r = verified_reply(&mut net, src, &cookie, &el("PleaseSendPeers", "{}"));
    let msgs = parse(&r);
    let peers = peers_of(find(&msgs, "Peers").expect("Peers"));
    assert_eq!(peers.len(), 20, "full answer: 20 peers");
    let payload_len = arr(&[
        el("PleaseSendPeers", "{}"),
        el("AlwaysReturned", &cookie.to_string()),
    ])
    .len();
    assert!(
        r.len() > amplification_limit(payload_len),
        "the full answer is bigger than an unverified source could get"
    );

    for field in ["target", "ed25519h"] {
        let target = hex64(&mut rng);
        let req = el("WhereAreThey", &format!("{{\"{field}\":\"{target}\"}}"));
        let r = verified_reply(&mut net, src, &cookie, &req);
        let msgs = parse(&r);
        let body = find(&msgs, "Peers").expect("Peers answers WhereAreThey");
        assert_eq!(peers_of(body).len(), 20, "WhereAreThey({field}): 20 peers");
        assert_eq!(body["target"].as_str(), Some(target.as_str()));
    }

    // The cookie covers every port of the source IP, as in the reference node.
    let other_port = SocketAddr::new(src.ip(), src.port() + 1);
    let r = verified_reply(&mut net, other_port, &cookie, &el("PleaseSendPeers", "{}"));
    assert_eq!(
        peers_of(find(&parse(&r), "Peers").expect("Peers")).len(),
        20
    );
}

/// design.md: `PleaseSendContent` for content a node does not hold is answered with
/// `MaybeTheyHaveSome{id, peers}` (holders it knows, then the contacts closest to `id`).
#[test]
fn verified_content_request_is_pointed_at_closest_contacts() {
    let mut net = filled_net(120);
    let mut rng = StdRng::seed_from_u64(6);
    let src = attacker(1);
    let cookie = cookie_from_first_reply(&mut net, src);
    let id = hex64(&mut rng);
    let req = el(
        "PleaseSendContent",
        &format!("{{\"id\":\"{id}\",\"offset\":0,\"length\":4096}}"),
    );
    let r = verified_reply(&mut net, src, &cookie, &req);
    let msgs = parse(&r);
    let body = find(&msgs, "MaybeTheyHaveSome").unwrap_or_else(|| {
        panic!(
            "no MaybeTheyHaveSome for unknown content: {}",
            String::from_utf8_lossy(&r)
        )
    });
    assert_eq!(body["id"].as_str(), Some(id.as_str()));
    assert_eq!(peers_of(body).len(), 20);
}
