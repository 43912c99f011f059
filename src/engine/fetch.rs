//! Fetching content: a holder walk (a lookup of the id that collects holders and stops
//! at them), then a [`Download`] from every holder found, written through the owner's
//! [`BlockSink`] and verified against the id.
//!
//! The SHA-256 is computed as the contiguous prefix of blocks grows, so it is known the
//! moment the last block lands. If it does not match, the blocks of one provider at a
//! time (most blocks first) are fetched again from the other holders and the content is
//! hashed again; the provider whose blocks made the difference is dropped as bad.

use super::requests::Purpose;
use super::{Engine, Event, LookupKind};
use crate::download::ResumeFrom;
use crate::download::{BlockOutcome, Download};
use crate::id::NodeId;
use crate::time::Time;
use crate::wire::{Message, PacketWriter, BLOCK_SIZE, MAX_DATAGRAM};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a download's bytes go (a partial file, memory). The engine calls it; it never
/// opens files itself.
pub trait BlockSink: Send + Sync + fmt::Debug {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Reads back `buf.len()` bytes written earlier at `offset` (for hashing).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Records which blocks are present, so that a later run can resume.
    fn checkpoint(&mut self, len: u64, have: &[bool]) -> io::Result<()>;
    /// The content verified: make it final (for a file: rename it to its final name).
    fn finish(&mut self) -> io::Result<()>;
    /// The content failed verification for good: throw away what was written.
    fn discard(&mut self);
}

/// A [`BlockSink`] in memory (tests, simulations, small items).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// The bytes so far.
    pub data: Vec<u8>,
    /// Set by `finish`.
    pub finished: bool,
}

/// Largest item a [`MemorySink`] takes (a bound on what a peer's `eof` can make us allocate).
pub const MEMORY_SINK_MAX: u64 = 1 << 30;

impl BlockSink for MemorySink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        if end > MEMORY_SINK_MAX {
            return Err(io::Error::other("item too large for memory"));
        }
        let (start, end) = (offset as usize, end as usize);
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .data
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::other("read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn checkpoint(&mut self, _len: u64, _have: &[bool]) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        Ok(())
    }
    fn discard(&mut self) {
        self.data.clear();
    }
}

/// A [`MemorySink`] the owner keeps a handle to, to read the bytes while the engine (or a
/// node) writes them and after the download ended.
pub type SharedMemorySink = std::sync::Arc<std::sync::Mutex<MemorySink>>;

fn locked(s: &SharedMemorySink) -> io::Result<std::sync::MutexGuard<'_, MemorySink>> {
    s.lock()
        .map_err(|_| io::Error::other("the sink's lock was poisoned"))
}

impl BlockSink for SharedMemorySink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        locked(self)?.write_at(offset, data)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        locked(self)?.read_at(offset, buf)
    }
    fn checkpoint(&mut self, len: u64, have: &[bool]) -> io::Result<()> {
        locked(self)?.checkpoint(len, have)
    }
    fn finish(&mut self) -> io::Result<()> {
        locked(self)?.finish()
    }
    fn discard(&mut self) {
        if let Ok(mut s) = locked(self) {
            s.discard();
        }
    }
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadError {
    /// The holder walk ended without finding anyone who has the id.
    NoHolders,
    /// Every holder stopped answering (or was dropped) before the content was complete.
    HoldersSilent {
        /// Bytes received before that.
        received: u64,
    },
    /// The content did not match its id and no holder could be singled out.
    VerifyFailed {
        /// Holders that provided blocks.
        holders: Vec<SocketAddr>,
    },
    /// The sink failed (disk full, permissions).
    Storage(String),
    /// A download of this id is already running.
    AlreadyRunning,
    /// Cancelled by the owner (what arrived was checkpointed).
    Cancelled,
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::NoHolders => f.write_str(
                "no holder found: no node near the id knows anyone who has it \
                 (check the id, or that a holder is running and announced it)",
            ),
            DownloadError::HoldersSilent { received } => write!(
                f,
                "every holder stopped answering after {received} bytes; run again to resume"
            ),
            DownloadError::VerifyFailed { holders } => {
                write!(f, "the content does not match its id (SHA-256); holders: ")?;
                let list: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
                f.write_str(&list.join(", "))
            }
            DownloadError::Storage(e) => write!(f, "cannot store the download: {e}"),
            DownloadError::AlreadyRunning => f.write_str("a download of this id is running"),
            DownloadError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for DownloadError {}

/// A finished, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadDone {
    /// Its length in bytes.
    pub len: u64,
    /// Holders that provided blocks.
    pub holders: Vec<SocketAddr>,
    /// Holders dropped for bad data.
    pub bad_holders: Vec<SocketAddr>,
}

/// Where a running download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The content id.
    pub id: NodeId,
    /// Bytes present.
    pub received: u64,
    /// Total length, once known.
    pub len: Option<u64>,
    /// Holders in use.
    pub holders: usize,
    /// Holders dropped (silent or bad).
    pub dropped: usize,
    /// Blocks asked and not yet arrived.
    pub in_flight: usize,
    /// Whether the holder walk is still running.
    pub searching: bool,
    /// Whether the content is being checked again after a failed verification.
    pub rechecking: bool,
}

/// Times a holder is asked for its cookie before it is given up.
pub const GREET_ATTEMPTS: u32 = 3;
/// Accepted blocks between checkpoints.
const CHECKPOINT_EVERY: u32 = 256;
/// Most blocks hashed in one call (the rest on the next wake-up).
const HASH_STEP: u64 = 4096;
/// Most addresses probed with `PleaseSendContent` during one holder walk.
const MAX_PROBED: usize = 512;
/// A download with no block accepted for this long, and no search running, fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest item a download takes (16 GiB). A download keeps some 33 bytes per block from
/// the moment a holder names the length (`eof`): 4 Mi blocks here, about 135 MB. A holder
/// naming a longer one (up to 2^64 - 1, petabytes of state) is not believed: it is dropped,
/// as one whose length contradicts the others'.
const MAX_CONTENT_LEN: u64 = 1 << 34;

#[derive(Debug)]
pub(super) struct Fetch {
    dl: Download,
    sink: Box<dyn BlockSink>,
    hasher: Sha256,
    hashed: u64,
    /// The holder walk, while it runs.
    walk: Option<super::LookupId>,
    /// Addresses the walk asked for block 0 (a `Content` from them names a holder).
    probed: BTreeSet<SocketAddr>,
    /// Holders asked for their cookie before the first block, with the attempts made.
    greeting: BTreeMap<SocketAddr, u32>,
    /// The provider whose blocks are being fetched again, if verification failed.
    suspect: Option<Option<SocketAddr>>,
    /// Providers already checked that way.
    tried: Vec<Option<SocketAddr>>,
    bad: Vec<SocketAddr>,
    since_checkpoint: u32,
    last_progress: Time,
    /// Hashing is behind the contiguous prefix: wake up at once.
    hash_due: Option<Time>,
}

impl Fetch {
    /// Records which blocks are present (once the length is known), for a later resume.
    /// A failure only costs the resume, so it is not an error of the download.
    fn checkpoint(&mut self) {
        if let Some(len) = self.dl.len() {
            let _ = self.sink.checkpoint(len, self.dl.have());
        }
    }
}

impl Clone for Fetch {
    fn clone(&self) -> Self {
        // A sink cannot be cloned; a cloned engine (simulator snapshots) gets a memory copy
        // of nothing. Downloads are not meant to be cloned mid-way.
        Fetch {
            dl: self.dl.clone(),
            sink: Box::new(MemorySink::default()),
            hasher: self.hasher.clone(),
            hashed: self.hashed,
            walk: self.walk,
            probed: self.probed.clone(),
            greeting: self.greeting.clone(),
            suspect: self.suspect,
            tried: self.tried.clone(),
            bad: self.bad.clone(),
            since_checkpoint: self.since_checkpoint,
            last_progress: self.last_progress,
            hash_due: self.hash_due,
        }
    }
}

impl Engine {
    /// Starts fetching `id` into `sink`: a holder walk, then blocks from every holder.
    /// `resume` gives the length and the blocks already in the sink from an earlier run;
    /// `holders` are known holders to ask besides those the walk finds (plain cjp2p nodes,
    /// say). The outcome arrives as [`Event::DownloadFinished`].
    pub fn start_download(
        &mut self,
        now: Time,
        id: NodeId,
        sink: Box<dyn BlockSink>,
        resume: Option<ResumeFrom>,
        holders: &[SocketAddr],
    ) -> Result<(), DownloadError> {
        if self.downloads.contains_key(&id) {
            return Err(DownloadError::AlreadyRunning);
        }
        let dl = match resume {
            // A record naming an impossible length (a damaged file) is no record.
            Some((len, have)) if len <= MAX_CONTENT_LEN => Download::resume(id, len, &have),
            _ => Download::new(id),
        };
        let walk = self.start(now, id, LookupKind::Fetch);
        self.stats.downloads_started += 1;
        self.downloads.insert(
            id,
            Fetch {
                dl,
                sink,
                hasher: Sha256::new(),
                hashed: 0,
                walk: Some(walk),
                probed: BTreeSet::new(),
                greeting: BTreeMap::new(),
                suspect: None,
                tried: Vec::new(),
                bad: Vec::new(),
                since_checkpoint: 0,
                last_progress: now,
                hash_due: Some(now),
            },
        );
        for h in holders {
            self.found_holder(now, id, crate::addr::canonical(*h));
        }
        self.drive(now);
        Ok(())
    }

    /// Adds a holder to a running download (one the owner knows of, e.g. a plain cjp2p node).
    pub fn add_download_holder(&mut self, now: Time, id: NodeId, holder: SocketAddr) {
        self.found_holder(now, id, crate::addr::canonical(holder));
        self.drive(now);
    }

    /// Stops a download; what arrived is checkpointed so that a later run resumes it.
    pub fn cancel_download(&mut self, id: &NodeId) {
        if let Some(mut f) = self.downloads.remove(id) {
            f.checkpoint();
            self.emit(Event::DownloadFinished {
                id: *id,
                outcome: Err(DownloadError::Cancelled),
            });
        }
    }

    /// Checkpoints every running download (before a shutdown).
    pub fn checkpoint_downloads(&mut self) {
        for f in self.downloads.values_mut() {
            f.checkpoint();
        }
    }

    /// Where the download of `id` stands, if it runs.
    pub fn download_progress(&self, id: &NodeId) -> Option<DownloadProgress> {
        self.downloads.get(id).map(|f| DownloadProgress {
            id: *id,
            received: f.dl.received(),
            len: f.dl.len(),
            holders: f.dl.live_holders(),
            dropped: f.dl.dropped_holders().len(),
            in_flight: f.dl.in_flight(),
            searching: f.walk.is_some(),
            rechecking: f.suspect.is_some(),
        })
    }

    /// Ids being downloaded.
    pub fn downloads_running(&self) -> Vec<NodeId> {
        self.downloads.keys().copied().collect()
    }

    /// The earliest time a download wants to be woken.
    pub(super) fn fetch_timeout(&self) -> Option<Time> {
        self.downloads
            .values()
            .flat_map(|f| {
                // Only when `check_stalled` would act on it: while a holder is being greeted
                // the stall is not checked, and a stall time already past would have the
                // driver call again at once, over and over, until the greeting ends.
                let stall = (f.walk.is_none() && f.greeting.is_empty() && !f.dl.is_complete())
                    .then(|| f.last_progress + STALL_TIMEOUT);
                [f.dl.next_timeout(), f.hash_due, stall]
            })
            .flatten()
            .min()
    }

    /// A holder of `id` at `addr` was named (by the walk, the owner, or its own `Content`).
    pub(super) fn found_holder(&mut self, now: Time, id: NodeId, addr: SocketAddr) {
        let Some(f) = self.downloads.get(&id) else {
            return;
        };
        if self.is_self(addr) || f.dl.knows_holder(addr) || f.greeting.contains_key(&addr) {
            return;
        }
        let has_cookie = self.peer(&addr).is_some_and(|p| p.has_their_cookie());
        if has_cookie {
            if let Some(f) = self.downloads.get_mut(&id) {
                f.dl.add_holder(addr);
            }
        } else if self.send_request(now, addr, Purpose::Greet(id), &[]) {
            // Full blocks need the holder's cookie; ask for it first.
            if let Some(f) = self.downloads.get_mut(&id) {
                f.greeting.insert(addr, 1);
            }
        }
    }

    /// A greeting was answered (`answered`) or timed out (it is sent again, up to
    /// [`GREET_ATTEMPTS`] times).
    pub(super) fn greeted(&mut self, now: Time, id: NodeId, addr: SocketAddr, answered: bool) {
        let Some(f) = self.downloads.get_mut(&id) else {
            return;
        };
        if answered {
            f.greeting.remove(&addr);
            f.dl.add_holder(addr);
            return;
        }
        let tries = f.greeting.get(&addr).copied().unwrap_or(GREET_ATTEMPTS);
        if tries >= GREET_ATTEMPTS || !self.send_request(now, addr, Purpose::Greet(id), &[]) {
            if let Some(f) = self.downloads.get_mut(&id) {
                f.greeting.remove(&addr);
            }
        } else if let Some(f) = self.downloads.get_mut(&id) {
            f.greeting.insert(addr, tries + 1);
        }
    }

    /// The walk of `id` sent block-0 probes to `addr`.
    pub(super) fn probed(&mut self, id: NodeId, addr: SocketAddr) {
        if let Some(f) = self.downloads.get_mut(&id) {
            if f.probed.len() < MAX_PROBED {
                f.probed.insert(addr);
            }
        }
    }

    /// The holder walk of `id` finished; `holders` are every holder it heard of.
    pub(super) fn walk_finished(&mut self, now: Time, id: NodeId, holders: &[SocketAddr]) {
        for h in holders {
            self.found_holder(now, id, *h);
        }
        if let Some(f) = self.downloads.get_mut(&id) {
            f.walk = None;
            f.last_progress = f.last_progress.max(now);
        }
    }

    /// A `Content` block from `src`.
    pub(super) fn take_content(
        &mut self,
        now: Time,
        src: SocketAddr,
        id: NodeId,
        offset: u64,
        data: &[u8],
        eof: u64,
    ) {
        let Some(f) = self.downloads.get_mut(&id) else {
            self.stats.content_unsolicited += 1;
            return;
        };
        if !f.dl.knows_holder(src) {
            if f.probed.contains(&src) {
                // It answered the walk's probe with the content itself: a holder.
                f.dl.add_holder(src);
            } else {
                self.stats.content_unsolicited += 1;
                return;
            }
        }
        let len_before = f.dl.len();
        let outcome = if eof <= MAX_CONTENT_LEN {
            f.dl.on_block(src, offset, data.len() as u64, eof, now)
        } else if f.dl.dropped_holders().contains(&src) {
            BlockOutcome::Ignored
        } else {
            f.dl.bad_holder(src);
            BlockOutcome::Inconsistent
        };
        if len_before.is_some() && f.dl.len() != len_before {
            // The resume record had the wrong length: everything starts over.
            f.hasher = Sha256::new();
            f.hashed = 0;
        }
        match outcome {
            BlockOutcome::Accepted => {
                self.stats.content_blocks_received += 1;
                f.last_progress = now;
                if let Err(e) = f.sink.write_at(offset, data) {
                    self.fail_download(id, DownloadError::Storage(e.to_string()));
                    return;
                }
                f.since_checkpoint += 1;
                if f.since_checkpoint >= CHECKPOINT_EVERY {
                    f.since_checkpoint = 0;
                    let _ = f.sink.checkpoint(eof, f.dl.have());
                }
                if offset / BLOCK_SIZE as u64 == f.hashed {
                    f.hash_due = Some(now);
                }
            }
            BlockOutcome::Inconsistent => {
                // Its blocks were taken back: hash again from the start.
                self.stats.bad_holders += 1;
                f.bad.push(src);
                f.hasher = Sha256::new();
                f.hashed = 0;
                f.hash_due = Some(now);
            }
            BlockOutcome::Ignored => self.stats.content_unsolicited += 1,
        }
    }

    fn fail_download(&mut self, id: NodeId, e: DownloadError) {
        if let Some(mut f) = self.downloads.remove(&id) {
            match &e {
                DownloadError::VerifyFailed { .. } => f.sink.discard(),
                // Nothing worth resuming: leave no empty partial file behind.
                _ if f.dl.received() == 0 => f.sink.discard(),
                _ => f.checkpoint(),
            }
            if let Some(w) = f.walk {
                self.lookups.remove(&w);
            }
            self.stats.downloads_failed += 1;
            self.emit(Event::DownloadFinished {
                id,
                outcome: Err(e),
            });
        }
    }

    /// Sends every block request the downloads may send now, hashes what arrived in order,
    /// and finishes or fails downloads.
    pub(super) fn drive_fetches(&mut self, now: Time) {
        if self.downloads.is_empty() {
            return;
        }
        let ids: Vec<NodeId> = self.downloads.keys().copied().collect();
        for id in ids {
            self.hash_some(now, id);
            self.check_done(now, id);
            let mut sends = Vec::new();
            if let Some(f) = self.downloads.get_mut(&id) {
                while let Some(r) = f.dl.poll(now) {
                    sends.push(r);
                }
            }
            for r in sends {
                let mut w = PacketWriter::new(MAX_DATAGRAM);
                self.put(
                    &mut w,
                    &Message::PleaseSendContent {
                        id,
                        offset: r.offset,
                        length: r.length,
                    },
                );
                if let Some(c) = self.their_cookie(&r.holder) {
                    self.put(&mut w, &Message::AlwaysReturned(c));
                }
                self.transmit(r.holder, w);
            }
            self.check_stalled(now, id);
        }
    }

    /// Feeds the hasher the blocks present in order, up to [`HASH_STEP`] of them.
    fn hash_some(&mut self, now: Time, id: NodeId) {
        let Some(f) = self.downloads.get_mut(&id) else {
            return;
        };
        f.hash_due = None;
        let mut buf = vec![0u8; BLOCK_SIZE];
        let mut n = 0;
        while f.dl.len().is_some() && f.hashed < f.dl.blocks() && f.dl.has_block(f.hashed) {
            if n == HASH_STEP {
                f.hash_due = Some(now);
                return;
            }
            let len = f.dl.block_len(f.hashed) as usize;
            if let Err(e) = f
                .sink
                .read_at(f.hashed * BLOCK_SIZE as u64, &mut buf[..len])
            {
                self.fail_download(id, DownloadError::Storage(e.to_string()));
                return;
            }
            f.hasher.update(&buf[..len]);
            f.hashed += 1;
            n += 1;
        }
    }

    /// A complete, fully hashed download is verified: finished, or the next suspect's
    /// blocks are fetched again.
    fn check_done(&mut self, now: Time, id: NodeId) {
        let Some(f) = self.downloads.get_mut(&id) else {
            return;
        };
        if !f.dl.is_complete() || f.hashed < f.dl.blocks() {
            return;
        }
        let digest: [u8; 32] = f.hasher.clone().finalize().into();
        if digest == id.0 {
            if let Some(Some(s)) = f.suspect.take() {
                // Its blocks fetched from the others made the content right.
                f.dl.bad_holder(s);
                f.bad.push(s);
                self.stats.bad_holders += 1;
            }
            let Some(mut f) = self.downloads.remove(&id) else {
                return;
            };
            let len = f.dl.len().unwrap_or(0);
            f.checkpoint();
            if let Err(e) = f.sink.finish() {
                self.stats.downloads_failed += 1;
                self.emit(Event::DownloadFinished {
                    id,
                    outcome: Err(DownloadError::Storage(e.to_string())),
                });
                return;
            }
            if let Some(w) = f.walk {
                self.lookups.remove(&w);
            }
            let holders =
                f.dl.providers()
                    .into_iter()
                    .filter_map(|(p, _)| p)
                    .collect();
            self.stats.downloads_finished += 1;
            self.emit(Event::DownloadFinished {
                id,
                outcome: Ok(DownloadDone {
                    len,
                    holders,
                    bad_holders: f.bad,
                }),
            });
            return;
        }
        // Wrong content. The last suspect's blocks were not (alone) the cause.
        if let Some(Some(s)) = f.suspect.take() {
            f.dl.unpause(s);
        }
        let providers = f.dl.providers();
        let next = providers.iter().map(|(p, _)| *p).find(|p| {
            !f.tried.contains(p)
                && match p {
                    // Someone else must be there to fetch its blocks from.
                    Some(h) => f.dl.usable_holders() > 1 || !f.dl.knows_holder(*h),
                    // Blocks from an earlier run can always be fetched again (from holders
                    // found later, if none is known yet).
                    None => true,
                }
        });
        match next {
            Some(p) => {
                tracing::debug!(
                    ?p,
                    "content does not verify; fetching this provider's blocks again"
                );
                f.tried.push(p);
                f.suspect = Some(p);
                f.dl.recheck(p);
                f.hasher = Sha256::new();
                f.hashed = 0;
                f.last_progress = now;
            }
            None => {
                let holders: Vec<SocketAddr> = providers.iter().filter_map(|(p, _)| *p).collect();
                // With nobody to check against, a lone provider is the one that was wrong.
                if let [h] = holders[..] {
                    f.bad.push(h);
                    self.stats.bad_holders += 1;
                }
                self.fail_download(id, DownloadError::VerifyFailed { holders });
            }
        }
    }

    /// Fails a download that has nobody left to ask, or has made no progress for long.
    fn check_stalled(&mut self, now: Time, id: NodeId) {
        let Some(f) = self.downloads.get(&id) else {
            return;
        };
        if f.walk.is_some() || !f.greeting.is_empty() || f.dl.is_complete() {
            return;
        }
        let received = f.dl.received();
        if f.dl.live_holders() == 0 && f.dl.dropped_holders().is_empty() {
            self.fail_download(id, DownloadError::NoHolders);
        } else if f.dl.usable_holders() == 0 || now >= f.last_progress + STALL_TIMEOUT {
            self.fail_download(id, DownloadError::HoldersSilent { received });
        }
    }
}
