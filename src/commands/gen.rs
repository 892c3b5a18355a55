//! `vigil gen`: synthetic labelled events to a file or standard output.

use std::io::{BufWriter, Write};

use anyhow::Context;
use operators::generator::Generator;

use crate::cli::GenArgs;
use crate::commands::generator_config;
use crate::error::UsageError;
use crate::progress::Progress;

/// Writes the configured number of events.
pub fn execute(args: GenArgs) -> anyhow::Result<()> {
    let cfg = generator_config(&args.generator)?;
    if cfg.events == 0 {
        return Err(UsageError("--events: gen needs a finite number of events".into()).into());
    }
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let progress = Progress::new("generating", Some(cfg.events), args.out.is_some());
    let mut generator = Generator::new(cfg);
    let mut line = Vec::with_capacity(1 << 16);
    let mut written = 0u64;
    while generator.next_line(&mut line) {
        written += 1;
        if line.len() >= 1 << 16 {
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
