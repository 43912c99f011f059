//! A download as a pure state machine (no I/O, no clock): which block to ask which holder
//! for next, with a window per holder that grows while blocks arrive and halves on loss,
//! lost blocks re-asked (from another holder when one has room), silent holders dropped,
//! and a holder found to have sent bad data dropped with every block it provided.
//!
//! The owner sends each [`BlockRequest`] as `PleaseSendContent`, reports blocks with
//! [`Download::on_block`], writes accepted bytes at their offset, and verifies the SHA-256
//! of the whole content at the end.

use crate::id::NodeId;
use crate::time::Time;
use crate::wire::BLOCK_SIZE;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Losses after which a holder that never delivered a block is dropped (unless it is the
/// last one).
pub const MAX_HOLDER_LOSSES: u32 = 8;
/// Largest window per holder, in blocks.
pub const MAX_WINDOW: f64 = 512.0;

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
    in_flight: usize,
    srtt: Option<Duration>,
    losses: u32,
    delivered: u64,
    dropped: bool,
}

impl Holder {
    fn new() -> Holder {
        Holder {
            window: 4.0,
            threshold: MAX_WINDOW,
            in_flight: 0,
            srtt: None,
            losses: 0,
            delivered: 0,
            dropped: false,
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
    /// Block index -> (holder, sent, deadline).
    in_flight: BTreeMap<u64, (SocketAddr, Time, Time)>,
    holders: BTreeMap<SocketAddr, Holder>,
    received: u64,
}

impl Download {
    /// A download of `id`; its length is learned from the first block.
    pub fn new(id: NodeId) -> Download {
        Download {
            id,
            len: None,
            have: Vec::new(),
            provider: Vec::new(),
            in_flight: BTreeMap::new(),
            holders: BTreeMap::new(),
            received: 0,
        }
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
        self.len.is_some() && self.have.iter().all(|h| *h)
    }

    /// Adds a holder to ask (no effect if it was dropped before).
    pub fn add_holder(&mut self, addr: SocketAddr) {
        self.holders.entry(addr).or_insert_with(Holder::new);
    }

    /// Holders still in use.
    pub fn live_holders(&self) -> usize {
        self.holders.values().filter(|h| !h.dropped).count()
    }

    /// Block requests of `holder` in flight, and its window.
    pub fn window_of(&self, holder: SocketAddr) -> Option<(usize, f64)> {
        self.holders.get(&holder).map(|h| (h.in_flight, h.window))
    }

    fn blocks(&self) -> u64 {
        self.len.map_or(1, |l| l.div_ceil(BLOCK_SIZE as u64).max(1))
    }

    fn block_len(&self, b: u64) -> u64 {
        match self.len {
            Some(l) => (l - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64),
            None => BLOCK_SIZE as u64,
        }
    }

    fn lose(&mut self, b: u64) {
        if let Some((h, _, _)) = self.in_flight.remove(&b) {
            if let Some(s) = self.holders.get_mut(&h) {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.threshold = (s.window / 2.0).max(1.0);
                s.window = s.threshold;
                s.losses += 1;
                // A holder that never delivered goes after repeated losses, but never the
                // last one; one that delivered is only slowed down (its window halves).
                let silent = s.delivered == 0 && s.losses >= MAX_HOLDER_LOSSES;
                if silent && self.live_holders() > 1 {
                    self.drop_holder(h);
                }
            }
        }
    }

    fn drop_holder(&mut self, h: SocketAddr) {
        if let Some(s) = self.holders.get_mut(&h) {
            s.dropped = true;
        }
        let theirs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (x, _, _))| *x == h)
            .map(|(b, _)| *b)
            .collect();
        for b in theirs {
            self.in_flight.remove(&b);
        }
        if let Some(s) = self.holders.get_mut(&h) {
            s.in_flight = 0;
        }
    }

    /// `holder` sent data that failed verification: it is dropped and every block it
    /// provided is fetched again from the others.
    pub fn bad_holder(&mut self, holder: SocketAddr) {
        self.drop_holder(holder);
        for b in 0..self.provider.len() {
            if self.provider[b] == Some(holder) {
                self.provider[b] = None;
                if self.have[b] {
                    self.have[b] = false;
                    self.received -= self.block_len(b as u64);
                }
            }
        }
    }

    /// The holder that provided the block at `offset`, if it arrived.
    pub fn provider_of(&self, offset: u64) -> Option<SocketAddr> {
        let b = usize::try_from(offset / BLOCK_SIZE as u64).ok()?;
        self.provider.get(b).copied().flatten()
    }

    /// When the next in-flight block times out.
    pub fn next_timeout(&self) -> Option<Time> {
        self.in_flight.values().map(|(_, _, d)| *d).min()
    }

    /// Expires lost blocks and returns the next request to send, if a holder has room.
    pub fn poll(&mut self, now: Time) -> Option<BlockRequest> {
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (_, _, d))| *d <= now)
            .map(|(b, _)| *b)
            .collect();
        for b in expired {
            self.lose(b);
        }
        if self.is_complete() {
            return None;
        }
        // Until the length is known, one request at a time for block 0.
        if self.len.is_none() && !self.in_flight.is_empty() {
            return None;
        }
        let block = (0..self.blocks()).find(|b| {
            let i = *b as usize;
            !self.have.get(i).copied().unwrap_or(false) && !self.in_flight.contains_key(b)
        })?;
        // The fastest holder with room in its window.
        let holder = self
            .holders
            .iter()
            .filter(|(_, s)| !s.dropped && (s.in_flight as f64) < s.window.floor().max(1.0))
            .min_by_key(|(a, s)| (s.srtt.unwrap_or(Duration::from_millis(250)), **a))
            .map(|(a, _)| *a)?;
        let s = self.holders.get_mut(&holder)?;
        s.in_flight += 1;
        let deadline = now + s.rto();
        self.in_flight.insert(block, (holder, now, deadline));
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
        if let Some(l) = self.len {
            if l != eof {
                self.bad_holder(from);
                return BlockOutcome::Inconsistent;
            }
        } else {
            self.len = Some(eof);
            let n = self.blocks() as usize;
            self.have = vec![false; n];
            self.provider = vec![None; n];
        }
        if offset % BLOCK_SIZE as u64 != 0 {
            return BlockOutcome::Ignored;
        }
        let b = offset / BLOCK_SIZE as u64;
        if b >= self.blocks() || data_len != self.block_len(b) {
            return BlockOutcome::Ignored;
        }
        let Some(&(asked, sent, _)) = self.in_flight.get(&b) else {
            return BlockOutcome::Ignored;
        };
        if asked != from {
            return BlockOutcome::Ignored;
        }
        self.in_flight.remove(&b);
        let i = b as usize;
        if let Some(s) = self.holders.get_mut(&from) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.losses = 0;
            s.delivered += 1;
            let sample = now.since(sent);
            s.srtt = Some(s.srtt.map_or(sample, |r| (r * 7 + sample) / 8));
            s.window = if s.window < s.threshold {
                s.window + 1.0
            } else {
                s.window + 1.0 / s.window
            }
            .min(MAX_WINDOW);
        }
        if self.have[i] {
            return BlockOutcome::Ignored;
        }
        self.have[i] = true;
        self.provider[i] = Some(from);
        self.received += data_len;
        BlockOutcome::Accepted
    }
}
