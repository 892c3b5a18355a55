//! Observe: adds each output chunk to the job's metrics and passes it on unchanged.
//!
//! Counters get one atomic add per chunk; latencies go into worker-local histograms that are
//! flushed to the shared ones once per chunk, so no metric is touched per event.

use std::sync::Arc;

use prometheus::local::LocalHistogram;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::batch::OutputChunk;
use crate::decide::dead_letter::DeadReason;
use crate::observe::metrics::Metrics;
use crate::time::clock::unix_ms;

/// Records chunks of one worker into the shared metrics.
pub struct ChunkRecorder {
    metrics: Arc<Metrics>,
    /// `vigil_events_total` label of the job's main source.
    source: &'static str,
    latency: LocalHistogram,
    event_time_lag: LocalHistogram,
}

impl ChunkRecorder {
    pub fn new(metrics: Arc<Metrics>, source: &'static str) -> Self {
        let latency = metrics.latency.local();
        let event_time_lag = metrics.event_time_lag.local();
        ChunkRecorder { metrics, source, latency, event_time_lag }
    }

    /// Adds one chunk's counts and latencies.
    pub fn record(&mut self, chunk: &OutputChunk) {
        let m = &self.metrics;
        let c = &chunk.counts;
        m.detections.inc_by(c.decisions);
        m.blocked.inc_by(c.blocked);
        m.late.inc_by(c.late);
        m.decisions.with_label_values(&["block"]).inc_by(c.blocked);
        m.decisions.with_label_values(&["approve"]).inc_by(c.decisions - c.blocked);
        for reason in DeadReason::ALL {
            let n = c.dead_by_reason[reason.index()];
            if n > 0 {
                m.dead_letters.with_label_values(&[reason.label()]).inc_by(n);
            }
        }
        let http = chunk.replies.len() as u64;
        m.events.with_label_values(&[self.source]).inc_by(c.decisions + c.dead_letters - http);
        if http > 0 {
            m.events.with_label_values(&["http"]).inc_by(http);
        }
        if c.decisions > 0 {
            m.inference_batch.observe(c.decisions as f64);
        }
        for &ns in &chunk.latencies_ns {
            self.latency.observe(ns as f64 / 1e9);
        }
        let now_ms = unix_ms() as i64;
        for &ts in &chunk.event_times_ms {
            self.event_time_lag.observe(now_ms.saturating_sub(ts).max(0) as f64 / 1e3);
        }
        self.latency.flush();
        self.event_time_lag.flush();
    }
}

/// Extension trait: `chunks.observe(recorder)`.
pub trait ObserveExt<'s> {
    /// Records every chunk into the metrics and passes it on.
    fn observe(self, recorder: ChunkRecorder) -> Stream<'s, u64, Vec<OutputChunk>>;
}

impl<'s> ObserveExt<'s> for Stream<'s, u64, Vec<OutputChunk>> {
    fn observe(self, mut recorder: ChunkRecorder) -> Stream<'s, u64, Vec<OutputChunk>> {
        self.unary::<CapacityContainerBuilder<Vec<OutputChunk>>, _, _, _>(Pipeline, "Observe", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for container in data {
                        container.iter().for_each(|chunk| recorder.record(chunk));
                        session.give_container(container);
                    }
                })
            }
        })
    }
}
