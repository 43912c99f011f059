//! Serving content blocks: full 4096-byte blocks to a verified asker, blocks cut to the
//! amplification limit for an unverified one, nothing for offsets past the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use telekad::config::Config;
use telekad::engine::Engine;
use telekad::id::NodeId;
use telekad::sim::node_addr;
use telekad::time::Time;
use telekad::wire::{decode, encode_packet, Echo, Message, HEADER_OVERHEAD};

fn exchange(
    e: &mut Engine,
    now: &mut Time,
    from: SocketAddr,
    msgs: &[Message],
) -> (usize, Vec<Message>) {
    *now = *now + Duration::from_millis(1);
    let pkt = encode_packet(msgs);
    e.handle_packet(*now, from, &pkt);
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(t) = e.poll_transmit() {
        if t.dst == from {
            bytes += t.payload.len() + HEADER_OVERHEAD;
            out.extend(decode(&t.payload).unwrap().messages);
        }
    }
    assert!(
        bytes <= 2 * (pkt.len() + HEADER_OVERHEAD)
            || msgs.iter().any(|m| matches!(m, Message::AlwaysReturned(_)))
    );
    (bytes, out)
}

fn block(msgs: &[Message]) -> Option<(u64, Vec<u8>, u64)> {
    msgs.iter().find_map(|m| match m {
        Message::Content {
            offset, data, eof, ..
        } => Some((*offset, data.clone(), *eof)),
        _ => None,
    })
}

#[test]
fn blocks_as_cjp2p_nodes_expect() {
    let data: Vec<u8> = (0..8292u32).map(|i| (i % 251) as u8).collect();
    let id = NodeId::hash(&data);
    let mut e = Engine::new(Config::default(), node_addr(1, 24254), 9, Time::ZERO);
    e.hold(id, Arc::new(data.clone()));
    let mut now = Time::ZERO;
    let asker = node_addr(5, 777);
    let req = |offset| Message::PleaseSendContent {
        id,
        offset,
        length: 4096,
    };
    // Unverified: a block cut to fit twice the request, plus our cookie.
    let (bytes, reply) = exchange(&mut e, &mut now, asker, &[req(0)]);
    let (off, part, eof) = block(&reply).expect("a (short) block");
    assert_eq!((off, eof), (0, data.len() as u64));
    assert!(
        !part.is_empty() && part.len() < 4096,
        "cut to the limit: {} bytes",
        part.len()
    );
    assert_eq!(&data[..part.len()], &part[..]);
    assert!(bytes <= 2 * (encode_packet(&[req(0)]).len() + HEADER_OVERHEAD));
    let cookie: Echo = reply
        .iter()
        .find_map(|m| match m {
            Message::PleaseAlwaysReturnThisMessage(c) => Some(c.clone()),
            _ => None,
        })
        .expect("cookie");
    // Verified: whole 4096-byte blocks, and the short last one.
    for (offset, len) in [(0u64, 4096usize), (4096, 4096), (8192, 100)] {
        let (_, reply) = exchange(
            &mut e,
            &mut now,
            asker,
            &[req(offset), Message::AlwaysReturned(cookie.clone())],
        );
        let (off, got, eof) = block(&reply).expect("a block");
        assert_eq!((off, got.len(), eof), (offset, len, data.len() as u64));
        assert_eq!(&data[offset as usize..offset as usize + len], &got[..]);
    }
    // Asking for more than a block gets one block; past the end gets nothing.
    let big = Message::PleaseSendContent {
        id,
        offset: 0,
        length: 1 << 40,
    };
    let (_, reply) = exchange(
        &mut e,
        &mut now,
        asker,
        &[big, Message::AlwaysReturned(cookie.clone())],
    );
    assert_eq!(block(&reply).map(|b| b.1.len()), Some(4096));
    let (_, reply) = exchange(
        &mut e,
        &mut now,
        asker,
        &[req(9000), Message::AlwaysReturned(cookie.clone())],
    );
    assert!(block(&reply).is_none());
    assert_eq!(e.stats().content_bad_requests, 1);
    assert_eq!(e.stats().content_blocks_served, 5);
    // Content it does not hold gets MaybeTheyHaveSome instead.
    let other = NodeId::hash(b"not here");
    let (_, reply) = exchange(
        &mut e,
        &mut now,
        asker,
        &[
            Message::PleaseSendContent {
                id: other,
                offset: 0,
                length: 4096,
            },
            Message::AlwaysReturned(cookie),
        ],
    );
    assert!(block(&reply).is_none());
    assert!(reply
        .iter()
        .any(|m| matches!(m, Message::MaybeTheyHaveSome { id, .. } if *id == other)));
}
