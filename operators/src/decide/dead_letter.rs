//! Dead-letter records (SPEC §3): the bad record, the reason and where it came from.

use crate::batch::{DeadLetter, Origin, HTTP_PARTITION};
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
        if origin.partition == HTTP_PARTITION {
            out.extend_from_slice(b"http:request ");
            write_u64(out, origin.position);
            return;
        }
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

/// The kind of a dead letter, a small fixed set for metric labels (the full reason is in the
/// dead letter itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    Duplicate,
    TooLarge,
    InvalidUtf8,
    MissingField,
    Malformed,
}

impl DeadReason {
    pub const ALL: [DeadReason; 5] = [
        DeadReason::Duplicate,
        DeadReason::TooLarge,
        DeadReason::InvalidUtf8,
        DeadReason::MissingField,
        DeadReason::Malformed,
    ];

    /// Classifies a dead letter's error text (the texts of `event/parse.rs` and `state/window.rs`).
    pub fn of(error: &str) -> DeadReason {
        if error == "duplicate" {
            DeadReason::Duplicate
        } else if error.contains("1 MiB") {
            DeadReason::TooLarge
        } else if error.contains("UTF-8") {
            DeadReason::InvalidUtf8
        } else if error.starts_with("missing") {
            DeadReason::MissingField
        } else {
            DeadReason::Malformed
        }
    }

    /// Index into [`DeadReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DeadReason::Duplicate => "duplicate",
            DeadReason::TooLarge => "too_large",
            DeadReason::InvalidUtf8 => "invalid_utf8",
            DeadReason::MissingField => "missing_field",
            DeadReason::Malformed => "malformed",
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
        let mut h = Vec::new();
        SourceName::Generator.describe(Origin { partition: HTTP_PARTITION, position: 7 }, &mut h);
        assert_eq!(h, b"http:request 7");
    }

    #[test]
    fn classifies_reasons() {
        for (error, reason) in [
            ("duplicate", DeadReason::Duplicate),
            ("record is larger than 1 MiB", DeadReason::TooLarge),
            ("record is not valid UTF-8", DeadReason::InvalidUtf8),
            ("missing eventId", DeadReason::MissingField),
            ("expected value at line 1 column 1", DeadReason::Malformed),
        ] {
            assert_eq!(DeadReason::of(error), reason, "{error}");
            assert_eq!(DeadReason::ALL[reason.index()], reason);
        }
    }
}
