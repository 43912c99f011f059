//! Anti-spoofing cookies: stateless keyed hashes of a source IP, from a rotating secret.

use crate::time::Time;
use rand::{Rng, RngExt};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;

/// Hex digits in a telekad cookie (64 bits).
pub const COOKIE_HEX: usize = 16;

/// How a presented cookie compares with what we issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    /// Made with the current secret.
    Current,
    /// Made with the previous secret: still accepted, but the sender should get a fresh one.
    Previous,
    /// Not ours.
    Invalid,
}

/// Issues and checks cookies. A cookie covers every port of an IP, as in the reference node.
#[derive(Debug, Clone)]
pub struct CookieJar {
    current: [u8; 32],
    previous: [u8; 32],
    rotated_at: Time,
    period: Duration,
}

impl CookieJar {
    /// A jar with fresh random secrets that rotate every `period`.
    pub fn new<R: Rng + ?Sized>(rng: &mut R, now: Time, period: Duration) -> CookieJar {
        CookieJar {
            current: rng.random(),
            previous: rng.random(),
            rotated_at: now,
            period,
        }
    }

    fn make(secret: &[u8; 32], ip: IpAddr) -> String {
        let mut h = Sha256::new();
        h.update(secret);
        match crate::addr::canonical(std::net::SocketAddr::new(ip, 0)).ip() {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        let digest = h.finalize();
        crate::id::hex_lower(&digest[..COOKIE_HEX / 2])
    }

    /// The cookie for `ip` under the current secret.
    pub fn issue(&self, ip: IpAddr) -> String {
        Self::make(&self.current, ip)
    }

    /// Checks a cookie presented by `ip`.
    pub fn check(&self, ip: IpAddr, cookie: &str) -> CookieCheck {
        if cookie.len() != COOKIE_HEX {
            CookieCheck::Invalid
        } else if cookie == Self::make(&self.current, ip) {
            CookieCheck::Current
        } else if cookie == Self::make(&self.previous, ip) {
            CookieCheck::Previous
        } else {
            CookieCheck::Invalid
        }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Time {
        self.rotated_at + self.period
    }

    /// Rotates the secret if the period has passed; returns whether it did.
    pub fn maybe_rotate<R: Rng + ?Sized>(&mut self, now: Time, rng: &mut R) -> bool {
        if now < self.next_rotation() {
            return false;
        }
        self.previous = self.current;
        self.current = rng.random();
        self.rotated_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::ChaCha8Rng, SeedableRng};

    #[test]
    fn rotation_keeps_previous_valid_for_one_period() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let period = Duration::from_secs(60);
        let mut jar = CookieJar::new(&mut rng, Time::ZERO, period);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let c0 = jar.issue(ip);
        assert_eq!(c0.len(), COOKIE_HEX);
        assert_eq!(jar.check(ip, &c0), CookieCheck::Current);
        assert_eq!(jar.check(other, &c0), CookieCheck::Invalid);
        assert!(!jar.maybe_rotate(Time::from_millis(59_000), &mut rng));
        assert!(jar.maybe_rotate(Time::from_millis(60_000), &mut rng));
        assert_eq!(jar.check(ip, &c0), CookieCheck::Previous);
        let c1 = jar.issue(ip);
        assert_eq!(jar.check(ip, &c1), CookieCheck::Current);
        assert!(jar.maybe_rotate(Time::from_millis(120_000), &mut rng));
        assert_eq!(jar.check(ip, &c0), CookieCheck::Invalid);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(jar.check(mapped, &jar.issue(ip)), CookieCheck::Current);
    }
}
