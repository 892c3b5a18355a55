//! Enrich: joins each scored event's windowed features with its own numeric features into the
//! fixed-width `f32` row the model expects, in the order the model file names its inputs.
//!
//! The layout is resolved once from the names, so the per-event work is a gather of
//! precomputed column indices.

use crate::named_map::NamedMapExt;
use timely::dataflow::Stream;

use crate::batch::ScoredBatch;
use crate::event::fields::ExtraFeatures;
use crate::features::spec::FeatureSpec;
use crate::features::{OWN_FEATURE_NAMES, WINDOW_FEATURE_NAMES};

/// Where one model input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputSource {
    /// A SPEC §2 feature, by column.
    Window(usize),
    /// amount, hour_of_day, location_distance or days_since_last_txn.
    Own(usize),
    /// An extra key of the event's `features`, by position in [`ExtraFeatures`].
    Extra(usize),
    /// A feature of an entity of the specification (SPEC §2b), by entity column.
    Entity(usize),
}

/// The resolved model-input layout.
#[derive(Clone, Debug)]
pub struct InputLayout {
    sources: Vec<InputSource>,
    extras: ExtraFeatures,
    spec: FeatureSpec,
}

/// Prefixes of window features; an unknown name with one of them is a window the job does
/// not compute (e.g. `cnt_2h`), not an extra key.
const WINDOW_PREFIXES: [&str; 5] = ["cnt_", "sum_", "max_", "mean_", "std_"];

impl InputLayout {
    /// Resolves model input names under the feature specification `spec`; names the job
    /// cannot compute are returned as the error.
    pub fn resolve(names: &[String], spec: &FeatureSpec) -> Result<InputLayout, Vec<String>> {
        let mut extras = Vec::new();
        let mut unknown = Vec::new();
        let mut sources = Vec::with_capacity(names.len());
        let entity_names = &spec.feature_names()[WINDOW_FEATURE_NAMES.len()..];
        for name in names {
            let source = if let Some(i) = WINDOW_FEATURE_NAMES.iter().position(|n| n == name) {
                InputSource::Window(i)
            } else if let Some(i) = OWN_FEATURE_NAMES.iter().position(|n| n == name) {
                InputSource::Own(i)
            } else if let Some(i) = entity_names.iter().position(|n| n == name) {
                InputSource::Entity(i)
            } else if WINDOW_PREFIXES.iter().any(|p| name.starts_with(p))
                || name.is_empty()
                || name == "label"
                || is_entity_feature_name(name)
            {
                unknown.push(name.clone());
                continue;
            } else {
                extras.push(name.clone());
                InputSource::Extra(extras.len() - 1)
            };
            sources.push(source);
        }
        if unknown.is_empty() {
            Ok(InputLayout { sources, extras: ExtraFeatures::new(extras).with_spec(spec), spec: spec.clone() })
        } else {
            Err(unknown)
        }
    }

    /// The extra feature keys the parser must keep.
    pub fn extras(&self) -> &ExtraFeatures {
        &self.extras
    }

    /// The feature specification the inputs are computed under.
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Width of a model row.
    pub fn width(&self) -> usize {
        self.sources.len()
    }

    /// Fills `batch.inputs` with one row per scored event (NaN = missing).
    pub fn fill(&self, batch: &mut ScoredBatch) {
        let n_extra = self.extras.len();
        let n_entity = batch.entities.len() / batch.rows.len().max(1);
        batch.inputs.clear();
        batch.inputs.reserve(batch.rows.len() * self.width());
        for (i, (row, window)) in batch.rows.iter().zip(&batch.windows).enumerate() {
            let extras = &batch.extras[i * n_extra..(i + 1) * n_extra];
            let entities = &batch.entities[i * n_entity..(i + 1) * n_entity];
            batch.inputs.extend(self.sources.iter().map(|source| match *source {
                InputSource::Window(c) => window[c] as f32,
                InputSource::Own(c) => row.own[c] as f32,
                InputSource::Extra(c) => extras[c] as f32,
                InputSource::Entity(c) => entities[c] as f32,
            }));
        }
    }
}

/// True for `<entity>.<feature>`: a name of a specification's feature, never an extra key.
fn is_entity_feature_name(name: &str) -> bool {
    name.contains('.')
}

/// Extension trait: `scored.enrich(layout)`.
pub trait EnrichExt<'s> {
    /// Fills every batch's model-input rows.
    fn enrich(self, layout: InputLayout) -> Stream<'s, u64, Vec<ScoredBatch>>;
}

impl<'s> EnrichExt<'s> for Stream<'s, u64, Vec<ScoredBatch>> {
    fn enrich(self, layout: InputLayout) -> Stream<'s, u64, Vec<ScoredBatch>> {
        self.map_in_place_named("Enrich", move |batch| layout.fill(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_refuses_unknown_windows() {
        let names: Vec<String> = ["amount_ratio", "amount", "v3", "cnt_1h"].map(String::from).to_vec();
        let layout = InputLayout::resolve(&names, &FeatureSpec::default()).unwrap();
        assert_eq!(
            layout.sources,
            [InputSource::Window(16), InputSource::Own(0), InputSource::Extra(0), InputSource::Window(0)]
        );
        assert_eq!(layout.extras().names(), ["v3"]);
        let bad: Vec<String> = ["cnt_2h", "amount", "std_30d"].map(String::from).to_vec();
        assert_eq!(InputLayout::resolve(&bad, &FeatureSpec::default()).unwrap_err(), ["cnt_2h", "std_30d"]);
    }
}
