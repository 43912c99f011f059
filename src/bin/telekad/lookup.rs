//! `telekad lookup`: start a node, join, find the k nodes closest to an ID, and print them.

use crate::args::ClientArgs;
use clap::Args;
use std::process::ExitCode;
use std::time::Instant;
use telekad::driver::Node;
use telekad::id::NodeId;

/// Options of `telekad lookup`.
#[derive(Args, Debug)]
pub struct LookupArgs {
    /// What to find: a 64-hex ID, or a node's IP:PORT (its ID is SHA-256 of that).
    target: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: LookupArgs) -> Result<ExitCode, String> {
    let (target, target_addr) = NodeId::parse_target(&a.target)?;
    let cfg = a.client.node_config()?;
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
