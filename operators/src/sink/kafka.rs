//! The Kafka sink: decisions, alerts and dead letters to their topics, each epoch held open
//! until the broker has acknowledged all of its messages.
//!
//! One producer serves all workers of a process: fewer librdkafka threads competing for the
//! cores, fuller batches, and one idempotent producer id per process (concurrent id requests
//! from several producers of one process were seen to fence each other on the test broker).
//! Each message carries its worker and epoch as the delivery opaque, so acknowledgements are
//! counted per (worker, epoch).
//!
//! The producer is idempotent (no duplicates from its own retries), keyed by userId (a user's
//! decisions stay in order in one partition), LZ4-compressed and lingering a few milliseconds
//! to form batches. It never gives up on a message by timing out, so a broker outage only
//! delays delivery. The sink keeps a capability for every epoch with messages in flight; the
//! end-of-dataflow frontier therefore means "delivered", which is what the source commits
//! offsets against (at-least-once) and what bounds in-flight data (backpressure). A full
//! producer queue is not waited on: the rest of the chunk stays in a backlog and the operator
//! retries on its next activation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

use crate::batch::OutputChunk;
use crate::sink::file::{new_latency_histogram, RunStats};
use crate::source::kafka_client::{KafkaSettings, LoggingContext};
use crate::state::checkpoint::offsets::PartitionOffsets;
use crate::state::checkpoint::protocol::TransactionGate;
use crate::time::clock::{unix_us, WallClock};

/// How often a sink with messages in flight looks for acknowledgements.
const ACK_POLL: Duration = Duration::from_millis(1);

/// Output topics (SPEC §4).
#[derive(Clone, Debug)]
pub struct OutputTopics {
    pub decisions: String,
    pub alerts: String,
    pub dead_letters: String,
}

/// Bits of the delivery opaque that hold the worker index; the epoch sits above them.
const WORKER_BITS: u32 = 20;

/// Packs a worker index and an epoch into a delivery opaque (epochs are block numbers or Unix
/// milliseconds, both far below 2^44).
fn opaque(worker: usize, epoch: u64) -> usize {
    ((epoch << WORKER_BITS) | worker as u64) as usize
}

fn unpack(opaque: usize) -> (usize, u64) {
    let opaque = opaque as u64;
    ((opaque & ((1 << WORKER_BITS) - 1)) as usize, opaque >> WORKER_BITS)
}

/// Messages in flight per (worker, epoch), and the first delivery failure.
///
/// Counts are signed because an acknowledgement can arrive (on the producer's thread) before
/// the sending side has added the batch it belongs to; an epoch is settled when its count is
/// back to zero, and the sink only asks after adding.
struct Deliveries {
    in_flight: Mutex<BTreeMap<(usize, u64), i64>>,
    failure: Mutex<Option<String>>,
    /// Ingest time (a decision message's Kafka timestamp) → broker acknowledgement of each
    /// decision, microseconds.
    delivered_us: Mutex<Histogram<u64>>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            in_flight: Mutex::default(),
            failure: Mutex::default(),
            delivered_us: Mutex::new(new_latency_histogram()),
        }
    }
}

impl Deliveries {
    /// Records the delivery of a decision stamped with Unix time `stamp_ms` at Unix time
    /// `now_us`.
    fn delivered(&self, stamp_ms: i64, now_us: i64) {
        let latency_us = now_us.saturating_sub(stamp_ms.saturating_mul(1000)).max(1) as u64;
        self.delivered_us.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(latency_us);
    }

    fn add(&self, worker: usize, epoch: u64, messages: i64) {
        if messages == 0 {
            return;
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry((worker, epoch)).or_default();
        *count += messages;
        if *count == 0 {
            in_flight.remove(&(worker, epoch));
        }
    }
}

/// Producer context: logging plus delivery accounting.
struct DeliveryContext {
    logging: LoggingContext,
    deliveries: Arc<Deliveries>,
    decisions_topic: String,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logging.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logging.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(message) => {
                let (worker, epoch) = unpack(opaque);
                self.deliveries.add(worker, epoch, -1);
                if let Some(stamp_ms) = message.timestamp().to_millis() {
                    if message.topic() == self.decisions_topic {
                        self.deliveries.delivered(stamp_ms, unix_us() as i64);
                    }
                }
            }
            Err((error, _)) => {
                let mut failure = self.deliveries.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Where the sink is in a chunk it could not send completely.
#[derive(Default)]
struct Cursor {
    section: usize,
    byte: usize,
    row: usize,
}

/// The exactly-once side of a producer: its transactions and the gate its sinks obey.
struct Transactions {
    gate: Arc<TransactionGate>,
    input_topic: String,
}

/// How long transactional calls may wait for the broker.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The process's producer of decisions, alerts and dead letters, shared by its workers' sinks.
pub struct KafkaProducer {
    producer: ThreadedProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    topics: OutputTopics,
    transactions: Option<Transactions>,
}

impl KafkaProducer {
    /// Creates the idempotent, keyed, compressed producer of `topics`.
    pub fn connect(settings: &KafkaSettings, topics: OutputTopics) -> Result<Arc<Self>, KafkaError> {
        Ok(Arc::new(Self::create(settings, topics, &[])?))
    }

    fn create(settings: &KafkaSettings, topics: OutputTopics, extra: &[(&str, &str)]) -> KafkaResult<Self> {
        let deliveries = Arc::new(Deliveries::default());
        let context = DeliveryContext {
            logging: LoggingContext::default(),
            deliveries: Arc::clone(&deliveries),
            decisions_topic: topics.decisions.clone(),
        };
        let mut role = vec![
            ("enable.idempotence", "true"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "0"),
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "1048576"),
        ];
        role.extend_from_slice(extra);
        let producer = settings.client_config(&role).create_with_context(context)?;
        Ok(KafkaProducer { producer, deliveries, topics, transactions: None })
    }

    /// Creates a transactional producer (exactly-once): `transactional_id` must be the same
    /// across restarts of this process, so the new producer fences the crashed one and aborts
    /// its open transaction. Output of one checkpoint interval is one transaction, committed
    /// together with the checkpoint's input offsets of `input_topic`.
    pub fn connect_transactional(
        settings: &KafkaSettings,
        topics: OutputTopics,
        transactional_id: &str,
        input_topic: &str,
    ) -> KafkaResult<(Arc<Self>, Arc<TransactionGate>)> {
        // librdkafka requires a finite delivery timeout for transactions.
        let timeout_ms = TRANSACTION_TIMEOUT.as_millis().to_string();
        let mut producer = Self::create(
            settings,
            topics,
            &[("transactional.id", transactional_id), ("message.timeout.ms", &timeout_ms)],
        )?;
        producer.producer.init_transactions(TRANSACTION_TIMEOUT)?;
        producer.producer.begin_transaction()?;
        let gate = Arc::new(TransactionGate::default());
        producer.transactions = Some(Transactions { gate: Arc::clone(&gate), input_topic: input_topic.to_owned() });
        Ok((Arc::new(producer), gate))
    }

    /// Exactly-once: commits the open transaction — the output of every epoch up to the
    /// checkpoint of `epoch` — together with the checkpoint's input offsets for `group`, then
    /// opens the next one and lets the sinks go on.
    pub fn commit_checkpoint(
        &self,
        epoch: u64,
        offsets: &PartitionOffsets,
        group: &ConsumerGroupMetadata,
    ) -> KafkaResult<()> {
        let Some(transactions) = &self.transactions else { return Ok(()) };
        self.producer.flush(TRANSACTION_TIMEOUT)?;
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in offsets {
            list.add_partition_offset(&transactions.input_topic, partition, Offset::Offset(next))?;
        }
        if list.count() > 0 {
            self.producer.send_offsets_to_transaction(&list, group, TRANSACTION_TIMEOUT)?;
        }
        self.producer.commit_transaction(TRANSACTION_TIMEOUT)?;
        self.producer.begin_transaction()?;
        transactions.gate.committed(epoch);
        Ok(())
    }

    /// Whether a sink may produce output of `epoch` now (always, outside exactly-once mode).
    fn open_for(&self, epoch: u64) -> bool {
        self.transactions.as_ref().is_none_or(|t| t.gate.open_for(epoch))
    }

    /// Sends the rest of `chunk` from `cursor`; false when the producer queue filled up first.
    fn send_chunk(&self, worker: usize, epoch: u64, chunk: &OutputChunk, cursor: &mut Cursor) -> bool {
        let clock = WallClock::now();
        while let Some((topic, lines)) = self.section(chunk, cursor.section) {
            let mut sent = 0;
            let mut complete = true;
            while cursor.byte < lines.len() {
                let end = memchr::memchr(b'\n', &lines[cursor.byte..]).map_or(lines.len(), |i| cursor.byte + i);
                let payload = &lines[cursor.byte..end];
                let decision = decision_row(chunk, cursor.section, cursor.row);
                let key = match decision {
                    Some(row) => Some(chunk.decision_keys[row]),
                    None => chunk.dead_keys[cursor.row],
                };
                let mut record = BaseRecord::with_opaque_to(topic, opaque(worker, epoch)).payload(payload);
                if let Some(key) = key {
                    record = record.key(key.str(&chunk.keys).as_bytes());
                }
                if let Some(row) = decision {
                    // As Kafka Streams does, a decision carries its event's timestamp: here the
                    // ingest time (the input message's produce time when reading Kafka).
                    let ingest_ns = chunk.rendered_ns.saturating_sub(chunk.latencies_ns[row]);
                    record = record.timestamp(clock.unix_ms_of(ingest_ns));
                }
                match self.producer.send(record) {
                    Ok(()) => {
                        sent += 1;
                        cursor.byte = end + 1;
                        cursor.row += 1;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        complete = false;
                        break;
                    }
                    Err((e, _)) => panic!("Kafka producer refused a message for {topic}: {e}"),
                }
            }
            self.deliveries.add(worker, epoch, sent);
            if !complete {
                return false;
            }
            *cursor = Cursor { section: cursor.section + 1, ..Cursor::default() };
        }
        true
    }

    /// Topic and lines of section `index` of a chunk: decisions, alerts, dead letters.
    fn section<'c>(&'c self, chunk: &'c OutputChunk, index: usize) -> Option<(&'c str, &'c [u8])> {
        match index {
            0 => Some((&self.topics.decisions, &chunk.decisions)),
            1 => Some((&self.topics.alerts, &chunk.alerts)),
            2 => Some((&self.topics.dead_letters, &chunk.dead_letters)),
            _ => None,
        }
    }

    /// Ingest → broker acknowledgement of each decision delivered so far, microseconds
    /// (millisecond precision: Kafka timestamps are milliseconds).
    pub fn delivered_latency(&self) -> Histogram<u64> {
        self.deliveries.delivered_us.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn in_flight(&self, worker: usize, epoch: u64) -> bool {
        self.deliveries.in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&(worker, epoch))
    }

    fn check_failure(&self) {
        if let Some(failure) = self.deliveries.failure.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            panic!("Kafka delivery failed: {failure}; offsets after the last delivered epoch stay uncommitted");
        }
    }
}

/// The decision behind line `row` of section `section` (see [`KafkaProducer::section`]): alerts
/// repeat decisions; dead letters have none.
fn decision_row(chunk: &OutputChunk, section: usize, row: usize) -> Option<usize> {
    match section {
        0 => Some(row),
        1 => Some(chunk.alert_rows[row] as usize),
        _ => None,
    }
}

/// Extension trait: `chunks.kafka_sink(producer, stats)`.
pub trait KafkaSinkExt<'s> {
    /// Produces every chunk to Kafka; the returned stream's frontier passes an epoch once all of
    /// its messages are acknowledged. Merges this worker's stats into `stats` at the end.
    fn kafka_sink(self, producer: Arc<KafkaProducer>, stats: Arc<Mutex<RunStats>>) -> Stream<'s, u64, Vec<()>>;
}

impl<'s> KafkaSinkExt<'s> for Stream<'s, u64, Vec<OutputChunk>> {
    fn kafka_sink(self, producer: Arc<KafkaProducer>, stats: Arc<Mutex<RunStats>>) -> Stream<'s, u64, Vec<()>> {
        let scope = self.scope();
        let worker = scope.index();
        self.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            "KafkaSink",
            move |_, info| {
                let activator = scope.activator_for(info.address);
                let mut held: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
                let mut backlog: VecDeque<(u64, OutputChunk)> = VecDeque::new();
                let mut cursor = Cursor::default();
                let mut mine = RunStats::default();
                let mut merged = false;
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(cap) = cap.retain_least(output.output_index()) else { return };
                        let epoch = *cap.time();
                        held.entry(epoch).or_insert(cap);
                        for chunk in data.flat_map(|d| d.drain(..)) {
                            mine.record(&chunk);
                            backlog.push_back((epoch, chunk));
                        }
                    });
                    while let Some((epoch, chunk)) = backlog.front() {
                        if !producer.open_for(*epoch) || !producer.send_chunk(worker, *epoch, chunk, &mut cursor) {
                            break;
                        }
                        backlog.pop_front();
                        cursor = Cursor::default();
                    }
                    producer.check_failure();
                    let oldest_backlog = backlog.front().map(|(epoch, _)| *epoch);
                    held.retain(|epoch, _| {
                        frontier.less_equal(epoch)
                            || oldest_backlog.is_some_and(|b| b <= *epoch)
                            || producer.in_flight(worker, *epoch)
                    });
                    if !held.is_empty() || !backlog.is_empty() {
                        activator.activate_after(ACK_POLL);
                    } else if frontier.is_empty() && !merged {
                        merged = true;
                        stats.lock().unwrap_or_else(|p| p.into_inner()).merge(&mine);
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips_worker_and_epoch() {
        for (worker, epoch) in [(0, 0), (1, 1_764_072_000_123), ((1 << WORKER_BITS) - 1, 12_345)] {
            assert_eq!(unpack(opaque(worker, epoch)), (worker, epoch));
        }
    }

    #[test]
    fn delivered_latency_counts_from_the_stamp_to_the_acknowledgement() {
        let deliveries = Deliveries::default();
        deliveries.delivered(1_764_072_000_000, 1_764_072_000_000_000 + 12_500);
        deliveries.delivered(1_764_072_000_000, 1_764_072_000_000_000 + 40_000);
        deliveries.delivered(1_764_072_000_100, 1_764_072_000_000_000);
        let h = deliveries.delivered_us.lock().unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 1, "an acknowledgement before the stamp (clock step) counts as 1 µs");
        assert!(h.equivalent(h.value_at_quantile(0.5), 12_500));
        assert!(h.equivalent(h.max(), 40_000));
    }

    #[test]
    fn early_acknowledgements_settle_when_the_send_is_counted() {
        let deliveries = Deliveries::default();
        deliveries.add(1, 7, -1);
        deliveries.add(1, 7, 2);
        assert!(deliveries.in_flight.lock().unwrap().contains_key(&(1, 7)));
        deliveries.add(1, 7, -1);
        assert!(deliveries.in_flight.lock().unwrap().is_empty());
    }
}
