//! `telekad swarm`: N real nodes on loopback in one process, and a summary of how they did.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::time::Duration;
use telekad::procstat;
use telekad::swarm::{DownloadStats, FillReport, LookupStats, Swarm, SwarmConfig, TopicStats};

/// Options of `telekad swarm`.
#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// Number of nodes (each on its own 127.x.y.1 address).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=20000))]
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
    /// Topics announced (game-lobby style) and then listed with `find`.
    #[arg(long, default_value_t = 3)]
    topics: usize,
    /// Nodes announcing each topic.
    #[arg(long, default_value_t = 5)]
    announcers: usize,
    /// Size of the content downloaded between swarm nodes, MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    download_mib: u64,
    /// Nodes holding that content.
    #[arg(long, default_value_t = 3)]
    holders: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn spinner(json: bool) -> ProgressBar {
    let s = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

pub async fn run(a: SwarmArgs) -> Result<ExitCode, String> {
    let n = a.nodes as usize;
    let rss_before = procstat::rss_bytes();
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
    // Memory as a settled node holds it: the allocator gives back what the join freed
    // (a long-running `telekad run` does the same every minute).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    procstat::release_free_memory();
    let rss_per_node = match (rss_before, procstat::rss_bytes()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    let threads = procstat::threads();
    let sp = spinner(a.json);
    // Lookups are measured on a settled network, after the joining rounds (self-lookups,
    // bucket refreshes) have died down.
    sp.set_message("waiting for the joining rounds to end (under 1 datagram/node/s)");
    let quiet = swarm.quiet(1.0, Duration::from_secs(60)).await;
    sp.set_message(format!("{} lookups, one at a time", a.lookups));
    let seq = swarm.lookups(a.lookups, 1, 7).await;
    sp.set_message(format!(
        "{} lookups, {} at a time",
        a.lookups, a.concurrency
    ));
    let conc = swarm.lookups(a.lookups, a.concurrency as usize, 8).await;
    sp.set_message(format!(
        "{} topics announced by {} nodes each, then listed",
        a.topics, a.announcers
    ));
    let topics = swarm.topics(a.topics, a.announcers, 9).await;
    sp.set_message(format!(
        "downloading {} MiB from {} holders",
        a.download_mib, a.holders
    ));
    let dl = swarm
        .download((a.download_mib as usize) << 20, a.holders, 10)
        .await;
    sp.set_message("letting the announcement and download traffic end");
    let _ = swarm.quiet(1.0, Duration::from_secs(30)).await;
    sp.set_message("measuring idle CPU (3 s)");
    let idle = Duration::from_secs(3);
    let sent0 = swarm.datagrams_sent().await;
    let cpu0 = procstat::cpu_time();
    tokio::time::sleep(idle).await;
    let cpu1 = procstat::cpu_time();
    let idle_datagrams = (swarm.datagrams_sent().await - sent0) as f64 / idle.as_secs_f64();
    let idle_cpu = cpu0
        .zip(cpu1)
        .map(|(b, a)| 100.0 * (a - b).as_secs_f64() / idle.as_secs_f64());
    sp.finish_and_clear();
    swarm.shutdown().await;
    let all_found = seq.found == seq.lookups && conc.found == conc.lookups;
    let topics_ok = topics.listed == topics.announcers;
    let ok = settled.is_some() && all_found && dl.verified && topics_ok;
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
            "topics": topics,
            "download": dl,
            "rss_bytes_per_node": rss_per_node,
            "threads": threads,
            "idle_cpu_percent": idle_cpu,
            "quiet_after_seconds": quiet.map(|d| d.as_secs_f64()),
            "idle_datagrams_per_second": idle_datagrams,
            "ok": ok,
        });
        println!("{v}");
    } else {
        print_table(
            &report,
            settle_s,
            &seq,
            &conc,
            &topics,
            &dl,
            rss_per_node,
            threads,
            idle_cpu,
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    report: &FillReport,
    settle_s: Option<f64>,
    seq: &LookupStats,
    conc: &LookupStats,
    topics: &TopicStats,
    dl: &DownloadStats,
    rss_per_node: Option<f64>,
    threads: Option<u64>,
    idle_cpu: Option<f64>,
) {
    let row = |k: &str, v: String| println!("  {k:<30} {v}");
    println!("telekad swarm: {} nodes on 127.0.0.0/8", report.nodes);
    row(
        "tables filled",
        format!("{}/{}", report.filled, report.nodes),
    );
    row(
        "time to settle",
        settle_s.map_or("did not settle".to_string(), |s| format!("{s:.2} s")),
    );
    row(
        "contacts per node",
        format!(
            "min {} / mean {:.1} / max {} (room: mean {:.1})",
            report.contacts_min, report.contacts_mean, report.contacts_max, report.expected_mean
        ),
    );
    row(
        "sent while settling",
        format!(
            "{} datagrams, {} bytes; {} skipped/dropped inputs",
            report.datagrams, report.bytes, report.skipped
        ),
    );
    for (name, l) in [("sequential", seq), ("concurrent", conc)] {
        row(
            &format!("lookups, {name}"),
            format!(
                "{}/{} found ({:.1}%), {} at a time",
                l.found,
                l.lookups,
                100.0 * l.success_rate(),
                l.concurrency
            ),
        );
        row(
            "",
            format!(
                "hops p50 {} p95 {}; latency p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; {:.1} datagrams and {:.2} ms CPU per lookup",
                l.hops_p50,
                l.hops_p95,
                l.latency_ms_p50,
                l.latency_ms_p95,
                l.latency_ms_p99,
                l.datagrams_per_lookup,
                l.cpu_ms_per_lookup
            ),
        );
    }
    row(
        "topics (announce + find)",
        format!(
            "{}/{} announcers listed with their notes over {} topics; find p50 {:.1} ms",
            topics.listed, topics.announcers, topics.topics, topics.find_ms_p50
        ),
    );
    row(
        "download",
        if dl.verified {
            format!(
                "{:.1} MiB verified in {:.3} s: {:.1} MB/s from {} of {} holders",
                dl.bytes as f64 / 1048576.0,
                dl.seconds,
                dl.mb_per_s,
                dl.holders_used,
                dl.holders
            )
        } else {
            format!("FAILED: {}", dl.error.as_deref().unwrap_or("not verified"))
        },
    );
    row(
        "memory per node (RSS)",
        rss_per_node.map_or("n/a".into(), |b| format!("{:.1} KB", b / 1000.0)),
    );
    row(
        "threads (whole process)",
        threads.map_or("n/a".into(), |t| t.to_string()),
    );
    row(
        "idle CPU (whole swarm)",
        idle_cpu.map_or("n/a".into(), |c| format!("{c:.1}% of one core")),
    );
}
