//! The HTTP API of `telekad run --http` against a 20-node loopback swarm: every endpoint,
//! bad input answered with a 4xx JSON error that says what is wrong, and `/metrics` read
//! with a Prometheus text-format parser. Everything stays on 127.0.0.0/8.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::engine::BlockSource;
use telekad::http::{check_bind, serve, HttpConfig};
use telekad::id::NodeId;
use telekad::swarm::{Swarm, SwarmConfig};

/// A blocking HTTP client for the API under test: no proxy (loopback only), 4xx and 5xx
/// handed back as answers rather than errors.
struct Api {
    agent: ureq::Agent,
    base: String,
}

/// An answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts a 4xx JSON error whose message contains `needle`; returns the message.
    fn error(&self, status: u16, needle: &str) -> String {
        assert_eq!(self.status, status, "status of {:?}", self.body);
        assert!(
            self.content_type.starts_with("application/json"),
            "error content type {:?}",
            self.content_type
        );
        let v = self.json();
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {v}"))
            .to_string();
        assert!(
            msg.contains(needle),
            "error {msg:?} does not mention {needle:?}"
        );
        msg
    }
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        let cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Api {
            agent: ureq::Agent::new_with_config(cfg),
            base: format!("http://{addr}"),
        }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.expect("the server answers");
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().expect("a text body");
        Answer {
            status,
            content_type,
            body,
        }
    }

    fn get(&self, path: &str) -> Answer {
        Api::answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    fn delete(&self, path: &str) -> Answer {
        Api::answer(self.agent.delete(format!("{}{path}", self.base)).call())
    }

    fn post(&self, path: &str, body: &Value) -> Answer {
        Api::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .send_json(body),
        )
    }

    fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Answer {
        Api::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("content-type", content_type)
                .send(body),
        )
    }

    /// GET `path` until `done` holds for its JSON, at most `limit`.
    fn poll(&self, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let v = self.get(path).json();
            if done(&v) {
                return v;
            }
            assert!(t.elapsed() < limit, "{path} did not get there: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let d = std::env::temp_dir().join(format!("telekad-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A raw HTTP/1.1 GET with the given `Host` header: status and body.
fn raw_get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn every_endpoint_against_a_loopback_swarm() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = scratch_dir("http-api");
    let swarm = rt.block_on(async {
        let swarm = Swarm::start(SwarmConfig::new(20))
            .await
            .expect("swarm starts");
        let (fill, settled) = swarm.settle(Duration::from_secs(30), |_| {}).await;
        assert!(settled.is_some(), "the swarm did not settle: {fill:?}");
        swarm
    });
    let node = swarm.nodes()[0].clone();
    let addrs = swarm.addrs().to_vec();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let http = listener.local_addr().expect("addr");
    let server = rt.spawn(serve(
        node.clone(),
        listener,
        HttpConfig::new(dir.join("downloads")),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let api = Api::new(http);

    // Status.
    let s = api.get("/api/status");
    assert_eq!(s.status, 200);
    let s = s.json();
    assert!(is_hex64(&s["id"]), "{s}");
    assert_eq!(s["public_addr"], addrs[0].to_string());
    assert!(s["contacts"].as_u64().unwrap_or(0) >= 10, "{s}");
    assert!(s["uptime_s"].as_f64().unwrap_or(-1.0) > 0.0);
    assert!(
        s["counters"]["datagrams_received_total"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(s["counters"]["dropped_total"].is_object());

    // The routing table.
    let t = api.get("/api/table").json();
    let buckets = t["buckets"].as_array().expect("buckets");
    let listed: usize = buckets
        .iter()
        .map(|b| b["contacts"].as_array().map_or(0, |c| c.len()))
        .sum();
    assert_eq!(listed as u64, t["contacts"].as_u64().unwrap_or(0));
    assert!(listed >= 10);
    assert_eq!(t["bucket_size"], 20);
    for (i, b) in buckets.iter().enumerate() {
        assert_eq!(b["index"], i);
        for c in b["contacts"].as_array().into_iter().flatten() {
            let a: SocketAddr = c["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .expect("addr");
            assert!(addrs.contains(&a));
            assert_eq!(c["id"], NodeId::of_addr(a).to_hex());
            assert!(c["age_s"].as_f64().is_some_and(|x| x >= 0.0));
            assert!(c["last_seen_s"].as_f64().is_some_and(|x| x >= 0.0));
        }
    }

    // A lookup by address, then by ID; both are listed as recent lookups.
    let r = api.post("/api/lookup", &json!({ "target": addrs[7].to_string() }));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = r.json();
    assert_eq!(r["found"], true, "{r}");
    assert_eq!(r["target"], NodeId::of_addr(addrs[7]).to_hex());
    assert_eq!(r["target_addr"], addrs[7].to_string());
    assert!(r["hops"].as_u64().unwrap_or(0) >= 1);
    assert!(!r["closest"].as_array().expect("closest").is_empty());
    let by_id = NodeId::of_addr(addrs[11]).to_hex();
    let r = api.post("/api/lookup", &json!({ "target": by_id }));
    assert_eq!(r.json()["found"], true, "{}", r.body);
    let recent = api.get("/api/lookups/recent").json();
    let list = recent["lookups"].as_array().expect("lookups");
    assert!(
        list.len() >= 2 && recent["started"].as_u64() >= Some(2),
        "{recent}"
    );
    assert_eq!(list[0]["target"], by_id, "newest first");
    assert_eq!(list[0]["kind"], "lookup");
    assert!(list[0]["milliseconds"].as_f64().is_some_and(|m| m > 0.0));
    assert_eq!(list[1]["target"], NodeId::of_addr(addrs[7]).to_hex());

    // Bad lookups.
    api.post("/api/lookup", &json!({ "target": "xyz" }))
        .error(400, "neither a 64-hex-digit ID nor an IP:PORT");
    api.post("/api/lookup", &json!({ "target": "ab".repeat(31) }))
        .error(400, "neither a 64-hex-digit ID");
    api.post_raw("/api/lookup", "application/json", "{not json")
        .error(400, "bad JSON body");
    api.post("/api/lookup", &json!({}))
        .error(422, "missing field `target`");
    api.post("/api/lookup", &json!({ "target": 5 }))
        .error(422, "invalid type");
    api.post("/api/lookup", &json!({ "target": "x", "extra": 1 }))
        .error(422, "unknown field `extra`");
    api.post_raw("/api/lookup", "text/plain", "{}")
        .error(415, "Content-Type");
    let huge = json!({ "target": "a".repeat(20_000) });
    api.post("/api/lookup", &huge).error(413, "bad JSON body");

    // Announce a topic from the node behind the API, and from another swarm node.
    let a = api.post(
        "/api/announce",
        &json!({ "topic": "test/lobby", "note": "players 1/4" }),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = a.json();
    let key = NodeId::of_topic("test/lobby").to_hex();
    assert_eq!(a["key"], key);
    assert_eq!(a["note"], "players 1/4");
    let listed = api.get("/api/announced").json();
    assert_eq!(listed["announced"][0]["topic"], "test/lobby");
    assert_eq!(listed["announced"][0]["key"], key);
    rt.block_on(swarm.nodes()[3].announce(NodeId::of_topic("test/lobby"), "node 3"))
        .expect("node runs")
        .expect("announced");
    api.post(
        "/api/announce",
        &json!({ "topic": "test/lobby", "note": "n".repeat(300) }),
    )
    .error(400, "note is 300 bytes; the limit is 256 bytes");
    api.post("/api/announce", &json!({ "topic": "", "note": "" }))
        .error(400, "topic is empty");
    api.post("/api/announce", &json!({ "note": "hi" }))
        .error(422, "missing field `topic`");

    // Find the topic through the API: node 3, with its note and RTT (a node is never
    // listed its own announcement)...
    let found = api.poll("/api/topics/test/lobby", Duration::from_secs(10), |v| {
        !v["announcers"].as_array().is_none_or(|a| a.is_empty())
    });
    assert_eq!(found["key"], key);
    assert_eq!(found["topic"], "test/lobby");
    let by3 = &found["announcers"][0];
    assert_eq!(by3["addr"], addrs[3].to_string(), "{found}");
    assert_eq!(by3["note"], "node 3");
    assert!(by3["rtt_ms"].as_f64().is_some_and(|r| r > 0.0), "{by3}");
    // ...and the API's announcement as another node sees it.
    let t = Instant::now();
    loop {
        let (holders, _) = rt
            .block_on(swarm.nodes()[4].find_holders(NodeId::of_topic("test/lobby")))
            .expect("node runs");
        if holders
            .iter()
            .any(|h| h.addr == addrs[0] && h.note == "players 1/4")
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not listed: {holders:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A 64-hex topic is the key itself; a percent-encoded slash is the same topic.
    let same = api.get(&format!("/api/topics/{key}")).json();
    assert_eq!(same["key"], key);
    assert_eq!(api.get("/api/topics/test%2Flobby").json()["key"], key);
    let recent = api.get("/api/lookups/recent").json();
    assert_eq!(recent["lookups"][0]["kind"], "holders");

    // Content held by two swarm nodes: its holders, then a download through the API.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let id = NodeId::hash(&data);
    let data = Arc::new(data);
    for i in [5, 9] {
        let src: Arc<dyn BlockSource> = data.clone();
        rt.block_on(async {
            swarm.nodes()[i].hold(id, src).await.expect("hold");
            swarm.nodes()[i]
                .announce(id, "")
                .await
                .expect("runs")
                .expect("announce");
        });
    }
    let hex = id.to_hex();
    let h = api.poll(
        &format!("/api/holders/{hex}"),
        Duration::from_secs(10),
        |v| v["holders"].as_array().map_or(0, |a| a.len()) >= 2,
    );
    assert_eq!(h["id"], hex);
    let holders: Vec<&str> = h["holders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["addr"].as_str())
        .collect();
    assert!(holders.contains(&addrs[5].to_string().as_str()), "{h}");
    assert!(holders.contains(&addrs[9].to_string().as_str()), "{h}");
    api.get("/api/holders/xyz")
        .error(400, "expected 64 hex digits, got 3 characters");
    api.get(&format!("/api/holders/{}", "g".repeat(64)))
        .error(400, "non-hex character");

    let d = api.post("/api/downloads", &json!({ "id": hex, "name": "blob.bin" }));
    assert_eq!(d.status, 202, "{}", d.body);
    let d = d.json();
    assert_eq!(d["id"], hex);
    assert_eq!(d["progress"], format!("/api/downloads/{hex}"));
    let done = api.poll(
        &format!("/api/downloads/{hex}"),
        Duration::from_secs(20),
        |v| v["state"] == "done" || v["state"] == "failed",
    );
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["len"], 300_000);
    assert_eq!(done["received"], 300_000);
    let file = dir.join("downloads").join("blob.bin");
    assert_eq!(std::fs::read(&file).expect("downloaded file"), *data);
    let all = api.get("/api/downloads").json();
    assert_eq!(all["downloads"][0]["id"], hex);
    assert_eq!(all["downloads"][0]["state"], "done");

    // Bad downloads.
    api.post("/api/downloads", &json!({ "id": hex, "name": "blob.bin" }))
        .error(409, "exists already");
    api.post("/api/downloads", &json!({ "id": hex, "name": "../escape" }))
        .error(400, "not a plain file name");
    api.post("/api/downloads", &json!({ "id": hex, "name": ".." }))
        .error(400, "not a plain file name");
    api.post("/api/downloads", &json!({ "id": "1234" }))
        .error(400, "expected 64 hex digits, got 4 characters");
    api.post(
        "/api/downloads",
        &json!({ "id": hex, "name": "x", "holders": ["nowhere"] }),
    )
    .error(400, "holder 'nowhere' is not a reachable IP:PORT");
    let unknown = NodeId::of_topic("never started").to_hex();
    api.get(&format!("/api/downloads/{unknown}"))
        .error(404, "unknown download");
    api.delete(&format!("/api/downloads/{unknown}"))
        .error(404, "unknown download");
    api.get("/api/downloads/not-an-id")
        .error(400, "expected 64 hex digits");
    api.delete(&format!("/api/downloads/{hex}"))
        .error(409, "has ended already");

    // A download from a holder that never answers (nothing listens on loopback port 9) runs
    // for seconds: asking for it again is refused, and it can be cancelled.
    let nobody = NodeId::of_topic("nobody holds this").to_hex();
    let d = api.post(
        "/api/downloads",
        &json!({ "id": nobody, "holders": ["127.0.0.1:9"] }),
    );
    assert_eq!(d.status, 202, "{}", d.body);
    api.post("/api/downloads", &json!({ "id": nobody }))
        .error(409, "is running");
    let other = NodeId::of_topic("another id").to_hex();
    api.post("/api/downloads", &json!({ "id": other, "name": nobody }))
        .error(409, "another download is writing");
    api.get(&format!("/api/downloads/{other}"))
        .error(404, "unknown download");
    let c = api.delete(&format!("/api/downloads/{nobody}"));
    assert_eq!(c.status, 200, "{}", c.body);
    api.poll(
        &format!("/api/downloads/{nobody}"),
        Duration::from_secs(10),
        |v| v["state"] == "cancelled",
    );

    // Unknown endpoints and methods.
    api.get("/api/nope")
        .error(404, "no such endpoint: GET /api/nope");
    api.get("/api/lookup")
        .error(405, "GET is not allowed on /api/lookup");
    api.delete("/api/status")
        .error(405, "DELETE is not allowed");

    // DNS rebinding: a request for another host name reaching the loopback server is
    // refused; loopback names (any port) are served.
    for (host, status) in [
        ("evil.example", 421),
        ("evil.example:24255", 421),
        ("127.0.0.1.nip.io", 421),
        ("localhost", 200),
        ("localhost:24255", 200),
        ("127.0.0.1", 200),
        ("[::1]:9", 200),
    ] {
        let (got, body) = raw_get(http, "/api/status", host);
        assert_eq!(got, status, "Host {host}: {body}");
        if status == 421 {
            assert!(body.contains("is not a loopback name"), "{body}");
            assert!(body.contains("--http-public"), "{body}");
        }
    }

    // The dashboard.
    let page = api.get("/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    for id in [
        "table-rows",
        "lookups-rows",
        "bucket-chart",
        "downloads-rows",
        "records-held",
    ] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "no #{id}");
    }

    // Metrics, read with a Prometheus text-format parser.
    let m = api.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        m.content_type
    );
    check_metrics(&m.body, &addrs[0]);

    let _ = stop_tx.send(());
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        swarm.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_metrics(text: &str, addr: &SocketAddr) {
    use prometheus_parse::{LineInfo, Scrape, Value as P};
    // Every line must be something the parser understands (it skips what it does not).
    for line in text.lines() {
        let info = LineInfo::parse(line);
        assert!(
            !matches!(info, LineInfo::Ignored | LineInfo::Empty),
            "not Prometheus text format: {line:?}"
        );
        if let LineInfo::Sample { metric_name, .. } = info {
            assert!(metric_name.starts_with("telekad_"), "{metric_name}");
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        match s.value {
            P::Counter(v) | P::Gauge(v) | P::Untyped(v) => v,
            _ => panic!("{name} is not a single value"),
        }
    };
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "telekad_info")
        .expect("info");
    assert_eq!(
        info.labels.get("public_addr"),
        Some(addr.to_string().as_str())
    );
    assert!(
        matches!(scrape.samples.iter().find(|s| s.metric == "telekad_datagrams_received_total").map(|s| &s.value), Some(P::Counter(v)) if *v > 0.0)
    );
    assert!(value("telekad_datagrams_sent_total", None) > 0.0);
    assert!(value("telekad_lookups_requested_total", None) >= 2.0);
    assert!(value("telekad_lookups_started_total", None) >= 2.0);
    assert!(value("telekad_lookups_finished_total", None) >= 2.0);
    assert_eq!(value("telekad_lookups_failed_total", None), 0.0);
    assert!(value("telekad_table_contacts", None) >= 10.0);
    assert!(value("telekad_messages_received_total", Some(("type", "Peers"))) > 0.0);
    assert!(
        value(
            "telekad_messages_sent_total",
            Some(("type", "WhereAreThey"))
        ) > 0.0
    );
    assert_eq!(
        value("telekad_dropped_total", Some(("reason", "not_array"))),
        0.0
    );
    assert!(value("telekad_skipped_total", Some(("reason", "unknown"))) >= 0.0);
    assert!(value("telekad_downloads_finished_total", None) >= 1.0);
    assert!(value("telekad_bytes_served_total", None) >= 0.0);
    assert!(value("telekad_records_stored", None) >= 0.0);
    assert!(value("telekad_uptime_seconds", None) > 0.0);
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "telekad_lookup_duration_seconds")
        .expect("latency histogram");
    let P::Histogram(buckets) = &hist.value else {
        panic!("telekad_lookup_duration_seconds is not a histogram");
    };
    assert_eq!(buckets.len(), telekad::stats::LATENCY_BUCKETS.len() + 1);
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative"
    );
    let inf = buckets.last().expect("+Inf");
    assert!(inf.less_than.is_infinite());
    let count = value("telekad_lookup_duration_seconds_count", None);
    assert_eq!(inf.count, count);
    assert!(
        count >= 4.0,
        "two lookups and the topic and holder finds: {count}"
    );
    assert!(value("telekad_lookup_duration_seconds_sum", None) > 0.0);
}

#[test]
fn http_is_loopback_only_unless_public() {
    let loopback: SocketAddr = "127.0.0.1:24255".parse().expect("addr");
    let v6: SocketAddr = "[::1]:24255".parse().expect("addr");
    let any: SocketAddr = "0.0.0.0:24255".parse().expect("addr");
    assert!(check_bind(loopback, false).is_ok());
    assert!(check_bind(v6, false).is_ok());
    let e = check_bind(any, false).expect_err("refused");
    assert!(
        e.contains("--http-public") && e.contains("not a loopback address"),
        "{e}"
    );
    assert!(check_bind(any, true).is_ok());
    // The command refuses it before binding anything.
    let dir = scratch_dir("http-cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_telekad"))
        .args([
            "run",
            "--bind",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--http-public"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
