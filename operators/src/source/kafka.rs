//! The Kafka source: each worker reads its own partitions and commits their offsets only once
//! everything derived from them has been delivered.
//!
//! Partitions are assigned explicitly (partition p → global worker p mod workers), so every
//! worker of every process takes part and no group rebalance can move a partition mid-epoch.
//! Epochs are wall-clock milliseconds: a worker stamps what it reads with the current
//! millisecond and moves its capability forward even when idle, so the dataflow's frontier
//! (and with it the window state) advances on every worker. Reads are non-blocking polls in
//! batches; while more than `max_open_messages` messages are emitted but not yet delivered,
//! the worker stops polling (backpressure) instead of buffering.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Re-exported for the job's transaction committer.
pub use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, Stream};

use crate::batch::{BatchSizes, EventBatch, Origin, TimestampSource};
use crate::event::parse::{Envelope, EventParser};
use crate::source::kafka_client::{KafkaSettings, LoggingContext};
use crate::state::checkpoint::offsets::{OffsetLedger, PartitionOffsets};
use crate::state::checkpoint::protocol::SourceBarriers;
use crate::time::clock::{unix_ms, WallClock};
use crate::time::rfc3339::check_range_ms;

/// How long an idle or paused source waits before polling again.
const IDLE_POLL: Duration = Duration::from_millis(1);

/// One worker's consumer of its assigned partitions of the input topic.
pub struct PartitionConsumer {
    consumer: BaseConsumer<LoggingContext>,
    topic: String,
    partitions: Vec<i32>,
    /// Where reading started for partitions restored from a checkpoint.
    restored: PartitionOffsets,
}

impl PartitionConsumer {
    /// Connects and assigns `partitions` of `topic`, each starting at its offset in `restored`
    /// (a checkpoint's), else at the group's committed offset, else at the earliest one.
    pub fn connect(
        settings: &KafkaSettings,
        topic: &str,
        partitions: &[i32],
        restored: &PartitionOffsets,
    ) -> KafkaResult<Self> {
        let consumer: BaseConsumer<LoggingContext> = settings
            .client_config(&[
                ("group.id", &settings.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "20"),
                // librdkafka stops fetching a partition whose local queue is over its limits
                // for this long (default 1 s, and one compressed fetch response from nisshi can
                // overshoot them): a drained queue then idled the worker; 5 ms took a 2M-event
                // backlog from 122–129k to 301–356k events/s with 1 worker.
                ("fetch.queue.backoff.ms", "5"),
                ("queued.max.messages.kbytes", "16384"),
                ("statistics.interval.ms", "1000"),
            ])
            .create_with_context(LoggingContext::default())?;
        let mut assignment = TopicPartitionList::new();
        let restored: PartitionOffsets =
            restored.iter().filter(|(p, _)| partitions.contains(p)).map(|(&p, &next)| (p, next)).collect();
        for &partition in partitions {
            let start = restored.get(&partition).map_or(Offset::Stored, |&next| Offset::Offset(next));
            assignment.add_partition_offset(topic, partition, start)?;
        }
        consumer.assign(&assignment)?;
        Ok(PartitionConsumer { consumer, topic: topic.to_owned(), partitions: partitions.to_vec(), restored })
    }

    /// The partitions with messages left to read now, with their current end offsets: for
    /// `--stop-at-end`, which processes the backlog present at start and then stops.
    pub fn unread_ends(&self) -> KafkaResult<BTreeMap<i32, i64>> {
        let committed = self.consumer.committed(Duration::from_secs(30))?;
        let mut unread = BTreeMap::new();
        for &partition in &self.partitions {
            let (low, high) = self.consumer.fetch_watermarks(&self.topic, partition, Duration::from_secs(30))?;
            let start = match (self.restored.get(&partition), committed.find_partition(&self.topic, partition)) {
                (Some(&next), _) => next.max(low),
                (None, Some(entry)) => match entry.offset() {
                    Offset::Offset(next) => next.max(low),
                    _ => low,
                },
                (None, None) => low,
            };
            if start < high {
                unread.insert(partition, high);
            }
        }
        Ok(unread)
    }

    /// Commits `offsets` (next offsets to read) for the group.
    pub fn commit(&self, offsets: &PartitionOffsets, mode: CommitMode) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        }
        self.consumer.commit(&list, mode)
    }
}

/// When a worker commits its partitions' offsets to the consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPolicy {
    /// On the interval, what has been delivered (at-least-once without checkpoints).
    Delivered,
    /// The offsets of completed checkpoints ([`OffsetCommitter::commit`]), and at a clean stop
    /// what has been delivered.
    Checkpoints,
    /// Never by the consumer: the offsets go into the producer's transactions (exactly-once).
    Transactions,
}

/// How often a worker logs its Kafka progress (committed messages, consumer lag).
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Commits completed offsets every `interval` while the job runs and all of them at the end,
/// and logs the worker's progress and consumer lag every few seconds.
pub struct OffsetCommitter {
    consumer: Rc<PartitionConsumer>,
    ledger: Rc<RefCell<OffsetLedger>>,
    policy: CommitPolicy,
    interval: Duration,
    last: Instant,
    last_log: Instant,
    logged_committed: i64,
}

impl OffsetCommitter {
    pub fn new(
        consumer: Rc<PartitionConsumer>,
        ledger: Rc<RefCell<OffsetLedger>>,
        interval: Duration,
        policy: CommitPolicy,
    ) -> Self {
        let now = Instant::now();
        OffsetCommitter { consumer, ledger, policy, interval, last: now, last_log: now, logged_committed: -1 }
    }

    /// The consumer group's metadata, which a transaction commits input offsets for.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.consumer.group_metadata()
    }

    /// Commits a completed checkpoint's offsets of this worker's partitions.
    pub fn commit(&mut self, offsets: &PartitionOffsets) {
        if self.policy != CommitPolicy::Checkpoints {
            return;
        }
        let mut ledger = self.ledger.borrow_mut();
        match self.consumer.commit(offsets, CommitMode::Async) {
            Ok(()) => ledger.committed(offsets),
            Err(e) => tracing::warn!(target: "vigil::kafka", "checkpoint offset commit failed: {e}"),
        }
    }

    fn log_progress(&mut self, committed: i64) {
        let elapsed = self.last_log.elapsed();
        if elapsed < PROGRESS_LOG_INTERVAL {
            return;
        }
        if self.logged_committed >= 0 {
            let advanced = committed - self.logged_committed;
            tracing::info!(
                target: "vigil::kafka",
                topic = %self.consumer.topic,
                committed_per_s = (advanced as f64 / elapsed.as_secs_f64()).round(),
                consumer_lag = self.consumer.consumer.context().consumer_lag(),
                open_messages = self.ledger.borrow().open_messages(),
                "Kafka source progress"
            );
        }
        self.last_log = Instant::now();
        self.logged_committed = committed;
    }

    /// Commits what the end of the dataflow (`probe`) has passed, at most once per interval.
    pub fn tick(&mut self, probe: &ProbeHandle<u64>) {
        if self.last.elapsed() < self.interval {
            return;
        }
        self.last = Instant::now();
        let committed = {
            let mut ledger = self.ledger.borrow_mut();
            ledger.complete(|epoch| probe.less_equal(&epoch));
            if let Some(offsets) = ledger.to_commit().filter(|_| self.policy == CommitPolicy::Delivered) {
                match self.consumer.commit(&offsets, CommitMode::Async) {
                    Ok(()) => ledger.committed(&offsets),
                    Err(e) => tracing::warn!(target: "vigil::kafka", "offset commit failed, will retry: {e}"),
                }
            }
            ledger.committed_total()
        };
        self.log_progress(committed);
    }

    /// Messages of this worker's partitions not yet read, per partition.
    pub fn partition_lag(&self) -> BTreeMap<i32, i64> {
        self.consumer.consumer.context().partition_lag()
    }

    /// After the dataflow has finished: commits every completed offset and waits for the broker.
    pub fn finish(&mut self) -> KafkaResult<()> {
        let mut ledger = self.ledger.borrow_mut();
        ledger.complete(|_| false);
        match ledger.to_commit().filter(|_| self.policy != CommitPolicy::Transactions) {
            Some(offsets) => {
                self.consumer.commit(&offsets, CommitMode::Sync)?;
                ledger.committed(&offsets);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Settings of the Kafka source operator.
#[derive(Clone)]
pub struct KafkaSourceConfig {
    /// Most messages read per activation (one batch per destination worker).
    pub batch_len: usize,
    /// Most messages emitted but not yet delivered before the worker pauses reading.
    pub max_open_messages: u64,
    /// Set on SIGINT/SIGTERM: the source stops and the dataflow drains.
    pub stop: Arc<AtomicBool>,
    /// Frontier of the end of the dataflow (delivered output).
    pub probe: ProbeHandle<u64>,
    /// Stop once these partitions reach these end offsets (`None`: run until stopped).
    pub stop_at: Option<BTreeMap<i32, i64>>,
    /// The checkpoint barriers this source sends (default: none).
    pub barriers: SourceBarriers,
    /// Lowest epoch to use: past a restored checkpoint's, whatever the clock says.
    pub first_epoch: u64,
}

/// Builds this worker's Kafka source over `consumer`, noting emitted offsets in `ledger`.
pub fn kafka_source<'s>(
    scope: Scope<'s, u64>,
    consumer: Rc<PartitionConsumer>,
    ledger: Rc<RefCell<OffsetLedger>>,
    mut parser: EventParser,
    mut cfg: KafkaSourceConfig,
) -> Stream<'s, u64, Vec<EventBatch>> {
    let index = scope.index();
    let peers = scope.peers();
    source::<u64, CapacityContainerBuilder<Vec<EventBatch>>, _, _>(scope, "KafkaSource", move |mut capability, info| {
        let activator = scope.activator_for(info.address);
        capability.downgrade(&cfg.first_epoch);
        let mut capability = Some(capability);
        let mut barriers = cfg.barriers.clone();
        let mut sizes = BatchSizes::default();
        move |output| {
            let Some(cap) = capability.as_mut() else { return };
            let at_end = cfg.stop_at.as_ref().is_some_and(BTreeMap::is_empty);
            if at_end || cfg.stop.load(Ordering::Relaxed) {
                if let Some(last) = barriers.last() {
                    output.session(&*cap).give_iterator(EventBatch::markers(last, peers));
                }
                capability = None;
                return;
            }
            let mut ledger = ledger.borrow_mut();
            ledger.complete(|epoch| cfg.probe.less_equal(&epoch));
            let epoch = unix_ms().max(*cap.time());
            cap.downgrade(&epoch);
            if let Some(barrier) = barriers.periodic() {
                output.session(&*cap).give_iterator(EventBatch::markers(barrier, peers));
            }
            if ledger.open_messages() >= cfg.max_open_messages {
                activator.activate_after(IDLE_POLL);
                return;
            }
            // Latency is measured from each message's produce time, not from when vigil read it.
            let clock = WallClock::now();
            let mut batches: Vec<EventBatch> = (0..peers).map(|dest| sizes.batch(dest, clock.now_ns)).collect();
            for batch in &mut batches {
                batch.event_ingest_ns.reserve(batch.events.capacity());
            }
            let mut read = 0;
            while read < cfg.batch_len {
                let message = match consumer.consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        consumer.consumer.context().report(&format!("reading {}: {e}", consumer.topic));
                        break;
                    }
                    Some(Ok(message)) => message,
                };
                let origin = Origin { partition: message.partition() as u32, position: message.offset() as u64 };
                let dead_before = batches[index].dead.len();
                let message_ms = message.timestamp().to_millis();
                // SPEC §1: a record without `timestamp` takes its message's (as Flink does), the
                // same on every replay of the message.
                let envelope = Envelope {
                    timestamp: message_ms
                        .filter(|&ms| check_range_ms(ms).is_ok())
                        .map(|ms| (ms, TimestampSource::Message)),
                    event_id: None,
                };
                let payload = message.payload().unwrap_or_default();
                let parsed = parser.parse_enveloped(payload, origin, envelope, &mut batches, index);
                if let Some(dest) = parsed {
                    let produced = message_ms.map_or(clock.now_ns, |ms| clock.instant_of(ms));
                    batches[dest].event_ingest_ns.push(produced);
                }
                if let (Some(dead), Some(key)) = (batches[index].dead.get_mut(dead_before), message.key()) {
                    dead.key = Some(String::from_utf8_lossy(key).into_owned());
                }
                ledger.record(epoch, message.partition(), message.offset());
                if let Some(stop_at) = cfg.stop_at.as_mut() {
                    if stop_at.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
                        stop_at.remove(&message.partition());
                    }
                }
                read += 1;
            }
            if read > 0 {
                sizes.remember(&batches);
                let mut session = output.session(&*cap);
                for batch in batches.into_iter().filter(|b| !b.events.is_empty() || !b.dead.is_empty()) {
                    session.give(batch);
                }
            }
            if read == cfg.batch_len {
                activator.activate();
            } else {
                activator.activate_after(IDLE_POLL);
            }
        }
    })
}
