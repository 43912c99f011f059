//! Encoding: messages to JSON text, and datagrams built within a byte budget.

use super::{Message, MAX_DATAGRAM, SUPPORTED_MESSAGES};
use crate::id::NodeId;
use std::io::Write as _;
use std::net::SocketAddr;

impl Message {
    /// Appends this message's JSON (`{"Name":{...}}`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = self.write(out);
    }

    /// The encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        // One reusable buffer per thread: sizing a message allocates nothing.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut v) => {
                v.clear();
                self.encode(&mut v);
                v.len()
            }
            Err(_) => {
                let mut v = Vec::new();
                self.encode(&mut v);
                v.len()
            }
        })
    }

    fn write(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let name = self.name();
        match self {
            Message::PleaseSendPeers | Message::PleaseListSupportedMessages => {
                write!(out, "{{\"{name}\":{{}}}}")
            }
            Message::Peers { peers, target } => {
                write_peers(out, peers, target.as_ref());
                Ok(())
            }
            Message::PleaseAlwaysReturnThisMessage(e)
            | Message::AlwaysReturned(e)
            | Message::PleaseReturnThisMessage(e)
            | Message::ReturnedMessage(e) => write!(out, "{{\"{name}\":{}}}", e.as_json()),
            Message::WhereAreThey { target } => {
                out.extend_from_slice(b"{\"WhereAreThey\":{\"target\":\"");
                target.write_hex(out);
                out.extend_from_slice(b"\"}}");
                Ok(())
            }
            Message::YourAddressIs { addr } => {
                write!(out, "{{\"YourAddressIs\":{{\"addr\":\"{addr}\"}}}}")
            }
            Message::PleaseSendContent { id, offset, length } => {
                out.extend_from_slice(b"{\"PleaseSendContent\":{\"id\":\"");
                id.write_hex(out);
                write!(out, "\",\"offset\":{offset},\"length\":{length}}}}}")
            }
            Message::Content {
                id,
                offset,
                data,
                eof,
            } => {
                out.extend_from_slice(b"{\"Content\":{\"id\":\"");
                id.write_hex(out);
                write!(out, "\",\"offset\":{offset},\"base64\":\"")?;
                // Straight into the packet, no intermediate string.
                let start = out.len();
                let b64 = base64_simd::STANDARD;
                out.resize(start + b64.encoded_length(data.len()), 0);
                let written = b64
                    .encode(data, base64_simd::Out::from_slice(&mut out[start..]))
                    .len();
                out.truncate(start + written);
                write!(out, "\",\"eof\":{eof}}}}}")
            }
            Message::MaybeTheyHaveSome {
                id,
                peers,
                holders,
                notes,
            } => {
                out.extend_from_slice(b"{\"MaybeTheyHaveSome\":{\"id\":\"");
                id.write_hex(out);
                out.extend_from_slice(b"\",\"peers\":");
                write_addrs(out, peers)?;
                let holders = (*holders).min(peers.len());
                if holders > 0 {
                    write!(out, ",\"holders\":{holders}")?;
                    let notes = &notes[..notes.len().min(holders)];
                    if notes.iter().any(|n| !n.is_empty()) {
                        out.extend_from_slice(b",\"notes\":");
                        serde_json::to_writer(&mut *out, notes).map_err(std::io::Error::other)?;
                    }
                }
                write!(out, "}}}}")
            }
            Message::IHaveSome { id, note } => {
                out.extend_from_slice(b"{\"IHaveSome\":{\"id\":\"");
                id.write_hex(out);
                out.push(b'"');
                if !note.is_empty() {
                    out.extend_from_slice(b",\"note\":");
                    serde_json::to_writer(&mut *out, note).map_err(std::io::Error::other)?;
                }
                write!(out, "}}}}")
            }
            Message::WhoHasSome { id } => {
                out.extend_from_slice(b"{\"WhoHasSome\":{\"id\":\"");
                id.write_hex(out);
                out.extend_from_slice(b"\"}}");
                Ok(())
            }
            Message::SupportedMessages => {
                write!(out, "{{\"SupportedMessages\":{{\"schema\":{{\"messages\":")?;
                write_list(out, SUPPORTED_MESSAGES.iter())?;
                write!(out, "}}}}}}")
            }
            Message::Padding { len } => {
                write!(out, "{{\"Padding\":{{\"p\":\"")?;
                out.resize(out.len() + len, b'0');
                write!(out, "\"}}}}")
            }
            Message::Ignored(_) => write!(out, "{{\"{name}\":{{}}}}"),
        }
    }
}

/// `{"Peers":{"peers":[...],"target":"..."}}`, straight into `out`.
fn write_peers(out: &mut Vec<u8>, peers: &[SocketAddr], target: Option<&NodeId>) {
    out.extend_from_slice(PEERS_HEAD);
    let _ = write_addrs(out, peers);
    if let Some(t) = target {
        out.extend_from_slice(TARGET_HEAD);
        t.write_hex(out);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
}

const PEERS_HEAD: &[u8] = b"{\"Peers\":{\"peers\":";
const TARGET_HEAD: &[u8] = b",\"target\":\"";

/// Length of [`write_peers`]'s output for no peers.
fn empty_peers_len(target: Option<&NodeId>) -> usize {
    PEERS_HEAD.len() + "[]".len() + target.map_or(0, |_| TARGET_HEAD.len() + 64 + 1) + 2
}

fn write_addrs(out: &mut Vec<u8>, addrs: &[SocketAddr]) -> std::io::Result<()> {
    out.push(b'[');
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        crate::addr::write_addr(out, *a);
        out.push(b'"');
    }
    out.push(b']');
    Ok(())
}

fn write_list<T: std::fmt::Display>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = T>,
) -> std::io::Result<()> {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write!(out, "\"{item}\"")?;
    }
    out.push(b']');
    Ok(())
}

/// Encodes a whole packet without a size limit.
pub fn encode_packet(messages: &[Message]) -> Vec<u8> {
    let mut w = PacketWriter::new(usize::MAX);
    for m in messages {
        w.push(m);
    }
    w.finish().unwrap_or_else(|| b"[]".to_vec())
}

/// Builds one datagram, refusing messages that would take it past its byte limit.
#[derive(Debug)]
pub struct PacketWriter {
    buf: Vec<u8>,
    limit: usize,
    count: usize,
}

/// Most buffers a thread keeps for reuse ([`recycle`]).
const POOL_BUFFERS: usize = 64;
/// Smallest buffer worth keeping: what [`PacketWriter::new`] allocates.
const POOL_MIN: usize = 1024;
/// Largest buffer kept (a content block's datagram); larger ones are freed.
const POOL_MAX: usize = 8192;

thread_local! {
    /// Datagram buffers handed back once sent, per thread (not per node: a thousand idle
    /// nodes on one thread share at most [`POOL_BUFFERS`] of them).
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hands back a datagram's buffer once it was sent, for the next [`PacketWriter`] on this
/// thread: a node answering 150,000 requests a second otherwise allocates and frees a
/// kilobyte for each.
pub fn recycle(mut buf: Vec<u8>) {
    if !(POOL_MIN..=POOL_MAX).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    POOL.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < POOL_BUFFERS {
                p.push(buf);
            }
        }
    });
}

impl PacketWriter {
    /// A writer whose finished datagram is at most `limit` bytes (and at most
    /// [`MAX_DATAGRAM`]).
    pub fn new(limit: usize) -> PacketWriter {
        let limit = limit.min(MAX_DATAGRAM);
        // Most datagrams fit in a kilobyte; larger ones (content blocks) grow once or twice.
        let mut buf = POOL
            .with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .unwrap_or_else(|| Vec::with_capacity(POOL_MIN));
        buf.push(b'[');
        PacketWriter {
            buf,
            limit,
            count: 0,
        }
    }

    /// Bytes still free for one more message, counting its separator and the closing `]`.
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.buf.len() + usize::from(self.count > 0) + 1)
    }

    /// Bytes written so far (without the closing `]`).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Messages written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends `m` if it fits; returns whether it did.
    pub fn push(&mut self, m: &Message) -> bool {
        self.push_with(|buf| m.encode(buf))
    }

    /// Appends what `write` writes as one message, unless it is longer than [`Self::room`]:
    /// written in place and cut back if it turns out too long (no scratch copy).
    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let room = self.room();
        let start = self.buf.len();
        if self.count > 0 {
            self.buf.push(b',');
        }
        let body = self.buf.len();
        write(&mut self.buf);
        if self.buf.len() - body > room {
            self.buf.truncate(start);
            return false;
        }
        self.count += 1;
        true
    }

    /// Appends a `Peers` message with as many of `peers` (in order) as fit, if at least
    /// `min` of them fit. Returns how many were written, or `None` if nothing was.
    pub fn push_peers(
        &mut self,
        peers: &[SocketAddr],
        target: Option<NodeId>,
        min: usize,
    ) -> Option<usize> {
        let n = self.fitting(peers, min, empty_peers_len(target.as_ref()))?;
        self.push_with(|buf| write_peers(buf, &peers[..n], target.as_ref()))
            .then_some(n)
    }

    /// Appends a `MaybeTheyHaveSome` with as many of `peers` as fit (at least `min`); the
    /// first `holders` of them are holders, with `notes`.
    pub fn push_maybe(
        &mut self,
        id: NodeId,
        peers: &[SocketAddr],
        holders: usize,
        notes: &[String],
        min: usize,
    ) -> Option<usize> {
        let make = |n: usize| Message::MaybeTheyHaveSome {
            id,
            peers: peers[..n].to_vec(),
            holders: holders.min(n),
            notes: notes[..notes.len().min(holders.min(n))].to_vec(),
        };
        // Notes make entries uneven; the size still grows with the count, so bisect.
        if holders > 0 {
            let fits = |n: usize, w: &PacketWriter| make(n).encoded_len() <= w.room();
            let (mut lo, mut hi) = (min, peers.len());
            if lo > hi || !fits(lo, self) {
                return None;
            }
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(mid, self) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            return self.push(&make(lo)).then_some(lo);
        }
        self.push_longest(peers, min, make)
    }

    fn push_longest(
        &mut self,
        peers: &[SocketAddr],
        min: usize,
        make: impl Fn(usize) -> Message,
    ) -> Option<usize> {
        let n = self.fitting(peers, min, make(0).encoded_len())?;
        self.push(&make(n)).then_some(n)
    }

    /// How many of `peers` (in order, at least `min`) fit in a message that is `empty` bytes
    /// long without them: each entry adds its text, two quotes and a comma (none before the
    /// first).
    fn fitting(&self, peers: &[SocketAddr], min: usize, empty: usize) -> Option<usize> {
        let mut size = empty;
        let room = self.room();
        // Whole list surely fits (the usual case: a verified asker's datagram has room for
        // 64 KB): no need to measure each entry.
        let longest = crate::addr::MAX_ADDR_TEXT + 3;
        if peers.len() >= min && empty + peers.len() * longest <= room {
            return Some(peers.len());
        }
        let mut n = 0;
        for a in peers {
            let add = crate::addr::addr_text_len(*a) + 2 + usize::from(n > 0);
            if size + add > room {
                break;
            }
            size += add;
            n += 1;
        }
        (n >= min && size <= room).then_some(n)
    }

    /// The finished datagram, or `None` if no message was written.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        self.buf.push(b']');
        Some(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recycled_buffers_are_reused_empty_and_only_within_bounds() {
        let write = || {
            let mut w = PacketWriter::new(MAX_DATAGRAM);
            assert!(w.push(&Message::PleaseSendPeers));
            w.finish().expect("one message")
        };
        let mut old = Vec::with_capacity(3000);
        old.extend_from_slice(b"[\"stale bytes\"]");
        recycle(old);
        let out = write();
        assert_eq!(out, br#"[{"PleaseSendPeers":{}}]"#);
        assert_eq!(out.capacity(), 3000, "the recycled buffer was taken");
        // Too small or too large to keep: the next writer allocates its own.
        recycle(Vec::with_capacity(16));
        recycle(Vec::with_capacity(POOL_MAX + 1));
        let out = write();
        assert_eq!(out, br#"[{"PleaseSendPeers":{}}]"#);
        assert_eq!(out.capacity(), POOL_MIN);
    }

    fn addr(v6: bool, a: u32, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::from((std::net::Ipv6Addr::from(u128::from(a) << 64 | 1), port))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::from(a), port))
        }
    }

    proptest! {
        /// `push_peers` writes exactly what pushing the `Peers` message of the entries it
        /// took writes, and takes as many as fit: one more would not.
        #[test]
        fn push_peers_is_the_longest_peers_message_that_fits(
            raw in prop::collection::vec((any::<bool>(), any::<u32>(), any::<u16>()), 0..40),
            target in prop::option::of(any::<[u8; 32]>()),
            limit in 0usize..1200,
            min in 0usize..4,
        ) {
            let peers: Vec<SocketAddr> = raw.iter().map(|&(v6, a, p)| addr(v6, a, p)).collect();
            let target = target.map(NodeId);
            let mut w = PacketWriter::new(limit);
            let got = w.push_peers(&peers, target, min);
            let message = |n: usize| Message::Peers { peers: peers[..n].to_vec(), target };
            let fits = |n: usize| PacketWriter::new(limit).push(&message(n));
            match got {
                Some(n) => {
                    prop_assert!(n >= min);
                    let mut want = PacketWriter::new(limit);
                    prop_assert!(want.push(&message(n)));
                    prop_assert_eq!(w.finish(), want.finish());
                    prop_assert!(n == peers.len() || !fits(n + 1));
                }
                None => prop_assert!(min > peers.len() || !fits(min)),
            }
        }
    }
}
