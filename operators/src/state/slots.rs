//! Storage of one worker's user states, addressed by slot number.
//!
//! The window state first resolves every event of an epoch to its user's slot (one hash lookup
//! per event, in a loop of independent lookups whose cache misses overlap) and then applies the
//! events, prefetching the states a few slots ahead by address arithmetic alone. States live
//! inline in fixed-size chunks: no allocation per user, and growing never moves a state.

use crate::state::user::UserState;

/// States per chunk (~0.4 MB each).
const CHUNK: usize = 1024;

/// A slab of `Option<UserState>` slots with a free list.
#[derive(Default)]
pub struct UserSlots {
    chunks: Vec<Box<[Option<UserState>]>>,
    /// Slots handed out so far, whether in use or freed.
    used: usize,
    free: Vec<u32>,
}

impl UserSlots {
    /// Stores `state` in a free slot and returns the slot.
    pub fn insert(&mut self, state: Option<UserState>) -> u32 {
        if let Some(slot) = self.free.pop() {
            *self.get_mut(slot) = state;
            return slot;
        }
        if self.used == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        let slot = self.used as u32;
        self.used += 1;
        *self.get_mut(slot) = state;
        slot
    }

    /// The state in `slot`.
    pub fn get(&self, slot: u32) -> &Option<UserState> {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// The state in `slot`, for update.
    pub fn get_mut(&mut self, slot: u32) -> &mut Option<UserState> {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// Empties `slot` and makes it available to [`UserSlots::insert`].
    pub fn remove(&mut self, slot: u32) {
        *self.get_mut(slot) = None;
        self.free.push(slot);
    }

    /// Bytes of the chunks and the free list (the states' own heap buffers not included).
    pub fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Option<UserState>>() + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_reused() {
        let mut slots = UserSlots::default();
        let taken: Vec<u32> = (0..(CHUNK as u32 + 5)).map(|_| slots.insert(None)).collect();
        assert_eq!(taken, (0..(CHUNK as u32 + 5)).collect::<Vec<_>>());
        assert_eq!(slots.chunks.len(), 2);
        slots.remove(3);
        slots.remove(CHUNK as u32 + 1);
        let mut again = vec![slots.insert(None), slots.insert(None)];
        again.sort_unstable();
        assert_eq!(again, vec![3, CHUNK as u32 + 1]);
        assert_eq!(slots.insert(None), CHUNK as u32 + 5);
    }
}
