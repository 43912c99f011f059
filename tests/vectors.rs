//! Checks telekad against the machine-readable vectors in `spec/vectors/` (made by
//! `spec/vectors/generate.py` with Python's hashlib, not by telekad). Every vector is checked;
//! a file, section or field this test does not know fails the test instead of being skipped.
//! No test here touches a socket: the engine scenarios feed datagrams to a sans-IO engine.

use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use telekad::addr::{canonical, parse_peer, subnet};
use telekad::config::Config;
use telekad::engine::{amplification_limit, Engine, SavedContact, SavedState};
use telekad::id::NodeId;
use telekad::persist::{self, LoadError};
use telekad::table::{RoutingTable, TableConfig};
use telekad::time::Time;
use telekad::wire::{self, decode, encode_packet, Echo, Message, PacketError, PacketWriter};

// ---------------------------------------------------------------------------------------
// Loading and small helpers.

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec/vectors")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The files this test reads; any other `.json` in the directory fails
/// `every_vector_file_is_read`.
const FILES: &[&str] = &[
    "packets.json",
    "ids.json",
    "addresses.json",
    "encode.json",
    "state.json",
    "defaults.json",
    "engine.json",
];

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field {key:?} is not an unsigned integer in {v}"))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("field {key:?} is not an array in {v}"))
}

fn obj(v: &Value) -> &Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
}

/// Fails on keys of `v` outside `allowed`, so a misspelt field cannot go unchecked.
fn only_keys(v: &Value, allowed: &[&str]) {
    for k in obj(v).keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "unexpected field {k:?} in {v}"
        );
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a socket address"))
}

fn id(hex: &str) -> NodeId {
    NodeId::from_hex(hex).unwrap_or_else(|e| panic!("{hex:?}: {e}"))
}

/// A datagram: `text` or `hex`, then ASCII spaces up to `pad_to` bytes.
fn datagram(v: &Value) -> Vec<u8> {
    let mut bytes = match (v.get("text"), v.get("hex")) {
        (Some(t), None) => t.as_str().expect("text is a string").as_bytes().to_vec(),
        (None, Some(h)) => hex::decode(h.as_str().expect("hex is a string")).expect("valid hex"),
        _ => panic!("a datagram needs exactly one of text and hex: {v}"),
    };
    if let Some(n) = v.get("pad_to") {
        let n = n.as_u64().expect("pad_to is a number") as usize;
        assert!(n >= bytes.len(), "pad_to is shorter than the datagram: {v}");
        bytes.resize(n, b' ');
    }
    bytes
}

/// Counts checked vectors per section and insists every section checked at least one.
#[derive(Default)]
struct Tally(Vec<(String, usize)>);

impl Tally {
    fn add(&mut self, section: &str, n: usize) {
        assert!(n > 0, "section {section} checked no vector");
        self.0.push((section.to_string(), n));
    }

    fn report(&self, file: &str) {
        let total: usize = self.0.iter().map(|(_, n)| n).sum();
        let parts: Vec<String> = self.0.iter().map(|(s, n)| format!("{s}={n}")).collect();
        eprintln!("{file}: {total} vectors checked ({})", parts.join(", "));
        assert!(total > 0, "{file}: no vector checked");
    }
}

// ---------------------------------------------------------------------------------------
// Messages <-> the JSON shapes the vectors use (spec/vectors/README.md).

fn addrs_json(list: &[SocketAddr]) -> Value {
    Value::Array(list.iter().map(|a| json!(a.to_string())).collect())
}

fn echo_json(name: &str, e: &Echo) -> Value {
    json!({ name: { "json": e.as_json(), "cookie": e.cookie_str() } })
}

/// The vector shape of a message: every field, no wildcard, so a new field or variant
/// breaks the build here instead of going unchecked.
fn describe(m: &Message) -> Value {
    match m {
        Message::PleaseSendPeers => json!({"PleaseSendPeers": {}}),
        Message::Peers { peers, target } => json!({"Peers": {
            "peers": addrs_json(peers),
            "target": target.map(|t| t.to_hex()),
        }}),
        Message::PleaseAlwaysReturnThisMessage(e) => echo_json("PleaseAlwaysReturnThisMessage", e),
        Message::AlwaysReturned(e) => echo_json("AlwaysReturned", e),
        Message::PleaseReturnThisMessage(e) => echo_json("PleaseReturnThisMessage", e),
        Message::ReturnedMessage(e) => echo_json("ReturnedMessage", e),
        Message::WhereAreThey { target } => json!({"WhereAreThey": {"target": target.to_hex()}}),
        Message::YourAddressIs { addr } => json!({"YourAddressIs": {"addr": addr.to_string()}}),
        Message::PleaseSendContent { id, offset, length } => json!({"PleaseSendContent": {
            "id": id.to_hex(), "offset": offset, "length": length,
        }}),
        Message::Content {
            id,
            offset,
            data,
            eof,
        } => json!({"Content": {
            "id": id.to_hex(), "offset": offset, "data_hex": hex::encode(data), "eof": eof,
        }}),
        Message::MaybeTheyHaveSome {
            id,
            peers,
            holders,
            notes,
        } => json!({"MaybeTheyHaveSome": {
            "id": id.to_hex(), "peers": addrs_json(peers), "holders": holders, "notes": notes,
        }}),
        Message::IHaveSome { id, note } => json!({"IHaveSome": {"id": id.to_hex(), "note": note}}),
        Message::WhoHasSome { id } => json!({"WhoHasSome": {"id": id.to_hex()}}),
        Message::PleaseListSupportedMessages => json!({"PleaseListSupportedMessages": {}}),
        Message::SupportedMessages => json!({"SupportedMessages": {}}),
        Message::Padding { len } => json!({"Padding": {"len": len}}),
        Message::Ignored(name) => json!({"Ignored": {"name": name}}),
    }
}

/// The message a vector names (the input side of the encode vectors). Echo bodies are
/// given as `{"cookie": "..."}`, the only kind telekad writes.
fn build(v: &Value) -> Message {
    let o = obj(v);
    assert_eq!(o.len(), 1, "a message is a one-key object: {v}");
    let (name, b) = o.iter().next().expect("one key");
    let addrs = |key: &str| -> Vec<SocketAddr> {
        arr(b, key)
            .iter()
            .map(|a| addr(a.as_str().expect("address string")))
            .collect()
    };
    let echo = || {
        only_keys(b, &["cookie", "json"]);
        let e = Echo::cookie(s(b, "cookie"));
        if let Some(j) = b.get("json") {
            assert_eq!(Some(e.as_json()), j.as_str(), "echo json of {v}");
        }
        e
    };
    match name.as_str() {
        "PleaseSendPeers" => {
            only_keys(b, &[]);
            Message::PleaseSendPeers
        }
        "Peers" => {
            only_keys(b, &["peers", "target"]);
            Message::Peers {
                peers: addrs("peers"),
                target: b.get("target").and_then(Value::as_str).map(id),
            }
        }
        "PleaseAlwaysReturnThisMessage" => Message::PleaseAlwaysReturnThisMessage(echo()),
        "AlwaysReturned" => Message::AlwaysReturned(echo()),
        "PleaseReturnThisMessage" => Message::PleaseReturnThisMessage(echo()),
        "ReturnedMessage" => Message::ReturnedMessage(echo()),
        "WhereAreThey" => {
            only_keys(b, &["target"]);
            Message::WhereAreThey {
                target: id(s(b, "target")),
            }
        }
        "YourAddressIs" => {
            only_keys(b, &["addr"]);
            Message::YourAddressIs {
                addr: addr(s(b, "addr")),
            }
        }
        "PleaseSendContent" => {
            only_keys(b, &["id", "offset", "length"]);
            Message::PleaseSendContent {
                id: id(s(b, "id")),
                offset: u(b, "offset"),
                length: u(b, "length"),
            }
        }
        "Content" => {
            only_keys(b, &["id", "offset", "data_hex", "eof"]);
            Message::Content {
                id: id(s(b, "id")),
                offset: u(b, "offset"),
                data: hex::decode(s(b, "data_hex")).expect("data_hex"),
                eof: u(b, "eof"),
            }
        }
        "MaybeTheyHaveSome" => {
            only_keys(b, &["id", "peers", "holders", "notes"]);
            Message::MaybeTheyHaveSome {
                id: id(s(b, "id")),
                peers: addrs("peers"),
                holders: b.get("holders").and_then(Value::as_u64).unwrap_or(0) as usize,
                notes: b
                    .get("notes")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .map(|n| n.as_str().expect("note").to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        }
        "IHaveSome" => {
            only_keys(b, &["id", "note"]);
            Message::IHaveSome {
                id: id(s(b, "id")),
                note: b
                    .get("note")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }
        }
        "WhoHasSome" => {
            only_keys(b, &["id"]);
            Message::WhoHasSome { id: id(s(b, "id")) }
        }
        "PleaseListSupportedMessages" => {
            only_keys(b, &[]);
            Message::PleaseListSupportedMessages
        }
        "SupportedMessages" => {
            only_keys(b, &[]);
            Message::SupportedMessages
        }
        "Padding" => {
            only_keys(b, &["len"]);
            Message::Padding {
                len: u(b, "len") as usize,
            }
        }
        "Ignored" => {
            only_keys(b, &["name"]);
            let n = s(b, "name");
            let known = wire::IGNORED_MESSAGES
                .iter()
                .find(|x| **x == n)
                .unwrap_or_else(|| panic!("{n:?} is not an ignored message name"));
            Message::Ignored(known)
        }
        other => panic!("unknown message kind {other:?} in a vector"),
    }
}

/// What decoding an encoded message gives back: canonical addresses, and for `Padding` the
/// length of the whole body text (`{"p":"` + filler + `"}`), not the filler alone.
fn as_received(m: Message) -> Message {
    match m {
        Message::Peers { peers, target } => Message::Peers {
            peers: peers.into_iter().map(canonical).collect(),
            target,
        },
        Message::MaybeTheyHaveSome {
            id,
            peers,
            holders,
            notes,
        } => Message::MaybeTheyHaveSome {
            id,
            peers: peers.into_iter().map(canonical).collect(),
            holders,
            notes,
        },
        Message::YourAddressIs { addr } => Message::YourAddressIs {
            addr: canonical(addr),
        },
        Message::Padding { len } => Message::Padding {
            len: len + r#"{"p":""}"#.len(),
        },
        m => m,
    }
}

// ---------------------------------------------------------------------------------------
// packets.json

fn check_packet(v: &Value) -> Result<(), String> {
    let got = decode(&datagram(v));
    let want = &v["expect"];
    if let Some(why) = want.get("dropped") {
        only_keys(want, &["dropped"]);
        let want_err = match why.as_str() {
            Some("not_array") => PacketError::NotJsonArray,
            Some("too_large") => PacketError::TooLarge,
            _ => panic!("unknown drop reason {why}"),
        };
        return match got {
            Err(e) if e == want_err => Ok(()),
            other => Err(format!("expected {want_err:?}, got {other:?}")),
        };
    }
    only_keys(
        want,
        &[
            "messages",
            "unknown",
            "malformed",
            "excess",
            "bad_addresses",
        ],
    );
    let d = got.map_err(|e| format!("expected messages, datagram dropped: {e:?}"))?;
    let described = json!({
        "messages": d.messages.iter().map(describe).collect::<Vec<_>>(),
        "unknown": d.unknown,
        "malformed": d.malformed,
        "excess": d.excess,
        "bad_addresses": d.bad_addresses,
    });
    if &described == want {
        Ok(())
    } else {
        Err(format!("expected {want}\n   got {described}"))
    }
}

#[test]
fn packets() {
    let all = load("packets.json");
    let list = all.as_array().expect("packets.json is a list");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut known_bugs = Vec::new();
    let mut names = BTreeSet::new();
    for v in list {
        only_keys(
            v,
            &[
                "name",
                "text",
                "hex",
                "pad_to",
                "note",
                "known_bug",
                "expect",
            ],
        );
        let name = s(v, "name");
        assert!(names.insert(name.to_string()), "duplicate vector {name}");
        let result = check_packet(v);
        checked += 1;
        match (v.get("known_bug"), result) {
            (None, Ok(())) => {}
            (None, Err(e)) => failures.push(format!("{name}: {e}")),
            (Some(bug), Err(e)) => known_bugs.push(format!("{name}: {bug}\n   {e}")),
            (Some(_), Ok(())) => failures.push(format!(
                "{name}: marked known_bug but now passes; remove the marker"
            )),
        }
    }
    for k in &known_bugs {
        eprintln!("KNOWN BUG (vector kept, expected to fail until fixed) {k}");
    }
    let mut t = Tally::default();
    t.add("packets", checked);
    t.report("packets.json");
    eprintln!(
        "packets.json: {} known-bug vectors fail as recorded",
        known_bugs.len()
    );
    assert!(
        failures.is_empty(),
        "{} packet vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// ids.json

#[test]
fn ids() {
    let v = load("ids.json");
    only_keys(
        &v,
        &[
            "addresses",
            "topics",
            "hashes",
            "distances",
            "closest_order",
        ],
    );
    let mut t = Tally::default();

    let mut n = 0;
    for a in arr(&v, "addresses") {
        only_keys(a, &["addr", "canonical", "id"]);
        let sa = addr(s(a, "addr"));
        assert_eq!(
            canonical(sa).to_string(),
            s(a, "canonical"),
            "canonical of {a}"
        );
        assert_eq!(NodeId::of_addr(sa).to_hex(), s(a, "id"), "id of {a}");
        assert_eq!(
            NodeId::hash(s(a, "canonical").as_bytes()).to_hex(),
            s(a, "id"),
            "sha256 of the canonical text of {a}"
        );
        n += 1;
    }
    t.add("addresses", n);

    n = 0;
    for x in arr(&v, "topics") {
        only_keys(x, &["topic", "id"]);
        assert_eq!(NodeId::of_topic(s(x, "topic")).to_hex(), s(x, "id"), "{x}");
        n += 1;
    }
    t.add("topics", n);

    n = 0;
    for x in arr(&v, "hashes") {
        only_keys(x, &["data_hex", "id"]);
        let data = hex::decode(s(x, "data_hex")).expect("hex");
        assert_eq!(NodeId::hash(&data).to_hex(), s(x, "id"), "{x}");
        n += 1;
    }
    t.add("hashes", n);

    n = 0;
    for x in arr(&v, "distances") {
        only_keys(
            x,
            &[
                "a",
                "b",
                "distance",
                "bucket_index",
                "leading_zeros",
                "note",
            ],
        );
        let (a, b) = (id(s(x, "a")), id(s(x, "b")));
        let d = a.distance(&b);
        assert_eq!(d.to_hex(), s(x, "distance"), "{x}");
        assert_eq!(b.distance(&a), d, "distance is symmetric: {x}");
        let lz = u(x, "leading_zeros") as usize;
        assert_eq!(d.leading_zeros(), lz, "{x}");
        assert_eq!(d.log2() as usize, 256 - lz, "{x}");
        let want = x["bucket_index"].as_u64().map(|i| i as usize);
        assert_eq!(a.bucket_index(&b), want, "{x}");
        assert_eq!(b.bucket_index(&a), want, "{x}");
        n += 1;
    }
    t.add("distances", n);

    n = 0;
    for x in arr(&v, "closest_order") {
        only_keys(x, &["target", "addrs", "nearest_first"]);
        let target = id(s(x, "target"));
        let addrs: Vec<SocketAddr> = arr(x, "addrs")
            .iter()
            .map(|a| addr(a.as_str().expect("address")))
            .collect();
        let want: Vec<&str> = arr(x, "nearest_first")
            .iter()
            .map(|a| a.as_str().expect("address"))
            .collect();
        // By Distance's order.
        let mut sorted = addrs.clone();
        sorted.sort_by_key(|a| NodeId::of_addr(*a).distance(&target));
        let got: Vec<String> = sorted.iter().map(|a| a.to_string()).collect();
        assert_eq!(got, want, "sorted by distance: {x}");
        // By the routing table's closest(), caps off so every address gets in.
        let own = NodeId::of_addr(addr("198.51.100.1:24254"));
        let cfg = TableConfig {
            max_per_ip: 0,
            max_per_subnet: 0,
            ..TableConfig::default()
        };
        let mut table = RoutingTable::new(own, cfg);
        for a in &addrs {
            table.seen(*a, Time::ZERO, None);
        }
        assert_eq!(table.len(), addrs.len(), "every address fits: {x}");
        for k in [1, 3, addrs.len()] {
            let got: Vec<String> = table
                .closest(&target, k)
                .iter()
                .map(|c| c.addr().to_string())
                .collect();
            assert_eq!(got, want[..k], "closest({k}) of {x}");
        }
        n += 1;
    }
    t.add("closest_order", n);
    t.report("ids.json");
}

// ---------------------------------------------------------------------------------------
// addresses.json

#[test]
fn addresses() {
    let v = load("addresses.json");
    only_keys(&v, &["parse_peer", "same_subnet"]);
    let mut t = Tally::default();
    let mut n = 0;
    for x in arr(&v, "parse_peer") {
        only_keys(x, &["text", "parsed", "why"]);
        let got = parse_peer(s(x, "text")).map(|a| a.to_string());
        assert_eq!(got.as_deref(), x["parsed"].as_str(), "parse_peer of {x}");
        n += 1;
    }
    t.add("parse_peer", n);
    n = 0;
    for x in arr(&v, "same_subnet") {
        only_keys(x, &["a", "b", "same"]);
        let a: IpAddr = s(x, "a").parse().expect("ip");
        let b: IpAddr = s(x, "b").parse().expect("ip");
        let same = x["same"].as_bool().expect("same is a bool");
        assert_eq!(subnet(a) == subnet(b), same, "{x}");
        n += 1;
    }
    t.add("same_subnet", n);
    t.report("addresses.json");
}

// ---------------------------------------------------------------------------------------
// encode.json

#[test]
fn encode() {
    let v = load("encode.json");
    only_keys(&v, &["messages", "packets", "writer", "amplification"]);
    let mut t = Tally::default();

    let mut n = 0;
    for x in arr(&v, "messages") {
        only_keys(x, &["name", "message", "text"]);
        let m = build(&x["message"]);
        let text = s(x, "text");
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            text,
            "encoding of {}",
            s(x, "name")
        );
        assert_eq!(
            m.encoded_len(),
            text.len(),
            "encoded_len of {}",
            s(x, "name")
        );
        // What telekad writes, telekad reads back.
        let back = decode(format!("[{text}]").as_bytes()).expect("decodes");
        assert_eq!(
            back.messages,
            vec![as_received(m)],
            "round trip of {}",
            s(x, "name")
        );
        assert_eq!(
            (
                back.unknown,
                back.malformed,
                back.excess,
                back.bad_addresses
            ),
            (0, 0, 0, 0)
        );
        n += 1;
    }
    t.add("messages", n);

    n = 0;
    for x in arr(&v, "packets") {
        only_keys(x, &["name", "messages", "text"]);
        let msgs: Vec<Message> = arr(x, "messages").iter().map(build).collect();
        let out = encode_packet(&msgs);
        assert_eq!(
            String::from_utf8_lossy(&out),
            s(x, "text"),
            "{}",
            s(x, "name")
        );
        n += 1;
    }
    t.add("packets", n);

    n = 0;
    for x in arr(&v, "writer") {
        only_keys(x, &["name", "limit", "ops", "finish"]);
        let name = s(x, "name");
        let mut w = PacketWriter::new(u(x, "limit") as usize);
        for op in arr(x, "ops") {
            if let Some(m) = op.get("push") {
                only_keys(op, &["push", "ok"]);
                let want = op["ok"].as_bool().expect("ok is a bool");
                assert_eq!(w.push(&build(m)), want, "{name}: push {m}");
            } else {
                only_keys(op, &["push_peers", "written"]);
                let p = &op["push_peers"];
                only_keys(p, &["peers", "target", "min"]);
                let peers: Vec<SocketAddr> = arr(p, "peers")
                    .iter()
                    .map(|a| addr(a.as_str().expect("address")))
                    .collect();
                let target = p["target"].as_str().map(id);
                let want = op["written"].as_u64().map(|n| n as usize);
                assert_eq!(
                    w.push_peers(&peers, target, u(p, "min") as usize),
                    want,
                    "{name}: push_peers {p}"
                );
            }
        }
        let got = w.finish().map(|b| String::from_utf8(b).expect("utf-8"));
        assert_eq!(got.as_deref(), x["finish"].as_str(), "{name}: finish");
        n += 1;
    }
    t.add("writer", n);

    n = 0;
    for x in arr(&v, "amplification") {
        only_keys(x, &["request_len", "limit"]);
        assert_eq!(
            amplification_limit(u(x, "request_len") as usize),
            u(x, "limit") as usize,
            "{x}"
        );
        n += 1;
    }
    t.add("amplification", n);
    t.report("encode.json");
}

// ---------------------------------------------------------------------------------------
// state.json

fn state_json(st: &SavedState) -> Value {
    json!({
        "public_addr": st.public_addr.map(|a| a.to_string()),
        "contacts": st.contacts.iter().map(|c| json!({
            "addr": c.addr.to_string(),
            "rtt_us": c.rtt.map(|d| d.as_micros() as u64),
        })).collect::<Vec<_>>(),
    })
}

fn build_state(v: &Value) -> SavedState {
    only_keys(v, &["public_addr", "contacts"]);
    SavedState {
        public_addr: v["public_addr"].as_str().map(addr),
        contacts: arr(v, "contacts")
            .iter()
            .map(|c| {
                only_keys(c, &["addr", "rtt_us"]);
                SavedContact {
                    addr: addr(s(c, "addr")),
                    rtt: c["rtt_us"].as_u64().map(Duration::from_micros),
                }
            })
            .collect(),
    }
}

#[test]
fn state() {
    let v = load("state.json");
    only_keys(&v, &["encode", "decode"]);
    let mut t = Tally::default();
    let mut n = 0;
    for x in arr(&v, "encode") {
        only_keys(x, &["name", "state", "text"]);
        let st = build_state(&x["state"]);
        let bytes = persist::encode(&st);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            s(x, "text"),
            "{}",
            s(x, "name")
        );
        let back = persist::decode(&bytes).expect("own output decodes");
        assert_eq!(state_json(&back), x["state"], "{}", s(x, "name"));
        n += 1;
    }
    t.add("encode", n);
    n = 0;
    for x in arr(&v, "decode") {
        only_keys(x, &["name", "text", "hex", "expect"]);
        let name = s(x, "name");
        let got = persist::decode(&datagram(x));
        let want = &x["expect"];
        match (
            got,
            want.get("state"),
            want.get("error").and_then(Value::as_str),
        ) {
            (Ok(st), Some(w), None) => assert_eq!(&state_json(&st), w, "{name}"),
            (Err(LoadError::Corrupt(_)), None, Some("corrupt")) => {}
            (Err(LoadError::FutureVersion(got)), None, Some("future_version")) => {
                assert_eq!(u64::from(got), u(want, "version"), "{name}")
            }
            (got, _, _) => panic!("{name}: expected {want}, got {got:?}"),
        }
        n += 1;
    }
    t.add("decode", n);
    t.report("state.json");
}

// ---------------------------------------------------------------------------------------
// defaults.json

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[test]
fn defaults() {
    let v = load("defaults.json");
    only_keys(
        &v,
        &["config", "wire", "ignored_messages", "supported_messages"],
    );
    let mut t = Tally::default();
    let c = Config::default();
    let actual: Vec<(&str, u64)> = vec![
        ("table.k", c.table.k as u64),
        ("table.replacements", c.table.replacements as u64),
        ("table.max_per_ip", c.table.max_per_ip as u64),
        ("table.max_per_subnet", c.table.max_per_subnet as u64),
        ("table.max_failures", u64::from(c.table.max_failures)),
        ("lookup.k", c.lookup.k as u64),
        ("lookup.alpha", c.lookup.alpha as u64),
        ("lookup.deadline_ms", ms(c.lookup.deadline)),
        ("lookup.min_timeout_ms", ms(c.lookup.min_timeout)),
        ("lookup.max_timeout_ms", ms(c.lookup.max_timeout)),
        ("lookup.max_from_answer", c.lookup.max_from_answer as u64),
        ("lookup.attempts", u64::from(c.lookup.attempts)),
        ("lookup.max_per_ip", c.lookup.max_per_ip as u64),
        ("lookup.max_per_subnet", c.lookup.max_per_subnet as u64),
        ("refresh_interval_ms", ms(c.refresh_interval)),
        ("bootstrap_retry_ms", ms(c.bootstrap_retry)),
        ("cookie_rotation_ms", ms(c.cookie_rotation)),
        ("tick_ms", ms(c.tick)),
        ("ping_interval_ms", ms(c.ping_interval)),
        ("evict_check_after_ms", ms(c.evict_check_after)),
        ("initial_timeout_ms", ms(c.initial_timeout)),
        ("max_candidates", c.max_candidates as u64),
        ("max_pings_in_flight", c.max_pings_in_flight as u64),
        ("max_requests_in_flight", c.max_requests_in_flight as u64),
        ("max_peer_book", c.max_peer_book as u64),
        ("max_lookups", c.max_lookups as u64),
        ("first_contact_padding", c.first_contact_padding as u64),
        ("address_quorum", c.address_quorum as u64),
        (
            "rate_limit.per_ip.rate",
            u64::from(c.rate_limit.per_ip.rate),
        ),
        (
            "rate_limit.per_ip.burst",
            u64::from(c.rate_limit.per_ip.burst),
        ),
        (
            "rate_limit.global.rate",
            u64::from(c.rate_limit.global.rate),
        ),
        (
            "rate_limit.global.burst",
            u64::from(c.rate_limit.global.burst),
        ),
        (
            "rate_limit.blocks_per_ip.rate",
            u64::from(c.rate_limit.blocks_per_ip.rate),
        ),
        (
            "rate_limit.blocks_per_ip.burst",
            u64::from(c.rate_limit.blocks_per_ip.burst),
        ),
        ("rate_limit.max_sources", c.rate_limit.max_sources as u64),
    ];
    let want = obj(&v["config"]);
    assert_eq!(
        want.len(),
        actual.len(),
        "defaults.json and this test list different settings"
    );
    for (k, got) in &actual {
        let w = want
            .get(*k)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("defaults.json lacks {k}"));
        assert_eq!(*got, w, "Config::default() {k}");
    }
    t.add("config", actual.len());

    let wire_consts: Vec<(&str, Value)> = vec![
        ("MAX_DATAGRAM", json!(wire::MAX_DATAGRAM)),
        ("MAX_MESSAGES", json!(wire::MAX_MESSAGES)),
        ("MAX_ECHO", json!(wire::MAX_ECHO)),
        ("MAX_PEERS", json!(wire::MAX_PEERS)),
        ("HEADER_OVERHEAD", json!(wire::HEADER_OVERHEAD)),
        ("BLOCK_SIZE", json!(wire::BLOCK_SIZE)),
        ("COOKIE_HEX", json!(telekad::cookie::COOKIE_HEX)),
        ("MAX_ADDR_TEXT", json!(telekad::addr::MAX_ADDR_TEXT)),
        ("STATE_VERSION", json!(persist::STATE_VERSION)),
        ("STATE_FILE", json!(persist::STATE_FILE)),
    ];
    let want = obj(&v["wire"]);
    assert_eq!(want.len(), wire_consts.len(), "constant lists differ");
    for (k, got) in &wire_consts {
        assert_eq!(Some(got), want.get(*k), "constant {k}");
    }
    t.add("wire", wire_consts.len());

    let names = |key: &str| -> Vec<String> {
        arr(&v, key)
            .iter()
            .map(|x| x.as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names("ignored_messages"), wire::IGNORED_MESSAGES);
    assert_eq!(names("supported_messages"), wire::SUPPORTED_MESSAGES);
    t.add("message_lists", 2);
    t.report("defaults.json");
}

// ---------------------------------------------------------------------------------------
// engine.json: datagrams into a sans-IO engine, datagrams out. Templates hold `$cookie:N$`
// (16 lowercase hex digits) and `$nonce:N$` (`tk.` + 16 lowercase hex digits); a name is
// bound the first time it is matched and must match the same text after that.

fn placeholder_len(kind: &str) -> usize {
    match kind {
        "cookie" => 16,
        "nonce" => 19,
        _ => panic!("unknown placeholder kind {kind:?}"),
    }
}

fn placeholder_ok(kind: &str, text: &str) -> bool {
    let hex16 = |h: &str| {
        h.len() == 16
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    match kind {
        "cookie" => hex16(text),
        "nonce" => text.strip_prefix("tk.").is_some_and(hex16),
        _ => false,
    }
}

/// Splits a template into literal text and `(kind, name)` placeholders.
fn template_parts(t: &str) -> Vec<Result<&str, (&str, &str)>> {
    let pieces: Vec<&str> = t.split('$').collect();
    assert!(pieces.len() % 2 == 1, "unbalanced $ in template {t}");
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i % 2 == 0 {
                Ok(*p)
            } else {
                let (kind, name) = p
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad placeholder {p:?}"));
                Err((kind, name))
            }
        })
        .collect()
}

fn fill(t: &str, vars: &HashMap<String, String>) -> String {
    template_parts(t)
        .into_iter()
        .map(|p| match p {
            Ok(lit) => lit.to_string(),
            Err((_, name)) => vars
                .get(name)
                .unwrap_or_else(|| panic!("placeholder {name} used before it was bound"))
                .clone(),
        })
        .collect()
}

fn matches(t: &str, actual: &str, vars: &mut HashMap<String, String>) -> Result<(), String> {
    let mut rest = actual;
    let mut bound = Vec::new();
    for p in template_parts(t) {
        match p {
            Ok(lit) => {
                rest = rest
                    .strip_prefix(lit)
                    .ok_or_else(|| format!("expected {lit:?} at {rest:?}"))?;
            }
            Err((kind, name)) => {
                let n = placeholder_len(kind);
                let got = rest.get(..n).ok_or("datagram ends early")?;
                if !placeholder_ok(kind, got) {
                    return Err(format!("{got:?} is not a {kind}"));
                }
                match vars.get(name) {
                    Some(v) if v != got => {
                        return Err(format!("{name} was {v:?}, now {got:?}"));
                    }
                    Some(_) => {}
                    None => bound.push((name.to_string(), got.to_string())),
                }
                rest = &rest[n..];
            }
        }
    }
    if !rest.is_empty() {
        return Err(format!("unexpected trailing text {rest:?}"));
    }
    vars.extend(bound);
    Ok(())
}

fn stat(e: &Engine, name: &str) -> u64 {
    let s = e.stats();
    match name {
        "dropped_not_array" => s.dropped_not_array,
        "dropped_too_large" => s.dropped_too_large,
        "dropped_empty" => s.dropped_empty,
        "skipped_unknown" => s.skipped_unknown,
        "skipped_malformed" => s.skipped_malformed,
        "skipped_excess" => s.skipped_excess,
        "bad_addresses" => s.bad_addresses,
        "cookie_invalid" => s.cookie_invalid,
        "replies_trimmed" => s.replies_trimmed,
        "unsolicited" => s.unsolicited,
        "address_changes" => s.address_changes,
        other => panic!("unknown stat {other:?}"),
    }
}

#[test]
fn engine() {
    let v = load("engine.json");
    let scenarios = v.as_array().expect("engine.json is a list");
    let mut t = Tally::default();
    let (mut steps_checked, mut datagrams_checked) = (0, 0);
    for sc in scenarios {
        only_keys(sc, &["name", "local", "seed", "note", "steps"]);
        let name = s(sc, "name");
        let mut e = Engine::new(
            Config::default(),
            addr(s(sc, "local")),
            u(sc, "seed"),
            Time::ZERO,
        );
        let mut vars = HashMap::new();
        for (i, st) in arr(sc, "steps").iter().enumerate() {
            only_keys(
                st,
                &[
                    "note",
                    "from",
                    "text",
                    "pad_to",
                    "sent",
                    "table",
                    "public_addr",
                    "id",
                    "stats",
                ],
            );
            let at = format!("{name} step {i} ({})", st["note"].as_str().unwrap_or(""));
            let mut bytes = fill(s(st, "text"), &vars).into_bytes();
            if let Some(n) = st.get("pad_to") {
                bytes.resize(n.as_u64().expect("pad_to") as usize, b' ');
            }
            let now = Time::from_millis(10 * i as u64);
            e.handle_packet(now, addr(s(st, "from")), &bytes);
            let mut sent = Vec::new();
            while let Some(tx) = e.poll_transmit() {
                sent.push(tx);
            }
            let want = arr(st, "sent");
            assert_eq!(
                sent.len(),
                want.len(),
                "{at}: datagrams sent: {:?}",
                sent.iter()
                    .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
                    .collect::<Vec<_>>()
            );
            for (tx, w) in sent.iter().zip(want) {
                only_keys(w, &["to", "text"]);
                assert_eq!(tx.dst, addr(s(w, "to")), "{at}: destination");
                let text = String::from_utf8(tx.payload.clone()).expect("utf-8 payload");
                if let Err(why) = matches(s(w, "text"), &text, &mut vars) {
                    panic!("{at}: {why}\n  sent {text}\n  want {}", s(w, "text"));
                }
                datagrams_checked += 1;
            }
            if let Some(tab) = st.get("table") {
                let mut got: Vec<String> =
                    e.table().contacts().map(|c| c.addr().to_string()).collect();
                got.sort();
                let want: Vec<&str> = tab
                    .as_array()
                    .expect("table")
                    .iter()
                    .map(|a| a.as_str().expect("address"))
                    .collect();
                assert_eq!(got, want, "{at}: routing table");
            }
            if let Some(p) = st.get("public_addr") {
                assert_eq!(
                    e.public_addr().to_string(),
                    p.as_str().expect("address"),
                    "{at}: public address"
                );
            }
            if let Some(x) = st.get("id") {
                assert_eq!(e.id().to_hex(), x.as_str().expect("hex"), "{at}: node id");
            }
            if let Some(stats) = st.get("stats") {
                for (k, w) in obj(stats) {
                    assert_eq!(stat(&e, k), w.as_u64().expect("count"), "{at}: stats.{k}");
                }
            }
            steps_checked += 1;
        }
    }
    t.add("scenarios", scenarios.len());
    t.add("steps", steps_checked);
    t.add("datagrams", datagrams_checked);
    t.report("engine.json");
}

// ---------------------------------------------------------------------------------------

#[test]
fn every_vector_file_is_read() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("spec/vectors exists") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".json") {
            assert!(
                FILES.contains(&name.as_str()),
                "{name} is in spec/vectors but no test reads it"
            );
            found.push(name);
        }
    }
    for f in FILES {
        assert!(found.iter().any(|n| n == f), "{f} is missing");
        let v = load(f);
        let len = match &v {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        assert!(len > 0, "{f} is empty");
    }
}
