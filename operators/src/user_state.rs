//! One user's event-time state: the accepted events of the last 30 days and the incremental
//! window aggregates over them (SPEC §2, DESIGN.md "Window state").
//!
//! Invariants, after every call:
//! * `events` holds exactly u's accepted events with `ts ≥ newest − 30 d`, sorted by timestamp
//!   (ties in arrival order);
//! * each window `w` covers the suffix of `events` with `ts ≥ newest − W` and its running
//!   count/sum/sum of squares/max cursor describe exactly that suffix;
//! * `max_amounts` holds the candidates for any suffix maximum of amounts (non-increasing),
//!   `max_locations` likewise for locations over the whole buffer.
//!
//! An in-order event (`t ≥ newest`) costs amortised O(1) per window: windows only move forward.
//! Out-of-order events (rare, within lateness) and late events take an exact scan of the buffer.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use crate::exact_sum::DoubleDouble;
use crate::features::{assemble, hours_adjacent, EventView, PriorView, WindowFeatures, RETENTION_MS, WEEK, WINDOWS_MS};
use crate::hashing::PreHashed;
use crate::prefetch::prefetch;
use crate::time::HOUR_MS;

/// Per-job rules of the state (SPEC §1/§2 defaults: lateness 5 min, dedup horizon 24 h).
#[derive(Clone, Copy, Debug)]
pub struct StateRules {
    pub lateness_ms: i64,
    pub dedup_horizon_ms: i64,
}

impl Default for StateRules {
    fn default() -> Self {
        StateRules { lateness_ms: 5 * 60_000, dedup_horizon_ms: 24 * HOUR_MS }
    }
}

/// What the state needs to know about an incoming event.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub timestamp_ms: i64,
    pub amount: f64,
    /// NaN when absent.
    pub location_distance: f64,
    /// `features.hour_of_day` if present, else the UTC hour.
    pub hour: u8,
    pub id_hash: u64,
}

/// How the state classified an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Scored and added to the state.
    Accepted(WindowFeatures),
    /// Scored from the state as it is, not added (older than newest − lateness).
    Late(WindowFeatures),
    /// Same event id within the dedup horizon of a scored copy: not scored.
    Duplicate,
}

/// A retained event, 32 bytes: timestamps are stored relative to `UserState::base_ms`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Retained {
    amount: f64,
    location: f64,
    id_hash: u64,
    offset_ms: u32,
    hour: u8,
}

/// Candidates for the maximum of any suffix of the buffer: (absolute index, value) with
/// non-increasing values. Values are kept here so reading a maximum needs no buffer lookup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SuffixMax {
    candidates: VecDeque<(u64, f64)>,
}

impl SuffixMax {
    /// Appends the newest value; returns the new number of candidates.
    fn push(&mut self, index: u64, value: f64) -> usize {
        while self.candidates.back().is_some_and(|&(_, v)| v <= value) {
            self.candidates.pop_back();
        }
        // Most users keep one or two candidates: grow by half from nothing rather than to
        // VecDeque's first allocation of four.
        if self.candidates.len() == self.candidates.capacity() {
            self.candidates.reserve_exact(self.candidates.len() / 2 + 1);
        }
        self.candidates.push_back((index, value));
        self.candidates.len()
    }

    /// Forgets the candidate of buffer index `index` if it is the oldest; true if it was.
    fn evict(&mut self, index: u64) -> bool {
        let front = self.candidates.front().is_some_and(|&(i, _)| i == index);
        if front {
            self.candidates.pop_front();
        }
        front
    }
}

/// Running aggregate of one window (a suffix of the buffer).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct WindowAgg {
    /// Absolute index of the window's first event.
    start: u64,
    sum: DoubleDouble,
    sum_sq: DoubleDouble,
    /// Position in `max_amounts` of the window's maximum.
    max_cursor: usize,
}

/// State of one user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserState {
    base_ms: i64,
    newest_ms: i64,
    /// Absolute index of `events[0]` (events ever evicted from the front).
    first_index: u64,
    events: VecDeque<Retained>,
    windows: [WindowAgg; 3],
    /// Suffix-maximum candidates by amount (shared by all windows, see `WindowAgg`).
    max_amounts: SuffixMax,
    /// Suffix-maximum candidates by location (events that have one).
    max_locations: SuffixMax,
    hour_counts: [u32; 24],
    active_hours_7d: u32,
    /// Scored-but-late events still remembered for dedup: (id hash, timestamp).
    late_ids: Vec<(u64, i64)>,
    /// Busy users only: how many events of the 24 h window carry each id hash, so an in-order
    /// event's dedup check is a lookup instead of a walk over the day's events.
    day_ids: Option<Box<DayIds>>,
}

/// Index of the 24 h window's event ids (hashes are already mixed, so no rehashing).
type DayIds = HashMap<u64, u32, BuildHasherDefault<PreHashed>>;

/// Window index of the 24 h window.
const DAY: usize = 1;
/// Events in the 24 h window from which a user gets a [`DayIds`] index, and below which it
/// is dropped again (hysteresis, so a user at the edge does not rebuild it every event).
const DAY_INDEX_FROM: u64 = 32;
const DAY_INDEX_UNTIL: u64 = 8;

impl UserState {
    /// State of a user whose first accepted event is at `t`.
    fn new(t: i64) -> Self {
        UserState {
            base_ms: t,
            newest_ms: t,
            first_index: 0,
            events: VecDeque::new(),
            windows: [WindowAgg::default(); 3],
            max_amounts: SuffixMax::default(),
            max_locations: SuffixMax::default(),
            hour_counts: [0; 24],
            active_hours_7d: 0,
            late_ids: Vec::new(),
            day_ids: None,
        }
    }

    /// Newest accepted timestamp of the user.
    pub fn newest_ms(&self) -> i64 {
        self.newest_ms
    }

    /// Number of retained events.
    pub fn retained(&self) -> usize {
        self.events.len()
    }

    /// Heap bytes held by this state (capacities, not lengths), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.events.capacity() * std::mem::size_of::<Retained>()
            + (self.max_amounts.candidates.capacity() + self.max_locations.candidates.capacity()) * 16
            + self.late_ids.capacity() * 16
            + self.day_ids.as_ref().map_or(0, |ids| ids.capacity() * 13 + 32)
    }

    /// Prefetches what the next in-order event of this user will touch: the newest events,
    /// the oldest one (30-day eviction) and the first of the 7-day window.
    pub fn prefetch_buffer(&self) {
        let len = self.events.len();
        if len == 0 {
            return;
        }
        for position in [len - 1, 0, (self.windows[WEEK].start - self.first_index).min(len as u64 - 1) as usize] {
            prefetch(&self.events[position]);
        }
    }

    fn ts(&self, e: &Retained) -> i64 {
        self.base_ms + i64::from(e.offset_ms)
    }

    fn at(&self, index: u64) -> &Retained {
        &self.events[(index - self.first_index) as usize]
    }

    fn end_index(&self) -> u64 {
        self.first_index + self.events.len() as u64
    }

    /// Applies one event of the user (in arrival order) and returns its classification.
    pub fn observe(state: &mut Option<UserState>, obs: &Observation, rules: &StateRules) -> Outcome {
        let Some(user) = state else {
            let mut user = UserState::new(obs.timestamp_ms);
            let features = user.accept_in_order(obs);
            *state = Some(user);
            return Outcome::Accepted(features);
        };
        if user.is_duplicate(obs, rules) {
            return Outcome::Duplicate;
        }
        if obs.timestamp_ms >= user.newest_ms {
            return Outcome::Accepted(user.accept_in_order(obs));
        }
        let features = assemble(&user.scan_prior(obs), &view(obs));
        if obs.timestamp_ms < user.newest_ms - rules.lateness_ms {
            user.late_ids.push((obs.id_hash, obs.timestamp_ms));
            Outcome::Late(features)
        } else {
            user.insert_out_of_order(obs);
            Outcome::Accepted(features)
        }
    }

    fn is_duplicate(&self, obs: &Observation, rules: &StateRules) -> bool {
        let (lo, hi) = (obs.timestamp_ms - rules.dedup_horizon_ms, obs.timestamp_ms + rules.dedup_horizon_ms);
        let same_id = |e: &Retained| e.id_hash == obs.id_hash;
        let in_buffer = if obs.timestamp_ms >= self.newest_ms {
            // In order: candidates are within the 24 h window (anchored at newest ≤ t), so when
            // the window's id index says "absent" there is nothing to walk.
            let indexed_absent = rules.dedup_horizon_ms <= WINDOWS_MS[DAY]
                && self.day_ids.as_ref().is_some_and(|ids| !ids.contains_key(&obs.id_hash));
            !indexed_absent && self.events.iter().rev().take_while(|e| self.ts(e) >= lo).any(same_id)
        } else {
            let from = self.events.partition_point(|e| self.ts(e) < lo);
            self.events.range(from..).take_while(|e| self.ts(e) <= hi).any(same_id)
        };
        // Late copies are remembered while their timestamp is ≥ newest − 30 d (SPEC §1), like
        // accepted ones; the explicit bound keeps that independent of when trimming happens.
        let remembered_from = lo.max(self.newest_ms - RETENTION_MS);
        in_buffer || self.late_ids.iter().any(|&(h, ts)| h == obs.id_hash && (remembered_from..=hi).contains(&ts))
    }

    /// Fast path: moves every window to end at `t`, reads the prior, appends the event.
    fn accept_in_order(&mut self, obs: &Observation) -> WindowFeatures {
        let t = obs.timestamp_ms;
        self.evict_before(t - RETENTION_MS);
        for (w, length) in WINDOWS_MS.iter().enumerate() {
            self.advance_window(w, t - length);
        }
        let features = assemble(&self.incremental_prior(obs.hour), &view(obs));
        self.newest_ms = t;
        self.push(obs);
        if !self.late_ids.is_empty() {
            self.trim_late_ids();
        }
        features
    }

    fn incremental_prior(&self, hour: u8) -> PriorView {
        let end = self.end_index();
        let mut prior = PriorView {
            count_30d: self.events.len() as u64,
            newest_30d: self.events.back().map(|e| self.ts(e)),
            max_location_30d: self.max_locations.candidates.front().map(|&(_, v)| v),
            active_hours_7d: u64::from(self.active_hours_7d),
            near_hour_30d: [23, 0, 1].iter().map(|d| u64::from(self.hour_counts[usize::from((hour + d) % 24)])).sum(),
            ..PriorView::default()
        };
        for (agg, out) in self.windows.iter().zip(prior.windows.iter_mut()) {
            out.count = end - agg.start;
            out.sum = agg.sum;
            out.sum_sq = agg.sum_sq;
            if out.count > 0 {
                out.max = self.max_amounts.candidates[agg.max_cursor].1;
            }
        }
        prior
    }

    /// Removes events older than `cutoff` from the buffer and the 30-day aggregates.
    fn evict_before(&mut self, cutoff: i64) {
        while let Some(front) = self.events.front() {
            if self.ts(front) >= cutoff {
                break;
            }
            let hour = front.hour;
            for w in 0..WINDOWS_MS.len() {
                if self.windows[w].start == self.first_index {
                    self.drop_window_front(w);
                }
            }
            self.hour_counts[usize::from(hour)] -= 1;
            self.events.pop_front();
            self.first_index += 1;
            if self.max_amounts.evict(self.first_index - 1) {
                for agg in &mut self.windows {
                    agg.max_cursor = agg.max_cursor.saturating_sub(1);
                }
            }
            self.max_locations.evict(self.first_index - 1);
        }
    }

    /// Moves window `w`'s start past events older than `cutoff`.
    fn advance_window(&mut self, w: usize, cutoff: i64) {
        while self.windows[w].start < self.end_index() && self.ts(self.at(self.windows[w].start)) < cutoff {
            self.drop_window_front(w);
        }
    }

    fn drop_window_front(&mut self, w: usize) {
        let start = self.windows[w].start;
        let leaving = *self.at(start);
        let next = start + 1;
        let end = self.end_index();
        if w == WEEK {
            let next_same_hour = next < end && clock_hour(self.ts(self.at(next))) == clock_hour(self.ts(&leaving));
            if !next_same_hour {
                self.active_hours_7d -= 1;
            }
        }
        if w == DAY {
            self.forget_day_id(leaving.id_hash, end - next);
        }
        let agg = &mut self.windows[w];
        agg.sum.sub(leaving.amount);
        agg.sum_sq.sub_square(leaving.amount);
        agg.start = next;
        if next < end {
            while self.max_amounts.candidates[agg.max_cursor].0 < next {
                agg.max_cursor += 1;
            }
        }
    }

    /// Appends an event with `t ≥` every retained timestamp.
    fn push(&mut self, obs: &Observation) {
        self.ensure_offset_fits(obs.timestamp_ms);
        let index = self.end_index();
        let previous_hour = self.events.back().map(|e| clock_hour(self.ts(e)));
        let week_was_empty = self.windows[WEEK].start == index;
        let was_empty = self.windows.map(|agg| agg.start == index);
        self.grow_gently();
        self.events.push_back(retained(obs, self.base_ms));
        self.remember_day_id(obs.id_hash);
        self.hour_counts[usize::from(obs.hour)] += 1;
        if week_was_empty || previous_hour != Some(clock_hour(obs.timestamp_ms)) {
            self.active_hours_7d += 1;
        }
        for agg in &mut self.windows {
            agg.sum.add(obs.amount);
            agg.sum_sq.add_square(obs.amount);
        }
        let last = self.max_amounts.push(index, obs.amount) - 1;
        for (agg, empty) in self.windows.iter_mut().zip(was_empty) {
            agg.max_cursor = if empty { last } else { agg.max_cursor.min(last) };
        }
        if !obs.location_distance.is_nan() {
            self.max_locations.push(index, obs.location_distance);
        }
    }

    /// Grows a full buffer by a quarter instead of doubling it: still amortised O(1) per
    /// event, but unused capacity averages ~10 % of the buffer instead of ~25 %; a new user's
    /// buffer starts at one event (most users of a large population have only a few).
    fn grow_gently(&mut self) {
        if self.events.len() == self.events.capacity() {
            self.events.reserve_exact(self.events.len() / 4 + 1);
        }
    }

    /// Keeps `t − base_ms` representable as u32 by re-basing (O(n), once per ~49 days).
    fn ensure_offset_fits(&mut self, t: i64) {
        let fits = |base: i64| t >= base && t - base <= i64::from(u32::MAX);
        if fits(self.base_ms) {
            return;
        }
        let new_base = self.events.front().map_or(t, |e| self.ts(e)).min(t);
        let shift = self.base_ms - new_base;
        for e in &mut self.events {
            e.offset_ms = (i64::from(e.offset_ms) + shift) as u32;
        }
        self.base_ms = new_base;
    }

    /// Exact prior of an event older than the newest one: a literal scan of the buffer.
    fn scan_prior(&self, obs: &Observation) -> PriorView {
        let t = obs.timestamp_ms;
        let mut prior = PriorView::default();
        let mut week_hours: Option<i64> = None;
        for e in &self.events {
            let ts = self.ts(e);
            if ts > t || ts < t - RETENTION_MS {
                continue;
            }
            prior.count_30d += 1;
            prior.newest_30d = Some(prior.newest_30d.map_or(ts, |n| n.max(ts)));
            if !e.location.is_nan() {
                prior.max_location_30d = Some(prior.max_location_30d.map_or(e.location, |m| m.max(e.location)));
            }
            if hours_adjacent(e.hour, obs.hour) {
                prior.near_hour_30d += 1;
            }
            for (w, agg) in prior.windows.iter_mut().enumerate() {
                if ts >= t - WINDOWS_MS[w] {
                    agg.add(e.amount);
                }
            }
            if ts >= t - WINDOWS_MS[WEEK] && week_hours != Some(clock_hour(ts)) {
                prior.active_hours_7d += 1;
                week_hours = Some(clock_hour(ts));
            }
        }
        prior
    }

    /// Inserts an accepted out-of-order event at its time position and rebuilds the windows.
    fn insert_out_of_order(&mut self, obs: &Observation) {
        self.ensure_offset_fits(obs.timestamp_ms);
        let at = self.events.partition_point(|e| self.ts(e) <= obs.timestamp_ms);
        self.grow_gently();
        self.events.insert(at, retained(obs, self.base_ms));
        self.hour_counts[usize::from(obs.hour)] += 1;
        self.rebuild_windows();
    }

    /// Recomputes windows, max deques and active hours from the buffer, anchored at `newest`.
    fn rebuild_windows(&mut self) {
        self.day_ids = None;
        let end = self.end_index();
        self.max_amounts = SuffixMax::default();
        self.max_locations = SuffixMax::default();
        for index in self.first_index..end {
            let e = *self.at(index);
            self.max_amounts.push(index, e.amount);
            if !e.location.is_nan() {
                self.max_locations.push(index, e.location);
            }
        }
        for (w, length) in WINDOWS_MS.iter().enumerate() {
            let cutoff = self.newest_ms - length;
            let start = self.first_index + self.events.partition_point(|e| self.ts(e) < cutoff) as u64;
            let mut agg = WindowAgg { start, ..WindowAgg::default() };
            for index in start..end {
                let amount = self.at(index).amount;
                agg.sum.add(amount);
                agg.sum_sq.add_square(amount);
            }
            agg.max_cursor = self.max_amounts.candidates.partition_point(|&(i, _)| i < start);
            self.windows[w] = agg;
        }
        let week_start = self.windows[WEEK].start;
        let mut hours = (week_start..end).map(|i| clock_hour(self.ts(self.at(i)))).collect::<Vec<_>>();
        hours.dedup();
        self.active_hours_7d = hours.len() as u32;
    }

    /// Counts a newly appended event in the day index, building the index once the 24 h
    /// window (which now ends with that event) gets busy.
    fn remember_day_id(&mut self, id_hash: u64) {
        let start = self.windows[DAY].start;
        let in_window = self.end_index() - start;
        match &mut self.day_ids {
            Some(ids) => *ids.entry(id_hash).or_insert(0) += 1,
            None if in_window >= DAY_INDEX_FROM => {
                let mut ids = DayIds::default();
                for index in start..self.end_index() {
                    *ids.entry(self.at(index).id_hash).or_insert(0) += 1;
                }
                self.day_ids = Some(Box::new(ids));
            }
            None => {}
        }
    }

    /// Uncounts an event leaving the 24 h window; drops the index when the window is quiet.
    fn forget_day_id(&mut self, id_hash: u64, remaining: u64) {
        let Some(ids) = &mut self.day_ids else { return };
        if remaining < DAY_INDEX_UNTIL {
            self.day_ids = None;
        } else if let Some(count) = ids.get_mut(&id_hash) {
            *count -= 1;
            if *count == 0 {
                ids.remove(&id_hash);
            }
        }
    }

    /// Returns memory of buffers that shrank a lot (e.g. after a burst left the 30 days).
    pub fn compact(&mut self) {
        if self.events.capacity() > 2 * self.events.len() + 8 {
            self.events.shrink_to_fit();
        }
        for deque in [&mut self.max_amounts.candidates, &mut self.max_locations.candidates] {
            if deque.capacity() > 2 * deque.len() + 8 {
                deque.shrink_to_fit();
            }
        }
    }

    /// Forgets late-event ids older than the dedup memory (`newest − 30 d`).
    pub fn trim_late_ids(&mut self) {
        let cutoff = self.newest_ms - RETENTION_MS;
        self.late_ids.retain(|&(_, ts)| ts >= cutoff);
    }
}

fn clock_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS)
}

fn view(obs: &Observation) -> EventView {
    EventView { timestamp_ms: obs.timestamp_ms, amount: obs.amount, location_distance: obs.location_distance }
}

fn retained(obs: &Observation, base_ms: i64) -> Retained {
    Retained {
        amount: obs.amount,
        location: obs.location_distance,
        id_hash: obs.id_hash,
        offset_ms: (obs.timestamp_ms - base_ms) as u32,
        hour: obs.hour,
    }
}
