//! Handling one received datagram: cookies, answers to our requests, and replies to theirs.
//!
//! Rate limits (`src/ratelimit.rs`): every datagram that asks for something (an answer, or
//! storing an announcement) is charged one token, before anything is built for it: its
//! source's bucket and then the node's, or, for a block request of held content alone in a
//! datagram from a cookie-verified source (a download), the source's block bucket. One
//! datagram, one token, however many requests it holds: the reply to it is one datagram
//! whose work is bounded (one peer list, one holder list, one block). A datagram refused
//! is not answered and its announcements are not stored, but the answers to our own
//! requests it may carry are still taken: answers are never charged, so a flood cannot make
//! the node lose its own lookups. While the budget of a source (or the node's) is spent,
//! its datagrams are dropped before they are even decoded, unless they may answer us: a
//! request of ours to that address is in flight (other than a candidate ping to an address
//! not in the table), or a download is running.

use super::requests::{parse_nonce, Purpose, Request};
use super::{Engine, Event};
use crate::addr::canonical;
use crate::cookie::CookieCheck;
use crate::id::NodeId;
use crate::ratelimit::{Charge, Verdict};
use crate::time::Time;
use crate::wire::{
    decode, Echo, Message, PacketError, PacketWriter, HEADER_OVERHEAD, MAX_DATAGRAM, MAX_PEERS,
};
use std::net::SocketAddr;

/// The most a reply to an unverified source may be, in UDP payload bytes: the reply's wire
/// size (payload + 28) is at most twice the request's wire size.
pub fn amplification_limit(request_len: usize) -> usize {
    2 * (request_len + HEADER_OVERHEAD) - HEADER_OVERHEAD
}

/// Whether `m` can be (part of) an answer to a request of ours, or content we fetch: what a
/// datagram refused by the rate limits is still read for.
fn may_answer_us(m: &Message) -> bool {
    matches!(
        m,
        Message::ReturnedMessage(_)
            | Message::Peers { .. }
            | Message::MaybeTheyHaveSome { .. }
            | Message::Content { .. }
            | Message::YourAddressIs { .. }
    )
}

impl Engine {
    /// Handles one datagram from `src`. Malformed input is dropped and counted, never an error;
    /// so are requests over the rate limits (`Config::rate_limit`), which go unanswered.
    pub fn handle_packet(&mut self, now: Time, src: SocketAddr, data: &[u8]) {
        let src = canonical(src);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        if self.spent_before_decode(now, src) {
            return;
        }
        let decoded = match decode(data) {
            Ok(d) => d,
            Err(PacketError::TooLarge) => {
                self.stats.dropped_too_large += 1;
                return;
            }
            Err(PacketError::NotJsonArray) => {
                self.stats.dropped_not_array += 1;
                return;
            }
        };
        self.stats.skipped_unknown += u64::from(decoded.unknown);
        self.stats.skipped_malformed += u64::from(decoded.malformed);
        self.stats.skipped_excess += u64::from(decoded.excess);
        self.stats.bad_addresses += u64::from(decoded.bad_addresses);
        let msgs = decoded.messages;
        if msgs.is_empty() {
            self.stats.dropped_empty += 1;
            return;
        }
        for m in &msgs {
            self.stats.count_in(m.name());
        }
        if self.is_self(src) {
            return;
        }

        let check = self.check_cookies(src, &msgs);
        let verified = matches!(check, Some(CookieCheck::Current | CookieCheck::Previous));
        let granted = self.charge(now, src, &msgs, verified);
        if !granted && !msgs.iter().any(may_answer_us) {
            return;
        }
        let new_cookie = self.remember_peer(now, src, &msgs, check);
        self.handle_answers(now, src, &msgs, verified, new_cookie);
        for m in &msgs {
            match m {
                Message::IHaveSome { id, note } if granted => {
                    self.take_announcement(now, src, check, *id, note);
                }
                Message::Content {
                    id,
                    offset,
                    data,
                    eof,
                } => self.take_content(now, src, *id, *offset, data, *eof),
                _ => {}
            }
        }
        if granted {
            self.reply(now, src, data.len(), check, &msgs);
        }
        self.drive(now);
    }

    /// Whether a datagram from `src` is to be dropped unread: the request budget of its
    /// source or of the node is spent, and it cannot be an answer we wait for (no download
    /// is running, and no request of ours to `src` is in flight: the ping we put in a reply
    /// to a stranger does not count, a source over its budget need not join the table).
    /// Counted when dropped.
    fn spent_before_decode(&mut self, now: Time, src: SocketAddr) -> bool {
        let verdict = self.limiter.peek(now, src.ip());
        if verdict == Verdict::Allowed || !self.downloads.is_empty() {
            return false;
        }
        let contact = self.table.contains(src);
        if self
            .requests
            .pending(src, |p| contact || p != Purpose::Ping)
        {
            return false;
        }
        self.count_limited(verdict);
        true
    }

    /// Charges a datagram that asks for something to the rate limits; returns whether it
    /// may be answered (true as well when it asks nothing).
    fn charge(&mut self, now: Time, src: SocketAddr, msgs: &[Message], verified: bool) -> bool {
        let mut asks = false;
        let mut only_blocks = true;
        for m in msgs {
            match m {
                Message::PleaseSendContent { id, .. } if self.holds(id) => asks = true,
                // An announcement gets no answer but costs a record: charged like a request.
                m if m.is_request() || matches!(m, Message::IHaveSome { .. }) => {
                    asks = true;
                    only_blocks = false;
                }
                _ => {}
            }
        }
        if !asks {
            return true;
        }
        let charge = if only_blocks && verified {
            Charge::Block
        } else {
            Charge::Request
        };
        let verdict = self.limiter.check(now, src.ip(), charge);
        self.count_limited(verdict);
        verdict == Verdict::Allowed
    }

    fn count_limited(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Allowed => {}
            Verdict::LimitedIp => self.stats.rate_limited_ip += 1,
            Verdict::LimitedGlobal => self.stats.rate_limited_global += 1,
        }
    }

    /// The best verdict over the packet's `AlwaysReturned` cookies (`None` if it has none).
    fn check_cookies(&mut self, src: SocketAddr, msgs: &[Message]) -> Option<CookieCheck> {
        let mut best = None;
        for m in msgs {
            if let Message::AlwaysReturned(e) = m {
                let c = e
                    .cookie_str()
                    .map_or(CookieCheck::Invalid, |s| self.jar.check(src.ip(), &s));
                best = match (best, c) {
                    (Some(CookieCheck::Current), _) | (_, CookieCheck::Current) => {
                        Some(CookieCheck::Current)
                    }
                    (Some(CookieCheck::Previous), _) | (_, CookieCheck::Previous) => {
                        Some(CookieCheck::Previous)
                    }
                    _ => Some(CookieCheck::Invalid),
                };
            }
        }
        if best == Some(CookieCheck::Invalid) {
            self.stats.cookie_invalid += 1;
        }
        best
    }

    /// Updates what we know of `src`; returns whether it handed us a new cookie.
    fn remember_peer(
        &mut self,
        now: Time,
        src: SocketAddr,
        msgs: &[Message],
        check: Option<CookieCheck>,
    ) -> bool {
        let info = self.peer_heard(src, now);
        info.set_echoes_ours(check == Some(CookieCheck::Current));
        if msgs.iter().any(|m| {
            matches!(
                m,
                Message::Peers {
                    target: Some(_),
                    ..
                } | Message::YourAddressIs { .. }
            )
        }) {
            info.set_telekad();
        }
        let mut new_cookie = false;
        for m in msgs {
            if let Message::PleaseAlwaysReturnThisMessage(e) = m {
                new_cookie |= self.set_their_cookie(&src, e);
            }
        }
        new_cookie
    }

    fn handle_answers(
        &mut self,
        now: Time,
        src: SocketAddr,
        msgs: &[Message],
        verified: bool,
        new_cookie: bool,
    ) {
        let mut answered: Vec<Request> = Vec::new();
        for m in msgs {
            if let Message::ReturnedMessage(e) = m {
                let hit = e
                    .cookie_str()
                    .and_then(|s| parse_nonce(&s))
                    .and_then(|n| self.requests.answer(n, src, now));
                match hit {
                    Some(r) => answered.push(r),
                    None => self.stats.unsolicited += 1,
                }
            }
        }
        let proven = !answered.is_empty();
        let peers_msg = msgs.iter().find_map(|m| match m {
            Message::Peers { peers, target } => Some((peers.as_slice(), *target)),
            _ => None,
        });
        // Whether the `Peers` answers a request about `target` (one naming no target may).
        let peers_for =
            |target: NodeId| peers_msg.is_some_and(|(_, t)| t.is_none_or(|t| t == target));
        if let (false, Some((_, target))) = (proven, peers_msg) {
            answered.extend(self.requests.answer_peers(src, target, now));
        }
        // Each address is hashed once, here, for the lookup and the candidate checks.
        let list: Vec<(SocketAddr, NodeId)> = peers_msg
            .map(|(p, _)| {
                p.iter()
                    .copied()
                    .filter(|a| !self.is_self(*a))
                    .take(self.cfg.lookup.max_from_answer)
                    .map(|a| (a, NodeId::of_addr(a)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = answered.first().filter(|_| proven) {
            let rtt = now.since(first.sent);
            self.observe_rtt(rtt);
            self.contact_answered(now, src, Some(rtt));
        }
        if answered.is_empty() && peers_msg.is_some() {
            self.stats.unsolicited += 1;
            if verified {
                self.add_candidates(&list);
            }
        }
        for req in answered {
            self.stats.requests_answered += 1;
            match req.purpose {
                Purpose::Lookup(id, target) => {
                    // A Peers naming another target answers another request.
                    let fits = peers_for(target);
                    let maybe = msgs.iter().find_map(|m| match m {
                        Message::MaybeTheyHaveSome {
                            id: mid,
                            peers,
                            holders,
                            notes,
                        } if *mid == target => Some((peers, *holders, notes)),
                        _ => None,
                    });
                    let mut named: Vec<SocketAddr> = Vec::new();
                    let from_maybe: Vec<(SocketAddr, NodeId)>;
                    let peers: &[(SocketAddr, NodeId)] = match maybe {
                        Some((all, holders, notes)) => {
                            if let Some(task) = self.lookups.get_mut(&id) {
                                for (i, h) in all.iter().take(holders).enumerate() {
                                    let note = notes.get(i).cloned().unwrap_or_default();
                                    task.holders.entry(*h).or_insert(note);
                                    if task.kind == super::LookupKind::Fetch {
                                        named.push(*h);
                                    }
                                }
                            }
                            from_maybe = all[holders..]
                                .iter()
                                .filter(|a| !self.is_self(**a))
                                .take(self.cfg.lookup.max_from_answer)
                                .map(|a| (*a, NodeId::of_addr(*a)))
                                .collect();
                            &from_maybe
                        }
                        None if fits => &list,
                        None => &[],
                    };
                    if let Some(task) = self.lookups.get_mut(&id) {
                        task.lookup.on_success_with_ids(src, peers, now);
                        self.dirty.insert(id);
                    }
                    self.add_candidates(peers);
                    // Download as soon as the walk names holders.
                    for h in named {
                        self.found_holder(now, target, h);
                    }
                }
                Purpose::Greet(id) => self.greeted(now, id, src, true),
                Purpose::Announce(id) => {
                    if !req.with_their_cookie
                        && self.peer(&src).is_some_and(|p| p.has_their_cookie())
                    {
                        // Sent without the node's cookie, the announcement was not recorded
                        // (an unproven source); send it again now that we hold the cookie
                        // (several may have gone out before its answer brought it).
                        self.send_announcement(now, src, id);
                    }
                }
                Purpose::UserPing => self.emit(Event::Pong {
                    addr: src,
                    rtt: Some(now.since(req.sent)),
                }),
                Purpose::Peers => {
                    self.add_candidates(&list);
                    if new_cookie && !req.with_their_cookie {
                        // The answer was probably trimmed for an unverified source; ask
                        // again now that we hold the peer's cookie.
                        self.send_request(now, src, Purpose::Peers, &[Message::PleaseSendPeers]);
                    }
                }
                Purpose::Sweep(target) => {
                    if peers_for(target) {
                        self.add_candidates(&list);
                    }
                }
                Purpose::Ping | Purpose::EvictCheck => {}
            }
        }
        if proven {
            for m in msgs {
                if let Message::YourAddressIs { addr } = m {
                    self.address_report(src, *addr);
                }
            }
        }
    }

    fn address_report(&mut self, reporter: SocketAddr, seen: SocketAddr) {
        let Some(addr) = self.votes.report(reporter.ip(), seen) else {
            return;
        };
        if addr == self.public || addr.is_ipv4() != self.local.is_ipv4() {
            return;
        }
        self.public = addr;
        self.stats.address_changes += 1;
        self.table.rebuild(NodeId::of_addr(addr));
        self.emit(Event::PublicAddressChanged(addr));
    }

    /// Answers the requests in `msgs`. To an unverified source the whole reply stays within
    /// [`amplification_limit`]; what does not fit is left out, our cookie first in line.
    fn reply(
        &mut self,
        now: Time,
        src: SocketAddr,
        request_len: usize,
        check: Option<CookieCheck>,
        msgs: &[Message],
    ) {
        let mut where_target = None;
        let mut wants_peers = false;
        let mut list_supported = false;
        let mut echoes: Vec<&Echo> = Vec::new();
        let mut content: Option<NodeId> = None;
        let mut block: Option<(NodeId, u64, u64)> = None;
        for m in msgs {
            match m {
                Message::WhereAreThey { target } => {
                    where_target.get_or_insert(*target);
                }
                Message::PleaseSendPeers => wants_peers = true,
                Message::PleaseListSupportedMessages => list_supported = true,
                Message::PleaseReturnThisMessage(e) => echoes.push(e),
                Message::PleaseSendContent { id, offset, length } if self.holds(id) => {
                    block.get_or_insert((*id, *offset, *length));
                }
                Message::PleaseSendContent { id, .. } | Message::WhoHasSome { id } => {
                    content.get_or_insert(*id);
                }
                _ => {}
            }
        }
        let is_request = where_target.is_some()
            || wants_peers
            || list_supported
            || !echoes.is_empty()
            || content.is_some()
            || block.is_some();
        if !is_request || self.cfg.read_only {
            return;
        }
        let verified = matches!(check, Some(CookieCheck::Current | CookieCheck::Previous));
        let limit = if verified {
            MAX_DATAGRAM
        } else {
            amplification_limit(request_len)
        };
        let mut w = PacketWriter::new(limit);
        let mut trimmed = false;
        if check != Some(CookieCheck::Current) {
            let ours = Echo::cookie(&self.jar.issue(src.ip()));
            trimmed |= !self.put(&mut w, &Message::PleaseAlwaysReturnThisMessage(ours));
        }
        if let Some(c) = self.their_cookie(&src) {
            trimmed |= !self.put(&mut w, &Message::AlwaysReturned(c));
        }
        let nonced = !echoes.is_empty();
        for e in echoes {
            trimmed |= !self.put(&mut w, &Message::ReturnedMessage(e.clone()));
        }
        if let Some((id, offset, length)) = block {
            trimmed |= !self.serve_block(&mut w, id, offset, length);
        }
        if let Some(id) = content {
            // Content we do not hold: point the asker at the holders we know of, then at the
            // contacts closest to its id.
            let (list, holders, notes) = self.holders_then_closest(&id, src, now);
            match w.push_maybe(id, &list, holders, &notes, 0) {
                Some(n) => {
                    self.stats.count_out("MaybeTheyHaveSome");
                    trimmed |= n < list.len();
                }
                None => trimmed = true,
            }
        }
        if let Some(target) = where_target.or(wants_peers.then(|| NodeId::of_addr(src))) {
            let list = self.closest_except(&target, src);
            let named = where_target.is_some().then_some(target);
            match w.push_peers(&list, named, 0) {
                Some(n) => {
                    self.stats.count_out("Peers");
                    trimmed |= n < list.len();
                }
                None => trimmed = true,
            }
        }
        if list_supported {
            trimmed |= !self.put(&mut w, &Message::SupportedMessages);
        }
        if !trimmed && nonced {
            self.put(&mut w, &Message::YourAddressIs { addr: src });
        }
        trimmed |= !self.ping_in_reply(now, src, &mut w);
        if trimmed && !verified {
            self.stats.replies_trimmed += 1;
        }
        self.transmit(src, w);
    }

    /// Up to [`MAX_PEERS`] contacts closest to `target`, leaving out `asker`.
    fn closest_except(&self, target: &NodeId, asker: SocketAddr) -> Vec<SocketAddr> {
        let mut out = Vec::with_capacity(MAX_PEERS);
        self.table
            .closest_addrs(target, MAX_PEERS, Some(asker), &mut out);
        out
    }

    /// Adds our own ping to a reply when `src` could join the table; returns false if it was
    /// wanted but did not fit.
    fn ping_in_reply(&mut self, now: Time, src: SocketAddr, w: &mut PacketWriter) -> bool {
        if self.table.contains(src) || !self.table.admits(src) {
            return true;
        }
        if self.requests.pending(src, |_| true)
            || self.requests.pings() >= self.cfg.max_pings_in_flight
            || self.requests.len() >= self.cfg.max_requests_in_flight
        {
            return true;
        }
        let nonce = rand::RngExt::random::<u64>(&mut self.rng);
        let ping =
            Message::PleaseReturnThisMessage(Echo::cookie(&super::requests::nonce_text(nonce)));
        if !self.put(w, &ping) {
            return false;
        }
        let timeout = super::timeout_for(&self.table, self.rtt_all, &self.cfg, src);
        let with_their_cookie = self.peer(&src).is_some_and(|p| p.has_their_cookie());
        self.requests.insert(
            nonce,
            Request {
                addr: src,
                purpose: Purpose::Ping,
                sent: now,
                expires: now + timeout * 2,
                with_their_cookie,
            },
        );
        self.stats.requests_sent += 1;
        true
    }
}
