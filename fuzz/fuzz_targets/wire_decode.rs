//! Arbitrary bytes into the cjp2p packet decoder, then what the codec promises about them:
//!
//! - `decode` never panics and keeps its counters within `MAX_MESSAGES`;
//! - every decoded message survives `encode` then `decode` unchanged (with the two
//!   representation rules the spec states: `Padding.len` counts the body's JSON text on
//!   decode and the filler on encode, and missing `MaybeTheyHaveSome` notes are empty);
//! - `encoded_len` is the length `encode` writes;
//! - a `PacketWriter` never finishes a datagram longer than its limit (the amplification
//!   rule rests on this), and what it wrote decodes to exactly the messages it accepted;
//! - `push_peers` / `push_maybe` write a prefix of the list, at least `min` long, within
//!   the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telekad::engine::amplification_limit;
use telekad::wire::{
    decode, encode_packet, Message, PacketError, PacketWriter, MAX_DATAGRAM, MAX_MESSAGES,
};

/// What a message becomes after one trip through the codec: `Padding.len` counts the body's
/// JSON text when decoded and the filler characters when encoded (`{"p":"` + filler + `"}`,
/// 8 bytes more).
fn after_trip(m: &Message) -> Message {
    match m {
        Message::Padding { len } => Message::Padding { len: len + 8 },
        other => other.clone(),
    }
}

/// Equal forms compare equal: notes past `holders` are dropped and all-empty notes are not
/// written, so trailing empty notes and missing ones are the same thing.
fn canon(m: &Message) -> Message {
    match m {
        Message::MaybeTheyHaveSome {
            id,
            peers,
            holders,
            notes,
        } => {
            let holders = (*holders).min(peers.len());
            let mut notes: Vec<String> = notes.iter().take(holders).cloned().collect();
            while notes.last().is_some_and(|n| n.is_empty()) {
                notes.pop();
            }
            Message::MaybeTheyHaveSome {
                id: *id,
                peers: peers.clone(),
                holders,
                notes,
            }
        }
        other => other.clone(),
    }
}

/// Whether `got`, read back, is what `sent` should have become.
fn same(got: &Message, sent: &Message) -> bool {
    canon(got) == canon(&after_trip(sent))
}

fn round_trip(m: &Message) {
    let mut buf = Vec::new();
    m.encode(&mut buf);
    assert_eq!(buf.len(), m.encoded_len(), "encoded_len of {m:?}");
    let packet = encode_packet(std::slice::from_ref(m));
    let back = decode(&packet).unwrap_or_else(|e| {
        panic!(
            "{e:?} decoding the encoding of {m:?}: {}",
            String::from_utf8_lossy(&packet)
        )
    });
    assert_eq!(
        (
            back.unknown,
            back.malformed,
            back.excess,
            back.bad_addresses
        ),
        (0, 0, 0, 0),
        "{m:?} -> {}",
        String::from_utf8_lossy(&packet)
    );
    assert_eq!(back.messages.len(), 1);
    assert!(
        same(&back.messages[0], m),
        "{m:?} came back as {:?} through {}",
        back.messages[0],
        String::from_utf8_lossy(&packet)
    );
}

/// Writes `msgs` into a writer of `limit` bytes and checks what comes out.
fn write_within(msgs: &[Message], limit: usize) {
    let mut w = PacketWriter::new(limit);
    let mut accepted = Vec::new();
    for m in msgs {
        let before = w.bytes();
        let room = w.room();
        if w.push(m) {
            assert!(w.bytes() - before <= room + 1, "push took more than room");
            accepted.push(m.clone());
        } else {
            assert_eq!(w.bytes(), before, "a refused push left bytes behind");
            // Refused only when it did not fit.
            assert!(
                m.encoded_len() > room,
                "{m:?} refused with {room} bytes free"
            );
        }
    }
    assert_eq!(w.len(), accepted.len());
    let Some(out) = w.finish() else {
        assert!(accepted.is_empty());
        return;
    };
    assert!(
        out.len() <= limit.min(MAX_DATAGRAM),
        "{} bytes from a writer limited to {limit}",
        out.len()
    );
    let back = decode(&out).expect("a finished datagram decodes");
    assert_eq!(back.messages.len() + back.excess as usize, accepted.len());
    for (got, want) in back.messages.iter().zip(&accepted) {
        assert!(same(got, want), "{want:?} came back as {got:?}");
    }
}

fn peer_lists(msgs: &[Message], limit: usize) {
    for m in msgs {
        let (peers, target, maybe) = match m {
            Message::Peers { peers, target } => (peers, *target, None),
            Message::MaybeTheyHaveSome {
                id,
                peers,
                holders,
                notes,
            } => (peers, None, Some((*id, *holders, notes))),
            _ => continue,
        };
        for min in [0, peers.len().min(1), peers.len()] {
            let mut w = PacketWriter::new(limit);
            let n = match maybe {
                None => w.push_peers(peers, target, min),
                Some((id, holders, notes)) => w.push_maybe(id, peers, holders, notes, min),
            };
            let Some(n) = n else {
                assert!(w.is_empty());
                continue;
            };
            assert!(n >= min && n <= peers.len());
            let out = w.finish().expect("a list was written");
            assert!(out.len() <= limit.min(MAX_DATAGRAM));
            let back = decode(&out).expect("decodes");
            match &back.messages[..] {
                [Message::Peers {
                    peers: p,
                    target: t,
                }] => {
                    assert_eq!(p[..], peers[..n]);
                    assert_eq!(*t, target);
                }
                [Message::MaybeTheyHaveSome { peers: p, .. }] => assert_eq!(p[..], peers[..n]),
                other => panic!("wrote a list, read back {other:?}"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = match decode(data) {
        Ok(d) => d,
        Err(PacketError::TooLarge) => {
            assert!(data.len() > MAX_DATAGRAM);
            return;
        }
        Err(PacketError::NotJsonArray) => {
            assert!(data.len() <= MAX_DATAGRAM);
            return;
        }
    };
    assert!(data.len() <= MAX_DATAGRAM);
    // At most MAX_MESSAGES elements are looked at; the rest are only counted.
    let looked_at = decoded.messages.len() + decoded.unknown as usize + decoded.malformed as usize;
    assert!(looked_at <= MAX_MESSAGES, "{looked_at} elements looked at");
    assert!(decoded.excess == 0 || looked_at == MAX_MESSAGES);
    // Decoding is a function of the bytes.
    assert_eq!(decode(data).as_ref(), Ok(&decoded));

    for m in &decoded.messages {
        round_trip(m);
    }
    // The whole list again, as one datagram, where it fits in one.
    let mut w = PacketWriter::new(MAX_DATAGRAM);
    if decoded.messages.iter().all(|m| w.push(m)) {
        let again = decode(&w.finish().unwrap_or_else(|| b"[]".to_vec())).expect("decodes");
        assert_eq!(again.messages.len(), decoded.messages.len());
        for (got, sent) in again.messages.iter().zip(&decoded.messages) {
            assert!(same(got, sent), "{sent:?} came back as {got:?}");
        }
    }
    // Budgets as the engine uses them: the amplification limit of this very request, the
    // request's own size, and a tiny one.
    for limit in [amplification_limit(data.len()), data.len(), 80] {
        write_within(&decoded.messages, limit);
        peer_lists(&decoded.messages, limit);
    }
});
