//! The engine's random source: ChaCha8, seeded, cryptographically strong (nonces that peers
//! see must not reveal the cookie secret) and clonable (the simulator copies whole networks).

use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use std::ops::{Deref, DerefMut};

/// A seeded ChaCha8 generator that can be cloned: the clone continues the same stream.
#[derive(Debug)]
pub struct NodeRng(ChaCha8Rng);

impl NodeRng {
    /// A generator from a 64-bit seed (simulations, tests).
    pub fn from_u64(seed: u64) -> NodeRng {
        NodeRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A generator from a full 256-bit seed (real nodes: from the OS).
    pub fn from_seed(seed: [u8; 32]) -> NodeRng {
        NodeRng(ChaCha8Rng::from_seed(seed))
    }
}

impl Clone for NodeRng {
    fn clone(&self) -> NodeRng {
        let mut r = ChaCha8Rng::from_seed(self.0.get_seed());
        r.set_stream(self.0.get_stream());
        r.set_word_pos(self.0.get_word_pos());
        NodeRng(r)
    }
}

impl Deref for NodeRng {
    type Target = ChaCha8Rng;
    fn deref(&self) -> &ChaCha8Rng {
        &self.0
    }
}

impl DerefMut for NodeRng {
    fn deref_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn clone_continues_the_same_stream() {
        let mut a = NodeRng::from_u64(5);
        let _: [u8; 13] = a.random();
        let mut b = a.clone();
        for _ in 0..100 {
            assert_eq!(a.random::<u64>(), b.random::<u64>());
        }
    }
}
