//! Announcement records: who said they hold an id (content, or a topic such as a game's
//! lobby), with an optional short note. Only the announcer's own verified address is
//! recorded; records expire; storage is bounded per IP, per id and in total, and the oldest
//! record goes first when a bound is reached.

use crate::id::NodeId;
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest note an announcement may carry, in bytes of UTF-8.
pub const MAX_NOTE: usize = 256;

/// Record-store limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// How long a record lives after its last announcement.
    pub ttl: Duration,
    /// Most records from one IP (all ports, all ids).
    pub per_ip: usize,
    /// Most announcers kept for one id.
    pub per_id: usize,
    /// Most records in total.
    pub total: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            ttl: Duration::from_secs(30 * 60),
            per_ip: 64,
            per_id: 256,
            total: 20_000,
        }
    }
}

/// One announcer of an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The announcer's address, as it reached us.
    pub addr: SocketAddr,
    /// Its note (at most [`MAX_NOTE`] bytes).
    pub note: String,
    /// When it last announced.
    pub announced: Time,
}

/// Why an announcement was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The note is longer than [`MAX_NOTE`] bytes.
    NoteTooLong,
    /// The announcer's IP already holds its quota of records.
    IpQuota,
}

/// The records a node holds for others.
#[derive(Debug, Clone, Default)]
pub struct RecordStore {
    cfg: RecordConfig,
    by_id: BTreeMap<NodeId, Vec<Record>>,
    /// (announced, id, addr) of every record, oldest first.
    by_age: BTreeSet<(Time, NodeId, SocketAddr)>,
    per_ip: HashMap<IpAddr, usize>,
    len: usize,
}

impl RecordStore {
    /// An empty store.
    pub fn new(cfg: RecordConfig) -> RecordStore {
        RecordStore {
            cfg,
            ..RecordStore::default()
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The live announcers of `id`, most recent first.
    pub fn holders(&self, id: &NodeId, now: Time) -> Vec<&Record> {
        let mut v: Vec<&Record> = self
            .by_id
            .get(id)
            .map(|list| {
                list.iter()
                    .filter(|r| now.since(r.announced) < self.cfg.ttl)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| b.announced.cmp(&a.announced).then(a.addr.cmp(&b.addr)));
        v
    }

    /// Stores or refreshes `addr`'s announcement of `id`.
    pub fn announce(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        note: &str,
        now: Time,
    ) -> Result<(), Refused> {
        if note.len() > MAX_NOTE {
            return Err(Refused::NoteTooLong);
        }
        self.expire(now);
        if let Some(r) = self
            .by_id
            .get_mut(&id)
            .and_then(|l| l.iter_mut().find(|r| r.addr == addr))
        {
            self.by_age.remove(&(r.announced, id, addr));
            r.announced = now;
            r.note = note.to_owned();
            self.by_age.insert((now, id, addr));
            return Ok(());
        }
        if self.per_ip.get(&addr.ip()).copied().unwrap_or(0) >= self.cfg.per_ip {
            return Err(Refused::IpQuota);
        }
        if self.by_id.get(&id).map_or(0, |l| l.len()) >= self.cfg.per_id {
            // Drop this id's oldest announcer.
            let oldest = self.by_id.get(&id).and_then(|l| {
                l.iter()
                    .min_by_key(|r| (r.announced, r.addr))
                    .map(|r| (r.announced, r.addr))
            });
            if let Some((t, a)) = oldest {
                self.remove(t, id, a);
            }
        }
        while self.len >= self.cfg.total {
            match self.by_age.first().copied() {
                Some((t, i, a)) => self.remove(t, i, a),
                None => break,
            }
        }
        self.by_id.entry(id).or_default().push(Record {
            addr,
            note: note.to_owned(),
            announced: now,
        });
        self.by_age.insert((now, id, addr));
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
        self.len += 1;
        Ok(())
    }

    fn remove(&mut self, announced: Time, id: NodeId, addr: SocketAddr) {
        self.by_age.remove(&(announced, id, addr));
        if let Some(list) = self.by_id.get_mut(&id) {
            if let Some(p) = list.iter().position(|r| r.addr == addr) {
                list.swap_remove(p);
                self.len -= 1;
                if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_ip.remove(&addr.ip());
                    }
                }
            }
            if list.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }

    /// Drops every record older than the TTL.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(t, id, addr)) = self.by_age.first() {
            if now.since(t) < self.cfg.ttl {
                break;
            }
            self.remove(t, id, addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, i, 1], port))
    }

    #[test]
    fn announce_refresh_expire() {
        let mut s = RecordStore::new(RecordConfig {
            ttl: Duration::from_secs(10),
            ..RecordConfig::default()
        });
        let id = NodeId::of_topic("game");
        s.announce(id, a(1, 1), "players 4/10", Time::ZERO).unwrap();
        s.announce(id, a(2, 1), "", Time::from_millis(1000))
            .unwrap();
        assert_eq!(s.holders(&id, Time::from_millis(2000)).len(), 2);
        // a(1) refreshes with a new note; a(2) does not.
        s.announce(id, a(1, 1), "players 5/10", Time::from_millis(9000))
            .unwrap();
        let h = s.holders(&id, Time::from_millis(10_500));
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].note, "players 5/10");
        let h = s.holders(&id, Time::from_millis(11_500));
        assert_eq!(h.len(), 1, "a(2) expired");
        s.expire(Time::from_millis(30_000));
        assert!(s.is_empty());
        assert_eq!(
            s.announce(id, a(3, 1), &"x".repeat(MAX_NOTE + 1), Time::ZERO),
            Err(Refused::NoteTooLong)
        );
    }

    #[test]
    fn quotas_and_oldest_first() {
        let mut s = RecordStore::new(RecordConfig {
            ttl: Duration::from_secs(1000),
            per_ip: 3,
            per_id: 4,
            total: 10,
        });
        let t = |ms| Time::from_millis(ms);
        for n in 0..3u16 {
            s.announce(
                NodeId::hash(&n.to_le_bytes()),
                a(1, 1 + n),
                "",
                t(u64::from(n)),
            )
            .unwrap();
        }
        assert_eq!(
            s.announce(NodeId::hash(b"more"), a(1, 9), "", t(5)),
            Err(Refused::IpQuota)
        );
        // Per id: the fifth announcer pushes out the oldest.
        let id = NodeId::hash(b"busy");
        for i in 0..5u8 {
            s.announce(id, a(10 + i, 1), "", t(100 + u64::from(i)))
                .unwrap();
        }
        let addrs: Vec<SocketAddr> = s.holders(&id, t(200)).iter().map(|r| r.addr).collect();
        assert_eq!(addrs.len(), 4);
        assert!(!addrs.contains(&a(10, 1)));
        // In total: at 10 records the oldest in the whole store goes first.
        for i in 0..5u8 {
            s.announce(NodeId::hash(&[i]), a(50 + i, 1), "", t(300 + u64::from(i)))
                .unwrap();
        }
        assert_eq!(s.len(), 10);
        assert!(s
            .holders(&NodeId::hash(&0u16.to_le_bytes()), t(400))
            .is_empty());
    }
}
