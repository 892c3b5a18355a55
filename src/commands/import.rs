//! `vigil import`: converts a CSV by a mapping file and writes the events (or a train/test
//! split of them by event time) as JSON lines, plus a rejects file with line numbers.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use operators::time::rfc3339::parse_rfc3339_ms;

use crate::cli::ImportArgs;
use crate::error::UsageError;
use crate::import::convert::{Event, JsonEvent};
use crate::import::mapping::Mapping;
use crate::import::{import, ImportError};

/// `--split-at`: an RFC 3339 instant or epoch milliseconds.
fn split_instant(text: &str) -> Result<i64, UsageError> {
    text.parse::<i64>()
        .or_else(|_| parse_rfc3339_ms(text))
        .map_err(|_| UsageError(format!("--split-at: `{text}` is neither an RFC 3339 instant nor epoch milliseconds")))
}

/// `data/ulb.jsonl` + `train` → `data/ulb.train.jsonl`.
fn sibling(out: &Path, part: &str) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "jsonl".into());
    out.with_file_name(format!("{stem}.{part}.{ext}"))
}

fn write_lines<T: serde::Serialize>(path: &Path, items: impl Iterator<Item = T>) -> anyhow::Result<u64> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut count = 0;
    for item in items {
        serde_json::to_writer(&mut out, &item).with_context(|| format!("writing {}", path.display()))?;
        out.write_all(b"\n").with_context(|| format!("writing {}", path.display()))?;
        count += 1;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(count)
}

fn json_lines<'a>(events: &'a [Event], names: &'a [(usize, String)]) -> impl Iterator<Item = JsonEvent<'a>> {
    events.iter().map(move |event| JsonEvent { event, names })
}

/// Imports, writes and prints a summary.
pub fn execute(args: ImportArgs) -> anyhow::Result<()> {
    let csv_path = args.csv.clone().ok_or_else(|| UsageError("--csv: required".into()))?;
    let map_path = args.map.clone().ok_or_else(|| UsageError("--map: required".into()))?;
    let out = args.out.clone().ok_or_else(|| UsageError("--out: required".into()))?;
    let split = args.split_at.as_deref().map(split_instant).transpose()?;
    let mapping = Mapping::load(&map_path)?;
    let file = std::fs::File::open(&csv_path).map_err(|e| UsageError(format!("--csv {}: {e}", csv_path.display())))?;
    let imported = import(std::io::BufReader::with_capacity(1 << 20, file), &mapping).map_err(|e| match e {
        ImportError::Mapping(m) => anyhow::Error::new(UsageError(format!("--map {}: {m}", map_path.display()))),
        other => anyhow::Error::msg(format!("--csv {}: {other}", csv_path.display())),
    })?;
    let names = imported.mapping.features.as_slice();
    let fraud = imported.events.iter().filter(|e| e.label == Some(1)).count();
    let unlabelled = imported.events.iter().filter(|e| e.label.is_none()).count();
    println!(
        "imported {} events ({fraud} fraud, {unlabelled} unlabelled) from {}",
        imported.events.len(),
        csv_path.display()
    );
    match split {
        None => {
            write_lines(&out, json_lines(&imported.events, names))?;
            println!("events      → {}", out.display());
        }
        Some(at) => {
            let cut = imported.events.partition_point(|e| e.timestamp_ms < at);
            let (train, test) = imported.events.split_at(cut);
            for (part, events) in [("train", train), ("test", test)] {
                let path = sibling(&out, part);
                let fraud = events.iter().filter(|e| e.label == Some(1)).count();
                write_lines(&path, json_lines(events, names))?;
                println!("{part:<5} {:>8} events ({fraud} fraud) → {}", events.len(), path.display());
            }
        }
    }
    let rejects_path = args.rejects.clone().unwrap_or_else(|| sibling(&out, "rejects"));
    write_lines(&rejects_path, imported.rejects.iter())?;
    println!("rejected {} rows → {}", imported.rejects.len(), rejects_path.display());
    Ok(())
}
