//! The HTTP face of a running node (`telekad run --http ADDR`): a JSON API, Prometheus
//! metrics at `/metrics`, and a live dashboard at `/`.
//!
//! Everything goes through the [`Node`] handle, as the command-line tools do; the server
//! holds no protocol state of its own beyond the downloads it started and the topics it
//! announced. Bad input is answered with a 4xx status and a JSON body
//! `{"error": "what is wrong"}`. The endpoints are listed in `spec/http.md`.
//!
//! The server has no authentication: anyone who reaches it can make the node announce and
//! download. `telekad run` binds it to loopback unless `--http-public` is given
//! ([`check_bind`]), and a loopback server answers only requests addressed to a loopback
//! host (`Host: localhost`, `127.x.y.z` or `[::1]`, any port): a web page whose own host
//! name an attacker points at 127.0.0.1 (DNS rebinding) gets 421 Misdirected Request, not
//! the API ([`host_is_loopback`]).
//!
//! ```no_run
//! # async fn demo(node: telekad::driver::Node) -> std::io::Result<()> {
//! use telekad::http::{serve, HttpConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:24255").await?;
//! let cfg = HttpConfig::new("/tmp/telekad-downloads".into());
//! serve(node, listener, cfg, std::future::pending()).await
//! # }
//! ```

mod api;
mod metrics;

use crate::driver::Node;
use crate::id::NodeId;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub use metrics::render as render_metrics;

/// The dashboard: one self-contained page (inline script and style) polling the JSON API.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Largest request body accepted (a JSON object of a few short fields).
pub const MAX_BODY: usize = 16 * 1024;

/// Most downloads remembered; the oldest finished ones are forgotten first.
pub const MAX_DOWNLOADS_KEPT: usize = 256;

/// Most announcements made through the API that are listed back.
pub const MAX_ANNOUNCED_KEPT: usize = 256;

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where `POST /api/downloads` writes files (created when first needed). A download
    /// names only a file inside it, never a path.
    pub download_dir: PathBuf,
    /// Answer only requests whose `Host` names a loopback host (default; `telekad run`
    /// turns it off with `--http-public`, where the operator picks the names).
    pub loopback_hosts_only: bool,
}

impl HttpConfig {
    /// Downloads go to `download_dir`; only loopback `Host` names are answered.
    pub fn new(download_dir: PathBuf) -> HttpConfig {
        HttpConfig {
            download_dir,
            loopback_hosts_only: true,
        }
    }
}

/// Whether a `Host` header value names a loopback host: `localhost`, an IPv4 address in
/// 127.0.0.0/8 or `[::1]`, with or without a port.
pub fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses to serve the API on a non-loopback address unless `public` is set: the API can
/// make the node announce and download, and has no authentication.
pub fn check_bind(addr: SocketAddr, public: bool) -> Result<(), String> {
    if public || crate::addr::is_loopback(addr) {
        Ok(())
    } else {
        Err(format!(
            "HTTP address {addr} (--http, or http in the config file) is not a loopback \
             address: the HTTP API has no authentication and can make the node announce and \
             download; bind 127.0.0.1 (or [::1]), or add --http-public (http_public = true) to \
             expose it on purpose"
        ))
    }
}

/// An error answer: a 4xx or 5xx status with `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What is wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 Conflict.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::driver::NodeGone> for ApiError {
    fn from(e: crate::driver::NodeGone) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

/// Parses a 64-hex content id or topic key taken from a request, naming the field in the
/// error.
pub fn parse_id(what: &str, s: &str) -> Result<NodeId, ApiError> {
    NodeId::from_hex(s).map_err(|e| ApiError::bad_request(format!("{what} '{}': {e}", clip(s))))
}

/// At most 80 characters of `s`, for error messages that echo input.
fn clip(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        let head: String = s.chars().take(80).collect();
        format!("{head}...")
    }
}

/// A download started through the API.
#[derive(Debug, Clone)]
struct DownloadEntry {
    /// The file written.
    path: PathBuf,
    /// When it was asked for.
    started: Instant,
    /// How it ended (`None`: running).
    outcome: Option<Outcome>,
}

#[derive(Debug, Clone)]
enum Outcome {
    Done {
        len: u64,
        seconds: f64,
        holders: Vec<SocketAddr>,
        bad_holders: Vec<SocketAddr>,
    },
    Failed(String),
    Cancelled,
}

/// A topic announced through the API.
#[derive(Debug, Clone)]
struct Announced {
    topic: String,
    key: NodeId,
    note: String,
}

/// What the handlers share.
struct AppState {
    node: Node,
    cfg: HttpConfig,
    downloads: Mutex<BTreeMap<NodeId, DownloadEntry>>,
    announced: Mutex<Vec<Announced>>,
}

impl AppState {
    fn downloads(&self) -> MutexGuard<'_, BTreeMap<NodeId, DownloadEntry>> {
        self.downloads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn announced(&self) -> MutexGuard<'_, Vec<Announced>> {
        self.announced.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shared = Arc<AppState>;

/// The routes, for [`serve`] or for a caller that serves them itself.
pub fn router(node: Node, cfg: HttpConfig) -> Router {
    let loopback_hosts_only = cfg.loopback_hosts_only;
    let state = Arc::new(AppState {
        node,
        cfg,
        downloads: Mutex::new(BTreeMap::new()),
        announced: Mutex::new(Vec::new()),
    });
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics::handler))
        .route("/api/status", get(api::status))
        .route("/api/table", get(api::table))
        .route("/api/lookup", post(api::lookup))
        .route("/api/lookups/recent", get(api::recent_lookups))
        .route("/api/holders/{id}", get(api::holders))
        .route("/api/announce", post(api::announce))
        .route("/api/announced", get(api::announced))
        .route("/api/topics/{*topic}", get(api::find_topic))
        .route(
            "/api/downloads",
            get(api::downloads).post(api::start_download),
        )
        .route(
            "/api/downloads/{id}",
            get(api::download).delete(api::cancel_download),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if loopback_hosts_only {
                    if let Some(host) = req.headers().get(header::HOST) {
                        let host = host.to_str().unwrap_or("");
                        if !host_is_loopback(host) {
                            return ApiError::new(
                                StatusCode::MISDIRECTED_REQUEST,
                                format!(
                                    "Host '{}' is not a loopback name: this API answers \
                                     localhost, 127.x.y.z and [::1] only (run the node with \
                                     --http-public to serve other names)",
                                    clip(host)
                                ),
                            )
                            .into_response();
                        }
                    }
                }
                next.run(req).await
            },
        ))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Node,
    listener: tokio::net::TcpListener,
    cfg: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node, cfg))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn dashboard() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(DASHBOARD_HTML))
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {method} {}; see spec/http.md for the list",
        clip(uri.path())
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; see spec/http.md",
            clip(uri.path())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::host_is_loopback;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:80",
            "127.0.0.1",
            "127.0.0.1:24255",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:24255",
        ] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in [
            "",
            "example.com",
            "localhost.example.com",
            "evil.example:24255",
            "10.0.0.1:24255",
            "[::2]:1",
            "[::1",
            "[::1]x",
            "0.0.0.0",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }
}
