//! `telekad get ID [-o FILE]`: find the holders of a content id and download it from all of
//! them, verified against the id, into a partial file that a second run resumes.

use crate::args::{peer_addr, ClientArgs};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use telekad::driver::Node;
use telekad::id::NodeId;
use telekad::partial::{partial_path, PartialFile};

/// Options of `telekad get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The content id: the SHA-256 of the content, 64 hex digits.
    id: String,
    /// Where to write it [default: the id, in the current directory].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// A node known to hold the content (e.g. a plain cjp2p node); repeat for more.
    #[arg(long, value_parser = peer_addr)]
    holder: Vec<SocketAddr>,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn get(a: GetArgs) -> Result<ExitCode, String> {
    let id = NodeId::from_hex(&a.id).map_err(|e| {
        format!(
            "'{}' is not a content id ({e}); expected the 64-hex SHA-256 that `telekad share` printed",
            a.id
        )
    })?;
    let target = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(id.to_hex()));
    if target.exists() {
        return Err(format!(
            "{} exists already; remove it or pass another -o FILE (nothing was overwritten)",
            target.display()
        ));
    }
    let mut cfg = match a.client.node_config() {
        Ok(c) => c,
        Err(_) if !a.holder.is_empty() => {
            let mut c = telekad::driver::NodeConfig::new(a.client.bind);
            c.read_only = true;
            c.engine.read_only = true;
            c
        }
        Err(e) => return Err(e),
    };
    cfg.bootstrap.extend(a.holder.iter().copied());
    let (sink, resume) = PartialFile::open(&target, id).map_err(|e| {
        format!(
            "cannot write {}: {e}; pick another -o FILE",
            partial_path(&target).display()
        )
    })?;
    let resumed = resume
        .as_ref()
        .map(|(len, have)| (*len, have.iter().filter(|h| **h).count()));
    if let Some((len, blocks)) = resumed {
        tracing::info!(len, blocks, "resuming a partial download");
    }
    let stop =
        crate::run::stop_signal().map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut done = node
        .download(id, Box::new(sink), resume, a.holder.clone())
        .await
        .map_err(|e| e.to_string())?;
    let bar = if std::io::stderr().is_terminal() && !a.json {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("finding holders");
        b
    } else {
        ProgressBar::hidden()
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let outcome = loop {
        tokio::select! {
            r = &mut done => break r.map_err(|_| "the node stopped".to_string())?,
            _ = &mut stop => {
                let _ = node.cancel_download(id).await;
                let _ = node.shutdown().await;
                bar.abandon();
                eprintln!(
                    "telekad: interrupted; {} is kept, run the same command again to resume",
                    partial_path(&target).display()
                );
                return Ok(ExitCode::from(130));
            }
            _ = tick.tick() => {
                if let Ok(Some(p)) = node.download_progress(id).await {
                    if let Some(len) = p.len {
                        bar.set_length(len);
                    }
                    bar.set_position(p.received);
                    bar.set_message(if p.rechecking {
                        format!("re-checking ({} holders)", p.holders)
                    } else if p.holders == 0 {
                        "finding holders".to_string()
                    } else {
                        format!("{} holders", p.holders)
                    });
                }
            }
        }
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let _ = node.shutdown().await;
    match outcome {
        Ok(d) => {
            let mbps = d.len as f64 / secs.max(1e-9) / 1e6;
            if a.json {
                let v = serde_json::json!({
                    "id": id.to_hex(),
                    "path": target.display().to_string(),
                    "bytes": d.len,
                    "seconds": secs,
                    "mb_per_s": mbps,
                    "resumed_blocks": resumed.map_or(0, |r| r.1),
                    "holders": d.holders.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                    "bad_holders": d.bad_holders.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                });
                println!("{v}");
            } else {
                println!(
                    "{}: {} bytes verified in {secs:.2} s ({mbps:.1} MB/s) from {} holder(s)",
                    target.display(),
                    d.len,
                    d.holders.len()
                );
                for b in &d.bad_holders {
                    println!("dropped {b}: it sent data that did not match the id");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(format!("download of {} failed: {e}", id.to_hex())),
    }
}
