//! Job inputs (file or built-in generator) and the source stream they become.

use std::path::PathBuf;

use operators::batch::EventBatch;
use operators::dead_letter::SourceName;
use operators::event::EventParser;
use operators::file_source::{LineReader, SharedFile};
use operators::generator::GeneratorConfig;
use operators::generator_source::GeneratorReader;
use operators::source::{block_source, SourceConfig};
use timely::dataflow::{Scope, Stream};

/// Where a job's events come from.
#[derive(Clone)]
pub enum JobInput {
    /// A JSON-lines file, mapped once and read by all workers (or JSON lines held in memory,
    /// named by `path` in dead letters).
    File { path: PathBuf, bytes: SharedFile },
    /// The deterministic built-in generator.
    Generator(GeneratorConfig),
}

impl JobInput {
    /// Opens a JSON-lines file.
    pub fn file(path: PathBuf) -> std::io::Result<JobInput> {
        let bytes = SharedFile::open(&path)?;
        Ok(JobInput::File { path, bytes })
    }

    /// How dead letters name positions of this input.
    pub fn source_name(&self) -> SourceName {
        match self {
            JobInput::File { path, .. } => SourceName::File(path.display().to_string()),
            JobInput::Generator(_) => SourceName::Generator,
        }
    }

    /// Builds this worker's source operator.
    pub fn source<'s>(
        &self,
        scope: Scope<'s, u64>,
        parser: EventParser,
        cfg: SourceConfig,
    ) -> Stream<'s, u64, Vec<EventBatch>> {
        match self {
            JobInput::File { bytes, .. } => {
                block_source(scope, "FileSource", LineReader::new(bytes.clone()), parser, cfg)
            }
            JobInput::Generator(g) => {
                block_source(scope, "GeneratorSource", GeneratorReader::new(g.clone()), parser, cfg)
            }
        }
    }
}

/// Sizes that trade latency for throughput.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Records per epoch.
    pub block_len: usize,
    /// Epochs in flight between sources and the end of the dataflow.
    pub max_in_flight: u64,
    /// Offered load, records per second over all workers (`None`: as fast as possible).
    pub rate: Option<f64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { block_len: 4096, max_in_flight: 8, rate: None }
    }
}
