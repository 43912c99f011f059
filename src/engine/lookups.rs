//! Running lookups inside the engine: starting them with their seeds, sending the queries
//! each may send, and acting on finished ones (events, joining refreshes, announcements).

use super::requests::Purpose;
use super::{timeout_for, Engine, Event, Holder, LookupId, LookupKind, Task};
use crate::id::NodeId;
use crate::lookup::Lookup;
use crate::time::Time;
use crate::wire::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;

impl Engine {
    pub(super) fn start(&mut self, now: Time, target: NodeId, kind: LookupKind) -> LookupId {
        let k = self.cfg.lookup.k;
        let mut seeds = Vec::new();
        self.table.closest_addrs(&target, k, None, &mut seeds);
        if seeds.len() < k {
            seeds.extend(self.bootstrap.iter().chain(self.saved.iter()).copied());
        }
        seeds.retain(|a| !self.is_self(*a));
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.stats.lookups_started += 1;
        let lookup = Lookup::new(target, self.cfg.lookup.clone(), now, seeds);
        self.lookups.insert(
            id,
            Box::new(Task {
                lookup,
                kind,
                holders: BTreeMap::new(),
            }),
        );
        self.dirty.insert(id);
        id
    }

    /// Steps every running lookup (after a timeout) and then [`Engine::drive`].
    pub(super) fn drive_all(&mut self, now: Time) {
        self.dirty.extend(self.lookups.keys().copied());
        self.drive(now);
    }

    /// Sends every query the lookups touched since the last call may send now, finishes
    /// lookups that are done, and pings waiting candidates.
    pub(super) fn drive(&mut self, now: Time) {
        let ids: Vec<LookupId> = std::mem::take(&mut self.dirty).into_iter().collect();
        for id in ids {
            while let Some(task) = self.lookups.get_mut(&id) {
                let (table, rtt_all, cfg) = (&self.table, self.rtt_all, &self.cfg);
                let Some(addr) = task
                    .lookup
                    .poll(now, |a| timeout_for(table, rtt_all, cfg, a))
                else {
                    break;
                };
                if self.peers.presumed_gone(&addr, now) {
                    // Its requests keep expiring (a node that left, still listed by others):
                    // give it up at once instead of waiting out its timeouts again.
                    task.lookup.on_failure(addr);
                    self.stats.lookup_skipped_silent += 1;
                    continue;
                }
                let target = task.lookup.target();
                // (Not `self.peer`: `task` borrows the lookups.)
                let telekad = super::peers::peer_in(&self.table, &self.peers, &addr)
                    .is_some_and(|p| p.telekad());
                let fetch = task.kind == LookupKind::Fetch;
                let mut body = vec![match task.kind {
                    LookupKind::Find | LookupKind::Fetch => Message::WhoHasSome { id: target },
                    _ => Message::WhereAreThey { target },
                }];
                if fetch {
                    // A holder among the nodes asked answers with the first block.
                    body.push(Message::PleaseSendContent {
                        id: target,
                        offset: 0,
                        length: crate::wire::BLOCK_SIZE as u64,
                    });
                }
                if !telekad {
                    // Old cjp2p nodes ignore WhereAreThey; their Peers still help.
                    body.push(Message::PleaseSendPeers);
                }
                if fetch {
                    self.probed(target, addr);
                }
                if !self.send_request(now, addr, Purpose::Lookup(id, target), &body) {
                    self.dirty.insert(id);
                    if let Some(task) = self.lookups.get_mut(&id) {
                        task.lookup.on_failure(addr);
                    }
                }
            }
            if self
                .lookups
                .get(&id)
                .is_some_and(|t| t.lookup.is_finished())
            {
                if let Some(task) = self.lookups.remove(&id) {
                    self.finish(now, id, *task);
                }
            }
        }
        self.flush_candidates(now);
        self.drive_fetches(now);
    }

    pub(super) fn finish(&mut self, now: Time, id: LookupId, task: Task) {
        let result = task.lookup.result();
        self.stats.lookups_finished += 1;
        if result.timed_out {
            self.stats.lookups_timed_out += 1;
        }
        if let Some(idx) = self.id().bucket_index(&result.target) {
            self.table.touch(idx, now);
        }
        match task.kind {
            LookupKind::User => self.emit(Event::LookupFinished { id, result }),
            LookupKind::Bootstrap => self.refresh_all(now),
            LookupKind::Refresh => self.next_refresh(now),
            LookupKind::Announce => self.send_announcements(now, &result),
            LookupKind::Find => {
                let holders = task
                    .holders
                    .into_iter()
                    .map(|(addr, note)| Holder { addr, note })
                    .collect();
                self.emit(Event::HoldersFound {
                    id,
                    holders,
                    result,
                });
            }
            LookupKind::Fetch => {
                let holders: Vec<SocketAddr> = task.holders.into_keys().collect();
                self.walk_finished(now, result.target, &holders);
            }
        }
    }
}
