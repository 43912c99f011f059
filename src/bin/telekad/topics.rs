//! `telekad announce` and `telekad find`: the game-lobby use case. Servers announce under a
//! topic (SHA-256 of a name such as a game's channel); players list them with notes and RTT.

use crate::args::{ClientArgs, NodeArgs};
use crate::config::Given;
use clap::Args;
use std::process::ExitCode;
use telekad::driver::Node;
use telekad::id::NodeId;
use telekad::records::MAX_NOTE;

/// Options of `telekad announce`.
#[derive(Args, Debug)]
pub struct AnnounceArgs {
    /// The topic: a name (e.g. "mygame/lobby"), or a 64-hex key.
    topic: String,
    /// A short note players see (at most 256 bytes), e.g. "players 4/10, map dust".
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    node: NodeArgs,
    /// Print events as JSON lines on stdout, one object each, instead of human text:
    /// {"event":"started",..} (id, bind), {"event":"announced","topic","id","note"} (id: the
    /// topic key), {"event":"stopped",..} at exit.
    #[arg(long)]
    json: bool,
}

/// Options of `telekad find`.
#[derive(Args, Debug)]
pub struct FindArgs {
    /// The topic: a name (e.g. "mygame/lobby"), or a 64-hex key.
    topic: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn announce(mut a: AnnounceArgs, given: &Given) -> Result<ExitCode, String> {
    // Of the config file, `announce` takes the node's settings (bind, data_dir, bootstrap,
    // public, save_every).
    a.node.apply_config(given)?;
    if a.note.len() > MAX_NOTE {
        return Err(format!(
            "--note is {} bytes; the limit is {MAX_NOTE} bytes, shorten it",
            a.note.len()
        ));
    }
    let key = NodeId::topic_key(&a.topic);
    let cfg = a.node.node_config();
    crate::args::require_seeds(&cfg)?;
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
    node.announce(key, &a.note)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if a.json {
        crate::run::event(serde_json::json!({
            "event": "announced",
            "topic": a.topic,
            "id": key.to_hex(),
            "note": a.note,
        }));
    }
    tracing::info!(
        topic = %a.topic,
        key = %key,
        addr = %node.local_addr(),
        "announcing (repeated before records expire); Ctrl-C to stop"
    );
    stop.await;
    crate::run::stop_node(&node, a.json).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn find(a: FindArgs) -> Result<ExitCode, String> {
    let key = NodeId::topic_key(&a.topic);
    let cfg = a.client.node_config()?;
    let node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    let (holders, result) = node.find_holders(key).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::with_capacity(holders.len());
    for h in &holders {
        let rtt = node.ping(h.addr).await.map_err(|e| e.to_string())?;
        rows.push((h.addr, h.note.clone(), rtt));
    }
    let _ = node.shutdown().await;
    if a.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(addr, note, rtt)| {
                serde_json::json!({
                    "addr": addr.to_string(),
                    "note": note,
                    "rtt_ms": rtt.map(|d| d.as_secs_f64() * 1000.0),
                })
            })
            .collect();
        let v = serde_json::json!({
            "topic": a.topic,
            "key": key.to_hex(),
            "announcers": list,
            "nodes_asked": result.queried,
            "nodes_answered": result.answered,
        });
        println!("{v}");
    } else {
        println!(
            "{} announcer(s) under {:?} ({})",
            rows.len(),
            a.topic,
            key.to_hex()
        );
        for (addr, note, rtt) in &rows {
            let rtt = rtt.map_or("no answer".to_string(), |d| {
                format!("{:.2} ms", d.as_secs_f64() * 1000.0)
            });
            println!("  {:<46} {:>12}  {note}", addr.to_string(), rtt);
        }
    }
    if result.answered == 0 {
        eprintln!("telekad: error: no node answered; check --bootstrap");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
