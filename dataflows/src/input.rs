//! Job inputs (file, built-in generator or Kafka topic) and the source stream they become.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use operators::batch::EventBatch;
use operators::decide::dead_letter::SourceName;
use operators::event::parse::EventParser;
use operators::generator::GeneratorConfig;
use operators::source::block::{block_source, SourceConfig};
use operators::source::file::{LineReader, SharedFile};
use operators::source::generator::GeneratorReader;
use operators::source::kafka::{kafka_source, CommitPolicy, KafkaSourceConfig, OffsetCommitter, PartitionConsumer};
use operators::source::kafka_client::{partitions_of_worker, KafkaSettings};
use operators::state::checkpoint::offsets::{OffsetLedger, PartitionOffsets};
use operators::state::checkpoint::protocol::SourcePosition;
use timely::dataflow::{Scope, Stream};

/// Where a job's events come from.
#[derive(Clone)]
pub enum JobInput {
    /// A JSON-lines file, mapped once and read by all workers (or JSON lines held in memory,
    /// named by `path` in dead letters).
    File { path: PathBuf, bytes: SharedFile },
    /// The deterministic built-in generator.
    Generator(GeneratorConfig),
    /// A Kafka topic, its partitions spread over all workers.
    Kafka(KafkaInput),
}

/// A Kafka input topic.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    pub settings: KafkaSettings,
    pub topic: String,
    /// Partition count of `topic`, read from the broker at start.
    pub partitions: usize,
    /// Process the messages present at start, then stop (backlogs, benchmarks).
    pub stop_at_end: bool,
    /// Where to start reading, from a restored checkpoint (other partitions start at the
    /// group's committed offsets).
    pub restored: PartitionOffsets,
    /// When offsets are committed to the group.
    pub commit: CommitPolicy,
}

/// A worker's source: its stream, the committer of its Kafka offsets, and its position.
pub struct WorkerSource<'s> {
    pub stream: EventStream<'s>,
    /// For Kafka: to be ticked while the worker runs and finished when the dataflow is done.
    pub committer: Option<OffsetCommitter>,
    /// The source's position through an epoch, for checkpoints.
    pub position: SourcePosition,
}

/// Parsed events leaving a source.
pub type EventStream<'s> = Stream<'s, u64, Vec<EventBatch>>;

/// How often completed input offsets are committed while a Kafka job runs.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);

impl JobInput {
    /// Opens a JSON-lines file.
    pub fn file(path: PathBuf) -> std::io::Result<JobInput> {
        let bytes = SharedFile::open(&path)?;
        Ok(JobInput::File { path, bytes })
    }

    /// How dead letters name positions of this input.
    pub fn source_name(&self) -> SourceName {
        match self {
            JobInput::File { path, .. } => SourceName::File(path.display().to_string()),
            JobInput::Generator(_) => SourceName::Generator,
            JobInput::Kafka(kafka) => SourceName::Kafka(kafka.topic.clone()),
        }
    }

    /// Identity of the input, recorded in checkpoints: a restore must read the same input.
    pub fn describe(&self) -> String {
        match self {
            JobInput::File { path, .. } => format!("file:{}", path.display()),
            JobInput::Generator(g) => format!(
                "generator:events={},users={},fraud_rate={},seed={},start_ms={},span_ms={}",
                g.events, g.users, g.fraud_rate, g.seed, g.start_ms, g.span_ms
            ),
            JobInput::Kafka(kafka) => format!("kafka:{}", kafka.topic),
        }
    }

    /// The `vigil_events_total` source label of this input.
    pub fn kind(&self) -> &'static str {
        match self {
            JobInput::File { .. } => "file",
            JobInput::Generator(_) => "generator",
            JobInput::Kafka(_) => "kafka",
        }
    }

    /// Builds this worker's source operator.
    pub fn source<'s>(
        &self,
        scope: Scope<'s, u64>,
        parser: EventParser,
        cfg: SourceConfig,
    ) -> Result<WorkerSource<'s>, String> {
        let stream = match self {
            JobInput::File { bytes, .. } => {
                block_source(scope, "FileSource", LineReader::new(bytes.clone()), parser, cfg)
            }
            JobInput::Generator(g) => {
                block_source(scope, "GeneratorSource", GeneratorReader::new(g.clone()), parser, cfg)
            }
            JobInput::Kafka(kafka) => {
                let partitions = partitions_of_worker(kafka.partitions, scope.index(), scope.peers());
                let consumer = PartitionConsumer::connect(&kafka.settings, &kafka.topic, &partitions, &kafka.restored)
                    .map_err(|e| format!("connecting the Kafka consumer of {}: {e}", kafka.topic))?;
                let stop_at = match kafka.stop_at_end {
                    true => Some(consumer.unread_ends().map_err(|e| format!("reading end offsets: {e}"))?),
                    false => None,
                };
                let consumer = Rc::new(consumer);
                let ledger = Rc::new(RefCell::new(OffsetLedger::default()));
                let source_cfg = KafkaSourceConfig {
                    batch_len: KAFKA_POLL_BATCH,
                    max_open_messages: KAFKA_POLL_BATCH as u64 * cfg.max_in_flight,
                    stop: cfg.stop,
                    probe: cfg.probe,
                    stop_at,
                    barriers: cfg.barriers,
                    first_epoch: cfg.start_block,
                };
                let stream = kafka_source(scope, Rc::clone(&consumer), Rc::clone(&ledger), parser, source_cfg);
                let committer = OffsetCommitter::new(consumer, Rc::clone(&ledger), COMMIT_INTERVAL, kafka.commit);
                let position: SourcePosition = Rc::new(move |epoch| ledger.borrow().next_through(epoch));
                return Ok(WorkerSource { stream, committer: Some(committer), position });
            }
        };
        Ok(WorkerSource { stream, committer: None, position: Rc::new(|_| PartitionOffsets::new()) })
    }
}

/// Messages a Kafka worker reads per poll round; times `max_in_flight`, the messages it may
/// have undelivered. Kafka epochs are wall-clock milliseconds, not blocks, so `block_len`
/// does not apply: reading 2048 per round cost ~15 % of the backlog throughput through nisshi.
const KAFKA_POLL_BATCH: usize = 4096;

/// Sizes that trade latency for throughput.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Records per epoch.
    pub block_len: usize,
    /// Epochs in flight between sources and the end of the dataflow.
    pub max_in_flight: u64,
    /// Offered load, records per second over all workers (`None`: as fast as possible).
    pub rate: Option<f64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { block_len: 2048, max_in_flight: 8, rate: None }
    }
}
