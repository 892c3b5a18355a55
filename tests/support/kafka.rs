//! A private nisshi broker per test (started and stopped by `scripts/kafka.sh`), a producer of
//! input lines, and an independent consumer of vigil's output topics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

pub const INPUT: &str = "anomaly-events";
pub const DECISIONS: &str = "anomaly-decisions";
pub const ALERTS: &str = "anomaly-alerts";
pub const DLQ: &str = "anomaly-dlq";

/// Input messages as (key, payload).
pub type Records = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// How a test broker stores its log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast, gone when the broker stops.
    Memory,
    /// sqlite in the broker's directory: survives a broker restart.
    Persistent,
}

/// A nisshi broker on a free loopback port with its own data directory, stopped on drop.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    storage: Storage,
}

impl Broker {
    /// Starts a broker and creates the SPEC §4 topics with `partitions` partitions.
    pub fn start(partitions: u32, storage: Storage) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let broker = Broker { port, dir: tempfile::tempdir().unwrap(), storage };
        broker.script(&["start"]);
        broker.script(&["topics", &partitions.to_string()]);
        broker
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
            .args(args)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DIR", self.dir.path());
        match self.storage {
            Storage::Memory => command.env("KAFKA_STORAGE", "memory://nisshi/"),
            Storage::Persistent => command.env_remove("KAFKA_STORAGE"),
        };
        command
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `scripts/kafka.sh ARGS` against this broker; panics with its output on failure.
    pub fn script(&self, args: &[&str]) {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "scripts/kafka.sh {args:?} failed (is nisshi installed? `scripts/kafka.sh install`):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `records` (key, payload) to the input topic, at most `rate` per second when
    /// given, and waits for the acknowledgements.
    pub fn produce(&self, records: &Records, rate: Option<f64>) {
        produce(&self.brokers(), records, rate);
    }
    /// The committed next offset of `group` for each partition of the input topic (None: none).
    pub fn committed(&self, group: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).set("group.id", group).create().unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(INPUT, p);
        }
        let list = consumer.committed_offsets(list, Duration::from_secs(30)).unwrap();
        (0..partitions)
            .map(|p| match list.find_partition(INPUT, p).unwrap().offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// End offsets (high watermarks) of the input topic's partitions.
    pub fn end_offsets(&self, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", self.brokers()).create().unwrap();
        (0..partitions).map(|p| consumer.fetch_watermarks(INPUT, p, Duration::from_secs(30)).unwrap().1).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.command(&["stop"]).output();
    }
}

/// Produces `records` (key, payload) to the input topic of `brokers`, at most `rate` per second
/// when given, and waits for the acknowledgements.
pub fn produce(brokers: &str, records: &Records, rate: Option<f64>) {
    let start = Instant::now();
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "8388608")
        .set("message.timeout.ms", "0")
        .create()
        .unwrap();
    for (i, (key, payload)) in records.iter().enumerate() {
        if let Some(rate) = rate.filter(|_| i % 1000 == 0) {
            let due = Duration::from_secs_f64(i as f64 / rate);
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(INPUT).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(e.to_string().contains("Queue full"), "produce failed: {e}");
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("the broker acknowledged every input message");
}

/// Everything read so far from vigil's output topics, by topic, as parsed JSON.
#[derive(Default)]
pub struct Outputs {
    pub by_topic: BTreeMap<String, Vec<Value>>,
    /// Distinct eventIds among the decisions.
    pub decided: BTreeSet<String>,
}

impl Outputs {
    pub fn topic(&self, topic: &str) -> &[Value] {
        self.by_topic.get(topic).map_or(&[], Vec::as_slice)
    }

    /// EventIds of the block decisions.
    pub fn blocked(&self) -> BTreeSet<String> {
        self.topic(DECISIONS)
            .iter()
            .filter(|d| d["decision"] == "block")
            .map(|d| d["eventId"].as_str().unwrap().to_owned())
            .collect()
    }

    fn add(&mut self, topic: &str, value: Value) {
        if topic == DECISIONS {
            self.decided.insert(value["eventId"].as_str().expect("decisions carry an eventId").to_owned());
        }
        self.by_topic.entry(topic.to_owned()).or_default().push(value);
    }
}

/// An independent reader of the output topics (plain rdkafka, no vigil code), from the start.
pub struct OutputReader {
    consumer: BaseConsumer,
    pub outputs: Outputs,
}

impl OutputReader {
    pub fn new(broker: &Broker) -> OutputReader {
        OutputReader::connect(&broker.brokers(), "read_uncommitted")
    }

    /// A reader of the output topics of `brokers` with the given `isolation.level`.
    pub fn connect(brokers: &str, isolation: &str) -> OutputReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("isolation.level", isolation)
            .set("group.id", "independent-checker")
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", "8388608")
            .create()
            .unwrap();
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(30)).unwrap();
        let mut list = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| [DECISIONS, ALERTS, DLQ].contains(&t.name())) {
            for partition in topic.partitions() {
                list.add_partition_offset(topic.name(), partition.id(), Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&list).unwrap();
        OutputReader { consumer, outputs: Outputs::default() }
    }

    /// Reads everything up to the current end of every assigned partition.
    pub fn read_to_end(&mut self) {
        let assignment = self.consumer.assignment().unwrap();
        let ends: Vec<(String, i32, i64)> = assignment
            .elements()
            .iter()
            .map(|e| {
                let (_, high) =
                    self.consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(30)).unwrap();
                (e.topic().to_owned(), e.partition(), high)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.caught_up(&ends) {
            assert!(Instant::now() < deadline, "could not read the output topics to their end");
            self.poll_one();
        }
    }

    fn caught_up(&self, ends: &[(String, i32, i64)]) -> bool {
        let position = self.consumer.position().unwrap();
        ends.iter().all(|(topic, partition, high)| {
            let at = position.find_partition(topic, *partition).map(|e| e.offset());
            *high == 0 || matches!(at, Some(Offset::Offset(o)) if o >= *high)
        })
    }

    /// Reads until `done(outputs)` holds; panics after `limit` with what it has.
    pub fn read_until(&mut self, limit: Duration, mut done: impl FnMut(&Outputs) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.outputs) {
            assert!(
                Instant::now() < deadline,
                "output incomplete after {limit:?}: {:?}",
                self.outputs.by_topic.iter().map(|(t, v)| (t.clone(), v.len())).collect::<Vec<_>>()
            );
            self.poll_one();
        }
    }

    fn poll_one(&mut self) {
        let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(200)) else { return };
        let value: Value = serde_json::from_slice(message.payload().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{} carries a non-JSON record: {e}", message.topic()));
        self.outputs.add(message.topic(), value);
    }
}

/// A noida-db broker (Kafka protocol with transactions, for the exactly-once tests) on a free
/// loopback port with its own data directory and the SPEC §4 topics; killed on drop.
pub struct TransactionalBroker {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TransactionalBroker {
    pub fn start(partitions: i32) -> TransactionalBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("noida-db")
            .args(["start", "--only", "kafka", "--kafka-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("noida-db is installed (scripts/test.sh installs it)");
        let broker = TransactionalBroker { port, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "noida-db did not listen on {port} within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.create_topics(partitions);
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn create_topics(&self, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.brokers()).create().unwrap();
        let topics: Vec<NewTopic> = [INPUT, DECISIONS, ALERTS, DLQ]
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)).set("max.message.bytes", "8388608"))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime.block_on(admin.create_topics(&topics, &AdminOptions::new())).unwrap();
        for result in results {
            result.unwrap_or_else(|(topic, e)| panic!("creating {topic} on noida-db: {e}"));
        }
    }
}

impl Drop for TransactionalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
