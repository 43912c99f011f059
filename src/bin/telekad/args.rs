//! Argument parsing helpers shared by the subcommands.

use clap::Args;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where a node joins the network: `--bootstrap` addresses and the `--public` switch.
#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// A node to bootstrap from (IP:PORT); repeat for more.
    #[arg(long, value_parser = peer_addr)]
    pub bootstrap: Vec<SocketAddr>,
    /// Also bootstrap from the well-known public cjp2p nodes (contacts the internet).
    #[arg(long)]
    pub public: bool,
}

impl BootstrapArgs {
    /// The bootstrap addresses, the public nodes included when `--public` was given.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut out = self.bootstrap.clone();
        if self.public {
            out.extend(
                telekad::PUBLIC_BOOTSTRAP
                    .iter()
                    .filter_map(|s| s.parse::<SocketAddr>().ok()),
            );
        }
        out
    }
}

/// Parses `IP:PORT` (or `host:port`, resolved now) with an error that shows the expected form.
pub fn peer_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let hint = "expected IP:PORT such as 192.0.2.1:24254 or [2001:db8::1]:24254";
    if !s.contains(':') {
        return Err(format!("'{s}' has no port; {hint}"));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("'{s}' resolved to no address; {hint}")),
        Err(e) => Err(format!("'{s}' is not an address ({e}); {hint}")),
    }
}

/// Parses a bind address (`IP:PORT`).
pub fn bind_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("'{s}' is not a bind address; expected IP:PORT such as 0.0.0.0:24254 or [::]:24254")
    })
}

/// The default data directory: `$XDG_DATA_HOME/telekad` or `~/.local/share/telekad`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("telekad");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/telekad"),
        None => PathBuf::from("telekad-data"),
    }
}
