//! The training/backfill view: source → window state → entity windows, collected in input order. `vigil
//! features` writes it as CSV and `vigil train` fits the model on it, so both see exactly
//! the features `vigil run` computes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use operators::batch::{Origin, ScoredBatch};
use operators::event::parse::EventParser;
use operators::features::spec::FeatureSpec;
use operators::source::block::SourceConfig;
use operators::state::entity_window::{EntityConfig, EntityWindowsExt};
use operators::state::user::StateRules;
use operators::state::window::{WindowConfig, WindowStateExt};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use crate::input::{JobInput, Tuning};

/// Scored events of a whole input, with an index in input order.
pub struct ExtractedFeatures {
    pub batches: Vec<ScoredBatch>,
    /// (batch, row) of every scored event, in input order.
    pub order: Vec<(u32, u32)>,
    /// Dead letters (bad records and duplicates).
    pub dead_letters: u64,
}

impl ExtractedFeatures {
    /// Iterates scored events in input order as (batch, row index).
    pub fn rows(&self) -> impl Iterator<Item = (&ScoredBatch, usize)> {
        self.order.iter().map(|&(b, r)| (&self.batches[b as usize], r as usize))
    }
}

/// Runs source → window state (→ entity windows of `spec`) over `input` on `workers` threads
/// and gathers the result; `processed` counts the input records done so far (scored events
/// and dead letters), for progress reporting. The parser must keep what `spec` reads
/// ([`ExtraFeatures::with_spec`](operators::event::fields::ExtraFeatures::with_spec)).
pub fn extract(
    input: JobInput,
    parser: EventParser,
    spec: &FeatureSpec,
    rules: StateRules,
    workers: usize,
    processed: Arc<AtomicU64>,
) -> Result<ExtractedFeatures, String> {
    let entities = EntityConfig::new(spec, parser.extras());
    let collected: Arc<Mutex<Vec<ScoredBatch>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&collected);
    let tuning = Tuning::default();
    let guards = timely::execute(timely::Config::process(workers.max(1)), move |worker| {
        let probe = ProbeHandle::new();
        let source_cfg = SourceConfig {
            block_len: tuning.block_len,
            max_in_flight: tuning.max_in_flight,
            partition: 0,
            stop: Arc::new(AtomicBool::new(false)),
            probe: probe.clone(),
            rate: tuning.rate,
            barriers: Default::default(),
            start_block: 0,
        };
        let parser = parser.clone();
        let window = WindowConfig {
            rules,
            extra_count: parser.extras().len(),
            attr_count: parser.extras().attributes().len(),
            ..WindowConfig::default()
        };
        let entities = entities.clone();
        let sink = Arc::clone(&sink);
        let processed = Arc::clone(&processed);
        worker.dataflow::<u64, _, _>(|scope| {
            input
                .source(scope, parser, source_cfg)?
                .stream
                .window_state(window)
                .entity_windows(entities)
                .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "Collect",
                    move |_, _| {
                        move |input, _output| {
                            input.for_each_stamp(|_cap, data| {
                                let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
                                for batch in data.flat_map(|d| d.drain(..)) {
                                    processed
                                        .fetch_add((batch.rows.len() + batch.dead.len()) as u64, Ordering::Relaxed);
                                    all.push(batch);
                                }
                            });
                        }
                    },
                )
                .probe_with(&probe);
            Ok::<(), String>(())
        })
    })?;
    for result in guards.join() {
        result??;
    }
    let batches = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
    let mut keyed: Vec<(Origin, u32, u32)> = Vec::new();
    let mut dead_letters = 0;
    for (b, batch) in batches.iter().enumerate() {
        dead_letters += batch.dead.len() as u64;
        keyed.extend(batch.rows.iter().enumerate().map(|(r, row)| (row.origin, b as u32, r as u32)));
    }
    keyed.sort_unstable_by_key(|k| k.0);
    let order = keyed.into_iter().map(|(_, b, r)| (b, r)).collect();
    Ok(ExtractedFeatures { batches, order, dead_letters })
}
