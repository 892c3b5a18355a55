//! Window state: the keyed operator that applies each epoch's events to their users' state and
//! emits the point-in-time SPEC §2 window features of every scored event, and the storage of
//! that state — in memory (user states in slots, rings) and in checkpoints.
//!
//! Owns: `window` (the operator), `user` (one user's event-time state and window aggregates),
//! `entity` (one SPEC §2b entity's keyed state and features), `entity_window` (the entity
//! operators and the join that brings their features back to each event),
//! `slots`, `ring`, `prefetch`, and `checkpoint/` (the store, the barrier protocol, source
//! offsets).
//! May use: `batch`, `event` (user keys), `features`, `time`, `observe` (metrics).

pub mod checkpoint;
pub mod entity;
pub mod entity_window;
pub mod prefetch;
mod ring;
pub mod slots;
pub mod user;
pub mod window;
