//! Dead-letter records (SPEC §3): the bad record, the reason and where it came from.

use crate::batch::{DeadLetter, Origin};
use crate::json_out::{write_str, write_u64};

/// How positions of one source are named in dead letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceName {
    /// `PATH:LINE` (1-based lines).
    File(String),
    /// `generator:N` (0-based event number).
    Generator,
    /// `TOPIC/PARTITION/OFFSET`.
    Kafka(String),
}

impl SourceName {
    /// Appends the description of `origin` (unquoted).
    pub fn describe(&self, origin: Origin, out: &mut Vec<u8>) {
        match self {
            SourceName::File(path) => {
                out.extend_from_slice(path.as_bytes());
                out.push(b':');
                write_u64(out, origin.position + 1);
            }
            SourceName::Generator => {
                out.extend_from_slice(b"generator:");
                write_u64(out, origin.position);
            }
            SourceName::Kafka(topic) => {
                out.extend_from_slice(topic.as_bytes());
                out.push(b'/');
                write_u64(out, u64::from(origin.partition));
                out.push(b'/');
                write_u64(out, origin.position);
            }
        }
    }
}

/// Appends one dead letter as a JSON line.
pub fn write_dead_letter(out: &mut Vec<u8>, dead: &DeadLetter, source: &SourceName, scratch: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"raw\":");
    write_str(out, &dead.raw);
    out.extend_from_slice(b",\"error\":");
    write_str(out, &dead.error);
    out.extend_from_slice(b",\"source\":");
    scratch.clear();
    source.describe(dead.origin, scratch);
    write_str(out, &String::from_utf8_lossy(scratch));
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_json() {
        let dead = DeadLetter::new(b"{\"bad\xff", "missing eventId", Origin { partition: 3, position: 41 });
        let mut out = Vec::new();
        write_dead_letter(&mut out, &dead, &SourceName::File("in.jsonl".into()), &mut Vec::new());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["raw"], "{\"bad\u{fffd}");
        assert_eq!(v["error"], "missing eventId");
        assert_eq!(v["source"], "in.jsonl:42");
        let mut k = Vec::new();
        SourceName::Kafka("anomaly-events".into()).describe(dead.origin, &mut k);
        assert_eq!(k, b"anomaly-events/3/41");
    }
}
