//! The anomaly-scoring job: source → window state → enrich → infer → decide → sink.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use operators::decide::{DecideExt, DecisionPolicy};
use operators::enrich::{EnrichExt, InputLayout};
use operators::event::EventParser;
use operators::file_sink::{DiscardSink, OutputFiles, RunStats, SinkExt};
use operators::infer::InferExt;
use operators::kafka_sink::{KafkaProducer, KafkaSinkExt};
use operators::model::{Model, ModelError};
use operators::source::SourceConfig;
use operators::user_state::StateRules;
use operators::window_state::{StateReport, WindowConfig, WindowStateExt};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use crate::input::{JobInput, Tuning};

/// Where decisions go.
#[derive(Clone)]
pub enum Output {
    /// `decisions.jsonl`, `alerts.jsonl`, `dead-letters.jsonl`.
    Files(Arc<OutputFiles>),
    /// Rendered and dropped (benchmarks).
    Discard,
    /// Produced to Kafka topics by the process's producer.
    Kafka(Arc<KafkaProducer>),
}

/// Longest a worker with nothing to do sleeps before checking for offsets to commit.
const WORKER_PARK: Duration = Duration::from_millis(10);

/// Everything a scoring run needs.
#[derive(Clone)]
pub struct ScoringJob {
    pub input: JobInput,
    pub model_path: PathBuf,
    /// Overrides the model's threshold.
    pub threshold: Option<f64>,
    pub rules: StateRules,
    pub emit_features: bool,
    pub output: Output,
    pub stop: Arc<AtomicBool>,
    pub tuning: Tuning,
}

/// What a run did.
#[derive(Debug)]
pub struct ScoringReport {
    pub stats: RunStats,
    pub state: StateReport,
    pub elapsed: Duration,
    pub model_version: String,
    pub threshold: f64,
}

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model {path} needs inputs vigil cannot compute: {names}")]
    UnknownInputs { path: String, names: String },
    #[error("the timely runtime failed: {0}")]
    Runtime(String),
}

/// Loads the model and resolves its inputs, as the job will on each worker.
pub fn load_model(path: &std::path::Path) -> Result<(Model, InputLayout), JobError> {
    let model = Model::load(path)?;
    let names: Vec<String> = model.metadata().inputs.iter().map(|i| i.name.clone()).collect();
    let layout = InputLayout::resolve(&names)
        .map_err(|unknown| JobError::UnknownInputs { path: path.display().to_string(), names: unknown.join(", ") })?;
    Ok((model, layout))
}

/// Runs the job to completion (or until `stop`) on the given timely configuration.
pub fn run(job: ScoringJob, timely_config: timely::Config) -> Result<ScoringReport, JobError> {
    let (model, _) = load_model(&job.model_path)?;
    let threshold = job.threshold.unwrap_or(model.metadata().threshold);
    let model_version = model.metadata().version.clone();
    drop(model);
    let stats = Arc::new(Mutex::new(RunStats::default()));
    let state = Arc::new(Mutex::new(StateReport::default()));
    let started = Instant::now();
    let worker_stats = Arc::clone(&stats);
    let worker_state = Arc::clone(&state);
    let guards = timely::execute(timely_config, move |worker| {
        let (model, layout) = load_model(&job.model_path).expect("the model loaded before the workers started");
        let input_names: Vec<String> = model.metadata().inputs.iter().map(|i| i.name.clone()).collect();
        let policy = DecisionPolicy {
            threshold,
            model_version: model.metadata().version.clone(),
            emit_features: job.emit_features.then_some(input_names),
            source: job.input.source_name(),
        };
        let parser = EventParser::new(layout.extras().clone());
        let window = WindowConfig {
            rules: job.rules,
            extra_count: layout.extras().len(),
            report: Some(Arc::clone(&worker_state)),
        };
        let probe = ProbeHandle::new();
        let source_cfg = SourceConfig {
            block_len: job.tuning.block_len,
            max_in_flight: job.tuning.max_in_flight,
            partition: 0,
            stop: Arc::clone(&job.stop),
            probe: probe.clone(),
            rate: job.tuning.rate,
        };
        let stats = Arc::clone(&worker_stats);
        let committer = worker.dataflow::<u64, _, _>(|scope| {
            let (events, committer) = job.input.source(scope, parser, source_cfg)?;
            let decided = events.window_state(window).enrich(layout).infer(model).decide(policy);
            let done = match &job.output {
                Output::Files(files) => decided.sink_to(Arc::clone(files), stats),
                Output::Discard => decided.sink_to(DiscardSink, stats),
                Output::Kafka(producer) => decided.kafka_sink(Arc::clone(producer), stats),
            };
            done.probe_with(&probe);
            Ok::<_, String>(committer)
        })?;
        if let Some(mut committer) = committer {
            while worker.step_or_park(Some(WORKER_PARK)) {
                committer.tick(&probe);
            }
            committer.finish().map_err(|e| format!("committing the final Kafka offsets: {e}"))?;
        }
        Ok::<(), String>(())
    })
    .map_err(JobError::Runtime)?;
    for result in guards.join() {
        result.map_err(JobError::Runtime)?.map_err(JobError::Runtime)?;
    }
    let elapsed = started.elapsed();
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|p| p.into_inner()));
    let state = *state.lock().unwrap_or_else(|p| p.into_inner());
    Ok(ScoringReport { stats, state, elapsed, model_version, threshold })
}
