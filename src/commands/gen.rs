//! `vigil gen`: synthetic labelled events to a file, standard output or a Kafka topic.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use operators::generator::{Generator, GeneratorConfig, TimestampForm};
use operators::source::kafka_client::{wait_for_topics, KafkaSettings, LoggingContext, TopicError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::cli::GenArgs;
use crate::commands::{generator_config, kafka_options, positive_rate, DEFAULT_BROKERS};
use crate::error::UsageError;
use crate::progress::Progress;

/// Writes the configured number of events.
pub fn execute(args: GenArgs) -> anyhow::Result<()> {
    let mut cfg = generator_config(&args.generator)?;
    if let Some(name) = &args.timestamp_format {
        cfg.timestamp_form = TimestampForm::from_name(name).ok_or_else(|| {
            UsageError(format!("--timestamp-format: `{name}` is not one of mixed, rfc3339, s, ms, us, ns"))
        })?;
    }
    if cfg.events == 0 {
        return Err(UsageError("--events: gen needs a finite number of events".into()).into());
    }
    let pacer = Pacer::new(positive_rate(args.rate)?);
    match args.to.as_deref() {
        None | Some("file") => write_lines(&args, cfg, pacer),
        Some("kafka") => produce(&args, cfg, pacer),
        Some(other) => Err(UsageError(format!("--to: `{other}` is not one of file, kafka")).into()),
    }
}

/// The shortest sleep of a paced producer: events due within it are sent at once. Sleeping
/// before every event (20 µs apart at 50,000 events/s) costs a core in wake-ups alone.
const PACE_TICK: Duration = Duration::from_millis(1);

/// Holds a producer to an offered load, to within [`PACE_TICK`].
struct Pacer {
    rate: Option<f64>,
    start: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Pacer { rate, start: Instant::now() }
    }

    /// Restarts the schedule so that `done` events are due now.
    fn restart_after(&mut self, done: u64) {
        let behind = self.rate.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(done as f64 / rate));
        self.start = Instant::now().checked_sub(behind).unwrap_or_else(Instant::now);
    }

    /// Sleeps until `done` events are due, unless they are due within a tick.
    fn wait(&self, done: u64) {
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(done as f64 / rate);
            if let Some(ahead) = due.checked_sub(self.start.elapsed()).filter(|ahead| *ahead >= PACE_TICK) {
                std::thread::sleep(ahead);
            }
        }
    }
}

fn write_lines(args: &GenArgs, cfg: GeneratorConfig, pacer: Pacer) -> anyhow::Result<()> {
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let progress = Progress::new("generating", Some(cfg.events), args.out.is_some());
    let chunk = if pacer.rate.is_some() { 1 } else { 1 << 16 };
    let mut generator = Generator::new(cfg);
    let mut line = Vec::with_capacity(1 << 16);
    let mut written = 0u64;
    while generator.next_line(&mut line) {
        written += 1;
        if line.len() >= chunk {
            pacer.wait(written);
            out.write_all(&line).context("writing events")?;
            line.clear();
            progress.set(written);
        }
    }
    out.write_all(&line).context("writing events")?;
    out.flush().context("writing events")?;
    progress.finish(written);
    tracing::info!(events = written, "generated");
    Ok(())
}

/// Produces the events to `--topic`, keyed by userId, at `--rate`.
fn produce(args: &GenArgs, cfg: GeneratorConfig, mut pacer: Pacer) -> anyhow::Result<()> {
    let settings = KafkaSettings {
        brokers: args.brokers.clone().unwrap_or_else(|| DEFAULT_BROKERS.to_owned()),
        group: "vigil-gen".to_owned(),
        options: kafka_options(&args.kafka_option)?,
    };
    let topic = args.topic.clone().unwrap_or_else(|| "anomaly-events".to_owned());
    match wait_for_topics(&settings, &[&topic], || false) {
        Ok(_) => {}
        Err(e @ TopicError::Missing(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    }
    let producer: ThreadedProducer<LoggingContext> = settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "0"),
        ])
        .create_with_context(LoggingContext::default())
        .context("creating the Kafka producer")?;
    let progress = Progress::new("producing", Some(cfg.events), true);
    let mut generator = Generator::new(cfg);
    let (mut line, mut key) = (Vec::with_capacity(1024), Vec::with_capacity(32));
    let mut sent = 0u64;
    while generator.next_keyed_line(&mut line, &mut key) {
        pacer.wait(sent);
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        let mut record = BaseRecord::to(&topic).key(&key[..]).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e).context("producing an event"),
            }
        }
        line.clear();
        sent += 1;
        if sent == 1 {
            // An idempotent producer sends nothing until the broker has given it a producer
            // id (about 1 s with nisshi): the first event waits for that here, so the paced
            // stream starts once the producer can deliver instead of as a 1 s burst behind.
            producer
                .flush(Duration::from_secs(600))
                .context("waiting for the broker to acknowledge the first event")?;
            pacer.restart_after(sent);
        }
        if sent.is_multiple_of(4096) {
            progress.set(sent);
        }
    }
    producer.flush(Duration::from_secs(600)).context("waiting for the broker to acknowledge the events")?;
    let failed = producer.context().failed_deliveries();
    if failed > 0 {
        anyhow::bail!("{failed} of {sent} events were not delivered to {topic}");
    }
    progress.finish(sent);
    tracing::info!(events = sent, topic, "produced");
    Ok(())
}
