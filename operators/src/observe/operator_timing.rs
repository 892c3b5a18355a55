//! Per-operator timings from timely's own log: how often each operator was scheduled and for
//! how long, per worker — the answer to "which operator is the bottleneck?".
//!
//! Timely logs `Operates` (id, address, name) when an operator is built and `Schedule`
//! start/stop around every activation. Scopes (a dataflow, a region) are scheduled around
//! their children, so only leaf operators are counted: busy times then add up to at most the
//! worker's wall time. The log arrives in batches (timely flushes it when its buffer is full
//! and whenever the worker parks), so the counters and the periodic summary cost nothing per
//! activation beyond timely's own log record.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Counter, IntCounter};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

use crate::observe::metrics::Metrics;

struct Operator {
    name: String,
    scope: bool,
    activations: u64,
    busy: Duration,
    exported: (u64, Duration),
    counters: Option<(IntCounter, Counter)>,
}

/// One operator's totals on one worker.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorSummary {
    pub name: String,
    pub id: usize,
    pub activations: u64,
    pub busy: Duration,
}

/// The timings of one worker's operators.
pub struct OperatorTimes {
    worker: usize,
    operators: HashMap<usize, Operator>,
    by_address: HashMap<Vec<usize>, usize>,
    /// Activations in progress (scopes nest their children's).
    open: Vec<(usize, Duration)>,
    started: Instant,
    last_log: Instant,
}

impl OperatorTimes {
    /// Empty timings of worker `worker`.
    pub fn new(worker: usize) -> Self {
        let now = Instant::now();
        OperatorTimes {
            worker,
            operators: HashMap::new(),
            by_address: HashMap::new(),
            open: Vec::new(),
            started: now,
            last_log: now,
        }
    }

    /// Applies one log event (`time`: since the worker's log origin).
    pub fn apply(&mut self, time: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(op) => {
                if let Some(parent) = op.addr.split_last().and_then(|(_, p)| self.by_address.get(p)) {
                    if let Some(parent) = self.operators.get_mut(parent) {
                        parent.scope = true;
                    }
                }
                // A scope logs its own `Operates` after its children's.
                let scope = self.by_address.keys().any(|a| a.len() > op.addr.len() && a.starts_with(&op.addr));
                self.by_address.insert(op.addr.clone(), op.id);
                let operator = Operator {
                    name: op.name.clone(),
                    scope,
                    activations: 0,
                    busy: Duration::ZERO,
                    exported: (0, Duration::ZERO),
                    counters: None,
                };
                self.operators.insert(op.id, operator);
            }
            TimelyEvent::Schedule(s) => match s.start_stop {
                StartStop::Start => self.open.push((s.id, time)),
                StartStop::Stop => {
                    let Some((id, start)) = self.open.pop() else { return };
                    if let Some(op) = self.operators.get_mut(&id) {
                        op.activations += 1;
                        op.busy += time.saturating_sub(start);
                    }
                }
            },
            _ => {}
        }
    }

    /// Leaf operators, busiest first.
    pub fn summary(&self) -> Vec<OperatorSummary> {
        let mut out: Vec<OperatorSummary> = self
            .operators
            .iter()
            .filter(|(_, op)| !op.scope)
            .map(|(&id, op)| OperatorSummary { name: op.name.clone(), id, activations: op.activations, busy: op.busy })
            .collect();
        out.sort_by(|a, b| b.busy.cmp(&a.busy).then(a.id.cmp(&b.id)));
        out
    }

    /// Adds what changed since the last export to the Prometheus counters.
    pub fn export(&mut self, metrics: &Metrics) {
        let worker = self.worker.to_string();
        for op in self.operators.values_mut().filter(|op| !op.scope) {
            let (activations, busy) = op.exported;
            if op.activations == activations {
                continue;
            }
            let (count, seconds) = op.counters.get_or_insert_with(|| {
                let labels = [op.name.as_str(), worker.as_str()];
                (
                    metrics.operator_activations.with_label_values(&labels),
                    metrics.operator_busy.with_label_values(&labels),
                )
            });
            count.inc_by(op.activations - activations);
            seconds.inc_by(op.busy.saturating_sub(busy).as_secs_f64());
            op.exported = (op.activations, op.busy);
        }
    }

    /// Logs one line per operator, busiest first, with its share of the worker's wall time.
    pub fn log(&mut self, last: bool) {
        self.last_log = Instant::now();
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        for op in self.summary() {
            let busy_s = op.busy.as_secs_f64();
            tracing::info!(
                target: "vigil::timing",
                last,
                worker = self.worker,
                operator = %op.name,
                id = op.id,
                activations = op.activations,
                busy_s = format_args!("{busy_s:.6}"),
                share_pct = format_args!("{:.1}", 100.0 * busy_s / wall),
                wall_s = format_args!("{wall:.3}"),
                "operator time"
            );
        }
    }
}

/// Collects this worker's operator timings from timely's log: exports them to `metrics` as
/// the log arrives and logs a summary every `interval`. Call before building dataflows.
pub fn install(worker: &Worker, metrics: Option<Arc<Metrics>>, interval: Duration) -> Rc<RefCell<OperatorTimes>> {
    let times = Rc::new(RefCell::new(OperatorTimes::new(worker.index())));
    let shared = Rc::clone(&times);
    if let Some(mut registry) = worker.log_register() {
        registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            let mut times = shared.borrow_mut();
            if let Some(events) = data {
                for (time, event) in events.drain(..) {
                    times.apply(time, &event);
                }
            }
            if let Some(metrics) = &metrics {
                times.export(metrics);
            }
            if times.last_log.elapsed() >= interval {
                times.log(false);
            }
        });
    }
    times
}

/// Delivers the worker's buffered log, exports it and logs the final summary.
pub fn finish(worker: &Worker, times: &RefCell<OperatorTimes>, metrics: Option<&Metrics>) {
    if let Some(mut registry) = worker.log_register() {
        registry.flush();
        registry.remove("timely");
    }
    let mut times = times.borrow_mut();
    if let Some(metrics) = metrics {
        times.export(metrics);
    }
    times.log(true);
}

#[cfg(test)]
mod tests {
    use timely::logging::{OperatesEvent, ScheduleEvent};

    use super::*;

    fn operates(id: usize, addr: &[usize], name: &str) -> TimelyEvent {
        TimelyEvent::Operates(OperatesEvent { id, addr: addr.to_vec(), name: name.into() })
    }

    #[test]
    fn counts_leaves_and_excludes_scopes() {
        let mut times = OperatorTimes::new(0);
        let ms = Duration::from_millis;
        times.apply(ms(0), &operates(2, &[0, 1], "Source"));
        times.apply(ms(0), &operates(1, &[0], "Dataflow"));
        times.apply(ms(0), &operates(3, &[0, 2], "Sink"));
        for (t, e) in [
            (0, ScheduleEvent::start(1)),
            (1, ScheduleEvent::start(2)),
            (4, ScheduleEvent::stop(2)),
            (5, ScheduleEvent::start(3)),
            (6, ScheduleEvent::stop(3)),
            (7, ScheduleEvent::stop(1)),
            (8, ScheduleEvent::start(2)),
            (10, ScheduleEvent::stop(2)),
        ] {
            times.apply(ms(t), &TimelyEvent::Schedule(e));
        }
        let summary = times.summary();
        assert_eq!(
            summary,
            vec![
                OperatorSummary { name: "Source".into(), id: 2, activations: 2, busy: ms(5) },
                OperatorSummary { name: "Sink".into(), id: 3, activations: 1, busy: ms(1) },
            ]
        );
        let metrics = Metrics::new(0).unwrap();
        times.export(&metrics);
        times.export(&metrics);
        let text = metrics.render();
        assert!(
            text.contains(r#"vigil_operator_activations_total{operator="Source",worker="0",process="0"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vigil_operator_busy_seconds_total{operator="Source",worker="0",process="0"} 0.005"#),
            "{text}"
        );
    }
}
