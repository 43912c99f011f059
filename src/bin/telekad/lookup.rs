//! `telekad lookup`: start a node, join, find the k nodes closest to an ID, and print them.

use crate::args::{bind_addr, default_data_dir, BootstrapArgs};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use telekad::driver::{Node, NodeConfig};
use telekad::id::NodeId;

/// Options of `telekad lookup`.
#[derive(Args, Debug)]
pub struct LookupArgs {
    /// What to find: a 64-hex ID, or a node's IP:PORT (its ID is SHA-256 of that).
    target: String,
    /// UDP address for this short-lived node (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:0", value_parser = bind_addr)]
    bind: SocketAddr,
    /// Read bootstrap contacts from this data directory's saved table (never written).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    join: BootstrapArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Parses a lookup target: 64 hex digits, or an address whose ID is computed.
pub fn parse_target(s: &str) -> Result<(NodeId, Option<SocketAddr>), String> {
    if let Ok(id) = NodeId::from_hex(s) {
        return Ok((id, None));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) => Ok((NodeId::of_addr(a), Some(a))),
        Err(_) => Err(format!(
            "'{s}' is neither a 64-hex-digit ID nor an IP:PORT address; \
             give e.g. 3f5a...(64 hex digits) or 192.0.2.1:24254"
        )),
    }
}

pub async fn run(a: LookupArgs) -> Result<ExitCode, String> {
    let (target, target_addr) = parse_target(&a.target)?;
    let mut cfg = NodeConfig::new(a.bind);
    cfg.data_dir = Some(a.data_dir.unwrap_or_else(default_data_dir));
    cfg.read_only = true;
    // A one-shot client: others must not keep it as a contact once it is gone.
    cfg.engine.read_only = true;
    cfg.bootstrap = a.join.addrs();
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
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let r = node.lookup(target).await.map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let _ = node.shutdown().await;
    if a.json {
        let closest: Vec<serde_json::Value> = r
            .closest
            .iter()
            .map(|f| {
                serde_json::json!({
                    "addr": f.addr.to_string(),
                    "id": f.id.to_hex(),
                    "distance": f.id.distance(&target).to_hex(),
                    "distance_log2": f.id.distance(&target).log2(),
                    "rtt_ms": f.rtt.as_secs_f64() * 1000.0,
                    "hop": f.hop,
                })
            })
            .collect();
        let v = serde_json::json!({
            "target": target.to_hex(),
            "target_addr": target_addr.map(|a| a.to_string()),
            "found": r.found,
            "closest": closest,
            "hops": r.hops,
            "queried": r.queried,
            "answered": r.answered,
            "milliseconds": took.as_secs_f64() * 1000.0,
            "timed_out": r.timed_out,
        });
        println!("{v}");
    } else {
        println!("lookup {}", target.to_hex());
        println!(
            "  {:<4} {:<46} {:>9} {:>10} {:>4}",
            "#", "address", "distance", "rtt", "hop"
        );
        for (i, f) in r.closest.iter().enumerate() {
            let d = f.id.distance(&target);
            let mark = if f.id == target { "  <- target" } else { "" };
            println!(
                "  {:<4} {:<46} {:>9} {:>8.2}ms {:>4}{mark}",
                i + 1,
                f.addr.to_string(),
                format!("2^{}", d.log2()),
                f.rtt.as_secs_f64() * 1000.0,
                f.hop
            );
        }
        println!(
            "  target answered: {}; {} hops, {} queried, {} answered, {:.1} ms{}",
            if r.found { "yes" } else { "no" },
            r.hops,
            r.queried,
            r.answered,
            took.as_secs_f64() * 1000.0,
            if r.timed_out {
                " (deadline reached)"
            } else {
                ""
            }
        );
    }
    if r.closest.is_empty() {
        eprintln!("telekad: error: no node answered the lookup");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
