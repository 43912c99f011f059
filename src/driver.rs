//! The tokio driver: the only code with a socket and the wall clock. It feeds the engine
//! datagrams and timeouts, sends what the engine hands back, saves state, and answers
//! commands from a [`Node`] handle.

use crate::addr::{canonical, is_loopback};
use crate::config::Config;
use crate::download::ResumeFrom;
use crate::engine::{
    AnnounceError, BlockSink, BlockSource, DownloadDone, DownloadError, DownloadProgress, Engine,
    Event, Holder, LookupId, SavedState,
};
use crate::id::NodeId;
use crate::lookup::LookupResult;
use crate::persist;
use crate::rng::NodeRng;
use crate::stats::{LookupLog, Stats};
use crate::table::Contact;
use crate::time::Time;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to bind the UDP socket to.
    pub bind: SocketAddr,
    /// Where state is saved (`None`: nothing is saved or loaded).
    pub data_dir: Option<PathBuf>,
    /// Nodes to bootstrap from.
    pub bootstrap: Vec<SocketAddr>,
    /// Engine settings.
    pub engine: Config,
    /// Seed of the engine's RNG (`None`: from the OS).
    pub seed: Option<u64>,
    /// How often state is saved while running (also saved at shutdown).
    pub save_interval: Duration,
    /// Drop every datagram to an address outside 127.0.0.0/8 and ::1 (tests, swarms).
    pub loopback_only: bool,
    /// Load the saved table but never write it (one-shot commands beside a running node).
    pub read_only: bool,
}

impl NodeConfig {
    /// A node bound at `bind` with default settings and no data directory.
    pub fn new(bind: SocketAddr) -> NodeConfig {
        NodeConfig {
            bind,
            data_dir: None,
            bootstrap: Vec::new(),
            engine: Config::default(),
            seed: None,
            save_interval: Duration::from_secs(60),
            loopback_only: false,
            read_only: false,
        }
    }
}

/// A snapshot of a running node.
#[derive(Debug, Clone)]
pub struct Status {
    /// The node ID.
    pub id: NodeId,
    /// The bound address.
    pub local_addr: SocketAddr,
    /// The address peers see.
    pub public_addr: SocketAddr,
    /// The routing table's contacts, by bucket.
    pub contacts: Vec<Contact>,
    /// Counters.
    pub stats: Stats,
    /// Time since start.
    pub uptime: Duration,
    /// Lookups running.
    pub lookups_running: usize,
    /// Announcement records held for other nodes.
    pub records_held: usize,
    /// Contacts per bucket (k).
    pub bucket_size: usize,
}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The socket could not be bound.
    Bind(SocketAddr, io::Error),
    /// The data directory is unusable.
    DataDir(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(
                f,
                "cannot bind UDP {a}: {e}; pick another --bind address or port"
            ),
            StartError::DataDir(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StartError {}

/// The node task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeGone;

impl std::fmt::Display for NodeGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the node has stopped")
    }
}

impl std::error::Error for NodeGone {}

enum Command {
    Lookup(NodeId, oneshot::Sender<LookupResult>),
    Find(NodeId, oneshot::Sender<(Vec<Holder>, LookupResult)>),
    Ping(SocketAddr, oneshot::Sender<Option<Duration>>),
    Hold(NodeId, Arc<dyn BlockSource>),
    Unhold(NodeId),
    Announce(NodeId, String, oneshot::Sender<Result<(), AnnounceError>>),
    Bootstrap(Vec<SocketAddr>),
    Download(Box<DownloadStart>),
    Progress(NodeId, oneshot::Sender<Option<DownloadProgress>>),
    Cancel(NodeId),
    Status(oneshot::Sender<Status>),
    Lookups(oneshot::Sender<LookupLog>),
    Shutdown(oneshot::Sender<io::Result<()>>),
}

/// Result of a download.
pub type DownloadResult = Result<DownloadDone, DownloadError>;

struct DownloadStart {
    id: NodeId,
    sink: Box<dyn BlockSink>,
    resume: Option<ResumeFrom>,
    holders: Vec<SocketAddr>,
    reply: oneshot::Sender<DownloadResult>,
}

/// A handle to a running node. Dropping every handle stops the node (state is saved).
#[derive(Debug, Clone)]
pub struct Node {
    tx: mpsc::Sender<Box<Command>>,
    local: SocketAddr,
    id: NodeId,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Node {
    /// Binds the socket, loads saved state, and starts the node task.
    pub async fn start(cfg: NodeConfig) -> Result<Node, StartError> {
        if let Some(dir) = cfg.data_dir.as_ref().filter(|_| !cfg.read_only) {
            persist::prepare_data_dir(dir).map_err(StartError::DataDir)?;
        }
        let socket = UdpSocket::bind(cfg.bind)
            .await
            .map_err(|e| StartError::Bind(cfg.bind, e))?;
        set_buffers(&socket);
        let local = canonical(
            socket
                .local_addr()
                .map_err(|e| StartError::Bind(cfg.bind, e))?,
        );
        let epoch = Instant::now();
        let rng = match cfg.seed {
            Some(seed) => NodeRng::from_u64(seed),
            None => NodeRng::from_seed(rand::random()),
        };
        let mut engine = Engine::with_rng(cfg.engine.clone(), local, rng, Time::ZERO);
        if let Some(dir) = &cfg.data_dir {
            match persist::load(dir) {
                Ok(Some(state)) => {
                    tracing::info!(contacts = state.contacts.len(), "loaded saved state");
                    engine.restore(&state);
                }
                Ok(None) => {}
                Err(e) if cfg.read_only => tracing::warn!("{e}; not using it"),
                Err(e) => match persist::set_aside(dir) {
                    Ok(to) => tracing::warn!(
                        "{}: {e}; moved it to {} and starting fresh",
                        dir.join(persist::STATE_FILE).display(),
                        to.display()
                    ),
                    Err(e2) => {
                        tracing::warn!("{e}; could not move it aside ({e2}); starting fresh")
                    }
                },
            }
        }
        let id = engine.id();
        let (tx, rx) = mpsc::channel(256);
        let bootstrap = cfg.bootstrap;
        let driver = Box::new(Driver {
            engine,
            socket,
            epoch,
            opts: DriverOptions {
                data_dir: cfg.data_dir,
                save_interval: cfg.save_interval,
                loopback_only: cfg.loopback_only,
                read_only: cfg.read_only,
            },
            lookups: HashMap::new(),
            finds: HashMap::new(),
            pings: HashMap::new(),
            downloads: HashMap::new(),
            log: None,
        });
        let task = tokio::spawn(driver.run(rx, bootstrap));
        Ok(Node {
            tx,
            local,
            id,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The node ID at start (see [`Status::id`] for the current one).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Runs an iterative lookup for `target`.
    pub async fn lookup(&self, target: NodeId) -> Result<LookupResult, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Lookup(target, tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Serves `id` (the SHA-256 of the source's bytes) from `source`.
    pub async fn hold(&self, id: NodeId, source: Arc<dyn BlockSource>) -> Result<(), NodeGone> {
        self.tx
            .send(Box::new(Command::Hold(id, source)))
            .await
            .map_err(|_| NodeGone)
    }

    /// Stops serving and announcing `id`.
    pub async fn unhold(&self, id: NodeId) -> Result<(), NodeGone> {
        self.tx
            .send(Box::new(Command::Unhold(id)))
            .await
            .map_err(|_| NodeGone)
    }

    /// Pings `addr`: its round-trip time, or `None` if it did not answer.
    pub async fn ping(&self, addr: SocketAddr) -> Result<Option<Duration>, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Ping(addr, tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Collects the recorded holders (announcers) of `id`, with their notes.
    pub async fn find_holders(&self, id: NodeId) -> Result<(Vec<Holder>, LookupResult), NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Find(id, tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Announces that this node holds `id` (or is under topic `id`), with a note, and keeps
    /// re-announcing while the node runs.
    pub async fn announce(
        &self,
        id: NodeId,
        note: &str,
    ) -> Result<Result<(), AnnounceError>, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Announce(id, note.to_owned(), tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Starts fetching `id` into `sink` (with `resume` from an earlier run, and `holders`
    /// known beforehand, e.g. plain cjp2p nodes); the receiver gets the outcome. Follow it
    /// with [`Node::download_progress`].
    pub async fn download(
        &self,
        id: NodeId,
        sink: Box<dyn BlockSink>,
        resume: Option<ResumeFrom>,
        holders: Vec<SocketAddr>,
    ) -> Result<oneshot::Receiver<DownloadResult>, NodeGone> {
        let (reply, rx) = oneshot::channel();
        let start = DownloadStart {
            id,
            sink,
            resume,
            holders,
            reply,
        };
        self.tx
            .send(Box::new(Command::Download(Box::new(start))))
            .await
            .map_err(|_| NodeGone)?;
        Ok(rx)
    }

    /// Where the download of `id` stands (`None`: not running).
    pub async fn download_progress(
        &self,
        id: NodeId,
    ) -> Result<Option<DownloadProgress>, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Progress(id, tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Stops the download of `id`, keeping what arrived for a later resume.
    pub async fn cancel_download(&self, id: NodeId) -> Result<(), NodeGone> {
        self.tx
            .send(Box::new(Command::Cancel(id)))
            .await
            .map_err(|_| NodeGone)
    }

    /// Adds bootstrap nodes and bootstraps now.
    pub async fn bootstrap(&self, addrs: Vec<SocketAddr>) -> Result<(), NodeGone> {
        self.tx
            .send(Box::new(Command::Bootstrap(addrs)))
            .await
            .map_err(|_| NodeGone)
    }

    /// The node's current state.
    pub async fn status(&self) -> Result<Status, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Status(tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// The lookups asked through this handle (and its clones): counts, latency, the most
    /// recent ones.
    pub async fn lookup_log(&self) -> Result<LookupLog, NodeGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(Command::Lookups(tx)))
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }

    /// Saves state and stops the node.
    pub async fn shutdown(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Box::new(Command::Shutdown(tx))).await.is_err() {
            return Ok(());
        }
        let saved = rx.await.unwrap_or(Ok(()));
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        saved
    }

    /// Stops the task at once without saving (simulates a crash in tests).
    pub fn abort(&self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

/// What the driver keeps of its [`NodeConfig`] once the engine has its own `Config` (a second
/// copy would be 400 bytes a node).
struct DriverOptions {
    data_dir: Option<PathBuf>,
    save_interval: Duration,
    loopback_only: bool,
    read_only: bool,
}

struct Driver {
    engine: Engine,
    socket: UdpSocket,
    epoch: Instant,
    opts: DriverOptions,
    lookups: HashMap<LookupId, oneshot::Sender<LookupResult>>,
    finds: HashMap<LookupId, oneshot::Sender<(Vec<Holder>, LookupResult)>>,
    pings: HashMap<SocketAddr, Vec<oneshot::Sender<Option<Duration>>>>,
    downloads: HashMap<NodeId, oneshot::Sender<DownloadResult>>,
    /// Lookups asked through the handle (allocated at the first one: most swarm nodes are
    /// never asked).
    log: Option<Box<LookupLog>>,
}

impl Driver {
    fn log(&mut self) -> &mut LookupLog {
        self.log.get_or_insert_with(Box::default)
    }

    fn now(&self) -> Time {
        Time::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn instant(&self, t: Time) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_micros(t.as_micros()))
    }

    /// The node's task. The driver is boxed: an `async fn` taking it by value would hold it
    /// twice in its state (the argument and the moved-in local), 6.7 KB per node instead of 3.3.
    async fn run(
        mut self: Box<Self>,
        mut rx: mpsc::Receiver<Box<Command>>,
        bootstrap: Vec<SocketAddr>,
    ) {
        let now = self.now();
        self.engine.bootstrap(now, &bootstrap);
        drop(bootstrap);
        let mut save_at = tokio::time::Instant::now() + self.opts.save_interval;
        loop {
            self.flush().await;
            let wake = self
                .engine
                .poll_timeout()
                .map(|t| self.instant(t))
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.socket.readable() => match r {
                    Ok(()) => self.drain_socket(),
                    Err(e) => tracing::debug!("socket error: {e}"),
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.engine.handle_timeout(now);
                }
                _ = tokio::time::sleep_until(save_at) => {
                    save_at = tokio::time::Instant::now() + self.opts.save_interval;
                    if let Err(e) = self.save() {
                        tracing::warn!("could not save state: {e}");
                    }
                }
                cmd = rx.recv() => match cmd.map(|c| *c) {
                    None => {
                        self.engine.checkpoint_downloads();
                        let _ = self.save();
                        return;
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.engine.checkpoint_downloads();
                        let _ = reply.send(self.save());
                        return;
                    }
                    Some(c) => self.command(c),
                },
            }
        }
    }

    /// Reads every datagram waiting on the socket (up to a batch) into the engine. The
    /// receive buffer is per thread, not per node: it is never held across an `.await`.
    fn drain_socket(&mut self) {
        const BATCH: usize = 64;
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65_536]);
        }
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            for _ in 0..BATCH {
                match self.socket.try_recv_from(&mut buf) {
                    Ok((n, src)) => {
                        let now = self.now();
                        self.engine.handle_packet(now, src, &buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!("recv error: {e}");
                        break;
                    }
                }
            }
        });
    }

    fn command(&mut self, c: Command) {
        let now = self.now();
        match c {
            Command::Lookup(target, reply) => {
                self.log().started();
                let id = self.engine.start_lookup(now, target);
                self.lookups.insert(id, reply);
            }
            Command::Hold(id, source) => self.engine.hold(id, source),
            Command::Unhold(id) => {
                self.engine.unhold(&id);
                self.engine.stop_announcing(&id);
            }
            Command::Ping(addr, reply) => {
                if self.engine.ping(now, addr) {
                    self.pings.entry(canonical(addr)).or_default().push(reply);
                } else {
                    let _ = reply.send(None);
                }
            }
            Command::Find(id, reply) => {
                self.log().started();
                let l = self.engine.find_holders(now, id);
                self.finds.insert(l, reply);
            }
            Command::Announce(id, note, reply) => {
                let _ = reply.send(self.engine.announce(now, id, &note).map(|_| ()));
            }
            Command::Bootstrap(addrs) => self.engine.bootstrap(now, &addrs),
            Command::Download(start) => {
                let DownloadStart {
                    id,
                    sink,
                    resume,
                    holders,
                    reply,
                } = *start;
                match self.engine.start_download(now, id, sink, resume, &holders) {
                    Ok(()) => {
                        self.downloads.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Progress(id, reply) => {
                let _ = reply.send(self.engine.download_progress(&id));
            }
            Command::Cancel(id) => self.engine.cancel_download(&id),
            Command::Status(reply) => {
                let _ = reply.send(Status {
                    id: self.engine.id(),
                    local_addr: self.engine.local_addr(),
                    public_addr: self.engine.public_addr(),
                    contacts: self.engine.table().contacts().cloned().collect(),
                    stats: self.engine.stats().clone(),
                    uptime: self.epoch.elapsed(),
                    lookups_running: self.engine.lookups_running(),
                    records_held: self.engine.records_held(),
                    bucket_size: self.engine.table().config().k,
                });
            }
            Command::Lookups(reply) => {
                let _ = reply.send(self.log.as_deref().cloned().unwrap_or_default());
            }
            Command::Shutdown(_) => {}
        }
    }

    fn save(&self) -> io::Result<()> {
        match &self.opts.data_dir {
            Some(dir) if !self.opts.read_only => persist::save(dir, &self.engine.snapshot()),
            _ => Ok(()),
        }
    }

    async fn flush(&mut self) {
        // The batch's allocation is kept per thread from wake to wake, not per node (a
        // thousand idle nodes must not each hold their last burst's batch).
        thread_local! {
            static BATCH: std::cell::Cell<Vec<crate::engine::Transmit>> =
                const { std::cell::Cell::new(Vec::new()) };
        }
        let mut batch = BATCH.take();
        batch.clear();
        while let Some(t) = self.engine.poll_transmit() {
            if self.opts.loopback_only && !is_loopback(t.dst) {
                tracing::warn!(dst = %t.dst, "loopback-only node: not sending outside loopback");
                continue;
            }
            batch.push(t);
        }
        let mut sent = 0;
        while sent < batch.len() {
            match crate::udp_batch::try_send(&self.socket, &batch[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.socket.writable().await {
                        tracing::debug!("socket error: {e}");
                        break;
                    }
                }
                Err(e) => {
                    // This datagram cannot go (unreachable, refused): skip it, send the rest.
                    tracing::debug!(dst = %batch[sent].dst, "send error: {e}");
                    sent += 1;
                }
            }
        }
        for t in batch.drain(..) {
            crate::wire::recycle(t.payload);
        }
        // Back into this thread's slot (the task may have moved threads while it waited).
        BATCH.set(batch);
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::LookupFinished { id, result } => {
                    if let Some(reply) = self.lookups.remove(&id) {
                        let at = self.epoch.elapsed();
                        self.log().finished("lookup", &result, None, at);
                        let _ = reply.send(result);
                    }
                }
                Event::ContactAdded(a) => tracing::debug!(%a, "contact added"),
                Event::ContactRemoved(a) => tracing::debug!(%a, "contact removed"),
                Event::Pong { addr, rtt } => {
                    if let Some(waiting) = self.pings.get_mut(&addr) {
                        if !waiting.is_empty() {
                            let _ = waiting.remove(0).send(rtt);
                        }
                        if waiting.is_empty() {
                            self.pings.remove(&addr);
                        }
                    }
                }
                Event::HoldersFound {
                    id,
                    holders,
                    result,
                } => {
                    if let Some(reply) = self.finds.remove(&id) {
                        let at = self.epoch.elapsed();
                        self.log()
                            .finished("holders", &result, Some(holders.len()), at);
                        let _ = reply.send((holders, result));
                    }
                }
                Event::DownloadFinished { id, outcome } => {
                    if let Some(reply) = self.downloads.remove(&id) {
                        let _ = reply.send(outcome);
                    }
                }
                Event::PublicAddressChanged(a) => {
                    tracing::info!(%a, id = %self.engine.id(), "public address learned")
                }
            }
        }
    }
}

/// Receive buffer asked of the OS (capped by its limit, e.g. Linux `net.core.rmem_max`):
/// a download keeps hundreds of 5.6 KB blocks in flight, more than the usual 208 KiB holds.
pub const RECV_BUFFER: usize = 4 << 20;
/// Send buffer asked of the OS.
pub const SEND_BUFFER: usize = 1 << 20;

/// Enlarges a socket's buffers as far as the OS allows (failures only cost throughput).
pub fn set_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!("cannot enlarge the receive buffer: {e}");
    }
    if let Err(e) = s.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!("cannot enlarge the send buffer: {e}");
    }
}

/// Loads the state a node would start from (for tools and tests).
pub fn load_state(dir: &std::path::Path) -> Result<Option<SavedState>, persist::LoadError> {
    persist::load(dir)
}
