//! Rate limits under a flood (`src/ratelimit.rs`, charged in `src/engine/incoming.rs`).
//!
//! Engine-level (virtual time, exact): one source gets at most burst + rate × t answers
//! while another is answered every time; answers to our own requests pass a source whose
//! budget is spent; the global budget caps many sources together; a verified download is
//! not held to the request rate.
//!
//! Real sockets (`flood_from_one_ip_leaves_others_answered_in_time`): a node on 127.0.0.1
//! is flooded from 127.0.0.2 at 100,000 requests/s for 3 s while six clients on 127.0.0.3
//! to 127.0.0.8 each make a verified request/response round trip every 5 ms. Their p50/p99
//! before and during the flood, the flood rate achieved and the drops counted are printed
//! (`cargo test --release --test flood -- --nocapture`). Loopback only.

use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::config::Config;
use telekad::driver::{Node, NodeConfig};
use telekad::engine::{Engine, Event};
use telekad::id::NodeId;
use telekad::ratelimit::RateLimitConfig;
use telekad::sim::node_addr;
use telekad::stats::Stats;
use telekad::time::Time;
use telekad::wire::{decode, encode_packet, Echo, Message};

const PEERS: &[u8] = br#"[{"PleaseSendPeers":{}}]"#;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Hands `pkt` from `src` to `e` at `now`; returns the datagrams `e` sends back to `src`
/// (everything else it sends is dropped).
fn ask(e: &mut Engine, now: Time, src: SocketAddr, pkt: &[u8]) -> Vec<Vec<u8>> {
    e.handle_packet(now, src, pkt);
    let mut back = Vec::new();
    while let Some(t) = e.poll_transmit() {
        if t.dst == src {
            back.push(t.payload);
        }
    }
    back
}

fn cookie_in(replies: &[Vec<u8>]) -> Option<Echo> {
    replies.iter().find_map(|r| {
        decode(r).ok()?.messages.into_iter().find_map(|m| match m {
            Message::PleaseAlwaysReturnThisMessage(c) => Some(c),
            _ => None,
        })
    })
}

#[test]
fn one_source_gets_burst_plus_rate_and_another_every_answer() {
    let cfg = Config::default();
    let (rate, burst) = (
        u64::from(cfg.rate_limit.per_ip.rate),
        u64::from(cfg.rate_limit.per_ip.burst),
    );
    let mut e = Engine::new(cfg, node_addr(1, 24254), 7, Time::ZERO);
    let flooder = addr("127.0.0.2:4000");
    let other = addr("127.0.0.3:4000");
    // 100,000 requests/s for 2 s from one source; one request every 10 ms from another.
    let (mut flood_sent, mut flood_answered, mut other_sent, mut other_answered) = (0, 0, 0, 0);
    let wall = Instant::now();
    for step in 0..200_000u64 {
        let now = Time::from_micros(step * 10);
        flood_sent += 1;
        flood_answered += ask(&mut e, now, flooder, PEERS).len() as u64;
        if step % 1000 == 0 {
            other_sent += 1;
            other_answered += ask(&mut e, now, other, PEERS).len() as u64;
        }
        if step % 10_000 == 0 {
            e.handle_timeout(now);
        }
    }
    let wall = wall.elapsed();
    // Over the 2 s the flooder's bucket gains 1,000 tokens on top of its burst of 1,000.
    let most = burst + rate * 2;
    println!(
        "flooder: {flood_sent} sent, {flood_answered} answered (most {most}); other: \
         {other_answered}/{other_sent}; limited (ip, global) {:?}; {:.0} ns of engine time \
         per datagram",
        (e.stats().rate_limited_ip, e.stats().rate_limited_global),
        wall.as_nanos() as f64 / (flood_sent + other_sent) as f64
    );
    assert!(flood_answered <= most, "{flood_answered} > {most}");
    assert!(
        flood_answered >= most - 2,
        "the budget is granted: {flood_answered}"
    );
    assert_eq!(other_answered, other_sent);
    assert_eq!(e.stats().rate_limited_ip, flood_sent - flood_answered);
    assert_eq!(e.stats().rate_limited_global, 0);
    // Dropped unread: the flood's datagrams were mostly not even decoded.
    let decoded = e
        .stats()
        .messages_in
        .get("PleaseSendPeers")
        .copied()
        .unwrap_or(0);
    assert!(
        decoded < (flood_answered + other_sent) * 2,
        "{decoded} PleaseSendPeers decoded"
    );
}

#[test]
fn answers_from_a_spent_source_still_count() {
    let a_addr = node_addr(1, 24254);
    let b_addr = node_addr(2, 24254);
    let mut a = Engine::new(Config::default(), a_addr, 1, Time::ZERO);
    let mut b = Engine::new(Config::default(), b_addr, 2, Time::ZERO);
    // B's IP (another port: a spoofer, or B itself misbehaving) spends its budget at A.
    let spoof = SocketAddr::new(b_addr.ip(), 9);
    let mut now = Time::from_millis(1);
    while !ask(&mut a, now, spoof, PEERS).is_empty() {}
    let limited = a.stats().rate_limited_ip;
    assert!(limited > 0);
    // A pings B; B answers (and asks A something back): A takes the answer.
    assert!(a.ping(now, b_addr));
    now = now + Duration::from_millis(1);
    let mut answered = false;
    while let Some(t) = a.poll_transmit() {
        assert_eq!(t.dst, b_addr);
        b.handle_packet(now, a_addr, &t.payload);
    }
    while let Some(t) = b.poll_transmit() {
        a.handle_packet(now, b_addr, &t.payload);
    }
    while let Some(ev) = a.poll_event() {
        if let Event::Pong { addr, rtt } = ev {
            assert_eq!(addr, b_addr);
            answered = rtt.is_some();
        }
    }
    assert!(answered, "the answer to our ping was taken");
    // What B asked in that datagram was not answered: it was charged and refused.
    assert!(a.stats().rate_limited_ip > limited);
    assert!(
        std::iter::from_fn(|| a.poll_transmit()).all(|t| t.dst != b_addr),
        "nothing answered to the spent source"
    );
}

#[test]
fn the_global_budget_caps_many_sources_together() {
    let cfg = Config::default();
    let (rate, burst) = (
        u64::from(cfg.rate_limit.global.rate),
        u64::from(cfg.rate_limit.global.burst),
    );
    let mut e = Engine::new(cfg, node_addr(1, 24254), 3, Time::ZERO);
    // 400 sources, each at 250 requests/s (within its own limit): 100,000/s in all, 1 s.
    let (mut sent, mut answered) = (0u64, 0u64);
    for step in 0..100_000u64 {
        let now = Time::from_micros(step * 10);
        let i = (step % 400) as usize;
        let src = node_addr(1000 + i, 4000);
        sent += 1;
        answered += ask(&mut e, now, src, PEERS).len() as u64;
    }
    let s = e.stats();
    println!(
        "{sent} sent from 400 sources, {answered} answered; limited: ip {}, global {}",
        s.rate_limited_ip, s.rate_limited_global
    );
    assert!(answered <= burst + rate, "{answered}");
    assert!(answered >= rate, "{answered}");
    assert_eq!(s.rate_limited_ip, 0);
    assert_eq!(s.rate_limited_global, sent - answered);
}

#[test]
fn a_verified_download_is_not_held_to_the_request_rate() {
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let id = NodeId::hash(&data);
    let mut e = Engine::new(Config::default(), node_addr(1, 24254), 9, Time::ZERO);
    e.hold(id, Arc::new(data));
    let blocks = |e: &mut Engine, src, cookie: Option<&Echo>, start: u64| {
        let mut served = 0;
        // 4,000 block requests at 50,000/s.
        for i in 0..4000u64 {
            let now = Time::from_micros(start + i * 20);
            let mut req = vec![Message::PleaseSendContent {
                id,
                offset: (i % 256) * 4096,
                length: 4096,
            }];
            if let Some(c) = cookie {
                req.push(Message::AlwaysReturned(c.clone()));
            }
            let back = ask(e, now, src, &encode_packet(&req));
            served += back
                .iter()
                .filter(|r| {
                    decode(r).is_ok_and(|d| {
                        d.messages
                            .iter()
                            .any(|m| matches!(m, Message::Content { .. }))
                    })
                })
                .count();
        }
        served
    };
    let downloader = addr("127.0.0.2:5000");
    let cookie = cookie_in(&ask(&mut e, Time::from_millis(1), downloader, PEERS)).expect("cookie");
    let served = blocks(&mut e, downloader, Some(&cookie), 10_000);
    assert_eq!(served, 4000, "every verified block request served");
    assert_eq!(e.stats().rate_limited_ip, 0);
    // The same without the cookie is an ordinary request, and held to 500/s.
    let stranger = addr("127.0.0.3:5000");
    let served = blocks(&mut e, stranger, None, 1_000_000);
    println!("unverified block requests: {served} of 4000 served");
    assert!((1000..=1000 + 50).contains(&served), "{served}");
}

#[test]
fn unlimited_config_answers_everything() {
    let cfg = Config {
        rate_limit: RateLimitConfig::unlimited(),
        ..Config::default()
    };
    let mut e = Engine::new(cfg, node_addr(1, 24254), 7, Time::ZERO);
    let flooder = addr("127.0.0.2:4000");
    for _ in 0..5000 {
        assert_eq!(ask(&mut e, Time::from_millis(1), flooder, PEERS).len(), 1);
    }
    assert_eq!(e.stats().rate_limited_ip + e.stats().rate_limited_global, 0);
}

// ---------------------------------------------------------------------------------------
// Real sockets.

/// Clients measuring round trips besides the flood, one per IP.
const OTHERS: usize = 6;
/// A round trip every this long, per client.
const PERIOD: Duration = Duration::from_millis(5);
/// A round trip not answered within this long is lost.
const LOST_AFTER: Duration = Duration::from_millis(250);
const BASELINE: Duration = Duration::from_millis(2000);
const FLOOD: Duration = Duration::from_millis(3000);
const FLOOD_RATE: u64 = 100_000;
/// Flooding sockets (source ports), all on 127.0.0.2.
const FLOOD_SOCKETS: usize = 4;

/// One round trip of a client: when it was sent (since the run's start) and its latency
/// (`None`: lost).
type Sample = (Duration, Option<Duration>);

fn messages(reply: &[u8]) -> Vec<(String, Value)> {
    serde_json::from_slice::<Vec<serde_json::Map<String, Value>>>(reply)
        .map(|v| v.into_iter().flat_map(|m| m.into_iter()).collect())
        .unwrap_or_default()
}

/// A client on `ip`: fetches the node's cookie, then makes a verified `PleaseSendPeers`
/// round trip every [`PERIOD`] until `end`. Returns its samples and datagrams sent.
fn client(ip: [u8; 4], node: SocketAddr, start: Instant, end: Duration) -> (Vec<Sample>, u64) {
    let sock = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind a client");
    let mut buf = vec![0u8; 65_536];
    let mut sent = 0u64;
    let mut cookie: Option<Value> = None;
    while cookie.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no cookie from the node"
        );
        sock.send_to(PEERS, node).expect("send");
        sent += 1;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            cookie = messages(&buf[..n])
                .into_iter()
                .find(|(name, _)| name == "PleaseAlwaysReturnThisMessage")
                .map(|(_, body)| body);
        }
    }
    let cookie = cookie.unwrap_or_default();
    let mut samples = Vec::new();
    let mut next = start.elapsed();
    let mut seq = 0u64;
    while next < end {
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        seq += 1;
        let tag = format!("flood-test-{seq}");
        let req = format!(
            r#"[{{"PleaseSendPeers":{{}}}},{{"PleaseReturnThisMessage":{{"cookie":"{tag}"}}}},{{"AlwaysReturned":{cookie}}}]"#
        );
        let t0 = Instant::now();
        let at = start.elapsed();
        sock.send_to(req.as_bytes(), node).expect("send");
        sent += 1;
        let mut got = None;
        while got.is_none() {
            let Some(left) = LOST_AFTER
                .checked_sub(t0.elapsed())
                .filter(|d| !d.is_zero())
            else {
                break;
            };
            sock.set_read_timeout(Some(left)).expect("timeout");
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let answers = messages(&buf[..n]).into_iter().any(|(name, body)| {
                name == "ReturnedMessage"
                    && body.get("cookie").and_then(Value::as_str) == Some(&tag)
            });
            if answers {
                got = Some(t0.elapsed());
            }
        }
        samples.push((at, got));
        next += PERIOD;
    }
    (samples, sent)
}

/// Floods `node` from 127.0.0.2 at [`FLOOD_RATE`] between `from` and `to` (since `start`),
/// in bursts every millisecond. Returns (datagrams sent, replies received).
fn flooder(node: SocketAddr, start: Instant, from: Duration, to: Duration) -> (u64, u64) {
    let socks: Vec<UdpSocket> = (0..FLOOD_SOCKETS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.2:0").expect("bind the flooder");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let mut buf = vec![0u8; 65_536];
    let (mut sent, mut replies) = (0u64, 0u64);
    let mut drain = |replies: &mut u64| {
        for s in &socks {
            while s.recv_from(&mut buf).is_ok() {
                *replies += 1;
            }
        }
    };
    if let Some(wait) = from.checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
    let t0 = Instant::now();
    let dur = to.saturating_sub(from);
    loop {
        let el = t0.elapsed().min(dur);
        let due = (el.as_micros() as u64 * FLOOD_RATE) / 1_000_000;
        while sent < due {
            match socks[(sent % FLOOD_SOCKETS as u64) as usize].send_to(PEERS, node) {
                Ok(_) => sent += 1,
                // The send buffer is full: try again at the next burst.
                Err(_) => break,
            }
        }
        drain(&mut replies);
        if el >= dur {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Late replies.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        drain(&mut replies);
        std::thread::sleep(Duration::from_millis(5));
    }
    (sent, replies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Window {
    sent: usize,
    answered: usize,
    p50: Duration,
    p99: Duration,
}

fn window(samples: &[Sample], from: Duration, to: Duration) -> Window {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .collect();
    let mut lat: Vec<Duration> = inside.iter().filter_map(|(_, l)| *l).collect();
    lat.sort();
    Window {
        sent: inside.len(),
        answered: lat.len(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn flood_from_one_ip_leaves_others_answered_in_time() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let limits = Config::default().rate_limit;
    let node = rt.block_on(async {
        let mut cfg = NodeConfig::new(addr("127.0.0.1:0"));
        cfg.loopback_only = true;
        cfg.seed = Some(42);
        Node::start(cfg).await.expect("node starts")
    });
    let node_addr = node.local_addr();
    assert!(node_addr.ip().is_loopback());
    let stats = |rt: &tokio::runtime::Runtime| -> Stats {
        rt.block_on(node.status()).expect("node running").stats
    };
    let s0 = stats(&rt);

    let start = Instant::now();
    let flood_from = BASELINE;
    let flood_to = BASELINE + FLOOD;
    let end = flood_to + Duration::from_millis(200);
    let clients: Vec<_> = (0..OTHERS)
        .map(|i| {
            let ip = [127, 0, 0, 3 + i as u8];
            std::thread::spawn(move || client(ip, node_addr, start, end))
        })
        .collect();
    let flood = std::thread::spawn(move || flooder(node_addr, start, flood_from, flood_to));
    let mut samples = Vec::new();
    let mut others_sent = 0;
    for c in clients {
        let (s, n) = c.join().expect("client thread");
        samples.extend(s);
        others_sent += n;
    }
    let (flood_sent, flood_answered) = flood.join().expect("flooder thread");
    let s1 = stats(&rt);
    let run = start.elapsed();
    rt.block_on(node.shutdown()).expect("shutdown");

    // Baseline after a short warm-up; the flood window whole.
    let base = window(&samples, Duration::from_millis(300), flood_from);
    let during = window(&samples, flood_from, flood_to);
    let flood_secs = FLOOD.as_secs_f64();
    let flood_in = (s1.datagrams_in - s0.datagrams_in).saturating_sub(others_sent);
    let limited_ip = s1.rate_limited_ip - s0.rate_limited_ip;
    let limited_global = s1.rate_limited_global - s0.rate_limited_global;
    let allowed_most =
        f64::from(limits.per_ip.burst) + f64::from(limits.per_ip.rate) * (flood_secs + 0.5);
    println!(
        "flood: {flood_sent} requests from 127.0.0.2 in {flood_secs:.1} s ({:.0}/s), \
         {flood_in} reached the node, {flood_answered} answered (budget {} + {}/s: at most \
         {allowed_most:.0}); node counted {limited_ip} rate-limited (per IP), {limited_global} \
         (global)",
        flood_sent as f64 / flood_secs,
        limits.per_ip.burst,
        limits.per_ip.rate,
    );
    println!(
        "others ({OTHERS} clients, one round trip each per {} ms): before the flood \
         {}/{} answered, p50 {:.3} ms, p99 {:.3} ms; during {}/{} answered, p50 {:.3} ms, \
         p99 {:.3} ms; run {:.1} s",
        PERIOD.as_millis(),
        base.answered,
        base.sent,
        ms(base.p50),
        ms(base.p99),
        during.answered,
        during.sent,
        ms(during.p50),
        ms(during.p99),
        run.as_secs_f64(),
    );

    // The flood happened: at least half the asked rate, and most of it reached the node.
    assert!(
        flood_sent >= FLOOD_RATE * FLOOD.as_secs() / 2,
        "only {flood_sent} flood requests sent"
    );
    assert!(
        flood_in * 2 >= flood_sent,
        "only {flood_in} reached the node"
    );
    // The flooder got its budget and no more.
    assert!(
        flood_answered as f64 <= allowed_most,
        "{flood_answered} flood requests answered"
    );
    // Every flood datagram that reached the node and was not answered was counted.
    let unanswered = flood_in.saturating_sub(flood_answered);
    assert!(
        limited_ip.abs_diff(unanswered) <= unanswered / 100 + 20,
        "{limited_ip} counted, {unanswered} unanswered"
    );
    assert_eq!(limited_global, 0);
    // The others are served as before.
    assert!(base.sent > 0 && during.sent > 0);
    assert!(
        base.answered * 100 >= base.sent * 99,
        "baseline: {}/{}",
        base.answered,
        base.sent
    );
    assert!(
        during.answered * 100 >= during.sent * 99,
        "during the flood: {}/{} answered",
        during.answered,
        during.sent
    );
    let bound = (base.p99 * 5).max(base.p99 + Duration::from_millis(5));
    assert!(
        during.p99 <= bound,
        "p99 {:.3} ms during the flood, {:.3} ms before (bound {:.3} ms)",
        ms(during.p99),
        ms(base.p99),
        ms(bound)
    );
    assert!(run < Duration::from_secs(20));
}
