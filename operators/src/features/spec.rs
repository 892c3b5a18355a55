//! The feature specification (SPEC §2b): which entities the job keeps windows for, keyed by
//! which fields, and which aggregates of them become features — read from TOML, validated
//! with errors that name the line and the field, and stored in the model file as its text so
//! serving computes exactly what training saw.
//!
//! The default specification (no file) is SPEC §2 alone. A file adds entities: their features
//! come after the 20 SPEC §2 user features, entity by entity in declaration order; within an
//! entity, its `[[window]]` blocks (window by window, aggregate by aggregate within a window, as
//! in SPEC §2), then its `[[prior]]` aggregates.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::features::{RETENTION_MS, WINDOW_FEATURE_NAMES};
use crate::time::duration::parse_ms;

/// Idle time after which an entity key is forgotten with its whole-history totals (SPEC §2b).
pub const DEFAULT_ENTITY_TTL_MS: i64 = 180 * 86_400_000;

/// The field that names an event's user; every other key field is a key of `features`.
pub const USER_FIELD: &str = "userId";

/// A validated feature specification.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSpec {
    pub entities: Vec<EntitySpec>,
    pub entity_ttl_ms: i64,
    /// The TOML it was read from (empty for the default), as stored in model files.
    pub text: String,
}

/// One entity: its key and its aggregates.
#[derive(Clone, Debug, PartialEq)]
pub struct EntitySpec {
    pub name: String,
    /// `userId` or keys of `features`; the key value is their texts joined with `|`.
    pub key: Vec<String>,
    pub windows: Vec<WindowBlock>,
    pub priors: Vec<Prior>,
}

/// A `[[window]]` block: aggregates of one numeric input over trailing windows.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowBlock {
    /// `amount` or another numeric input (own feature or extra key).
    pub of: String,
    pub spans: Vec<Span>,
    /// Each span as the specification writes it (`24h`, `all`): names spell it so.
    pub labels: Vec<String>,
    pub aggs: Vec<Agg>,
}

/// A window's extent: a trailing duration or the key's whole accepted history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Trailing(i64),
    All,
}

/// A window aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Cnt,
    Sum,
    Max,
    Min,
    Mean,
    Std,
}

/// A prior aggregate (history only, SPEC §2 "prior features").
#[derive(Clone, Debug, PartialEq)]
pub enum Prior {
    SecsSincePrev,
    AmountRatio,
    /// Distinct values of `attr` among H_W(e) ∪ {e}.
    Distinct {
        attr: String,
        span_ms: i64,
        label: String,
    },
    /// 1 iff e's value of `attr` does not occur in H_W(e).
    New {
        attr: String,
        span_ms: i64,
        label: String,
    },
}

/// A specification error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

impl Agg {
    fn parse(text: &str) -> Option<Agg> {
        Some(match text {
            "cnt" => Agg::Cnt,
            "sum" => Agg::Sum,
            "max" => Agg::Max,
            "min" => Agg::Min,
            "mean" => Agg::Mean,
            "std" => Agg::Std,
            _ => return None,
        })
    }

    /// The name's stem, as in `cnt_1h`.
    pub fn label(self) -> &'static str {
        match self {
            Agg::Cnt => "cnt",
            Agg::Sum => "sum",
            Agg::Max => "max",
            Agg::Min => "min",
            Agg::Mean => "mean",
            Agg::Std => "std",
        }
    }
}

impl Default for FeatureSpec {
    /// SPEC §2 alone.
    fn default() -> Self {
        FeatureSpec { entities: Vec::new(), entity_ttl_ms: DEFAULT_ENTITY_TTL_MS, text: String::new() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    entity: Vec<Spanned<RawEntity>>,
    #[serde(default)]
    window: Vec<Spanned<RawWindow>>,
    #[serde(default)]
    prior: Vec<Spanned<RawPrior>>,
    #[serde(default)]
    input: Vec<Spanned<toml::Table>>,
    entity_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: Spanned<String>,
    key: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    entity: Spanned<String>,
    #[serde(default = "amount")]
    of: Spanned<String>,
    windows: Spanned<Vec<String>>,
    aggs: Spanned<Vec<String>>,
}

fn amount() -> Spanned<String> {
    Spanned::new(0..0, "amount".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrior {
    entity: Spanned<String>,
    aggs: Spanned<Vec<String>>,
}

/// Turns byte offsets of the source into 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> SpecError {
        let line = self.0.as_bytes()[..span.start.min(self.0.len())].iter().filter(|&&b| b == b'\n').count() + 1;
        SpecError { line, field: field.to_owned(), message: message.into() }
    }
}

impl FeatureSpec {
    /// Reads and validates a specification.
    pub fn parse(text: &str) -> Result<FeatureSpec, SpecError> {
        let lines = Lines(text);
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            lines.error(span, "toml", e.message().trim().to_owned())
        })?;
        if let Some(input) = raw.input.first() {
            return Err(lines.error(
                input.span(),
                "input",
                "attributes as categorical model inputs are not built yet; use them as entity keys",
            ));
        }
        let entity_ttl_ms = match &raw.entity_ttl {
            Some(ttl) => parse_ms(ttl.get_ref()).ok().filter(|ms| *ms > 0).ok_or_else(|| {
                lines.error(ttl.span(), "entity_ttl", format!("`{}` is not a positive duration", ttl.get_ref()))
            })?,
            None => DEFAULT_ENTITY_TTL_MS,
        };
        let mut entities: Vec<EntitySpec> = Vec::new();
        for raw_entity in &raw.entity {
            let entity = raw_entity.get_ref();
            let name = entity.name.get_ref();
            if !is_identifier(name) {
                return Err(lines.error(
                    entity.name.span(),
                    "entity.name",
                    format!("`{name}` must be letters, digits or `_`"),
                ));
            }
            if entities.iter().any(|e| &e.name == name) {
                return Err(lines.error(
                    entity.name.span(),
                    "entity.name",
                    format!("entity `{name}` is declared twice"),
                ));
            }
            let key = entity.key.get_ref();
            if key.is_empty() || key.iter().any(String::is_empty) {
                return Err(lines.error(entity.key.span(), "entity.key", "needs one or more non-empty field names"));
            }
            entities.push(EntitySpec { name: name.clone(), key: key.clone(), windows: Vec::new(), priors: Vec::new() });
        }
        let find = |name: &Spanned<String>, field: &str| {
            entities
                .iter()
                .position(|e| &e.name == name.get_ref())
                .ok_or_else(|| lines.error(name.span(), field, format!("no [[entity]] is named `{}`", name.get_ref())))
        };
        let mut blocks = Vec::new();
        for raw_window in &raw.window {
            let window = raw_window.get_ref();
            let entity = find(&window.entity, "window.entity")?;
            if window.of.get_ref().is_empty() {
                return Err(lines.error(window.of.span(), "window.of", "names no input"));
            }
            let spans = window
                .windows
                .get_ref()
                .iter()
                .map(|w| parse_span(w).map_err(|m| lines.error(window.windows.span(), "window.windows", m)))
                .collect::<Result<Vec<_>, _>>()?;
            let aggs = window
                .aggs
                .get_ref()
                .iter()
                .map(|a| {
                    Agg::parse(a).ok_or_else(|| {
                        lines.error(
                            window.aggs.span(),
                            "window.aggs",
                            format!("`{a}` is not one of cnt, sum, max, min, mean, std"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if spans.is_empty() || aggs.is_empty() {
                return Err(lines.error(raw_window.span(), "window", "needs at least one window and one aggregate"));
            }
            let labels = window.windows.get_ref().clone();
            blocks.push((
                entity,
                raw_window.span(),
                WindowBlock { of: window.of.get_ref().clone(), spans, labels, aggs },
            ));
        }
        let mut priors = Vec::new();
        for raw_prior in &raw.prior {
            let prior = raw_prior.get_ref();
            let entity = find(&prior.entity, "prior.entity")?;
            for agg in prior.aggs.get_ref() {
                let parsed = parse_prior(agg).map_err(|m| lines.error(prior.aggs.span(), "prior.aggs", m))?;
                priors.push((entity, raw_prior.span(), parsed));
            }
        }
        for (entity, _, block) in &blocks {
            entities[*entity].windows.push(block.clone());
        }
        for (entity, _, prior) in &priors {
            entities[*entity].priors.push(prior.clone());
        }
        let spec = FeatureSpec { entities, entity_ttl_ms, text: text.to_owned() };
        // Two aggregates with one name (e.g. `sum_1h` of two inputs) would be two columns a
        // reader cannot tell apart.
        let mut seen = std::collections::HashSet::new();
        for (entity, names) in spec.entities.iter().map(|e| (e, e.feature_names())) {
            for name in names {
                if !seen.insert(name.clone()) {
                    let span = blocks
                        .iter()
                        .map(|(i, span, _)| (*i, span.clone()))
                        .chain(priors.iter().map(|(i, span, _)| (*i, span.clone())))
                        .rfind(|(i, _)| spec.entities[*i].name == entity.name)
                        .map_or(0..0, |(_, span)| span);
                    return Err(lines.error(span, "aggs", format!("feature `{name}` is defined twice")));
                }
            }
        }
        Ok(spec)
    }

    /// True for SPEC §2 alone.
    pub fn is_default(&self) -> bool {
        self.entities.is_empty()
    }

    /// Every feature name, in column order: SPEC §2's, then each entity's.
    pub fn feature_names(&self) -> Vec<String> {
        WINDOW_FEATURE_NAMES
            .iter()
            .map(|n| (*n).to_owned())
            .chain(self.entities.iter().flat_map(EntitySpec::feature_names))
            .collect()
    }

    /// The fields whose values the parser keeps (as hashes) for this specification: entity
    /// key fields and the attributes of `distinct`/`new`, each once, in order of first use.
    pub fn attribute_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        for entity in &self.entities {
            let attrs = entity.priors.iter().filter_map(Prior::attribute);
            for field in entity.key.iter().map(String::as_str).chain(attrs) {
                if !fields.iter().any(|f| f == field) {
                    fields.push(field.to_owned());
                }
            }
        }
        fields
    }

    /// The numeric inputs that windows aggregate besides `amount`, each once.
    pub fn window_inputs(&self) -> Vec<String> {
        let mut inputs: Vec<String> = Vec::new();
        for block in self.entities.iter().flat_map(|e| &e.windows) {
            if block.of != "amount" && !inputs.contains(&block.of) {
                inputs.push(block.of.clone());
            }
        }
        inputs
    }
}

impl EntitySpec {
    /// This entity's feature names, in column order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for block in &self.windows {
            for label in &block.labels {
                for agg in &block.aggs {
                    names.push(format!("{}.{}_{}", self.name, agg.label(), label));
                }
            }
        }
        for prior in &self.priors {
            names.push(format!("{}.{}", self.name, prior.label()));
        }
        names
    }

    /// Number of features.
    pub fn width(&self) -> usize {
        self.windows.iter().map(|b| b.spans.len() * b.aggs.len()).sum::<usize>() + self.priors.len()
    }
}

impl Prior {
    /// The name's part after `<entity>.`.
    pub fn label(&self) -> String {
        match self {
            Prior::SecsSincePrev => "secs_since_prev".to_owned(),
            Prior::AmountRatio => "amount_ratio".to_owned(),
            Prior::Distinct { attr, label, .. } => format!("distinct_{attr}_{label}"),
            Prior::New { attr, label, .. } => format!("new_{attr}_{label}"),
        }
    }

    /// The attribute a `distinct`/`new` aggregate reads.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            Prior::Distinct { attr, .. } | Prior::New { attr, .. } => Some(attr),
            Prior::SecsSincePrev | Prior::AmountRatio => None,
        }
    }
}

fn parse_span(text: &str) -> Result<Span, String> {
    if text == "all" {
        return Ok(Span::All);
    }
    let ms = parse_ms(text)?;
    if ms <= 0 || ms > RETENTION_MS {
        return Err(format!("`{text}` must be longer than 0 and at most 30d, or `all`"));
    }
    Ok(Span::Trailing(ms))
}

fn parse_prior(text: &str) -> Result<Prior, String> {
    match text {
        "secs_since_prev" => return Ok(Prior::SecsSincePrev),
        "amount_ratio" => return Ok(Prior::AmountRatio),
        _ => {}
    }
    let parts: Vec<&str> = text.split(':').collect();
    let known = "is not secs_since_prev, amount_ratio, distinct:<attr>:<window> or new:<attr>:<window>";
    let [kind, attr, window] = parts[..] else {
        return Err(format!("`{text}` {known}"));
    };
    if attr.is_empty() {
        return Err(format!("`{text}` names no attribute"));
    }
    let span_ms = match parse_span(window)? {
        Span::Trailing(ms) => ms,
        Span::All => return Err(format!("`{text}`: distinct and new need a window of at most 30d")),
    };
    let (attr, label) = (attr.to_owned(), window.to_owned());
    match kind {
        "distinct" => Ok(Prior::Distinct { attr, span_ms, label }),
        "new" => Ok(Prior::New { attr, span_ms, label }),
        _ => Err(format!("`{text}` {known}")),
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"
[[entity]]
name = "card"
key = ["card"]

[[window]]
entity = "card"
of = "amount"
windows = ["10m", "1h", "all"]
aggs = ["cnt", "sum", "max", "min", "mean", "std"]

[[prior]]
entity = "card"
aggs = ["secs_since_prev", "amount_ratio", "distinct:userId:1h", "new:device:30d"]
"#;

    #[test]
    fn names_follow_the_spec() {
        let spec = FeatureSpec::parse(CARD).unwrap();
        let names = spec.feature_names();
        assert_eq!(names.len(), 20 + 18 + 4);
        assert_eq!(&names[..20], &WINDOW_FEATURE_NAMES.map(str::to_owned)[..]);
        assert_eq!(names[20], "card.cnt_10m");
        assert_eq!(names[25], "card.std_10m");
        assert_eq!(names[26], "card.cnt_1h");
        assert_eq!(names[32], "card.cnt_all");
        assert_eq!(
            &names[38..],
            ["card.secs_since_prev", "card.amount_ratio", "card.distinct_userId_1h", "card.new_device_30d"]
        );
        assert_eq!(spec.attribute_fields(), ["card", "userId", "device"]);
        assert_eq!(spec.entities[0].width(), 22);
    }

    #[test]
    fn default_is_spec_two() {
        let spec = FeatureSpec::default();
        assert!(spec.is_default());
        assert_eq!(spec.feature_names(), WINDOW_FEATURE_NAMES.map(str::to_owned));
        assert_eq!(FeatureSpec::parse("").unwrap().feature_names().len(), 20);
    }

    fn error_of(text: &str) -> SpecError {
        FeatureSpec::parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\n\n[[window]]\nentity = \"crad\"\nwindows = [\"1h\"]\naggs = [\"cnt\"]\n");
        assert_eq!((e.line, e.field.as_str()), (6, "window.entity"), "{e}");
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\n[[window]]\nentity = \"card\"\nwindows = [\"45d\"]\naggs = [\"cnt\"]\n");
        assert_eq!((e.line, e.field.as_str()), (6, "window.windows"), "{e}");
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\n[[window]]\nentity = \"card\"\nwindows = [\"1h\"]\naggs = [\"median\"]\n");
        assert_eq!((e.line, e.field.as_str()), (7, "window.aggs"), "{e}");
        assert!(e.message.contains("median"));
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\n[[prior]]\nentity = \"card\"\naggs = [\"distinct:device\"]\n");
        assert_eq!((e.line, e.field.as_str()), (6, "prior.aggs"), "{e}");
        let e = error_of("[[entity]]\nname = \"card\"\nkey = []\n");
        assert_eq!((e.line, e.field.as_str()), (3, "entity.key"), "{e}");
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\ncolour = 1\n");
        assert_eq!(e.line, 4, "{e}");
        let e = error_of("[[entity]]\nname = \"card\"\nkey = [\"card\"]\n[[entity]]\nname = \"card\"\nkey = [\"c\"]\n");
        assert_eq!((e.line, e.field.as_str()), (5, "entity.name"), "{e}");
        let twice = "[[entity]]\nname = \"c\"\nkey = [\"c\"]\n[[window]]\nentity = \"c\"\nwindows = [\"1h\"]\naggs = [\"cnt\"]\n\
                     [[window]]\nentity = \"c\"\nof = \"v1\"\nwindows = [\"1h\"]\naggs = [\"cnt\"]\n";
        let e = error_of(twice);
        assert!(e.message.contains("c.cnt_1h"), "{e}");
        assert_eq!(e.line, 8, "{e}");
        let e = error_of("[[input]]\nattr = \"card\"\n");
        assert_eq!((e.line, e.field.as_str()), (1, "input"), "{e}");
    }
}
