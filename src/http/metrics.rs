//! `/metrics`: the node's counters in the Prometheus text exposition format (version
//! 0.0.4). The same table feeds the `counters` object of `GET /api/status`.

use super::{ApiError, Shared};
use crate::driver::Status;
use crate::stats::{LookupLog, Stats};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value};
use std::fmt::Write;

/// What a family is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: a name, its help, and samples (label, value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// The label's name when samples are labelled.
    label: Option<&'static str>,
    samples: Vec<(Option<String>, f64)>,
}

fn one(name: &'static str, kind: Kind, help: &'static str, v: f64) -> Family {
    Family {
        name,
        help,
        kind,
        label: None,
        samples: vec![(None, v)],
    }
}

fn counter(name: &'static str, help: &'static str, v: u64) -> Family {
    one(name, Kind::Counter, help, v as f64)
}

fn gauge(name: &'static str, help: &'static str, v: f64) -> Family {
    one(name, Kind::Gauge, help, v)
}

fn labelled(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    samples: impl IntoIterator<Item = (String, u64)>,
) -> Family {
    Family {
        name,
        help,
        kind: Kind::Counter,
        label: Some(label),
        samples: samples
            .into_iter()
            .map(|(l, v)| (Some(l), v as f64))
            .collect(),
    }
}

/// Every counter and gauge except the lookup-latency histogram.
fn families(s: &Status, log: &LookupLog) -> Vec<Family> {
    let t: &Stats = &s.stats;
    let named = |m: &std::collections::BTreeMap<&'static str, u64>| {
        m.iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>()
    };
    let reasons = |list: &[(&str, u64)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>()
    };
    vec![
        gauge(
            "telekad_uptime_seconds",
            "Seconds since the node started.",
            s.uptime.as_secs_f64(),
        ),
        counter(
            "telekad_datagrams_received_total",
            "UDP datagrams received.",
            t.datagrams_in,
        ),
        counter(
            "telekad_datagrams_sent_total",
            "UDP datagrams sent.",
            t.datagrams_out,
        ),
        counter(
            "telekad_bytes_received_total",
            "UDP payload bytes received.",
            t.bytes_in,
        ),
        counter(
            "telekad_bytes_sent_total",
            "UDP payload bytes sent.",
            t.bytes_out,
        ),
        labelled(
            "telekad_messages_received_total",
            "Messages received, by type (a datagram carries one or more).",
            "type",
            named(&t.messages_in),
        ),
        labelled(
            "telekad_messages_sent_total",
            "Messages sent, by type (a datagram carries one or more).",
            "type",
            named(&t.messages_out),
        ),
        labelled(
            "telekad_dropped_total",
            "Whole datagrams dropped, by reason.",
            "reason",
            reasons(&[
                ("not_array", t.dropped_not_array),
                ("too_large", t.dropped_too_large),
                ("empty", t.dropped_empty),
                ("rate_limited_ip", t.rate_limited_ip),
                ("rate_limited_global", t.rate_limited_global),
            ]),
        ),
        labelled(
            "telekad_skipped_total",
            "Messages or entries inside a datagram skipped, by reason.",
            "reason",
            reasons(&[
                ("unknown", t.skipped_unknown),
                ("malformed", t.skipped_malformed),
                ("excess", t.skipped_excess),
                ("bad_address", t.bad_addresses),
                ("cookie_invalid", t.cookie_invalid),
                ("unsolicited", t.unsolicited),
            ]),
        ),
        counter(
            "telekad_replies_trimmed_total",
            "Replies to unverified sources shortened to respect the amplification limit.",
            t.replies_trimmed,
        ),
        counter(
            "telekad_requests_sent_total",
            "Requests sent.",
            t.requests_sent,
        ),
        counter(
            "telekad_requests_answered_total",
            "Requests answered.",
            t.requests_answered,
        ),
        counter(
            "telekad_requests_timed_out_total",
            "Requests given up.",
            t.requests_timed_out,
        ),
        counter(
            "telekad_requests_refused_total",
            "Requests not sent because too many were in flight.",
            t.requests_refused,
        ),
        counter(
            "telekad_lookups_started_total",
            "Lookups started by the engine (asked for and upkeep).",
            t.lookups_started,
        ),
        counter(
            "telekad_lookups_finished_total",
            "Lookups finished by the engine (asked for and upkeep).",
            t.lookups_finished,
        ),
        counter(
            "telekad_lookups_timed_out_total",
            "Lookups cut short by their deadline.",
            t.lookups_timed_out,
        ),
        counter(
            "telekad_lookups_failed_total",
            "Lookups asked through the API or CLI that no node answered.",
            log.failed,
        ),
        counter(
            "telekad_lookups_requested_total",
            "Lookups asked through the API or CLI (node and holder lookups).",
            log.started,
        ),
        gauge(
            "telekad_lookups_running",
            "Lookups running now.",
            s.lookups_running as f64,
        ),
        gauge(
            "telekad_table_contacts",
            "Contacts in the routing table.",
            s.contacts.len() as f64,
        ),
        counter(
            "telekad_address_changes_total",
            "Public addresses adopted.",
            t.address_changes,
        ),
        gauge(
            "telekad_records_stored",
            "Announcement records held for other nodes.",
            s.records_held as f64,
        ),
        counter(
            "telekad_announcements_stored_total",
            "Announcements recorded (new or refreshed).",
            t.announcements_stored,
        ),
        counter(
            "telekad_announcements_unverified_total",
            "Announcements refused: the sender had not returned our cookie.",
            t.announcements_unverified,
        ),
        counter(
            "telekad_announcements_refused_total",
            "Announcements refused by a quota.",
            t.announcements_refused,
        ),
        counter(
            "telekad_blocks_served_total",
            "Content blocks served.",
            t.content_blocks_served,
        ),
        counter(
            "telekad_bytes_served_total",
            "Content bytes served.",
            t.content_bytes_served,
        ),
        counter(
            "telekad_content_bad_requests_total",
            "Requests for held content past its end.",
            t.content_bad_requests,
        ),
        counter(
            "telekad_blocks_received_total",
            "Content blocks received and accepted by a download.",
            t.content_blocks_received,
        ),
        counter(
            "telekad_blocks_unsolicited_total",
            "Content blocks received that no download asked for.",
            t.content_unsolicited,
        ),
        counter(
            "telekad_downloads_started_total",
            "Downloads started.",
            t.downloads_started,
        ),
        counter(
            "telekad_downloads_finished_total",
            "Downloads verified and finished.",
            t.downloads_finished,
        ),
        counter(
            "telekad_downloads_failed_total",
            "Downloads that failed.",
            t.downloads_failed,
        ),
        counter(
            "telekad_bad_holders_total",
            "Holders dropped for sending data that did not verify.",
            t.bad_holders,
        ),
    ]
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf` for infinity.
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The node's metrics in the Prometheus text format.
pub fn render(s: &Status, log: &LookupLog) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP telekad_info The node: its ID, public address and version.\n\
         # TYPE telekad_info gauge\n\
         telekad_info{{id=\"{}\",public_addr=\"{}\",version=\"{}\"}} 1",
        s.id.to_hex(),
        escape(&s.public_addr.to_string()),
        env!("CARGO_PKG_VERSION")
    );
    for f in families(s, log) {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (l, v) in &f.samples {
            match (f.label, l) {
                (Some(k), Some(l)) => {
                    let _ = writeln!(out, "{}{{{k}=\"{}\"}} {}", f.name, escape(l), number(*v));
                }
                _ => {
                    let _ = writeln!(out, "{} {}", f.name, number(*v));
                }
            }
        }
    }
    let name = "telekad_lookup_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long lookups asked through the API or CLI took.\n# TYPE {name} histogram"
    );
    for (le, n) in log.latency.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", number(le));
    }
    let _ = writeln!(out, "{name}_sum {}", log.latency.sum_seconds());
    let _ = writeln!(out, "{name}_count {}", log.latency.count());
    out
}

/// The counters as one JSON object: each family by its name without the `telekad_`
/// prefix, labelled families as objects by label.
pub(super) fn counters_json(s: &Status, log: &LookupLog) -> Value {
    let mut out = Map::new();
    for f in families(s, log) {
        let key = f.name.trim_start_matches("telekad_").to_string();
        let num = |v: f64| {
            if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
                Value::from(v as u64)
            } else {
                Value::from(v)
            }
        };
        let v = if f.label.is_some() {
            let mut m = Map::new();
            for (l, v) in &f.samples {
                m.insert(l.clone().unwrap_or_default(), num(*v));
            }
            Value::Object(m)
        } else {
            f.samples.first().map_or(Value::Null, |(_, v)| num(*v))
        };
        out.insert(key, v);
    }
    Value::Object(out)
}

/// `GET /metrics`.
pub(super) async fn handler(State(st): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let s = st.node.status().await?;
    let log = st.node.lookup_log().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s, &log),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::LookupResult;
    use crate::stats::LATENCY_BUCKETS;
    use std::time::Duration;

    fn status() -> Status {
        let addr: std::net::SocketAddr = "127.0.0.1:24254".parse().unwrap();
        let mut stats = Stats {
            datagrams_in: 7,
            ..Stats::default()
        };
        stats.messages_in.insert("Peers", 3);
        Status {
            id: crate::id::NodeId::of_addr(addr),
            local_addr: addr,
            public_addr: addr,
            contacts: Vec::new(),
            stats,
            uptime: Duration::from_millis(1500),
            lookups_running: 0,
            records_held: 2,
            bucket_size: 20,
        }
    }

    fn finished(log: &mut LookupLog, ms: u64, answered: u32) {
        log.started();
        let r = LookupResult {
            target: crate::id::NodeId::of_topic("t"),
            closest: Vec::new(),
            found: false,
            hops: 1,
            queried: 3,
            answered,
            elapsed: Duration::from_millis(ms),
            timed_out: false,
        };
        log.finished("lookup", &r, None, Duration::ZERO);
    }

    #[test]
    fn renders_counters_labels_and_a_cumulative_histogram() {
        let mut log = LookupLog::default();
        finished(&mut log, 3, 2);
        finished(&mut log, 40, 0);
        finished(&mut log, 60_000, 1);
        let text = render(&status(), &log);
        assert!(text.contains("telekad_datagrams_received_total 7\n"));
        assert!(text.contains("telekad_messages_received_total{type=\"Peers\"} 3\n"));
        assert!(text.contains("telekad_records_stored 2\n"));
        assert!(text.contains("telekad_lookups_failed_total 1\n"));
        assert!(text.contains("# TYPE telekad_lookup_duration_seconds histogram\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("telekad_lookup_duration_seconds_count 3\n"));
        let buckets = text
            .matches("telekad_lookup_duration_seconds_bucket")
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1);
        // One HELP and one TYPE per family, each family once.
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        let mut names: Vec<&str> = helps.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a family is written twice");
        assert_eq!(n, text.lines().filter(|l| l.starts_with("# TYPE ")).count());
    }

    #[test]
    fn label_values_are_escaped_and_numbers_plain() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }

    #[test]
    fn status_counters_mirror_the_metrics() {
        let v = counters_json(&status(), &LookupLog::default());
        assert_eq!(v["datagrams_received_total"], 7);
        assert_eq!(v["messages_received_total"]["Peers"], 3);
        assert_eq!(v["dropped_total"]["not_array"], 0);
        assert_eq!(v["uptime_seconds"], 1.5);
        assert_eq!(v["records_stored"], 2);
    }
}
