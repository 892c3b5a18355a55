//! The keyed window-state operator: routes event batches to the worker owning their users,
//! applies each epoch's events in arrival order to the users' [`UserState`]s and emits the
//! point-in-time SPEC §2 features of every scored event (the "enrich" join happens here, at
//! the instant the event meets its user's history, which is what point-in-time means).
//!
//! Determinism: an epoch is processed only once the input frontier has passed it, and its
//! events are sorted by [`Origin`] (partition, position). Epochs are assigned by position at
//! the source, so every user sees its events in arrival order whatever the number of workers
//! or the way batches were cut.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::batch::{DeadLetter, EventBatch, Marker, Origin, ScoredBatch, ScoredRow, TextRef};
use crate::event::hashing::{PreHashed, KEY_GROUPS};
use crate::features::RETENTION_MS;
use crate::observe::metrics::Metrics;
use crate::state::checkpoint::protocol::WorkerCheckpoints;
use crate::state::checkpoint::store::{key_group, Part, PartHeader, RestoredState};
use crate::state::prefetch::prefetch;
use crate::state::slots::UserSlots;
use crate::state::user::{Observation, Outcome, StateRules, UserState};
use crate::time::rfc3339::DAY_MS;

/// How many events ahead the operator prefetches a user's state, and (closer, once the state
/// has arrived) the parts of its event buffer the event will touch.
const PREFETCH_STATE_AHEAD: usize = 16;
const PREFETCH_BUFFER_AHEAD: usize = 8;

/// Settings of the window state.
#[derive(Clone, Default)]
pub struct WindowConfig {
    pub rules: StateRules,
    /// Extra features carried per event (see `event::ExtraFeatures`).
    pub extra_count: usize,
    /// Attribute hashes carried per event (see `event::ExtraFeatures::attributes`).
    pub attr_count: usize,
    /// Where the operator reports its memory use at the end of the input.
    pub report: Option<Arc<Mutex<StateReport>>>,
    /// Where the operator reports its user count and evictions after every epoch.
    pub metrics: Option<Arc<Metrics>>,
    /// Where the operator writes its checkpoint parts and finds its restored state.
    pub checkpoints: Option<WorkerCheckpoints>,
}

/// Size of the keyed state, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateReport {
    pub users: u64,
    pub retained_events: u64,
    /// Heap bytes of the user states plus the hash map's own table.
    pub bytes: u64,
    /// Users dropped as idle (SPEC §2).
    pub evicted_users: u64,
}

/// Users' slots by key: a small table (16-byte entries), cache-friendly; the states themselves
/// are in [`UserSlots`].
type UserMap = HashMap<u64, u32, BuildHasherDefault<PreHashed>>;

/// All users owned by one worker.
pub struct KeyedState {
    cfg: WindowConfig,
    users: UserMap,
    slots: UserSlots,
    /// Newest timestamp seen per input partition; the watermark is their minimum.
    /// (partition, newest timestamp); a handful of partitions per worker, so a list.
    partition_newest: Vec<(u32, i64)>,
    last_sweep_watermark: i64,
    evicted_users: u64,
}

impl KeyedState {
    /// Empty state.
    pub fn new(cfg: WindowConfig) -> Self {
        KeyedState {
            cfg,
            users: UserMap::default(),
            slots: UserSlots::default(),
            partition_newest: Vec::new(),
            last_sweep_watermark: i64::MIN,
            evicted_users: 0,
        }
    }

    /// Applies one epoch's batches and returns its scored events and dead letters.
    pub fn process_epoch(&mut self, batches: &mut [EventBatch]) -> ScoredBatch {
        let mut order: Vec<(Origin, u32, u32)> = Vec::with_capacity(batches.iter().map(|b| b.events.len()).sum());
        let mut out = ScoredBatch::default();
        let mut text_len = 0;
        for (b, batch) in batches.iter_mut().enumerate() {
            out.dead.append(&mut batch.dead);
            order.extend(batch.events.iter().enumerate().map(|(i, e)| (e.origin, b as u32, i as u32)));
            text_len += batch.events.iter().map(|e| (e.event_id.len + e.user_id.len) as usize).sum::<usize>();
        }
        out.text.reserve(text_len);
        out.extras.reserve(order.len() * self.cfg.extra_count);
        out.attrs.reserve(order.len() * self.cfg.attr_count);
        if !order.is_sorted_by_key(|&(origin, _, _)| origin) {
            order.sort_unstable_by_key(|&(origin, _, _)| origin);
        }
        out.rows.reserve(order.len());
        out.windows.reserve(order.len());
        // Every event's slot first: independent lookups, so their cache misses overlap.
        let slots: Vec<u32> = order
            .iter()
            .map(|&(_, b, i)| {
                let key = batches[b as usize].events[i as usize].user_key;
                *self.users.entry(key).or_insert_with(|| self.slots.insert(None))
            })
            .collect();
        for k in 0..order.len() {
            if let Some(&slot) = slots.get(k + PREFETCH_STATE_AHEAD) {
                prefetch(self.slots.get(slot));
            }
            if let Some(&(_, b, i)) = order.get(k + PREFETCH_BUFFER_AHEAD) {
                let batch = &batches[b as usize];
                let event = &batch.events[i as usize];
                // The event's ids, copied out below; written by the parser an epoch ago, so
                // usually no longer cached.
                if let Some(first) = batch.text.as_bytes().get(event.event_id.start as usize) {
                    prefetch(first);
                }
                if let Some(state) = self.slots.get(slots[k + PREFETCH_BUFFER_AHEAD]) {
                    state.prefetch_buffer();
                }
            }
            let (_, b, i) = order[k];
            self.apply(&batches[b as usize], i as usize, slots[k], &mut out);
        }
        self.sweep_idle_users();
        out
    }

    fn apply(&mut self, batch: &EventBatch, index: usize, slot: u32, out: &mut ScoredBatch) {
        let event = &batch.events[index];
        let obs = Observation {
            timestamp_ms: event.timestamp_ms,
            amount: event.own[0],
            location_distance: event.own[2],
            hour: event.hour,
            id_hash: event.id_hash,
        };
        match self.partition_newest.iter_mut().find(|(p, _)| *p == event.origin.partition) {
            Some((_, newest)) => *newest = (*newest).max(event.timestamp_ms),
            None => self.partition_newest.push((event.origin.partition, event.timestamp_ms)),
        }
        let (features, late) = match UserState::observe(self.slots.get_mut(slot), &obs, &self.cfg.rules) {
            Outcome::Accepted(f) => (f, false),
            Outcome::Late(f) => (f, true),
            Outcome::Duplicate => {
                let mut dead = DeadLetter::new(event.raw.str(&batch.text).as_bytes(), "duplicate", event.origin);
                dead.key = Some(event.user_id.str(&batch.text).to_owned());
                out.dead.push(dead);
                return;
            }
        };
        out.rows.push(ScoredRow {
            origin: event.origin,
            event_id: TextRef::push(&mut out.text, event.event_id.str(&batch.text)),
            user_id: TextRef::push(&mut out.text, event.user_id.str(&batch.text)),
            timestamp_ms: event.timestamp_ms,
            own: event.own,
            label: event.label,
            late,
            ingest_ns: batch.event_ingest_ns.get(index).copied().unwrap_or(batch.ingest_ns),
            timestamp_source: event.timestamp_source,
        });
        out.windows.push(features);
        let n = self.cfg.extra_count;
        out.extras.extend_from_slice(&batch.extras[index * n..(index + 1) * n]);
        let n = self.cfg.attr_count;
        out.attrs.extend_from_slice(&batch.attrs[index * n..(index + 1) * n]);
    }

    /// The event-time watermark: the oldest of the partitions' newest timestamps.
    fn watermark(&self) -> Option<i64> {
        self.partition_newest.iter().map(|&(_, newest)| newest).min()
    }

    /// Drops users idle for more than 30 d + lateness behind the watermark (SPEC §2), at
    /// most once per day of event time: the sweep visits every user, and a day's delay in
    /// freeing a 30-day-idle user changes no result.
    fn sweep_idle_users(&mut self) {
        let Some(watermark) = self.watermark() else { return };
        if watermark < self.last_sweep_watermark.saturating_add(DAY_MS) {
            return;
        }
        self.last_sweep_watermark = watermark;
        let cutoff = watermark - RETENTION_MS - self.cfg.rules.lateness_ms;
        let before = self.users.len();
        let slots = &mut self.slots;
        self.users.retain(|_, &mut slot| match slots.get_mut(slot) {
            Some(state) if state.newest_ms() >= cutoff => {
                state.trim_late_ids();
                state.compact();
                true
            }
            _ => {
                slots.remove(slot);
                false
            }
        });
        self.evicted_users += (before - self.users.len()) as u64;
    }

    /// This worker's part of the checkpoint of `epoch`: its users by key group, bincode-encoded.
    pub fn snapshot(&self, epoch: u64, worker: u32, source_offsets: Vec<(i32, i64)>) -> Part {
        let mut groups: Vec<Vec<(u64, &UserState)>> = (0..KEY_GROUPS).map(|_| Vec::new()).collect();
        for (&key, &slot) in &self.users {
            if let Some(state) = self.slots.get(slot) {
                groups[key_group(key) as usize].push((key, state));
            }
        }
        let groups = groups
            .into_iter()
            .enumerate()
            .filter(|(_, users)| !users.is_empty())
            .map(|(group, users)| {
                let bytes = bincode::serialize(&users).expect("user states always encode");
                (group as u16, bytes)
            })
            .collect();
        let header = PartHeader {
            epoch,
            worker,
            source_offsets,
            partition_newest: self.partition_newest.clone(),
            last_sweep_watermark: self.last_sweep_watermark,
        };
        Part { header, groups }
    }

    /// Takes over the users of the key groups worker `worker` of `peers` owns from `restored`.
    pub fn restore(&mut self, restored: &RestoredState, worker: usize, peers: usize) {
        let users = restored.take_users(worker, peers);
        self.users.reserve(users.len());
        for (key, state) in users {
            let slot = self.slots.insert(Some(state));
            self.users.insert(key, slot);
        }
        self.partition_newest = restored.partition_newest.clone();
        self.last_sweep_watermark = restored.last_sweep_watermark;
    }

    /// Current size of the state.
    pub fn report(&self) -> StateReport {
        let per_entry = std::mem::size_of::<(u64, u32)>() + 1;
        let mut report = StateReport {
            users: self.users.len() as u64,
            bytes: (self.users.capacity() * per_entry + self.slots.bytes()) as u64,
            evicted_users: self.evicted_users,
            ..StateReport::default()
        };
        for user in self.users.values().filter_map(|&slot| self.slots.get(slot).as_ref()) {
            report.retained_events += user.retained() as u64;
            report.bytes += user.heap_bytes() as u64;
        }
        report
    }
}

/// The checkpoint barriers a window state has received.
#[derive(Debug, Default)]
struct Barriers {
    /// Sources that have sent their final barrier, and the newest epoch among those.
    finals: usize,
    final_epoch: u64,
}

impl Barriers {
    fn note(&mut self, batch: &EventBatch, epoch: u64) {
        if batch.marker == Some(Marker::Final) {
            self.finals += 1;
            self.final_epoch = self.final_epoch.max(epoch);
        }
    }

    /// Whether the state after `epoch` (whose batches are `batches`) is to be checkpointed,
    /// and if so whether as the final checkpoint. The final one is taken once every source
    /// has stopped, after the newest epoch any of them stopped at: all workers agree on it,
    /// because every source sends its final barrier to every worker.
    fn checkpoint_after(&self, epoch: u64, batches: &[EventBatch], sources: usize) -> Option<bool> {
        let last = self.finals == sources && epoch == self.final_epoch;
        (last || batches.iter().any(|b| b.marker == Some(Marker::Checkpoint))).then_some(last)
    }
}

/// Extension trait: `events.window_state(cfg)`.
pub trait WindowStateExt<'s> {
    /// Exchanges batches to their owners and emits scored batches, one per epoch.
    fn window_state(self, cfg: WindowConfig) -> Stream<'s, u64, Vec<ScoredBatch>>;
}

impl<'s> WindowStateExt<'s> for Stream<'s, u64, Vec<EventBatch>> {
    fn window_state(self, cfg: WindowConfig) -> Stream<'s, u64, Vec<ScoredBatch>> {
        let pact = Exchange::new(|batch: &EventBatch| u64::from(batch.dest));
        let index = self.scope().index();
        let peers = self.scope().peers();
        let worker = index.to_string();
        self.unary_frontier::<CapacityContainerBuilder<Vec<ScoredBatch>>, _, _, _>(
            pact,
            "WindowState",
            move |_capability, _info| {
                let report = cfg.report.clone();
                let gauges = cfg.metrics.as_ref().map(|m| {
                    (m.state_users.with_label_values(&[&worker]), m.state_evictions.with_label_values(&[&worker]))
                });
                let mut evictions_reported = 0;
                let checkpoints = cfg.checkpoints.clone();
                let mut state = KeyedState::new(cfg);
                if let Some(restored) = checkpoints.as_ref().and_then(|c| c.restore.as_ref()) {
                    state.restore(restored, index, peers);
                }
                let mut barriers = Barriers::default();
                let mut pending: BTreeMap<u64, (Capability<u64>, Vec<EventBatch>)> = BTreeMap::new();
                let mut reported = false;
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        let epoch = *cap.time();
                        let entry = pending.entry(epoch).or_insert_with(|| (cap, Vec::new()));
                        for batch in data.flat_map(|d| d.drain(..)) {
                            barriers.note(&batch, epoch);
                            entry.1.push(batch);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let epoch = *entry.key();
                        let (cap, mut batches) = entry.remove();
                        let scored = state.process_epoch(&mut batches);
                        output.session(&cap).give(scored);
                        if let Some(checkpoints) = &checkpoints {
                            if let Some(final_checkpoint) = barriers.checkpoint_after(epoch, &batches, peers) {
                                checkpoints.write(epoch, final_checkpoint, |offsets| {
                                    state.snapshot(epoch, checkpoints.worker, offsets.into_iter().collect())
                                });
                            }
                        }
                        if let Some((users, evictions)) = &gauges {
                            users.set(state.users.len() as i64);
                            evictions.inc_by(state.evicted_users - evictions_reported);
                            evictions_reported = state.evicted_users;
                        }
                    }
                    if frontier.is_empty() && !reported {
                        reported = true;
                        if let Some(shared) = &report {
                            let mine = state.report();
                            let mut total = shared.lock().unwrap_or_else(|p| p.into_inner());
                            total.users += mine.users;
                            total.retained_events += mine.retained_events;
                            total.bytes += mine.bytes;
                            total.evicted_users += mine.evicted_users;
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::ExtraFeatures;
    use crate::event::parse::EventParser;
    use crate::generator::{Generator, GeneratorConfig};
    use crate::state::checkpoint::store::{CheckpointStore, Manifest, MANIFEST_FORMAT};

    /// Generated events parsed into one batch per destination worker.
    fn batches(lines: &[Vec<u8>], first_position: u64, workers: usize) -> Vec<EventBatch> {
        let mut parser = EventParser::new(ExtraFeatures::default());
        let mut batches: Vec<EventBatch> =
            (0..workers).map(|dest| EventBatch { dest: dest as u32, ..EventBatch::default() }).collect();
        for (i, line) in lines.iter().enumerate() {
            let origin = Origin { partition: 0, position: first_position + i as u64 };
            parser.parse_into(line, origin, &mut batches, 0);
        }
        batches
    }

    /// (eventId, features) of a scored batch, sorted by eventId.
    fn features(scored: &[ScoredBatch]) -> Vec<(String, Vec<u64>)> {
        let mut rows: Vec<(String, Vec<u64>)> = scored
            .iter()
            .flat_map(|b| {
                b.rows
                    .iter()
                    .zip(&b.windows)
                    .map(|(row, w)| (row.event_id.str(&b.text).to_owned(), w.iter().map(|f| f.to_bits()).collect()))
            })
            .collect();
        rows.sort();
        rows
    }

    /// A checkpoint taken by one worker after the first half of a stream, restored onto one,
    /// two or three workers, scores the second half bit for bit like the uninterrupted state.
    #[test]
    fn a_snapshot_restored_onto_any_worker_count_continues_exactly() {
        let cfg = GeneratorConfig { events: 20_000, users: 700, seed: 5, ..GeneratorConfig::default() };
        let lines = Generator::lines(cfg);
        let (first, second) = lines.split_at(10_000);

        let mut uninterrupted = KeyedState::new(WindowConfig::default());
        uninterrupted.process_epoch(&mut batches(first, 0, 1));
        let expected = features(&[uninterrupted.process_epoch(&mut batches(second, 10_000, 1))]);

        let mut original = KeyedState::new(WindowConfig::default());
        original.process_epoch(&mut batches(first, 0, 1));
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2).unwrap();
        store.write_part(&original.snapshot(0, 0, Vec::new())).unwrap();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            epoch: 0,
            workers: 1,
            key_groups: KEY_GROUPS,
            block_len: 1,
            input: "test".into(),
            final_checkpoint: false,
            created_unix_ms: 0,
        };
        store.complete(&manifest).unwrap();

        for workers in 1..=3 {
            let restored = store.latest_valid().unwrap().unwrap().decode().unwrap();
            let mut scored = Vec::new();
            let mut users = 0;
            for (worker, mut batch) in batches(second, 10_000, workers).into_iter().enumerate() {
                let mut state = KeyedState::new(WindowConfig::default());
                state.restore(&restored, worker, workers);
                users += state.users.len();
                let mine: Vec<_> = std::mem::take(&mut batch.events)
                    .into_iter()
                    .filter(|e| crate::event::hashing::owner_worker(e.user_key, workers) == worker)
                    .collect();
                batch.events = mine;
                scored.push(state.process_epoch(&mut [batch]));
            }
            assert_eq!(users, original.users.len(), "{workers} workers took every user once");
            assert_eq!(features(&scored), expected, "{workers} workers");
        }
    }

    /// Rows carry their own event's ingest instant when the source stamped events one by one
    /// (Kafka), and the batch's otherwise, whatever order the epoch sorts them into.
    #[test]
    fn rows_take_per_event_ingest_times_when_the_source_has_them() {
        let lines = Generator::lines(GeneratorConfig { events: 3, users: 3, seed: 1, ..GeneratorConfig::default() });
        let stamps = |scored: &ScoredBatch| -> Vec<u64> { scored.rows.iter().map(|r| r.ingest_ns).collect() };
        let mut stamped = batches(&lines, 0, 1);
        stamped[0].ingest_ns = 7;
        let mut state = KeyedState::new(WindowConfig::default());
        assert_eq!(stamps(&state.process_epoch(&mut stamped.clone())), [7, 7, 7]);
        stamped[0].event_ingest_ns = vec![30, 10, 20];
        let mut state = KeyedState::new(WindowConfig::default());
        assert_eq!(stamps(&state.process_epoch(&mut stamped)), [30, 10, 20]);
    }
}
