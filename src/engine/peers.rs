//! What the engine remembers per remote address: its cookie, and whether it echoes ours.

use crate::time::Time;
use crate::wire::Echo;
use std::collections::HashMap;
use std::net::SocketAddr;

/// A peer's cookie as it must be echoed. Nearly all are `{"cookie":"<short text>"}`
/// (telekad: 16 hex digits, the reference node: 8), kept inline without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredCookie {
    /// The text of a `{"cookie":"..."}` body, up to 22 plain ASCII characters.
    Inline { len: u8, text: [u8; 22] },
    /// Any other body, verbatim.
    Raw(Box<str>),
}

impl StoredCookie {
    pub fn from_echo(e: &Echo) -> StoredCookie {
        let json = e.as_json();
        if let Some(inner) = json
            .strip_prefix("{\"cookie\":\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            let plain = inner
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if plain && inner.len() <= 22 {
                let mut text = [0u8; 22];
                text[..inner.len()].copy_from_slice(inner.as_bytes());
                return StoredCookie::Inline {
                    len: inner.len() as u8,
                    text,
                };
            }
        }
        StoredCookie::Raw(json.into())
    }

    pub fn to_echo(&self) -> Echo {
        match self {
            StoredCookie::Inline { len, text } => {
                Echo::cookie(std::str::from_utf8(&text[..usize::from(*len)]).unwrap_or_default())
            }
            StoredCookie::Raw(raw) => Echo::raw(raw),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerInfo {
    /// The cookie this peer asked us to return (`PleaseAlwaysReturnThisMessage`).
    pub their_cookie: Option<StoredCookie>,
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

    /// Gives back memory a burst left reserved.
    pub fn shrink(&mut self) {
        super::requests::shrink_map(&mut self.map);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_exactly() {
        for body in [
            r#"{"cookie":"0123456789abcdef"}"#,
            r#"{"cookie":"b941170a"}"#,
            r#"{"cookie":"a-much-longer-cookie-than-fits-inline"}"#,
            r#"["any",{"valid":"JSON"}]"#,
            r#"{"cookie":"with\"quote"}"#,
            r#"{"cookie": "spaced"}"#,
        ] {
            let e = Echo::raw(body);
            assert_eq!(StoredCookie::from_echo(&e).to_echo(), e, "{body}");
        }
        assert!(matches!(
            StoredCookie::from_echo(&Echo::cookie("b941170a")),
            StoredCookie::Inline { .. }
        ));
    }
}
