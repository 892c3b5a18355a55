//! `vigil run`: the streaming job, with a summary at the end.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use dataflows::input::{JobInput, Tuning};
use dataflows::scoring::{self, Output, ScoringJob, ScoringReport};
use operators::file_sink::OutputFiles;
use operators::user_state::StateRules;

use crate::cli::RunArgs;
use crate::commands::{default_model_path, generator_config, timely_config};
use crate::config::parse_duration_ms;
use crate::error::UsageError;

/// Where `--source` reads from.
fn job_input(args: &RunArgs) -> anyhow::Result<JobInput> {
    let source = args.source.as_deref().unwrap_or("generator");
    if source == "generator" {
        return Ok(JobInput::Generator(generator_config(&args.generator)?));
    }
    if let Some(path) = source.strip_prefix("file:") {
        return JobInput::file(PathBuf::from(path))
            .map_err(|e| UsageError(format!("--source {source}: cannot read {path}: {e}")).into());
    }
    Err(UsageError(format!("--source: `{source}` is not one of generator, file:PATH")).into())
}

/// State rules from `--lateness`.
pub fn state_rules(lateness: Option<&str>) -> Result<StateRules, UsageError> {
    let mut rules = StateRules::default();
    if let Some(text) = lateness {
        rules.lateness_ms = parse_duration_ms("--lateness", text)?;
        if rules.lateness_ms < 0 {
            return Err(UsageError("--lateness: must not be negative".into()));
        }
    }
    Ok(rules)
}

/// Installs SIGINT/SIGTERM handling: the first signal asks the job to drain and stop.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Epoch size and offered load: with `--rate`, epochs default to ~10 ms of input so pacing
/// does not add a whole 4096-event block of latency.
fn tuning(args: &RunArgs) -> Result<Tuning, UsageError> {
    let defaults = Tuning::default();
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(UsageError(format!("--rate: {rate} is not a positive number of events/s")));
        }
    }
    let paced_block = args.rate.map(|r| ((r / 100.0) as usize).clamp(1, defaults.block_len));
    let block_len = args.block_len.or(paced_block).unwrap_or(defaults.block_len);
    if block_len == 0 {
        return Err(UsageError("--block-len: must be at least 1".into()));
    }
    Ok(Tuning { block_len, rate: args.rate, ..defaults })
}

/// Runs the job and prints its summary.
pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let input = job_input(&args)?;
    match args.sink.as_deref() {
        None | Some("files") => {}
        Some(other) => return Err(UsageError(format!("--sink: `{other}` is not `files`")).into()),
    }
    if let Some(t) = args.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(UsageError(format!("--threshold: {t} is outside [0, 1]")).into());
        }
    }
    let timely = timely_config(&args.cluster)?;
    let out_dir = args.out_dir.clone().unwrap_or_else(|| PathBuf::from("out"));
    let files =
        Arc::new(OutputFiles::create(&out_dir).with_context(|| format!("creating outputs in {}", out_dir.display()))?);
    let tuning = tuning(&args)?;
    let job = ScoringJob {
        input,
        model_path: args.model.clone().unwrap_or_else(default_model_path),
        threshold: args.threshold,
        rules: state_rules(args.lateness.as_deref())?,
        emit_features: args.emit_features,
        output: Output::Files(Arc::clone(&files)),
        stop: stop_flag()?,
        tuning,
    };
    let report = scoring::run(job, timely).map_err(|e| match e {
        scoring::JobError::Runtime(_) => anyhow::Error::new(e),
        other => UsageError(other.to_string()).into(),
    })?;
    files.flush().context("flushing output files")?;
    print_summary(&report, files.paths());
    Ok(())
}

fn print_summary(report: &ScoringReport, paths: &[PathBuf; 3]) {
    let c = &report.stats.counts;
    let records = c.decisions + c.dead_letters;
    let secs = report.elapsed.as_secs_f64();
    let h = &report.stats.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("vigil run summary");
    println!("  events in        {records}");
    println!("  decisions        {} ({} blocked, {} late)", c.decisions, c.blocked, c.late);
    println!("  dead letters     {} ({} duplicates)", c.dead_letters, c.duplicates);
    println!("  elapsed          {secs:.3} s");
    println!("  throughput       {:.0} events/s", records as f64 / secs.max(1e-9));
    println!("  latency          p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms", ms(0.5), ms(0.95), ms(0.99));
    println!("  model            {} (threshold {})", report.model_version, report.threshold);
    let s = &report.state;
    println!(
        "  state            {} users, {} retained events, {:.1} MiB ({} idle users evicted)",
        s.users,
        s.retained_events,
        s.bytes as f64 / (1 << 20) as f64,
        s.evicted_users
    );
    for (label, path) in ["decisions", "alerts", "dead letters"].iter().zip(paths) {
        println!("  {label:<16} {}", path.display());
    }
}
