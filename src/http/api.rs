//! The JSON endpoints. Each one is a thin layer over a [`crate::driver::Node`] call.

use super::{clip, parse_id, Announced, ApiError, DownloadEntry, Outcome, Shared};
use crate::engine::{DownloadError, DownloadProgress};
use crate::id::NodeId;
use crate::partial::{partial_path, PartialFile};
use crate::records::MAX_NOTE;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

type ApiResult = Result<Json<Value>, ApiError>;

/// Longest topic name accepted.
pub const MAX_TOPIC: usize = 1024;

/// Most holders pinged for their RTT by one topic listing.
const MAX_PINGED: usize = 64;

/// A JSON body, or a 4xx saying what is wrong with it.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        let status = if e.status().is_client_error() {
            e.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("bad JSON body: {}", e.body_text()))
    })
}

/// A path parameter, or a 400.
fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `GET /api/status`: identity, uptime, sizes and every counter.
pub(super) async fn status(State(st): State<Shared>) -> ApiResult {
    let s = st.node.status().await?;
    let log = st.node.lookup_log().await?;
    let buckets = s
        .contacts
        .iter()
        .filter_map(|c| s.id.bucket_index(&c.id()))
        .max()
        .map_or(0, |m| m + 1);
    Ok(Json(json!({
        "id": s.id.to_hex(),
        "local_addr": s.local_addr.to_string(),
        "public_addr": s.public_addr.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.uptime.as_secs_f64(),
        "contacts": s.contacts.len(),
        "buckets": buckets,
        "bucket_size": s.bucket_size,
        "lookups_running": s.lookups_running,
        "records_held": s.records_held,
        "lookups": {
            "started": log.started,
            "finished": log.finished,
            "failed": log.failed,
        },
        "counters": super::metrics::counters_json(&s, &log),
    })))
}

/// `GET /api/table`: the routing table, bucket by bucket.
pub(super) async fn table(State(st): State<Shared>) -> ApiResult {
    let s = st.node.status().await?;
    let mut buckets: Vec<Vec<Value>> = Vec::new();
    for c in &s.contacts {
        let Some(i) = s.id.bucket_index(&c.id()) else {
            continue;
        };
        if buckets.len() <= i {
            buckets.resize_with(i + 1, Vec::new);
        }
        let age = s
            .uptime
            .saturating_sub(Duration::from_micros(c.first_seen().as_micros()));
        let seen = s
            .uptime
            .saturating_sub(Duration::from_micros(c.last_seen().as_micros()));
        buckets[i].push(json!({
            "addr": c.addr().to_string(),
            "id": c.id().to_hex(),
            "rtt_ms": c.rtt().map(ms),
            "age_s": age.as_secs_f64(),
            "last_seen_s": seen.as_secs_f64(),
            "failures": c.failures,
        }));
    }
    let buckets: Vec<Value> = buckets
        .into_iter()
        .enumerate()
        .map(|(i, contacts)| json!({ "index": i, "contacts": contacts }))
        .collect();
    Ok(Json(json!({
        "id": s.id.to_hex(),
        "bucket_size": s.bucket_size,
        "contacts": s.contacts.len(),
        "buckets": buckets,
    })))
}

/// Body of `POST /api/lookup`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LookupBody {
    /// 64 hex digits, or a node's IP:PORT.
    target: String,
}

/// `POST /api/lookup`: an iterative lookup; answers when it ends.
pub(super) async fn lookup(
    State(st): State<Shared>,
    b: Result<Json<LookupBody>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?;
    let (target, target_addr) = NodeId::parse_target(b.target.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "target '{}' is neither a 64-hex-digit ID nor an IP:PORT address",
            clip(&b.target)
        ))
    })?;
    let r = st.node.lookup(target).await?;
    let closest: Vec<Value> = r
        .closest
        .iter()
        .map(|f| {
            json!({
                "addr": f.addr.to_string(),
                "id": f.id.to_hex(),
                "distance_log2": f.id.distance(&target).log2(),
                "rtt_ms": ms(f.rtt),
                "hop": f.hop,
            })
        })
        .collect();
    Ok(Json(json!({
        "target": target.to_hex(),
        "target_addr": target_addr.map(|a| a.to_string()),
        "found": r.found,
        "hops": r.hops,
        "queried": r.queried,
        "answered": r.answered,
        "milliseconds": ms(r.elapsed),
        "timed_out": r.timed_out,
        "closest": closest,
    })))
}

/// `GET /api/lookups/recent`: the last lookups asked through the node's handle, newest first.
pub(super) async fn recent_lookups(State(st): State<Shared>) -> ApiResult {
    let log = st.node.lookup_log().await?;
    let list: Vec<Value> = log
        .recent
        .iter()
        .rev()
        .map(|l| {
            json!({
                "seq": l.seq,
                "kind": l.kind,
                "target": l.target.to_hex(),
                "finished_at_s": l.finished_at.as_secs_f64(),
                "milliseconds": ms(l.elapsed),
                "hops": l.hops,
                "queried": l.queried,
                "answered": l.answered,
                "found": l.found,
                "closest": l.closest,
                "holders": l.holders,
                "timed_out": l.timed_out,
            })
        })
        .collect();
    Ok(Json(json!({
        "started": log.started,
        "finished": log.finished,
        "failed": log.failed,
        "lookups": list,
    })))
}

/// `GET /api/holders/{id}`: the recorded holders of a content id (or topic key).
pub(super) async fn holders(
    State(st): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = parse_id("id", &path(id)?)?;
    let t = Instant::now();
    let (holders, r) = st.node.find_holders(id).await?;
    let list: Vec<Value> = holders
        .iter()
        .map(|h| json!({ "addr": h.addr.to_string(), "note": h.note }))
        .collect();
    Ok(Json(json!({
        "id": id.to_hex(),
        "holders": list,
        "nodes_asked": r.queried,
        "nodes_answered": r.answered,
        "milliseconds": ms(t.elapsed()),
    })))
}

/// Body of `POST /api/announce`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnnounceBody {
    /// A topic name, or a 64-hex key.
    topic: String,
    /// What finders see (at most [`MAX_NOTE`] bytes).
    #[serde(default)]
    note: String,
}

fn check_topic(topic: &str) -> Result<(), ApiError> {
    if topic.is_empty() {
        return Err(ApiError::bad_request(
            "topic is empty; give a name such as mygame/lobby, or a 64-hex key",
        ));
    }
    if topic.len() > MAX_TOPIC {
        return Err(ApiError::bad_request(format!(
            "topic is {} bytes; the limit is {MAX_TOPIC} bytes",
            topic.len()
        )));
    }
    Ok(())
}

/// `POST /api/announce`: announces this node under a topic, repeated while it runs.
pub(super) async fn announce(
    State(st): State<Shared>,
    b: Result<Json<AnnounceBody>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?;
    check_topic(&b.topic)?;
    if b.note.len() > MAX_NOTE {
        return Err(ApiError::bad_request(format!(
            "note is {} bytes; the limit is {MAX_NOTE} bytes, shorten it",
            b.note.len()
        )));
    }
    let key = NodeId::topic_key(&b.topic);
    st.node
        .announce(key, &b.note)
        .await?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    {
        let mut list = st.announced();
        list.retain(|a| a.key != key);
        if list.len() >= super::MAX_ANNOUNCED_KEPT {
            list.remove(0);
        }
        list.push(Announced {
            topic: b.topic.clone(),
            key,
            note: b.note.clone(),
        });
    }
    Ok(Json(json!({
        "topic": b.topic,
        "key": key.to_hex(),
        "note": b.note,
    })))
}

/// `GET /api/announced`: what was announced through this API (repeated while the node runs).
pub(super) async fn announced(State(st): State<Shared>) -> ApiResult {
    let list: Vec<Value> = st
        .announced()
        .iter()
        .map(|a| json!({ "topic": a.topic, "key": a.key.to_hex(), "note": a.note }))
        .collect();
    Ok(Json(json!({ "announced": list })))
}

/// `GET /api/topics/{topic}`: the nodes announced under a topic, with notes and RTTs.
pub(super) async fn find_topic(
    State(st): State<Shared>,
    topic: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let topic = path(topic)?;
    check_topic(&topic)?;
    let key = NodeId::topic_key(&topic);
    let (holders, r) = st.node.find_holders(key).await?;
    // Ping every announcer at once (a silent one costs its timeout, not the sum of them).
    let mut pings = tokio::task::JoinSet::new();
    for (i, h) in holders.iter().take(MAX_PINGED).enumerate() {
        let node = st.node.clone();
        let addr = h.addr;
        pings.spawn(async move { (i, node.ping(addr).await.ok().flatten()) });
    }
    let mut rtts = vec![None; holders.len()];
    while let Some(done) = pings.join_next().await {
        if let Ok((i, rtt)) = done {
            rtts[i] = rtt;
        }
    }
    let list: Vec<Value> = holders
        .iter()
        .zip(&rtts)
        .map(|(h, rtt)| {
            json!({
                "addr": h.addr.to_string(),
                "note": h.note,
                "rtt_ms": rtt.map(ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "topic": topic,
        "key": key.to_hex(),
        "announcers": list,
        "nodes_asked": r.queried,
        "nodes_answered": r.answered,
    })))
}

/// Body of `POST /api/downloads`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DownloadBody {
    /// The content id (64 hex).
    id: String,
    /// File name inside the download directory (default: the id).
    #[serde(default)]
    name: Option<String>,
    /// Nodes known to hold it (`IP:PORT`), e.g. plain cjp2p nodes.
    #[serde(default)]
    holders: Vec<String>,
}

/// Checks a file name for the download directory: one plain component.
fn check_name(name: &str) -> Result<(), ApiError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(ApiError::bad_request(format!(
            "name '{}' is not a plain file name: give 1 to 255 bytes with no '/', '\\' or \
             control character, not '.' or '..' (files go into the node's download directory)",
            clip(name)
        )));
    }
    Ok(())
}

/// `POST /api/downloads`: starts downloading a content id into the download directory.
/// Answers 202 at once; follow it with `GET /api/downloads/{id}`.
pub(super) async fn start_download(
    State(st): State<Shared>,
    b: Result<Json<DownloadBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = body(b)?;
    let id = parse_id("id", b.id.trim())?;
    let name = b.name.unwrap_or_else(|| id.to_hex());
    check_name(&name)?;
    let mut holders: Vec<SocketAddr> = Vec::with_capacity(b.holders.len());
    for h in &b.holders {
        let a = crate::addr::parse_peer(h.trim()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "holder '{}' is not a reachable IP:PORT such as 192.0.2.1:24254",
                clip(h)
            ))
        })?;
        holders.push(a);
    }
    let dir = &st.cfg.download_dir;
    let target: PathBuf = dir.join(&name);
    let started = Instant::now();
    // Reserve the id and the file in one step, so that two requests cannot both start
    // one download, or two downloads write one file. The entry it replaces (an ended
    // download of the same id) comes back if this one cannot start.
    let previous = {
        let mut map = st.downloads();
        let running = |d: &&DownloadEntry| d.outcome.is_none();
        if map.get(&id).filter(running).is_some() {
            return Err(ApiError::conflict(format!(
                "a download of {} is running; follow it at /api/downloads/{}",
                id.to_hex(),
                id.to_hex()
            )));
        }
        if map.values().filter(running).any(|d| d.path == target) {
            return Err(ApiError::conflict(format!(
                "another download is writing {}; pick another name",
                target.display()
            )));
        }
        if map.len() >= super::MAX_DOWNLOADS_KEPT {
            let oldest = map
                .iter()
                .filter(|(_, d)| d.outcome.is_some())
                .min_by_key(|(_, d)| d.started)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            id,
            DownloadEntry {
                path: target.clone(),
                started,
                outcome: None,
            },
        )
    };
    let rx = match open_and_start(&st, id, &target, holders).await {
        Ok(rx) => rx,
        Err(e) => {
            let mut map = st.downloads();
            if map.get(&id).is_some_and(|d| d.started == started) {
                match previous {
                    Some(p) => map.insert(id, p),
                    None => map.remove(&id),
                };
            }
            return Err(e);
        }
    };
    let st2 = st.clone();
    tokio::spawn(async move {
        let outcome = match rx.await {
            Ok(Ok(d)) => Outcome::Done {
                len: d.len,
                seconds: started.elapsed().as_secs_f64(),
                holders: d.holders,
                bad_holders: d.bad_holders,
            },
            Ok(Err(DownloadError::Cancelled)) => Outcome::Cancelled,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("the node stopped".into()),
        };
        if let Some(d) = st2.downloads().get_mut(&id) {
            if d.started == started {
                d.outcome = Some(outcome);
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": id.to_hex(),
            "path": target.display().to_string(),
            "progress": format!("/api/downloads/{}", id.to_hex()),
        })),
    ))
}

/// Opens the partial file of `target` (resuming what an earlier download of `id` left) and
/// starts the download.
async fn open_and_start(
    st: &Shared,
    id: NodeId,
    target: &std::path::Path,
    holders: Vec<SocketAddr>,
) -> Result<tokio::sync::oneshot::Receiver<crate::driver::DownloadResult>, ApiError> {
    let dir = &st.cfg.download_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "cannot create the download directory {}: {e}",
                dir.display()
            ),
        )
    })?;
    if target.exists() {
        return Err(ApiError::conflict(format!(
            "{} exists already; pick another name (nothing was overwritten)",
            target.display()
        )));
    }
    let (sink, resume) = PartialFile::open(target, id).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", partial_path(target).display()),
        )
    })?;
    Ok(st
        .node
        .download(id, Box::new(sink), resume, holders)
        .await?)
}

fn download_json(id: &NodeId, d: &DownloadEntry, p: Option<&DownloadProgress>) -> Value {
    let addrs = |v: &[SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut v = json!({
        "id": id.to_hex(),
        "path": d.path.display().to_string(),
        "seconds": d.started.elapsed().as_secs_f64(),
    });
    let extra = match (&d.outcome, p) {
        (
            Some(Outcome::Done {
                len,
                seconds,
                holders,
                bad_holders,
            }),
            _,
        ) => json!({
            "state": "done",
            "received": len,
            "len": len,
            "seconds": seconds,
            "mb_per_s": *len as f64 / seconds.max(1e-9) / 1e6,
            "holders": holders.len(),
            "holders_used": addrs(holders),
            "bad_holders": addrs(bad_holders),
        }),
        (Some(Outcome::Failed(e)), _) => json!({ "state": "failed", "error": e }),
        (Some(Outcome::Cancelled), _) => json!({ "state": "cancelled" }),
        (None, Some(p)) => json!({
            "state": if p.searching && p.holders == 0 { "searching" } else { "running" },
            "received": p.received,
            "len": p.len,
            "holders": p.holders,
            "dropped": p.dropped,
            "in_flight": p.in_flight,
            "rechecking": p.rechecking,
        }),
        // Finished in the engine, the outcome not recorded yet.
        (None, None) => json!({ "state": "finishing" }),
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

/// `GET /api/downloads`: every download started through the API.
pub(super) async fn downloads(State(st): State<Shared>) -> ApiResult {
    let list: Vec<(NodeId, DownloadEntry)> = st
        .downloads()
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut out = Vec::with_capacity(list.len());
    for (id, d) in &list {
        let p = if d.outcome.is_none() {
            st.node.download_progress(*id).await?
        } else {
            None
        };
        out.push(download_json(id, d, p.as_ref()));
    }
    Ok(Json(json!({ "downloads": out })))
}

/// The entry of a download started through the API, or a 400 / 404.
fn entry(
    st: &Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<(NodeId, DownloadEntry), ApiError> {
    let id = parse_id("download id", &path(id)?)?;
    let d = st.downloads().get(&id).cloned().ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown download {}: none was started through this API (POST /api/downloads)",
            id.to_hex()
        ))
    })?;
    Ok((id, d))
}

/// `GET /api/downloads/{id}`: where a download stands.
pub(super) async fn download(
    State(st): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let (id, d) = entry(&st, id)?;
    let p = if d.outcome.is_none() {
        st.node.download_progress(id).await?
    } else {
        None
    };
    Ok(Json(download_json(&id, &d, p.as_ref())))
}

/// `DELETE /api/downloads/{id}`: stops a download, keeping what arrived for a resume.
pub(super) async fn cancel_download(
    State(st): State<Shared>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let (id, d) = entry(&st, id)?;
    if d.outcome.is_some() {
        return Err(ApiError::conflict(format!(
            "the download of {} has ended already",
            id.to_hex()
        )));
    }
    st.node.cancel_download(id).await?;
    Ok(Json(json!({ "id": id.to_hex(), "state": "cancelling" })))
}
