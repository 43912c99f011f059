//! A read-only engine (a one-shot client such as `telekad lookup`) uses the network without
//! becoming anyone's contact: it answers no request, so no node can verify it.

use std::net::SocketAddr;
use std::time::Duration;
use telekad::config::Config;
use telekad::engine::{Engine, Event};
use telekad::id::NodeId;
use telekad::sim::node_addr;
use telekad::time::Time;

/// Delivers every datagram between the engines until none is left.
fn settle(engines: &mut [Engine], addrs: &[SocketAddr], mut now: Time) -> Time {
    for _ in 0..200 {
        now = now + Duration::from_millis(2);
        let mut moved = false;
        for i in 0..engines.len() {
            while let Some(t) = engines[i].poll_transmit() {
                moved = true;
                if let Some(j) = addrs.iter().position(|a| *a == t.dst) {
                    engines[j].handle_packet(now, addrs[i], &t.payload);
                }
            }
        }
        for e in engines.iter_mut() {
            e.handle_timeout(now);
        }
        if !moved {
            break;
        }
    }
    now
}

#[test]
fn a_read_only_client_finds_nodes_but_is_never_kept() {
    let addrs: Vec<SocketAddr> = (0..12).map(|i| node_addr(i, 24254)).collect();
    let mut engines: Vec<Engine> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Engine::new(Config::default(), *a, i as u64, Time::ZERO))
        .collect();
    for e in &mut engines[1..11] {
        e.bootstrap(Time::ZERO, &[addrs[0]]);
    }
    let mut now = settle(&mut engines, &addrs, Time::ZERO);
    now = settle(&mut engines, &addrs, now + Duration::from_secs(5));
    // Node 11 is the client.
    let client = addrs[11];
    engines[11] = Engine::new(
        Config {
            read_only: true,
            ..Config::default()
        },
        client,
        11,
        now,
    );
    engines[11].bootstrap(now, &[addrs[0]]);
    let target = NodeId::of_addr(addrs[7]);
    let id = engines[11].start_lookup(now, target);
    now = settle(&mut engines, &addrs, now);
    let mut found = false;
    while let Some(ev) = engines[11].poll_event() {
        if let Event::LookupFinished { id: got, result } = ev {
            if got == id {
                found = result.found;
            }
        }
    }
    let _ = settle(&mut engines, &addrs, now + Duration::from_secs(10));
    assert!(found, "the read-only client's lookup found its target");
    assert!(
        engines[11].table().len() >= 5,
        "the client learned contacts"
    );
    for (i, e) in engines.iter().enumerate().take(11) {
        assert!(
            !e.table().contains(client),
            "node {i} kept the read-only client"
        );
    }
}
