//! `vigil features`: the SPEC §2 features (and those of a `--features` specification, SPEC
//! §2b) of every scored event of a file, as CSV in input order — the backfill/training view of exactly what `run` computes.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dataflows::feature_extraction::{extract, ExtractedFeatures};
use dataflows::input::JobInput;
use operators::event::fields::ExtraFeatures;
use operators::event::parse::EventParser;
use operators::features::spec::FeatureSpec;

use crate::cli::{FeaturesArgs, InputArgs};
use crate::commands::run::state_rules;
use crate::commands::{feature_spec, timestamp_unit, worker_count};
use crate::error::UsageError;
use crate::progress::{self, Progress};

/// Opens `--input` as a job input.
pub fn input_file(input: &Option<PathBuf>) -> anyhow::Result<JobInput> {
    let path = input.clone().ok_or_else(|| UsageError("--input: required".into()))?;
    JobInput::file(path.clone()).map_err(|e| UsageError(format!("--input {}: {e}", path.display())).into())
}

/// Runs the feature dataflow over `input` (see [`extract`]) with a progress bar, or a log line
/// every few seconds, over the records done.
pub fn extract_with_progress(
    input: JobInput,
    extras: ExtraFeatures,
    spec: &FeatureSpec,
    data: &InputArgs,
) -> anyhow::Result<ExtractedFeatures> {
    let rules = state_rules(data.lateness.as_deref())?;
    let workers = worker_count(data.workers)?;
    let parser =
        EventParser::new(extras.with_spec(spec)).with_timestamp_unit(timestamp_unit(data.timestamp_unit.as_deref())?);
    let processed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&processed);
    let watcher =
        progress::watch(Progress::new("extracting features", None, true), move || counter.load(Ordering::Relaxed));
    let extracted = extract(input, parser, spec, rules, workers, processed);
    watcher.finish();
    extracted.map_err(anyhow::Error::msg)
}

/// Writes the CSV.
pub fn execute(args: FeaturesArgs) -> anyhow::Result<()> {
    let input = input_file(&args.data.input)?;
    let out_path = args.out.clone().ok_or_else(|| UsageError("--out: required".into()))?;
    let spec = feature_spec(args.data.features.as_deref())?;
    let extracted = extract_with_progress(input, ExtraFeatures::default(), &spec, &args.data)?;
    let file = std::fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    line.extend_from_slice(b"eventId");
    for name in spec.feature_names() {
        line.push(b',');
        line.extend_from_slice(name.as_bytes());
    }
    line.push(b'\n');
    let mut rows = 0u64;
    let mut ryu = ryu::Buffer::new();
    for (batch, r) in extracted.rows() {
        write_csv_field(&mut line, batch.rows[r].event_id.str(&batch.text));
        let width = batch.entities.len() / batch.rows.len().max(1);
        for &value in batch.windows[r].iter().chain(&batch.entities[r * width..(r + 1) * width]) {
            line.push(b',');
            if value.is_finite() {
                line.extend_from_slice(ryu.format_finite(value).as_bytes());
            }
        }
        line.push(b'\n');
        rows += 1;
        if line.len() > 1 << 16 {
            out.write_all(&line).context("writing CSV")?;
            line.clear();
        }
    }
    out.write_all(&line).context("writing CSV")?;
    out.flush().context("writing CSV")?;
    tracing::info!(rows, dead_letters = extracted.dead_letters, out = %out_path.display(), "features written");
    Ok(())
}

/// Appends a CSV field, quoted when it contains a separator, quote or line break.
fn write_csv_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}
