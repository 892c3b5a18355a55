//! One user's event-time state: the accepted events of the last 30 days and the incremental
//! window aggregates over them (SPEC §2, DESIGN.md "Window state").
//!
//! Invariants, after every call:
//! * `events` holds exactly u's accepted events with `ts ≥ newest − 30 d`, sorted by timestamp
//!   (ties in arrival order), and is never empty once the user exists;
//! * each window `w` covers the suffix of `events` with `ts ≥ newest − W` and its running
//!   count/sum/sum of squares/maximum describe exactly that suffix;
//! * `amount_candidates` holds the candidates for any suffix maximum of the 7-day window's
//!   amounts (amounts non-increasing), `location_candidates` likewise for locations over the
//!   whole buffer.
//!
//! An in-order event (`t ≥ newest`) costs amortised O(1) per window: windows only move forward.
//! Out-of-order events (rare, within lateness) and late events take an exact scan of the buffer.
//!
//! Memory: 28 bytes per retained event plus 256 bytes inline per user (a test holds that
//! figure), with what only some users need behind one pointer.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::hashing::PreHashed;
use crate::features::exact_sum::DoubleDouble;
use crate::features::{assemble, hours_adjacent, EventView, PriorView, WindowFeatures, RETENTION_MS, WEEK, WINDOWS_MS};
use crate::state::prefetch::prefetch;
use crate::state::ring::Ring;
use crate::time::rfc3339::HOUR_MS;

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

/// A retained event, 28 bytes on 4-byte alignment: the timestamp relative to
/// `UserState::base_ms`, and the hour in the low byte of the event-id hash (whose top 56 bits
/// are kept: a false duplicate among one user's day of events has probability ~n²/2⁵⁷).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed(4))]
struct Retained {
    amount: f64,
    location: f64,
    id_and_hour: u64,
    offset_ms: u32,
}

impl Retained {
    fn new(obs: &Observation, base_ms: i64) -> Self {
        Retained {
            amount: obs.amount,
            location: obs.location_distance,
            id_and_hour: id_key(obs.id_hash) | u64::from(obs.hour),
            offset_ms: (obs.timestamp_ms - base_ms) as u32,
        }
    }

    #[inline]
    fn amount(&self) -> f64 {
        self.amount
    }

    #[inline]
    fn location(&self) -> f64 {
        self.location
    }

    #[inline]
    fn id(&self) -> u64 {
        id_key(self.id_and_hour)
    }

    #[inline]
    fn hour(&self) -> u8 {
        self.id_and_hour as u8
    }

    #[inline]
    fn offset_ms(&self) -> u32 {
        self.offset_ms
    }
}

impl Serialize for Retained {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.amount(), self.location(), self.id_and_hour, self.offset_ms()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Retained {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (amount, location, id_and_hour, offset_ms) = <(f64, f64, u64, u32)>::deserialize(deserializer)?;
        Ok(Retained { amount, location, id_and_hour, offset_ms })
    }
}

/// The part of an event-id hash the state remembers (the low byte holds the hour).
#[inline]
fn id_key(hash: u64) -> u64 {
    hash & !0xFF
}

/// State of one user, 256 bytes inline: what every event reads or writes, and nothing that
/// only a few users need (those parts are in [`Extras`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserState {
    base_ms: i64,
    /// Running sums of each window's amounts and squared amounts, double-double (see
    /// `exact_sum`).
    sums: [DoubleDouble; 3],
    sums_sq: [DoubleDouble; 3],
    /// The maximum amount of the 24 h and 7-day windows, meaningful while the window holds an
    /// event. The hour's is looked up (`max_amount_from`): its candidates are next to the
    /// newest event, whose cache lines every event touches anyway.
    cached_max: [f64; 2],
    /// Largest location of the buffer, meaningful while `location_candidates` is not empty.
    max_location: f64,
    events: Ring<Retained>,
    /// Suffix-maximum candidates of the amounts in the 7-day window: absolute indices, amounts
    /// non-increasing. A window's maximum is its first candidate at or after its start, so one
    /// list serves all windows (each nested in the 7-day one); values are read from `events`.
    amount_candidates: Ring<u32>,
    /// Suffix-maximum candidates of the locations of the whole buffer (events that have one).
    location_candidates: Ring<u32>,
    /// Absolute index of `events[0]`: events ever evicted from the front, wrapping (indices
    /// are only ever compared through their distance from it).
    first_index: u32,
    /// Absolute index of each window's first event (`end` when the window is empty).
    window_start: [u32; 3],
    /// Events of the buffer per hour of day; [`Extras::wide_hours`] takes over for a user with
    /// more than 255 events in one hour of day.
    hour_counts: [u8; 24],
    /// Distinct clock hours among the 7-day window's events (at most 7·24 + 1).
    active_hours_7d: u8,
    extras: Option<Box<Extras>>,
}

/// What only some users need: late events, a busy day, very many events in an hour of day.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Extras {
    /// Scored-but-late events still remembered for dedup: (id key, timestamp).
    late_ids: Vec<(u64, i64)>,
    /// Busy users only: how many events of the 24 h window carry each id key, so an in-order
    /// event's dedup check is a lookup instead of a walk over the day's events.
    day_ids: Option<DayIds>,
    wide_hours: Option<[u32; 24]>,
}

impl Extras {
    fn is_empty(&self) -> bool {
        self.late_ids.is_empty() && self.day_ids.is_none() && self.wide_hours.is_none()
    }
}

/// Index of the 24 h window's event ids (hashes are already mixed, so no rehashing).
type DayIds = HashMap<u64, u32, BuildHasherDefault<PreHashed>>;

/// Window indices of the 1 h and 24 h windows (`WEEK` is the 7-day one).
const HOUR: usize = 0;
const DAY: usize = 1;
/// Events in the 24 h window from which a user gets a [`DayIds`] index, and below which it
/// is dropped again (hysteresis, so a user at the edge does not rebuild it every event).
const DAY_INDEX_FROM: usize = 32;
const DAY_INDEX_UNTIL: usize = 8;

impl UserState {
    /// State of a user whose first accepted event is at `t`.
    fn new(t: i64) -> Self {
        UserState {
            base_ms: t,
            sums: [DoubleDouble::default(); 3],
            sums_sq: [DoubleDouble::default(); 3],
            cached_max: [0.0; 2],
            max_location: f64::NAN,
            events: Ring::default(),
            amount_candidates: Ring::default(),
            location_candidates: Ring::default(),
            first_index: 0,
            window_start: [0; 3],
            hour_counts: [0; 24],
            active_hours_7d: 0,
            extras: None,
        }
    }

    /// Newest accepted timestamp of the user: the buffer's last event, which eviction
    /// (30 days behind it) never removes.
    pub fn newest_ms(&self) -> i64 {
        self.events.back().map_or(self.base_ms, |e| self.ts(e))
    }

    /// Number of retained events.
    pub fn retained(&self) -> usize {
        self.events.len()
    }

    /// Heap bytes held by this state (capacities, not lengths), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        let extras = self.extras.as_ref().map_or(0, |x| {
            std::mem::size_of::<Extras>()
                + x.late_ids.capacity() * 16
                + x.day_ids.as_ref().map_or(0, |ids| ids.capacity() * 13 + 32)
        });
        self.events.capacity() * std::mem::size_of::<Retained>()
            + (self.amount_candidates.capacity() + self.location_candidates.capacity()) * 4
            + extras
    }

    /// Prefetches what the next in-order event of this user will touch: the newest events,
    /// the oldest one (30-day eviction), the first of the 7-day window and the newest
    /// maximum candidates.
    pub fn prefetch_buffer(&self) {
        let len = self.events.len();
        if len == 0 {
            return;
        }
        for position in [len - 1, 0, self.position(self.window_start[WEEK]).min(len - 1)] {
            prefetch(self.events.get(position));
        }
        for candidates in [&self.amount_candidates, &self.location_candidates] {
            if let Some(back) = candidates.back() {
                prefetch(back);
            }
        }
    }

    fn ts(&self, e: &Retained) -> i64 {
        self.base_ms + i64::from(e.offset_ms())
    }

    /// Position in `events` of absolute index `index`.
    #[inline]
    fn position(&self, index: u32) -> usize {
        position_of(index, self.first_index)
    }

    fn at(&self, index: u32) -> &Retained {
        event_at(&self.events, self.first_index, index)
    }

    fn end_index(&self) -> u32 {
        self.first_index.wrapping_add(self.events.len() as u32)
    }

    /// Events in window `w`.
    fn window_len(&self, w: usize) -> usize {
        self.events.len() - self.position(self.window_start[w])
    }

    fn hour_count(&self, hour: u8) -> u32 {
        match self.extras.as_ref().and_then(|x| x.wide_hours.as_ref()) {
            Some(wide) => wide[usize::from(hour)],
            None => u32::from(self.hour_counts[usize::from(hour)]),
        }
    }

    fn wide_hours_mut(&mut self) -> Option<&mut [u32; 24]> {
        self.extras.as_mut().and_then(|x| x.wide_hours.as_mut())
    }

    fn count_hour(&mut self, hour: u8) {
        let h = usize::from(hour);
        if let Some(wide) = self.wide_hours_mut() {
            wide[h] += 1;
            return;
        }
        match self.hour_counts[h].checked_add(1) {
            Some(count) => self.hour_counts[h] = count,
            None => {
                let mut wide = self.hour_counts.map(u32::from);
                wide[h] += 1;
                self.extras_mut().wide_hours = Some(wide);
            }
        }
    }

    fn uncount_hour(&mut self, hour: u8) {
        let h = usize::from(hour);
        match self.wide_hours_mut() {
            Some(wide) => wide[h] -= 1,
            None => self.hour_counts[h] -= 1,
        }
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Frees the extras once nothing is left in them.
    fn tidy_extras(&mut self) {
        if self.extras.as_ref().is_some_and(|x| x.is_empty()) {
            self.extras = None;
        }
    }

    fn late_ids(&self) -> &[(u64, i64)] {
        self.extras.as_ref().map_or(&[], |x| &x.late_ids)
    }

    fn day_ids(&self) -> Option<&DayIds> {
        self.extras.as_ref().and_then(|x| x.day_ids.as_ref())
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
        let newest = user.newest_ms();
        if obs.timestamp_ms >= newest {
            return Outcome::Accepted(user.accept_in_order(obs));
        }
        let features = assemble(&user.scan_prior(obs), &view(obs));
        if obs.timestamp_ms < newest - rules.lateness_ms {
            user.extras_mut().late_ids.push((id_key(obs.id_hash), obs.timestamp_ms));
            Outcome::Late(features)
        } else {
            user.insert_out_of_order(obs);
            Outcome::Accepted(features)
        }
    }

    fn is_duplicate(&self, obs: &Observation, rules: &StateRules) -> bool {
        let id = id_key(obs.id_hash);
        let (lo, hi) = (obs.timestamp_ms - rules.dedup_horizon_ms, obs.timestamp_ms + rules.dedup_horizon_ms);
        let same_id = |e: &Retained| e.id() == id;
        let newest = self.newest_ms();
        let in_buffer = if obs.timestamp_ms >= newest {
            // In order: candidates are within the 24 h window (anchored at newest ≤ t), so when
            // the window's id index says "absent" there is nothing to walk.
            let indexed_absent =
                rules.dedup_horizon_ms <= WINDOWS_MS[DAY] && self.day_ids().is_some_and(|ids| !ids.contains_key(&id));
            !indexed_absent && self.events.iter().rev().take_while(|e| self.ts(e) >= lo).any(same_id)
        } else {
            let from = self.events.partition_point(|e| self.ts(e) < lo);
            self.events.iter_from(from).take_while(|e| self.ts(e) <= hi).any(same_id)
        };
        // Late copies are remembered while their timestamp is ≥ newest − 30 d (SPEC §1), like
        // accepted ones; the explicit bound keeps that independent of when trimming happens.
        let remembered_from = lo.max(newest - RETENTION_MS);
        in_buffer || self.late_ids().iter().any(|&(h, ts)| h == id && (remembered_from..=hi).contains(&ts))
    }

    /// Fast path: moves every window to end at `t`, reads the prior, appends the event.
    fn accept_in_order(&mut self, obs: &Observation) -> WindowFeatures {
        let t = obs.timestamp_ms;
        self.evict_before(t - RETENTION_MS);
        for (w, length) in WINDOWS_MS.iter().enumerate() {
            self.advance_window(w, t - length);
        }
        let features = assemble(&self.incremental_prior(obs.hour), &view(obs));
        self.push(obs);
        if !self.late_ids().is_empty() {
            self.trim_late_ids();
        }
        features
    }

    fn incremental_prior(&self, hour: u8) -> PriorView {
        let mut prior = PriorView {
            count_30d: self.events.len() as u64,
            newest_30d: self.events.back().map(|e| self.ts(e)),
            max_location_30d: (!self.location_candidates.is_empty()).then_some(self.max_location),
            active_hours_7d: u64::from(self.active_hours_7d),
            near_hour_30d: [23, 0, 1].iter().map(|d| u64::from(self.hour_count((hour + d) % 24))).sum(),
            ..PriorView::default()
        };
        for (w, out) in prior.windows.iter_mut().enumerate() {
            out.count = self.window_len(w) as u64;
            out.sum = self.sums[w];
            out.sum_sq = self.sums_sq[w];
            if out.count > 0 {
                out.max = self.window_max(w);
            }
        }
        prior
    }

    /// Removes events older than `cutoff` from the buffer and the 30-day aggregates.
    fn evict_before(&mut self, cutoff: i64) {
        while let Some(&front) = self.events.front() {
            if self.ts(&front) >= cutoff {
                break;
            }
            for w in 0..WINDOWS_MS.len() {
                if self.window_start[w] == self.first_index {
                    self.drop_window_front(w);
                }
            }
            self.uncount_hour(front.hour());
            self.events.pop_front();
            let evicted = self.first_index;
            self.first_index = self.first_index.wrapping_add(1);
            if self.location_candidates.front() == Some(&evicted) {
                self.location_candidates.pop_front();
                if let Some(&next) = self.location_candidates.front() {
                    self.max_location = self.at(next).location();
                }
            }
        }
    }

    /// Moves window `w`'s start past events older than `cutoff`.
    fn advance_window(&mut self, w: usize, cutoff: i64) {
        while self.window_len(w) > 0 && self.ts(self.at(self.window_start[w])) < cutoff {
            self.drop_window_front(w);
        }
    }

    fn drop_window_front(&mut self, w: usize) {
        let start = self.window_start[w];
        let leaving = *self.at(start);
        let next = start.wrapping_add(1);
        let remaining = self.window_len(w) - 1;
        if w == WEEK {
            let next_same_hour = remaining > 0 && clock_hour(self.ts(self.at(next))) == clock_hour(self.ts(&leaving));
            if !next_same_hour {
                self.active_hours_7d -= 1;
            }
            if self.amount_candidates.front() == Some(&start) {
                self.amount_candidates.pop_front();
            }
        }
        if w == DAY {
            self.forget_day_id(leaving.id(), remaining);
        }
        self.sums[w].sub(leaving.amount());
        self.sums_sq[w].sub_square(leaving.amount());
        self.window_start[w] = next;
        // Only the maximum's own candidate leaving can change the maximum (an earlier equal
        // amount is not a candidate, and recomputing then finds the same value).
        if w != HOUR && remaining > 0 && leaving.amount() == self.cached_max[w - 1] {
            self.cached_max[w - 1] = self.max_amount_from(next);
        }
    }

    /// The maximum amount of window `w`, which must hold an event.
    fn window_max(&self, w: usize) -> f64 {
        if w == HOUR {
            self.max_amount_from(self.window_start[HOUR])
        } else {
            self.cached_max[w - 1]
        }
    }

    /// The maximum amount of the events from absolute index `start` on, which must be within
    /// the 7-day window and not past the newest event.
    fn max_amount_from(&self, start: u32) -> f64 {
        let from = self.position(start);
        let k = self.amount_candidates.partition_point(|&c| self.position(c) < from);
        self.at(*self.amount_candidates.get(k)).amount()
    }

    /// Appends an event with `t ≥` every retained timestamp.
    fn push(&mut self, obs: &Observation) {
        self.ensure_offset_fits(obs.timestamp_ms);
        let index = self.end_index();
        let previous_hour = self.events.back().map(|e| clock_hour(self.ts(e)));
        let was_empty = [0, 1, 2].map(|w| self.window_len(w) == 0);
        self.events.push_back(Retained::new(obs, self.base_ms));
        self.remember_day_id(id_key(obs.id_hash));
        self.count_hour(obs.hour);
        if was_empty[WEEK] || previous_hour != Some(clock_hour(obs.timestamp_ms)) {
            self.active_hours_7d += 1;
        }
        let amount = obs.amount;
        for (sum, sum_sq) in self.sums.iter_mut().zip(&mut self.sums_sq) {
            sum.add(amount);
            sum_sq.add_square(amount);
        }
        for (max, was_empty) in self.cached_max.iter_mut().zip(&was_empty[DAY..]) {
            if *was_empty || amount >= *max {
                *max = amount;
            }
        }
        push_candidate(&mut self.amount_candidates, &self.events, self.first_index, index, Retained::amount);
        let location = obs.location_distance;
        if !location.is_nan() {
            if self.location_candidates.is_empty() || location >= self.max_location {
                self.max_location = location;
            }
            push_candidate(&mut self.location_candidates, &self.events, self.first_index, index, Retained::location);
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
        let (a, b) = self.events.as_mut_slices();
        for e in a.iter_mut().chain(b) {
            e.offset_ms = (i64::from(e.offset_ms()) + shift) as u32;
        }
        self.base_ms = new_base;
    }

    /// Exact prior of an event older than the newest one: a literal scan of the buffer.
    fn scan_prior(&self, obs: &Observation) -> PriorView {
        let t = obs.timestamp_ms;
        let mut prior = PriorView::default();
        let mut week_hours: Option<i64> = None;
        for e in self.events.iter() {
            let ts = self.ts(e);
            if ts > t || ts < t - RETENTION_MS {
                continue;
            }
            prior.count_30d += 1;
            prior.newest_30d = Some(prior.newest_30d.map_or(ts, |n| n.max(ts)));
            let location = e.location();
            if !location.is_nan() {
                prior.max_location_30d = Some(prior.max_location_30d.map_or(location, |m| m.max(location)));
            }
            if hours_adjacent(e.hour(), obs.hour) {
                prior.near_hour_30d += 1;
            }
            for (w, agg) in prior.windows.iter_mut().enumerate() {
                if ts >= t - WINDOWS_MS[w] {
                    agg.add(e.amount());
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
        self.events.insert(at, Retained::new(obs, self.base_ms));
        self.count_hour(obs.hour);
        self.rebuild_windows();
    }

    /// Recomputes windows, maximum candidates and active hours from the buffer, anchored at
    /// the newest event.
    fn rebuild_windows(&mut self) {
        if let Some(extras) = &mut self.extras {
            extras.day_ids = None;
        }
        let newest = self.newest_ms();
        let len = self.events.len();
        for (w, length) in WINDOWS_MS.iter().enumerate() {
            let from = self.events.partition_point(|e| self.ts(e) < newest - length);
            self.window_start[w] = self.first_index.wrapping_add(from as u32);
            let (mut sum, mut sum_sq, mut max) = (DoubleDouble::default(), DoubleDouble::default(), f64::NEG_INFINITY);
            for e in self.events.iter_from(from) {
                sum.add(e.amount());
                sum_sq.add_square(e.amount());
                max = max.max(e.amount());
            }
            (self.sums[w], self.sums_sq[w]) = (sum, sum_sq);
            if w != HOUR {
                self.cached_max[w - 1] = max;
            }
        }
        self.amount_candidates.clear();
        self.location_candidates.clear();
        let week_from = self.position(self.window_start[WEEK]);
        for position in 0..len {
            let index = self.first_index.wrapping_add(position as u32);
            if position >= week_from {
                push_candidate(&mut self.amount_candidates, &self.events, self.first_index, index, Retained::amount);
            }
            if !self.events.get(position).location().is_nan() {
                push_candidate(
                    &mut self.location_candidates,
                    &self.events,
                    self.first_index,
                    index,
                    Retained::location,
                );
            }
        }
        if let Some(&front) = self.location_candidates.front() {
            self.max_location = self.at(front).location();
        }
        let mut hours = self.events.iter_from(week_from).map(|e| clock_hour(self.ts(e))).collect::<Vec<_>>();
        hours.dedup();
        self.active_hours_7d = hours.len() as u8;
        self.tidy_extras();
    }

    /// Counts a newly appended event in the day index, building the index once the 24 h
    /// window (which now ends with that event) gets busy.
    fn remember_day_id(&mut self, id: u64) {
        if let Some(ids) = self.extras.as_mut().and_then(|x| x.day_ids.as_mut()) {
            *ids.entry(id).or_insert(0) += 1;
            return;
        }
        let from = self.position(self.window_start[DAY]);
        if self.events.len() - from < DAY_INDEX_FROM {
            return;
        }
        let mut ids = DayIds::default();
        for e in self.events.iter_from(from) {
            *ids.entry(e.id()).or_insert(0) += 1;
        }
        self.extras_mut().day_ids = Some(ids);
    }

    /// Uncounts an event leaving the 24 h window; drops the index when the window is quiet.
    fn forget_day_id(&mut self, id: u64, remaining: usize) {
        let Some(extras) = &mut self.extras else { return };
        let Some(ids) = &mut extras.day_ids else { return };
        if remaining < DAY_INDEX_UNTIL {
            extras.day_ids = None;
            self.tidy_extras();
        } else if let Some(count) = ids.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                ids.remove(&id);
            }
        }
    }

    /// Returns memory of buffers that shrank a lot (e.g. after a burst left the 30 days), and
    /// goes back to narrow hour counts once they fit again.
    pub fn compact(&mut self) {
        self.events.shrink_if_sparse();
        self.amount_candidates.shrink_if_sparse();
        self.location_candidates.shrink_if_sparse();
        if let Some(extras) = &mut self.extras {
            if extras.late_ids.capacity() > 2 * extras.late_ids.len() + 8 {
                extras.late_ids.shrink_to_fit();
            }
            if let Some(wide) = extras.wide_hours.filter(|wide| wide.iter().all(|&c| c <= u32::from(u8::MAX))) {
                self.hour_counts = wide.map(|c| c as u8);
                extras.wide_hours = None;
            }
        }
        self.tidy_extras();
    }

    /// Forgets late-event ids older than the dedup memory (`newest − 30 d`).
    pub fn trim_late_ids(&mut self) {
        let cutoff = self.newest_ms() - RETENTION_MS;
        if let Some(extras) = &mut self.extras {
            extras.late_ids.retain(|&(_, ts)| ts >= cutoff);
        }
        self.tidy_extras();
    }
}

/// Position in the buffer of absolute index `index`, the buffer starting at `first_index`.
#[inline]
fn position_of(index: u32, first_index: u32) -> usize {
    index.wrapping_sub(first_index) as usize
}

fn event_at(events: &Ring<Retained>, first_index: u32, index: u32) -> &Retained {
    events.get(position_of(index, first_index))
}

/// Appends the buffered event at absolute `index` to a suffix-maximum candidate list, first
/// dropping the candidates whose `value` it equals or exceeds (they can no longer be a
/// maximum of any suffix that holds it). A free function so that it can read `events` while
/// a field beside it is borrowed for update.
fn push_candidate(
    candidates: &mut Ring<u32>,
    events: &Ring<Retained>,
    first_index: u32,
    index: u32,
    value: fn(&Retained) -> f64,
) {
    let new = value(event_at(events, first_index, index));
    while candidates.back().is_some_and(|&c| value(event_at(events, first_index, c)) <= new) {
        candidates.pop_back();
    }
    candidates.push_back(index);
}

fn clock_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS)
}

fn view(obs: &Observation) -> EventView {
    EventView { timestamp_ms: obs.timestamp_ms, amount: obs.amount, location_distance: obs.location_distance }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory figures in README and docs/design.md rest on these sizes.
    #[test]
    fn a_state_is_four_cache_lines_and_an_event_28_bytes() {
        assert_eq!(std::mem::size_of::<Option<UserState>>(), 256);
        assert_eq!(std::mem::size_of::<Retained>(), 28);
    }

    fn obs(t: i64, hour: u8, id: u64) -> Observation {
        Observation { timestamp_ms: t, amount: 1.0, location_distance: f64::NAN, hour, id_hash: id << 8 }
    }

    /// Hour-of-day counts past a byte's range move to the extras and come back when they fit.
    #[test]
    fn hour_counts_widen_past_255_and_narrow_again() {
        let rules = StateRules { lateness_ms: 0, dedup_horizon_ms: 0 };
        let mut state = None;
        for i in 0..300 {
            UserState::observe(&mut state, &obs(i * 1000, 5, i as u64), &rules);
        }
        let user = state.as_mut().unwrap();
        assert_eq!(user.hour_count(5), 300);
        assert!(user.extras.as_ref().is_some_and(|x| x.wide_hours.is_some()));
        // 31 days later the 300 events have left the buffer: one event in hour 6 remains.
        UserState::observe(&mut state, &obs(31 * 24 * HOUR_MS, 6, 1000), &rules);
        let user = state.as_mut().unwrap();
        assert_eq!((user.hour_count(5), user.hour_count(6)), (0, 1));
        user.compact();
        assert!(user.extras.is_none());
        assert_eq!((user.hour_count(5), user.hour_count(6)), (0, 1));
    }
}
