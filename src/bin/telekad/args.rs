//! Argument parsing helpers shared by the subcommands.

use crate::config::{merge, FileConfig, Given};
use clap::Args;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use telekad::driver::NodeConfig;

/// Options of a long-running node (`run`, `share`, `announce`).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// UDP address to listen on (other nodes must reach it).
    #[arg(long, default_value = "0.0.0.0:24254", value_parser = bind_addr)]
    pub bind: SocketAddr,
    /// Directory for the saved routing table [default: ~/.local/share/telekad].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Milliseconds between periodic saves of the state file (tests; default 60 s).
    #[arg(long, hide = true, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub save_every: Option<u64>,
    #[command(flatten)]
    pub join: BootstrapArgs,
    /// Read settings from this TOML file; a flag given here overrides the file's value.
    /// Every key is listed, with its default, in docs/telekad.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl NodeArgs {
    /// Reads `--config` (if given) and fills in what the command line did not give.
    /// Returns the file's settings, for the options of the command beyond these.
    pub fn apply_config(&mut self, given: &Given) -> Result<Option<FileConfig>, String> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let f = crate::config::load(path)?;
        merge(&mut self.bind, &f.bind, "bind", given);
        if let Some(d) = &f.data_dir {
            merge(
                &mut self.data_dir,
                &Some(Some(d.clone())),
                "data_dir",
                given,
            );
        }
        if let Some(ms) = f.save_every {
            merge(&mut self.save_every, &Some(Some(ms)), "save_every", given);
        }
        merge(&mut self.join.bootstrap, &f.bootstrap, "bootstrap", given);
        merge(&mut self.join.public, &f.public, "public", given);
        Ok(Some(f))
    }

    /// The driver configuration these options describe.
    pub fn node_config(&self) -> NodeConfig {
        let mut cfg = NodeConfig::new(self.bind);
        cfg.data_dir = Some(self.data_dir.clone().unwrap_or_else(default_data_dir));
        cfg.bootstrap = self.join.addrs();
        if let Some(ms) = self.save_every {
            cfg.save_interval = std::time::Duration::from_millis(ms);
        }
        cfg
    }
}

/// Options of a one-shot client (`lookup`, `find`): its own port, the saved table read but
/// never written, and read-only so that no node keeps it as a contact after it exits.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// UDP address for this short-lived node (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:0", value_parser = bind_addr)]
    pub bind: SocketAddr,
    /// Read bootstrap contacts from this data directory's saved table (never written).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: BootstrapArgs,
}

impl ClientArgs {
    /// The driver configuration, or an error when there is nothing to bootstrap from.
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let mut cfg = NodeConfig::new(self.bind);
        cfg.data_dir = Some(self.data_dir.clone().unwrap_or_else(default_data_dir));
        cfg.read_only = true;
        cfg.engine.read_only = true;
        cfg.bootstrap = self.join.addrs();
        require_seeds(&cfg)?;
        Ok(cfg)
    }
}

/// An error unless `cfg` has bootstrap addresses or a saved table to start from.
pub fn require_seeds(cfg: &NodeConfig) -> Result<(), String> {
    let saved = cfg
        .data_dir
        .as_deref()
        .and_then(|d| telekad::driver::load_state(d).ok().flatten())
        .map_or(0, |s| s.contacts.len());
    if cfg.bootstrap.is_empty() && saved == 0 {
        return Err(
            "nothing to bootstrap from: pass --bootstrap IP:PORT, or --data-dir of a node \
                    that has run before, or --public"
                .into(),
        );
    }
    Ok(())
}

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

/// Rate limits of a node that answers requests (`run`): see `telekad::ratelimit`.
#[derive(Args, Debug, Clone)]
pub struct RateArgs {
    /// Requests answered per second from one source IP (an IPv6 /64), in bursts of up to
    /// twice as many; 0 = unlimited. Further requests are dropped and counted.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          default_value_t = telekad::ratelimit::RateLimitConfig::default().per_ip.rate)]
    pub rate_per_ip: u32,
    /// Requests answered per second from all sources together, in bursts of up to a fifth
    /// of that; 0 = unlimited. Answers to the node's own requests are never limited.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          default_value_t = telekad::ratelimit::RateLimitConfig::default().global.rate)]
    pub rate_global: u32,
    /// Content blocks served per second to one cookie-verified downloader (source IP or
    /// IPv6 /64), in bursts of up to 4,096; 0 = unlimited.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          default_value_t = telekad::ratelimit::RateLimitConfig::default().blocks_per_ip.rate)]
    pub rate_blocks_per_ip: u32,
}

impl RateArgs {
    /// Fills in the file's limits where the command line gave none.
    pub fn merge(&mut self, f: &FileConfig, given: &Given) {
        merge(&mut self.rate_per_ip, &f.rate_per_ip, "rate_per_ip", given);
        merge(&mut self.rate_global, &f.rate_global, "rate_global", given);
        merge(
            &mut self.rate_blocks_per_ip,
            &f.rate_blocks_per_ip,
            "rate_blocks_per_ip",
            given,
        );
    }

    /// Sets these limits in `cfg` (the defaults' bursts are kept for the default rates).
    pub fn apply(&self, cfg: &mut telekad::config::Config) {
        use telekad::ratelimit::Limit;
        let rl = &mut cfg.rate_limit;
        if self.rate_per_ip != rl.per_ip.rate {
            rl.per_ip = Limit::new(self.rate_per_ip, self.rate_per_ip.saturating_mul(2));
        }
        if self.rate_global != rl.global.rate {
            rl.global = Limit::new(self.rate_global, (self.rate_global / 5).max(1));
        }
        if self.rate_blocks_per_ip != rl.blocks_per_ip.rate {
            rl.blocks_per_ip = Limit::new(self.rate_blocks_per_ip, rl.blocks_per_ip.burst);
        }
    }
}

/// The HTTP API, `/metrics` and dashboard of a node (`run`): see `telekad::http`.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Serve the JSON API, Prometheus /metrics and the live dashboard on this TCP address,
    /// e.g. 127.0.0.1:24255 (loopback only unless --http-public is given).
    #[arg(long, value_name = "ADDR", value_parser = bind_addr)]
    pub http: Option<SocketAddr>,
    /// Allow --http on a non-loopback address. The API has no authentication: anyone who
    /// reaches it can make the node announce and download.
    #[arg(long)]
    pub http_public: bool,
}

impl HttpArgs {
    /// Fills in the file's HTTP settings where the command line gave none.
    pub fn merge(&mut self, f: &FileConfig, given: &Given) {
        if let Some(a) = f.http {
            merge(&mut self.http, &Some(Some(a)), "http", given);
        }
        merge(&mut self.http_public, &f.http_public, "http_public", given);
    }

    /// An error when --http-public is set without an --http address.
    pub fn check(&self) -> Result<(), String> {
        if self.http_public && self.http.is_none() {
            return Err(
                "--http-public (or http_public in the config file) needs an HTTP \
                        address: add --http ADDR (or http = \"ADDR\" in the config file)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Binds the HTTP listener (before the node starts, so a bad address fails early), or
    /// nothing without `--http`.
    pub async fn listen(&self) -> Result<Option<tokio::net::TcpListener>, String> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        telekad::http::check_bind(addr, self.http_public)?;
        tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| format!("cannot bind HTTP {addr}: {e}; pick another --http address"))
    }
}
