//! Simulator at scale: lookups in networks of 1,000 to 100,000 nodes, with the figures of
//! `telekad simulate` and how they grow with N (hops and messages should grow like log N,
//! bytes per node stay flat).
//!
//! `cargo bench --bench sim_scale` runs: 2,000 nodes where every node joins through the
//! protocol, then 1,000 / 10,000 / 100,000 nodes warm-started, 10,000 lookups each.
//! Set `TELEKAD_BENCH_QUICK=1` for a fast smoke run (small sizes).

use telekad::sim::scenario::{self, Scenario, SimReport};

fn row(label: &str, r: &SimReport) {
    println!(
        "{label:<28} {:>7} {:>7} {:>6.4} {:>6.4} {:>4} {:>4} {:>7.1} {:>8.1} {:>8.1} {:>8.1} {:>9}",
        r.nodes,
        r.lookups,
        r.exact_rate,
        r.found_rate,
        r.hops_p50,
        r.hops_p95,
        r.messages_per_lookup,
        r.virtual_ms_p50,
        r.virtual_ms_p95,
        r.wall_seconds,
        r.bytes_per_node
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run
    // the quick sizes unless asked for the full run.
    let quick = std::env::var_os("TELEKAD_BENCH_QUICK").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let (joined, warm, lookups): (usize, &[usize], usize) = if quick {
        (300, &[300, 1000], 200)
    } else {
        (2000, &[1000, 10_000, 100_000], 10_000)
    };
    println!(
        "{:<28} {:>7} {:>7} {:>6} {:>6} {:>4} {:>4} {:>7} {:>8} {:>8} {:>8} {:>9}",
        "scenario",
        "nodes",
        "lookups",
        "exact",
        "found",
        "h50",
        "h95",
        "msgs",
        "vms_p50",
        "vms_p95",
        "wall_s",
        "bytes/node"
    );
    let r = scenario::run(&Scenario::new(joined, lookups.min(1000), 1), |_, _, _| {});
    row("protocol join", &r);
    let mut growth = Vec::new();
    for &n in warm {
        let mut s = Scenario::new(n, lookups, 1);
        s.warm_start = true;
        let r = scenario::run(&s, |_, _, _| {});
        row("warm start", &r);
        growth.push(r);
    }
    if let (Some(a), Some(b)) = (growth.first(), growth.last()) {
        let n_ratio = b.nodes as f64 / a.nodes as f64;
        println!(
            "growth {}x nodes: messages/lookup x{:.2}, hops_p50 {} -> {}, bytes/node x{:.2} \
             (log2 N grows x{:.2})",
            n_ratio,
            b.messages_per_lookup / a.messages_per_lookup,
            a.hops_p50,
            b.hops_p50,
            b.bytes_per_node as f64 / a.bytes_per_node.max(1) as f64,
            (b.nodes as f64).log2() / (a.nodes as f64).log2()
        );
    }
}
