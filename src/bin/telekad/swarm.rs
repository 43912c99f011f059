//! `telekad swarm`: N real nodes on loopback in one process, and a summary of how they did.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;
use telekad::swarm::{Swarm, SwarmConfig};

/// Options of `telekad swarm`.
#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// Number of nodes (each on its own 127.x.y.1 address).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=20000))]
    nodes: u32,
    /// Seconds to wait for every table to fill.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: SwarmArgs) -> Result<ExitCode, String> {
    let n = a.nodes as usize;
    let swarm = Swarm::start(SwarmConfig::new(n)).await.map_err(|e| {
        format!("{e} (a swarm binds 127.x.y.1 addresses, which Linux allows by default)")
    })?;
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} settling [{bar:30}] {pos}/{len} tables filled {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (report, settled) = swarm
        .settle(Duration::from_secs(a.timeout), |r| {
            bar.set_position(r.filled as u64);
            bar.set_message(format!(
                "(mean {:.1} of {:.1} contacts)",
                r.contacts_mean, r.expected_mean
            ));
        })
        .await;
    bar.finish_and_clear();
    swarm.shutdown().await;
    let settle_s = settled.map(|d| d.as_secs_f64());
    if a.json {
        let v = serde_json::json!({
            "nodes": report.nodes,
            "filled": report.filled,
            "settled": settled.is_some(),
            "settle_seconds": settle_s,
            "contacts_min": report.contacts_min,
            "contacts_mean": report.contacts_mean,
            "contacts_max": report.contacts_max,
            "expected_mean": report.expected_mean,
            "datagrams": report.datagrams,
            "bytes": report.bytes,
            "skipped": report.skipped,
        });
        println!("{v}");
    } else {
        println!("telekad swarm: {} nodes on 127.0.0.0/8", report.nodes);
        println!(
            "  {:<28} {}/{}",
            "tables filled", report.filled, report.nodes
        );
        println!(
            "  {:<28} {}",
            "time to settle",
            settle_s.map_or("did not settle".to_string(), |s| format!("{s:.2} s"))
        );
        println!(
            "  {:<28} min {} / mean {:.1} / max {} (room: mean {:.1})",
            "contacts per node",
            report.contacts_min,
            report.contacts_mean,
            report.contacts_max,
            report.expected_mean
        );
        println!("  {:<28} {}", "datagrams sent", report.datagrams);
        println!("  {:<28} {}", "bytes sent", report.bytes);
        println!("  {:<28} {}", "skipped/dropped input", report.skipped);
    }
    Ok(if settled.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
