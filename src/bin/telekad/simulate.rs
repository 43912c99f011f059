//! `telekad simulate`: thousands of engines over a virtual clock and a seeded network.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use telekad::sim::adversary::run_eclipse;
use telekad::sim::{scenario, Eclipse, EclipseReport, Scenario};

/// Options of `telekad simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Nodes in the simulated network.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    nodes: u64,
    /// Lookups to run, each for the ID of a random live node.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Seed: the same seed gives the same trace hash.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a datagram is lost (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    loss: f64,
    /// Share of nodes killed at once after joining, followed by one refresh period (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    churn: f64,
    /// Fill routing tables from the true population instead of running every join (for
    /// measuring lookups in very large networks quickly).
    #[arg(long)]
    warm_start: bool,
    /// Add an eclipse attacker with about this many Sybil addresses (4 IPs in 2 /24s; 20
    /// ports ground next to each of N/20 target IDs, rounded up to whole groups of 20) that
    /// answers lookups with its own addresses only; `--nodes` honest nodes look up IDs next
    /// to its targets, once with the diversity caps on and once with them off.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000), conflicts_with_all = ["loss", "churn", "warm_start"])]
    sybils: Option<u64>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number; expected a probability such as 0.1"))?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "{p} is out of range; expected a value from 0 up to (not including) 1"
        ))
    }
}

/// The rows of the `--sybils` table: name and value.
fn cells(r: &EclipseReport) -> Vec<(&'static str, String)> {
    vec![
        (
            "closest_honest_rate",
            format!("{:.4}", r.closest_honest_rate),
        ),
        ("honest_prefix_rate", format!("{:.4}", r.honest_prefix_rate)),
        ("honest_k_fraction", format!("{:.4}", r.honest_k_fraction)),
        ("captured_rate", format!("{:.4}", r.captured_rate)),
        ("sybils_per_result", format!("{:.2}", r.sybils_per_result)),
        ("honest_per_result", format!("{:.2}", r.honest_per_result)),
        ("tables_with_sybils", format!("{:.4}", r.tables_with_sybils)),
        ("max_sybils_in_a_table", r.max_sybils_in_a_table.to_string()),
        ("wall_seconds", format!("{:.2}", r.wall_seconds)),
        ("trace_hash", r.trace_hash.clone()),
    ]
}

/// `--sybils`: the eclipse attack with the caps on, then off.
fn run_sybils(a: &SimulateArgs, sybils: usize) -> Result<ExitCode, String> {
    let per_target = sybils.min(20);
    let targets = sybils.div_ceil(per_target);
    let per_target = sybils.div_ceil(targets);
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    let mut reports: Vec<EclipseReport> = Vec::new();
    for caps in [true, false] {
        bar.set_message(format!("caps {}", if caps { "on" } else { "off" }));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let mut e = Eclipse::new(a.nodes as usize, targets, per_target, a.lookups, a.seed);
        e.caps = caps;
        reports.push(run_eclipse(&e));
    }
    bar.finish_and_clear();
    let (on, off) = (&reports[0], &reports[1]);
    if a.json {
        let v = serde_json::json!({ "caps_on": on, "caps_off": off });
        println!("{}", serde_json::to_string(&v).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "telekad simulate: eclipse attack, seed {}, {} honest nodes, {} Sybils on {} IPs in {} /24s, {} targets, {} lookups",
        a.seed, on.honest, on.sybils, on.sybil_ips, on.sybil_subnets, on.targets, on.lookups
    );
    println!("  {:<22} {:>16} {:>16}", "", "caps on", "caps off");
    for ((k, a), (_, b)) in cells(on).into_iter().zip(cells(off)) {
        println!("  {k:<22} {a:>16} {b:>16}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: SimulateArgs) -> Result<ExitCode, String> {
    if let Some(n) = a.sybils {
        return run_sybils(&a, n as usize);
    }
    let mut s = Scenario::new(a.nodes as usize, a.lookups, a.seed);
    s.loss = a.loss;
    s.churn = a.churn;
    s.warm_start = a.warm_start;
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.nodes)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:8} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let r = scenario::run(&s, |phase, done, total| {
        if bar.message() != phase {
            bar.set_message(phase.to_string());
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    } else {
        println!(
            "telekad simulate: seed {}, loss {}, churn {}",
            a.seed, a.loss, a.churn
        );
        let rows: [(&str, String); 12] = [
            ("nodes", r.nodes.to_string()),
            ("lookups", r.lookups.to_string()),
            ("exact_rate", format!("{:.4}", r.exact_rate)),
            ("found_rate", format!("{:.4}", r.found_rate)),
            ("hops_p50", format!("{}", r.hops_p50)),
            ("hops_p95", format!("{}", r.hops_p95)),
            (
                "messages_per_lookup",
                format!("{:.1}", r.messages_per_lookup),
            ),
            ("virtual_ms_p50", format!("{:.1}", r.virtual_ms_p50)),
            ("virtual_ms_p95", format!("{:.1}", r.virtual_ms_p95)),
            ("wall_seconds", format!("{:.2}", r.wall_seconds)),
            ("bytes_per_node", r.bytes_per_node.to_string()),
            ("trace_hash", r.trace_hash.clone()),
        ];
        for (k, v) in rows {
            println!("  {k:<22} {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
