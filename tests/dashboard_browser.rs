//! The dashboard in a real browser: headless Chromium (Debian's `chromium`), driven through
//! `chromedriver` with the WebDriver client `fantoccini`, opens the dashboard of a node in
//! a 12-node loopback swarm, waits for the routing table to appear, runs a lookup from the
//! page's form, waits for it in the recent-lookups list, and saves a screenshot to
//! `target/dashboard.png`.
//!
//! Chromium and chromedriver are required: without them this test fails and says how to
//! install them (`.ci/browser-deps`). `TELEKAD_CHROMIUM` and `TELEKAD_CHROMEDRIVER` override
//! their paths. Every address used is on 127.0.0.0/8.

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telekad::engine::BlockSource;
use telekad::http::{serve, HttpConfig};
use telekad::id::NodeId;
use telekad::swarm::{Swarm, SwarmConfig};

/// How long any one wait in the page may take.
const WAIT: Duration = Duration::from_secs(15);

fn tool(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        p.exists(),
        "{} is not installed: this test needs Debian's chromium and chromium-driver \
         packages. Install them with `bash .ci/browser-deps` (apt-get install chromium \
         chromium-driver), or set {var} to the binary",
        p.display()
    );
    p
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for chromedriver).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    )
}

async fn start_chromedriver(bin: &PathBuf) -> (Driver, u16) {
    let port = free_port();
    let log = target_dir().join("chromedriver.log");
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let driver = Driver(child);
    let t = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "chromedriver did not listen on 127.0.0.1:{port}; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (driver, port)
}

/// Text of every row of a table body.
async fn rows(c: &fantoccini::Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(r.text().await.unwrap_or_default());
    }
    out
}

/// Polls until `done` holds for the rows at `css`.
async fn wait_rows(
    c: &fantoccini::Client,
    css: &str,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let t = Instant::now();
    loop {
        let r = rows(c, css).await;
        if done(&r) {
            return r;
        }
        assert!(t.elapsed() < WAIT, "{what}: never appeared; rows: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_table_and_a_lookup() {
    let chromium = tool("TELEKAD_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("TELEKAD_CHROMEDRIVER", "/usr/bin/chromedriver");
    let started = Instant::now();

    // A small swarm, node 0 behind the HTTP server.
    let swarm = Swarm::start(SwarmConfig::new(12)).await.expect("swarm");
    let (fill, settled) = swarm.settle(Duration::from_secs(20), |_| {}).await;
    assert!(settled.is_some(), "the swarm did not settle: {fill:?}");
    let addrs: Vec<SocketAddr> = swarm.addrs().to_vec();
    let scratch = std::env::temp_dir().join(format!("telekad-browser-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        swarm.nodes()[0].clone(),
        listener,
        HttpConfig::new(scratch.join("downloads")),
        async move {
            let _ = stop_rx.await;
        },
    ));
    // Content on two other nodes, for a transfer to show.
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
    let content = NodeId::hash(&data);
    let data = Arc::new(data);
    for i in [4, 8] {
        let src: Arc<dyn BlockSource> = data.clone();
        swarm.nodes()[i].hold(content, src).await.expect("hold");
        let _ = swarm.nodes()[i].announce(content, "").await;
    }

    // The browser.
    let (_driver, port) = start_chromedriver(&chromedriver).await;
    let profile = scratch.join("chromium-profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--no-proxy-server".into(),
        "--window-size=1400,1500".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": args,
        }
    });
    let caps = match caps {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    };
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps);
    let c = builder
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in headless chromium");

    let url = format!("http://{http}/");
    c.goto(&url).await.expect("opens the dashboard");
    assert_eq!(c.title().await.expect("title"), "telekad dashboard");

    // The routing table fills in (every contact is a swarm node).
    let table = wait_rows(&c, "#table-rows tr", "routing table rows", |r| r.len() >= 5).await;
    assert!(
        table
            .iter()
            .all(|r| addrs.iter().any(|a| r.contains(&a.to_string()))),
        "{table:?}"
    );
    let bars = c
        .find_all(Locator::Css("#bucket-chart rect.bucket-bar"))
        .await
        .expect("chart");
    assert!(!bars.is_empty(), "no bucket bars");
    let id_shown = c
        .find(Locator::Id("node-id"))
        .await
        .expect("#node-id")
        .attr("title")
        .await
        .expect("title attr");
    assert_eq!(
        id_shown.as_deref(),
        Some(NodeId::of_addr(addrs[0]).to_hex().as_str())
    );

    // A lookup from the page's form appears in the recent lookups.
    let target = addrs[6];
    let prefix = &NodeId::of_addr(target).to_hex()[..12];
    c.find(Locator::Id("lookup-target"))
        .await
        .expect("#lookup-target")
        .send_keys(&target.to_string())
        .await
        .expect("types");
    c.find(Locator::Id("lookup-button"))
        .await
        .expect("#lookup-button")
        .click()
        .await
        .expect("clicks");
    let lookups = wait_rows(&c, "#lookups-rows tr", "the lookup", |r| {
        r.iter().any(|x| x.contains(prefix))
    })
    .await;
    let row = lookups
        .iter()
        .find(|x| x.contains(prefix))
        .expect("the lookup's row");
    assert!(row.contains("yes"), "the target was not found: {row:?}");
    let result = c
        .find(Locator::Id("lookup-result"))
        .await
        .expect("#lookup-result")
        .text()
        .await
        .expect("text");
    assert!(result.starts_with("found"), "{result:?}");

    // An announcement and a download from the page's forms.
    c.find(Locator::Id("announce-topic"))
        .await
        .expect("#announce-topic")
        .send_keys("mygame/lobby")
        .await
        .expect("types");
    c.find(Locator::Id("announce-note"))
        .await
        .expect("#announce-note")
        .send_keys("players 4/10, map dust")
        .await
        .expect("types");
    c.find(Locator::Id("announce-button"))
        .await
        .expect("#announce-button")
        .click()
        .await
        .expect("clicks");
    wait_rows(&c, "#announced-rows tr", "the announcement", |r| {
        r.iter().any(|x| x.contains("mygame/lobby"))
    })
    .await;
    c.find(Locator::Id("download-id"))
        .await
        .expect("#download-id")
        .send_keys(&content.to_hex())
        .await
        .expect("types");
    c.find(Locator::Id("download-button"))
        .await
        .expect("#download-button")
        .click()
        .await
        .expect("clicks");
    wait_rows(&c, "#downloads-rows tr", "the finished download", |r| {
        r.iter().any(|x| x.contains("done"))
    })
    .await;
    // One more refresh so that the counters include everything above.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let conn = c
        .find(Locator::Id("conn"))
        .await
        .expect("#conn")
        .text()
        .await
        .expect("text");
    assert!(conn.starts_with("live"), "the page lost the API: {conn:?}");

    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let out = target_dir().join("dashboard.png");
    std::fs::create_dir_all(target_dir()).expect("target dir");
    std::fs::write(&out, &png).expect("writes the screenshot");
    println!("screenshot: {} ({} bytes)", out.display(), png.len());

    let _ = c.close().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    swarm.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
