//! The anomaly-scoring job: source (+ HTTP detect requests) → window state → entity windows →
//! enrich → infer → decide → observe (metrics) → reply (HTTP answers) → sink.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use operators::decide::decision::{DecideExt, DecisionPolicy};
use operators::event::parse::EventParser;
use operators::features::spec::{FeatureSpec, SpecError};
use operators::model::enrich::{EnrichExt, InputLayout};
use operators::model::file::{Model, ModelError};
use operators::model::infer::InferExt;
use operators::observe::chunks::{ChunkRecorder, ObserveExt};
use operators::observe::metrics::Metrics;
use operators::observe::operator_timing;
use operators::sink::file::{DiscardSink, OutputFiles, RunStats, SinkExt};
use operators::sink::http_reply::ReplyExt;
use operators::sink::kafka::{KafkaProducer, KafkaSinkExt};
use operators::source::block::SourceConfig;
use operators::source::http::{http_source, DetectChannel, HttpSourceConfig};
use operators::source::kafka::{ConsumerGroupMetadata, OffsetCommitter};
use operators::state::checkpoint::protocol::{worker_checkpoints, CheckpointConfig, SourceBarriers, TransactionGate};
use operators::state::checkpoint::store::CheckpointStore;
use operators::state::entity_window::{EntityConfig, EntityWindowsExt};
use operators::state::user::StateRules;
use operators::state::window::{StateReport, WindowConfig, WindowStateExt};
use operators::time::epoch::TimestampUnit;
use timely::dataflow::operators::{Concat, Probe};
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
    /// The unit of numeric event timestamps.
    pub timestamp_unit: TimestampUnit,
    pub emit_features: bool,
    pub output: Output,
    pub stop: Arc<AtomicBool>,
    pub tuning: Tuning,
    pub telemetry: Telemetry,
    /// Periodic checkpoints and the state restored at start (`None`: no checkpoints).
    pub checkpoints: Option<CheckpointConfig>,
}

/// What the job reports while it runs, and the HTTP requests it takes.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// The process's metrics (`None`: none kept).
    pub metrics: Option<Arc<Metrics>>,
    /// Per-operator timings, with a summary logged this often (`None`: not collected).
    pub timing_interval: Option<Duration>,
    /// Requests of the HTTP detect API (`None`: no API).
    pub detect: Option<Arc<DetectChannel>>,
}

/// How often a Kafka job copies its consumer lag into the metrics.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// What a run did.
#[derive(Debug)]
pub struct ScoringReport {
    pub stats: RunStats,
    /// Ingest → broker acknowledgement of each decision, microseconds (Kafka sink only).
    pub delivered_us: Option<Histogram<u64>>,
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
    #[error("model {path}: its feature specification is invalid: {error}")]
    Features { path: String, error: SpecError },
    #[error("the timely runtime failed: {0}")]
    Runtime(String),
}

/// Exactly-once: commits a transaction for every completed checkpoint, in order (worker 0).
struct TransactionCommitter {
    gate: Arc<TransactionGate>,
    store: CheckpointStore,
    producer: Arc<KafkaProducer>,
    group: ConsumerGroupMetadata,
}

impl TransactionCommitter {
    fn new(cfg: &CheckpointConfig, producer: Arc<KafkaProducer>, consumer: &OffsetCommitter) -> Result<Self, String> {
        let gate = cfg.transactions.clone().ok_or("exactly-once needs a transaction gate")?;
        let group = consumer.group_metadata().ok_or("exactly-once needs the consumer group's metadata")?;
        Ok(TransactionCommitter { gate, store: cfg.store.clone(), producer, group })
    }

    /// Commits the transactions of the pending checkpoints whose manifests are written. The
    /// manifest comes first: a crash between the two leaves the newest checkpoint ahead of the
    /// group's committed offsets, and a restore then takes the checkpoint that matches them.
    fn commit_completed(&mut self) -> Result<(), String> {
        while let Some((epoch, offsets)) = self.gate.oldest() {
            if !self.store.manifest_path(epoch).exists() {
                break;
            }
            self.producer
                .commit_checkpoint(epoch, &offsets, &self.group)
                .map_err(|e| format!("committing the transaction of checkpoint {epoch}: {e}"))?;
            tracing::info!(target: "vigil::checkpoint", epoch, "transaction committed");
        }
        Ok(())
    }
}

/// Loads the model and resolves its inputs, as the job will on each worker.
pub fn load_model(path: &std::path::Path) -> Result<(Model, InputLayout), JobError> {
    let model = Model::load(path)?;
    let names: Vec<String> = model.metadata().inputs.iter().map(|i| i.name.clone()).collect();
    let spec = FeatureSpec::parse(&model.metadata().features)
        .map_err(|error| JobError::Features { path: path.display().to_string(), error })?;
    let layout = InputLayout::resolve(&names, &spec)
        .map_err(|unknown| JobError::UnknownInputs { path: path.display().to_string(), names: unknown.join(", ") })?;
    Ok((model, layout))
}

/// Runs the job to completion (or until `stop`) on the given timely configuration.
pub fn run(job: ScoringJob, timely_config: timely::Config) -> Result<ScoringReport, JobError> {
    let (model, _) = load_model(&job.model_path)?;
    let threshold = job.threshold.unwrap_or(model.metadata().threshold);
    let model_version = model.metadata().version.clone();
    drop(model);
    if let Some(metrics) = &job.telemetry.metrics {
        metrics.set_model(&model_version);
    }
    let stats = Arc::new(Mutex::new(RunStats::default()));
    let state = Arc::new(Mutex::new(StateReport::default()));
    let started = Instant::now();
    let worker_stats = Arc::clone(&stats);
    let worker_state = Arc::clone(&state);
    let producer = match &job.output {
        Output::Kafka(producer) => Some(Arc::clone(producer)),
        Output::Files(_) | Output::Discard => None,
    };
    let guards = timely::execute(timely_config, move |worker| {
        let telemetry = &job.telemetry;
        let timing =
            telemetry.timing_interval.map(|every| operator_timing::install(worker, telemetry.metrics.clone(), every));
        let (model, layout) = load_model(&job.model_path).expect("the model loaded before the workers started");
        let input_names: Vec<String> = model.metadata().inputs.iter().map(|i| i.name.clone()).collect();
        let policy = DecisionPolicy {
            threshold,
            model_version: model.metadata().version.clone(),
            emit_features: job.emit_features.then_some(input_names),
            source: job.input.source_name(),
        };
        let parser = EventParser::new(layout.extras().clone()).with_timestamp_unit(job.timestamp_unit);
        let mut window = WindowConfig {
            rules: job.rules,
            extra_count: layout.extras().len(),
            attr_count: layout.extras().attributes().len(),
            report: Some(Arc::clone(&worker_state)),
            metrics: telemetry.metrics.clone(),
            checkpoints: None,
        };
        let entities = EntityConfig::new(layout.spec(), layout.extras());
        let probe = ProbeHandle::new();
        let barriers = SourceBarriers::new(job.checkpoints.as_ref().map(|c| c.interval), worker.index());
        let source_cfg = SourceConfig {
            block_len: job.tuning.block_len,
            max_in_flight: job.tuning.max_in_flight,
            partition: 0,
            stop: Arc::clone(&job.stop),
            probe: probe.clone(),
            rate: job.tuning.rate,
            barriers: barriers.clone(),
            start_block: job.checkpoints.as_ref().and_then(|c| c.restore.as_ref()).map_or(0, |r| r.epoch + 1),
        };
        let stats = Arc::clone(&worker_stats);
        let http_cfg = HttpSourceConfig {
            channel: telemetry.detect.clone(),
            main: ProbeHandle::new(),
            stop: Arc::clone(&job.stop),
        };
        let (index, peers) = (worker.index(), worker.peers());
        let (committer, completer) = worker.dataflow::<u64, _, _>(|scope| {
            let source = job.input.source(scope, parser.clone(), source_cfg)?;
            let completer = match &job.checkpoints {
                Some(cfg) => {
                    let (writer, completer) = worker_checkpoints(cfg, index, peers, source.position, &barriers)
                        .map_err(|e| format!("starting the checkpoint writer: {e}"))?;
                    window.checkpoints = Some(writer);
                    Some(completer)
                }
                None => None,
            };
            let events = source.stream.probe_with(&http_cfg.main).concat(http_source(scope, parser, http_cfg));
            let mut decided = events
                .window_state(window)
                .entity_windows(entities)
                .enrich(layout)
                .infer(model, threshold)
                .decide(policy);
            if let Some(metrics) = &telemetry.metrics {
                decided = decided.observe(ChunkRecorder::new(Arc::clone(metrics), job.input.kind()));
            }
            if let Some(detect) = &telemetry.detect {
                decided = decided.reply(Arc::clone(detect));
            }
            let done = match &job.output {
                Output::Files(files) => decided.sink_to(Arc::clone(files), stats),
                Output::Discard => decided.sink_to(DiscardSink, stats),
                Output::Kafka(producer) => decided.kafka_sink(Arc::clone(producer), stats),
            };
            done.probe_with(&probe);
            Ok::<_, String>((source.committer, completer))
        })?;
        let (mut committer, mut completer) = (committer, completer);
        let park = (committer.is_some() || completer.is_some()).then_some(WORKER_PARK);
        let mut lag_updated = Instant::now();
        let mut transactions = match (&job.checkpoints, &job.output, &committer) {
            (Some(cfg), Output::Kafka(producer), Some(c)) if index == 0 && cfg.transactions.is_some() => {
                Some(TransactionCommitter::new(cfg, Arc::clone(producer), c)?)
            }
            _ => None,
        };
        while worker.step_or_park(park) {
            let checkpointed = completer.as_mut().and_then(|c| c.tick(&probe));
            if let Some(transactions) = transactions.as_mut() {
                transactions.commit_completed()?;
            }
            if let Some(committer) = committer.as_mut() {
                if let Some(offsets) = &checkpointed {
                    committer.commit(offsets);
                }
                committer.tick(&probe);
                if let Some(metrics) = telemetry.metrics.as_ref().filter(|_| lag_updated.elapsed() >= LAG_INTERVAL) {
                    metrics.set_consumer_lag(&committer.partition_lag());
                    lag_updated = Instant::now();
                }
            }
        }
        if let Some(completer) = completer.as_mut() {
            completer.finish(&probe);
        }
        if let Some(transactions) = transactions.as_mut() {
            transactions.commit_completed()?;
        }
        if let Some(committer) = committer.as_mut() {
            committer.finish().map_err(|e| format!("committing the final Kafka offsets: {e}"))?;
        }
        if let Some(timing) = &timing {
            operator_timing::finish(worker, timing, telemetry.metrics.as_deref());
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
    let delivered_us = producer.map(|p| p.delivered_latency());
    Ok(ScoringReport { stats, delivered_us, state, elapsed, model_version, threshold })
}
