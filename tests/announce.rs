//! Announcements: many announcers under one topic are all found with their notes; records
//! expire when announcers vanish; announcements from unverified sources or beyond the
//! per-IP quota are refused; content requests are pointed at holders first.

use std::net::SocketAddr;
use std::time::Duration;
use telekad::config::Config;
use telekad::engine::Engine;
use telekad::id::NodeId;
use telekad::sim::{node_addr, Sim, SimConfig};
use telekad::time::Time;
use telekad::wire::{decode, encode_packet, Echo, Message};

fn joined(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig::new(n, seed));
    sim.join_all(Duration::from_millis(5), Duration::from_secs(10));
    sim
}

#[test]
fn twenty_announcers_under_one_topic_are_all_listed_with_notes() {
    let mut sim = joined(300, 21);
    let topic = NodeId::of_topic("telekad-demo-game/lobby");
    let servers: Vec<usize> = (0..20).map(|i| 10 + i * 13).collect();
    for (n, &i) in servers.iter().enumerate() {
        assert!(sim.announce(i, topic, &format!("server {n}: players {}/10", n % 10)));
    }
    sim.run_for(Duration::from_secs(5));
    for finder in [0usize, 7, 299] {
        let (holders, _) = sim.find_holders(finder, topic).expect("find finished");
        let mut got: Vec<(SocketAddr, String)> =
            holders.into_iter().map(|h| (h.addr, h.note)).collect();
        got.sort();
        let mut want: Vec<(SocketAddr, String)> = servers
            .iter()
            .enumerate()
            .filter(|(_, &i)| i != finder)
            .map(|(n, &i)| (sim.addr(i), format!("server {n}: players {}/10", n % 10)))
            .collect();
        want.sort();
        let got_addrs: Vec<_> = got.iter().map(|g| g.0).collect();
        for w in &want {
            assert!(
                got.contains(w),
                "finder {finder} missed {w:?}; got {got_addrs:?}"
            );
        }
    }
}

#[test]
fn records_expire_when_announcers_vanish() {
    let mut sim = joined(200, 22);
    let topic = NodeId::of_topic("vanishing");
    for i in [5usize, 6, 7] {
        sim.announce(i, topic, "here");
    }
    sim.run_for(Duration::from_secs(5));
    let (before, _) = sim.find_holders(100, topic).unwrap();
    assert_eq!(before.len(), 3);
    for i in [5usize, 6, 7] {
        sim.kill(i);
    }
    let ttl = Config::default().records.ttl;
    sim.run_for(ttl + Duration::from_secs(60));
    let (after, _) = sim.find_holders(100, topic).unwrap();
    assert!(
        after.is_empty(),
        "records outlived their announcers: {after:?}"
    );
    // A live announcer keeps its record alive past the TTL by re-announcing.
    sim.announce(8, topic, "still here");
    sim.run_for(ttl + ttl / 2);
    let (live, _) = sim.find_holders(100, topic).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].addr, sim.addr(8));
}

/// One engine and a hand-driven client socket address.
struct Bench {
    node: Engine,
    now: Time,
}

impl Bench {
    fn new() -> Bench {
        let mut node = Engine::new(Config::default(), node_addr(1, 24254), 3, Time::ZERO);
        // Give it one contact so replies have something to list.
        node.preload_contact(Time::ZERO, node_addr(2, 24254));
        Bench {
            node,
            now: Time::from_millis(1),
        }
    }

    /// Sends `msgs` from `from` and returns the reply's messages.
    fn send(&mut self, from: SocketAddr, msgs: &[Message]) -> Vec<Message> {
        self.now = self.now + Duration::from_millis(1);
        self.node
            .handle_packet(self.now, from, &encode_packet(msgs));
        let mut out = Vec::new();
        while let Some(t) = self.node.poll_transmit() {
            if t.dst == from {
                out.extend(decode(&t.payload).expect("reply decodes").messages);
            }
        }
        out
    }

    /// The cookie the node gives `from`.
    fn cookie(&mut self, from: SocketAddr) -> Echo {
        let reply = self.send(from, &[Message::PleaseSendPeers]);
        reply
            .into_iter()
            .find_map(|m| match m {
                Message::PleaseAlwaysReturnThisMessage(e) => Some(e),
                _ => None,
            })
            .expect("a cookie for an unverified source")
    }
}

#[test]
fn unverified_and_over_quota_announcements_are_refused() {
    let mut b = Bench::new();
    let id = NodeId::hash(b"some content");
    let stranger = node_addr(50, 4000);
    b.send(
        stranger,
        &[Message::IHaveSome {
            id,
            note: String::new(),
        }],
    );
    assert_eq!(b.node.records_held(), 0);
    assert_eq!(b.node.stats().announcements_unverified, 1);
    // With the cookie it is recorded, for the sender's own address.
    let c = b.cookie(stranger);
    b.send(
        stranger,
        &[
            Message::IHaveSome {
                id,
                note: "n".into(),
            },
            Message::AlwaysReturned(c.clone()),
        ],
    );
    assert_eq!(b.node.records_held(), 1);
    // A verified finder (an unverified one gets only what fits twice its request).
    let finder = node_addr(60, 1);
    let fc = b.cookie(finder);
    let reply = b.send(
        finder,
        &[Message::WhoHasSome { id }, Message::AlwaysReturned(fc)],
    );
    let listed = reply.iter().find_map(|m| match m {
        Message::MaybeTheyHaveSome {
            peers,
            holders,
            notes,
            ..
        } => Some((peers.clone(), *holders, notes.clone())),
        _ => None,
    });
    let (peers, holders, notes) = listed.expect("a MaybeTheyHaveSome");
    assert_eq!(holders, 1);
    assert_eq!(
        peers[0], stranger,
        "holders come first, as the announcer's own address"
    );
    assert_eq!(notes, vec!["n".to_string()]);
    // One IP, many ports: the per-IP quota stops it.
    let quota = Config::default().records.per_ip;
    for port in 0..(quota as u16 + 10) {
        let from = SocketAddr::new(stranger.ip(), 5000 + port);
        b.send(
            from,
            &[
                Message::IHaveSome {
                    id: NodeId::hash(&port.to_le_bytes()),
                    note: String::new(),
                },
                Message::AlwaysReturned(c.clone()),
            ],
        );
    }
    assert_eq!(b.node.records_held(), quota);
    assert!(b.node.stats().announcements_refused >= 10);
    // A note over 256 bytes never even decodes as an announcement.
    let long = format!(
        r#"[{{"IHaveSome":{{"id":"{}","note":"{}"}}}}]"#,
        id.to_hex(),
        "x".repeat(300)
    );
    let before = b.node.stats().skipped_malformed;
    b.node.handle_packet(b.now, stranger, long.as_bytes());
    assert_eq!(b.node.stats().skipped_malformed, before + 1);
}

#[test]
fn bad_content_requests_get_nothing_and_break_nothing() {
    let mut b = Bench::new();
    let bad = [
        r#"[{"PleaseSendContent":{"id":"../../etc/passwd","offset":0,"length":4096}}]"#.to_string(),
        r#"[{"PleaseSendContent":{"id":"zz","offset":0,"length":4096}}]"#.to_string(),
        format!(
            r#"[{{"PleaseSendContent":{{"id":"{}","offset":-1,"length":4096}}}}]"#,
            NodeId::hash(b"x").to_hex()
        ),
        format!(
            r#"[{{"PleaseSendContent":{{"id":"{}","offset":0,"length":-5}}}}]"#,
            NodeId::hash(b"x").to_hex()
        ),
        format!(
            r#"[{{"PleaseSendContent":{{"id":"{}","offset":1e99,"length":4096}}}}]"#,
            NodeId::hash(b"x").to_hex()
        ),
        format!(
            r#"[{{"PleaseSendContent":{{"id":"{}","offset":0,"length":99999999999999999999}}}}]"#,
            NodeId::hash(b"x").to_hex()
        ),
    ];
    let from = node_addr(70, 1);
    for text in &bad {
        let before = b.node.stats().skipped_malformed;
        b.now = b.now + Duration::from_millis(1);
        b.node.handle_packet(b.now, from, text.as_bytes());
        assert_eq!(b.node.stats().skipped_malformed, before + 1, "{text}");
        assert!(b.node.poll_transmit().is_none(), "no answer to {text}");
    }
    // Still answering.
    assert!(!b.send(from, &[Message::PleaseSendPeers]).is_empty());
}
