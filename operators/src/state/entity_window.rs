//! The entity stages of a feature specification (SPEC §2b): after the user's window state has
//! judged each event (accepted, late, duplicate), every entity gets its own keyed operator. The
//! scored events' entity inputs (key, time, values, attributes) are exchanged to the worker
//! owning the key; that worker applies an epoch's events to its [`KeyState`]s in input order
//! and sends each event's entity features back to the event's home worker, where a join fills
//! them into the event's row by its origin (the sequence number) before the model sees it.
//!
//! Determinism: like the user state, an entity operator processes an epoch only once its input
//! frontier has passed it, and sorts the epoch's events by [`Origin`] (partition, position):
//! every key sees its events in input order whatever the worker count or the batching.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::Stream;

use crate::batch::{Origin, ScoredBatch};
use crate::event::fields::ExtraFeatures;
use crate::event::hashing::{entity_key, owner_worker, PreHashed};
use crate::features::spec::{EntitySpec, FeatureSpec};
use crate::features::OWN_FEATURE_NAMES;
use crate::state::entity::{EntityEvent, EntityLayout, KeyState};

/// Where a numeric input of an entity's windows comes from in a scored row.
#[derive(Clone, Copy, Debug)]
enum ValueSource {
    Own(usize),
    Extra(usize),
}

/// One entity, compiled against what the parser keeps.
#[derive(Clone, Debug)]
struct EntityPlan {
    layout: EntityLayout,
    /// Kept-attribute slots of the key fields.
    key_slots: Vec<usize>,
    /// The values the entity's windows read (slot 0: amount).
    value_sources: Vec<ValueSource>,
    /// Kept-attribute slots of the attributes its `distinct`/`new` read.
    attr_slots: Vec<usize>,
    /// First column of its features in a row's entity features.
    offset: usize,
}

/// The entity stages of a specification.
#[derive(Clone, Debug)]
pub struct EntityConfig {
    plans: Vec<EntityPlan>,
    width: usize,
    extra_count: usize,
    attr_count: usize,
    entity_ttl_ms: i64,
    /// Where the operators report their state size at the end of the input.
    pub report: Option<Arc<Mutex<EntityReport>>>,
}

/// Size of the entity state, summed over workers and entities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityReport {
    pub keys: u64,
    pub retained_events: u64,
    pub bytes: u64,
}

impl EntityConfig {
    /// Compiles `spec` for a parser keeping `kept` (which must hold every key field,
    /// attribute and window input of the specification: [`FeatureSpec::attribute_fields`],
    /// [`FeatureSpec::window_inputs`]).
    pub fn new(spec: &FeatureSpec, kept: &ExtraFeatures) -> EntityConfig {
        let attr_slot = |name: &str| {
            kept.attributes().iter().position(|a| a == name).unwrap_or_else(|| panic!("attribute `{name}` is not kept"))
        };
        let mut offset = 0;
        let plans = spec
            .entities
            .iter()
            .map(|entity| {
                let plan = plan(entity, kept, &attr_slot, offset);
                offset += plan.layout.width();
                plan
            })
            .collect();
        EntityConfig {
            plans,
            width: offset,
            extra_count: kept.len(),
            attr_count: kept.attributes().len(),
            entity_ttl_ms: spec.entity_ttl_ms,
            report: None,
        }
    }

    /// Entity features per row.
    pub fn width(&self) -> usize {
        self.width
    }
}

fn plan(entity: &EntitySpec, kept: &ExtraFeatures, attr_slot: &dyn Fn(&str) -> usize, offset: usize) -> EntityPlan {
    let mut value_names = vec!["amount".to_owned()];
    for block in &entity.windows {
        if !value_names.contains(&block.of) {
            value_names.push(block.of.clone());
        }
    }
    let value_sources = value_names
        .iter()
        .map(|name| match OWN_FEATURE_NAMES.iter().position(|n| n == name) {
            Some(i) => ValueSource::Own(i),
            None => ValueSource::Extra(
                kept.names().iter().position(|n| n == name).unwrap_or_else(|| panic!("input `{name}` is not kept")),
            ),
        })
        .collect();
    let mut attr_names: Vec<String> = Vec::new();
    for attr in entity.priors.iter().filter_map(|p| p.attribute()) {
        if !attr_names.iter().any(|a| a == attr) {
            attr_names.push(attr.to_owned());
        }
    }
    EntityPlan {
        layout: EntityLayout::new(entity, &value_names, &attr_names),
        key_slots: entity.key.iter().map(|k| attr_slot(k)).collect(),
        value_sources,
        attr_slots: attr_names.iter().map(|a| attr_slot(a)).collect(),
        offset,
    }
}

/// One entity's inputs of scored events, addressed to the worker owning their keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EntityRequests {
    pub dest: u32,
    /// Per event: where it came from, its home worker, key, time, whether it is accepted.
    pub origins: Vec<Origin>,
    pub homes: Vec<u32>,
    pub keys: Vec<u64>,
    pub timestamps: Vec<i64>,
    pub accepted: Vec<bool>,
    /// The entity's values and attributes per event (strides of its layout).
    pub values: Vec<f64>,
    pub attrs: Vec<u64>,
}

/// One entity's features of events, on their way back to the events' home worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EntityAnswers {
    pub dest: u32,
    pub entity: u32,
    pub origins: Vec<Origin>,
    /// The entity's features, its layout's width per event.
    pub features: Vec<f64>,
}

/// Keys of one entity by key hash.
type KeyMap = HashMap<u64, KeyState, BuildHasherDefault<PreHashed>>;

/// The keys of one entity that one worker owns.
struct EntityStore {
    keys: KeyMap,
    /// Newest event time seen, and the last time idle keys were swept.
    newest: i64,
    last_sweep: i64,
}

impl EntityStore {
    fn new() -> Self {
        EntityStore { keys: KeyMap::default(), newest: i64::MIN, last_sweep: i64::MIN }
    }

    /// Applies one epoch's requests in input order and returns the answers per home worker.
    fn process(
        &mut self,
        plan: &EntityPlan,
        entity: u32,
        requests: &[EntityRequests],
        peers: usize,
        ttl_ms: i64,
    ) -> Vec<EntityAnswers> {
        let mut order: Vec<(Origin, u32, u32)> = Vec::with_capacity(requests.iter().map(|r| r.origins.len()).sum());
        for (r, request) in requests.iter().enumerate() {
            order.extend(request.origins.iter().enumerate().map(|(i, &o)| (o, r as u32, i as u32)));
        }
        order.sort_unstable_by_key(|&(origin, _, _)| origin);
        let mut answers: Vec<EntityAnswers> =
            (0..peers).map(|dest| EntityAnswers { dest: dest as u32, entity, ..EntityAnswers::default() }).collect();
        let (width, values, attrs) = (plan.layout.width(), plan.layout.values(), plan.layout.attrs());
        for (origin, r, i) in order {
            let (request, i) = (&requests[r as usize], i as usize);
            let timestamp_ms = request.timestamps[i];
            self.newest = self.newest.max(timestamp_ms);
            let state = self.keys.entry(request.keys[i]).or_insert_with(|| KeyState::new(&plan.layout));
            // SPEC §2b: a key idle for the TTL is forgotten with its totals; judged on access,
            // so it does not depend on when sweeps happen.
            if state.newest() != i64::MIN && state.newest() < timestamp_ms - ttl_ms {
                *state = KeyState::new(&plan.layout);
            }
            let answer = &mut answers[request.homes[i] as usize];
            answer.origins.push(origin);
            let start = answer.features.len();
            answer.features.resize(start + width, f64::NAN);
            let event = EntityEvent {
                timestamp_ms,
                values: &request.values[i * values..(i + 1) * values],
                attrs: &request.attrs[i * attrs..(i + 1) * attrs],
            };
            state.observe(&plan.layout, &event, request.accepted[i], &mut answer.features[start..]);
        }
        self.sweep(ttl_ms);
        answers.retain(|a| !a.origins.is_empty());
        answers
    }

    /// Frees keys that any later event would find idle beyond the TTL, once per day of event
    /// time. The cut-off lags the newest time by 30 d more than the TTL, so an earlier-stamped
    /// event that could still revive a key (SPEC §2 lateness is per user) finds it as it was.
    fn sweep(&mut self, ttl_ms: i64) {
        const DAY_MS: i64 = 86_400_000;
        if self.newest < self.last_sweep.saturating_add(DAY_MS) {
            return;
        }
        self.last_sweep = self.newest;
        let cutoff = self.newest - ttl_ms - crate::features::RETENTION_MS;
        self.keys.retain(|_, state| state.newest() >= cutoff);
    }

    fn report(&self) -> EntityReport {
        EntityReport {
            keys: self.keys.len() as u64,
            retained_events: self.keys.values().map(|k| k.retained() as u64).sum(),
            bytes: (self.keys.values().map(KeyState::heap_bytes).sum::<usize>()
                + self.keys.capacity() * (8 + std::mem::size_of::<KeyState>())) as u64,
        }
    }
}

/// Every entity of a specification on one thread: the operators' work without the exchange
/// (for timing the stage alone, as `vigil bench` does).
pub struct EntityStages {
    cfg: EntityConfig,
    stores: Vec<EntityStore>,
}

impl EntityStages {
    /// Empty state for every entity of `cfg`.
    pub fn new(cfg: EntityConfig) -> Self {
        let stores = cfg.plans.iter().map(|_| EntityStore::new()).collect();
        EntityStages { cfg, stores }
    }

    /// Applies one epoch's scored events and fills their entity features.
    pub fn process(&mut self, batch: &mut ScoredBatch) {
        let mut answers = Vec::new();
        for (e, (plan, store)) in self.cfg.plans.iter().zip(&mut self.stores).enumerate() {
            let requests = requests_of(plan, &self.cfg, batch, 0, 1);
            answers.extend(store.process(plan, e as u32, &requests, 1, self.cfg.entity_ttl_ms));
        }
        fill(&self.cfg, std::slice::from_mut(batch), &answers);
    }
}

/// Builds one entity's requests from a scored batch (events without a key value get no
/// request: their features stay missing).
fn requests_of(
    plan: &EntityPlan,
    cfg: &EntityConfig,
    batch: &ScoredBatch,
    home: u32,
    peers: usize,
) -> Vec<EntityRequests> {
    let mut out: Vec<EntityRequests> =
        (0..peers).map(|dest| EntityRequests { dest: dest as u32, ..EntityRequests::default() }).collect();
    for (i, row) in batch.rows.iter().enumerate() {
        let attrs = &batch.attrs[i * cfg.attr_count..(i + 1) * cfg.attr_count];
        let key = entity_key(plan.key_slots.iter().map(|&s| attrs[s]));
        if key == 0 {
            continue;
        }
        let request = &mut out[owner_worker(key, peers)];
        request.origins.push(row.origin);
        request.homes.push(home);
        request.keys.push(key);
        request.timestamps.push(row.timestamp_ms);
        request.accepted.push(!row.late);
        let extras = &batch.extras[i * cfg.extra_count..(i + 1) * cfg.extra_count];
        request.values.extend(plan.value_sources.iter().map(|source| match *source {
            ValueSource::Own(k) => row.own[k],
            ValueSource::Extra(k) => extras[k],
        }));
        request.attrs.extend(plan.attr_slots.iter().map(|&s| attrs[s]));
    }
    out.retain(|r| !r.origins.is_empty());
    out
}

/// Adds the entity stages to a stream of scored batches.
pub trait EntityWindowsExt<'s> {
    /// Fills every scored batch's `entities` columns (a pass-through for the default
    /// specification).
    fn entity_windows(self, cfg: EntityConfig) -> Stream<'s, u64, Vec<ScoredBatch>>;
}

impl<'s> EntityWindowsExt<'s> for Stream<'s, u64, Vec<ScoredBatch>> {
    fn entity_windows(self, cfg: EntityConfig) -> Stream<'s, u64, Vec<ScoredBatch>> {
        if cfg.plans.is_empty() {
            return self;
        }
        let peers = self.scope().peers();
        let home = self.scope().index() as u32;
        let cfg = Arc::new(cfg);
        let mut answers: Option<Stream<'s, u64, Vec<EntityAnswers>>> = None;
        for (e, plan) in cfg.plans.iter().enumerate() {
            let (split_cfg, split_plan) = (Arc::clone(&cfg), plan.clone());
            let requests = self.clone().unary::<CapacityContainerBuilder<Vec<EntityRequests>>, _, _, _>(
                Pipeline,
                &format!("EntityKeys[{e}]"),
                move |_, _| {
                    move |input, output| {
                        input.for_each_stamp(|cap, data| {
                            let mut session = output.session(&cap);
                            for batch in data.flat_map(|d| d.iter()) {
                                session.give_iterator(
                                    requests_of(&split_plan, &split_cfg, batch, home, peers).into_iter(),
                                );
                            }
                        });
                    }
                },
            );
            let entity_answers = entity_state(requests, plan.clone(), e as u32, &cfg, peers);
            answers = Some(match answers {
                Some(all) => all.concat(entity_answers),
                None => entity_answers,
            });
        }
        let answers = answers.expect("at least one entity");
        join(self, answers, cfg)
    }
}

/// One entity's keyed operator.
fn entity_state<'s>(
    requests: Stream<'s, u64, Vec<EntityRequests>>,
    plan: EntityPlan,
    entity: u32,
    cfg: &Arc<EntityConfig>,
    peers: usize,
) -> Stream<'s, u64, Vec<EntityAnswers>> {
    let pact = Exchange::new(|r: &EntityRequests| u64::from(r.dest));
    let (ttl_ms, report) = (cfg.entity_ttl_ms, cfg.report.clone());
    requests.unary_frontier::<CapacityContainerBuilder<Vec<EntityAnswers>>, _, _, _>(
        pact,
        &format!("EntityState[{entity}]"),
        move |_, _| {
            let mut store = EntityStore::new();
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<EntityRequests>)> = BTreeMap::new();
            let mut reported = false;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let entry = pending.entry(*cap.time()).or_insert_with(|| (cap, Vec::new()));
                    entry.1.extend(data.flat_map(|d| d.drain(..)));
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, requests) = entry.remove();
                    let answers = store.process(&plan, entity, &requests, peers, ttl_ms);
                    output.session(&cap).give_iterator(answers.into_iter());
                }
                if frontier.is_empty() && !reported {
                    reported = true;
                    if let Some(shared) = &report {
                        let mine = store.report();
                        let mut total = shared.lock().unwrap_or_else(|p| p.into_inner());
                        total.keys += mine.keys;
                        total.retained_events += mine.retained_events;
                        total.bytes += mine.bytes;
                    }
                }
            }
        },
    )
}

/// Fills each scored batch's entity columns from the answers of its epoch.
fn join<'s>(
    scored: Stream<'s, u64, Vec<ScoredBatch>>,
    answers: Stream<'s, u64, Vec<EntityAnswers>>,
    cfg: Arc<EntityConfig>,
) -> Stream<'s, u64, Vec<ScoredBatch>> {
    let pact = Exchange::new(|a: &EntityAnswers| u64::from(a.dest));
    scored.binary_frontier::<_, CapacityContainerBuilder<Vec<ScoredBatch>>, _, _, _, _>(
        answers,
        Pipeline,
        pact,
        "EntityJoin",
        move |_, _| {
            type Epoch = (Option<Capability<u64>>, Vec<ScoredBatch>, Vec<EntityAnswers>);
            let mut pending: BTreeMap<u64, Epoch> = BTreeMap::new();
            move |(scored, scored_frontier), (answers, answers_frontier), output| {
                scored.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    let entry = pending.entry(*cap.time()).or_insert_with(|| (None, Vec::new(), Vec::new()));
                    entry.0.get_or_insert(cap);
                    entry.1.extend(data.flat_map(|d| d.drain(..)));
                });
                answers.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    let entry = pending.entry(epoch).or_insert_with(|| (None, Vec::new(), Vec::new()));
                    entry.2.extend(data.flat_map(|d| d.drain(..)));
                });
                while let Some(entry) = pending.first_entry() {
                    let epoch = entry.key();
                    if scored_frontier.less_equal(epoch) || answers_frontier.less_equal(epoch) {
                        break;
                    }
                    let (cap, mut batches, answers) = entry.remove();
                    let Some(cap) = cap else { continue };
                    fill(&cfg, &mut batches, &answers);
                    output.session(&cap).give_iterator(batches.into_iter());
                }
            }
        },
    )
}

/// Writes the answers into the rows they belong to.
fn fill(cfg: &EntityConfig, batches: &mut [ScoredBatch], answers: &[EntityAnswers]) {
    let mut row_of: HashMap<Origin, (u32, u32)> = HashMap::new();
    for (b, batch) in batches.iter_mut().enumerate() {
        batch.entities.clear();
        batch.entities.resize(batch.rows.len() * cfg.width, f64::NAN);
        row_of.extend(batch.rows.iter().enumerate().map(|(r, row)| (row.origin, (b as u32, r as u32))));
    }
    for answer in answers {
        let plan = &cfg.plans[answer.entity as usize];
        let width = plan.layout.width();
        for (i, origin) in answer.origins.iter().enumerate() {
            let (b, r) = row_of[origin];
            let start = r as usize * cfg.width + plan.offset;
            batches[b as usize].entities[start..start + width]
                .copy_from_slice(&answer.features[i * width..(i + 1) * width]);
        }
    }
}
