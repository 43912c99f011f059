//! telekad placeholder
pub mod addr;
pub mod config;
pub mod cookie;
pub mod driver;
pub mod engine;
pub mod id;
pub mod lookup;
pub mod persist;
pub mod public_addr;
pub mod sim;
pub mod stats;
pub mod swarm;
pub mod table;
pub mod time;
pub mod wire;

/// Long-running public cjp2p nodes, used only when a user passes `--public`. No test,
/// benchmark or CI step contacts them.
pub const PUBLIC_BOOTSTRAP: &[&str] = &[
    "148.71.89.128:24254",
    "159.69.54.127:24254",
    "[2a01:4f8:c013:5bc5::1]:24254",
    "[2001:818:e876:f700:e008:c723:26f1:561f]:24254",
];
