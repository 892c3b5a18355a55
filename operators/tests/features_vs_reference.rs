//! Differential test of `UserState::observe` against a naive reference written from SPEC §1
//! (dedup rule) and §2 (features, exact windows, lateness, eviction), read literally.
//!
//! The reference below deliberately shares nothing with the code under test except the
//! `Observation`/`Outcome` types it is driven through: it keeps, per user, the arrival-ordered
//! list of accepted events and of scored copies (for dedup), and computes every feature with a
//! plain O(n) scan and two-pass f64 arithmetic.

use std::collections::HashMap;

use operators::event::hashing::{event_id_hash, mix64};
use operators::state::user::{Observation, Outcome, StateRules, UserState};
use proptest::prelude::*;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// SPEC §2 windows, in feature order.
const WINDOWS: [i64; 3] = [HOUR, DAY, 7 * DAY];
const THIRTY_DAYS: i64 = 30 * DAY;
/// SPEC §2 default allowed lateness L.
const LATENESS: i64 = 5 * MIN;
/// SPEC §1 default dedup horizon.
const DEDUP: i64 = DAY;

// ---------------------------------------------------------------------------------------------
// Reference implementation (SPEC §1/§2, literally)
// ---------------------------------------------------------------------------------------------

/// One input event as the reference sees it.
#[derive(Clone, Debug)]
struct Ev {
    id: String,
    ts: i64,
    amount: f64,
    location: Option<f64>,
    /// `features.hour_of_day` when present.
    hour_of_day: Option<u8>,
}

impl Ev {
    /// hour(x) of SPEC §2: `hour_of_day` if present, else the UTC hour of the timestamp.
    fn hour(&self) -> u8 {
        self.hour_of_day.unwrap_or_else(|| (self.ts.rem_euclid(DAY) / HOUR) as u8)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Accepted,
    Late,
    Duplicate,
}

#[derive(Default)]
struct RefUser {
    /// newest_u: newest accepted timestamp (None before the first accepted event).
    newest: Option<i64>,
    /// Accepted events still in state, in arrival order.
    accepted: Vec<Ev>,
    /// Scored copies (accepted or late): (eventId, timestamp), in arrival order.
    scored: Vec<(String, i64)>,
}

fn clock_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR)
}

/// Circular distance of two hours on the clock face is at most 1.
fn near_hour(a: u8, b: u8) -> bool {
    let d = (i32::from(a) - i32::from(b)).abs();
    d <= 1 || d >= 23
}

/// Population std by the corrected two-pass algorithm.
fn two_pass_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let mut dev = 0.0;
    let mut dev_sq = 0.0;
    for &x in xs {
        dev += x - mean;
        dev_sq += (x - mean) * (x - mean);
    }
    ((dev_sq - dev * dev / n) / n).max(0.0).sqrt()
}

/// The 20 features of `e` from its history `h` (= H(e): accepted, retained, arrived before e).
fn reference_features(h: &[Ev], e: &Ev) -> [f64; 20] {
    let t = e.ts;
    let mut out = [f64::NAN; 20];
    for (w, &len) in WINDOWS.iter().enumerate() {
        // H_W(e) ∪ {e}
        let mut xs: Vec<f64> = h.iter().filter(|x| x.ts >= t - len && x.ts <= t).map(|x| x.amount).collect();
        xs.push(e.amount);
        let cnt = xs.len() as f64;
        let sum: f64 = xs.iter().sum();
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out[w * 5] = cnt;
        out[w * 5 + 1] = sum;
        out[w * 5 + 2] = max;
        out[w * 5 + 3] = sum / cnt;
        out[w * 5 + 4] = if xs.len() == 1 { 0.0 } else { two_pass_std(&xs) };
    }
    let h30: Vec<&Ev> = h.iter().filter(|x| x.ts >= t - THIRTY_DAYS && x.ts <= t).collect();
    let h7: Vec<&Ev> = h.iter().filter(|x| x.ts >= t - 7 * DAY && x.ts <= t).collect();
    // secs_since_prev
    out[15] = match h30.iter().map(|x| x.ts).max() {
        Some(newest) => (t - newest) as f64 / 1000.0,
        None => -1.0,
    };
    // amount_ratio
    out[16] = if h7.is_empty() {
        1.0
    } else {
        let mean = h7.iter().map(|x| x.amount).sum::<f64>() / h7.len() as f64;
        if mean == 0.0 {
            f64::NAN
        } else {
            e.amount / mean
        }
    };
    // location_new
    out[17] = match e.location {
        None => f64::NAN,
        Some(loc) => {
            let locs: Vec<f64> = h30.iter().filter_map(|x| x.location).collect();
            if locs.is_empty() {
                0.0
            } else {
                let max = locs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if loc > max {
                    1.0
                } else {
                    0.0
                }
            }
        }
    };
    // time_unusual
    let n = h30.len();
    let k = h30.iter().filter(|x| near_hour(x.hour(), e.hour())).count();
    out[18] = if n >= 20 && (k as f64) < 0.02 * n as f64 { 1.0 } else { 0.0 };
    // velocity_score
    let cnt_1h = out[0];
    out[19] = if h7.is_empty() {
        cnt_1h
    } else {
        let mut hours: Vec<i64> = h7.iter().map(|x| clock_hour(x.ts)).collect();
        hours.sort_unstable();
        hours.dedup();
        let a = hours.len() as f64;
        cnt_1h / (h7.len() as f64 / a).max(1.0)
    };
    out
}

impl RefUser {
    /// SPEC §1 dedup, §2 lateness, scoring and eviction for one arriving event.
    fn observe(&mut self, e: &Ev) -> (Kind, Option<[f64; 20]>) {
        if let Some(newest) = self.newest {
            let duplicate = self
                .scored
                .iter()
                .any(|(id, ts)| *id == e.id && *ts >= newest - THIRTY_DAYS && (e.ts - ts).abs() <= DEDUP);
            if duplicate {
                return (Kind::Duplicate, None);
            }
        }
        let features = reference_features(&self.accepted, e);
        self.scored.push((e.id.clone(), e.ts));
        let late = self.newest.is_some_and(|newest| e.ts < newest - LATENESS);
        if late {
            return (Kind::Late, Some(features));
        }
        self.accepted.push(e.clone());
        let newest = self.newest.map_or(e.ts, |n| n.max(e.ts));
        self.newest = Some(newest);
        // Eviction after acceptance; forget scored copies older than the dedup memory.
        self.accepted.retain(|x| x.ts >= newest - THIRTY_DAYS);
        self.scored.retain(|(_, ts)| *ts >= newest - THIRTY_DAYS);
        (Kind::Accepted, Some(features))
    }
}

// ---------------------------------------------------------------------------------------------
// Random streams
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator driven by the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// One user's events in arrival order.
fn user_stream(rng: &mut Rng, user: usize, size: usize, start: i64) -> Vec<Ev> {
    let favourite = rng.pick(&[49.99, 1_000_000.37, 0.1, 12_345.67, 3.0]);
    let scale = 10f64.powf(rng.unit() * 7.0 - 1.0);
    let zero_heavy = rng.chance(0.08);
    let location_p = rng.pick(&[0.0, 0.3, 0.7, 1.0]);
    let habit_hour = rng.range(0, 23) as u8;
    let habitual = rng.chance(0.5);
    let mut events: Vec<Ev> = Vec::with_capacity(size);
    let mut newest = start;
    let mut location_trend = 1.0;
    for i in 0..size {
        let mut id = format!("u{user}-e{i}");
        let r = rng.unit();
        let ts = if i == 0 {
            start
        } else if r < 0.10 {
            newest // same-millisecond tie
        } else if r < 0.50 {
            let gap = match rng.range(0, 3) {
                0 => rng.range(1, 1_000),
                1 => rng.range(1_000, 10 * MIN),
                2 => rng.range(10 * MIN, 6 * HOUR),
                _ => rng.range(6 * HOUR, 3 * DAY),
            };
            newest + gap
        } else if r < 0.62 {
            // exactly on, or 1 ms either side of, a window edge of an earlier event
            let j = events[rng.range(0, i as i64 - 1) as usize].ts;
            let w = rng.pick(&[HOUR, DAY, 7 * DAY, THIRTY_DAYS]);
            j + w + rng.range(-1, 1)
        } else if r < 0.72 {
            // out of order, within lateness (sometimes exactly at the bound)
            if rng.chance(0.2) {
                newest - LATENESS
            } else {
                newest - rng.range(0, LATENESS)
            }
        } else if r < 0.77 {
            // late (sometimes 1 ms past the bound)
            if rng.chance(0.2) {
                newest - LATENESS - 1
            } else {
                newest - LATENESS - 1 - rng.range(0, 10 * DAY)
            }
        } else if r < 0.87 {
            // re-used eventId: within the horizon, at its edges, or beyond it
            let j = if rng.chance(0.8) {
                rng.range((i as i64 - 10).max(0), i as i64 - 1)
            } else {
                rng.range(0, i as i64 - 1)
            } as usize;
            id = events[j].id.clone();
            let delta = match rng.range(0, 5) {
                0 => 0,
                1 => rng.range(-DEDUP, DEDUP),
                2 => rng.pick(&[-DEDUP, DEDUP]),
                3 => rng.pick(&[-DEDUP - 1, DEDUP + 1]),
                4 => rng.range(DEDUP + 1, 5 * DAY),
                _ => newest - events[j].ts + rng.range(0, 2 * DEDUP),
            };
            events[j].ts + delta
        } else if r < 0.885 {
            // idle for about 30 days or more, then back
            newest + rng.pick(&[29 * DAY, THIRTY_DAYS, THIRTY_DAYS + 1, 31 * DAY, 45 * DAY, 60 * DAY])
        } else {
            newest + rng.range(0, 2 * MIN)
        };
        newest = newest.max(ts);
        let amount = if zero_heavy && rng.chance(0.7) {
            0.0
        } else {
            match rng.range(0, 9) {
                0..=2 => favourite,
                3 => 0.0,
                4 => 1e7 + 0.01,
                5 => (rng.unit() * 100.0 * 100.0).round() / 100.0,
                _ => scale * (0.1 + rng.unit() * 10.0),
            }
        };
        let location = if rng.chance(location_p) {
            location_trend *= 1.0 + rng.unit() * 0.05;
            Some(rng.unit() * 50.0 * location_trend)
        } else {
            None
        };
        let hour_of_day = if habitual {
            if rng.chance(0.92) {
                Some(habit_hour)
            } else {
                Some(rng.range(0, 23) as u8)
            }
        } else if rng.chance(0.5) {
            Some(rng.range(0, 23) as u8)
        } else {
            None
        };
        events.push(Ev { id, ts, amount, location, hour_of_day });
    }
    events
}

/// Many users' streams, interleaved at random (each user's own order is kept).
fn stream(seed: u64, min_events: usize) -> Vec<(usize, Ev)> {
    let mut rng = Rng(seed);
    let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut per_user = Vec::new();
    let mut total = 0;
    while total < min_events {
        let size = match rng.range(0, 19) {
            0..=4 => 1,
            5..=9 => rng.range(2, 15) as usize,
            10..=16 => rng.range(20, 120) as usize,
            _ => rng.range(200, 700) as usize,
        };
        let start = base + rng.range(0, 90 * DAY);
        let user = per_user.len();
        per_user.push(user_stream(&mut rng, user, size, start));
        total += size;
    }
    let mut tokens: Vec<usize> =
        per_user.iter().enumerate().flat_map(|(u, evs)| std::iter::repeat_n(u, evs.len())).collect();
    for i in (1..tokens.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        tokens.swap(i, j);
    }
    let mut cursors = vec![0usize; per_user.len()];
    tokens
        .into_iter()
        .map(|u| {
            let e = per_user[u][cursors[u]].clone();
            cursors[u] += 1;
            (u, e)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// SPEC §2 agreement: within 1e-6 absolute or 1e-9 relative; missing (NaN) equals missing.
fn agrees(actual: f64, expected: f64) -> bool {
    if actual.is_nan() || expected.is_nan() {
        return actual.is_nan() && expected.is_nan();
    }
    let d = (actual - expected).abs();
    d <= 1e-6 || d <= 1e-9 * expected.abs()
}

const NAMES: [&str; 20] = [
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

fn observation(e: &Ev) -> Observation {
    Observation {
        timestamp_ms: e.ts,
        amount: e.amount,
        location_distance: e.location.unwrap_or(f64::NAN),
        hour: e.hour(),
        id_hash: event_id_hash(&e.id),
    }
}

/// Things the random streams must have exercised, per run.
#[derive(Debug, Default)]
struct Coverage {
    events: usize,
    late: usize,
    out_of_order_accepted: usize,
    duplicate: usize,
    id_reused_beyond_horizon: usize,
    time_unusual: usize,
    location_new: usize,
    amount_ratio_missing: usize,
    amount_ratio_not_one: usize,
    secs_prev_none: usize,
    secs_prev_positive: usize,
    secs_prev_zero: usize,
    idle_return: usize,
    std_zero_multi: usize,
}

/// Replays a stream through both implementations; Err describes the first disagreement.
fn run(stream: &[(usize, Ev)]) -> Result<Coverage, String> {
    let rules = StateRules::default();
    let mut real: HashMap<String, Option<UserState>> = HashMap::new();
    let mut reference: HashMap<usize, RefUser> = HashMap::new();
    let mut seen: HashMap<usize, Vec<Ev>> = HashMap::new();
    let mut cov = Coverage::default();
    for (pos, (user, e)) in stream.iter().enumerate() {
        let r = reference.entry(*user).or_default();
        let newest_before = r.newest;
        let id_used_before = r.scored.iter().any(|(id, _)| *id == e.id);
        let (kind, expected) = r.observe(e);
        let state = real.entry(format!("user_{user}")).or_insert(None);
        let outcome = UserState::observe(state, &observation(e), &rules);
        let history = seen.entry(*user).or_default();
        history.push(e.clone());
        let (actual_kind, actual) = match outcome {
            Outcome::Accepted(f) => (Kind::Accepted, Some(f)),
            Outcome::Late(f) => (Kind::Late, Some(f)),
            Outcome::Duplicate => (Kind::Duplicate, None),
        };
        let describe = |what: String| {
            let tail: Vec<String> = history
                .iter()
                .map(|x| {
                    format!(
                        "  {{id: {:?}, ts: {}, amount: {:?}, loc: {:?}, hour: {:?}}}",
                        x.id, x.ts, x.amount, x.location, x.hour_of_day
                    )
                })
                .collect();
            format!(
                "stream position {pos}, user {user}, event #{} of the user: {what}\nuser's events so far (arrival order):\n{}",
                history.len() - 1,
                tail.join("\n")
            )
        };
        if kind != actual_kind {
            return Err(describe(format!("outcome {actual_kind:?}, SPEC says {kind:?}")));
        }
        if let (Some(a), Some(x)) = (actual, expected) {
            for i in 0..20 {
                if !agrees(a[i], x[i]) {
                    return Err(describe(format!(
                        "{} = {:?}, SPEC says {:?} (all: got {a:?}, want {x:?})",
                        NAMES[i], a[i], x[i]
                    )));
                }
            }
            cov.events += 1;
            if x[18] == 1.0 {
                cov.time_unusual += 1;
            }
            if x[17] == 1.0 {
                cov.location_new += 1;
            }
            if x[16].is_nan() {
                cov.amount_ratio_missing += 1;
            } else if x[16] != 1.0 {
                cov.amount_ratio_not_one += 1;
            }
            if x[15] == -1.0 {
                cov.secs_prev_none += 1;
                if newest_before.is_some() {
                    cov.idle_return += 1;
                }
            } else if x[15] > 0.0 {
                cov.secs_prev_positive += 1;
            } else if x[15] == 0.0 {
                cov.secs_prev_zero += 1;
            }
            if x[10] > 1.0 && x[14] == 0.0 {
                cov.std_zero_multi += 1;
            }
            if id_used_before {
                cov.id_reused_beyond_horizon += 1;
            }
        }
        match kind {
            Kind::Late => cov.late += 1,
            Kind::Duplicate => cov.duplicate += 1,
            Kind::Accepted => {
                if newest_before.is_some_and(|n| e.ts < n) {
                    cov.out_of_order_accepted += 1;
                }
            }
        }
    }
    Ok(cov)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every case: ≥ 10,000 events over many users; outcome and all 20 features agree.
    #[test]
    fn observe_matches_spec_reference(seed in any::<u64>()) {
        let events = stream(seed, 10_000);
        prop_assert!(events.len() >= 10_000);
        let cov = match run(&events) {
            Ok(cov) => cov,
            Err(msg) => return Err(TestCaseError::fail(format!("seed {seed}: {msg}"))),
        };
        // Guard against a vacuous pass: the stream must have exercised every rule.
        let checks = [
            ("late", cov.late),
            ("out-of-order accepted", cov.out_of_order_accepted),
            ("duplicate", cov.duplicate),
            ("eventId re-used beyond the horizon", cov.id_reused_beyond_horizon),
            ("time_unusual = 1", cov.time_unusual),
            ("location_new = 1", cov.location_new),
            ("amount_ratio missing", cov.amount_ratio_missing),
            ("amount_ratio != 1", cov.amount_ratio_not_one),
            ("secs_since_prev = -1", cov.secs_prev_none),
            ("secs_since_prev > 0", cov.secs_prev_positive),
            ("secs_since_prev = 0 (tie)", cov.secs_prev_zero),
            ("return after > 30 d idle", cov.idle_return),
            ("std 0 over several events", cov.std_zero_multi),
        ];
        for (what, n) in checks {
            prop_assert!(n > 0, "seed {seed}: no {what} in the stream: {cov:?}");
        }
    }
}
