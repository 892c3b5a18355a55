//! The `vigil` binary: command line, configuration and wiring of sources and sinks to the
//! dataflows.

mod cli;
mod commands;
mod config;
mod detect;
mod error;
mod http;
mod import;
mod progress;
mod report;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// Batches are allocated and freed at a high rate on every worker; mimalloc reuses that memory
/// per thread instead of returning it to the OS and faulting it back in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A panic on any thread (a timely worker, a producer callback) is a runtime failure of the
/// whole job: report it and exit 1 at once. Timely's other workers would otherwise wait for
/// the dead one for ever; exiting without committing is safe, since offsets are only ever
/// committed for delivered output.
fn exit_on_worker_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(1);
    }));
}

fn main() {
    // candle must not spawn its own thread pool: every timely worker already owns a core, and
    // extra compute threads halved throughput on this class of machine (DESIGN.md).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    exit_on_worker_panic();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match config::expand_args(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Run(args) => commands::run::execute(*args),
        Command::Gen(args) => commands::gen::execute(args),
        Command::Train(args) => commands::train::execute(args),
        Command::Eval(args) => commands::eval::execute(args),
        Command::Features(args) => commands::features::execute(args),
        Command::Bench(args) => commands::bench::execute(args),
        Command::Import(args) => commands::import::execute(args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(error::exit_code(&error));
    }
}
