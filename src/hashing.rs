//! Hash maps and sets for keys that come off the network (addresses, nonces): foldhash, a
//! fast hasher keyed at random per map, instead of the standard library's SipHash, which
//! took about a tenth of a simulated node's CPU.

/// A `HashMap` with a fast, randomly keyed hasher.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with a fast, randomly keyed hasher.
pub type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
