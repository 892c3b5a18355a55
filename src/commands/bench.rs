//! `vigil bench`: throughput of each stage alone and end to end, with latency percentiles, on
//! a stated generated workload (default 5M events, 100k users, 30 days).
//!
//! Stages run single-threaded, block by block, each on the previous stage's output:
//! parse (JSON lines → batches), window+enrich (state + features), infer (model-input rows →
//! scores), serialise (decision records). End to end runs the real dataflow from JSON lines in
//! memory to rendered decision lines (discarded), for each worker count.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use dataflows::input::{JobInput, Tuning};
use dataflows::scoring::{self, load_model, Output, ScoringJob, Telemetry};
use operators::batch::{EventBatch, Origin};
use operators::decide::dead_letter::SourceName;
use operators::decide::decision::DecisionPolicy;
use operators::event::parse::EventParser;
use operators::generator::Generator;
use operators::model::enrich::InputLayout;
use operators::model::file::Model;
use operators::model::infer::score;
use operators::sink::file::new_latency_histogram;
use operators::source::file::SharedFile;
use operators::state::entity_window::{EntityConfig, EntityStages};
use operators::state::window::{KeyedState, StateReport, WindowConfig};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::commands::{default_model_path, generator_config};
use crate::error::UsageError;
use crate::progress::Progress;

/// One measured line of the report.
#[derive(Debug, Serialize)]
struct StageResult {
    stage: String,
    events: u64,
    seconds: f64,
    events_per_sec: f64,
    latency_ms_p50: Option<f64>,
    latency_ms_p95: Option<f64>,
    latency_ms_p99: Option<f64>,
}

impl StageResult {
    fn new(stage: impl Into<String>, events: u64, seconds: f64) -> Self {
        StageResult {
            stage: stage.into(),
            events,
            seconds,
            events_per_sec: events as f64 / seconds.max(1e-9),
            latency_ms_p50: None,
            latency_ms_p95: None,
            latency_ms_p99: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct BenchReport {
    workload: String,
    stages: Vec<StageResult>,
    state_users: u64,
    state_retained_events: u64,
    state_bytes: u64,
    bytes_per_retained_event: f64,
    bytes_per_user_beyond_events: f64,
}

/// Records per batch in the stage benchmarks (= the dataflow's default epoch).
const BATCH: usize = 4096;
/// Bytes of a retained event in the user state's buffer.
const RETAINED_EVENT_BYTES: u64 = 32;

/// Names of the single-threaded stages, in pipeline order.
const STAGES: [&str; 4] = ["parse", "window+enrich", "infer (model rows + forward)", "serialise"];

/// Streams the workload block by block through each stage's pure core on this thread, timing
/// each stage separately; blocks are dropped as they go, as in the dataflow, so no stage pays
/// for memory the real pipeline would not hold. Returns (events, seconds) per stage and the
/// window state's final size.
fn time_stages(data: &[u8], model: &Model, layout: &InputLayout) -> anyhow::Result<([(u64, f64); 4], StateReport)> {
    let mut parser = EventParser::new(layout.extras().clone());
    let mut state = KeyedState::new(WindowConfig {
        extra_count: layout.extras().len(),
        attr_count: layout.extras().attributes().len(),
        ..WindowConfig::default()
    });
    let mut entities = EntityStages::new(EntityConfig::new(layout.spec(), layout.extras()));
    let policy = DecisionPolicy {
        threshold: model.metadata().threshold,
        model_version: model.metadata().version.clone(),
        emit_features: None,
        source: SourceName::Generator,
    };
    let mut times = [(0u64, 0f64); 4];
    let mut lap = |stage: usize, events: usize, started: Instant| {
        times[stage].0 += events as u64;
        times[stage].1 += started.elapsed().as_secs_f64();
    };
    let mut lines = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate().peekable();
    while lines.peek().is_some() {
        let started = Instant::now();
        let mut batch = [EventBatch::default()];
        for (i, line) in lines.by_ref().take(BATCH) {
            parser.parse_into(line, Origin { partition: 0, position: i as u64 }, &mut batch, 0);
        }
        lap(0, batch[0].events.len(), started);
        let started = Instant::now();
        let mut scored = state.process_epoch(&mut batch);
        entities.process(&mut scored);
        lap(1, batch[0].events.len(), started);
        let started = Instant::now();
        layout.fill(&mut scored);
        score(model, &mut scored, model.metadata().threshold)?;
        lap(2, scored.rows.len(), started);
        let started = Instant::now();
        let chunk = policy.render(&scored);
        lap(3, scored.rows.len(), started);
        drop(chunk);
    }
    Ok((times, state.report()))
}

/// Runs the benchmark and prints the table (or JSON).
/// With `--telemetry`, what `run` keeps: metrics and operator timings (summary at the end).
fn bench_telemetry(on: bool) -> anyhow::Result<Telemetry> {
    if !on {
        return Ok(Telemetry::default());
    }
    let metrics = operators::observe::metrics::Metrics::new(0)?;
    Ok(Telemetry {
        metrics: Some(Arc::new(metrics)),
        timing_interval: Some(std::time::Duration::from_secs(3600)),
        detect: None,
    })
}

pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    let mut generator_args = args.generator.clone();
    generator_args.events.get_or_insert(5_000_000);
    generator_args.users.get_or_insert(100_000);
    let cfg = generator_config(&generator_args)?;
    if cfg.events == 0 {
        return Err(UsageError("--events: bench needs a finite workload".into()).into());
    }
    let workload = format!(
        "{} events, {} users, {} days, fraud rate {}, seed {}",
        cfg.events,
        cfg.users,
        cfg.span_ms / 86_400_000,
        cfg.fraud_rate,
        cfg.seed
    );
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let (model, layout) = load_model(&model_path).map_err(|e| UsageError(e.to_string()))?;
    let worker_counts = args.workers.map_or(vec![1, 2], |w| vec![w]);
    // Phases: generating, the stages alone, then one end-to-end run per worker count.
    let phases = Progress::new("bench phases", Some(2 + worker_counts.len() as u64), true);
    tracing::info!(%workload, "generating workload");
    let mut data = Vec::new();
    let mut generator = Generator::new(cfg);
    while generator.next_line(&mut data) {}
    phases.set(1);
    let mut stages = Vec::new();
    let (stage_times, memory) = time_stages(&data, &model, &layout)?;
    phases.set(2);
    for (name, (events, seconds)) in STAGES.iter().zip(stage_times) {
        stages.push(StageResult::new(*name, events, seconds));
    }

    let shared = SharedFile::from_vec(data);
    for (done, workers) in (3..).zip(worker_counts) {
        let job = ScoringJob {
            input: JobInput::File { path: PathBuf::from("bench"), bytes: shared.clone() },
            model_path: model_path.clone(),
            threshold: None,
            rules: Default::default(),
            timestamp_unit: Default::default(),
            emit_features: false,
            output: Output::Discard,
            stop: Arc::new(AtomicBool::new(false)),
            tuning: Tuning::default(),
            telemetry: bench_telemetry(args.telemetry)?,
            checkpoints: None,
        };
        let report = scoring::run(job, timely::Config::process(workers))?;
        let c = report.stats.counts;
        let mut stage = StageResult::new(
            format!("end to end, {workers} worker{}", if workers == 1 { "" } else { "s" }),
            c.decisions + c.dead_letters,
            report.elapsed.as_secs_f64(),
        );
        let h = if report.stats.latency_us.is_empty() { new_latency_histogram() } else { report.stats.latency_us };
        stage.latency_ms_p50 = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
        stage.latency_ms_p95 = Some(h.value_at_quantile(0.95) as f64 / 1000.0);
        stage.latency_ms_p99 = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
        stages.push(stage);
        phases.set(done);
    }
    phases.finish(2 + stages.len() as u64 - STAGES.len() as u64);

    let per_event = memory.bytes as f64 / memory.retained_events.max(1) as f64;
    let beyond = memory.bytes.saturating_sub(RETAINED_EVENT_BYTES * memory.retained_events);
    let report = BenchReport {
        workload,
        stages,
        state_users: memory.users,
        state_retained_events: memory.retained_events,
        state_bytes: memory.bytes,
        bytes_per_retained_event: per_event,
        bytes_per_user_beyond_events: beyond as f64 / memory.users.max(1) as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &BenchReport) {
    println!("workload: {}", report.workload);
    println!(
        "{:<32} {:>10} {:>9} {:>13} {:>9} {:>9} {:>9}",
        "stage", "events", "seconds", "events/s", "p50 ms", "p95 ms", "p99 ms"
    );
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for s in &report.stages {
        println!(
            "{:<32} {:>10} {:>9.3} {:>13.0} {:>9} {:>9} {:>9}",
            s.stage,
            s.events,
            s.seconds,
            s.events_per_sec,
            fmt(s.latency_ms_p50),
            fmt(s.latency_ms_p95),
            fmt(s.latency_ms_p99)
        );
    }
    println!(
        "state: {} users, {} retained events, {:.1} MiB = {:.1} B per retained event; {:.0} B per user beyond the {} B/event buffer",
        report.state_users,
        report.state_retained_events,
        report.state_bytes as f64 / (1 << 20) as f64,
        report.bytes_per_retained_event,
        report.bytes_per_user_beyond_events,
        RETAINED_EVENT_BYTES
    );
}
