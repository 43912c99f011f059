//! Micro-benchmarks of the hot paths, each beside a baseline measured in the same run:
//! decoding a 20-peer answer (vs serde_json into a generic `Value`), answering a
//! `WhereAreThey` in the engine, `closest()` on a 10,000-contact table (vs a full sort),
//! and lookup state-machine steps.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;
use telekad::config::Config;
use telekad::engine::Engine;
use telekad::id::NodeId;
use telekad::lookup::{Lookup, LookupConfig};
use telekad::sim::node_addr;
use telekad::table::{RoutingTable, TableConfig};
use telekad::time::Time;
use telekad::wire::{decode, encode_packet, Echo, Message};

fn peers_answer() -> Vec<u8> {
    let peers: Vec<SocketAddr> = (0..20).map(|i| node_addr(i, 24254)).collect();
    encode_packet(&[
        Message::AlwaysReturned(Echo::cookie("0123456789abcdef")),
        Message::ReturnedMessage(Echo::cookie("tk.0123456789abcdef")),
        Message::Peers {
            peers,
            target: Some(NodeId::hash(b"t")),
        },
        Message::YourAddressIs {
            addr: node_addr(99, 24254),
        },
    ])
}

fn codec(c: &mut Criterion) {
    let pkt = peers_answer();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(pkt.len() as u64));
    g.bench_function("telekad_decode_peers_answer", |b| {
        b.iter(|| black_box(decode(black_box(&pkt))))
    });
    g.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&pkt))))
    });
    let msgs = decode(&pkt).map(|d| d.messages).unwrap_or_default();
    g.bench_function("telekad_encode_peers_answer", |b| {
        b.iter(|| black_box(encode_packet(black_box(&msgs))))
    });
    g.finish();
}

/// An engine with a full table, and a verified asker. The asker asks a million times a
/// second, far above the default per-IP rate limit: the limits are off, so that what is
/// measured is the answer, not the drop.
fn busy_engine() -> (Engine, SocketAddr, Vec<u8>) {
    let local = node_addr(50_000, 24254);
    let cfg = Config {
        rate_limit: telekad::ratelimit::RateLimitConfig::unlimited(),
        ..Config::default()
    };
    let mut e = Engine::new(cfg, local, 1, Time::ZERO);
    // Fill the table by answering pings of many peers through the real wire.
    let peers: Vec<SocketAddr> = (0..3000).map(|i| node_addr(i, 24254)).collect();
    e.bootstrap(Time::ZERO, &peers[..1]);
    let mut now = Time::ZERO;
    for round in 0..40 {
        now = now + Duration::from_millis(5);
        while let Some(t) = e.poll_transmit() {
            if let Ok(d) = decode(&t.payload) {
                let mut reply = Vec::new();
                for m in d.messages {
                    if let Message::PleaseReturnThisMessage(x) = m {
                        reply.push(Message::ReturnedMessage(x));
                    }
                }
                let list: Vec<SocketAddr> = peers
                    .iter()
                    .copied()
                    .skip((round * 61) % 2900)
                    .take(20)
                    .collect();
                reply.push(Message::Peers {
                    peers: list,
                    target: None,
                });
                e.handle_packet(now, t.dst, &encode_packet(&reply));
            }
        }
        e.handle_timeout(now);
    }
    // A verified asker: learn our cookie first.
    let asker = node_addr(60_000, 5000);
    e.handle_packet(now, asker, br#"[{"PleaseSendPeers":{}}]"#);
    let mut cookie = None;
    while let Some(t) = e.poll_transmit() {
        if t.dst == asker {
            if let Ok(d) = decode(&t.payload) {
                for m in d.messages {
                    if let Message::PleaseAlwaysReturnThisMessage(x) = m {
                        cookie = Some(x);
                    }
                }
            }
        }
    }
    let mut req = vec![Message::WhereAreThey {
        target: NodeId::hash(b"somewhere"),
    }];
    if let Some(c) = cookie {
        req.push(Message::AlwaysReturned(c));
    }
    (e, asker, encode_packet(&req))
}

fn engine(c: &mut Criterion) {
    let (mut e, asker, req) = busy_engine();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut t = 1_000_000u64;
    g.bench_function("where_are_they_verified_20_peers", |b| {
        b.iter(|| {
            t += 1;
            e.handle_packet(Time::from_micros(t), asker, black_box(&req));
            black_box(e.poll_transmit())
        })
    });
    g.finish();
    println!("engine table size for the benchmark: {}", e.table().len());
}

fn table(c: &mut Criterion) {
    let cfg = TableConfig {
        k: 20,
        max_per_ip: 0,
        max_per_subnet: 0,
        ..TableConfig::default()
    };
    // 10,000 contacts: buckets are k wide, so use k = 20 but feed enough addresses that
    // deep buckets and many shallow ones fill; then pad with a wide k to reach 10,000.
    let wide = TableConfig { k: 10_000, ..cfg };
    let mut t = RoutingTable::new(NodeId::of_addr(node_addr(70_000, 1)), wide);
    for i in 0..10_000 {
        t.seen(node_addr(i, 1), Time::ZERO, None);
    }
    assert_eq!(t.len(), 10_000);
    let all: Vec<NodeId> = t.contacts().map(|c| c.id()).collect();
    let targets: Vec<NodeId> = (0..64u32).map(|i| NodeId::hash(&i.to_le_bytes())).collect();
    let mut g = c.benchmark_group("table_10k");
    let mut i = 0;
    g.bench_function("telekad_closest_20", |b| {
        b.iter(|| {
            i = (i + 1) % targets.len();
            black_box(t.closest(&targets[i], 20).len())
        })
    });
    g.bench_function("baseline_full_sort_20", |b| {
        b.iter(|| {
            i = (i + 1) % targets.len();
            let mut v: Vec<_> = all.iter().map(|id| id.distance(&targets[i])).collect();
            v.sort_unstable();
            black_box(v[..20].len())
        })
    });
    g.finish();
}

fn lookup_steps(c: &mut Criterion) {
    let nodes: Vec<SocketAddr> = (0..2000).map(|i| node_addr(i, 1)).collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    g.bench_function("state_machine_lookup_to_completion", |b| {
        b.iter_batched(
            || {
                let target = NodeId::hash(b"target");
                Lookup::new(
                    target,
                    LookupConfig::default(),
                    Time::ZERO,
                    nodes[..20].to_vec(),
                )
            },
            |mut l| {
                let mut now = Time::ZERO;
                let mut step = 0usize;
                while !l.is_finished() {
                    now = now + Duration::from_millis(1);
                    let mut asked = Vec::new();
                    while let Some(a) = l.poll(now, |_| Duration::from_millis(300)) {
                        asked.push(a);
                    }
                    for a in asked {
                        step += 1;
                        let from = (step * 37) % 1980;
                        l.on_success(a, &nodes[from..from + 20], now);
                    }
                    if step > 10_000 {
                        break;
                    }
                }
                black_box(l.result())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, codec, engine, table, lookup_steps);
criterion_main!(benches);
