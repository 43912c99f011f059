//! Capacity of the collections a long-lived node keeps: lists grow by doubling up to their
//! bound and no further, and what a burst (the join, a flood of lookups) reserved is given
//! back once it is over. Vectors, queues and hash maps never shrink on their own; at 1,000
//! nodes in one process, slack left by the join was a fifth of each node's memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Makes room for one more element in a list that never holds more than `max`: the
/// allocation grows by doubling, but never past `max` (nor short of one more element).
pub(crate) fn make_room_for_one<T>(v: &mut Vec<T>, max: usize) {
    if v.len() == v.capacity() {
        let want = (v.capacity().max(2) * 2).min(max.max(v.len() + 1));
        v.reserve_exact(want - v.len());
    }
}

/// Whether a collection of `len` with room for `capacity` holds far more room than it uses
/// (four times its length, plus a little for the smallest).
fn slack(capacity: usize, len: usize) -> bool {
    capacity > 4 * len + 4
}

/// Shrinks a vector with far more room than it uses to twice its length.
pub(crate) fn shrink_vec<T>(v: &mut Vec<T>) {
    if slack(v.capacity(), v.len()) {
        v.shrink_to(2 * v.len());
    }
}

/// Shrinks a queue with far more room than it uses to twice its length; an empty queue
/// lets go of its allocation.
pub(crate) fn shrink_deque<T>(q: &mut VecDeque<T>) {
    if q.is_empty() {
        *q = VecDeque::new();
    } else if slack(q.capacity(), q.len()) {
        q.shrink_to(2 * q.len());
    }
}

/// Room an emptied queue keeps for the next burst (drained on every wake, a node's outgoing
/// queue holds a handful of datagrams, a busy one's a batch).
const KEPT_ROOM: usize = 8;

/// Lets an emptied queue go of its allocation if a burst grew it past [`KEPT_ROOM`]: queues
/// drained on every wake then hold no memory between bursts, at the cost of an allocation
/// or two per burst past that size.
pub(crate) fn let_go_of_burst<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > KEPT_ROOM {
        *q = VecDeque::new();
    }
}

/// Shrinks a map with far more room than it uses to twice its length.
pub(crate) fn shrink_map<K: Hash + Eq, V, S: BuildHasher>(m: &mut HashMap<K, V, S>) {
    if slack(m.capacity(), m.len()) {
        m.shrink_to(2 * m.len());
    }
}

/// Shrinks a set with far more room than it uses to twice its length.
pub(crate) fn shrink_set<T: Hash + Eq, S: BuildHasher>(m: &mut HashSet<T, S>) {
    if slack(m.capacity(), m.len()) {
        m.shrink_to(2 * m.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_stops_at_the_bound_and_shrinking_gives_back_a_burst() {
        let mut v: Vec<u32> = Vec::new();
        for i in 0..20 {
            make_room_for_one(&mut v, 20);
            v.push(i);
            assert!(v.capacity() <= 20, "{} at {}", v.capacity(), v.len());
        }
        assert_eq!(v.capacity(), 20);
        v.truncate(2);
        shrink_vec(&mut v);
        assert!(v.capacity() <= 4, "{}", v.capacity());
        let mut q: VecDeque<u32> = (0..100).collect();
        q.clear();
        shrink_deque(&mut q);
        assert_eq!(q.capacity(), 0);
        let mut q: VecDeque<u32> = (0..100).collect();
        let_go_of_burst(&mut q);
        assert!(
            q.capacity() >= 100,
            "a queue still holding its burst keeps it"
        );
        q.clear();
        let_go_of_burst(&mut q);
        assert_eq!(q.capacity(), 0, "an emptied one lets go");
        let mut q: VecDeque<u32> = VecDeque::with_capacity(4);
        q.push_back(1);
        q.clear();
        let_go_of_burst(&mut q);
        assert!(q.capacity() >= 4, "a small one keeps its room");
        let mut m: HashMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 3);
        shrink_map(&mut m);
        assert!(m.capacity() <= 16, "{}", m.capacity());
        let mut s: HashSet<u32> = (0..1000).collect();
        s.clear();
        shrink_set(&mut s);
        assert!(s.capacity() <= 4, "{}", s.capacity());
    }
}
