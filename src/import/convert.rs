//! One CSV row → one SPEC §1 event, as a pure function of the resolved mapping and the row's
//! cells, so every rule (missing cells, units, labels) is unit-tested without files.
//!
//! Rules: an empty or `NaN` feature cell is an absent feature (never 0); an infinite or
//! non-numeric one rejects the row, as do a missing/invalid id, user, time or amount and a
//! label other than 0/1. Numeric times are read from their decimal text (`operators::time::epoch`)
//! and floored to the millisecond, so `0.29` s is 290 ms despite binary floating point.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::mapping::{IdSource, ResolvedMapping, UserSource};
use operators::time::epoch::epoch_ms_of_number;
use operators::time::rfc3339::{check_range_ms, parse_rfc3339_ms, write_rfc3339_ms, TimeError};

/// A converted row.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub user_id: String,
    pub timestamp_ms: i64,
    pub amount: f64,
    pub label: Option<u8>,
    /// `(index into the mapping's features, value)` of the present features.
    pub features: Vec<(usize, f64)>,
}

/// Converts the cells of data row `row` (1 = first row after the header).
pub fn convert(m: &ResolvedMapping, cells: &[&str], row: u64) -> Result<Event, String> {
    if cells.len() != m.width {
        return Err(format!("{} fields, the header has {}", cells.len(), m.width));
    }
    let event_id = match m.id {
        IdSource::Column(c) => match cells[c].trim() {
            "" => return Err("empty event id".into()),
            id => format!("{}{id}", m.id_prefix),
        },
        IdSource::RowNumber => format!("{}{row}", m.id_prefix),
    };
    let user_id = match &m.user {
        UserSource::Constant(k) => k.clone(),
        UserSource::Columns(columns, separator) => {
            let parts: Vec<&str> = columns.iter().map(|&c| cells[c].trim()).collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err("empty user id column".into());
            }
            parts.join(separator)
        }
    };
    let timestamp_ms = timestamp(m, cells[m.time].trim())?;
    let amount = number(cells[m.amount]).map_err(|e| format!("amount: {e}"))?.ok_or("amount: empty cell")?;
    let label = match m.label {
        None => None,
        Some(c) => match number(cells[c]).map_err(|e| format!("label: {e}"))? {
            None => None,
            Some(v) if v == 0.0 || v == 1.0 => Some(v as u8),
            Some(v) => return Err(format!("label: {v} is not 0 or 1")),
        },
    };
    let mut features = Vec::with_capacity(m.features.len());
    for (i, (column, name)) in m.features.iter().enumerate() {
        if let Some(v) = number(cells[*column]).map_err(|e| format!("{name}: {e}"))? {
            features.push((i, v));
        }
    }
    Ok(Event { event_id, user_id, timestamp_ms, amount, label, features })
}

/// A numeric cell: `None` when empty or NaN, an error when not a finite number.
fn number(cell: &str) -> Result<Option<f64>, String> {
    let cell = cell.trim();
    if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(format!("`{cell}` is not finite")),
        Err(_) => Err(format!("`{cell}` is not a number")),
    }
}

fn timestamp(m: &ResolvedMapping, cell: &str) -> Result<i64, String> {
    let ms = match m.unit.numeric() {
        None => parse_rfc3339_ms(cell).map_err(|e| format!("timestamp: `{cell}`: {e}"))?,
        Some(_) if cell.is_empty() => return Err("timestamp: empty cell".into()),
        Some(unit) => epoch_ms_of_number(cell, unit)
            .map_err(|e| match e {
                TimeError::Number => format!("timestamp: `{cell}` is not a number"),
                e => format!("timestamp: `{cell}`: {e}"),
            })?
            .checked_add(m.base_ms)
            .ok_or("timestamp: out of range")?,
    };
    check_range_ms(ms).map_err(|e| format!("timestamp: `{cell}`: {e}"))
}

/// The event as one JSON line (SPEC §1), with the feature names of the mapping.
pub struct JsonEvent<'a> {
    pub event: &'a Event,
    pub names: &'a [(usize, String)],
}

impl Serialize for JsonEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut time = Vec::with_capacity(24);
        write_rfc3339_ms(e.timestamp_ms, &mut time);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("eventId", &e.event_id)?;
        map.serialize_entry("timestamp", &String::from_utf8_lossy(&time))?;
        map.serialize_entry("userId", &e.user_id)?;
        map.serialize_entry("value", &e.amount)?;
        map.serialize_entry("features", &Features(self))?;
        if let Some(label) = e.label {
            map.serialize_entry("label", &label)?;
        }
        map.end()
    }
}

struct Features<'a>(&'a JsonEvent<'a>);

impl Serialize for Features<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("amount", &self.0.event.amount)?;
        for &(i, v) in &self.0.event.features {
            map.serialize_entry(&self.0.names[i].1, &v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::mapping::TimeUnit;

    fn mapping(unit: TimeUnit, base_ms: i64) -> ResolvedMapping {
        ResolvedMapping {
            id: IdSource::Column(0),
            id_prefix: "x-".into(),
            user: UserSource::Columns(vec![1, 2], "|".into()),
            time: 3,
            unit,
            base_ms,
            amount: 4,
            label: Some(5),
            features: vec![(6, "hour_of_day".into()), (7, "v1".into())],
            width: 8,
        }
    }

    #[test]
    fn converts_cells_by_the_rules() {
        let m = mapping(TimeUnit::S, 1_000_000);
        let e = convert(&m, &["7", "a", "b", "0.29", "12.5", "1", "", "NaN"], 3).unwrap();
        assert_eq!(e.event_id, "x-7");
        assert_eq!(e.user_id, "a|b");
        assert_eq!(e.timestamp_ms, 1_000_290);
        assert_eq!(e.amount, 12.5);
        assert_eq!(e.label, Some(1));
        assert!(e.features.is_empty(), "empty and NaN cells are absent, not 0");
        let e = convert(&m, &["7", "a", "b", "-1.0005", "0", "", "3", "-0.5"], 3).unwrap();
        assert_eq!(e.timestamp_ms, 1_000_000 - 1001, "floored towards the past");
        assert_eq!(e.label, None);
        assert_eq!(e.features, vec![(0, 3.0), (1, -0.5)]);
        let ms = mapping(TimeUnit::Ms, 0);
        assert_eq!(convert(&ms, &["7", "a", "b", "1500.9", "1", "0", "", ""], 1).unwrap().timestamp_ms, 1500);
        let rfc = mapping(TimeUnit::Rfc3339, 0);
        let e = convert(&rfc, &["7", "a", "b", "1970-01-01T00:00:01.5Z", "1", "0", "", ""], 1).unwrap();
        assert_eq!(e.timestamp_ms, 1500);
        for (unit, cell) in [
            (TimeUnit::Auto, "1735516800"),
            (TimeUnit::Auto, "1735516800000.4"),
            (TimeUnit::Auto, "1735516800000000"),
            (TimeUnit::Us, "1735516800000000"),
            (TimeUnit::Ns, "1735516800000000000"),
        ] {
            let e = convert(&mapping(unit, 0), &["7", "a", "b", cell, "1", "0", "", ""], 1).unwrap();
            assert_eq!(e.timestamp_ms, 1_735_516_800_000, "{unit:?} {cell}");
        }
    }

    #[test]
    fn bad_rows_say_why() {
        let m = mapping(TimeUnit::S, 0);
        let cases: [(&[&str], &str); 8] = [
            (&["7", "a", "b", "1", "2", "0", ""], "7 fields, the header has 8"),
            (&["", "a", "b", "1", "2", "0", "", ""], "empty event id"),
            (&["7", "a", "", "1", "2", "0", "", ""], "empty user id"),
            (&["7", "a", "b", "soon", "2", "0", "", ""], "timestamp: `soon` is not a number"),
            (&["7", "a", "b", "1", "", "0", "", ""], "amount: empty cell"),
            (&["7", "a", "b", "1", "inf", "0", "", ""], "amount: `inf` is not finite"),
            (&["7", "a", "b", "1", "2", "2", "", ""], "label: 2 is not 0 or 1"),
            (&["7", "a", "b", "1", "2", "0", "", "x"], "v1: `x` is not a number"),
        ];
        for (cells, reason) in cases {
            let err = convert(&m, cells, 1).unwrap_err();
            assert!(err.contains(reason), "{cells:?}: {err}");
        }
    }

    #[test]
    fn serialises_to_spec_json() {
        let m = mapping(TimeUnit::S, 0);
        let e = convert(&m, &["7", "a", "b", "86400", "12.5", "0", "", "-0.5"], 1).unwrap();
        let text = serde_json::to_string(&JsonEvent { event: &e, names: &m.features }).unwrap();
        assert_eq!(
            text,
            r#"{"eventId":"x-7","timestamp":"1970-01-02T00:00:00.000Z","userId":"a|b","value":12.5,"features":{"amount":12.5,"v1":-0.5},"label":0}"#
        );
    }
}
