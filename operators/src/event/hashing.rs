//! Stable 64-bit hashes of user and event ids.
//!
//! Routing (user → key group → worker) and dedup memory must agree across worker threads,
//! processes and restarts, so the hash is fixed here (FNV-1a folded through a SplitMix64
//! finaliser for well-mixed low bits) rather than `std`'s randomly keyed `RandomState`.

/// Number of key groups that users are sharded into; workers own whole key groups so that
/// state can later be redistributed when the worker count changes.
pub const KEY_GROUPS: u64 = 256;

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(hash)
}

/// SplitMix64's finaliser: spreads every input bit over every output bit.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key of a user's state and of its routing.
pub fn user_key(user_id: &str) -> u64 {
    fnv1a(0, user_id.as_bytes())
}

/// Identity of an event id in a user's dedup memory (independent of [`user_key`]).
pub fn event_id_hash(event_id: &str) -> u64 {
    fnv1a(0x5bd1_e995, event_id.as_bytes())
}

/// Identity of an attribute value (SPEC §1), never 0 (which marks an absent value).
pub fn attribute_hash(text: &str) -> u64 {
    fnv1a(0x2545_f491, text.as_bytes()) | 1
}

/// [`attribute_hash`] of a number's shortest decimal text (`1234`, not `1234.0`), without
/// building the text on the heap.
pub fn number_attribute_hash(value: f64) -> u64 {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        attribute_hash(itoa::Buffer::new().format(value as i64))
    } else {
        attribute_hash(ryu::Buffer::new().format_finite(value))
    }
}

/// The key of an entity whose key fields have these attribute hashes (0 if one is absent:
/// the event has no key value, SPEC §2b).
pub fn entity_key(hashes: impl IntoIterator<Item = u64>) -> u64 {
    let mut key = 0x9e37_79b9_7f4a_7c15;
    for hash in hashes {
        if hash == 0 {
            return 0;
        }
        key = mix64(key ^ hash);
    }
    key | 1
}

/// A `Hasher` for keys that already are well-mixed 64-bit hashes. It only rotates them: a
/// worker's user keys share their low bits (key groups are dealt out by `key mod 256`), and hash
/// tables index buckets by the low bits.
#[derive(Default, Clone, Copy)]
pub struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value.rotate_left(32);
    }
}

/// The worker that owns a user: key group `key mod KEY_GROUPS`, groups dealt round-robin.
pub fn owner_worker(key: u64, workers: usize) -> usize {
    ((key % KEY_GROUPS) as usize) % workers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_distinct() {
        assert_eq!(user_key("user_1"), user_key("user_1"));
        assert_ne!(user_key("user_1"), user_key("user_2"));
        assert_ne!(user_key("evt-1"), event_id_hash("evt-1"));
    }

    #[test]
    fn users_spread_over_workers() {
        let mut per_worker = [0usize; 4];
        for i in 0..10_000 {
            per_worker[owner_worker(user_key(&format!("user_{i}")), 4)] += 1;
        }
        assert!(per_worker.iter().all(|&n| (2_000..3_000).contains(&n)), "{per_worker:?}");
    }
}
