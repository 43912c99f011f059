//! Identity and distance: 256-bit IDs (SHA-256), XOR distance, and k-bucket indices.

use rand::{Rng, RngExt};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;

/// A point in telekad's 256-bit key space: a node ID, a content id or a topic key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; 32]);

/// Lowercase hex of `bytes`, by table (the `hex` crate's iterator-based encoder showed up
/// in profiles of the answer path).
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut s);
    // Only ASCII digits and letters were written.
    String::from_utf8(s).unwrap_or_default()
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the lowercase hex of `bytes` into the first `2 * bytes.len()` bytes of `out`.
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 15)];
    }
}

/// Reads hex digits (either case) from `text` into `out`, two digits a byte; false (with
/// `out` partly written) if a character is not a hex digit.
pub(crate) fn unhex_into(text: &[u8], out: &mut [u8]) -> bool {
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (hi, lo) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        if (hi | lo) > 0x0f {
            return false;
        }
        *o = hi << 4 | lo;
    }
    true
}

/// `HEX_VALUE[byte]`: the value of a hex digit (either case), or [`NOT_HEX`]. Every ID in
/// every request is read through it (the `hex` crate's decoder showed up in profiles).
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
/// Marks a byte that is not a hex digit: digit values fit in four bits, so `hi | lo` is
/// above 15 exactly when one of the two is not a digit.
const NOT_HEX: u8 = 0xff;

/// The XOR of two IDs, compared as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    /// The four 64-bit words, most significant first (the same order as the bytes).
    fn words(&self) -> [u64; 4] {
        let w = |i| word(&self.0, i);
        [w(0), w(1), w(2), w(3)]
    }

    /// The first 64 bits, as a number (see [`NodeId::distance_prefix`]).
    pub fn prefix(&self) -> u64 {
        word(&self.0, 0)
    }
}

/// The `i`th 64-bit big-endian word of a 256-bit value.
fn word(bytes: &[u8; 32], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_be_bytes(b)
}

impl Ord for Distance {
    /// Word-wise: the same order as comparing the bytes, without a `memcmp` call (sorting
    /// contacts by distance is the hot path of every answer).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a valid 64-hex-digit ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The string is not exactly 64 characters long.
    Length(usize),
    /// The string contains a character that is not a hex digit.
    NotHex,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length(n) => write!(f, "expected 64 hex digits, got {n} characters"),
            IdError::NotHex => write!(f, "expected 64 hex digits, found a non-hex character"),
        }
    }
}

impl std::error::Error for IdError {}

impl NodeId {
    /// SHA-256 of arbitrary bytes (content ids, topic keys).
    pub fn hash(data: &[u8]) -> NodeId {
        NodeId(Sha256::digest(data).into())
    }

    /// The ID of a node: SHA-256 of its address written as `ip:port` (`[ip]:port` for IPv6).
    ///
    /// Results are memoised in a small per-thread direct-mapped cache: peer lists repeat the
    /// same addresses constantly, and a cache miss costs only the hash it saves.
    pub fn of_addr(addr: SocketAddr) -> NodeId {
        let addr = crate::addr::canonical(addr);
        let slot = cache_slot(addr);
        if let Some(id) = ID_CACHE.with(|c| match c.borrow().get(slot) {
            Some(Some((a, id))) if *a == addr => Some(*id),
            _ => None,
        }) {
            return id;
        }
        let mut text = Vec::with_capacity(crate::addr::MAX_ADDR_TEXT);
        crate::addr::write_addr(&mut text, addr);
        let id = NodeId::hash(&text);
        ID_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize(ID_CACHE_SLOTS, None);
            }
            c[slot] = Some((addr, id));
        });
        id
    }

    /// The key of a topic name (a game's channel, a chat room): SHA-256 of its UTF-8 bytes.
    pub fn of_topic(name: &str) -> NodeId {
        NodeId::hash(name.as_bytes())
    }

    /// The key of a topic as users give it: 64 hex digits are taken as the key itself,
    /// anything else is a name whose SHA-256 is the key ([`NodeId::of_topic`]).
    pub fn topic_key(topic: &str) -> NodeId {
        NodeId::from_hex(topic).unwrap_or_else(|_| NodeId::of_topic(topic))
    }

    /// Parses a lookup target as users give it: 64 hex digits, or a node's `IP:PORT`, whose
    /// ID is computed (and the address returned beside it). The error says what was expected.
    pub fn parse_target(s: &str) -> Result<(NodeId, Option<SocketAddr>), String> {
        if let Ok(id) = NodeId::from_hex(s) {
            return Ok((id, None));
        }
        match s.parse::<SocketAddr>() {
            Ok(a) => Ok((NodeId::of_addr(a), Some(a))),
            Err(_) => Err(format!(
                "'{s}' is neither a 64-hex-digit ID nor an IP:PORT address; \
                 give e.g. 3f5a...(64 hex digits) or 192.0.2.1:24254"
            )),
        }
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<NodeId, IdError> {
        if s.len() != 64 {
            return Err(IdError::Length(s.len()));
        }
        let mut out = [0u8; 32];
        if !unhex_into(s.as_bytes(), &mut out) {
            return Err(IdError::NotHex);
        }
        Ok(NodeId(out))
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }

    /// Appends [`NodeId::to_hex`] to `out` (no intermediate string).
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        let mut digits = [0u8; 64];
        hex_into(&self.0, &mut digits);
        out.extend_from_slice(&digits);
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// Its first 64 bits, big-endian: the XOR of two prefixes is the prefix of the
    /// distance (see [`NodeId::distance_prefix`]).
    pub fn prefix(&self) -> u64 {
        word(&self.0, 0)
    }

    /// The first 64 bits of [`NodeId::distance`], as a number: ordering by it orders by
    /// distance except between distances that share those 64 bits.
    pub fn distance_prefix(&self, other: &NodeId) -> u64 {
        self.prefix() ^ other.prefix()
    }

    /// The k-bucket `other` falls into as seen from `self`: the length of the common prefix
    /// (0..=255), or `None` when the IDs are equal.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        let lz = self.distance(other).leading_zeros();
        (lz < 256).then_some(lz)
    }

    /// A uniformly random ID whose common prefix with `self` is exactly `index` bits long.
    pub fn random_in_bucket<R: Rng + ?Sized>(&self, index: usize, rng: &mut R) -> NodeId {
        let index = index.min(255);
        let mut out: [u8; 32] = rng.random();
        for bit in 0..=index {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let own = self.0[byte] & mask;
            let want = if bit == index { own ^ mask } else { own };
            out[byte] = (out[byte] & !mask) | want;
        }
        NodeId(out)
    }
}

/// Bits of a slot index in the per-thread address-to-ID cache: 4,096 slots of 64 bytes.
const ID_CACHE_BITS: u32 = 12;
/// Slots of the per-thread address-to-ID cache.
const ID_CACHE_SLOTS: usize = 1 << ID_CACHE_BITS;

thread_local! {
    static ID_CACHE: std::cell::RefCell<Vec<Option<(SocketAddr, NodeId)>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn cache_slot(addr: SocketAddr) -> usize {
    let ip: u128 = match addr.ip() {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let x = (ip as u64) ^ ((ip >> 64) as u64) ^ (u64::from(addr.port()) << 32);
    // Fibonacci hashing: multiply and keep the top bits.
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ID_CACHE_BITS)) as usize
}

impl Distance {
    /// Number of leading zero bits (256 for the zero distance).
    pub fn leading_zeros(&self) -> usize {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros() as usize;
            }
        }
        n
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }

    /// The distance as a float, log2 scale (0 for equal IDs): handy for human output.
    pub fn log2(&self) -> u32 {
        256 - self.leading_zeros() as u32
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}..)", &self.to_hex()[..12])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        NodeId::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::ChaCha8Rng, SeedableRng};

    #[test]
    fn distance_prefix_orders_as_distance_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let random = |rng: &mut ChaCha8Rng| {
            let mut b = [0u8; 32];
            rand::RngExt::fill(rng, &mut b[..]);
            NodeId(b)
        };
        for _ in 0..2_000 {
            let (t, a) = (random(&mut rng), random(&mut rng));
            // Half the time b shares a's first 64 bits (the tie the prefix cannot order).
            let mut b = random(&mut rng);
            if rand::RngExt::random::<bool>(&mut rng) {
                b.0[..8].copy_from_slice(&a.0[..8]);
            }
            let (pa, pb) = (a.distance_prefix(&t), b.distance_prefix(&t));
            let (da, db) = (a.distance(&t), b.distance(&t));
            if pa != pb {
                assert_eq!(pa.cmp(&pb), da.cmp(&db));
            } else {
                assert_eq!(a.0[..8], b.0[..8]);
            }
        }
    }

    #[test]
    fn random_in_bucket_lands_in_bucket() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let own = NodeId(rng.random());
            for idx in [0usize, 1, 7, 8, 9, 100, 254, 255] {
                let r = own.random_in_bucket(idx, &mut rng);
                assert_eq!(own.bucket_index(&r), Some(idx));
            }
        }
    }

    #[test]
    fn hex_roundtrip_and_errors() {
        let id = NodeId::hash(b"x");
        assert_eq!(NodeId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(NodeId::from_hex(&id.to_hex().to_uppercase()), Ok(id));
        assert_eq!(NodeId::from_hex("ab"), Err(IdError::Length(2)));
        assert_eq!(NodeId::from_hex(&"zz".repeat(32)), Err(IdError::NotHex));
    }

    proptest::proptest! {
        /// IDs read from hex exactly as the `hex` crate reads them (either case; anything
        /// else refused), for strings of 64 characters drawn mostly from the hex digits.
        #[test]
        fn from_hex_matches_the_hex_crate(s in "[0-9a-fA-F]{60,64}[0-9a-gA-G/: \u{e9}]{0,4}") {
            let mut want = [0u8; 32];
            let reference = (s.len() == 64)
                .then(|| hex::decode_to_slice(&s, &mut want).ok().map(|_| NodeId(want)))
                .flatten();
            proptest::prop_assert_eq!(NodeId::from_hex(&s).ok(), reference);
        }
    }
}
