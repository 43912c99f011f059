//! Announcements and holder lookups: telling the nodes closest to an id that we hold it,
//! keeping other nodes' announcements, and collecting the holders of an id.

use super::requests::Purpose;
use super::{Engine, LookupId, LookupKind};
use crate::cookie::CookieCheck;
use crate::id::NodeId;
use crate::lookup::LookupResult;
use crate::records::{Refused, MAX_NOTE};
use crate::time::Time;
use crate::wire::{Message, MAX_PEERS};
use std::net::SocketAddr;

/// Most holders listed in one `MaybeTheyHaveSome` (a game lobby may have many servers).
pub const MAX_HOLDERS_LISTED: usize = 64;

/// Why [`Engine::announce`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceError {
    /// The note is longer than 256 bytes.
    NoteTooLong,
}

impl std::fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnnounceError::NoteTooLong => write!(f, "the note is longer than {MAX_NOTE} bytes"),
        }
    }
}

impl std::error::Error for AnnounceError {}

impl Engine {
    /// Announces that we hold `id` (content, or a topic key) with `note`: finds the k nodes
    /// closest to it and sends each `IHaveSome`, and repeats that every `reannounce` until
    /// [`Engine::stop_announcing`].
    pub fn announce(
        &mut self,
        now: Time,
        id: NodeId,
        note: &str,
    ) -> Result<LookupId, AnnounceError> {
        if note.len() > MAX_NOTE {
            return Err(AnnounceError::NoteTooLong);
        }
        self.announcing
            .insert(id, (note.to_owned(), now + self.cfg.reannounce));
        let l = self.start(now, id, LookupKind::Announce);
        self.drive(now);
        Ok(l)
    }

    /// Stops repeating the announcement of `id` (records elsewhere expire on their own).
    pub fn stop_announcing(&mut self, id: &NodeId) {
        self.announcing.remove(id);
    }

    /// Ids we announce, with their notes.
    pub fn announced(&self) -> impl Iterator<Item = (&NodeId, &str)> {
        self.announcing
            .iter()
            .map(|(id, (note, _))| (id, note.as_str()))
    }

    /// Starts a lookup that collects the recorded holders of `id`; the result arrives as
    /// [`super::Event::HoldersFound`].
    pub fn find_holders(&mut self, now: Time, id: NodeId) -> LookupId {
        let l = self.start(now, id, LookupKind::Find);
        self.drive(now);
        l
    }

    /// Records held for other announcers.
    pub fn records_held(&self) -> usize {
        self.records.len()
    }

    /// Re-announces what is due (from the maintenance tick).
    pub(super) fn reannounce_due(&mut self, now: Time) {
        self.records.expire(now);
        let due: Vec<NodeId> = self
            .announcing
            .iter()
            .filter(|(_, (_, next))| *next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(entry) = self.announcing.get_mut(&id) {
                entry.1 = now + self.cfg.reannounce;
            }
            self.start(now, id, LookupKind::Announce);
        }
    }

    /// After an announce lookup: `IHaveSome` to each of the closest nodes that answered.
    pub(super) fn send_announcements(&mut self, now: Time, result: &LookupResult) {
        for f in &result.closest {
            self.send_announcement(now, f.addr, result.target);
        }
    }

    /// `IHaveSome` for `id` to `addr`, if `id` is still announced.
    pub(super) fn send_announcement(&mut self, now: Time, addr: SocketAddr, id: NodeId) {
        let Some((note, _)) = self.announcing.get(&id) else {
            return;
        };
        let msg = Message::IHaveSome {
            id,
            note: note.clone(),
        };
        self.send_request(now, addr, Purpose::Announce(id), &[msg]);
    }

    /// Handles an `IHaveSome` from `src`: recorded only if `src` proved its address with our
    /// cookie, and only for `src` itself.
    pub(super) fn take_announcement(
        &mut self,
        now: Time,
        src: SocketAddr,
        check: Option<CookieCheck>,
        id: NodeId,
        note: &str,
    ) {
        if !matches!(check, Some(CookieCheck::Current | CookieCheck::Previous)) {
            self.stats.announcements_unverified += 1;
            return;
        }
        // The cookie covers every port of an IP: port 0 would pass it, and be listed to
        // others as a holder nobody can reach.
        if !crate::addr::is_routable_peer(src) {
            self.stats.announcements_refused += 1;
            return;
        }
        match self.records.announce(id, src, note, now) {
            Ok(()) => self.stats.announcements_stored += 1,
            Err(Refused::IpQuota) | Err(Refused::NoteTooLong) => {
                self.stats.announcements_refused += 1
            }
        }
    }

    /// What to list in a `MaybeTheyHaveSome` for `id`: the live holders (with notes), then
    /// the contacts closest to `id`, the asker left out.
    pub(super) fn holders_then_closest(
        &self,
        id: &NodeId,
        asker: SocketAddr,
        now: Time,
    ) -> (Vec<SocketAddr>, usize, Vec<String>) {
        let mut peers = Vec::new();
        let mut notes = Vec::new();
        for r in self.records.holders(id, now) {
            if r.addr != asker && peers.len() < MAX_HOLDERS_LISTED {
                peers.push(r.addr);
                notes.push(r.note.clone());
            }
        }
        let holders = peers.len();
        for c in self.table.closest(id, MAX_PEERS + holders + 1) {
            if peers.len() >= holders + MAX_PEERS {
                break;
            }
            if c.addr() != asker && !peers[..holders].contains(&c.addr()) {
                peers.push(c.addr());
            }
        }
        (peers, holders, notes)
    }
}
