//! cnt_W and sum_W of SPEC §2, computed by an independent engine — a differential dataflow
//! self-join of the events by user — and compared with `UserState::observe`.
//!
//! The input is in order per user (with same-millisecond ties and events exactly on window
//! edges), has unique event ids and no gap of 30 days, so no event is a duplicate, late or sees
//! an eviction: H_W(e) ∪ {e} is exactly "the user's events at arrival position ≤ e's with
//! timestamp in [t − W, t]". Amounts are whole cents so that sums can travel as integer diffs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::input::Input;
use operators::event::hashing::{event_id_hash, mix64};
use operators::state::user::{Observation, Outcome, StateRules, UserState};
use operators::time::rfc3339::utc_hour;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const WINDOWS: [i64; 3] = [HOUR, DAY, 7 * DAY];

/// One event: (user, arrival position, timestamp ms, amount in cents).
#[derive(Clone, Copy, Debug)]
struct Ev {
    user: u32,
    pos: u32,
    ts: i64,
    cents: i64,
}

/// SplitMix64, for a reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// A few thousand events of several users, interleaved, in order per user.
fn generate(seed: u64, users: u32, events: usize) -> Vec<Ev> {
    let mut rng = Rng(seed);
    let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut history: Vec<Vec<i64>> = vec![Vec::new(); users as usize];
    let mut out = Vec::with_capacity(events);
    for pos in 0..events {
        let user = (rng.next() % u64::from(users)) as u32;
        let past = &history[user as usize];
        let ts = match past.last() {
            None => base + rng.range(0, DAY),
            Some(&newest) => {
                let candidate = match rng.range(0, 9) {
                    0 | 1 => newest, // same-millisecond tie
                    2 => newest + rng.range(1, 1_000),
                    3 | 4 => newest + rng.range(1, 20 * MIN),
                    5 => newest + rng.range(20 * MIN, 6 * HOUR),
                    6 => newest + rng.range(6 * HOUR, 2 * DAY),
                    // exactly on (or 1 ms past) the window edge of an earlier event
                    _ => {
                        let j = past[rng.range(0, past.len() as i64 - 1) as usize];
                        j + WINDOWS[rng.range(0, 2) as usize] + rng.range(0, 1)
                    }
                };
                // keep the user's stream in order and free of 30-day gaps
                candidate.max(newest).min(newest + 20 * DAY)
            }
        };
        history[user as usize].push(ts);
        let cents = match rng.range(0, 3) {
            0 => 4_999,
            1 => rng.range(1, 100),
            _ => rng.range(1, 100_000_000),
        };
        out.push(Ev { user, pos: pos as u32, ts, cents });
    }
    out
}

type Key = (u32, u32, u8); // (user, position of e, window index)
/// A dataflow output record: key, (cnt_W, sum_W in cents).
type Windowed = (Key, (isize, isize));

/// cnt_W and sum_W (cents) of every event, by a differential dataflow.
fn differential(events: Vec<Ev>) -> HashMap<Key, (isize, isize)> {
    let records: Vec<(Windowed, isize)> = timely::execute_directly(move |worker| {
        let captured = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&captured);
        let (mut input, probe) = worker.dataflow::<u32, _, _>(move |scope| {
            let (input, events) = scope.new_collection::<(u32, (u32, i64, i64)), isize>();
            // (user, (e, h)) for every ordered pair of the user's events
            let pairs = events.clone().join(events).flat_map(|(user, (e, h))| {
                let (e_pos, e_ts, _) = e;
                let (h_pos, h_ts, h_cents) = h;
                WINDOWS
                    .iter()
                    .enumerate()
                    .filter(move |&(_, &w)| h_pos <= e_pos && h_ts >= e_ts - w && h_ts <= e_ts)
                    .map(move |(wi, _)| ((user, e_pos, wi as u8), h_cents))
                    .collect::<Vec<_>>()
            });
            let counts = pairs.clone().map(|(key, _)| key).count();
            let sums = pairs.explode(|(key, cents)| Some((key, cents as isize))).count();
            let (probe, _) =
                counts.join(sums).inspect(move |(data, _time, diff)| sink.borrow_mut().push((*data, *diff))).probe();
            (input, probe)
        });
        for e in &events {
            input.insert((e.user, (e.pos, e.ts, e.cents)));
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        let out = captured.borrow().clone();
        out
    });
    // Consolidate whatever the dataflow emitted into one (cnt, sum) per key.
    let mut net: HashMap<Windowed, isize> = HashMap::new();
    for (record, diff) in records {
        *net.entry(record).or_default() += diff;
    }
    let mut result = HashMap::new();
    for ((key, value), diff) in net {
        if diff == 0 {
            continue;
        }
        assert_eq!(diff, 1, "{key:?} → {value:?} has multiplicity {diff}");
        assert!(result.insert(key, value).is_none(), "two values for {key:?}");
    }
    result
}

#[test]
fn window_counts_and_sums_match_a_differential_self_join() {
    let events = generate(0x5eed_0001, 9, 4_000);

    // The code under test, user by user in arrival order.
    let rules = StateRules::default();
    let mut states: HashMap<u32, Option<UserState>> = HashMap::new();
    let mut features = Vec::with_capacity(events.len());
    let mut ties = 0;
    let mut last_ts: HashMap<u32, i64> = HashMap::new();
    for e in &events {
        if last_ts.insert(e.user, e.ts) == Some(e.ts) {
            ties += 1;
        }
        let obs = Observation {
            timestamp_ms: e.ts,
            amount: e.cents as f64 / 100.0,
            location_distance: f64::NAN,
            hour: utc_hour(e.ts),
            id_hash: event_id_hash(&format!("evt-{}", e.pos)),
        };
        match UserState::observe(states.entry(e.user).or_insert(None), &obs, &rules) {
            Outcome::Accepted(f) => features.push(f),
            other => panic!("event {e:?} was not accepted: {other:?}"),
        }
    }
    assert!(ties > 100, "too few same-millisecond ties: {ties}");

    let reference = differential(events.clone());
    assert_eq!(reference.len(), events.len() * WINDOWS.len());

    let mut nontrivial = [0usize; 3];
    for (e, f) in events.iter().zip(&features) {
        for wi in 0..WINDOWS.len() {
            let (cnt, sum_cents) = reference[&(e.user, e.pos, wi as u8)];
            let (got_cnt, got_sum) = (f[wi * 5], f[wi * 5 + 1]);
            let want_sum = sum_cents as f64 / 100.0;
            assert_eq!(got_cnt, cnt as f64, "cnt of window {wi} for {e:?}: {f:?}");
            assert!(
                (got_sum - want_sum).abs() <= 1e-9 * want_sum.abs(),
                "sum of window {wi} for {e:?}: got {got_sum}, differential says {want_sum}"
            );
            if cnt > 1 {
                nontrivial[wi] += 1;
            }
        }
    }
    // The windows must actually have held history.
    assert!(nontrivial.iter().all(|&n| n > 500), "{nontrivial:?}");
}
