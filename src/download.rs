//! A download as a pure state machine (no I/O, no clock): which block to ask which holder
//! for next, with a window per holder that grows while blocks arrive and halves on loss,
//! lost blocks re-asked (from another holder when one has room), silent holders dropped,
//! and a holder found to have sent bad data dropped with every block it provided.
//!
//! The owner sends each [`BlockRequest`] as `PleaseSendContent`, reports blocks with
//! [`Download::on_block`], writes accepted bytes at their offset, and verifies the SHA-256
//! of the whole content at the end. If that fails, [`Download::recheck`] fetches the blocks
//! of one suspect again from the other holders (see `engine/fetch.rs` for the search).
//!
//! Every step costs O(log n) in the number of blocks: a cursor over blocks never asked,
//! a set of blocks to ask again, and in-flight blocks ordered by deadline.

use crate::id::NodeId;
use crate::time::Time;
use crate::wire::BLOCK_SIZE;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Losses after which a holder that never delivered a block is dropped (unless it is the
/// last one).
pub const MAX_HOLDER_LOSSES: u32 = 8;
/// Largest window per holder, in blocks.
pub const MAX_WINDOW: f64 = 512.0;
/// Most blocks in flight over all holders (about 2.3 MB of answers on the way, within a
/// 4 MiB socket receive buffer).
pub const MAX_IN_FLIGHT: usize = 384;

/// What an earlier run left: the content length and which blocks are present.
pub type ResumeFrom = (u64, Vec<bool>);

/// A block asked of a holder that has not arrived yet.
#[derive(Debug, Clone, Copy)]
struct Flight {
    holder: SocketAddr,
    sent: Time,
    deadline: Time,
    /// Send order at this holder.
    seq: u64,
}

/// Later-sent blocks from the same holder that may arrive before an earlier one is taken
/// as lost.
pub const REORDER_ALLOWANCE: u64 = 3;

/// One `PleaseSendContent` to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// The holder to ask.
    pub holder: SocketAddr,
    /// First byte.
    pub offset: u64,
    /// Bytes asked for.
    pub length: u64,
}

/// What [`Download::on_block`] made of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// New data: write it at its offset.
    Accepted,
    /// Nothing asked it, or it repeats a block we have, or it does not fit: ignored.
    Ignored,
    /// Its `eof` contradicts what other blocks said: the holder was dropped.
    Inconsistent,
}

#[derive(Debug, Clone)]
struct Holder {
    window: f64,
    threshold: f64,
    /// Blocks asked of this holder and not yet arrived, by send sequence.
    order: BTreeSet<(u64, u64)>,
    next_seq: u64,
    /// Losses of blocks sent before this time do not shrink the window again (one
    /// decrease per round trip, as in TCP NewReno).
    recovered: Time,
    srtt: Option<Duration>,
    min_rtt: Option<Duration>,
    losses: u32,
    delivered: u64,
    dropped: bool,
    /// Under recheck: not asked until [`Download::unpause`].
    paused: bool,
}

impl Holder {
    fn new() -> Holder {
        Holder {
            window: 4.0,
            threshold: MAX_WINDOW,
            order: BTreeSet::new(),
            next_seq: 0,
            recovered: Time::ZERO,
            srtt: None,
            min_rtt: None,
            losses: 0,
            delivered: 0,
            dropped: false,
            paused: false,
        }
    }

    /// The window as a whole number of blocks (at least one).
    fn room(&self) -> f64 {
        self.window.floor().max(1.0)
    }

    /// Whether the round trip is near its minimum: no queue has built up on the path, so a
    /// loss is more likely noise than congestion.
    fn no_queue(&self) -> bool {
        match (self.srtt, self.min_rtt) {
            (Some(s), Some(m)) => s <= m + m / 2 + Duration::from_millis(1),
            _ => false,
        }
    }

    fn rto(&self) -> Duration {
        self.srtt
            .map_or(Duration::from_millis(500), |s| s * 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(3))
    }
}

/// The state of one download.
#[derive(Debug, Clone)]
pub struct Download {
    id: NodeId,
    len: Option<u64>,
    have: Vec<bool>,
    provider: Vec<Option<SocketAddr>>,
    /// Blocks of `have` still false.
    missing: u64,
    /// Blocks below the cursor were asked at least once (or were there on resume).
    cursor: u64,
    /// Blocks to ask again (lost, or taken back from a bad or suspect holder).
    retry: BTreeSet<u64>,
    in_flight: BTreeMap<u64, Flight>,
    deadlines: BTreeSet<(Time, u64)>,
    holders: BTreeMap<SocketAddr, Holder>,
    received: u64,
    /// The length came from a resume record and no holder has confirmed it yet.
    len_unconfirmed: bool,
}

impl Download {
    /// A download of `id`; its length is learned from the first block.
    pub fn new(id: NodeId) -> Download {
        Download {
            id,
            len: None,
            have: Vec::new(),
            provider: Vec::new(),
            missing: 1,
            cursor: 0,
            retry: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            holders: BTreeMap::new(),
            received: 0,
            len_unconfirmed: false,
        }
    }

    /// A download of `id`, `len` bytes long, resumed with the blocks marked in `have`
    /// already present (their provider is unknown: `None`). A bitmap of the wrong size is
    /// ignored (nothing is taken as present).
    pub fn resume(id: NodeId, len: u64, have: &[bool]) -> Download {
        let mut d = Download::new(id);
        d.set_len(len);
        d.len_unconfirmed = true;
        if have.len() == d.have.len() {
            for (b, h) in have.iter().enumerate() {
                if *h {
                    d.have[b] = true;
                    d.missing -= 1;
                    d.received += d.block_len(b as u64);
                }
            }
        }
        d
    }

    /// Forgets every block present or asked and starts over with length `len` (holders
    /// and their windows are kept).
    fn restart(&mut self, len: u64) {
        self.set_len(len);
        self.cursor = 0;
        self.retry.clear();
        self.received = 0;
        let blocks: Vec<u64> = self.in_flight.keys().copied().collect();
        for b in blocks {
            self.take_in_flight(b);
        }
    }

    fn set_len(&mut self, len: u64) {
        self.len = Some(len);
        let n = self.blocks() as usize;
        self.have = vec![false; n];
        self.provider = vec![None; n];
        self.missing = n as u64;
    }

    /// The content id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Total length, once known.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the length is known to be zero.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether every block has arrived.
    pub fn is_complete(&self) -> bool {
        self.len.is_some() && self.missing == 0
    }

    /// Which blocks are present (empty until the length is known).
    pub fn have(&self) -> &[bool] {
        &self.have
    }

    /// Whether block `b` is present.
    pub fn has_block(&self, b: u64) -> bool {
        usize::try_from(b)
            .ok()
            .and_then(|i| self.have.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// Number of blocks (1 until the length is known; an empty item has one empty block).
    pub fn blocks(&self) -> u64 {
        self.len.map_or(1, |l| l.div_ceil(BLOCK_SIZE as u64).max(1))
    }

    /// Length of block `b`.
    pub fn block_len(&self, b: u64) -> u64 {
        match self.len {
            Some(l) => l
                .saturating_sub(b.saturating_mul(BLOCK_SIZE as u64))
                .min(BLOCK_SIZE as u64),
            None => BLOCK_SIZE as u64,
        }
    }

    /// Adds a holder to ask (no effect if it is known already, dropped or not).
    pub fn add_holder(&mut self, addr: SocketAddr) {
        self.holders.entry(addr).or_insert_with(Holder::new);
    }

    /// Whether `addr` was added as a holder (dropped or not).
    pub fn knows_holder(&self, addr: SocketAddr) -> bool {
        self.holders.contains_key(&addr)
    }

    /// Holders still in use (paused ones included).
    pub fn live_holders(&self) -> usize {
        self.holders.values().filter(|h| !h.dropped).count()
    }

    /// Holders that may be asked now (neither dropped nor paused).
    pub fn usable_holders(&self) -> usize {
        self.holders
            .values()
            .filter(|h| !h.dropped && !h.paused)
            .count()
    }

    /// Holders that were dropped.
    pub fn dropped_holders(&self) -> Vec<SocketAddr> {
        self.holders
            .iter()
            .filter(|(_, h)| h.dropped)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Block requests of `holder` in flight, and its window.
    pub fn window_of(&self, holder: SocketAddr) -> Option<(usize, f64)> {
        self.holders.get(&holder).map(|h| (h.order.len(), h.window))
    }

    /// Block requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn take_in_flight(&mut self, b: u64) -> Option<Flight> {
        let f = self.in_flight.remove(&b)?;
        self.deadlines.remove(&(f.deadline, b));
        if let Some(s) = self.holders.get_mut(&f.holder) {
            s.order.remove(&(f.seq, b));
        }
        Some(f)
    }

    fn lose(&mut self, b: u64, now: Time) {
        let Some(f) = self.take_in_flight(b) else {
            return;
        };
        self.retry.insert(b);
        let live = self.live_holders();
        let h = f.holder;
        if let Some(s) = self.holders.get_mut(&h) {
            if f.sent >= s.recovered {
                // Once per round trip: halve when a queue built up (congestion), shrink a
                // little when the path shows no queue (random loss).
                let factor = if s.no_queue() { 0.9 } else { 0.5 };
                s.threshold = (s.window * factor).max(1.0);
                s.window = s.threshold;
                s.recovered = now;
            }
            s.losses += 1;
            // A holder that never delivered goes after repeated losses, but never the
            // last one; one that delivered is only slowed down (its window halves).
            let silent = s.delivered == 0 && s.losses >= MAX_HOLDER_LOSSES;
            if silent && live > 1 {
                self.drop_holder(h);
            }
        }
    }

    fn drop_holder(&mut self, h: SocketAddr) {
        if let Some(s) = self.holders.get_mut(&h) {
            s.dropped = true;
        }
        self.requeue_in_flight(h);
    }

    /// Takes back every block in flight to `h` and queues it to be asked again.
    fn requeue_in_flight(&mut self, h: SocketAddr) {
        let theirs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.holder == h)
            .map(|(b, _)| *b)
            .collect();
        for b in theirs {
            self.take_in_flight(b);
            self.retry.insert(b);
        }
    }

    /// Forgets every block `provider` gave (`None`: blocks present on resume) and queues
    /// them again; returns how many.
    fn take_back(&mut self, provider: Option<SocketAddr>) -> u64 {
        let mut n = 0;
        for b in 0..self.provider.len() {
            if self.have[b] && self.provider[b] == provider {
                self.provider[b] = None;
                self.have[b] = false;
                self.missing += 1;
                self.received -= self.block_len(b as u64);
                self.retry.insert(b as u64);
                n += 1;
            }
        }
        n
    }

    /// `holder` sent data that failed verification: it is dropped and every block it
    /// provided is fetched again from the others.
    pub fn bad_holder(&mut self, holder: SocketAddr) {
        self.drop_holder(holder);
        self.take_back(Some(holder));
    }

    /// Who provided the blocks present: each provider (`None`: present on resume) with its
    /// block count, most blocks first.
    pub fn providers(&self) -> Vec<(Option<SocketAddr>, u64)> {
        let mut count: BTreeMap<Option<SocketAddr>, u64> = BTreeMap::new();
        for (b, p) in self.provider.iter().enumerate() {
            if self.have[b] {
                *count.entry(*p).or_default() += 1;
            }
        }
        let mut v: Vec<_> = count.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Verification failed: fetch every block `suspect` provided again from the others
    /// (`suspect` is paused meanwhile; `None` means the blocks present on resume). Returns
    /// how many blocks were taken back.
    pub fn recheck(&mut self, suspect: Option<SocketAddr>) -> u64 {
        if let Some(h) = suspect {
            self.requeue_in_flight(h);
            if let Some(s) = self.holders.get_mut(&h) {
                s.paused = true;
            }
        }
        self.take_back(suspect)
    }

    /// Lets a paused holder be asked again.
    pub fn unpause(&mut self, holder: SocketAddr) {
        if let Some(s) = self.holders.get_mut(&holder) {
            s.paused = false;
        }
    }

    /// The holder that provided the block at `offset`, if it arrived.
    pub fn provider_of(&self, offset: u64) -> Option<SocketAddr> {
        let b = usize::try_from(offset / BLOCK_SIZE as u64).ok()?;
        self.provider.get(b).copied().flatten()
    }

    /// When the next in-flight block times out.
    pub fn next_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The next block to ask for: one to ask again, else the first never asked.
    fn next_block(&mut self) -> Option<u64> {
        if let Some(b) = self.retry.first().copied() {
            return Some(b);
        }
        let blocks = self.blocks();
        while self.cursor < blocks && self.has_block(self.cursor) {
            self.cursor += 1;
        }
        (self.cursor < blocks).then_some(self.cursor)
    }

    /// Expires lost blocks and returns the next request to send, if a holder has room.
    pub fn poll(&mut self, now: Time) -> Option<BlockRequest> {
        while let Some(&(d, b)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.lose(b, now);
        }
        if self.is_complete() {
            return None;
        }
        // Until the length is known, one request at a time for block 0.
        if self.len.is_none() && !self.in_flight.is_empty() || self.in_flight.len() >= MAX_IN_FLIGHT
        {
            return None;
        }
        // The least loaded holder (in flight over window) with room in its window.
        let holder = self
            .holders
            .iter()
            .filter(|(_, s)| !s.dropped && !s.paused && (s.order.len() as f64) < s.room())
            .min_by(|(a, x), (b, y)| {
                let lx = x.order.len() as f64 / x.room();
                let ly = y.order.len() as f64 / y.room();
                lx.total_cmp(&ly).then(a.cmp(b))
            })
            .map(|(a, _)| *a)?;
        let block = self.next_block()?;
        if !self.retry.remove(&block) {
            self.cursor = block + 1;
        }
        let s = self.holders.get_mut(&holder)?;
        let seq = s.next_seq;
        s.next_seq += 1;
        s.order.insert((seq, block));
        let deadline = now + s.rto();
        self.in_flight.insert(
            block,
            Flight {
                holder,
                sent: now,
                deadline,
                seq,
            },
        );
        self.deadlines.insert((deadline, block));
        Some(BlockRequest {
            holder,
            offset: block * BLOCK_SIZE as u64,
            length: self.block_len(block),
        })
    }

    /// A `Content` block from `from`: `data_len` bytes at `offset` of content `eof` long.
    pub fn on_block(
        &mut self,
        from: SocketAddr,
        offset: u64,
        data_len: u64,
        eof: u64,
        now: Time,
    ) -> BlockOutcome {
        if self.holders.get(&from).is_none_or(|h| h.dropped) {
            return BlockOutcome::Ignored;
        }
        match self.len {
            Some(l) if l != eof && self.len_unconfirmed => {
                // The resume record was wrong, not the holder: start over at its length.
                self.restart(eof);
            }
            Some(l) if l != eof => {
                self.bad_holder(from);
                return BlockOutcome::Inconsistent;
            }
            Some(_) => {}
            None => self.set_len(eof),
        }
        self.len_unconfirmed = false;
        if offset % BLOCK_SIZE as u64 != 0 {
            return BlockOutcome::Ignored;
        }
        let b = offset / BLOCK_SIZE as u64;
        if b >= self.blocks() || data_len != self.block_len(b) {
            return BlockOutcome::Ignored;
        }
        match self.in_flight.get(&b) {
            Some(f) if f.holder == from => {}
            _ => return BlockOutcome::Ignored,
        }
        let Some(Flight { sent, seq, .. }) = self.take_in_flight(b) else {
            return BlockOutcome::Ignored;
        };
        if let Some(s) = self.holders.get_mut(&from) {
            s.losses = 0;
            s.delivered += 1;
            let sample = now.since(sent);
            s.srtt = Some(s.srtt.map_or(sample, |r| (r * 7 + sample) / 8));
            s.min_rtt = Some(s.min_rtt.map_or(sample, |m| m.min(sample)));
            s.window = if s.window < s.threshold || s.no_queue() {
                s.window + 1.0
            } else {
                s.window + 1.0 / s.window
            }
            .min(MAX_WINDOW);
        }
        // Blocks asked of this holder well before this one and still missing were lost
        // (loopback and most paths keep order): ask them again now, not at their deadline.
        let overtaken: Vec<u64> = self.holders.get(&from).map_or(Vec::new(), |s| {
            s.order
                .iter()
                .take_while(|(q, _)| q + REORDER_ALLOWANCE < seq)
                .map(|(_, blk)| *blk)
                .collect()
        });
        for blk in overtaken {
            self.lose(blk, now);
        }
        let i = b as usize;
        if self.have[i] {
            return BlockOutcome::Ignored;
        }
        self.have[i] = true;
        self.missing -= 1;
        self.provider[i] = Some(from);
        self.received += data_len;
        BlockOutcome::Accepted
    }
}
