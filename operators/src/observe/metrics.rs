//! The job's Prometheus metrics, defined in one place (SPEC §6 names plus vigil's own).
//!
//! One [`Metrics`] per process, shared by its workers and the HTTP server. Operators never
//! touch a metric per event: they add a batch's counts with one atomic add per counter, and
//! record per-event latencies into a worker-local histogram that is flushed once per batch
//! (see `observe/chunks.rs`). Every metric carries the constant label `process`; metrics kept per
//! worker also carry `worker`.

use std::collections::{BTreeMap, HashMap};

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, CounterVec, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::decide::dead_letter::DeadReason;

/// Why metrics could not be set up (a bug: names and labels are static).
pub type MetricsError = prometheus::Error;

/// Every metric of the job.
pub struct Metrics {
    registry: Registry,
    /// SPEC §6 `anomaly_detection_total`: decisions emitted.
    pub detections: IntCounter,
    /// SPEC §6 `anomaly_detection_blocked_total`.
    pub blocked: IntCounter,
    /// SPEC §6 `anomaly_detection_latency_seconds`: ingest → decision rendered.
    pub latency: Histogram,
    /// Wall clock at the decision minus the event's own timestamp.
    pub event_time_lag: Histogram,
    /// SPEC §6 `anomaly_dead_letters_total`, by [`DeadReason`].
    pub dead_letters: IntCounterVec,
    /// SPEC §6 `late_events_total`.
    pub late: IntCounter,
    /// Input records (decisions + dead letters) by source.
    pub events: IntCounterVec,
    /// Decisions by outcome (`approve`, `block`).
    pub decisions: IntCounterVec,
    /// Users held in the window state, per worker.
    pub state_users: IntGaugeVec,
    /// Users dropped as idle (SPEC §2), per worker.
    pub state_evictions: IntCounterVec,
    /// 1, labelled with the model's version.
    pub model_info: IntGaugeVec,
    /// Events per inference batch (one forward pass each).
    pub inference_batch: Histogram,
    /// SPEC §6 Kafka consumer lag: messages not yet read, per input partition.
    pub consumer_lag: IntGaugeVec,
    /// SPEC §6 per-operator scheduling time.
    pub operator_busy: CounterVec,
    pub operator_activations: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric, labelled with this process's index.
    pub fn new(process: usize) -> Result<Metrics, MetricsError> {
        let labels = HashMap::from([("process".to_owned(), process.to_string())]);
        let registry = Registry::new_custom(None, Some(labels))?;
        let latency_buckets = exponential_buckets(0.000_1, 2.0, 18)?;
        let metrics = Metrics {
            detections: IntCounter::new("anomaly_detection_total", "Decisions emitted")?,
            blocked: IntCounter::new("anomaly_detection_blocked_total", "Decisions that blocked the event")?,
            latency: Histogram::with_opts(
                HistogramOpts::new("anomaly_detection_latency_seconds", "Time from ingestion to the decision")
                    .buckets(latency_buckets),
            )?,
            event_time_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "anomaly_event_time_lag_seconds",
                    "Wall clock at the decision minus the event's own timestamp",
                )
                .buckets(exponential_buckets(0.01, 5.0, 16)?),
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new("anomaly_dead_letters_total", "Bad records and duplicates sent to the dead-letter output"),
                &["reason"],
            )?,
            late: IntCounter::new("late_events_total", "Events later than the allowed lateness")?,
            events: IntCounterVec::new(Opts::new("vigil_events_total", "Input records by source"), &["source"])?,
            decisions: IntCounterVec::new(Opts::new("vigil_decisions_total", "Decisions by outcome"), &["outcome"])?,
            state_users: IntGaugeVec::new(
                Opts::new("vigil_state_users", "Users held in the window state"),
                &["worker"],
            )?,
            state_evictions: IntCounterVec::new(
                Opts::new("vigil_state_evicted_users_total", "Idle users dropped from the window state"),
                &["worker"],
            )?,
            model_info: IntGaugeVec::new(Opts::new("vigil_model_info", "The model in use"), &["version"])?,
            inference_batch: Histogram::with_opts(
                HistogramOpts::new("vigil_inference_batch_events", "Events per inference batch")
                    .buckets(exponential_buckets(1.0, 4.0, 10)?),
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new("kafka_consumer_lag_messages", "Messages of an input partition not yet read"),
                &["partition"],
            )?,
            operator_busy: CounterVec::new(
                Opts::new("vigil_operator_busy_seconds_total", "Time a timely operator was scheduled"),
                &["operator", "worker"],
            )?,
            operator_activations: IntCounterVec::new(
                Opts::new("vigil_operator_activations_total", "Times a timely operator was scheduled"),
                &["operator", "worker"],
            )?,
            registry,
        };
        metrics.register_all()?;
        for reason in DeadReason::ALL {
            metrics.dead_letters.with_label_values(&[reason.label()]);
        }
        for outcome in ["approve", "block"] {
            metrics.decisions.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), MetricsError> {
        let collectors: [Box<dyn Collector>; 15] = [
            Box::new(self.detections.clone()),
            Box::new(self.blocked.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.event_time_lag.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.late.clone()),
            Box::new(self.events.clone()),
            Box::new(self.decisions.clone()),
            Box::new(self.state_users.clone()),
            Box::new(self.state_evictions.clone()),
            Box::new(self.model_info.clone()),
            Box::new(self.inference_batch.clone()),
            Box::new(self.consumer_lag.clone()),
            Box::new(self.operator_busy.clone()),
            Box::new(self.operator_activations.clone()),
        ];
        collectors.into_iter().try_for_each(|c| self.registry.register(c))
    }

    /// Marks `version` as the model in use.
    pub fn set_model(&self, version: &str) {
        self.model_info.with_label_values(&[version]).set(1);
    }

    /// Replaces the per-partition consumer lag.
    pub fn set_consumer_lag(&self, lag: &BTreeMap<i32, i64>) {
        for (partition, messages) in lag {
            self.consumer_lag.with_label_values(&[&partition.to_string()]).set(*messages);
        }
    }

    /// Input records processed so far (decisions + dead letters).
    pub fn records_processed(&self) -> u64 {
        self.detections.get()
            + DeadReason::ALL.iter().map(|r| self.dead_letters.with_label_values(&[r.label()]).get()).sum::<u64>()
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which static
        // definitions cannot produce.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_metrics_with_process_label() {
        let metrics = Metrics::new(3).unwrap();
        metrics.detections.inc_by(5);
        metrics.latency.observe(0.002);
        metrics.set_model("mlp-x");
        let text = metrics.render();
        for name in [
            "anomaly_detection_total",
            "anomaly_detection_blocked_total",
            "anomaly_detection_latency_seconds_bucket",
            "anomaly_dead_letters_total",
            "late_events_total",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} missing:\n{text}");
        }
        assert!(text.contains("anomaly_detection_total{process=\"3\"} 5"), "{text}");
        assert!(text.contains("vigil_model_info{version=\"mlp-x\",process=\"3\"} 1"), "{text}");
        assert!(text.contains("anomaly_dead_letters_total{reason=\"duplicate\",process=\"3\"} 0"), "{text}");
    }
}
