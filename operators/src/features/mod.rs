//! The feature list — defined once, shared by `run`, `train`, `features` and `eval`.
//!
//! SPEC §2 fixes 20 windowed features in a fixed order; the model may additionally use the
//! event's own numeric features. [`assemble`] turns a user's prior aggregates (history
//! H_W(e), event excluded) and the event itself into the 20 values, so the fast incremental
//! path and the slow exact path of the window state cannot disagree on the formulas.
//!
//! Also owns `exact_sum` (the double-double window sums) and `spec` (the SPEC §2b feature
//! specification: entities and their aggregates).
//! May use: `time`.

pub mod exact_sum;
pub mod spec;

use crate::features::exact_sum::{population_std, DoubleDouble};
use crate::time::rfc3339::HOUR_MS;

/// Window lengths W of SPEC §2, in the order their features appear.
pub const WINDOWS_MS: [i64; 3] = [HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS];
/// Look-back of the "prior" features and of per-user state retention.
pub const RETENTION_MS: i64 = 30 * 24 * HOUR_MS;
/// Index of the 7-day window in [`WINDOWS_MS`].
pub const WEEK: usize = 2;

/// Number of SPEC §2 features.
pub const WINDOW_FEATURE_COUNT: usize = 20;

/// SPEC §2 feature names, in CSV/column order.
pub const WINDOW_FEATURE_NAMES: [&str; WINDOW_FEATURE_COUNT] = [
    "cnt_1h",
    "sum_1h",
    "max_1h",
    "mean_1h",
    "std_1h",
    "cnt_24h",
    "sum_24h",
    "max_24h",
    "mean_24h",
    "std_24h",
    "cnt_7d",
    "sum_7d",
    "max_7d",
    "mean_7d",
    "std_7d",
    "secs_since_prev",
    "amount_ratio",
    "location_new",
    "time_unusual",
    "velocity_score",
];

/// The event's own named numeric features (SPEC §1) in the order they are stored.
pub const OWN_FEATURE_NAMES: [&str; 4] = ["amount", "hour_of_day", "location_distance", "days_since_last_txn"];

/// Column of `secs_since_prev` and the prior features that follow it.
pub const SECS_SINCE_PREV: usize = 15;
/// Column of `amount_ratio`.
pub const AMOUNT_RATIO: usize = 16;
/// Column of `location_new`.
pub const LOCATION_NEW: usize = 17;
/// Column of `time_unusual`.
pub const TIME_UNUSUAL: usize = 18;
/// Column of `velocity_score`.
pub const VELOCITY_SCORE: usize = 19;

/// The 20 features of one event; NaN marks a missing value.
pub type WindowFeatures = [f64; WINDOW_FEATURE_COUNT];

/// Aggregates of one window over the prior history H_W(e).
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowPrior {
    pub count: u64,
    pub sum: DoubleDouble,
    pub sum_sq: DoubleDouble,
    /// Largest amount; meaningless when `count == 0`.
    pub max: f64,
}

impl WindowPrior {
    /// Folds one history event into the aggregate (used by scans and rebuilds).
    pub fn add(&mut self, amount: f64) {
        self.max = if self.count == 0 { amount } else { self.max.max(amount) };
        self.count += 1;
        self.sum.add(amount);
        self.sum_sq.add_square(amount);
    }
}

/// Everything SPEC §2 needs about H(e), whichever path computed it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PriorView {
    pub windows: [WindowPrior; 3],
    /// |H_30d(e)|.
    pub count_30d: u64,
    /// Events of H_30d(e) whose hour is within ±1 h (circular) of the event's hour.
    pub near_hour_30d: u64,
    /// Newest timestamp in H_30d(e).
    pub newest_30d: Option<i64>,
    /// Largest `location_distance` in H_30d(e) among events that had one.
    pub max_location_30d: Option<f64>,
    /// Distinct clock hours ⌊ts / 1h⌋ among H_7d(e).
    pub active_hours_7d: u64,
}

/// The event's own inputs to SPEC §2.
#[derive(Clone, Copy, Debug)]
pub struct EventView {
    pub timestamp_ms: i64,
    pub amount: f64,
    /// NaN when absent.
    pub location_distance: f64,
}

/// True when hours `a` and `b` (0–23) are at most one hour apart on the clock face.
pub fn hours_adjacent(a: u8, b: u8) -> bool {
    let d = (i16::from(a) - i16::from(b)).rem_euclid(24);
    d <= 1 || d == 23
}

/// Computes the SPEC §2 features of an event from its prior history.
pub fn assemble(prior: &PriorView, event: &EventView) -> WindowFeatures {
    let mut out = [f64::NAN; WINDOW_FEATURE_COUNT];
    let amount = event.amount;
    for (w, agg) in prior.windows.iter().enumerate() {
        let mut sum = agg.sum;
        let mut sum_sq = agg.sum_sq;
        sum.add(amount);
        sum_sq.add_square(amount);
        let count = agg.count + 1;
        let max = if agg.count == 0 { amount } else { agg.max.max(amount) };
        let cols = &mut out[w * 5..w * 5 + 5];
        cols[0] = count as f64;
        cols[1] = sum.value();
        cols[2] = max;
        cols[3] = sum.value() / count as f64;
        cols[4] = population_std(count, sum, sum_sq);
    }
    out[SECS_SINCE_PREV] = match prior.newest_30d {
        Some(newest) => (event.timestamp_ms - newest) as f64 / 1000.0,
        None => -1.0,
    };
    let week = &prior.windows[WEEK];
    out[AMOUNT_RATIO] = if week.count == 0 {
        1.0
    } else {
        // Missing when the mean is 0 (SPEC §2), and likewise when it is so close to 0 that the
        // ratio overflows: an infinite input would turn the model's score into NaN.
        let ratio = amount / (week.sum.value() / week.count as f64);
        if ratio.is_finite() {
            ratio
        } else {
            f64::NAN
        }
    };
    out[LOCATION_NEW] = if event.location_distance.is_nan() {
        f64::NAN
    } else {
        match prior.max_location_30d {
            None => 0.0,
            Some(max) => f64::from(u8::from(event.location_distance > max)),
        }
    };
    let n = prior.count_30d;
    let unusual = n >= 20 && (prior.near_hour_30d as f64) < 0.02 * n as f64;
    out[TIME_UNUSUAL] = f64::from(u8::from(unusual));
    let cnt_1h = out[0];
    out[VELOCITY_SCORE] = if week.count == 0 {
        cnt_1h
    } else {
        let per_active_hour = week.count as f64 / prior.active_hours_7d.max(1) as f64;
        cnt_1h / per_active_hour.max(1.0)
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_hours_wrap_midnight() {
        assert!(hours_adjacent(23, 0));
        assert!(hours_adjacent(0, 23));
        assert!(hours_adjacent(5, 5));
        assert!(!hours_adjacent(22, 0));
        assert!(!hours_adjacent(1, 23));
    }

    #[test]
    fn empty_history_defaults() {
        let f =
            assemble(&PriorView::default(), &EventView { timestamp_ms: 0, amount: 10.0, location_distance: f64::NAN });
        assert_eq!(&f[0..5], &[1.0, 10.0, 10.0, 10.0, 0.0]);
        assert_eq!(f[SECS_SINCE_PREV], -1.0);
        assert_eq!(f[AMOUNT_RATIO], 1.0);
        assert!(f[LOCATION_NEW].is_nan());
        assert_eq!(f[TIME_UNUSUAL], 0.0);
        assert_eq!(f[VELOCITY_SCORE], 1.0);
    }
}
