//! Hand-worked SPEC §1/§2 cases for `UserState::observe`: window edges, lateness, eviction,
//! dedup, `time_unusual`, `velocity_score`, `secs_since_prev`, `amount_ratio`, `std`.
//! Every expected number is derived in a comment from the SPEC text, not from the code.

use operators::event::hashing::event_id_hash;
use operators::state::user::{Observation, Outcome, StateRules, UserState};
use operators::time::rfc3339::utc_hour;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
const THIRTY_DAYS: i64 = 30 * DAY;
/// 2026-01-01T00:00:00.000Z — a day boundary, so the UTC hour of T0 + x·1h is x mod 24.
const T0: i64 = 1_767_225_600_000;

// Feature columns (SPEC §2 order).
const CNT_1H: usize = 0;
const SUM_1H: usize = 1;
const MAX_1H: usize = 2;
const MEAN_1H: usize = 3;
const STD_1H: usize = 4;
const CNT_24H: usize = 5;
const SUM_24H: usize = 6;
const STD_24H: usize = 9;
const CNT_7D: usize = 10;
const SUM_7D: usize = 11;
const MAX_7D: usize = 12;
const MEAN_7D: usize = 13;
const STD_7D: usize = 14;
const SECS_SINCE_PREV: usize = 15;
const AMOUNT_RATIO: usize = 16;
const LOCATION_NEW: usize = 17;
const TIME_UNUSUAL: usize = 18;
const VELOCITY_SCORE: usize = 19;

/// One input event of a single user.
#[derive(Clone)]
struct E {
    id: String,
    ts: i64,
    amount: f64,
    location: f64,
    hour_of_day: Option<u8>,
}

fn e(id: &str, ts: i64, amount: f64) -> E {
    E { id: id.to_string(), ts, amount, location: f64::NAN, hour_of_day: None }
}

impl E {
    fn hour(mut self, h: u8) -> E {
        self.hour_of_day = Some(h);
        self
    }
    fn loc(mut self, l: f64) -> E {
        self.location = l;
        self
    }
    fn obs(&self) -> Observation {
        Observation {
            timestamp_ms: self.ts,
            amount: self.amount,
            location_distance: self.location,
            hour: self.hour_of_day.unwrap_or_else(|| utc_hour(self.ts)),
            id_hash: event_id_hash(&self.id),
        }
    }
}

/// Feeds one user's events in arrival order; returns every outcome.
fn play(events: &[E]) -> Vec<Outcome> {
    let rules = StateRules::default();
    let mut state = None;
    events.iter().map(|x| UserState::observe(&mut state, &x.obs(), &rules)).collect()
}

fn accepted(o: &Outcome) -> [f64; 20] {
    match o {
        Outcome::Accepted(f) => *f,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

fn late(o: &Outcome) -> [f64; 20] {
    match o {
        Outcome::Late(f) => *f,
        other => panic!("expected Late, got {other:?}"),
    }
}

/// Asserts features within SPEC tolerance (1e-6 absolute or 1e-9 relative; NaN == NaN).
#[track_caller]
fn check(f: &[f64; 20], expected: &[(usize, f64)]) {
    for &(i, want) in expected {
        let got = f[i];
        let ok = if want.is_nan() {
            got.is_nan()
        } else {
            (got - want).abs() <= 1e-6 || (got - want).abs() <= 1e-9 * want.abs()
        };
        assert!(ok, "feature {i}: got {got:?}, want {want:?}; all: {f:?}");
    }
}

#[test]
fn t0_is_midnight_utc() {
    assert_eq!(utc_hour(T0), 0);
    assert_eq!(utc_hour(T0 + 23 * HOUR), 23);
}

// ---------------------------------------------------------------------------------------------
// Window edges: [t − W, t] is inclusive at both ends.
// ---------------------------------------------------------------------------------------------

/// A (10) at T0, B (30) at T0 + W + delta; returns B's features (in-order path).
fn edge_in_order(w: i64, delta: i64) -> [f64; 20] {
    let out = play(&[e("a", T0, 10.0), e("b", T0 + w + delta, 30.0)]);
    accepted(&out[1])
}

/// A (10) at T0, C (1000) at T0 + W + 10 min, then B (30) at T0 + W + delta arrives late
/// (10 min − delta > L = 5 min behind newest): B is scored from the state by the exact scan.
fn edge_late(w: i64, delta: i64) -> [f64; 20] {
    let out = play(&[e("a", T0, 10.0), e("c", T0 + w + 10 * MIN, 1000.0), e("b", T0 + w + delta, 30.0)]);
    late(&out[2])
}

#[test]
fn one_hour_edge() {
    for f in [edge_in_order(HOUR, 0), edge_late(HOUR, 0)] {
        // t − 1h = T0: A included. H_1h ∪ {B} = {10, 30}: cnt 2, sum 40, max 30, mean 20,
        // std = sqrt(((10−20)² + (30−20)²)/2) = 10. C (ts > t) is never in H(B).
        check(
            &f,
            &[
                (CNT_1H, 2.0),
                (SUM_1H, 40.0),
                (MAX_1H, 30.0),
                (MEAN_1H, 20.0),
                (STD_1H, 10.0),
                (CNT_24H, 2.0),
                (CNT_7D, 2.0),
                // secs_since_prev = 3600 s; amount_ratio = 30 / 10 = 3
                (SECS_SINCE_PREV, 3600.0),
                (AMOUNT_RATIO, 3.0),
                // |H_7d| = 1, a = 1 ⇒ 2 / max(1, 1) = 2
                (VELOCITY_SCORE, 2.0),
            ],
        );
    }
    for f in [edge_in_order(HOUR, 1), edge_late(HOUR, 1)] {
        // t − 1h = T0 + 1 ms > T0: A excluded from 1h only. cnt_1h 1, sum 30, std 0.
        check(
            &f,
            &[
                (CNT_1H, 1.0),
                (SUM_1H, 30.0),
                (MAX_1H, 30.0),
                (MEAN_1H, 30.0),
                (STD_1H, 0.0),
                (CNT_24H, 2.0),
                (SUM_24H, 40.0),
                (STD_24H, 10.0),
                (CNT_7D, 2.0),
                (SECS_SINCE_PREV, 3600.001),
                // velocity = cnt_1h / max(1, 1/1) = 1
                (VELOCITY_SCORE, 1.0),
            ],
        );
    }
}

#[test]
fn twenty_four_hour_edge() {
    for f in [edge_in_order(DAY, 0), edge_late(DAY, 0)] {
        // A at exactly t − 24h: in 24h and 7d, not in 1h.
        check(
            &f,
            &[
                (CNT_1H, 1.0),
                (SUM_1H, 30.0),
                (CNT_24H, 2.0),
                (SUM_24H, 40.0),
                (STD_24H, 10.0),
                (CNT_7D, 2.0),
                (SECS_SINCE_PREV, 86_400.0),
            ],
        );
    }
    for f in [edge_in_order(DAY, 1), edge_late(DAY, 1)] {
        check(
            &f,
            &[
                (CNT_1H, 1.0),
                (CNT_24H, 1.0),
                (SUM_24H, 30.0),
                (STD_24H, 0.0),
                (CNT_7D, 2.0),
                (SUM_7D, 40.0),
                (SECS_SINCE_PREV, 86_400.001),
            ],
        );
    }
}

#[test]
fn seven_day_edge() {
    for f in [edge_in_order(WEEK, 0), edge_late(WEEK, 0)] {
        // A at exactly t − 7d: in H_7d. cnt_7d 2, sum 40, max 30, mean 20, std 10;
        // amount_ratio = 30 / mean(H_7d) = 30 / 10 = 3; velocity = 1 / max(1, 1/1) = 1.
        check(
            &f,
            &[
                (CNT_1H, 1.0),
                (CNT_24H, 1.0),
                (CNT_7D, 2.0),
                (SUM_7D, 40.0),
                (MAX_7D, 30.0),
                (MEAN_7D, 20.0),
                (STD_7D, 10.0),
                (AMOUNT_RATIO, 3.0),
                (VELOCITY_SCORE, 1.0),
                (SECS_SINCE_PREV, 604_800.0),
            ],
        );
    }
    for f in [edge_in_order(WEEK, 1), edge_late(WEEK, 1)] {
        // H_7d empty: cnt_7d 1, sum 30, std 0, amount_ratio 1, velocity = cnt_1h = 1;
        // A is still in H_30d: secs_since_prev = 604800.001.
        check(
            &f,
            &[
                (CNT_7D, 1.0),
                (SUM_7D, 30.0),
                (MAX_7D, 30.0),
                (MEAN_7D, 30.0),
                (STD_7D, 0.0),
                (AMOUNT_RATIO, 1.0),
                (VELOCITY_SCORE, 1.0),
                (SECS_SINCE_PREV, 604_800.001),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 30-day retention and secs_since_prev
// ---------------------------------------------------------------------------------------------

#[test]
fn previous_event_exactly_thirty_days_earlier_is_kept() {
    // A at T0; B at T0 + 30 d: A has ts ≥ newest − 30 d, so it is in H_30d(B):
    // secs_since_prev = 2,592,000 s. A is outside 7d: cnt_7d 1, amount_ratio 1.
    let out = play(&[e("a", T0, 10.0), e("b", T0 + THIRTY_DAYS, 30.0)]);
    check(&accepted(&out[1]), &[(SECS_SINCE_PREV, 2_592_000.0), (CNT_7D, 1.0), (AMOUNT_RATIO, 1.0)]);
}

#[test]
fn previous_event_thirty_days_and_one_ms_earlier_is_evicted() {
    // B at T0 + 30 d + 1 ms: A (T0 < t − 30 d) is not in H_30d ⇒ secs_since_prev = −1.
    let out = play(&[e("a", T0, 10.0), e("b", T0 + THIRTY_DAYS + 1, 30.0)]);
    check(&accepted(&out[1]), &[(SECS_SINCE_PREV, -1.0), (CNT_1H, 1.0)]);
}

#[test]
fn evicted_event_is_not_history_of_an_out_of_order_event() {
    // A at T0; C at T0 + 30 d + 2 min evicts A (T0 < newest − 30 d = T0 + 2 min).
    // B at T0 + 30 d arrives out of order, 2 min ≤ L behind: accepted. Its window [T0, T0+30d]
    // would contain A, but A is no longer in the state (H(e) = events still in state):
    // secs_since_prev = −1, cnt_7d = 1 (C is newer than B). B is then seen by D.
    let out = play(&[
        e("a", T0, 10.0),
        e("c", T0 + THIRTY_DAYS + 2 * MIN, 20.0),
        e("b", T0 + THIRTY_DAYS, 30.0),
        e("d", T0 + THIRTY_DAYS + 3 * MIN, 40.0),
    ]);
    check(&accepted(&out[2]), &[(SECS_SINCE_PREV, -1.0), (CNT_7D, 1.0), (SUM_7D, 30.0)]);
    // D: H_1h = {C 20, B 30}: cnt 3, sum 90, mean 30; newest prior = C ⇒ 60 s.
    check(&accepted(&out[3]), &[(CNT_1H, 3.0), (SUM_1H, 90.0), (MEAN_1H, 30.0), (SECS_SINCE_PREV, 60.0)]);
}

#[test]
fn idle_user_returns_with_empty_history() {
    // 45 days idle: everything evicted; the return event sees an empty history, and the next
    // event sees only the return event.
    let out = play(&[
        e("a", T0, 10.0).loc(5.0),
        e("b", T0 + MIN, 10.0).loc(7.0),
        e("c", T0 + 45 * DAY, 50.0).loc(1.0),
        e("d", T0 + 45 * DAY + 1_500, 70.0).loc(0.5),
    ]);
    // c: secs −1, location_new 0 (no located event in H_30d), ratio 1, velocity = cnt_1h = 1.
    check(
        &accepted(&out[2]),
        &[(CNT_7D, 1.0), (SECS_SINCE_PREV, -1.0), (LOCATION_NEW, 0.0), (AMOUNT_RATIO, 1.0), (VELOCITY_SCORE, 1.0)],
    );
    // d: H = {c}: cnt_1h 2, sum 120, secs 1.5, location 0.5 > 1.0? no ⇒ 0, ratio 70/50 = 1.4.
    check(
        &accepted(&out[3]),
        &[(CNT_1H, 2.0), (SUM_1H, 120.0), (SECS_SINCE_PREV, 1.5), (LOCATION_NEW, 0.0), (AMOUNT_RATIO, 1.4)],
    );
}

// ---------------------------------------------------------------------------------------------
// time_unusual
// ---------------------------------------------------------------------------------------------

/// `n` history events, one minute apart from T0, `near` of them at hour `near_hour` and the
/// rest at `far_hour`; returns the features of one more event at `hour`.
fn unusual(n: usize, near: usize, near_hour: u8, far_hour: u8, hour: u8) -> [f64; 20] {
    let mut events: Vec<E> = (0..n)
        .map(|i| {
            let h = if i < near { near_hour } else { far_hour };
            e(&format!("h{i}"), T0 + i as i64 * MIN, 1.0).hour(h)
        })
        .collect();
    events.push(e("x", T0 + n as i64 * MIN, 1.0).hour(hour));
    accepted(play(&events).last().unwrap())
}

#[test]
fn time_unusual_band_wraps_midnight() {
    // 20 events at hour 23, event at hour 0: |23 − 0| circular = 1 ⇒ k = 20, 20 < 0.4 false ⇒ 0.
    check(&unusual(20, 0, 12, 23, 0), &[(TIME_UNUSUAL, 0.0)]);
    // 20 events at hour 0, event at hour 23 ⇒ near ⇒ 0.
    check(&unusual(20, 0, 12, 0, 23), &[(TIME_UNUSUAL, 0.0)]);
    // Controls: 2 hours apart across midnight is not near: k = 0 < 0.4 ⇒ 1.
    check(&unusual(20, 0, 12, 22, 0), &[(TIME_UNUSUAL, 1.0)]);
    check(&unusual(20, 0, 12, 0, 22), &[(TIME_UNUSUAL, 1.0)]);
    check(&unusual(20, 0, 12, 1, 23), &[(TIME_UNUSUAL, 1.0)]);
}

#[test]
fn time_unusual_uses_utc_hour_when_hour_of_day_is_absent() {
    // 20 events without hour_of_day at 23:00–23:19 UTC; event at 00:30 UTC next day ⇒ near ⇒ 0;
    // event at 02:00 UTC ⇒ k = 0 < 0.4 ⇒ 1.
    let history: Vec<E> = (0..20).map(|i| e(&format!("h{i}"), T0 + 23 * HOUR + i * MIN, 1.0)).collect();
    let mut near = history.clone();
    near.push(e("x", T0 + 24 * HOUR + 30 * MIN, 1.0));
    check(&accepted(play(&near).last().unwrap()), &[(TIME_UNUSUAL, 0.0)]);
    let mut far = history;
    far.push(e("x", T0 + 26 * HOUR, 1.0));
    check(&accepted(play(&far).last().unwrap()), &[(TIME_UNUSUAL, 1.0)]);
}

#[test]
fn time_unusual_needs_twenty_history_events() {
    // n = 19 at hour 12, event at hour 0: k = 0 but n < 20 ⇒ 0. n = 20 ⇒ 0 < 0.4 ⇒ 1.
    check(&unusual(19, 0, 1, 12, 0), &[(TIME_UNUSUAL, 0.0)]);
    check(&unusual(20, 0, 1, 12, 0), &[(TIME_UNUSUAL, 1.0)]);
}

#[test]
fn time_unusual_threshold_is_strict() {
    // n = 50, k = 1 (one event at hour 1, near hour 0): 0.02·50 = 1.0, 1 < 1.0 false ⇒ 0.
    check(&unusual(50, 1, 1, 12, 0), &[(TIME_UNUSUAL, 0.0)]);
    // n = 51, k = 1: 1 < 1.02 ⇒ 1.
    check(&unusual(51, 1, 1, 12, 0), &[(TIME_UNUSUAL, 1.0)]);
    // n = 100, k = 1: 1 < 2.0 ⇒ 1; k = 2: 2 < 2.0 false ⇒ 0.
    check(&unusual(100, 1, 1, 12, 0), &[(TIME_UNUSUAL, 1.0)]);
    check(&unusual(100, 2, 1, 12, 0), &[(TIME_UNUSUAL, 0.0)]);
    // near on the other side of the band (hour 23 vs event hour 0) counts the same.
    check(&unusual(100, 2, 23, 12, 0), &[(TIME_UNUSUAL, 0.0)]);
}

// ---------------------------------------------------------------------------------------------
// velocity_score
// ---------------------------------------------------------------------------------------------

#[test]
fn velocity_over_three_active_hours() {
    // H_7d: 2 events in each of 3 clock hours (T0, T0 + 2 d, T0 + 4 d); event at
    // T0 + 4 d + 1 h 5 min: H_1h = [T0+4d+5min, t] = {T0+4d+10min} ⇒ cnt_1h = 2.
    // |H_7d| = 6, a = 3 ⇒ 2 / max(1, 6/3) = 1.
    let out = play(&[
        e("a", T0, 1.0),
        e("b", T0 + 10 * MIN, 1.0),
        e("c", T0 + 2 * DAY, 1.0),
        e("d", T0 + 2 * DAY + 10 * MIN, 1.0),
        e("e", T0 + 4 * DAY, 1.0),
        e("f", T0 + 4 * DAY + 10 * MIN, 1.0),
        e("x", T0 + 4 * DAY + HOUR + 5 * MIN, 1.0),
    ]);
    check(&accepted(&out[6]), &[(CNT_1H, 2.0), (CNT_7D, 7.0), (VELOCITY_SCORE, 1.0)]);
}

#[test]
fn velocity_against_one_busy_hour() {
    // 6 events in one clock hour (T0 .. T0 + 5 min), event at T0 + 3 h:
    // cnt_1h = 1, |H_7d| = 6, a = 1 ⇒ 1 / max(1, 6) = 1/6.
    let mut events: Vec<E> = (0..6).map(|i| e(&format!("h{i}"), T0 + i * MIN, 1.0)).collect();
    events.push(e("x", T0 + 3 * HOUR, 1.0));
    check(&accepted(play(&events).last().unwrap()), &[(VELOCITY_SCORE, 1.0 / 6.0)]);
}

#[test]
fn velocity_counts_clock_hours_not_spans() {
    // Events at T0 + 59:59.999 and T0 + 1 h are in different clock hours (⌊ts/1h⌋ differ),
    // 1 ms apart. Event at T0 + 1 h + 1 s: cnt_1h = 3, |H_7d| = 2, a = 2 ⇒ 3 / max(1, 1) = 3.
    let out = play(&[e("a", T0 + HOUR - 1, 1.0), e("b", T0 + HOUR, 1.0), e("x", T0 + HOUR + 1_000, 1.0)]);
    check(&accepted(&out[2]), &[(CNT_1H, 3.0), (VELOCITY_SCORE, 3.0)]);
    // Same three in one clock hour: a = 1 ⇒ 3 / max(1, 2/1) = 1.5.
    let out = play(&[e("a", T0 + 10 * MIN, 1.0), e("b", T0 + 20 * MIN, 1.0), e("x", T0 + 30 * MIN, 1.0)]);
    check(&accepted(&out[2]), &[(CNT_1H, 3.0), (VELOCITY_SCORE, 1.5)]);
}

// ---------------------------------------------------------------------------------------------
// amount_ratio, std, location_new
// ---------------------------------------------------------------------------------------------

#[test]
fn amount_ratio_missing_when_week_mean_is_zero() {
    // H_7d = {0, 0}: mean 0 ⇒ missing. Third event: ratio 5 / mean(0, 0) ⇒ NaN.
    let out = play(&[e("a", T0, 0.0), e("b", T0 + MIN, 0.0), e("c", T0 + 2 * MIN, 5.0)]);
    check(&accepted(&out[2]), &[(AMOUNT_RATIO, f64::NAN), (SUM_1H, 5.0), (MEAN_1H, 5.0 / 3.0)]);
    // Once the zeros are 7 d + 1 ms old, H_7d = {5} ⇒ 10 / 5 = 2.
    let out = play(&[e("a", T0, 0.0), e("c", T0 + 2 * MIN, 5.0), e("d", T0 + WEEK + 1, 10.0)]);
    check(&accepted(&out[2]), &[(AMOUNT_RATIO, 2.0), (CNT_7D, 2.0)]);
}

#[test]
fn std_of_identical_amounts_is_exactly_zero() {
    // Churn: large, varied amounts pass through the 1h window and leave it, then 3 × 0.1 and
    // 10 × (1e7 + 0.01) inside one hour. Population std of identical values is 0.
    let mut events = Vec::new();
    for i in 0..50 {
        events.push(e(&format!("big{i}"), T0 + i * MIN, 1e6 * (1 + i % 7) as f64 + 0.37));
    }
    let start = T0 + 3 * HOUR;
    for i in 0..3 {
        events.push(e(&format!("p{i}"), start + i * MIN, 0.1));
    }
    let out = play(&events);
    let f = accepted(out.last().unwrap());
    assert_eq!(f[CNT_1H], 3.0);
    assert_eq!(f[STD_1H], 0.0, "{f:?}");
    let start = T0 + 6 * HOUR;
    for i in 0..10 {
        events.push(e(&format!("q{i}"), start + i * MIN, 1e7 + 0.01));
    }
    let out = play(&events);
    let f = accepted(out.last().unwrap());
    assert_eq!(f[CNT_1H], 10.0);
    assert_eq!(f[STD_1H], 0.0, "{f:?}");
    assert_eq!(f[MAX_1H], 1e7 + 0.01);
}

#[test]
fn location_new_rules() {
    // a: no location ⇒ missing. b: location 5, no located history ⇒ 0. c: 5 > max(5)? no ⇒ 0.
    // d: 5.5 > 5 ⇒ 1. e: no location ⇒ missing.
    let out = play(&[
        e("a", T0, 1.0),
        e("b", T0 + MIN, 1.0).loc(5.0),
        e("c", T0 + 2 * MIN, 1.0).loc(5.0),
        e("d", T0 + 3 * MIN, 1.0).loc(5.5),
        e("e", T0 + 4 * MIN, 1.0),
    ]);
    let want = [f64::NAN, 0.0, 0.0, 1.0, f64::NAN];
    for (o, w) in out.iter().zip(want) {
        check(&accepted(o), &[(LOCATION_NEW, w)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup (SPEC §1)
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_within_horizon_and_reuse_after_it() {
    let out = play(&[
        e("x", T0, 10.0),
        // same id, exactly 24 h later ⇒ duplicate (inclusive); not scored, not in state
        e("x", T0 + DAY, 99.0),
        // same id 1 h later ⇒ duplicate
        e("x", T0 + HOUR, 99.0),
        // y at T0 + 2 h: H_24h = {x@T0} only ⇒ cnt_24h 2, sum 10 + 20 = 30
        e("y", T0 + 2 * HOUR, 20.0),
        // x at T0 + 24 h + 1 ms: beyond the horizon of x@T0 ⇒ a new event, accepted.
        // H_24h = [T0 + 1, t] = {y} ⇒ cnt_24h 2, sum 25
        e("x", T0 + DAY + 1, 5.0),
        // x at T0 + 48 h + 1 ms: within 24 h of the scored copy at T0 + 24 h + 1 ⇒ duplicate
        e("x", T0 + 2 * DAY + 1, 7.0),
        // x at T0 + 48 h + 2 ms: 24 h + 1 ms after the newest copy ⇒ new, accepted
        e("x", T0 + 2 * DAY + 2, 7.0),
    ]);
    assert_eq!(out[1], Outcome::Duplicate);
    assert_eq!(out[2], Outcome::Duplicate);
    check(&accepted(&out[3]), &[(CNT_24H, 2.0), (SUM_24H, 30.0)]);
    check(&accepted(&out[4]), &[(CNT_24H, 2.0), (SUM_24H, 25.0)]);
    assert_eq!(out[5], Outcome::Duplicate);
    // H_24h of the last = [T0 + 24h + 2, t] = {} (x@T0+24h+1 is 1 ms too old) ⇒ cnt 1
    check(&accepted(&out[6]), &[(CNT_24H, 1.0), (CNT_7D, 4.0)]);
}

#[test]
fn duplicate_is_checked_before_lateness_and_before_the_copy_is_forgotten() {
    // x accepted at T0, newest moves to T0 + 30 d (x still remembered: T0 ≥ newest − 30 d).
    // x at T0 + 24 h is within the horizon of x@T0 ⇒ duplicate (though it would be late).
    // After newest = T0 + 30 d + 1 ms, x@T0 is forgotten ⇒ the same x@T0+24h is a new event,
    // late (T0 + 24 h < newest − 5 min): scored from the state, H_30d = {} in [T0−6d, T0+1d]
    // ⇒ cnt 1, secs −1.
    let out = play(&[
        e("x", T0, 10.0),
        e("a", T0 + THIRTY_DAYS, 1.0),
        e("x", T0 + DAY, 10.0),
        e("b", T0 + THIRTY_DAYS + 1, 1.0),
        e("x", T0 + DAY, 10.0),
    ]);
    assert_eq!(out[2], Outcome::Duplicate);
    check(&late(&out[4]), &[(CNT_7D, 1.0), (SECS_SINCE_PREV, -1.0)]);
}

#[test]
fn late_copy_is_remembered_for_dedup() {
    // a at T0 + 10 min; z at T0 is late (T0 < T0 + 10 min − 5 min) and scored; z again at
    // T0 + 1 h is within 24 h of the scored late copy ⇒ duplicate.
    let out = play(&[e("a", T0 + 10 * MIN, 1.0), e("z", T0, 1.0), e("z", T0 + HOUR, 1.0)]);
    late(&out[1]);
    assert_eq!(out[2], Outcome::Duplicate);
}

/// SPEC §1: a scored copy is remembered for dedup only "while that timestamp is
/// ≥ newest_u − 30 d" — this holds for late copies as much as for accepted ones.
#[test]
fn late_copy_is_forgotten_after_thirty_days() {
    // a (T0 + 10 min) accepted; b (T0) late, scored, remembered; c at T0 + 30 d + 1 ms accepted:
    // newest − 30 d = T0 + 1 ms > T0 ⇒ the late copy b@T0 is no longer remembered.
    // b again at T0: not a duplicate ⇒ scored; late (T0 < newest − 5 min); H(e) ∩ [T0−30d, T0]
    // = {} (a is at T0 + 10 min > t) ⇒ cnt_1h 1, sum 7, secs −1.
    let out = play(&[e("a", T0 + 10 * MIN, 1.0), e("b", T0, 7.0), e("c", T0 + THIRTY_DAYS + 1, 1.0), e("b", T0, 7.0)]);
    late(&out[1]);
    accepted(&out[2]);
    check(&late(&out[3]), &[(CNT_1H, 1.0), (SUM_1H, 7.0), (SECS_SINCE_PREV, -1.0)]);
}

// ---------------------------------------------------------------------------------------------
// Lateness
// ---------------------------------------------------------------------------------------------

#[test]
fn late_event_is_scored_but_not_kept() {
    let out = play(&[
        e("a", T0 + 10 * MIN, 100.0),
        // T0 < newest − L = T0 + 5 min ⇒ late. H(L) ∩ [T0 − W, T0] = {} ⇒ cnt 1, sum 50, secs −1.
        e("l", T0, 50.0),
        // T0 + 11 min: H_1h = {a} (l was never accepted) ⇒ cnt 2, sum 110, max 100, mean 55,
        // std = 45; secs = 60.
        e("n", T0 + 11 * MIN, 10.0),
    ]);
    check(
        &late(&out[1]),
        &[(CNT_1H, 1.0), (SUM_1H, 50.0), (CNT_7D, 1.0), (SECS_SINCE_PREV, -1.0), (AMOUNT_RATIO, 1.0)],
    );
    check(
        &accepted(&out[2]),
        &[(CNT_1H, 2.0), (SUM_1H, 110.0), (MAX_1H, 100.0), (MEAN_1H, 55.0), (STD_1H, 45.0), (SECS_SINCE_PREV, 60.0)],
    );
}

#[test]
fn late_event_sees_older_history_only() {
    // a (10) at T0, b (1000) at T0 + 20 min, late l (30) at T0 + 5 min: H(l) = {a} (b is newer)
    // ⇒ cnt_1h 2, sum 40, max 30, secs 300, amount_ratio 30/10 = 3.
    let out = play(&[e("a", T0, 10.0), e("b", T0 + 20 * MIN, 1000.0), e("l", T0 + 5 * MIN, 30.0)]);
    check(
        &late(&out[2]),
        &[(CNT_1H, 2.0), (SUM_1H, 40.0), (MAX_1H, 30.0), (SECS_SINCE_PREV, 300.0), (AMOUNT_RATIO, 3.0)],
    );
}

#[test]
fn out_of_order_event_within_lateness_is_accepted_and_seen_later() {
    let out = play(&[
        e("a", T0 + 10 * MIN, 100.0),
        // exactly newest − L = T0 + 5 min: not late (t < newest − L is false) ⇒ accepted.
        // H(o) ∩ [.., T0 + 5 min] = {} ⇒ cnt 1, secs −1.
        e("o", T0 + 5 * MIN, 20.0),
        // 1 ms past the bound ⇒ late.
        e("l", T0 + 5 * MIN - 1, 1.0),
        // T0 + 12 min: H_1h = {a, o} ⇒ cnt 3, sum 121, max 100; newest prior = a ⇒ 120 s.
        e("n", T0 + 12 * MIN, 1.0),
    ]);
    check(&accepted(&out[1]), &[(CNT_1H, 1.0), (SECS_SINCE_PREV, -1.0)]);
    // l at T0 + 5 min − 1 ms: a and o are both newer ⇒ H(l) ∩ [.., t] = {} ⇒ cnt 1, secs −1.
    check(&late(&out[2]), &[(CNT_1H, 1.0), (SUM_1H, 1.0), (SECS_SINCE_PREV, -1.0)]);
    check(&accepted(&out[3]), &[(CNT_1H, 3.0), (SUM_1H, 121.0), (MAX_1H, 100.0), (SECS_SINCE_PREV, 120.0)]);
}

#[test]
fn same_millisecond_events_are_history_of_each_other() {
    // Three events at the same ms: the second sees the first, the third sees both.
    let out = play(&[e("a", T0, 1.0), e("b", T0, 2.0), e("c", T0, 3.0)]);
    check(&accepted(&out[1]), &[(CNT_1H, 2.0), (SUM_1H, 3.0), (SECS_SINCE_PREV, 0.0)]);
    // c: {1, 2, 3}: mean 2, std = sqrt(2/3).
    check(
        &accepted(&out[2]),
        &[(CNT_1H, 3.0), (SUM_1H, 6.0), (STD_1H, (2.0f64 / 3.0).sqrt()), (VELOCITY_SCORE, 3.0 / 2.0)],
    );
}

#[test]
fn busy_users_dedup_through_the_day_index_like_quiet_ones() {
    // 100 events one minute apart (a busy 24 h window, so the id index is built), then:
    // a repeat of b0 at +2 h (within 24 h of b0 ⇒ duplicate), a repeat of b99 (duplicate),
    // a new id (accepted), then b5 again 25 h after b5 (beyond 24 h ⇒ new event, accepted),
    // and after a quiet day (window shrinks, index dropped) a repeat within 24 h of that copy.
    let mut events: Vec<E> = (0..100).map(|i| e(&format!("b{i}"), T0 + i * MIN, 10.0)).collect();
    events.push(e("b0", T0 + 2 * HOUR, 10.0));
    events.push(e("b99", T0 + 2 * HOUR, 10.0));
    events.push(e("fresh", T0 + 2 * HOUR, 10.0));
    events.push(e("b5", T0 + 5 * MIN + 25 * HOUR, 10.0));
    events.push(e("b5", T0 + 5 * MIN + 48 * HOUR, 10.0));
    events.push(e("b5", T0 + 5 * MIN + 49 * HOUR, 10.0));
    let out = play(&events);
    assert!(out[..100].iter().all(|o| matches!(o, Outcome::Accepted(_))));
    assert_eq!(out[100], Outcome::Duplicate);
    assert_eq!(out[101], Outcome::Duplicate);
    assert!(matches!(out[102], Outcome::Accepted(_)));
    // b5@+25h05: 24 h after b5@0h05 + 1 h ⇒ beyond the horizon ⇒ accepted; its cnt_24h counts
    // the accepted events in [t − 24 h, t]: b65..b99 (t − 24 h = 1h05 ⇒ minutes ≥ 65) = 35,
    // "fresh" at +2 h (the two repeats there were duplicates, never accepted), itself ⇒ 37;
    // the previous event is "fresh", 23 h 05 min = 83,100 s earlier.
    let f = accepted(&out[103]);
    check(&f, &[(CNT_24H, 35.0 + 1.0 + 1.0), (SECS_SINCE_PREV, 83_100.0)]);
    // b5@+48h05 is within 24 h of b5@+25h05 ⇒ duplicate; b5@+49h05 is 24 h after ⇒ duplicate
    // too (inclusive horizon).
    assert_eq!(out[104], Outcome::Duplicate);
    assert_eq!(out[105], Outcome::Duplicate);
}
