//! Eclipse and Sybil attacks in the simulator (spec/simulation.md, "Eclipse and Sybil
//! attacks").
//!
//! - An attacker with 200 Sybil addresses on 4 IPs in 2 /24s, ports ground so that 20 IDs
//!   sit next to each of 10 target IDs, joins a 300-node network through the protocol and
//!   answers every lookup with its own addresses only. With the diversity caps on (table
//!   and lookup, the defaults), honest lookups for IDs next to the targets still find the
//!   true closest honest node in >= 99% of cases; with all caps off it captures them.
//! - One IP with 50 ports announces 3,000 ids next to one node: that node keeps the IP's
//!   quota of records and refuses (and counts) the rest, and honest announcements made
//!   after the flood are stored and found.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;
use telekad::config::Config;
use telekad::id::NodeId;
use telekad::sim::adversary::run_eclipse;
use telekad::sim::{node_addr, Eclipse, EclipseReport, Sim, SimConfig};

const HONEST: usize = 300;
const TARGETS: usize = 10;
const PER_TARGET: usize = 20;
const LOOKUPS: usize = 300;
const SEED: u64 = 1;

fn scenario(caps: bool) -> Eclipse {
    let mut e = Eclipse::new(HONEST, TARGETS, PER_TARGET, LOOKUPS, SEED);
    e.caps = caps;
    e.settle = Duration::from_secs(5);
    e
}

/// Each condition joins its own network (the caps change the tables), once per process.
fn attack(caps: bool) -> &'static EclipseReport {
    static ON: OnceLock<EclipseReport> = OnceLock::new();
    static OFF: OnceLock<EclipseReport> = OnceLock::new();
    let cell = if caps { &ON } else { &OFF };
    cell.get_or_init(|| {
        let r = run_eclipse(&scenario(caps));
        println!("{}", serde_json::to_string(&r).unwrap());
        r
    })
}

#[test]
fn with_caps_lookups_still_find_the_closest_honest_nodes() {
    let r = attack(true);
    assert_eq!(r.lookups, LOOKUPS);
    assert_eq!((r.sybils, r.sybil_ips, r.sybil_subnets), (200, 4, 2));
    assert!(
        r.tables_with_sybils > 0.3,
        "the Sybils got into few tables ({}): no attack to speak of",
        r.tables_with_sybils
    );
    assert!(
        r.closest_honest_rate >= 0.99,
        "closest honest node found in {}",
        r.closest_honest_rate
    );
    assert!(
        r.honest_prefix_rate >= 0.99,
        "honest entries not the nearest in {}",
        1.0 - r.honest_prefix_rate
    );
    // 4 IPs, at most 2 candidates each: the other places go to honest nodes.
    assert!(r.sybils_per_result <= 8.0, "{}", r.sybils_per_result);
    assert!(r.max_sybils_in_a_table <= 8, "{}", r.max_sybils_in_a_table);
}

#[test]
fn without_caps_the_attacker_captures_the_lookups() {
    let off = attack(false);
    assert_eq!(off.lookups, LOOKUPS);
    let on = attack(true);
    println!(
        "closest honest node found: caps on {:.3}, caps off {:.3}; fully eclipsed: on {:.3}, off {:.3}",
        on.closest_honest_rate, off.closest_honest_rate, on.captured_rate, off.captured_rate
    );
    assert!(
        off.closest_honest_rate <= 0.5,
        "caps off found the closest honest node in {}",
        off.closest_honest_rate
    );
    assert!(on.closest_honest_rate - off.closest_honest_rate >= 0.5);
    assert!(off.max_sybils_in_a_table > 8);
}

/// A random ID sharing its first `bits` bits with `base`.
fn near(base: &NodeId, bits: usize, salt: u64) -> NodeId {
    let mut out = NodeId::hash(&salt.to_le_bytes()).0;
    for bit in 0..bits {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        out[byte] = (out[byte] & !mask) | (base.0[byte] & mask);
    }
    NodeId(out)
}

#[test]
fn one_ip_cannot_flood_the_record_store() {
    const NODES: usize = 200;
    const PORTS: u16 = 50;
    const FLOOD: usize = 3000;
    let flood_ip = IpAddr::V4(Ipv4Addr::new(127, 255, 2, 201));
    let mut addrs: Vec<SocketAddr> = (0..NODES).map(|i| node_addr(i, 24254)).collect();
    addrs.extend((0..PORTS).map(|p| SocketAddr::new(flood_ip, 30_000 + p)));
    let mut sim = Sim::with_addrs(SimConfig::new(0, 41), addrs);
    for i in 1..sim.len() {
        sim.bootstrap(i, &[(i * 7919) % NODES.min(i)]);
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(10));
    let victim = 7;
    let vid = sim.id(victim);
    // 3,000 ids next to the victim (it is the nearest node to each), announced by the 50
    // ports in turn, 50 a second: within the per-source rate limit.
    for n in 0..FLOOD {
        let port = NODES + n % PORTS as usize;
        assert!(sim.announce(port, near(&vid, 16, n as u64), "flood"));
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(5));
    // Then 20 honest nodes announce ids next to the victim too.
    let honest: Vec<(usize, NodeId)> = (0..20)
        .map(|j| (20 + j * 9, near(&vid, 16, 1_000_000 + j as u64)))
        .collect();
    for &(i, id) in &honest {
        assert!(sim.announce(i, id, &format!("honest {i}")));
    }
    sim.run_for(Duration::from_secs(5));

    let quota = Config::default().records.per_ip;
    let e = sim.engine(victim).unwrap();
    let s = e.stats();
    let got = s.messages_in.get("IHaveSome").copied().unwrap_or(0);
    println!(
        "victim: {got} IHaveSome in, {} stored, {} refused by quota, {} unverified, {} rate-limited; holds {} records",
        s.announcements_stored,
        s.announcements_refused,
        s.announcements_unverified,
        s.rate_limited_ip,
        e.records_held()
    );
    assert!(got as usize >= FLOOD, "the flood did not reach the victim");
    assert!(
        e.records_held() >= quota && e.records_held() <= quota + honest.len(),
        "holds {} records",
        e.records_held()
    );
    assert!(
        s.announcements_refused as usize >= FLOOD - quota,
        "refusals counted: {}",
        s.announcements_refused
    );
    // Every honest node near the victim kept the flooding IP to its quota too.
    let flooders: BTreeSet<SocketAddr> = (NODES..sim.len()).map(|i| sim.addr(i)).collect();
    for a in sim.true_closest(&vid, 21) {
        let Some(i) = sim.index_of(a).filter(|i| *i < NODES) else {
            continue;
        };
        let held = sim.engine(i).unwrap().records_held();
        assert!(held <= quota + honest.len(), "node {i} holds {held}");
    }
    // The honest announcements are stored and found, from nodes that are not the announcer.
    for (n, &(i, id)) in honest.iter().enumerate() {
        let finder = (i + 50 + n) % NODES;
        let (holders, _) = sim.find_holders(finder, id).expect("lookup finished");
        assert!(
            holders.iter().any(|h| h.addr == sim.addr(i)),
            "honest announcer {i} not found by {finder}"
        );
        assert!(holders.iter().all(|h| !flooders.contains(&h.addr)));
    }
}
