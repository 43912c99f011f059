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
    /// Lookups for random node IDs to run after settling, in each of two phases: one at a
    /// time, then `--concurrency` at a time.
    #[arg(long, default_value_t = 100)]
    lookups: usize,
    /// Lookups in flight at once in the concurrent phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    concurrency: u32,
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
    let spinner = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message(format!("{} sequential lookups", a.lookups));
    let seq = swarm.lookups(a.lookups, 1, 7).await;
    spinner.set_message(format!(
        "{} lookups, {} at a time",
        a.lookups, a.concurrency
    ));
    let conc = swarm.lookups(a.lookups, a.concurrency as usize, 8).await;
    spinner.finish_and_clear();
    swarm.shutdown().await;
    let all_found = seq.found == seq.lookups && conc.found == conc.lookups;
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
            "lookups_sequential": seq,
            "lookups_concurrent": conc,
            "all_lookups_found": all_found,
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
        for (name, l) in [("sequential", &seq), ("concurrent", &conc)] {
            println!(
                "  {:<28} {}/{} found ({:.1}%), {} at a time",
                format!("lookups, {name}"),
                l.found,
                l.lookups,
                100.0 * l.success_rate(),
                l.concurrency
            );
            println!(
                "  {:<28} hops p50 {} p95 {}; latency p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; {:.1} datagrams/lookup",
                "", l.hops_p50, l.hops_p95, l.latency_ms_p50, l.latency_ms_p95, l.latency_ms_p99, l.datagrams_per_lookup
            );
        }
    }
    Ok(if settled.is_some() && all_found {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
