//! Maps keyed by ids the scheduler hands out itself (request ids), hashed
//! with one multiplication instead of SipHash. The standard
//! hasher defends against keys an attacker chooses; these keys are
//! counters nobody outside chooses, and each request hashes them several
//! times on its way through the actor.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for id keys.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiplies each word into the state by an odd constant (2^64 divided by
/// the golden ratio), which carries a counter's low bits into the high
/// bits the table also reads.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_differ_in_their_high_bits() {
        let hash = |id: u64| {
            let mut hasher = IdHasher::default();
            hasher.write_u64(id);
            hasher.finish()
        };
        // The table picks a bucket from the low bits and tells slots apart
        // by the top seven: both must vary across consecutive ids.
        let tops: std::collections::BTreeSet<u64> = (1..=64).map(|id| hash(id) >> 57).collect();
        let lows: std::collections::BTreeSet<u64> = (1..=64).map(|id| hash(id) & 63).collect();
        assert!(tops.len() > 32, "top bits: {tops:?}");
        assert_eq!(lows.len(), 64);
    }
}
