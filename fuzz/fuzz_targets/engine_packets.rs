//! One engine fed a fuzzer-chosen sequence of steps: datagrams from a small pool of
//! addresses (plus arbitrary ones), time passing, timer wake-ups and owner commands
//! (lookups, bootstrap, pings, announcements, downloads). After every step the engine's
//! output and state are checked against what the code promises:
//!
//! - no panic, and every datagram it hands out goes to an address a peer can be at, is at
//!   most `MAX_DATAGRAM` bytes, decodes as cjp2p with no unknown or malformed element, and
//!   lists only usable addresses;
//! - a request from an unverified source (no `AlwaysReturned` at all) gets exactly one reply,
//!   within the amplification limit; a datagram that is no request gets none; a datagram
//!   from an unroutable source gets nothing;
//! - state stays within the configured bounds: routing table (k per bucket, per-IP and
//!   per-subnet caps), peer book, requests in flight, lookups, records, download
//!   windows;
//! - the counters add up (datagrams and bytes out, requests, lookups);
//! - the engine does not ask to be woken in the past forever (a driver would spin).
//!
//! Two input forms. Bytes that start with `[`, `@`, `+` or `!` are a script, one step a line
//! (readable seeds; the format is in `fuzz/README.md`); anything else is read with
//! `arbitrary` as a sequence of steps, each message field chosen by the fuzzer and able to
//! echo what the engine sent earlier (its cookie, its nonces, the blocks it asked for), so
//! the fuzzer gets past the anti-spoofing checks into lookups, announcements and downloads.
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use telekad::addr::{canonical, is_routable_peer, subnet};
use telekad::config::Config;
use telekad::download::MAX_IN_FLIGHT;
use telekad::engine::{amplification_limit, BlockSink, Engine, Event, SavedContact, SavedState};
use telekad::id::NodeId;
use telekad::lookup::LookupConfig;
use telekad::records::RecordConfig;
use telekad::table::TableConfig;
use telekad::time::Time;
use telekad::wire::{decode, Message, BLOCK_SIZE, MAX_DATAGRAM};

// ---------------------------------------------------------------------------------------
// Fixed world: addresses, content.

/// The pool most datagrams come from: loopback spread over many /24s (so the table can
/// grow past the subnet cap), a few ports of one IP (per-IP cap), private, documentation,
/// link-local and IPv6 addresses.
fn pool() -> &'static [SocketAddr] {
    static POOL: std::sync::OnceLock<Vec<SocketAddr>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut v: Vec<SocketAddr> = Vec::new();
        for i in 1..=16u8 {
            v.push(SocketAddr::new(Ipv4Addr::new(127, 0, i, 1).into(), 24254));
        }
        for p in [24255u16, 24256, 1] {
            v.push(SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1).into(), p));
        }
        for s in [
            "127.0.1.2:24254",
            "127.0.1.3:24254",
            "10.0.0.1:24254",
            "192.168.1.20:5000",
            "192.0.2.1:24254",
            "198.51.100.7:24254",
            "[::1]:24254",
            "[::1]:24255",
            "[2001:db8::1]:24254",
            "[2001:db8:1::1]:24254",
            "[2001:db8:2::5]:1",
            "[fe80::1]:24254",
            "[fd00::1]:24254",
        ] {
            v.push(s.parse().unwrap());
        }
        v
    })
}

/// Sources no datagram can really come back to (port 0, unspecified, multicast, broadcast).
const UNROUTABLE: &[&str] = &[
    "0.0.0.0:0",
    "0.0.0.0:24254",
    "127.0.5.1:0",
    "224.0.0.1:24254",
    "255.255.255.255:24254",
    "[::]:24254",
    "[ff02::1]:24254",
];

/// Content the engine holds (and serves), content it may download, and the empty item.
struct Items {
    held: Vec<u8>,
    held_id: NodeId,
    wanted: Vec<u8>,
    wanted_id: NodeId,
    empty_id: NodeId,
}

fn items() -> &'static Items {
    static ITEMS: std::sync::OnceLock<Items> = std::sync::OnceLock::new();
    ITEMS.get_or_init(|| {
        let held: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
        // Two whole blocks and a short third one.
        let wanted: Vec<u8> = (0..(2 * BLOCK_SIZE + 100) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        Items {
            held_id: NodeId::hash(&held),
            wanted_id: NodeId::hash(&wanted),
            empty_id: NodeId::hash(b""),
            held,
            wanted,
        }
    })
}

/// The bytes of `id` at `offset`, `len` long, when the fuzzer knows the content.
fn content_bytes(id: &NodeId, offset: u64, len: u64) -> Option<Vec<u8>> {
    let it = items();
    let data: &[u8] = if *id == it.wanted_id {
        &it.wanted
    } else if *id == it.held_id {
        &it.held
    } else if *id == it.empty_id {
        &[]
    } else {
        return None;
    };
    let start = usize::try_from(offset).ok()?.min(data.len());
    let end = start.saturating_add(len as usize).min(data.len());
    Some(data[start..end].to_vec())
}

/// Sink of a download: sparse blocks in memory, bounded (a full disk, as the engine sees it).
#[derive(Debug, Default)]
struct Sink {
    blocks: BTreeMap<u64, Vec<u8>>,
    stored: usize,
}

const SINK_MAX: usize = 1 << 20;

impl BlockSink for Sink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.stored + data.len() > SINK_MAX {
            return Err(io::Error::other("sink full"));
        }
        self.stored += data.len();
        if let Some(old) = self.blocks.insert(offset, data.to_vec()) {
            self.stored -= old.len();
        }
        Ok(())
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.blocks.get(&offset) {
            Some(b) if b.len() >= buf.len() => {
                buf.copy_from_slice(&b[..buf.len()]);
                Ok(())
            }
            _ => Err(io::Error::other("read of a block never written")),
        }
    }
    fn checkpoint(&mut self, _len: u64, _have: &[bool]) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self) {
        self.blocks.clear();
        self.stored = 0;
    }
}

/// Small limits so that the fuzzer reaches them quickly; every one keeps its meaning.
#[allow(clippy::needless_update)]
fn config(flags: u8) -> Config {
    Config {
        table: TableConfig {
            k: 4,
            replacements: 2,
            max_per_ip: 2,
            max_per_subnet: 3,
            max_failures: 2,
            ..TableConfig::default()
        },
        lookup: LookupConfig {
            k: 4,
            alpha: 2,
            deadline: Duration::from_secs(5),
            min_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(1),
            max_from_answer: 16,
            attempts: 2,
            ..LookupConfig::default()
        },
        records: RecordConfig {
            ttl: Duration::from_secs(600),
            per_ip: 3,
            per_id: 5,
            total: 12,
            ..RecordConfig::default()
        },
        reannounce: Duration::from_secs(300),
        refresh_interval: Duration::from_secs(300),
        bootstrap_retry: Duration::from_secs(60),
        cookie_rotation: Duration::from_secs(120),
        tick: Duration::from_secs(1),
        ping_interval: Duration::from_secs(120),
        initial_timeout: Duration::from_millis(500),
        max_candidates: 12,
        max_pings_in_flight: 4,
        max_requests_in_flight: 24,
        max_peer_book: 16,
        max_lookups: 4,
        first_contact_padding: if flags & 2 != 0 { 0 } else { 640 },
        read_only: flags & 0x1c == 0x1c,
        address_quorum: if flags & 0x20 != 0 { 2 } else { 3 },
        // Whatever else there is (rate limits) as a public node runs it: an input is far
        // too short to spend a default request budget.
        ..Config::default()
    }
}

fn local_addr(flags: u8) -> SocketAddr {
    match flags >> 6 {
        0 | 1 => "127.0.0.1:24254",
        2 => "[::1]:24254",
        _ => "0.0.0.0:24254",
    }
    .parse()
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// The harness: one engine, what it told us, and the checks.

/// Most lookup-starting owner commands per input (keeps the lookup bound tight).
const MAX_COMMANDS: usize = 8;
/// Most steps per input.
const MAX_STEPS: usize = 300;

struct Harness {
    e: Engine,
    cfg: Config,
    now: Time,
    /// Cookie bodies the engine asked each address to return (most recent last).
    cookies: HashMap<SocketAddr, Vec<String>>,
    /// Nonce bodies the engine asked each address to echo (most recent last).
    nonces: HashMap<SocketAddr, Vec<String>>,
    /// Every nonce lately sent, to anyone.
    all_nonces: Vec<String>,
    /// Blocks the engine asked of each address: (id, offset, length).
    blocks: HashMap<SocketAddr, Vec<(NodeId, u64, u64)>>,
    /// Owner commands that started a lookup.
    commands: usize,
    /// Ids ever announced (each may have a re-announcement lookup running).
    announced: BTreeSet<NodeId>,
    downloads_started: usize,
    /// Whether the public address ever changed (restored, or learned from peers). Until it
    /// does, nothing is ever sent to our own address; after, state from before the change
    /// (bootstrap list, lookup candidates) may still name it, harmlessly: such a datagram
    /// comes back as one from ourselves and is ignored.
    moved: bool,
    packets_in: u64,
    datagrams_out: u64,
    bytes_out: u64,
}

fn push_bounded(v: &mut Vec<String>, s: String, max: usize) {
    if !v.contains(&s) {
        v.push(s);
    }
    if v.len() > max {
        v.remove(0);
    }
}

impl Harness {
    fn new(flags: u8) -> Harness {
        let cfg = config(flags);
        let mut e = Engine::new(cfg.clone(), local_addr(flags), 7, Time::ZERO);
        let it = items();
        e.hold(it.held_id, Arc::new(it.held.clone()));
        e.hold(it.empty_id, Arc::new(Vec::new()));
        Harness {
            e,
            cfg,
            now: Time::from_millis(1000),
            cookies: HashMap::new(),
            nonces: HashMap::new(),
            all_nonces: Vec::new(),
            blocks: HashMap::new(),
            commands: 0,
            announced: BTreeSet::new(),
            downloads_started: 0,
            moved: false,
            packets_in: 0,
            datagrams_out: 0,
            bytes_out: 0,
        }
    }

    fn is_self(&self, a: SocketAddr) -> bool {
        let a = canonical(a);
        a == self.e.local_addr() || a == self.e.public_addr()
    }

    /// Time passes, up to about 140 years after the start: no clock gets near the end of
    /// `Time` (584,000 years), where it saturates and no timer can fall due any more.
    fn advance(&mut self, d: Duration) {
        self.now = (self.now + d).min(Time::from_micros(1 << 52));
    }

    /// Feeds one datagram and checks the reply rules.
    fn packet(&mut self, src: SocketAddr, data: &[u8]) {
        if verbose() {
            eprintln!("{:?} {src} <- {}", self.now, String::from_utf8_lossy(data));
        }
        let from_self = self.is_self(src);
        self.e.handle_packet(self.now, src, data);
        self.packets_in += 1;
        let sent = self.drain();
        // What the datagram asked, as the engine's own decoder reads it.
        let Ok(d) = decode(data) else {
            assert!(sent.is_empty(), "an unreadable datagram caused output");
            return;
        };
        if d.messages.is_empty() || from_self || self.cfg.read_only {
            let to_src = sent.iter().filter(|(dst, _, _)| *dst == canonical(src));
            assert_eq!(
                to_src.filter(|(_, _, m)| is_reply(m)).count(),
                0,
                "a reply to a datagram that must get none"
            );
            if d.messages.is_empty() || from_self {
                assert!(sent.is_empty(), "output for an ignored datagram");
            }
            return;
        }
        let request = d.messages.iter().any(Message::is_request);
        let unverified = !d
            .messages
            .iter()
            .any(|m| matches!(m, Message::AlwaysReturned(_)));
        if !is_routable_peer(src) {
            // A spoofed source: nothing goes back there (it would go nowhere, or to a whole
            // multicast group).
            assert!(
                sent.iter().all(|(dst, _, _)| *dst != canonical(src)),
                "a datagram to the unroutable source {src}"
            );
            return;
        }
        let replies: Vec<&(SocketAddr, Vec<u8>, Vec<Message>)> = sent
            .iter()
            .filter(|(dst, _, m)| *dst == canonical(src) && is_reply(m))
            .collect();
        if !request {
            assert!(replies.is_empty(), "a reply to a datagram with no request");
        } else if unverified {
            assert_eq!(replies.len(), 1, "one reply to an unverified request");
            let limit = amplification_limit(data.len());
            let len = replies[0].1.len();
            assert!(
                len <= limit,
                "reply of {len} bytes to an unverified request of {} (limit {limit})",
                data.len()
            );
        }
    }

    /// Drains and checks every datagram and event; returns the datagrams, decoded.
    fn drain(&mut self) -> Vec<(SocketAddr, Vec<u8>, Vec<Message>)> {
        let mut out = Vec::new();
        while let Some(t) = self.e.poll_transmit() {
            if verbose() {
                eprintln!("    -> {} {}", t.dst, String::from_utf8_lossy(&t.payload));
            }
            self.datagrams_out += 1;
            self.bytes_out += t.payload.len() as u64;
            assert!(t.payload.len() <= MAX_DATAGRAM, "{} bytes", t.payload.len());
            assert!(is_routable_peer(t.dst), "a datagram to {}", t.dst);
            self.moved |= self.e.public_addr() != self.e.local_addr();
            assert!(
                self.moved || !self.is_self(t.dst),
                "a datagram to ourselves ({})",
                t.dst
            );
            let d = decode(&t.payload).unwrap_or_else(|e| {
                panic!(
                    "{e:?}: engine output {}",
                    String::from_utf8_lossy(&t.payload)
                )
            });
            assert!(!d.messages.is_empty(), "an empty datagram");
            assert_eq!(
                (d.unknown, d.malformed, d.bad_addresses),
                (0, 0, 0),
                "engine output to {} reads badly: {}",
                t.dst,
                String::from_utf8_lossy(&t.payload)
            );
            self.harvest(t.dst, &d.messages);
            out.push((canonical(t.dst), t.payload, d.messages));
        }
        while let Some(ev) = self.e.poll_event() {
            if verbose() {
                eprintln!("    event {ev:?}");
            }
            if let Event::ContactAdded(a) = ev {
                assert!(!self.is_self(a), "we became our own contact");
            }
        }
        self.check();
        out
    }

    /// Remembers what the engine asked `dst` for, so later datagrams "from" `dst` can answer.
    /// Nothing sent to an address no datagram can reach is learned.
    fn harvest(&mut self, dst: SocketAddr, msgs: &[Message]) {
        if !is_routable_peer(dst) {
            return;
        }
        let dst = canonical(dst);
        for m in msgs {
            match m {
                Message::PleaseAlwaysReturnThisMessage(e) => {
                    push_bounded(
                        self.cookies.entry(dst).or_default(),
                        e.as_json().to_owned(),
                        4,
                    );
                }
                Message::PleaseReturnThisMessage(e) => {
                    let s = e.as_json().to_owned();
                    push_bounded(&mut self.all_nonces, s.clone(), 16);
                    push_bounded(self.nonces.entry(dst).or_default(), s, 8);
                }
                Message::PleaseSendContent { id, offset, length } => {
                    let v = self.blocks.entry(dst).or_default();
                    if !v.contains(&(*id, *offset, *length)) {
                        v.push((*id, *offset, *length));
                    }
                    if v.len() > 8 {
                        v.remove(0);
                    }
                }
                _ => {}
            }
        }
    }

    /// The state bounds and counter identities.
    fn check(&self) {
        let e = &self.e;
        let cfg = &self.cfg;
        let s = e.stats();
        // Routing table.
        let t = e.table();
        let mut n = 0;
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        let mut per_net = HashMap::new();
        for idx in 0..t.depth() {
            let b = t.bucket(idx);
            assert!(b.len() <= cfg.table.k, "bucket {idx} holds {}", b.len());
            n += b.len();
        }
        for c in t.contacts() {
            *per_ip.entry(c.addr().ip()).or_insert(0) += 1;
            *per_net.entry(subnet(c.addr().ip())).or_insert(0usize) += 1;
            assert_eq!(c.addr(), canonical(c.addr()));
        }
        assert_eq!(n, t.len());
        assert!(
            per_ip.values().all(|n| *n <= cfg.table.max_per_ip),
            "{per_ip:?}"
        );
        assert!(per_net.values().all(|n| *n <= cfg.table.max_per_subnet));
        // What is saved holds every contact (and may add restored ones not heard yet), once.
        let saved: BTreeSet<SocketAddr> = e.snapshot().contacts.iter().map(|c| c.addr).collect();
        assert!(t.contacts().all(|c| saved.contains(&c.addr())));
        // Bounded maps.
        assert!(
            e.peers_remembered() <= cfg.max_peer_book.max(16),
            "{} peers remembered",
            e.peers_remembered()
        );
        assert!(
            e.requests_in_flight() <= cfg.max_requests_in_flight,
            "{} requests in flight",
            e.requests_in_flight()
        );
        assert!(e.records_held() <= cfg.records.total);
        // Maintenance lookups are capped (the self-lookup may run besides); owner commands
        // and announcements add one each.
        let lookup_bound = cfg.max_lookups + 1 + self.commands + self.announced.len();
        assert!(
            e.lookups_running() <= lookup_bound,
            "{} lookups running (bound {lookup_bound})",
            e.lookups_running()
        );
        assert!(e.lookups_running() as u64 <= s.lookups_started - s.lookups_finished);
        let running = e.downloads_running();
        assert!(running.len() <= self.downloads_started);
        for id in &running {
            let p = e
                .download_progress(id)
                .expect("a running download has progress");
            assert!(
                p.in_flight <= MAX_IN_FLIGHT,
                "{} blocks in flight",
                p.in_flight
            );
            if let Some(len) = p.len {
                assert!(p.received <= len, "{} of {len} bytes received", p.received);
            }
        }
        // Counters.
        assert_eq!(s.datagrams_in, self.packets_in);
        assert_eq!(s.datagrams_out, self.datagrams_out);
        assert_eq!(s.bytes_out, self.bytes_out);
        assert!(s.requests_answered + s.requests_timed_out <= s.requests_sent);
        assert_eq!(
            e.requests_in_flight() as u64,
            s.requests_sent - s.requests_answered - s.requests_timed_out,
            "requests in flight vs sent - answered - timed out"
        );
        assert!(s.lookups_finished <= s.lookups_started);
        assert!(s.lookups_timed_out <= s.lookups_finished);
        assert!(s.downloads_finished + s.downloads_failed <= s.downloads_started);
    }

    /// What a driver does: sleep until `poll_timeout`, then `handle_timeout`. The engine must
    /// not keep asking for a wake-up in the past.
    fn wake(&mut self) {
        for _ in 0..64 {
            let t = self
                .e
                .poll_timeout()
                .expect("the engine always wants a wake-up");
            if t > self.now {
                // Sleep until then (at most a day: a far timer is just a long sleep).
                let until = t.min(self.now + Duration::from_secs(86_400));
                self.advance(until.since(self.now));
                self.e.handle_timeout(self.now);
                self.drain();
                return;
            }
            self.e.handle_timeout(self.now);
            self.drain();
        }
        panic!(
            "the engine keeps asking to be woken at {:?} <= now {:?}",
            self.e.poll_timeout(),
            self.now
        );
    }

    fn timeout(&mut self) {
        self.e.handle_timeout(self.now);
        self.drain();
    }

    fn command_allowed(&mut self) -> bool {
        if self.commands >= MAX_COMMANDS {
            return false;
        }
        self.commands += 1;
        true
    }

    fn lookup(&mut self, target: NodeId) {
        if self.command_allowed() {
            self.e.start_lookup(self.now, target);
            self.drain();
        }
    }

    fn find(&mut self, id: NodeId) {
        if self.command_allowed() {
            self.e.find_holders(self.now, id);
            self.drain();
        }
    }

    fn announce(&mut self, id: NodeId, note: &str) {
        if self.command_allowed() {
            let ok = self.e.announce(self.now, id, note).is_ok();
            assert_eq!(ok, note.len() <= telekad::records::MAX_NOTE);
            if ok {
                self.announced.insert(id);
            }
            self.drain();
        }
    }

    fn download(&mut self, id: NodeId, resume: Option<(u64, Vec<bool>)>, holders: &[SocketAddr]) {
        if self.command_allowed() {
            let ok = self
                .e
                .start_download(self.now, id, Box::new(Sink::default()), resume, holders)
                .is_ok();
            self.downloads_started += usize::from(ok);
            self.drain();
        }
    }

    fn bootstrap(&mut self, addrs: &[SocketAddr]) {
        if self.command_allowed() {
            self.e.bootstrap(self.now, addrs);
            self.drain();
        }
    }

    /// The last cookie the engine gave `src` (or any IP-mate: one cookie covers every port).
    fn cookie_for(&self, src: SocketAddr) -> Option<&String> {
        let src = canonical(src);
        self.cookies.get(&src).and_then(|v| v.last()).or_else(|| {
            self.cookies
                .iter()
                .filter(|(a, _)| a.ip() == src.ip())
                .min_by_key(|(a, _)| a.port())
                .and_then(|(_, v)| v.last())
        })
    }
}

/// `TELEKAD_FUZZ_VERBOSE`: unset, quiet; `stats`, the final state only; anything else, every
/// step too.
fn verbosity() -> u8 {
    static VERBOSE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| match std::env::var("TELEKAD_FUZZ_VERBOSE") {
        Err(_) => 0,
        Ok(v) if v == "stats" => 1,
        Ok(_) => 2,
    })
}

fn verbose() -> bool {
    verbosity() > 1
}

/// A reply (§4.3) is the only datagram that starts with our cookie request; requests start
/// with their body or their nonce, block requests with `PleaseSendContent`.
fn is_reply(msgs: &[Message]) -> bool {
    matches!(
        msgs.first(),
        Some(Message::PleaseAlwaysReturnThisMessage(_))
    ) || matches!(msgs.first(), Some(Message::AlwaysReturned(_)))
        || matches!(msgs.first(), Some(Message::ReturnedMessage(_)))
}

// ---------------------------------------------------------------------------------------
// Structured input: the fuzzer's choices, read with `arbitrary`, never failing (out of data
// reads as zeros).

struct G<'a>(Unstructured<'a>);

impl<'a> G<'a> {
    fn u8(&mut self) -> u8 {
        self.0.arbitrary().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        self.0.arbitrary().unwrap_or(0)
    }
    fn u32(&mut self) -> u32 {
        self.0.arbitrary().unwrap_or(0)
    }
    fn u64(&mut self) -> u64 {
        self.0.arbitrary().unwrap_or(0)
    }
    fn u128(&mut self) -> u128 {
        self.0.arbitrary().unwrap_or(0)
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.0.len());
        self.0.bytes(n).map(|b| b.to_vec()).unwrap_or_default()
    }
    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn hex(id: &NodeId) -> String {
    id.to_hex()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Harness {
    fn src(&self, g: &mut G) -> SocketAddr {
        let b = g.u8();
        let p = pool();
        match b {
            0..=199 => p[usize::from(b) % p.len()],
            200..=209 => self.e.local_addr(),
            210..=214 => self.e.public_addr(),
            215..=224 => {
                // The IPv4-mapped form of a pool address.
                let a = p[usize::from(b) % 16];
                match a.ip() {
                    IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                    IpAddr::V6(_) => a,
                }
            }
            225..=234 => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(g.u32())), g.u16()),
            235..=244 => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(g.u128())), g.u16()),
            _ => UNROUTABLE[usize::from(b) % UNROUTABLE.len()]
                .parse()
                .unwrap(),
        }
    }

    fn id(&self, g: &mut G) -> NodeId {
        let it = items();
        match g.below(10) {
            0 => it.held_id,
            1 | 2 => it.wanted_id,
            3 => it.empty_id,
            4 => self.e.id(),
            5 => NodeId::of_addr(pool()[g.below(pool().len())]),
            6 => {
                // Close to our own id: the deep buckets.
                let mut id = self.e.id();
                let i = 31 - g.below(32);
                id.0[i] ^= g.u8().max(1);
                id
            }
            _ => {
                let mut b = [0u8; 32];
                for x in b.iter_mut() {
                    *x = g.u8();
                }
                NodeId(b)
            }
        }
    }

    /// An id as wire text: mostly valid, sometimes not.
    fn id_text(&self, g: &mut G) -> String {
        match g.below(16) {
            0 => json_str(&hex(&self.id(g)).to_uppercase()),
            1 => json_str(&g.text(70)),
            2 => "null".into(),
            3 => g.u64().to_string(),
            _ => json_str(&hex(&self.id(g))),
        }
    }

    fn addr_text(&self, g: &mut G) -> String {
        let s = match g.below(20) {
            0..=9 => pool()[g.below(pool().len())].to_string(),
            10 => self.e.local_addr().to_string(),
            11 => self.e.public_addr().to_string(),
            12 => {
                let a = pool()[g.below(16)];
                format!("[::ffff:{}]:{}", a.ip(), a.port())
            }
            13 => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(g.u32())), g.u16()).to_string(),
            14 => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(g.u128())), g.u16()).to_string(),
            15 => UNROUTABLE[g.below(UNROUTABLE.len())].to_string(),
            16 => "[fe80::1%eth0]:24254".to_string(),
            17 => format!("127.0.0.1:{}", g.u32()),
            _ => g.text(50),
        };
        if g.below(16) == 0 {
            // Not a string at all.
            return ["1", "null", "{}", "[\"127.0.0.1:1\"]"][g.below(4)].to_string();
        }
        json_str(&s)
    }

    fn addr_list(&self, g: &mut G) -> String {
        let n = match g.below(8) {
            0 => 0,
            1 => g.below(70),
            _ => g.below(8),
        };
        let items: Vec<String> = (0..n).map(|_| self.addr_text(g)).collect();
        format!("[{}]", items.join(","))
    }

    /// An echo body: a cookie-shaped one, any JSON, or one over the size limit.
    fn echo_body(&self, g: &mut G) -> String {
        match g.below(8) {
            0 => format!("{{\"cookie\":{}}}", json_str(&"k".repeat(g.below(300)))),
            1 => "[\"any\",{\"valid\":\"JSON\"}]".into(),
            2 => format!("{{ \"cookie\" : {} }}", json_str(&g.text(20))),
            3 => g.u64().to_string(),
            4 => format!("{{\"cookie\":\"{}.{}\"}}", g.u32(), g.u32()),
            _ => format!("{{\"cookie\":{}}}", json_str(&g.text(24))),
        }
    }

    /// Where a peer says it sees us: mostly one of two addresses (so that reports from
    /// several peers agree and the engine may adopt one), sometimes anything.
    fn seen_as(&self, g: &mut G) -> String {
        match g.below(4) {
            0 => self.addr_text(g),
            1 => json_str("[2001:db8::77]:24254"),
            _ => json_str("192.0.2.77:24254"),
        }
    }

    fn element(&self, g: &mut G, src: SocketAddr) -> String {
        match g.below(26) {
            24 | 25 => {
                // What a peer answering the engine's last request sends: its nonce back, and
                // maybe where it sees us and whom it knows (several elements).
                let nonce = self
                    .nonces
                    .get(&canonical(src))
                    .and_then(|v| v.last().cloned())
                    .unwrap_or_else(|| format!("{{\"cookie\":\"tk.{:016x}\"}}", g.u64()));
                let mut v = vec![format!("{{\"ReturnedMessage\":{nonce}}}")];
                if g.bool() {
                    v.push(format!(
                        "{{\"YourAddressIs\":{{\"addr\":{}}}}}",
                        self.seen_as(g)
                    ));
                }
                if g.bool() {
                    v.push(format!("{{\"Peers\":{{\"peers\":{}}}}}", self.addr_list(g)));
                }
                v.join(",")
            }
            0 | 1 => match g.below(6) {
                0 => r#"{"PleaseSendPeers":[]}"#.into(),
                1 => r#"{"PleaseSendPeers":{"x":1}}"#.into(),
                _ => r#"{"PleaseSendPeers":{}}"#.into(),
            },
            2 | 3 => {
                let target = match g.below(3) {
                    0 => String::new(),
                    1 => format!(",\"target\":{}", self.id_text(g)),
                    _ => format!(",\"target\":{}", json_str(&hex(&self.id(g)))),
                };
                format!("{{\"Peers\":{{\"peers\":{}{target}}}}}", self.addr_list(g))
            }
            4 => format!(
                "{{\"PleaseAlwaysReturnThisMessage\":{}}}",
                self.echo_body(g)
            ),
            5 | 6 => {
                let body = match g.below(8) {
                    0..=4 => self.cookie_for(src).cloned(),
                    5 => {
                        // Some other address's cookie.
                        let all: Vec<&String> = self.cookies.values().flatten().collect();
                        (!all.is_empty()).then(|| all[g.below(all.len())].clone())
                    }
                    6 => Some(format!("{{\"cookie\":\"{:016x}\"}}", g.u64())),
                    _ => Some(self.echo_body(g)),
                };
                let body = body.unwrap_or_else(|| format!("{{\"cookie\":\"{:016x}\"}}", g.u64()));
                format!("{{\"AlwaysReturned\":{body}}}")
            }
            7 => format!("{{\"PleaseReturnThisMessage\":{}}}", self.echo_body(g)),
            8 | 9 => {
                let mine = self.nonces.get(&canonical(src));
                let body = match (g.below(8), mine) {
                    (0..=5, Some(v)) if !v.is_empty() => v[v.len() - 1 - g.below(v.len())].clone(),
                    (6, _) if !self.all_nonces.is_empty() => {
                        self.all_nonces[g.below(self.all_nonces.len())].clone()
                    }
                    (7, _) => format!("{{\"cookie\":\"tk.{:016x}\"}}", g.u64()),
                    _ => self.echo_body(g),
                };
                format!("{{\"ReturnedMessage\":{body}}}")
            }
            10 | 11 => match g.below(5) {
                0 => format!("{{\"WhereAreThey\":{{\"ed25519h\":{}}}}}", self.id_text(g)),
                1 => format!(
                    "{{\"WhereAreThey\":{{\"target\":null,\"ed25519h\":{}}}}}",
                    self.id_text(g)
                ),
                2 => format!("{{\"WhereAreThey\":{{\"target\":{}}}}}", self.id_text(g)),
                _ => format!(
                    "{{\"WhereAreThey\":{{\"target\":{}}}}}",
                    json_str(&hex(&self.id(g)))
                ),
            },
            12 => format!("{{\"YourAddressIs\":{{\"addr\":{}}}}}", self.seen_as(g)),
            13 => {
                let offset = match g.below(4) {
                    0 => g.u64(),
                    1 => u64::from(g.u16()),
                    _ => (g.below(4) * BLOCK_SIZE) as u64,
                };
                let length = match g.below(4) {
                    0 => g.u64(),
                    1 => u64::from(g.u16()),
                    _ => BLOCK_SIZE as u64,
                };
                match g.below(4) {
                    0 => format!("{{\"PleaseSendContent\":{{\"id\":{}}}}}", self.id_text(g)),
                    _ => format!(
                        "{{\"PleaseSendContent\":{{\"id\":{},\"offset\":{offset},\"length\":{length}}}}}",
                        self.id_text(g)
                    ),
                }
            }
            14 | 15 => self.content(g, src),
            16 => {
                let peers = self.addr_list(g);
                let holders = match g.below(3) {
                    0 => String::new(),
                    1 => format!(",\"holders\":{}", g.u64()),
                    _ => format!(",\"holders\":{}", g.below(6)),
                };
                let notes = match g.below(3) {
                    0 => String::new(),
                    _ => {
                        let n: Vec<String> = (0..g.below(5))
                            .map(|_| match g.below(4) {
                                0 => "7".into(),
                                1 => json_str(&"n".repeat(g.below(300))),
                                _ => json_str(&g.text(20)),
                            })
                            .collect();
                        format!(",\"notes\":[{}]", n.join(","))
                    }
                };
                format!(
                    "{{\"MaybeTheyHaveSome\":{{\"id\":{},\"peers\":{peers}{holders}{notes}}}}}",
                    self.id_text(g)
                )
            }
            17 | 18 => {
                let note = match g.below(4) {
                    0 => String::new(),
                    1 => format!(",\"note\":{}", json_str(&"x".repeat(250 + g.below(10)))),
                    _ => format!(",\"note\":{}", json_str(&g.text(30))),
                };
                format!("{{\"IHaveSome\":{{\"id\":{}{note}}}}}", self.id_text(g))
            }
            19 => format!("{{\"WhoHasSome\":{{\"id\":{}}}}}", self.id_text(g)),
            20 => match g.below(3) {
                0 => r#"{"SupportedMessages":{"schema":{"messages":["A"]}}}"#.into(),
                _ => r#"{"PleaseListSupportedMessages":{}}"#.into(),
            },
            21 => format!("{{\"Padding\":{{\"p\":\"{}\"}}}}", "0".repeat(g.below(700))),
            22 => {
                let names = telekad::wire::IGNORED_MESSAGES;
                format!("{{\"{}\":{{}}}}", names[g.below(names.len())])
            }
            _ => match g.below(4) {
                // An unknown name, a non-object, or raw text (which may break the JSON).
                0 => format!("{{{}:{{}}}}", json_str(&g.text(20))),
                1 => ["5", "null", "[]", "{}", "\"x\"", "{\"a\":1,\"b\":2}"][g.below(6)].into(),
                _ => g.text(40),
            },
        }
    }

    /// A `Content` element: mostly an answer to a block the engine asked `src` for.
    fn content(&self, g: &mut G, src: SocketAddr) -> String {
        let asked = self.blocks.get(&canonical(src)).filter(|v| !v.is_empty());
        let (id, offset, length) = match asked {
            Some(v) if g.below(4) > 0 => v[g.below(v.len())],
            _ => {
                let id = self.id(g);
                (id, (g.below(4) * BLOCK_SIZE) as u64, BLOCK_SIZE as u64)
            }
        };
        let data = match g.below(6) {
            0 => g.bytes(64),
            1 => vec![0u8; length.min(BLOCK_SIZE as u64) as usize],
            _ => content_bytes(&id, offset, length.min(BLOCK_SIZE as u64)).unwrap_or_default(),
        };
        let real_eof = content_bytes(&id, 0, u64::MAX).map(|c| c.len() as u64);
        let eof = match (g.below(8), real_eof) {
            (0, _) => g.u64(),
            (1, _) => u64::from(g.u32()),
            (2, Some(e)) => e + 1,
            (_, Some(e)) => e,
            (_, None) => offset + data.len() as u64,
        };
        let offset = if g.below(8) == 0 { g.u64() } else { offset };
        let b64 = base64_encode(&data);
        format!(
            "{{\"Content\":{{\"id\":\"{}\",\"offset\":{offset},\"base64\":\"{b64}\",\"eof\":{eof}}}}}",
            hex(&id)
        )
    }

    fn datagram(&self, g: &mut G, src: SocketAddr) -> Vec<u8> {
        match g.below(20) {
            0 => g.bytes(300),
            1 => {
                // A real packet, slightly damaged.
                let mut p = SEED_PACKETS[g.below(SEED_PACKETS.len())]
                    .as_bytes()
                    .to_vec();
                for _ in 0..g.below(4) {
                    let i = g.below(p.len());
                    p[i] ^= g.u8();
                }
                p
            }
            2 if g.below(8) == 0 => {
                // Larger than any datagram, or many elements.
                if g.bool() {
                    let mut v = vec![b' '; MAX_DATAGRAM + 1 + g.below(100)];
                    v[0] = b'[';
                    v[1] = b']';
                    v
                } else {
                    let el = self.element(g, src);
                    let n = 60 + g.below(20);
                    format!("[{}]", vec![el; n].join(",")).into_bytes()
                }
            }
            _ => {
                let n = 1 + g.below(6);
                let els: Vec<String> = (0..n).map(|_| self.element(g, src)).collect();
                let sep = if g.below(16) == 0 { ", " } else { "," };
                format!("[{}]", els.join(sep)).into_bytes()
            }
        }
    }

    fn duration(&self, g: &mut G) -> Duration {
        match g.below(16) {
            0..=5 => Duration::ZERO,
            6..=10 => Duration::from_millis(g.below(2000) as u64),
            11..=13 => Duration::from_secs(g.below(120) as u64),
            14 => Duration::from_secs(g.below(4 * 3600) as u64),
            _ => Duration::from_secs(u64::from(g.u32())),
        }
    }

    fn step(&mut self, g: &mut G) {
        let kind = g.below(40);
        if verbose() && kind >= 28 {
            eprintln!(
                "{:?} step {kind}: public {} table {} requests {} lookups {} next wake {:?}",
                self.now,
                self.e.public_addr(),
                self.e.table().len(),
                self.e.requests_in_flight(),
                self.e.lookups_running(),
                self.e.poll_timeout()
            );
        }
        match kind {
            0..=27 => {
                let d = self.duration(g);
                self.advance(d);
                let src = self.src(g);
                let data = self.datagram(g, src);
                self.packet(src, &data);
            }
            28 | 29 => {
                let d = self.duration(g);
                self.advance(d);
                self.timeout();
            }
            30 | 31 => self.wake(),
            32 => {
                let t = self.id(g);
                self.lookup(t);
            }
            33 => {
                let n = 1 + g.below(4);
                let addrs: Vec<SocketAddr> = (0..n).map(|_| self.src(g)).collect();
                self.bootstrap(&addrs);
            }
            34 => {
                let a = self.src(g);
                // The owner does not ping itself (nothing checks that it doesn't).
                if !self.is_self(a) {
                    self.e.ping(self.now, a);
                }
                self.drain();
            }
            35 => {
                let id = self.id(g);
                let note = if g.below(8) == 0 {
                    "x".repeat(257)
                } else {
                    g.text(20)
                };
                match g.below(4) {
                    0 => {
                        self.e.stop_announcing(&id);
                        self.drain();
                    }
                    1 => self.find(id),
                    _ => self.announce(id, &note),
                }
            }
            36 => {
                let it = items();
                let id = match g.below(6) {
                    0 => it.empty_id,
                    1 => it.held_id,
                    2 => self.id(g),
                    _ => it.wanted_id,
                };
                let resume = match g.below(4) {
                    0 => {
                        let len = match g.below(3) {
                            0 => it.wanted.len() as u64,
                            1 => it.wanted.len() as u64 + 1,
                            _ => g.below(20_000) as u64,
                        };
                        let have = (0..len.div_ceil(BLOCK_SIZE as u64))
                            .map(|_| g.bool())
                            .collect();
                        Some((len, have))
                    }
                    _ => None,
                };
                let n = g.below(4);
                let holders: Vec<SocketAddr> = (0..n).map(|_| self.src(g)).collect();
                self.download(id, resume, &holders);
            }
            37 => {
                let id = if g.bool() {
                    items().wanted_id
                } else {
                    self.id(g)
                };
                match g.below(3) {
                    0 => self.e.cancel_download(&id),
                    1 => {
                        let a = self.src(g);
                        self.e.add_download_holder(self.now, id, a);
                    }
                    _ => self.e.checkpoint_downloads(),
                }
                self.drain();
            }
            38 => {
                // The owner vouches for the contacts it preloads: only addresses a peer can
                // be at.
                let a = self.src(g);
                if is_routable_peer(a) {
                    self.e.preload_contact(self.now, a);
                }
                self.drain();
            }
            _ => {
                let public = if g.bool() { Some(self.src(g)) } else { None };
                let n = g.below(4);
                let contacts = (0..n)
                    .map(|_| SavedContact {
                        addr: self.src(g),
                        rtt: None,
                    })
                    .collect();
                self.e.restore(&SavedState {
                    public_addr: public,
                    contacts,
                });
                self.drain();
            }
        }
    }
}

fn base64_encode(data: &[u8]) -> String {
    // The engine's own encoder writes the same standard, padded alphabet.
    let m = Message::Content {
        id: NodeId([0; 32]),
        offset: 0,
        data: data.to_vec(),
        eof: 0,
    };
    let mut out = Vec::new();
    m.encode(&mut out);
    let s = String::from_utf8(out).unwrap();
    let start = s.find("\"base64\":\"").unwrap() + 10;
    let end = start + s[start..].find('"').unwrap();
    s[start..end].to_string()
}

/// Real packets, as cjp2p and telekad nodes send them.
const SEED_PACKETS: &[&str] = &[
    r#"[{"PleaseSendPeers":{}}]"#,
    r#"[{"PleaseSendPeers":{}},{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}},{"PleaseReturnThisMessage":{"cookie":"3.108813345"}}]"#,
    r#"[{"Peers":{"peers":["127.0.1.1:24254","[::1]:24254","127.0.2.1:24254"]}}]"#,
    r#"[{"WhereAreThey":{"target":"83a0987c753aae8c1547c40740a2f77c62c4390dd2fcc9c3f53448bc277ed97f"}},{"PleaseReturnThisMessage":{"cookie":"tk.43bd0a27cb68f270"}}]"#,
    r#"[{"PleaseListSupportedMessages":{}}]"#,
    r#"[{"YourAddressIs":{"addr":"198.51.100.7:24254"}},{"ReturnedMessage":{"cookie":"tk.0123456789abcdef"}}]"#,
    r#"[{"ChatMessage":{"message":"hi"}},{"MyPublicKey":{"ed25519h":"00"}}]"#,
];

// ---------------------------------------------------------------------------------------
// Script input: one step a line.
//
//   [ ...json... ]        a datagram from pool address 0
//   @N [ ...json... ]     a datagram from pool address N (mod the pool's size)
//   @IP:PORT [ ... ]      a datagram from that address
//   +MS                   time passes (milliseconds), then handle_timeout
//   !wake                 sleep until poll_timeout, handle_timeout
//   !boot N M ...         bootstrap from pool addresses N, M, ...
//   !lookup  !find  !announce  !download  !ping N
//
// In a datagram, $COOKIE is the cookie the engine gave the source (or a wrong one),
// $NONCE the last nonce it sent the source, $BLOCK a `Content` element answering the last
// block it asked of the source (the oldest not answered yet), $HELD / $WANTED / $OWN the ids of the held item, the item to
// download and the node, $ME the engine's address.

fn run_script(text: &[u8]) {
    let mut h = Harness::new(0);
    run_lines(&mut h, text);
    h.report();
}

fn run_lines(h: &mut Harness, text: &[u8]) {
    for line in text.split(|b| *b == b'\n').take(MAX_STEPS) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let p = pool();
        if let Some(ms) = line.strip_prefix('+') {
            h.advance(Duration::from_millis(ms.trim().parse().unwrap_or(0)));
            h.timeout();
        } else if let Some(cmd) = line.strip_prefix('!') {
            let mut words = cmd.split_whitespace();
            let nums: Vec<usize> = cmd
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            let addrs: Vec<SocketAddr> = nums.iter().map(|n| p[n % p.len()]).collect();
            let it = items();
            match words.next() {
                Some("wake") => h.wake(),
                Some("boot") => h.bootstrap(&addrs),
                Some("lookup") => h.lookup(NodeId::of_addr(p[3])),
                Some("find") => h.find(it.wanted_id),
                Some("announce") => h.announce(it.held_id, "fuzz"),
                Some("download") => h.download(it.wanted_id, None, &addrs),
                Some("ping") => {
                    h.e.ping(h.now, addrs.first().copied().unwrap_or(p[0]));
                    h.drain();
                }
                _ => {}
            }
        } else {
            let (src, packet) = match line.strip_prefix('@') {
                Some(rest) => {
                    let (n, pkt) = rest.split_once(' ').unwrap_or((rest, ""));
                    let src = match n.parse::<SocketAddr>() {
                        Ok(a) => a,
                        Err(_) => p[n.parse::<usize>().unwrap_or(0) % p.len()],
                    };
                    (src, pkt)
                }
                None => (p[0], line),
            };
            let data = h.fill(src, packet);
            h.packet(src, data.as_bytes());
        }
    }
}

impl Harness {
    /// With `TELEKAD_FUZZ_VERBOSE` set, where the run ended (to see what an input reaches).
    fn report(&self) {
        if verbosity() > 0 {
            eprintln!(
                "table {} peers {} requests {} lookups {} records {} downloads {:?} public {}\n{:#?}",
                self.e.table().len(),
                self.e.peers_remembered(),
                self.e.requests_in_flight(),
                self.e.lookups_running(),
                self.e.records_held(),
                self.e.downloads_running(),
                self.e.public_addr(),
                self.e.stats()
            );
        }
    }

    fn fill(&mut self, src: SocketAddr, packet: &str) -> String {
        if !packet.contains('$') {
            return packet.to_owned();
        }
        let it = items();
        let cookie = self
            .cookie_for(src)
            .cloned()
            .unwrap_or_else(|| "{\"cookie\":\"0000000000000000\"}".into());
        let nonce = self
            .nonces
            .get(&canonical(src))
            .and_then(|v| v.last().cloned())
            .unwrap_or_else(|| "{\"cookie\":\"tk.0000000000000000\"}".into());
        // The oldest block asked of `src` and not answered by the script yet.
        let asked = self
            .blocks
            .get_mut(&canonical(src))
            .filter(|v| !v.is_empty());
        let block = match asked.map(|v| v.remove(0)) {
            Some((id, offset, length)) => {
                let data = content_bytes(&id, offset, length).unwrap_or_default();
                let eof = content_bytes(&id, 0, u64::MAX).map_or(0, |c| c.len());
                format!(
                    "{{\"Content\":{{\"id\":\"{}\",\"offset\":{offset},\"base64\":\"{}\",\"eof\":{eof}}}}}",
                    hex(&id),
                    base64_encode(&data)
                )
            }
            None => r#"{"ChatMessage":{}}"#.into(),
        };
        packet
            .replace("$COOKIE", &cookie)
            .replace("$NONCE", &nonce)
            .replace("$BLOCK", &block)
            .replace("$HELD", &hex(&it.held_id))
            .replace("$WANTED", &hex(&it.wanted_id))
            .replace("$OWN", &hex(&self.e.id()))
            .replace("$ME", &self.e.public_addr().to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    if matches!(data.first(), Some(b'[' | b'@' | b'+' | b'!')) {
        run_script(data);
        return;
    }
    let mut g = G(Unstructured::new(data));
    let flags = g.u8();
    let mut h = Harness::new(flags);
    if g.bool() {
        // Most runs start from a bootstrap, as a real node does.
        let n = 1 + g.below(3);
        let addrs: Vec<SocketAddr> = (0..n).map(|_| pool()[g.below(pool().len())]).collect();
        h.bootstrap(&addrs);
    }
    let mut steps = 0;
    while !g.done() && steps < MAX_STEPS {
        h.step(&mut g);
        steps += 1;
    }
    // Let the timers run out: everything expires and the engine stays consistent.
    for _ in 0..4 {
        h.wake();
    }
    h.report();
});
