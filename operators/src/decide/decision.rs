//! Decide: threshold, confidence and reasons, rendered as SPEC §3 decision records; blocked
//! decisions are copied to the alerts output and dead letters are rendered alongside.
//! Reasons are the model's own (infer explained the row, see `model/explain.rs`) for high scores
//! and rule-based notes on the windowed features for the rest.
//!
//! `confidence` is the probability that the decision is right: the score for a block, one minus
//! the score for an approve. Models trained by `vigil train` are calibrated on their validation
//! split (Platt, see `learning/src/calibration.rs`), so the score is a fraud probability and so is this.

use crate::named_map::NamedMapExt;
use timely::dataflow::Stream;

use crate::batch::{OutputChunk, ReplyLine, ScoredBatch, TextRef, HTTP_PARTITION};
use crate::decide::dead_letter::{write_dead_letter, DeadReason, SourceName};
use crate::json_out::{write_f64, write_str};
use crate::model::reasons::{write_reasons, LATE_EVENT};
use crate::time::clock::now_ns;
use crate::time::rfc3339::write_rfc3339_ms;

/// How decisions are made and rendered.
#[derive(Clone, Debug)]
pub struct DecisionPolicy {
    /// Block when the score is above this.
    pub threshold: f64,
    pub model_version: String,
    /// Names of the model inputs, written as `features` when set (`--emit-features`).
    pub emit_features: Option<Vec<String>>,
    pub source: SourceName,
}

impl DecisionPolicy {
    /// Confidence of the decision for `score` (see module docs).
    pub fn confidence(&self, score: f64) -> f64 {
        let c = if score > self.threshold { score } else { 1.0 - score };
        c.clamp(0.0, 1.0)
    }

    /// Renders a scored batch (inputs and scores filled) into an output chunk.
    pub fn render(&self, batch: &ScoredBatch) -> OutputChunk {
        let mut chunk = OutputChunk::default();
        chunk.decisions.reserve(batch.rows.len() * 320);
        let per_event_ms =
            if batch.rows.is_empty() { 0.0 } else { batch.infer_ns as f64 / 1e6 / batch.rows.len() as f64 };
        let now = now_ns();
        chunk.rendered_ns = now;
        let mut inference_ms = Vec::with_capacity(24);
        write_f64(&mut inference_ms, per_event_ms);
        // Rows of one source block share their ingest time, hence their latency text.
        let mut latency = (u64::MAX, Vec::with_capacity(24));
        for (i, row) in batch.rows.iter().enumerate() {
            let start = chunk.decisions.len();
            let score = f64::from(batch.scores[i]);
            let block = score > self.threshold;
            let latency_ns = now.saturating_sub(row.ingest_ns);
            let out = &mut chunk.decisions;
            out.extend_from_slice(b"{\"eventId\":");
            write_str(out, row.event_id.str(&batch.text));
            out.extend_from_slice(b",\"userId\":");
            write_str(out, row.user_id.str(&batch.text));
            out.extend_from_slice(b",\"timestamp\":\"");
            write_rfc3339_ms(row.timestamp_ms, out);
            out.push(b'"');
            if let Some(source) = row.timestamp_source.label() {
                out.extend_from_slice(b",\"timestamp_source\":\"");
                out.extend_from_slice(source.as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(if block { b",\"is_anomaly\":true" } else { b",\"is_anomaly\":false" });
            out.extend_from_slice(b",\"anomaly_score\":");
            let mut buf = ryu::Buffer::new();
            out.extend_from_slice(buf.format(batch.scores[i]).as_bytes());
            out.extend_from_slice(b",\"confidence\":");
            out.extend_from_slice(buf.format(self.confidence(score) as f32).as_bytes());
            out.extend_from_slice(if block { b",\"decision\":\"block\"" } else { b",\"decision\":\"approve\"" });
            out.extend_from_slice(b",\"reasons\":[");
            write_decision_reasons(out, batch, i);
            out.extend_from_slice(b"],\"model_version\":");
            write_str(out, &self.model_version);
            out.extend_from_slice(b",\"inference_time_ms\":");
            out.extend_from_slice(&inference_ms);
            out.extend_from_slice(b",\"latency_ms\":");
            if latency.0 != latency_ns {
                latency.1.clear();
                write_f64(&mut latency.1, latency_ns as f64 / 1e6);
                latency.0 = latency_ns;
            }
            out.extend_from_slice(&latency.1);
            if let Some(names) = &self.emit_features {
                write_features(out, names, &batch.inputs[i * names.len()..(i + 1) * names.len()]);
            }
            out.push(b'}');
            if row.origin.partition == HTTP_PARTITION {
                let line = ReplyLine {
                    request: row.origin.position,
                    decision: true,
                    start: start as u32,
                    end: out.len() as u32,
                };
                chunk.replies.push(line);
            }
            out.push(b'\n');
            chunk.latencies_ns.push(latency_ns);
            chunk.event_times_ms.push(row.timestamp_ms);
            chunk.decision_keys.push(TextRef::push(&mut chunk.keys, row.user_id.str(&batch.text)));
            chunk.counts.decisions += 1;
            chunk.counts.late += u64::from(row.late);
            if block {
                chunk.counts.blocked += 1;
                chunk.alert_rows.push(i as u32);
                chunk.alerts.extend_from_slice(&chunk.decisions[start..]);
            }
        }
        let mut scratch = Vec::new();
        for dead in &batch.dead {
            let start = chunk.dead_letters.len();
            write_dead_letter(&mut chunk.dead_letters, dead, &self.source, &mut scratch);
            if dead.origin.partition == HTTP_PARTITION {
                let end = chunk.dead_letters.len() - 1;
                let line =
                    ReplyLine { request: dead.origin.position, decision: false, start: start as u32, end: end as u32 };
                chunk.replies.push(line);
            }
            chunk.counts.dead_by_reason[DeadReason::of(&dead.error).index()] += 1;
            chunk.dead_keys.push(dead.key.as_deref().map(|key| TextRef::push(&mut chunk.keys, key)));
            chunk.counts.dead_letters += 1;
            chunk.counts.duplicates += u64::from(dead.error == "duplicate");
        }
        chunk
    }
}

/// The model's reasons if the row was explained (plus "late event"), else the rule-based ones.
fn write_decision_reasons(out: &mut Vec<u8>, batch: &ScoredBatch, i: usize) {
    let late = batch.rows[i].late;
    match batch.explanations.of(i) {
        Some((reasons, count)) => {
            out.extend_from_slice(reasons);
            if late {
                if count > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(LATE_EVENT);
            }
        }
        None => {
            write_reasons(out, &batch.windows[i], late);
        }
    }
}

fn write_features(out: &mut Vec<u8>, names: &[String], values: &[f32]) {
    out.extend_from_slice(b",\"features\":{");
    for (j, (name, value)) in names.iter().zip(values).enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_f64(out, f64::from(*value));
    }
    out.push(b'}');
}

/// Extension trait: `scored.decide(policy)`.
pub trait DecideExt<'s> {
    /// Renders each scored batch into decision, alert and dead-letter lines.
    fn decide(self, policy: DecisionPolicy) -> Stream<'s, u64, Vec<OutputChunk>>;
}

impl<'s> DecideExt<'s> for Stream<'s, u64, Vec<ScoredBatch>> {
    fn decide(self, policy: DecisionPolicy) -> Stream<'s, u64, Vec<OutputChunk>> {
        self.map_named("Decide", move |batch| policy.render(&batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision records of a rendered chunk.
    fn decision_lines(chunk: &OutputChunk) -> Vec<serde_json::Value> {
        chunk
            .decisions
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
    use crate::batch::{Origin, ScoredRow, TextRef, TimestampSource};

    #[test]
    fn renders_spec_records_and_alerts() {
        let mut batch = ScoredBatch::default();
        for (id, score) in [("e1", 0.93f32), ("e2", 0.1)] {
            let event_id = TextRef::push(&mut batch.text, id);
            let user_id = TextRef::push(&mut batch.text, "u\"1");
            batch.rows.push(ScoredRow {
                origin: Origin::default(),
                event_id,
                user_id,
                timestamp_ms: 1_768_473_000_123,
                own: [1.0, f64::NAN, f64::NAN, f64::NAN],
                label: -1,
                late: false,
                ingest_ns: 0,
                timestamp_source: if id == "e2" { TimestampSource::Received } else { TimestampSource::Event },
            });
            let mut w = [0.0; 20];
            w[16] = 6.1;
            batch.windows.push(w);
            batch.scores.push(score);
            batch.inputs.push(6.1);
        }
        let policy = DecisionPolicy {
            threshold: 0.8,
            model_version: "mlp-test".into(),
            emit_features: Some(vec!["amount_ratio".into()]),
            source: SourceName::Generator,
        };
        let chunk = policy.render(&batch);
        let lines = decision_lines(&chunk);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["eventId"], "e1");
        assert_eq!(lines[0]["userId"], "u\"1");
        assert_eq!(lines[0]["timestamp"], "2026-01-15T10:30:00.123Z");
        assert_eq!(lines[0]["decision"], "block");
        assert_eq!(lines[0]["is_anomaly"], true);
        assert_eq!(lines[0]["anomaly_score"], 0.93);
        assert!((lines[0]["confidence"].as_f64().unwrap() - 0.93).abs() < 1e-6);
        assert_eq!(lines[0]["reasons"][0], "amount 6.1x the user's 7d mean");
        assert!((lines[0]["features"]["amount_ratio"].as_f64().unwrap() - 6.1).abs() < 1e-6);
        assert!(lines[0].get("timestamp_source").is_none(), "the event's own time is not flagged");
        assert_eq!(lines[1]["timestamp_source"], "received");
        assert_eq!(lines[1]["decision"], "approve");
        assert!((lines[1]["confidence"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(chunk.counts.blocked, 1);
        assert_eq!(chunk.alerts.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(chunk.alerts.starts_with(b"{\"eventId\":\"e1\""));
    }

    #[test]
    fn explained_rows_carry_the_model_reasons_and_others_the_rules() {
        use crate::model::file::tests::model_from;
        use crate::model::file::InputSpec;
        use crate::model::mlp::Dense;
        let spec = |name: &str| InputSpec { name: name.into(), fill: 0.0, mean: 0.0, std: 1.0 };
        // z = v7 + location_new − 2: only v7 and location_new can be reasons.
        let dense = vec![Dense { in_dim: 2, out_dim: 1, w: vec![1.0, 1.0], b: vec![-2.0] }];
        let model = model_from(vec![spec("v7"), spec("location_new")], dense);
        let mut batch = ScoredBatch::default();
        for (id, v7, late) in [("high", 6.0f32, true), ("low", 0.5, false)] {
            let event_id = TextRef::push(&mut batch.text, id);
            let user_id = TextRef::push(&mut batch.text, "u1");
            batch.rows.push(ScoredRow { event_id, user_id, late, ..ScoredRow::default() });
            let mut w = [0.0; 20];
            w[17] = 1.0;
            batch.windows.push(w);
            batch.inputs.extend([v7, 1.0]);
        }
        crate::model::infer::score(&model, &mut batch, model.metadata().threshold).unwrap();
        let policy = DecisionPolicy {
            threshold: 0.8,
            model_version: "m".into(),
            emit_features: None,
            source: SourceName::Generator,
        };
        let chunk = policy.render(&batch);
        let lines = decision_lines(&chunk);
        // z = 5: v7 contributes 6, location_new 1.
        assert_eq!(lines[0]["decision"], "block");
        assert_eq!(
            lines[0]["reasons"],
            serde_json::json!(["v7 unusually high (6.0 vs mean 0.0)", "new location", "late event"])
        );
        // z = −0.5: approved, not explained; the rules see the new location.
        assert_eq!(lines[1]["decision"], "approve");
        assert_eq!(lines[1]["reasons"], serde_json::json!(["new location"]));
    }
}
