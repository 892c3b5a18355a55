//! `vigil run`: the streaming job, with a summary at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use dataflows::input::{JobInput, KafkaInput, Tuning};
use dataflows::scoring::{self, Output, ScoringJob, ScoringReport, Telemetry};
use hdrhistogram::Histogram;
use operators::observe::metrics::Metrics;
use operators::sink::file::OutputFiles;
use operators::sink::kafka::{KafkaProducer, OutputTopics};
use operators::source::http::DetectChannel;
use operators::source::kafka::CommitPolicy;
use operators::source::kafka_client::{committed_offsets, wait_for_topics, KafkaSettings, TopicError};
use operators::state::checkpoint::protocol::CheckpointConfig;
use operators::state::checkpoint::store::CheckpointStore;
use operators::state::user::StateRules;

use crate::cli::{ClusterArgs, KafkaArgs, RunArgs};
use crate::commands::{
    default_model_path, generator_config, kafka_options, positive_rate, timely_config, timestamp_unit, DEFAULT_BROKERS,
};
use crate::config::parse_duration_ms;
use crate::error::UsageError;
use crate::http::{self, ApiState, HttpConfig, HttpServer};
use crate::progress::{self, Progress};

/// Detect requests queued for the dataflow before the API answers 503.
const DETECT_QUEUE: usize = 1024;

/// Default `--log-interval`.
const DEFAULT_LOG_INTERVAL_MS: i64 = 10_000;

/// Kafka settings and topic names from flags, with SPEC §4 defaults.
struct KafkaPlan {
    settings: KafkaSettings,
    input_topic: String,
    outputs: OutputTopics,
}

impl KafkaPlan {
    fn from_args(args: &KafkaArgs) -> Result<Self, UsageError> {
        let or = |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
        Ok(KafkaPlan {
            settings: KafkaSettings {
                brokers: or(&args.brokers, DEFAULT_BROKERS),
                group: or(&args.group, "vigil"),
                options: kafka_options(&args.kafka_option)?,
            },
            input_topic: or(&args.input_topic, "anomaly-events"),
            outputs: OutputTopics {
                decisions: or(&args.decisions_topic, "anomaly-decisions"),
                alerts: or(&args.alerts_topic, "anomaly-alerts"),
                dead_letters: or(&args.dlq_topic, "anomaly-dlq"),
            },
        })
    }

    /// Waits for the brokers and checks the topics this run uses; returns the input topic's
    /// partition count when it is read.
    fn check_topics(&self, read: bool, write: bool, stop: &AtomicBool) -> anyhow::Result<Option<usize>> {
        let mut topics = Vec::new();
        if read {
            topics.push(self.input_topic.as_str());
        }
        if write {
            topics.extend(
                [&self.outputs.decisions, &self.outputs.alerts, &self.outputs.dead_letters].map(String::as_str),
            );
        }
        if topics.is_empty() {
            return Ok(None);
        }
        match wait_for_topics(&self.settings, &topics, || stop.load(Ordering::Relaxed)) {
            Ok(counts) => Ok(read.then(|| counts[0])),
            Err(e @ TopicError::Missing(_)) => Err(UsageError(e.to_string()).into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Where `--source` reads from.
fn job_input(args: &RunArgs, kafka: &KafkaPlan, partitions: Option<usize>) -> anyhow::Result<JobInput> {
    let source = args.source.as_deref().unwrap_or("generator");
    if source == "generator" {
        return Ok(JobInput::Generator(generator_config(&args.generator)?));
    }
    if source == "kafka" {
        return Ok(JobInput::Kafka(KafkaInput {
            settings: kafka.settings.clone(),
            topic: kafka.input_topic.clone(),
            partitions: partitions.expect("the input topic was checked"),
            stop_at_end: args.kafka.stop_at_end,
            restored: Default::default(),
            commit: match (&args.checkpoint_dir, exactly_once(args)?) {
                (None, _) => CommitPolicy::Delivered,
                (Some(_), false) => CommitPolicy::Checkpoints,
                (Some(_), true) => CommitPolicy::Transactions,
            },
        }));
    }
    if let Some(path) = source.strip_prefix("file:") {
        return JobInput::file(PathBuf::from(path))
            .map_err(|e| UsageError(format!("--source {source}: cannot read {path}: {e}")).into());
    }
    Err(UsageError(format!("--source: `{source}` is not one of generator, file:PATH, kafka")).into())
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

/// This process's index and the process count when it is one of several in a timely cluster.
fn cluster_process(cluster: &ClusterArgs) -> Option<(usize, usize)> {
    let processes = cluster.processes.unwrap_or(1);
    (processes > 1).then(|| (cluster.process.unwrap_or(0), processes))
}

/// Installs SIGINT/SIGTERM handling: the first signal asks the job to drain and stop; a second
/// one exits at once with 1 (a job that cannot drain, e.g. one still waiting for the other
/// processes of its cluster, can always be stopped).
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Handlers run in registration order: the exit checks the flag before this signal sets it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Epoch size and offered load: with `--rate`, epochs default to ~10 ms of input so pacing
/// does not add a whole 2048-event block of latency.
fn tuning(args: &RunArgs) -> Result<Tuning, UsageError> {
    let defaults = Tuning::default();
    positive_rate(args.rate)?;
    let paced_block = args.rate.map(|r| ((r / 100.0) as usize).clamp(1, defaults.block_len));
    let block_len = args.block_len.or(paced_block).unwrap_or(defaults.block_len);
    if block_len == 0 {
        return Err(UsageError("--block-len: must be at least 1".into()));
    }
    Ok(Tuning { block_len, rate: args.rate, ..defaults })
}

/// `--log-interval`, checked.
fn log_interval(text: Option<&str>) -> Result<std::time::Duration, UsageError> {
    let ms = match text {
        Some(text) => parse_duration_ms("--log-interval", text)?,
        None => DEFAULT_LOG_INTERVAL_MS,
    };
    if ms <= 0 {
        return Err(UsageError("--log-interval: must be positive".into()));
    }
    Ok(std::time::Duration::from_millis(ms as u64))
}

/// `--delivery`: whether the job runs exactly-once, checked against the flags it needs.
fn exactly_once(args: &RunArgs) -> Result<bool, UsageError> {
    match args.delivery.as_deref() {
        None | Some("at-least-once") => Ok(false),
        Some("exactly-once") => {
            let kafka_both = args.source.as_deref() == Some("kafka") && args.sink.as_deref() == Some("kafka");
            if !kafka_both {
                return Err(UsageError("--delivery exactly-once: needs --source kafka --sink kafka".into()));
            }
            if args.checkpoint_dir.is_none() {
                return Err(UsageError("--delivery exactly-once: needs --checkpoint-dir".into()));
            }
            if args.cluster.processes.unwrap_or(1) > 1 {
                return Err(UsageError("--delivery exactly-once: runs in one process (use --workers)".into()));
            }
            Ok(true)
        }
        Some(other) => Err(UsageError(format!("--delivery: `{other}` is not one of at-least-once, exactly-once"))),
    }
}

/// Default `--checkpoint-interval` and `--checkpoint-keep`.
const DEFAULT_CHECKPOINT_INTERVAL_MS: i64 = 10_000;
const DEFAULT_CHECKPOINT_KEEP: usize = 3;

/// Opens `--checkpoint-dir` and restores its newest intact checkpoint into `input` and
/// `tuning` (the checkpoint's epoch size, so epochs map to the same input positions).
fn checkpoints(args: &RunArgs, input: &mut JobInput, tuning: &mut Tuning) -> anyhow::Result<Option<CheckpointConfig>> {
    let Some(dir) = &args.checkpoint_dir else {
        if args.checkpoint_interval.is_some() || args.checkpoint_keep.is_some() {
            return Err(UsageError("--checkpoint-interval/--checkpoint-keep: need --checkpoint-dir".into()).into());
        }
        return Ok(None);
    };
    let interval_ms = match &args.checkpoint_interval {
        Some(text) => parse_duration_ms("--checkpoint-interval", text)?,
        None => DEFAULT_CHECKPOINT_INTERVAL_MS,
    };
    if interval_ms <= 0 {
        return Err(UsageError("--checkpoint-interval: must be positive".into()).into());
    }
    let keep = args.checkpoint_keep.unwrap_or(DEFAULT_CHECKPOINT_KEEP);
    if keep == 0 {
        return Err(UsageError("--checkpoint-keep: must be at least 1".into()).into());
    }
    let store = CheckpointStore::open(dir, keep).map_err(|e| UsageError(format!("--checkpoint-dir: {e}")))?;
    let newest = match input {
        // Exactly-once: the checkpoint whose transaction committed is the one whose offsets the
        // group holds; a newer one lost its transaction in a crash and must not be used.
        JobInput::Kafka(kafka) if exactly_once(args)? => {
            let committed = committed_offsets(&kafka.settings, &kafka.topic, kafka.partitions)
                .context("reading the consumer group's committed offsets")?;
            store.latest_valid_where(|c| c.source_offsets() == committed)
        }
        _ => store.latest_valid(),
    };
    let restore = match newest.context("reading --checkpoint-dir")? {
        None => None,
        Some(checkpoint) => {
            let m = &checkpoint.manifest;
            if m.input != input.describe() {
                return Err(UsageError(format!(
                    "--checkpoint-dir: {} holds checkpoints of `{}`, not of this run's input `{}`; use another directory",
                    dir.display(),
                    m.input,
                    input.describe()
                ))
                .into());
            }
            tracing::info!(
                target: "vigil::checkpoint",
                epoch = m.epoch,
                workers = m.workers,
                final_checkpoint = m.final_checkpoint,
                "restoring {}",
                checkpoint.dir().display()
            );
            tuning.block_len = m.block_len;
            if let JobInput::Kafka(kafka) = input {
                kafka.restored = checkpoint.source_offsets();
            }
            Some(Arc::new(checkpoint.decode().context("decoding the checkpoint")?))
        }
    };
    Ok(Some(CheckpointConfig {
        store,
        interval: std::time::Duration::from_millis(interval_ms as u64),
        restore,
        input: input.describe(),
        block_len: tuning.block_len,
        transactions: None,
    }))
}

/// Metrics, operator timings and (with `--http`) the API server and its request channel.
fn telemetry(args: &RunArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<(Telemetry, Option<HttpServer>)> {
    let metrics = Arc::new(Metrics::new(args.cluster.process.unwrap_or(0))?);
    let mut telemetry = Telemetry {
        metrics: Some(Arc::clone(&metrics)),
        timing_interval: Some(log_interval(args.log_interval.as_deref())?),
        detect: None,
    };
    let Some(config) = HttpConfig::from_args(args)? else { return Ok((telemetry, None)) };
    let detect = DetectChannel::new(DETECT_QUEUE);
    telemetry.detect = Some(Arc::clone(&detect));
    let server = http::start(config, ApiState { metrics, detect, stop: Arc::clone(stop) })?;
    Ok((telemetry, Some(server)))
}

/// A progress bar (or periodic log line) over the records processed, for finite sources.
fn progress_watcher(input: &JobInput, telemetry: &Telemetry) -> Option<progress::Watcher> {
    let total = match input {
        JobInput::Generator(g) if g.events > 0 => Some(g.events),
        JobInput::File { .. } => None,
        _ => return None,
    };
    let metrics = Arc::clone(telemetry.metrics.as_ref()?);
    Some(progress::watch(Progress::new("scoring", total, true), move || metrics.records_processed()))
}

/// Runs the job and prints its summary.
pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let kafka = KafkaPlan::from_args(&args.kafka)?;
    exactly_once(&args)?;
    let read_kafka = args.source.as_deref() == Some("kafka");
    let write_kafka = match args.sink.as_deref() {
        None | Some("files") => false,
        Some("kafka") => true,
        Some(other) => return Err(UsageError(format!("--sink: `{other}` is not one of files, kafka")).into()),
    };
    if let Some(t) = args.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(UsageError(format!("--threshold: {t} is outside [0, 1]")).into());
        }
    }
    if args.features.is_some() || args.checkpoint_dir.is_some() {
        let model_path = args.model.clone().unwrap_or_else(default_model_path);
        let (_, layout) = dataflows::scoring::load_model(&model_path).map_err(|e| UsageError(e.to_string()))?;
        crate::commands::model_spec(layout.spec(), args.features.as_deref())?;
        // The entity state is not in checkpoints yet: a restore would start it empty.
        if args.checkpoint_dir.is_some() && !layout.spec().is_default() {
            return Err(UsageError(
                "--checkpoint-dir: the model's feature specification has entity windows, which checkpoints do not hold yet"
                    .into(),
            )
            .into());
        }
    }
    let timely = timely_config(&args.cluster)?;
    let mut tuning = tuning(&args)?;
    let rules = state_rules(args.lateness.as_deref())?;
    let timestamp_unit = timestamp_unit(args.timestamp_unit.as_deref())?;
    let stop = stop_flag()?;
    let partitions = kafka.check_topics(read_kafka, write_kafka, &stop)?;
    let mut input = job_input(&args, &kafka, partitions)?;
    let mut checkpoints = checkpoints(&args, &mut input, &mut tuning)?;
    let restored = checkpoints.as_ref().is_some_and(|c| c.restore.is_some());
    let (output, files) = if write_kafka && exactly_once(&args)? {
        let id = format!("vigil-{}-{}", kafka.settings.group, kafka.input_topic);
        let (producer, gate) =
            KafkaProducer::connect_transactional(&kafka.settings, kafka.outputs.clone(), &id, &kafka.input_topic)
                .context("starting the transactional Kafka producer")?;
        if let Some(cfg) = checkpoints.as_mut() {
            cfg.transactions = Some(gate);
        }
        (Output::Kafka(producer), None)
    } else if write_kafka {
        let producer = KafkaProducer::connect(&kafka.settings, kafka.outputs.clone())
            .map_err(|e| UsageError(format!("Kafka producer settings: {e}")))?;
        (Output::Kafka(producer), None)
    } else {
        let out_dir = args.out_dir.clone().unwrap_or_else(|| PathBuf::from("out"));
        let files = Arc::new(
            OutputFiles::create(&out_dir, cluster_process(&args.cluster), restored)
                .with_context(|| format!("creating outputs in {}", out_dir.display()))?,
        );
        (Output::Files(Arc::clone(&files)), Some(files))
    };
    let (telemetry, server) = telemetry(&args, &stop)?;
    let watcher = progress_watcher(&input, &telemetry);
    let job = ScoringJob {
        input,
        model_path: args.model.clone().unwrap_or_else(default_model_path),
        threshold: args.threshold,
        rules,
        timestamp_unit,
        emit_features: args.emit_features,
        output,
        stop,
        tuning,
        telemetry,
        checkpoints,
    };
    let result = scoring::run(job, timely);
    if let Some(watcher) = watcher {
        watcher.finish();
    }
    let report = result.map_err(|e| match e {
        scoring::JobError::Runtime(_) => anyhow::Error::new(e),
        other => UsageError(other.to_string()).into(),
    })?;
    let destinations: Vec<String> = match &files {
        Some(files) => {
            files.flush().context("flushing output files")?;
            files.paths().iter().map(|p| p.display().to_string()).collect()
        }
        None => [&kafka.outputs.decisions, &kafka.outputs.alerts, &kafka.outputs.dead_letters]
            .iter()
            .map(|topic| format!("kafka topic {topic}"))
            .collect(),
    };
    print_summary(&report, &destinations);
    if let Some(server) = server {
        server.shutdown();
    }
    Ok(())
}

/// p50, p95 and p99 of a histogram of microseconds, in milliseconds.
fn percentiles(us: &Histogram<u64>) -> String {
    let ms = |q: f64| us.value_at_quantile(q) as f64 / 1000.0;
    format!("p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms", ms(0.5), ms(0.95), ms(0.99))
}

fn print_summary(report: &ScoringReport, destinations: &[String]) {
    let c = &report.stats.counts;
    let records = c.decisions + c.dead_letters;
    let secs = report.elapsed.as_secs_f64();
    println!("vigil run summary");
    println!("  events in        {records}");
    println!("  decisions        {} ({} blocked, {} late)", c.decisions, c.blocked, c.late);
    println!("  dead letters     {} ({} duplicates)", c.dead_letters, c.duplicates);
    println!("  elapsed          {secs:.3} s");
    println!("  throughput       {:.0} events/s", records as f64 / secs.max(1e-9));
    println!("  latency          {}", percentiles(&report.stats.latency_us));
    if let Some(delivered) = report.delivered_us.as_ref().filter(|d| !d.is_empty()) {
        println!("  delivered        {} (to the broker's acknowledgement)", percentiles(delivered));
    }
    println!("  model            {} (threshold {})", report.model_version, report.threshold);
    let s = &report.state;
    println!(
        "  state            {} users, {} retained events, {:.1} MiB ({} idle users evicted)",
        s.users,
        s.retained_events,
        s.bytes as f64 / (1 << 20) as f64,
        s.evicted_users
    );
    for (label, destination) in ["decisions", "alerts", "dead letters"].iter().zip(destinations) {
        println!("  {label:<16} {destination}");
    }
}
