//! `telekad run`: one long-running node.

use crate::args::{HttpArgs, NodeArgs, RateArgs};
use crate::config::{merge, Given};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use telekad::driver::Node;

/// Options of `telekad run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    rate: RateArgs,
    #[command(flatten)]
    http: HttpArgs,
    /// A directory (or file) to share; repeat for more. New and changed files are picked
    /// up every 10 s.
    #[arg(long)]
    share: Vec<PathBuf>,
    /// Seconds between scans of the shared directories.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    rescan: u64,
    /// Print events as JSON lines on stdout, one object each, instead of human text:
    /// {"event":"started",..} once listening (id, bind, http and the effective settings),
    /// {"event":"shared",..} per shared file, {"event":"stopped",..} at exit.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    /// Reads `--config` and fills in every setting the command line did not give.
    fn apply_config(&mut self, given: &Given) -> Result<(), String> {
        if let Some(f) = self.node.apply_config(given)? {
            self.rate.merge(&f, given);
            self.http.merge(&f, given);
            merge(&mut self.share, &f.share, "share", given);
            merge(&mut self.rescan, &f.rescan, "rescan", given);
        }
        self.http.check()
    }
}

/// Prints one JSON event line on stdout.
pub fn event(v: serde_json::Value) {
    println!("{v}");
}

/// Saves and stops `node`; with `json`, reports it as a `stopped` event.
pub async fn stop_node(node: &Node, json: bool) -> Result<(), String> {
    let contacts = node.status().await.map_or(0, |s| s.contacts.len());
    let saved = node.shutdown().await;
    if json {
        event(serde_json::json!({
            "event": "stopped",
            "saved": saved.is_ok(),
            "contacts": contacts,
        }));
    }
    saved.map_err(|e| format!("could not save state: {e}"))
}

pub async fn run(mut a: RunArgs, given: &Given) -> Result<ExitCode, String> {
    // The config file is read and checked before anything is bound, opened or written.
    a.apply_config(given)?;
    for p in &a.share {
        if !p.exists() {
            let from = if given.has("share") {
                "--share"
            } else {
                "share (in the config file)"
            };
            return Err(format!(
                "{from} {} does not exist; give a directory or file to share",
                p.display()
            ));
        }
    }
    let mut cfg = a.node.node_config();
    a.rate.apply(&mut cfg.engine);
    // Install the signal handlers before anything is announced, so that an early Ctrl-C
    // still saves and exits 0.
    let stop = stop_signal().map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let http = a.http.listen().await?;
    let node = Node::start(cfg.clone()).await.map_err(|e| e.to_string())?;
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let public = a.http.http_public;
    let http = http.map(|listener| serve_http(&node, listener, cfg.data_dir.as_deref(), public));
    if a.json {
        event(serde_json::json!({
            "event": "started",
            "id": node.id().to_hex(),
            "bind": node.local_addr().to_string(),
            "http": http_addr.map(|h| h.to_string()),
            "data_dir": cfg.data_dir.as_deref().map(|p| p.display().to_string()),
            "bootstrap": a.node.join.bootstrap.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
            "public": a.node.join.public,
            "rate_per_ip": a.rate.rate_per_ip,
            "rate_global": a.rate.rate_global,
            "rate_blocks_per_ip": a.rate.rate_blocks_per_ip,
            "http_public": a.http.http_public,
            "share": a.share.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "rescan": a.rescan,
            "config": a.node.config.as_deref().map(|p| p.display().to_string()),
        }));
    }
    tracing::info!(
        addr = %node.local_addr(),
        id = %node.id(),
        data_dir = %cfg.data_dir.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        bootstrap = cfg.bootstrap.len(),
        "telekad node running; Ctrl-C to stop"
    );
    let mut sharer = crate::share::Sharer::default();
    if !a.share.is_empty() {
        let added = sharer.rescan(&node, &a.share, true).await?;
        crate::share::print_shared(&added, a.json);
    }
    tokio::pin!(stop);
    let mut trim = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            // Hand pages freed after bursts back to the OS, so RSS tracks what is in use.
            _ = trim.tick() => telekad::procstat::release_free_memory(),
            _ = tokio::time::sleep(Duration::from_secs(a.rescan)), if !a.share.is_empty() => {
                let added = sharer.rescan(&node, &a.share, true).await?;
                crate::share::print_shared(&added, a.json);
            }
        }
    }
    if let Some((stop_http, task)) = http {
        let _ = stop_http.send(());
        // Open connections get two seconds to finish their request.
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            tracing::debug!("HTTP connections still open at exit");
        }
    }
    tracing::info!("stopping: saving state");
    stop_node(&node, a.json).await?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the HTTP API on `listener`; downloads asked through it go to `DATA_DIR/downloads`.
/// Returns what stops it and its task.
fn serve_http(
    node: &Node,
    listener: tokio::net::TcpListener,
    data_dir: Option<&std::path::Path>,
    public: bool,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let dir = data_dir
        .unwrap_or_else(|| std::path::Path::new("."))
        .join("downloads");
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, downloads = %dir.display(), "HTTP API and dashboard at http://{addr}/");
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut cfg = telekad::http::HttpConfig::new(dir);
    cfg.loopback_hosts_only = !public;
    let node = node.clone();
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = rx.await;
        };
        if let Err(e) = telekad::http::serve(node, listener, cfg, stop).await {
            tracing::warn!("the HTTP server stopped: {e}");
        }
    });
    (tx, task)
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM (how service managers stop a node).
/// The handlers are registered when this is called, not when it is first polled.
#[cfg(unix)]
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut c = tokio::signal::windows::ctrl_c()?;
    Ok(async move {
        c.recv().await;
    })
}
