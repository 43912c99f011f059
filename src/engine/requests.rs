//! Requests in flight: each carries a random nonce; an answer counts only if it comes from the
//! very address the request went to, before the request expired.

use crate::hashing::Map;
use crate::id::NodeId;
use crate::time::Time;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Identifies a lookup run by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub u64);

/// Why a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Verify a candidate, or check a contact is alive.
    Ping,
    /// Check the least-recently-seen contact of a full bucket before evicting it.
    EvictCheck,
    /// `PleaseSendPeers` to a bootstrap node.
    Peers,
    /// A step of a lookup.
    Lookup(LookupId, NodeId),
    /// `IHaveSome` to one of the nodes closest to an id.
    Announce,
    /// A ping the owner asked for ([`super::Engine::ping`]).
    UserPing,
    /// A first request to a holder of a download, to get its cookie before asking blocks.
    Greet(NodeId),
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub addr: SocketAddr,
    pub purpose: Purpose,
    pub sent: Time,
    pub expires: Time,
    /// Whether we attached the peer's cookie (if not, the answer may have been trimmed).
    pub with_their_cookie: bool,
}

/// Prefix of telekad's `PleaseReturnThisMessage` cookies.
pub(crate) const NONCE_PREFIX: &str = "tk.";

pub(crate) fn nonce_text(nonce: u64) -> String {
    format!("{NONCE_PREFIX}{nonce:016x}")
}

pub(crate) fn parse_nonce(text: &str) -> Option<u64> {
    let hex = text.strip_prefix(NONCE_PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Requests {
    by_nonce: Map<u64, Request>,
    by_expiry: BTreeSet<(Time, u64)>,
    by_addr: Map<SocketAddr, Vec<u64>>,
    pings: usize,
}

fn is_ping(p: Purpose) -> bool {
    matches!(p, Purpose::Ping | Purpose::EvictCheck | Purpose::UserPing)
}

impl Requests {
    pub fn len(&self) -> usize {
        self.by_nonce.len()
    }

    pub fn pings(&self) -> usize {
        self.pings
    }

    pub fn insert(&mut self, nonce: u64, req: Request) {
        self.by_expiry.insert((req.expires, nonce));
        self.by_addr.entry(req.addr).or_default().push(nonce);
        if is_ping(req.purpose) {
            self.pings += 1;
        }
        if let Some(old) = self.by_nonce.insert(nonce, req) {
            // A nonce collision (2^-64): forget the older request.
            self.by_expiry.remove(&(old.expires, nonce));
            self.unlink(old.addr, nonce);
            if is_ping(old.purpose) {
                self.pings -= 1;
            }
        }
    }

    fn unlink(&mut self, addr: SocketAddr, nonce: u64) {
        if let Some(list) = self.by_addr.get_mut(&addr) {
            if let Some(p) = list.iter().position(|n| *n == nonce) {
                list.swap_remove(p);
            }
            if list.is_empty() {
                self.by_addr.remove(&addr);
            }
        }
    }

    fn remove(&mut self, nonce: u64) -> Option<Request> {
        let req = self.by_nonce.remove(&nonce)?;
        self.by_expiry.remove(&(req.expires, nonce));
        self.unlink(req.addr, nonce);
        if is_ping(req.purpose) {
            self.pings -= 1;
        }
        Some(req)
    }

    /// Takes the request answered by `nonce`, if it went to `from` and is still live.
    pub fn answer(&mut self, nonce: u64, from: SocketAddr, now: Time) -> Option<Request> {
        let req = self.by_nonce.get(&nonce)?;
        if req.addr != from || now > req.expires {
            return None;
        }
        self.remove(nonce)
    }

    /// Takes the oldest live request to `from` that a `Peers` answer can belong to (used
    /// when the answer came without our nonce, as trimmed replies of other nodes may).
    pub fn answer_peers(
        &mut self,
        from: SocketAddr,
        target: Option<NodeId>,
        now: Time,
    ) -> Option<Request> {
        let nonce = self
            .by_addr
            .get(&from)?
            .iter()
            .filter_map(|n| self.by_nonce.get(n).map(|r| (r.sent, *n, r)))
            .filter(|(_, _, r)| {
                now <= r.expires
                    && match (r.purpose, target) {
                        (Purpose::Peers, None) => true,
                        (Purpose::Lookup(_, t), Some(x)) => t == x,
                        (Purpose::Lookup(..), None) => true,
                        _ => false,
                    }
            })
            .map(|(sent, n, _)| (sent, n))
            .min()?
            .1;
        self.remove(nonce)
    }

    /// Whether a request of `purpose`-kind to `addr` is in flight.
    pub fn pending(&self, addr: SocketAddr, purpose: impl Fn(Purpose) -> bool) -> bool {
        self.by_addr.get(&addr).is_some_and(|list| {
            list.iter()
                .any(|n| self.by_nonce.get(n).is_some_and(|r| purpose(r.purpose)))
        })
    }

    /// Removes and returns every request expired at `now`, oldest first.
    pub fn expire(&mut self, now: Time) -> Vec<Request> {
        let mut out = Vec::new();
        while let Some(&(t, nonce)) = self.by_expiry.first() {
            if t > now {
                break;
            }
            if let Some(r) = self.remove(nonce) {
                out.push(r);
            }
        }
        out
    }

    /// Gives back memory that a burst (the join) left reserved.
    pub fn shrink(&mut self) {
        shrink_map(&mut self.by_nonce);
        shrink_map(&mut self.by_addr);
        // An emptied BTreeSet keeps its last leaf (eleven entries wide); let it go.
        if self.by_expiry.is_empty() {
            self.by_expiry = BTreeSet::new();
        }
    }

    /// When the next request expires.
    pub fn next_expiry(&self) -> Option<Time> {
        self.by_expiry.first().map(|(t, _)| *t)
    }
}

/// Shrinks a map whose capacity is far above its size (hash maps never shrink on their own).
/// The slack allowed is small: a settled node's request map kept 32 slots of 112 bytes
/// for its one or two pings, 3.6 KB of the ~39 KB it held.
pub(crate) fn shrink_map<K: std::hash::Hash + Eq, V>(m: &mut Map<K, V>) {
    if m.capacity() > 4 * m.len() + 4 {
        m.shrink_to(2 * m.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_from_the_address_asked_and_before_expiry() {
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let mut r = Requests::default();
        let req = |addr| Request {
            addr,
            purpose: Purpose::Ping,
            sent: Time::ZERO,
            expires: Time::from_millis(100),
            with_their_cookie: false,
        };
        r.insert(1, req(a));
        r.insert(2, req(a));
        assert!(r.answer(1, b, Time::from_millis(1)).is_none());
        assert!(r.answer(1, a, Time::from_millis(101)).is_none());
        assert!(
            r.answer(1, a, Time::from_millis(100)).is_some(),
            "live until its expiry"
        );
        r.insert(1, req(a));
        assert!(r.answer(1, a, Time::from_millis(50)).is_some());
        assert!(
            r.answer(1, a, Time::from_millis(50)).is_none(),
            "answered once"
        );
        assert_eq!(r.pings(), 1);
        assert_eq!(r.expire(Time::from_millis(99)).len(), 0);
        assert_eq!(r.expire(Time::from_millis(100)).len(), 1);
        assert_eq!(r.len(), 0);
        assert_eq!(parse_nonce(&nonce_text(0xdead)), Some(0xdead));
        assert_eq!(parse_nonce("3.108813345"), None);
    }
}
