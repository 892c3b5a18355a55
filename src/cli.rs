//! The command line (SPEC §5). Every flag is optional here so that a `--config` TOML file can
//! supply it (see `config.rs`); the effective value is flag, else file, else the documented
//! default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// vigil — real-time fraud and anomaly detection on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about, args_override_self = true)]
pub struct Cli {
    /// TOML file whose `[COMMAND]` section holds flag values (keys = flag names); flags win.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the streaming job (default: built-in generator → files in out/).
    Run(Box<RunArgs>),
    /// Write synthetic labelled events (SPEC §1) as JSON lines.
    Gen(GenArgs),
    /// Train the model on labelled events with the same feature dataflow as `run`.
    Train(TrainArgs),
    /// Score labelled events and print PR-AUC, ROC-AUC, precision/recall.
    Eval(EvalArgs),
    /// Write the SPEC §2 features of every event of a file as CSV.
    Features(FeaturesArgs),
    /// Measure throughput and latency of each stage and end to end.
    Bench(BenchArgs),
    /// Turn a CSV of transactions into events (SPEC §1) by a mapping file.
    Import(ImportArgs),
}

/// Generator settings shared by `gen`, `run` and `bench`.
#[derive(Args, Debug, Clone, Default)]
pub struct GeneratorArgs {
    /// Number of events (0 = endless, `run` only).
    #[arg(long)]
    pub events: Option<u64>,
    /// Number of distinct users.
    #[arg(long)]
    pub users: Option<u32>,
    /// Share of fraudulent events.
    #[arg(long)]
    pub fraud_rate: Option<f64>,
    /// Random seed; the same seed gives the same events.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Event-time span the events cover, e.g. 30d.
    #[arg(long)]
    pub span: Option<String>,
    /// Add card, device and ip attributes with cross-entity fraud (card testing, takeover
    /// rings' shared devices and IPs).
    #[arg(long)]
    pub entities: bool,
}

/// Timely cluster settings.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Worker threads per process.
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// Number of processes in the timely cluster.
    #[arg(long, short = 'n')]
    pub processes: Option<usize>,
    /// Index of this process (0-based).
    #[arg(long, short = 'p')]
    pub process: Option<usize>,
    /// File with one host:port per process.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
}

/// An input file of events and the workers that read it.
#[derive(Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Events as JSON lines (labelled, for train and eval).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Worker threads of the feature dataflow.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Unit of numeric timestamps: auto (by magnitude), s, ms, us or ns.
    #[arg(long)]
    pub timestamp_unit: Option<String>,
    /// Allowed lateness, e.g. 5m (give the job's `run --lateness`, so that training and
    /// evaluation see the windows the job will compute).
    #[arg(long)]
    pub lateness: Option<String>,
    /// Feature specification (TOML, SPEC §2b): windows over entities besides the user.
    #[arg(long)]
    pub features: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// `generator` (default), `file:PATH` or `kafka`.
    #[arg(long)]
    pub source: Option<String>,
    /// `files` (default: decisions/alerts/dead letters in --out-dir) or `kafka`.
    #[arg(long)]
    pub sink: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Directory of the output files.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Model weights (.safetensors, metadata .json beside it).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Feature specification (SPEC §2b); the model's own is used, and a different one is an
    /// error.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Block when the anomaly score is above this (default: the model's threshold).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Allowed lateness, e.g. 5m.
    #[arg(long)]
    pub lateness: Option<String>,
    /// Unit of numeric timestamps: auto (by magnitude, default), s, ms, us or ns.
    #[arg(long)]
    pub timestamp_unit: Option<String>,
    /// Add the model inputs to each decision record.
    #[arg(long)]
    pub emit_features: bool,
    /// Events per epoch (latency/throughput trade-off; default 2048, or ~10 ms of --rate).
    #[arg(long)]
    pub block_len: Option<usize>,
    /// Offered load in events/s (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Serve /metrics, /healthz and POST /api/v1/detect on HOST:PORT (port 0: any free port);
    /// the job then runs until SIGINT/SIGTERM even after a finite source is exhausted.
    #[arg(long)]
    pub http: Option<String>,
    /// File holding a token that `/api/*` requests must present as `Authorization: Bearer
    /// <token>` (401 otherwise); /metrics and /healthz stay open.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "http", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "http", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most `/api/*` requests served at once; more answer 503 with Retry-After (default 1024).
    #[arg(long, value_name = "N", requires = "http")]
    pub http_max_in_flight: Option<usize>,
    /// Seconds between per-operator timing summaries in the log, e.g. 10s (default 10s).
    #[arg(long)]
    pub log_interval: Option<String>,
    /// Write checkpoints of the keyed state and source positions here, and restore the newest
    /// complete one at start.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, e.g. 10s (default 10s; needs --checkpoint-dir).
    #[arg(long)]
    pub checkpoint_interval: Option<String>,
    /// Complete checkpoints kept in --checkpoint-dir (default 3).
    #[arg(long)]
    pub checkpoint_keep: Option<usize>,
    /// `at-least-once` (default) or `exactly-once` (Kafka source and sink, --checkpoint-dir, one
    /// process: each checkpoint's output and input offsets are one Kafka transaction).
    #[arg(long)]
    pub delivery: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

/// Kafka connection and topics of `run` (SPEC §4).
#[derive(Args, Debug, Clone, Default)]
pub struct KafkaArgs {
    /// Kafka brokers, HOST:PORT[,HOST:PORT…] (default 127.0.0.1:9092).
    #[arg(long)]
    pub brokers: Option<String>,
    /// A librdkafka property for every Kafka client, e.g. security.protocol=SASL_SSL (repeatable;
    /// overrides vigil's own settings).
    #[arg(long, value_name = "KEY=VALUE")]
    pub kafka_option: Vec<String>,
    /// Consumer group whose offsets the job commits (default vigil).
    #[arg(long)]
    pub group: Option<String>,
    /// Topic of input events (default anomaly-events).
    #[arg(long)]
    pub input_topic: Option<String>,
    /// Topic of decision records (default anomaly-decisions).
    #[arg(long)]
    pub decisions_topic: Option<String>,
    /// Topic of block decisions (default anomaly-alerts).
    #[arg(long)]
    pub alerts_topic: Option<String>,
    /// Topic of dead letters (default anomaly-dlq).
    #[arg(long)]
    pub dlq_topic: Option<String>,
    /// With `--source kafka`: process the messages present at start, then stop.
    #[arg(long)]
    pub stop_at_end: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenArgs {
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `file` (default: --out or standard output) or `kafka` (--brokers, --topic).
    #[arg(long)]
    pub to: Option<String>,
    /// Kafka brokers for `--to kafka` (default 127.0.0.1:9092).
    #[arg(long)]
    pub brokers: Option<String>,
    /// A librdkafka property of the producer, e.g. security.protocol=SASL_SSL (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub kafka_option: Vec<String>,
    /// Topic for `--to kafka` (default anomaly-events).
    #[arg(long)]
    pub topic: Option<String>,
    /// Events per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How timestamps are written: mixed (RFC 3339 and a tenth as epoch ms, default), rfc3339,
    /// or epoch numbers in s, ms, us or ns.
    #[arg(long)]
    pub timestamp_format: Option<String>,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: InputArgs,
    /// Where to write NAME.safetensors (and NAME.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Random seed of initialisation and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hidden layer widths, comma-separated (default 32,16).
    #[arg(long)]
    pub hidden: Option<String>,
    /// Decision threshold stored in the model (default 0.8; or choose one with the next three).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Choose the lowest threshold whose validation precision is at least P.
    #[arg(long, value_name = "P")]
    pub target_precision: Option<f64>,
    /// Choose the lowest threshold whose validation false-positive rate is at most F.
    #[arg(long, value_name = "F")]
    pub max_fpr: Option<f64>,
    /// Choose the threshold minimising C·missed frauds + false alarms on validation.
    #[arg(long, value_name = "C")]
    pub cost_ratio: Option<f64>,
    /// Train this many networks (seeds SEED, SEED+1, …) and average them into one model.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Loss weight of a fraud example (default: legitimate / fraud count of the training part).
    #[arg(long)]
    pub positive_weight: Option<f64>,
    /// Leave the SPEC §2 window features out of the model's inputs (own and extra features only).
    #[arg(long)]
    pub without_windows: bool,
    /// Model kind: mlp, gbdt, or auto (default: trains both on the same time split and keeps
    /// the better by validation PR-AUC).
    #[arg(long)]
    pub kind: Option<String>,
    /// Most trees of a gbdt (default 300 as 5 averaged boosters; 600 in one early-stopped
    /// booster when the validation split holds ≥ 500 frauds).
    #[arg(long)]
    pub max_trees: Option<usize>,
    /// Depth of the gbdt's trees (default 6; 8 with ≥ 500 validation frauds; at most 12).
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Train without labels (labels present are ignored): a model of how rare an event is among
    /// the training events, for streams without labels.
    #[arg(long)]
    pub unsupervised: bool,
    /// With --unsupervised: copula (default; Gaussian copula + Mahalanobis distance) or ecod
    /// (per-input empirical tails).
    #[arg(long)]
    pub method: Option<String>,
    /// With --unsupervised: the share of events to block; the threshold is the (1 − R) quantile
    /// of the training events' scores (default 0.001).
    #[arg(long, value_name = "R")]
    pub alert_rate: Option<f64>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: InputArgs,
    /// Model weights (default: the shipped model); repeat to compare models side by side.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Threshold for precision/recall (default: the model's).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a report (PR/ROC curves, score histogram, permutation importance as PNG,
    /// and index.html with the metrics) into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub data: InputArgs,
    /// CSV output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// Worker threads of the end-to-end run (default: 1 and 2).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Model weights (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep metrics and per-operator timings during the end-to-end runs, as `run` does.
    #[arg(long)]
    pub telemetry: bool,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// CSV file with a header line.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Mapping file (TOML) naming the id, user, time, amount, label and feature columns.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Events as JSON lines, ordered by timestamp (with --split-at: NAME.train.jsonl and NAME.test.jsonl).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write events before this instant (RFC 3339 or epoch ms) to the train file, the rest to the test file.
    #[arg(long)]
    pub split_at: Option<String>,
    /// Rows that could not be converted, as JSON lines with line number and reason (default NAME.rejects.jsonl).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
}
