//! The mapping file of `vigil import`: which CSV columns become which parts of a SPEC §1
//! event. Parsed into typed structs that refuse unknown keys, then checked against the CSV
//! header into a [`ResolvedMapping`] of column indexes, so every per-row step is an index
//! lookup and every mistake in the file is reported once, naming the field, before any row is
//! read.

use serde::Deserialize;

use crate::error::UsageError;
use operators::features::OWN_FEATURE_NAMES;
use operators::time::epoch::TimestampUnit;
use operators::time::rfc3339::parse_rfc3339_ms;

/// The whole mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub event_id: EventIdMapping,
    pub user_id: UserIdMapping,
    pub timestamp: TimestampMapping,
    /// Column of the transaction amount (`features.amount` and `value`).
    pub amount: String,
    /// Column of the 0/1 fraud label; an empty cell leaves the event unlabelled.
    pub label: Option<String>,
    /// Column of `features.hour_of_day`.
    pub hour_of_day: Option<String>,
    /// Column of `features.location_distance`.
    pub location_distance: Option<String>,
    /// Column of `features.days_since_last_txn`.
    pub days_since_last_txn: Option<String>,
    #[serde(default)]
    pub features: FeatureColumns,
}

/// `eventId`: a column, or the CSV row number (1 = first data row) when the data has no id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIdMapping {
    pub column: Option<String>,
    #[serde(default)]
    pub row_number: bool,
    /// Put before every id, e.g. `ulb-`.
    #[serde(default)]
    pub prefix: String,
}

/// `userId`: one column, several columns joined by `separator`, or one constant for all rows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIdMapping {
    pub column: Option<String>,
    pub columns: Option<Vec<String>>,
    #[serde(default = "default_separator")]
    pub separator: String,
    pub constant: Option<String>,
}

fn default_separator() -> String {
    "|".to_string()
}

/// Event time: a column of RFC 3339 strings, or of numbers in `unit` (`s`, `ms`, `us`, `ns`, or
/// `auto`: by magnitude, as SPEC §1 reads event timestamps), absolute (epoch) or relative to
/// `base` (an RFC 3339 instant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampMapping {
    pub column: String,
    pub unit: TimeUnit,
    pub base: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Auto,
    S,
    Ms,
    Us,
    Ns,
    Rfc3339,
}

impl TimeUnit {
    /// The unit of a numeric column (`None` for RFC 3339 text).
    pub fn numeric(self) -> Option<TimestampUnit> {
        match self {
            TimeUnit::Auto => Some(TimestampUnit::Auto),
            TimeUnit::S => Some(TimestampUnit::Seconds),
            TimeUnit::Ms => Some(TimestampUnit::Millis),
            TimeUnit::Us => Some(TimestampUnit::Micros),
            TimeUnit::Ns => Some(TimestampUnit::Nanos),
            TimeUnit::Rfc3339 => None,
        }
    }
}

/// Extra numeric feature columns, by name and/or by a `*` pattern; each becomes the feature
/// named by its column in lower case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureColumns {
    #[serde(default)]
    pub columns: Vec<String>,
    pub pattern: Option<String>,
}

/// How the event id of a row is made.
#[derive(Debug, Clone)]
pub enum IdSource {
    Column(usize),
    RowNumber,
}

/// How the user id of a row is made.
#[derive(Debug, Clone)]
pub enum UserSource {
    Columns(Vec<usize>, String),
    Constant(String),
}

/// The mapping applied to one CSV header: column indexes and output names.
#[derive(Debug, Clone)]
pub struct ResolvedMapping {
    pub id: IdSource,
    pub id_prefix: String,
    pub user: UserSource,
    pub time: usize,
    pub unit: TimeUnit,
    /// Epoch ms added to numeric times (0 = absolute).
    pub base_ms: i64,
    pub amount: usize,
    pub label: Option<usize>,
    /// `(column, feature name)` of the other numeric features, named ones first in SPEC order.
    pub features: Vec<(usize, String)>,
    /// Number of header columns; a row with another count is rejected.
    pub width: usize,
}

impl Mapping {
    /// Reads and parses a mapping file; errors name the file and the field.
    pub fn load(path: &std::path::Path) -> Result<Mapping, UsageError> {
        let fail = |m: String| UsageError(format!("--map {}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        toml::from_str(&text).map_err(|e: toml::de::Error| fail(e.to_string().trim_end().to_string()))
    }

    /// Checks the mapping against the CSV header. `Err` names the mapping field at fault.
    pub fn resolve(&self, header: &[&str]) -> Result<ResolvedMapping, String> {
        let find = |field: &str, column: &str| {
            header
                .iter()
                .position(|h| *h == column)
                .ok_or_else(|| format!("{field}: column `{column}` is not in the CSV header"))
        };
        let id = match (&self.event_id.column, self.event_id.row_number) {
            (Some(c), false) => IdSource::Column(find("event_id.column", c)?),
            (None, true) => IdSource::RowNumber,
            _ => return Err("event_id: give exactly one of `column = \"…\"` or `row_number = true`".into()),
        };
        let u = &self.user_id;
        let user = match (&u.column, &u.columns, &u.constant) {
            (Some(c), None, None) => UserSource::Columns(vec![find("user_id.column", c)?], String::new()),
            (None, Some(cs), None) if !cs.is_empty() => UserSource::Columns(
                cs.iter().map(|c| find("user_id.columns", c)).collect::<Result<_, _>>()?,
                u.separator.clone(),
            ),
            (None, None, Some(k)) if !k.is_empty() => UserSource::Constant(k.clone()),
            _ => {
                return Err("user_id: give exactly one of `column`, a non-empty `columns` list or a \
                            non-empty `constant`"
                    .into())
            }
        };
        let t = &self.timestamp;
        let base_ms = match (&t.base, t.unit) {
            (Some(_), TimeUnit::Rfc3339) => return Err("timestamp.base: only meaningful with a numeric unit".into()),
            (Some(b), _) => {
                parse_rfc3339_ms(b).map_err(|e| format!("timestamp.base: `{b}` is not an RFC 3339 instant ({e})"))?
            }
            (None, _) => 0,
        };
        let mut features = Vec::new();
        let named = [&self.hour_of_day, &self.location_distance, &self.days_since_last_txn];
        for (column, name) in named.iter().zip(&OWN_FEATURE_NAMES[1..]) {
            if let Some(c) = column {
                features.push((find(name, c)?, name.to_string()));
            }
        }
        for c in &self.features.columns {
            features.push((find("features.columns", c)?, c.to_lowercase()));
        }
        if let Some(p) = &self.features.pattern {
            let matched: Vec<usize> = (0..header.len()).filter(|&i| glob_match(p, header[i])).collect();
            if matched.is_empty() {
                return Err(format!("features.pattern: `{p}` matches no column of the CSV header"));
            }
            features.extend(matched.into_iter().map(|i| (i, header[i].to_lowercase())));
        }
        let mut seen = std::collections::HashSet::from(["amount".to_string()]);
        for (_, name) in &features {
            if !seen.insert(name.clone()) {
                return Err(format!("features: feature `{name}` would be written twice"));
            }
        }
        Ok(ResolvedMapping {
            id,
            id_prefix: self.event_id.prefix.clone(),
            user,
            time: find("timestamp.column", &t.column)?,
            unit: t.unit,
            base_ms,
            amount: find("amount", &self.amount)?,
            label: self.label.as_ref().map(|c| find("label", c)).transpose()?,
            features,
            width: header.len(),
        })
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("V*", "V12"));
        assert!(glob_match("V*", "V"));
        assert!(!glob_match("V*", "Amount"));
        assert!(glob_match("*_score", "risk_score"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    fn mapping(text: &str) -> Result<Mapping, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.to_string())
    }

    const BASE: &str = "amount = \"amt\"\n[event_id]\nrow_number = true\n[user_id]\nconstant = \"all\"\n\
                        [timestamp]\ncolumn = \"t\"\nunit = \"s\"\n";

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let err = mapping(&format!("{BASE}colour = 1\n")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = mapping(&BASE.replace("unit = \"s\"", "unit = \"minutes\"")).unwrap_err();
        assert!(err.contains("unit") || err.contains("minutes"), "{err}");
        let err = mapping(&BASE.replace("amount = \"amt\"\n", "")).unwrap_err();
        assert!(err.contains("amount"), "{err}");
    }

    #[test]
    fn resolution_checks_columns_and_choices() {
        let header = ["t", "amt", "V1", "V2", "id"];
        let m = mapping(BASE).unwrap();
        let r = m.resolve(&header).unwrap();
        assert_eq!((r.time, r.amount, r.width), (0, 1, 5));
        let m = mapping(&BASE.replace("row_number = true", "row_number = true\ncolumn = \"id\"")).unwrap();
        assert!(m.resolve(&header).unwrap_err().starts_with("event_id"));
        let m = mapping(&BASE.replace("constant = \"all\"", "column = \"user\"")).unwrap();
        let err = m.resolve(&header).unwrap_err();
        assert!(err.contains("user_id.column") && err.contains("`user`"), "{err}");
        let m = mapping(&format!("{BASE}[features]\npattern = \"X*\"\n")).unwrap();
        assert!(m.resolve(&header).unwrap_err().starts_with("features.pattern"));
        let m = mapping(&format!("{BASE}[features]\npattern = \"V*\"\ncolumns = [\"V1\"]\n")).unwrap();
        assert!(m.resolve(&header).unwrap_err().contains("`v1` would be written twice"));
        let m = mapping(&format!("{BASE}[features]\npattern = \"V*\"\n")).unwrap();
        let names: Vec<String> = m.resolve(&header).unwrap().features.into_iter().map(|f| f.1).collect();
        assert_eq!(names, ["v1", "v2"]);
        let m = mapping(&BASE.replace("unit = \"s\"", "unit = \"s\"\nbase = \"yesterday\"")).unwrap();
        assert!(m.resolve(&header).unwrap_err().starts_with("timestamp.base"));
    }
}
