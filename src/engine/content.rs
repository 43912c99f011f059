//! Serving content blocks: `PleaseSendContent` for an id this node holds is answered with a
//! `Content` block exactly as cjp2p nodes expect (`id`, `offset`, `base64`, `eof`).
//!
//! The engine never opens files: the owner hands it a [`BlockSource`] per id.

use super::Engine;
use crate::id::NodeId;
use crate::wire::{Message, PacketWriter, BLOCK_SIZE};
use std::fmt;
use std::sync::Arc;

/// Where the bytes of one held item come from (memory, or a file the owner reads).
pub trait BlockSource: Send + Sync + fmt::Debug {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Whether the item is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize;
}

impl BlockSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.as_slice().len());
        let n = buf.len().min(self.as_slice().len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        n
    }
}

/// A held item.
pub(super) type Held = Arc<dyn BlockSource>;

/// Base64 grows data by 4/3; this is the `Content` message around the block.
const CONTENT_OVERHEAD: usize = 200;

impl Engine {
    /// Serves `id` from `source` from now on. The caller vouches that `id` is the SHA-256
    /// of the source's bytes (it hashed them; receivers verify anyway).
    pub fn hold(&mut self, id: NodeId, source: Arc<dyn BlockSource>) {
        self.held.insert(id, source);
    }

    /// Stops serving `id`.
    pub fn unhold(&mut self, id: &NodeId) {
        self.held.remove(id);
    }

    /// Whether this node serves `id`.
    pub fn holds(&self, id: &NodeId) -> bool {
        self.held.contains_key(id)
    }

    /// Appends the `Content` block answering a request for `length` bytes of held `id` at
    /// `offset`, shortened to what fits in `w` (the amplification budget). Returns false if
    /// nothing could be served (bad offset, or no room for even one byte).
    pub(super) fn serve_block(
        &mut self,
        w: &mut PacketWriter,
        id: NodeId,
        offset: u64,
        length: u64,
    ) -> bool {
        let Some(src) = self.held.get(&id).cloned() else {
            return false;
        };
        let total = src.len();
        if offset > total || (offset == total && total > 0) {
            self.stats.content_bad_requests += 1;
            return false;
        }
        let room = w.room().saturating_sub(CONTENT_OVERHEAD) / 4 * 3;
        let want = length.min(BLOCK_SIZE as u64).min(total - offset) as usize;
        let n = want.min(room);
        if n == 0 && want > 0 {
            return false;
        }
        let mut data = vec![0u8; n];
        let got = src.read_at(offset, &mut data);
        data.truncate(got);
        let served = data.len() as u64;
        let ok = self.put(
            w,
            &Message::Content {
                id,
                offset,
                data,
                eof: total,
            },
        );
        if ok {
            self.stats.content_blocks_served += 1;
            self.stats.content_bytes_served += served;
        }
        ok
    }
}
