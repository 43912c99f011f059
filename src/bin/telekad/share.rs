//! `telekad share` and `telekad run --share`: hash files, serve them in cjp2p `Content`
//! blocks, announce them, and pick up files added or changed later.

use crate::args::NodeArgs;
use crate::config::Given;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use telekad::driver::Node;
use telekad::files::{hash_file, scan, FileSource};
use telekad::id::NodeId;

/// How often shared directories are scanned for new or changed files.
pub const RESCAN: Duration = Duration::from_secs(10);

/// Files at least this large get a hashing progress bar.
const PROGRESS_FROM: u64 = 16 << 20;

/// Options of `telekad share`.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// Files or directories to share (directories recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    /// Print events as JSON lines on stdout, one object each, instead of human text:
    /// {"event":"started",..} (id, bind), {"event":"shared","path","id","bytes"} per file,
    /// {"event":"stopped",..} at exit.
    #[arg(long)]
    json: bool,
}

/// What is being shared: path -> (size, modified, id).
#[derive(Default)]
pub struct Sharer {
    known: BTreeMap<PathBuf, (u64, Option<SystemTime>, NodeId)>,
}

impl Sharer {
    /// Hashes new or changed files under `paths`, serves and announces them, and stops
    /// serving files that disappeared. Returns the newly shared (id, size, path).
    pub async fn rescan(
        &mut self,
        node: &Node,
        paths: &[PathBuf],
        show_progress: bool,
    ) -> Result<Vec<(NodeId, u64, PathBuf)>, String> {
        let list = scan(paths).map_err(|e| format!("cannot read the shared paths: {e}"))?;
        let mut added = Vec::new();
        for path in &list {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().ok());
            if self.known.get(path).is_some_and(|k| (k.0, k.1) == stamp) {
                continue;
            }
            let bar = if show_progress && meta.len() >= PROGRESS_FROM {
                let b = ProgressBar::new(meta.len());
                b.set_style(
                    ProgressStyle::with_template(
                        "hashing {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_message(path.display().to_string());
                b
            } else {
                ProgressBar::hidden()
            };
            let p = path.clone();
            let b2 = bar.clone();
            let hashed =
                tokio::task::spawn_blocking(move || hash_file(&p, |done, _| b2.set_position(done)))
                    .await
                    .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            let (id, len) = match hashed {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "not shared: {e}");
                    continue;
                }
            };
            let source = match FileSource::open(path) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "not shared: {e}");
                    continue;
                }
            };
            if let Some((_, _, old)) = self.known.insert(path.clone(), (stamp.0, stamp.1, id)) {
                if old != id {
                    node.unhold(old).await.map_err(|e| e.to_string())?;
                }
            }
            node.hold(id, Arc::new(source))
                .await
                .map_err(|e| e.to_string())?;
            node.announce(id, "")
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            added.push((id, len, path.clone()));
        }
        let gone: Vec<PathBuf> = self
            .known
            .keys()
            .filter(|p| !list.contains(p))
            .cloned()
            .collect();
        for p in gone {
            if let Some((_, _, id)) = self.known.remove(&p) {
                if !self.known.values().any(|k| k.2 == id) {
                    node.unhold(id).await.map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(added)
    }
}

/// Prints one line (or, with `json`, one `shared` event) per newly shared file.
pub fn print_shared(added: &[(NodeId, u64, PathBuf)], json: bool) {
    for (id, len, path) in added {
        if json {
            crate::run::event(serde_json::json!({
                "event": "shared",
                "path": path.display().to_string(),
                "id": id.to_hex(),
                "bytes": len,
            }));
        } else {
            println!("{}  {:>12}  {}", id.to_hex(), len, path.display());
        }
    }
}

pub async fn share(mut a: ShareArgs, given: &Given) -> Result<ExitCode, String> {
    // Of the config file, `share` takes the node's settings (bind, data_dir, bootstrap,
    // public, save_every); the paths to share are its arguments.
    a.node.apply_config(given)?;
    for p in &a.paths {
        if !p.exists() {
            return Err(format!(
                "{} does not exist; give files or directories to share",
                p.display()
            ));
        }
    }
    let cfg = a.node.node_config();
    let stop =
        crate::run::stop_signal().map_err(|e| format!("cannot install the signal handler: {e}"))?;
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    if a.json {
        crate::run::event(serde_json::json!({
            "event": "started",
            "id": node.id().to_hex(),
            "bind": node.local_addr().to_string(),
        }));
    }
    let mut sharer = Sharer::default();
    let added = sharer.rescan(&node, &a.paths, !a.json).await?;
    print_shared(&added, a.json);
    tracing::info!(files = added.len(), addr = %node.local_addr(), "sharing; Ctrl-C to stop");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(RESCAN) => {
                let added = sharer.rescan(&node, &a.paths, !a.json).await?;
                print_shared(&added, a.json);
            }
        }
    }
    crate::run::stop_node(&node, a.json).await?;
    Ok(ExitCode::SUCCESS)
}
