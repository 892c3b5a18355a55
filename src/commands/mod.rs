//! One module per subcommand; each turns its flags into a job and reports the result.

pub mod bench;
pub mod eval;
pub mod features;
pub mod gen;
pub mod import;
pub mod run;
pub mod train;

use std::path::PathBuf;

use operators::features::spec::FeatureSpec;
use operators::generator::GeneratorConfig;
use operators::time::epoch::TimestampUnit;
use operators::time::rfc3339::DAY_MS;

use crate::cli::{ClusterArgs, GeneratorArgs};
use crate::config::parse_duration_ms;
use crate::error::UsageError;

/// The shipped model: `$VIGIL_MODEL`, else `models/default.safetensors` in the working
/// directory, else the one in the source tree the binary was built from.
pub fn default_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("VIGIL_MODEL") {
        return PathBuf::from(path);
    }
    let local = PathBuf::from("models/default.safetensors");
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors")
}

/// Where the Kafka brokers are unless `--brokers` says otherwise (scripts/kafka.sh's default).
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// librdkafka properties from `--kafka-option KEY=VALUE` flags.
pub fn kafka_options(flags: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    flags
        .iter()
        .map(|flag| {
            operators::source::kafka_client::parse_option(flag).map_err(|e| UsageError(format!("--kafka-option: {e}")))
        })
        .collect()
}

/// Checks `--rate`: a positive, finite number of events per second, if given.
pub fn positive_rate(rate: Option<f64>) -> Result<Option<f64>, UsageError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => {
            Err(UsageError(format!("--rate: {r} is not a positive number of events/s")))
        }
        other => Ok(other),
    }
}

/// The unit of numeric timestamps from `--timestamp-unit` (default: by magnitude).
pub fn timestamp_unit(flag: Option<&str>) -> Result<TimestampUnit, UsageError> {
    match flag {
        None => Ok(TimestampUnit::Auto),
        Some(name) => TimestampUnit::from_name(name)
            .ok_or_else(|| UsageError(format!("--timestamp-unit: `{name}` is not one of auto, s, ms, us, ns"))),
    }
}

/// Generator settings from flags, with SPEC defaults.
pub fn generator_config(args: &GeneratorArgs) -> Result<GeneratorConfig, UsageError> {
    let defaults = GeneratorConfig::default();
    let fraud_rate = args.fraud_rate.unwrap_or(defaults.fraud_rate);
    if !(0.0..=0.9).contains(&fraud_rate) {
        return Err(UsageError(format!("--fraud-rate: {fraud_rate} is outside [0, 0.9]")));
    }
    let users = args.users.unwrap_or(defaults.users);
    if users == 0 {
        return Err(UsageError("--users: must be at least 1".into()));
    }
    let span_ms = match &args.span {
        Some(text) => parse_duration_ms("--span", text)?,
        None => 30 * DAY_MS,
    };
    if span_ms <= 0 {
        return Err(UsageError("--span: must be positive".into()));
    }
    Ok(GeneratorConfig {
        events: args.events.unwrap_or(defaults.events),
        users,
        fraud_rate,
        seed: args.seed.unwrap_or(defaults.seed),
        span_ms,
        entities: args.entities,
        ..defaults
    })
}

/// Timely configuration from `--workers/-n/-p/--hostfile`, with consistency checks.
pub fn timely_config(args: &ClusterArgs) -> Result<timely::Config, UsageError> {
    let workers = args.workers.unwrap_or(1);
    if workers == 0 {
        return Err(UsageError("--workers: must be at least 1".into()));
    }
    let processes = args.processes.unwrap_or(1);
    let process = args.process.unwrap_or(0);
    if processes == 0 {
        return Err(UsageError("--processes: must be at least 1".into()));
    }
    if process >= processes {
        return Err(UsageError(format!("--process: {process} is not below --processes {processes}")));
    }
    if processes == 1 {
        if args.hostfile.is_some() {
            return Err(UsageError("--hostfile: only meaningful with --processes > 1".into()));
        }
        return Ok(timely::Config::process(workers));
    }
    let addresses = match &args.hostfile {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| UsageError(format!("--hostfile {}: {e}", path.display())))?;
            let mut hosts = Vec::new();
            for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
                if line.is_empty() || hosts.len() == processes {
                    continue;
                }
                if !is_host_port(line) {
                    return Err(UsageError(format!(
                        "--hostfile {}: line {number}: `{line}` is not HOST:PORT",
                        path.display()
                    )));
                }
                hosts.push(line.to_owned());
            }
            if hosts.len() < processes {
                return Err(UsageError(format!(
                    "--hostfile {}: has {} addresses, --processes needs {processes}",
                    path.display(),
                    hosts.len()
                )));
            }
            hosts
        }
        None => (0..processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
    };
    Ok(timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: workers,
            process,
            addresses,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    })
}

/// Whether `text` looks like `HOST:PORT` (a timely cluster address).
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Worker threads for single-process commands.
pub fn worker_count(workers: Option<usize>) -> Result<usize, UsageError> {
    match workers.unwrap_or(1) {
        0 => Err(UsageError("--workers: must be at least 1".into())),
        n => Ok(n),
    }
}

/// Reads `--features` (the default specification, SPEC §2 alone, without it).
pub fn feature_spec(path: Option<&std::path::Path>) -> anyhow::Result<FeatureSpec> {
    let Some(path) = path else { return Ok(FeatureSpec::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("--features {}: {e}", path.display())))?;
    FeatureSpec::parse(&text).map_err(|e| UsageError(format!("--features {}: {e}", path.display())).into())
}

/// The model's specification, checked against `--features` when that is given too (SPEC §5:
/// a different one is an error, never a silent skew between training and serving).
pub fn model_spec(model_spec: &FeatureSpec, flag: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = flag else { return Ok(()) };
    let given = feature_spec(Some(path))?;
    if given.entities != model_spec.entities || given.entity_ttl_ms != model_spec.entity_ttl_ms {
        return Err(UsageError(format!(
            "--features {}: differs from the specification the model was trained with (its features: {})",
            path.display(),
            model_spec.feature_names()[20..].join(", ")
        ))
        .into());
    }
    Ok(())
}
