//! `vigil import`: a CSV of transactions (e.g. a public fraud data set) → SPEC §1 events.
//! [`mapping`] is the typed mapping file, [`convert`] the pure per-row conversion; this module
//! reads the CSV, collects rejects with their line numbers and orders the events by time.

pub mod convert;
pub mod mapping;

use std::io::Read;

use convert::{convert, Event};
use mapping::ResolvedMapping;

/// A row that could not be converted, with its CSV line number (1 = the header line).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reject {
    pub line: u64,
    pub error: String,
    pub raw: String,
}

/// Everything one CSV turned into: events in timestamp order (stable: equal times keep their
/// CSV order) and the rejected rows in CSV order.
#[derive(Debug)]
pub struct Imported {
    pub mapping: ResolvedMapping,
    pub events: Vec<Event>,
    pub rejects: Vec<Reject>,
}

/// Reads the CSV. `Err` is a mapping that does not fit the header (a configuration error).
pub fn import<R: Read>(reader: R, mapping: &mapping::Mapping) -> Result<Imported, ImportError> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv.headers().map_err(|e| ImportError::Header(e.to_string()))?.clone();
    let header: Vec<&str> = header.iter().map(str::trim).collect();
    let resolved = mapping.resolve(&header).map_err(ImportError::Mapping)?;
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                row += 1;
                let line = record.position().map_or(0, |p| p.line());
                let cells: Vec<&str> = record.iter().collect();
                match convert(&resolved, &cells, row) {
                    Ok(event) => events.push(event),
                    Err(error) => rejects.push(Reject { line, error, raw: cells.join(",") }),
                }
            }
            Err(e) => {
                row += 1;
                let line = e.position().map_or(0, |p| p.line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ImportError::Read(e.to_string()));
                }
                rejects.push(Reject { line, error: e.to_string(), raw: String::new() });
            }
        }
    }
    events.sort_by_key(|e| e.timestamp_ms);
    Ok(Imported { mapping: resolved, events, rejects })
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV header: {0}")]
    Header(String),
    #[error("{0}")]
    Mapping(String),
    #[error("cannot read the CSV: {0}")]
    Read(String),
}
