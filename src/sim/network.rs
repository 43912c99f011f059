//! The simulated network: per-link latency, jitter and loss, all drawn from one seeded RNG.

use crate::rng::NodeRng;
use rand::RngExt;
use std::time::Duration;

/// How long a datagram takes and whether it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way delay of a link.
    pub latency_min: Duration,
    /// Largest one-way delay of a link (each pair of nodes gets a fixed delay in between).
    pub latency_max: Duration,
    /// Extra random delay per datagram, uniform in `0..jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(150),
            jitter: Duration::from_millis(5),
            loss: 0.0,
        }
    }
}

impl NetConfig {
    /// The fixed one-way delay between nodes `a` and `b` (symmetric), from a hash of the pair.
    pub fn link_delay(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut x = (lo as u64) << 32 ^ hi as u64 ^ 0x9e37_79b9_7f4a_7c15;
        // splitmix64 finaliser
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let span = self
            .latency_max
            .saturating_sub(self.latency_min)
            .as_micros() as u64;
        self.latency_min + Duration::from_micros(if span == 0 { 0 } else { x % (span + 1) })
    }

    /// The delay of one datagram from `a` to `b`, or `None` if it is lost.
    pub fn sample(&self, rng: &mut NodeRng, a: usize, b: usize) -> Option<Duration> {
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            return None;
        }
        let jitter = self.jitter.as_micros() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            rng.random_range(0..jitter)
        };
        Some(self.link_delay(a, b) + Duration::from_micros(extra))
    }
}
