//! What the engine remembers per remote address: its cookie, and whether it echoes ours.

use crate::time::Time;
use crate::wire::Echo;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerInfo {
    /// The cookie this peer asked us to return (`PleaseAlwaysReturnThisMessage`).
    pub their_cookie: Option<Echo>,
    /// Whether its last packet carried our current cookie.
    pub echoes_ours: bool,
    /// Whether it showed telekad extensions (so it needs no `PleaseSendPeers` beside a
    /// `WhereAreThey`).
    pub telekad: bool,
    pub last_heard: Time,
}

/// A bounded map of remote addresses; the least recently heard are forgotten first.
#[derive(Debug, Clone)]
pub(crate) struct PeerBook {
    map: HashMap<SocketAddr, PeerInfo>,
    cap: usize,
}

impl PeerBook {
    pub fn new(cap: usize) -> PeerBook {
        PeerBook {
            map: HashMap::new(),
            cap: cap.max(16),
        }
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&PeerInfo> {
        self.map.get(addr)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for `addr`, created if needed, marked heard at `now`.
    pub fn heard(&mut self, addr: SocketAddr, now: Time) -> &mut PeerInfo {
        if self.map.len() >= self.cap && !self.map.contains_key(&addr) {
            self.prune();
        }
        let p = self.map.entry(addr).or_default();
        p.last_heard = now;
        p
    }

    /// Forgets the least recently heard eighth (ties broken by address, so the outcome does
    /// not depend on hash order).
    fn prune(&mut self) {
        let mut ages: Vec<(Time, SocketAddr)> =
            self.map.iter().map(|(a, p)| (p.last_heard, *a)).collect();
        let drop = (ages.len() / 8).max(1);
        ages.select_nth_unstable(drop - 1);
        for (_, a) in &ages[..drop] {
            self.map.remove(a);
        }
    }
}
