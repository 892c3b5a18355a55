//! What every Kafka client of vigil shares: broker address, client settings, librdkafka's log
//! routed into `tracing`, and the start-up check that the topics exist.
//!
//! librdkafka reconnects on its own with backoff; vigil only has to say clearly what is going
//! on, so transport errors are logged once per distinct message per [`ERROR_LOG_INTERVAL`]
//! instead of once per retry.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::state::checkpoint::offsets::PartitionOffsets;

/// How often the same client error is logged again while it persists.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where the brokers are and which consumer group vigil commits its offsets under.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// Consumer group of the input offsets (SPEC §4 default `vigil`).
    pub group: String,
    /// librdkafka properties from `--kafka-option KEY=VALUE` (security, tuning); they override
    /// vigil's own settings of every client.
    pub options: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Settings every client starts from, then the settings of its `role`, then the user's
    /// options.
    pub fn client_config(&self, role: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "vigil")
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in role {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

/// Parses one `--kafka-option KEY=VALUE`.
pub fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE (a librdkafka property)")),
    }
}

/// Client context that logs through `tracing`, rate-limiting repeated errors; as a producer
/// context it counts messages the broker finally refused.
#[derive(Default)]
pub struct LoggingContext {
    last_logged: Mutex<HashMap<String, Instant>>,
    failed_deliveries: AtomicU64,
    /// Messages not yet read per partition (end offset − next offset handed to vigil), from
    /// librdkafka's latest statistics (consumers only).
    lag: Mutex<BTreeMap<i32, i64>>,
}

impl LoggingContext {
    fn should_log(&self, message: &str) -> bool {
        let mut seen = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match seen.get(message) {
            Some(at) if now.duration_since(*at) < ERROR_LOG_INTERVAL => false,
            _ => {
                seen.insert(message.to_owned(), now);
                true
            }
        }
    }
}

impl LoggingContext {
    /// Messages this producer could not deliver.
    pub fn failed_deliveries(&self) -> u64 {
        self.failed_deliveries.load(Ordering::Relaxed)
    }

    /// Messages behind the end of the assigned partitions, as of the latest statistics (sent
    /// every `statistics.interval.ms`).
    pub fn consumer_lag(&self) -> i64 {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Messages not yet read, per partition (from the latest statistics).
    pub fn partition_lag(&self) -> BTreeMap<i32, i64> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Logs a client problem that librdkafka retries by itself (rate-limited).
    pub fn report(&self, message: &str) {
        if self.should_log(message) {
            tracing::warn!(target: "vigil::kafka", "Kafka problem (retrying): {message}");
        }
    }
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if !self.should_log(message) {
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "vigil::kafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "vigil::kafka", facility, "{message}"),
            _ => tracing::debug!(target: "vigil::kafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        for topic in statistics.topics.values() {
            for (&partition, stats) in &topic.partitions {
                if partition >= 0 && stats.app_offset >= 0 && stats.hi_offset >= 0 {
                    lag.insert(partition, (stats.hi_offset - stats.app_offset).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for LoggingContext {}

impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            self.report(&format!("message not delivered: {e}"));
        }
    }
}

/// Why the topics could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka topic `{0}` does not exist (create it with `scripts/kafka.sh topics`)")]
    Missing(String),
    #[error("Kafka client setup failed: {0}")]
    Client(#[from] KafkaError),
    #[error("stopped while waiting for the Kafka brokers")]
    Stopped,
}

/// Waits until the brokers answer, then returns the partition count of each topic.
///
/// A broker that is down at start is retried with exponential backoff (logged each time) until
/// it answers or `stopped()` says to give up; a missing topic is an error naming it.
pub fn wait_for_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    stopped: impl Fn() -> bool,
) -> Result<Vec<usize>, TopicError> {
    let consumer: BaseConsumer<LoggingContext> =
        settings.client_config(&[]).create_with_context(LoggingContext::default())?;
    let mut backoff = Duration::from_millis(200);
    loop {
        match partition_counts(&consumer, topics) {
            Ok(counts) => return Ok(counts),
            Err(TopicError::Client(e)) => {
                tracing::warn!(brokers = %settings.brokers, "Kafka brokers not reachable yet ({e}); retrying in {backoff:?}");
            }
            Err(other) => return Err(other),
        }
        let deadline = Instant::now() + backoff;
        while Instant::now() < deadline {
            if stopped() {
                return Err(TopicError::Stopped);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn partition_counts(consumer: &BaseConsumer<LoggingContext>, topics: &[&str]) -> Result<Vec<usize>, TopicError> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5))?;
    topics
        .iter()
        .map(|name| {
            let topic = metadata.topics().iter().find(|t| t.name() == *name);
            match topic {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
                Some(t) if t.error().map(RDKafkaErrorCode::from) != Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    Err(TopicError::Client(KafkaError::MetadataFetch(
                        t.error().map(RDKafkaErrorCode::from).unwrap_or(RDKafkaErrorCode::Unknown),
                    )))
                }
                _ => Err(TopicError::Missing((*name).to_owned())),
            }
        })
        .collect()
}

/// The consumer group's committed next offset of every partition of `topic` that has one.
pub fn committed_offsets(settings: &KafkaSettings, topic: &str, partitions: usize) -> KafkaResult<PartitionOffsets> {
    let consumer: BaseConsumer<LoggingContext> =
        settings.client_config(&[("group.id", &settings.group)]).create_with_context(LoggingContext::default())?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p as i32);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(30))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => Some((e.partition(), next)),
            _ => None,
        })
        .collect())
}

/// The partitions of a topic with `partition_count` partitions that global worker `worker` of
/// `workers` reads: partition p belongs to worker p mod workers.
pub fn partitions_of_worker(partition_count: usize, worker: usize, workers: usize) -> Vec<i32> {
    (0..partition_count).filter(|p| p % workers == worker).map(|p| p as i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_over_all_workers_once() {
        let mut seen = Vec::new();
        for worker in 0..3 {
            let mine = partitions_of_worker(8, worker, 3);
            assert!(mine.iter().all(|p| *p as usize % 3 == worker));
            seen.extend(mine);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<i32>>());
        assert!(partitions_of_worker(2, 3, 4).is_empty());
    }

    #[test]
    fn options_override_vigils_settings_and_must_be_key_value() {
        let mut settings = KafkaSettings { brokers: "b:1".into(), group: "g".into(), options: Vec::new() };
        settings.options.push(parse_option("fetch.wait.max.ms=5").unwrap());
        settings.options.push(parse_option(" security.protocol =SASL_SSL").unwrap());
        let config = settings.client_config(&[("fetch.wait.max.ms", "20"), ("linger.ms", "5")]);
        assert_eq!(config.get("fetch.wait.max.ms"), Some("5"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
        assert!(parse_option("novalue").is_err());
        assert!(parse_option("=x").is_err());
    }

    #[test]
    fn repeated_errors_are_rate_limited() {
        let context = LoggingContext::default();
        assert!(context.should_log("connection refused"));
        assert!(!context.should_log("connection refused"));
        assert!(context.should_log("another problem"));
    }
}
