//! Simulator at scale: lookups in networks of 1,000 to 100,000 nodes, with the figures of
//! `telekad simulate` and how they grow with N (hops and messages should grow like log N,
//! bytes per node stay flat).
//!
//! `cargo bench --bench sim_scale` runs: 2,000 nodes where every node joins through the
//! protocol, then 1,000 / 10,000 / 100,000 nodes warm-started, 10,000 lookups each.
//! Set `TELEKAD_BENCH_QUICK=1` for a fast smoke run (small sizes).
//!
//! The full run also draws the growth chart, `docs/growth.svg`: hops, messages per lookup
//! and virtual latency against N on a log axis (a quick run draws it under `target/`).

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
    let chart = if quick {
        std::path::PathBuf::from("target/growth-quick.svg")
    } else {
        std::path::PathBuf::from("docs/growth.svg")
    };
    if let Some(dir) = chart.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&chart, growth_svg(&growth)) {
        Ok(()) => println!("chart written to {}", chart.display()),
        Err(e) => println!("could not write {}: {e}", chart.display()),
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

/// A line of a panel: its label, colour, and the figure it plots.
type Series<'a> = (&'a str, &'a str, fn(&SimReport) -> f64);

/// One panel of the chart: series of (N, value) on a log10 N axis.
fn panel(out: &mut String, x0: f64, title: &str, rows: &[SimReport], series: &[Series]) {
    use std::fmt::Write as _;
    let (w, h, top, left) = (300.0, 220.0, 40.0, x0 + 50.0);
    let ns: Vec<f64> = rows.iter().map(|r| (r.nodes as f64).log10()).collect();
    let (nmin, nmax) = (
        ns.iter().copied().fold(f64::MAX, f64::min),
        ns.iter().copied().fold(f64::MIN, f64::max),
    );
    let vmax = rows
        .iter()
        .flat_map(|r| series.iter().map(move |s| (s.2)(r)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.2;
    let px = |n: f64| left + (n - nmin) / (nmax - nmin).max(1e-9) * w;
    let py = |v: f64| top + h - v / vmax * h;
    let _ = write!(
        out,
        r#"<text x="{}" y="24" font-size="14" font-weight="bold">{title}</text>"#,
        left
    );
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/>"##,
        top + h,
        left + w,
        top + h,
        top + h
    );
    for i in 0..=4 {
        let v = vmax * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{v:.1}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##,
            left - 4.0,
            py(v) + 3.0,
            left + w,
            y = py(v)
        );
    }
    for (r, n) in rows.iter().zip(&ns) {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            px(*n),
            top + h + 14.0,
            r.nodes
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">nodes (log scale)</text>"#,
        left + w / 2.0,
        top + h + 30.0
    );
    for (k, (name, color, f)) in series.iter().enumerate() {
        let pts: Vec<String> = rows
            .iter()
            .zip(&ns)
            .map(|(r, n)| format!("{:.1},{:.1}", px(*n), py(f(r))))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="11" fill="{color}">{name}</text>"#,
            left + 8.0,
            top + 14.0 + 14.0 * k as f64
        );
    }
}

/// The growth chart as SVG: three panels over N.
fn growth_svg(rows: &[SimReport]) -> String {
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1150" height="320" font-family="sans-serif">"#,
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    if rows.len() >= 2 {
        panel(
            &mut out,
            0.0,
            "hops per lookup",
            rows,
            &[
                ("p50", "#1f77b4", |r| r.hops_p50),
                ("p95", "#d62728", |r| r.hops_p95),
            ],
        );
        panel(
            &mut out,
            380.0,
            "messages per lookup",
            rows,
            &[("mean", "#2ca02c", |r| r.messages_per_lookup)],
        );
        panel(
            &mut out,
            760.0,
            "lookup latency (virtual ms)",
            rows,
            &[
                ("p50", "#1f77b4", |r| r.virtual_ms_p50),
                ("p95", "#d62728", |r| r.virtual_ms_p95),
            ],
        );
    }
    out.push_str(&format!(
        r##"<text x="10" y="312" font-size="10" fill="#666">telekad simulator, warm start, {} lookups per size (cargo bench --bench sim_scale)</text>"##,
        rows.first().map_or(0, |r| r.lookups)
    ));
    out.push_str("</svg>\n");
    out
}
