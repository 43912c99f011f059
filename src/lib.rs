//! telekad: a Kademlia DHT node that speaks the cjp2p wire protocol.
//!
//! Every UDP datagram is one JSON array of tagged messages (`[{"PleaseSendPeers":{}}]`).
//! telekad gives cjp2p a routing layer: node IDs are SHA-256 of `ip:port`, k-buckets are
//! filled from `Peers` replies, and `WhereAreThey` becomes an iterative lookup.
//!
//! # Layout
//!
//! The crate is a sans-IO protocol engine with two ways to drive it:
//!
//! - Foundations: [`id`] (IDs, XOR distance, buckets), [`addr`] (canonical addresses,
//!   subnets), [`time`] (the engine's clock type), [`wire`] (the cjp2p codec),
//!   [`cookie`] (anti-spoofing cookies), [`hashing`] (maps keyed by network input), and
//!   the private `slack` (bounded growth and shrinking of what a long-lived node keeps).
//! - Kademlia state: [`table`] (k-buckets with caps and replacement caches; each contact
//!   keeps its cookie and flags, the private `peer_info`) and [`lookup`] (the iterative
//!   lookup as a pure state machine), [`public_addr`] (address learning).
//! - Protection: [`ratelimit`] (token buckets per source IP and for the whole node, charged
//!   for every request before it is answered).
//! - Content: [`records`] (who announced what), [`files`] (files as content),
//!   [`download`] (a download as a pure state machine), [`partial`] (a download on disk,
//!   resumable). The engine serves content from a [`engine::BlockSource`] and fetches into
//!   a [`engine::BlockSink`]; it never opens files itself.
//! - The engine: [`engine::Engine`] takes datagrams and time and hands back datagrams,
//!   events and its next wake-up (`handle_packet`, `handle_timeout`, `poll_transmit`,
//!   `poll_event`, `poll_timeout`). Tuned by [`config::Config`], counted in [`stats::Stats`].
//! - Drivers: [`driver`] runs one engine on a tokio UDP socket with the wall clock and
//!   [`persist`]s its table; [`swarm`] runs many drivers on loopback in one process;
//!   [`sim`] runs thousands of engines over a virtual clock and a seeded lossy network.
//! - [`http`]: the JSON API, Prometheus `/metrics` and live dashboard of a running node
//!   (`telekad run --http`), all through the driver's [`driver::Node`] handle.
//!
//! The `telekad` binary (`src/bin/telekad/`) is the command-line front end.
//!
//! # Example: two engines, no sockets
//!
//! ```
//! use telekad::{config::Config, engine::Engine, time::Time};
//! use std::time::Duration;
//!
//! let (a_addr, b_addr) = ("127.0.0.1:24001".parse().unwrap(), "127.0.0.2:24002".parse().unwrap());
//! let mut a = Engine::new(Config::default(), a_addr, 1, Time::ZERO);
//! let mut b = Engine::new(Config::default(), b_addr, 2, Time::ZERO);
//! a.bootstrap(Time::ZERO, &[b_addr]);
//! // Carry datagrams between the two until both are quiet.
//! let mut now = Time::ZERO;
//! for _ in 0..20 {
//!     now = now + Duration::from_millis(1);
//!     while let Some(t) = a.poll_transmit() {
//!         b.handle_packet(now, a_addr, &t.payload);
//!     }
//!     while let Some(t) = b.poll_transmit() {
//!         a.handle_packet(now, b_addr, &t.payload);
//!     }
//! }
//! // Each answered the other's nonce, so each is in the other's table.
//! assert!(a.table().contains(b_addr));
//! assert!(b.table().contains(a_addr));
//! ```

#![warn(missing_docs)]

pub mod addr;
pub mod config;
pub mod cookie;
pub mod download;
pub mod driver;
pub mod engine;
pub mod files;
pub mod hashing;
pub mod http;
pub mod id;
pub mod lookup;
pub mod partial;
mod peer_info;
pub mod persist;
pub mod procstat;
pub mod public_addr;
pub mod ratelimit;
pub mod records;
pub mod rng;
pub mod sim;
mod slack;
pub mod stats;
pub mod swarm;
pub mod table;
pub mod time;
pub mod udp_batch;
pub mod wire;

/// Long-running public cjp2p nodes, used only when a user passes `--public`. No test,
/// benchmark or CI step contacts them.
pub const PUBLIC_BOOTSTRAP: &[&str] = &[
    "148.71.89.128:24254",
    "159.69.54.127:24254",
    "[2a01:4f8:c013:5bc5::1]:24254",
    "[2001:818:e876:f700:e008:c723:26f1:561f]:24254",
];
