//! Download state-machine properties over seeded random holders (lossy, slow, silent,
//! corrupting): it always completes while one holder answers, never exceeds a holder's
//! window, never accepts a block it did not ask that holder for, and refetches everything a
//! bad holder provided.

use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use telekad::download::{BlockOutcome, Download};
use telekad::id::NodeId;
use telekad::sim::node_addr;
use telekad::time::Time;
use telekad::wire::BLOCK_SIZE;

struct HolderModel {
    loss: f64,
    delay_ms: u64,
    silent: bool,
    corrupt: bool,
}

#[test]
fn downloads_complete_and_respect_windows() {
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(41);
    for round in 0..300u32 {
        let len: u64 = if round % 10 == 0 {
            rng.random_range(0..10)
        } else {
            rng.random_range(1..300_000)
        };
        let n = rng.random_range(1..=4usize);
        let holders: Vec<SocketAddr> = (0..n).map(|i| node_addr(i + 10, 24254)).collect();
        let models: Vec<HolderModel> = (0..n)
            .map(|i| HolderModel {
                // Holder 0 always answers (with some loss); the others may be silent or bad.
                loss: rng.random_range(0.0..0.3),
                delay_ms: rng.random_range(1..80),
                silent: i > 0 && rng.random_bool(0.2),
                corrupt: i > 0 && rng.random_bool(0.2),
            })
            .collect();
        let mut d = Download::new(NodeId::hash(&round.to_le_bytes()));
        for h in &holders {
            d.add_holder(*h);
        }
        let mut now = Time::ZERO;
        // (arrival, seq) -> (holder index, offset, length)
        let mut wire: BTreeMap<(Time, u64), (usize, u64, u64)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut steps = 0;
        while !d.is_complete() {
            steps += 1;
            assert!(steps < 200_000, "round {round}: did not complete");
            while let Some(r) = d.poll(now) {
                let i = holders.iter().position(|h| *h == r.holder).unwrap();
                let (in_flight, window) = d.window_of(r.holder).unwrap();
                assert!(
                    in_flight as f64 <= window.floor().max(1.0),
                    "window exceeded"
                );
                let m = &models[i];
                if m.silent || rng.random_bool(m.loss) {
                    continue;
                }
                seq += 1;
                wire.insert(
                    (now + Duration::from_millis(m.delay_ms), seq),
                    (i, r.offset, r.length),
                );
            }
            if d.is_complete() {
                break;
            }
            let next = match (wire.keys().next().map(|k| k.0), d.next_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => panic!("round {round}: stalled with nothing in flight"),
            };
            now = next;
            while let Some((&(t, s), &(i, offset, length))) = wire.iter().next() {
                if t > now {
                    break;
                }
                wire.remove(&(t, s));
                let served = length
                    .min(len.saturating_sub(offset))
                    .min(BLOCK_SIZE as u64);
                let out = d.on_block(holders[i], offset, served, len, now);
                // A stand-in for block verification: a corrupting holder's accepted block
                // is caught and the holder dropped.
                if out == BlockOutcome::Accepted && models[i].corrupt {
                    d.bad_holder(holders[i]);
                }
            }
            // A block nobody asked for is ignored.
            assert_eq!(
                d.on_block(node_addr(99, 1), 0, 1, len, now),
                BlockOutcome::Ignored
            );
        }
        assert_eq!(d.received(), len, "round {round}");
        assert_eq!(d.len(), Some(len));
        for off in (0..len).step_by(BLOCK_SIZE) {
            let p = d.provider_of(off).expect("every block has a provider");
            let i = holders.iter().position(|h| *h == p).unwrap();
            assert!(!models[i].corrupt, "a block from a bad holder was kept");
            assert!(!models[i].silent);
        }
    }
}

#[test]
fn inconsistent_length_drops_the_holder() {
    let a = node_addr(1, 1);
    let b = node_addr(2, 1);
    let mut d = Download::new(NodeId::hash(b"x"));
    d.add_holder(a);
    d.add_holder(b);
    let r = d.poll(Time::ZERO).unwrap();
    assert_eq!(
        d.on_block(r.holder, 0, 4096, 10_000, Time::from_millis(5)),
        BlockOutcome::Accepted
    );
    let r2 = d.poll(Time::from_millis(5)).unwrap();
    let other = if r2.holder == a { a } else { r2.holder };
    assert_eq!(
        d.on_block(other, r2.offset, 4096, 9_999, Time::from_millis(6)),
        BlockOutcome::Inconsistent
    );
    assert_eq!(d.live_holders(), 1);
}
