//! Requests in flight: each carries a random nonce; an answer counts only if it comes from the
//! very address the request went to, before the request expired.

use crate::id::NodeId;
use crate::time::Time;
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
    /// One `WhereAreThey` of a joining node's sweep of a bucket (see
    /// `Engine::sweep_bucket`): its answer only brings candidates.
    Sweep(NodeId),
    /// `IHaveSome` for an id to one of the nodes closest to it.
    Announce(NodeId),
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

/// The requests in flight, in one list: a node has a few dozen out at most times (up to
/// `max_requests_in_flight`), so a scan costs less than keeping maps by nonce, by expiry and
/// by address, and a settled node holds one small allocation instead of three structures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requests {
    list: Vec<(u64, Request)>,
    pings: usize,
}

fn is_ping(p: Purpose) -> bool {
    matches!(p, Purpose::Ping | Purpose::EvictCheck | Purpose::UserPing)
}

impl Requests {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn pings(&self) -> usize {
        self.pings
    }

    pub fn insert(&mut self, nonce: u64, req: Request) {
        // A nonce collision (2^-64): forget the older request.
        self.remove(nonce);
        if is_ping(req.purpose) {
            self.pings += 1;
        }
        self.list.push((nonce, req));
    }

    fn take(&mut self, at: usize) -> Request {
        let (_, req) = self.list.swap_remove(at);
        if is_ping(req.purpose) {
            self.pings -= 1;
        }
        req
    }

    fn position(&self, nonce: u64) -> Option<usize> {
        self.list.iter().position(|(n, _)| *n == nonce)
    }

    fn remove(&mut self, nonce: u64) -> Option<Request> {
        let at = self.position(nonce)?;
        Some(self.take(at))
    }

    /// Takes the request answered by `nonce`, if it went to `from` and is still live.
    pub fn answer(&mut self, nonce: u64, from: SocketAddr, now: Time) -> Option<Request> {
        let at = self.position(nonce)?;
        let req = &self.list[at].1;
        if req.addr != from || now > req.expires {
            return None;
        }
        Some(self.take(at))
    }

    /// Takes the oldest live request to `from` that a `Peers` answer can belong to (used
    /// when the answer came without our nonce, as trimmed replies of other nodes may).
    pub fn answer_peers(
        &mut self,
        from: SocketAddr,
        target: Option<NodeId>,
        now: Time,
    ) -> Option<Request> {
        let (_, _, at) = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| {
                r.addr == from
                    && now <= r.expires
                    && match (r.purpose, target) {
                        (Purpose::Peers, None) => true,
                        (Purpose::Lookup(_, t) | Purpose::Sweep(t), x) => x.is_none_or(|x| x == t),
                        _ => false,
                    }
            })
            .map(|(at, (n, r))| (r.sent, *n, at))
            .min()?;
        Some(self.take(at))
    }

    /// Whether a request of `purpose`-kind to `addr` is in flight.
    pub fn pending(&self, addr: SocketAddr, purpose: impl Fn(Purpose) -> bool) -> bool {
        self.list
            .iter()
            .any(|(_, r)| r.addr == addr && purpose(r.purpose))
    }

    /// Removes and returns every request expired at `now`, oldest first (by expiry, then
    /// nonce).
    pub fn expire(&mut self, now: Time) -> Vec<Request> {
        let mut out: Vec<(Time, u64, Request)> = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            if self.list[i].1.expires <= now {
                let nonce = self.list[i].0;
                let req = self.take(i);
                out.push((req.expires, nonce, req));
            } else {
                i += 1;
            }
        }
        out.sort_unstable_by_key(|(t, n, _)| (*t, *n));
        out.into_iter().map(|(_, _, r)| r).collect()
    }

    /// Gives back memory that a burst (the join) left reserved.
    pub fn shrink(&mut self) {
        crate::slack::shrink_vec(&mut self.list);
    }

    /// When the next request expires.
    pub fn next_expiry(&self) -> Option<Time> {
        self.list.iter().map(|(_, r)| r.expires).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    /// The list against a model kept in a map by nonce: same answers, same expiries in the
    /// same order, same counts, whatever the sequence of operations.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u8, u8, u16),
        Answer(u64, u8),
        AnswerPeers(u8, Option<u8>),
        Expire,
        Pending(u8),
        Wait(u16),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..12u64, 0..3u8, 0..5u8, 1..500u16).prop_map(|(n, a, p, d)| Op::Insert(n, a, p, d)),
            (0..12u64, 0..3u8).prop_map(|(n, a)| Op::Answer(n, a)),
            (0..3u8, proptest::option::of(0..2u8)).prop_map(|(a, t)| Op::AnswerPeers(a, t)),
            Just(Op::Expire),
            (0..3u8).prop_map(Op::Pending),
            (0..300u16).prop_map(Op::Wait),
        ]
    }

    proptest::proptest! {
        #[test]
        fn the_list_behaves_as_a_map_by_nonce(ops in proptest::collection::vec(op(), 1..200)) {
            let addr = |a: u8| SocketAddr::from(([127, 0, 0, a + 1], 9));
            let target = |t: u8| NodeId::hash(&[t]);
            let purpose = |p: u8| match p {
                0 => Purpose::Ping,
                1 => Purpose::Peers,
                2 => Purpose::Lookup(LookupId(1), target(0)),
                3 => Purpose::Lookup(LookupId(2), target(1)),
                _ => Purpose::Sweep(target(1)),
            };
            let mut r = Requests::default();
            let mut model: std::collections::BTreeMap<u64, Request> = Default::default();
            let mut now = Time::ZERO;
            let key = |q: &Request| (q.addr, q.sent, q.expires);
            for op in ops {
                match op {
                    Op::Insert(n, a, p, d) => {
                        let q = Request {
                            addr: addr(a),
                            purpose: purpose(p),
                            sent: now,
                            expires: now + Duration::from_millis(u64::from(d)),
                            with_their_cookie: false,
                        };
                        model.insert(n, q.clone());
                        r.insert(n, q);
                    }
                    Op::Answer(n, a) => {
                        let want = model
                            .get(&n)
                            .filter(|q| q.addr == addr(a) && now <= q.expires)
                            .map(key);
                        if want.is_some() {
                            model.remove(&n);
                        }
                        proptest::prop_assert_eq!(r.answer(n, addr(a), now).as_ref().map(key), want);
                    }
                    Op::AnswerPeers(a, t) => {
                        let t = t.map(target);
                        let want = model
                            .iter()
                            .filter(|(_, q)| {
                                q.addr == addr(a)
                                    && now <= q.expires
                                    && match (q.purpose, t) {
                                        (Purpose::Peers, None)
                                        | (Purpose::Lookup(..), None)
                                        | (Purpose::Sweep(_), None) => true,
                                        (Purpose::Lookup(_, x), Some(y))
                                        | (Purpose::Sweep(x), Some(y)) => x == y,
                                        _ => false,
                                    }
                            })
                            .map(|(n, q)| (q.sent, *n))
                            .min();
                        let want = want.and_then(|(_, n)| model.remove(&n)).as_ref().map(key);
                        proptest::prop_assert_eq!(r.answer_peers(addr(a), t, now).as_ref().map(key), want);
                    }
                    Op::Expire => {
                        let mut gone: Vec<(Time, u64)> = model
                            .iter()
                            .filter(|(_, q)| q.expires <= now)
                            .map(|(n, q)| (q.expires, *n))
                            .collect();
                        gone.sort();
                        let want: Vec<_> = gone
                            .iter()
                            .filter_map(|(_, n)| model.remove(n))
                            .map(|q| key(&q))
                            .collect();
                        let got: Vec<_> = r.expire(now).iter().map(key).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                    Op::Pending(a) => {
                        let want = model.values().any(|q| q.addr == addr(a) && q.purpose == Purpose::Peers);
                        proptest::prop_assert_eq!(r.pending(addr(a), |p| p == Purpose::Peers), want);
                    }
                    Op::Wait(ms) => now = now + Duration::from_millis(u64::from(ms)),
                }
                proptest::prop_assert_eq!(r.len(), model.len());
                proptest::prop_assert_eq!(r.pings(), model.values().filter(|q| is_ping(q.purpose)).count());
                proptest::prop_assert_eq!(r.next_expiry(), model.values().map(|q| q.expires).min());
                r.shrink();
                proptest::prop_assert!(r.list.capacity() <= 4 * r.len() + 4);
            }
        }
    }
}
