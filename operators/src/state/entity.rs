//! One entity's keyed window state (SPEC §2b): per key value, the accepted events of the last
//! 30 days and running aggregates over each declared window, plus whole-history totals, and
//! the computation of the entity's features for an event from them.
//!
//! Invariants, per key, after every call:
//! * the retained events are exactly the key's accepted events with `ts ≥ newest − 30 d`,
//!   sorted by timestamp (ties in arrival order);
//! * each running window covers the suffix with `ts ≥ newest − W`, and its count, sums, max/min
//!   candidates (non-increasing / non-decreasing values) and attribute counts describe
//!   exactly that suffix;
//! * the totals (`all`) describe every accepted event of the key since it was created.
//!
//! An accepted event at or after the key's newest timestamp costs amortised O(1) per window
//! and aggregate: windows only move forward. Any other (an earlier one from another user's
//! clock, or an event that is not accepted) is answered by a scan of the retained events in its
//! windows, O(events in its windows); when accepted it is then inserted in place into the
//! sorted events and the running windows it falls in, O(log n + events after it).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use crate::event::hashing::PreHashed;
use crate::features::exact_sum::{population_std, DoubleDouble};
use crate::features::spec::{Agg, EntitySpec, Prior, Span};
use crate::features::RETENTION_MS;

/// The 7-day window `amount_ratio` divides by (SPEC §2).
const WEEK_MS: i64 = 7 * 86_400_000;

/// Counts of attribute hashes (already mixed, so not rehashed).
type AttrCounts = HashMap<u64, u32, BuildHasherDefault<PreHashed>>;

/// An entity specification compiled to slots: which values a retained event stores, which
/// windows run, and where each feature reads from.
#[derive(Clone, Debug)]
pub struct EntityLayout {
    /// Number of numeric values per event (slot 0 is always `amount`).
    values: usize,
    /// Number of attribute hashes per event.
    attrs: usize,
    /// Running trailing windows: (value slot, length in ms).
    windows: Vec<(usize, i64)>,
    /// Value slots with whole-history totals.
    totals: Vec<usize>,
    /// Running attribute windows: (attribute slot, length in ms).
    attr_windows: Vec<(usize, i64)>,
    outputs: Vec<Output>,
}

/// Where one feature comes from.
#[derive(Clone, Copy, Debug)]
enum Output {
    Window { window: usize, agg: Agg },
    Total { total: usize, agg: Agg },
    SecsSincePrev,
    AmountRatio { week: usize },
    Distinct { window: usize },
    New { window: usize },
}

impl EntityLayout {
    /// Compiles `spec`; `value_names[i]` is the input stored in value slot `i` (slot 0 must be
    /// `amount`) and `attr_names[j]` the attribute in attribute slot `j`.
    pub fn new(spec: &EntitySpec, value_names: &[String], attr_names: &[String]) -> EntityLayout {
        assert_eq!(value_names.first().map(String::as_str), Some("amount"), "value slot 0 is the amount");
        let mut layout = EntityLayout {
            values: value_names.len(),
            attrs: attr_names.len(),
            windows: Vec::new(),
            totals: Vec::new(),
            attr_windows: Vec::new(),
            outputs: Vec::new(),
        };
        let slot_of = |names: &[String], name: &str| {
            names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no slot for `{name}`"))
        };
        for block in &spec.windows {
            let value = slot_of(value_names, &block.of);
            for span in &block.spans {
                for &agg in &block.aggs {
                    let output = match *span {
                        Span::Trailing(ms) => Output::Window { window: layout.window(value, ms), agg },
                        Span::All => Output::Total { total: intern(&mut layout.totals, value), agg },
                    };
                    layout.outputs.push(output);
                }
            }
        }
        for prior in &spec.priors {
            let output = match prior {
                Prior::SecsSincePrev => Output::SecsSincePrev,
                Prior::AmountRatio => Output::AmountRatio { week: layout.window(0, WEEK_MS) },
                Prior::Distinct { attr, span_ms, .. } => {
                    Output::Distinct { window: intern(&mut layout.attr_windows, (slot_of(attr_names, attr), *span_ms)) }
                }
                Prior::New { attr, span_ms, .. } => {
                    Output::New { window: intern(&mut layout.attr_windows, (slot_of(attr_names, attr), *span_ms)) }
                }
            };
            layout.outputs.push(output);
        }
        layout
    }

    fn window(&mut self, value: usize, ms: i64) -> usize {
        intern(&mut self.windows, (value, ms))
    }

    /// Number of features.
    pub fn width(&self) -> usize {
        self.outputs.len()
    }

    /// Numeric values per event.
    pub fn values(&self) -> usize {
        self.values
    }

    /// Attribute hashes per event.
    pub fn attrs(&self) -> usize {
        self.attrs
    }
}

/// Index of `item` in `list`, appending it if new.
fn intern<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    list.iter().position(|x| *x == item).unwrap_or_else(|| {
        list.push(item);
        list.len() - 1
    })
}

/// What the state needs of an event: its time, its values (NaN = missing) and attribute
/// hashes (0 = missing), in the layout's slots.
#[derive(Clone, Copy, Debug)]
pub struct EntityEvent<'a> {
    pub timestamp_ms: i64,
    pub values: &'a [f64],
    pub attrs: &'a [u64],
}

/// Aggregates of one input over a set of events.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Aggregate {
    /// Events, with or without a value (what `cnt` counts).
    events: u64,
    /// Events with a value.
    count: u64,
    sum: DoubleDouble,
    sum_sq: DoubleDouble,
    max: f64,
    min: f64,
}

impl Aggregate {
    fn add(&mut self, value: f64) {
        self.events += 1;
        if value.is_nan() {
            return;
        }
        if self.count == 0 {
            (self.max, self.min) = (value, value);
        } else {
            self.max = self.max.max(value);
            self.min = self.min.min(value);
        }
        self.count += 1;
        self.sum.add(value);
        self.sum_sq.add_square(value);
    }

    /// The aggregate's value; over no values: 0 for sums, missing for the rest.
    fn value(&self, agg: Agg) -> f64 {
        let n = self.count as f64;
        match agg {
            Agg::Cnt => self.events as f64,
            Agg::Sum => self.sum.value(),
            _ if self.count == 0 => f64::NAN,
            Agg::Max => self.max,
            Agg::Min => self.min,
            Agg::Mean => self.sum.value() / n,
            Agg::Std => population_std(self.count, self.sum, self.sum_sq),
        }
    }
}

/// A trailing window running over the suffix of the retained events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunningWindow {
    /// Absolute index of the window's first event.
    start: u64,
    events: u64,
    count: u64,
    sum: DoubleDouble,
    sum_sq: DoubleDouble,
    /// Absolute indices of the suffix-maximum (-minimum) candidates, values non-increasing
    /// (non-decreasing).
    max_candidates: VecDeque<u64>,
    min_candidates: VecDeque<u64>,
}

impl RunningWindow {
    /// Counts an event entering the window and adds its value to the sums; false when it has
    /// no value (then it is no max/min candidate either).
    fn add(&mut self, value: f64) -> bool {
        self.events += 1;
        if value.is_nan() {
            return false;
        }
        self.count += 1;
        self.sum.add(value);
        self.sum_sq.add_square(value);
        true
    }
}

/// Counts of an attribute's values over a trailing window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunningAttrs {
    start: u64,
    counts: AttrCounts,
}

/// One key's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyState {
    /// Newest accepted timestamp (i64::MIN before the first).
    newest: i64,
    /// Absolute index of the first retained event.
    first: u64,
    timestamps: VecDeque<i64>,
    /// `values` per event.
    values: VecDeque<f64>,
    /// `attrs` per event.
    attrs: VecDeque<u64>,
    windows: Vec<RunningWindow>,
    totals: Vec<Aggregate>,
    attr_windows: Vec<RunningAttrs>,
}

impl KeyState {
    /// A key without events.
    pub fn new(layout: &EntityLayout) -> KeyState {
        KeyState {
            newest: i64::MIN,
            windows: vec![RunningWindow::default(); layout.windows.len()],
            totals: vec![Aggregate::default(); layout.totals.len()],
            attr_windows: vec![RunningAttrs::default(); layout.attr_windows.len()],
            ..KeyState::default()
        }
    }

    /// Newest accepted timestamp (`i64::MIN` before the first).
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// Retained events.
    pub fn retained(&self) -> usize {
        self.timestamps.len()
    }

    /// Heap bytes of the state (capacities, not lengths).
    pub fn heap_bytes(&self) -> usize {
        let candidates: usize =
            self.windows.iter().map(|w| (w.max_candidates.capacity() + w.min_candidates.capacity()) * 8).sum();
        let attr_counts: usize = self.attr_windows.iter().map(|a| a.counts.capacity() * 16).sum();
        self.timestamps.capacity() * 8
            + self.values.capacity() * 8
            + self.attrs.capacity() * 8
            + self.windows.capacity() * std::mem::size_of::<RunningWindow>()
            + self.totals.capacity() * std::mem::size_of::<Aggregate>()
            + self.attr_windows.capacity() * std::mem::size_of::<RunningAttrs>()
            + candidates
            + attr_counts
    }

    /// Writes the entity's features of `event` into `out` (width of the layout) from the
    /// key's history, and adds the event to it when `accept`.
    pub fn observe(&mut self, layout: &EntityLayout, event: &EntityEvent, accept: bool, out: &mut [f64]) {
        let t = event.timestamp_ms;
        if accept && t >= self.newest {
            self.advance(layout, t);
            self.features_in_order(layout, event, out);
            self.push(layout, event);
            self.evict(layout);
        } else {
            // Not the in-order path: an earlier event, or one that is not accepted (moving the
            // windows to its time would skip events that later, earlier-stamped ones need).
            self.features_by_scan(layout, event, out);
            if accept {
                self.insert(layout, event);
            }
        }
        if accept {
            for (total, &slot) in self.totals.iter_mut().zip(&layout.totals) {
                total.add(event.values[slot]);
            }
        }
    }

    fn end(&self) -> u64 {
        self.first + self.timestamps.len() as u64
    }

    fn value(&self, layout: &EntityLayout, index: u64, slot: usize) -> f64 {
        self.values[(index - self.first) as usize * layout.values + slot]
    }

    fn attr(&self, layout: &EntityLayout, index: u64, slot: usize) -> u64 {
        self.attrs[(index - self.first) as usize * layout.attrs + slot]
    }

    fn timestamp(&self, index: u64) -> i64 {
        self.timestamps[(index - self.first) as usize]
    }

    /// Moves every running window's start to the first event at or after `t − W`.
    fn advance(&mut self, layout: &EntityLayout, t: i64) {
        let end = self.end();
        for w in 0..self.windows.len() {
            let (slot, length) = layout.windows[w];
            while self.windows[w].start < end && self.timestamp(self.windows[w].start) < t - length {
                let index = self.windows[w].start;
                let value = self.value(layout, index, slot);
                let window = &mut self.windows[w];
                window.events -= 1;
                if !value.is_nan() {
                    window.count -= 1;
                    window.sum.sub(value);
                    window.sum_sq.sub_square(value);
                }
                if window.max_candidates.front() == Some(&index) {
                    window.max_candidates.pop_front();
                }
                if window.min_candidates.front() == Some(&index) {
                    window.min_candidates.pop_front();
                }
                window.start += 1;
            }
            if self.windows[w].count == 0 {
                // Exact zero again, whatever rounding the removals left.
                self.windows[w].sum = DoubleDouble::default();
                self.windows[w].sum_sq = DoubleDouble::default();
            }
        }
        for a in 0..self.attr_windows.len() {
            let (slot, length) = layout.attr_windows[a];
            while self.attr_windows[a].start < end && self.timestamp(self.attr_windows[a].start) < t - length {
                let hash = self.attr(layout, self.attr_windows[a].start, slot);
                let running = &mut self.attr_windows[a];
                if hash != 0 {
                    if let Some(count) = running.counts.get_mut(&hash) {
                        *count -= 1;
                        if *count == 0 {
                            running.counts.remove(&hash);
                        }
                    }
                }
                running.start += 1;
            }
        }
    }

    /// Features of an event at or after the newest one: the running windows are its windows.
    fn features_in_order(&self, layout: &EntityLayout, event: &EntityEvent, out: &mut [f64]) {
        let newest = self.timestamps.back().copied();
        for (o, output) in layout.outputs.iter().enumerate() {
            out[o] = match *output {
                Output::Window { window, agg } => {
                    let mut agg_with = self.running_aggregate(layout, window);
                    agg_with.add(event.values[layout.windows[window].0]);
                    agg_with.value(agg)
                }
                Output::Total { total, agg } => {
                    let mut with = self.totals[total];
                    with.add(event.values[layout.totals[total]]);
                    with.value(agg)
                }
                Output::SecsSincePrev => match newest {
                    Some(prev) if prev >= event.timestamp_ms - RETENTION_MS => {
                        (event.timestamp_ms - prev) as f64 / 1000.0
                    }
                    _ => -1.0,
                },
                Output::AmountRatio { week } => {
                    let w = &self.windows[week];
                    amount_ratio(event.values[0], w.count, w.sum.value())
                }
                Output::Distinct { window } => {
                    let counts = &self.attr_windows[window].counts;
                    let own = event.attrs[layout.attr_windows[window].0];
                    (counts.len() + usize::from(own != 0 && !counts.contains_key(&own))) as f64
                }
                Output::New { window } => {
                    let own = event.attrs[layout.attr_windows[window].0];
                    new_value(own, self.attr_windows[window].counts.contains_key(&own))
                }
            };
        }
    }

    /// A running window's aggregate over the history (event excluded).
    fn running_aggregate(&self, layout: &EntityLayout, w: usize) -> Aggregate {
        let window = &self.windows[w];
        let slot = layout.windows[w].0;
        let at = |candidates: &VecDeque<u64>| candidates.front().map_or(f64::NAN, |&i| self.value(layout, i, slot));
        Aggregate {
            events: window.events,
            count: window.count,
            sum: window.sum,
            sum_sq: window.sum_sq,
            max: at(&window.max_candidates),
            min: at(&window.min_candidates),
        }
    }

    /// Features of an event before the newest one: the retained events in its windows,
    /// `[t − W, t]`, scanned (the retained events are sorted by timestamp).
    fn features_by_scan(&self, layout: &EntityLayout, event: &EntityEvent, out: &mut [f64]) {
        let t = event.timestamp_ms;
        let upto = self.timestamps.partition_point(|&ts| ts <= t);
        let from = |length: i64| self.timestamps.partition_point(|&ts| ts < t - length);
        let aggregate_over = |slot: usize, length: i64| {
            let mut agg = Aggregate::default();
            for i in from(length)..upto {
                agg.add(self.values[i * layout.values + slot]);
            }
            agg
        };
        let attr_counts = |slot: usize, length: i64| {
            let mut counts = AttrCounts::default();
            for i in from(length)..upto {
                let hash = self.attrs[i * layout.attrs + slot];
                if hash != 0 {
                    *counts.entry(hash).or_default() += 1;
                }
            }
            counts
        };
        for (o, output) in layout.outputs.iter().enumerate() {
            out[o] = match *output {
                Output::Window { window, agg } => {
                    let (slot, length) = layout.windows[window];
                    let mut with = aggregate_over(slot, length);
                    with.add(event.values[slot]);
                    with.value(agg)
                }
                Output::Total { total, agg } => {
                    let mut with = self.totals[total];
                    with.add(event.values[layout.totals[total]]);
                    with.value(agg)
                }
                Output::SecsSincePrev => {
                    let in_month = from(RETENTION_MS) < upto;
                    if in_month {
                        (t - self.timestamps[upto - 1]) as f64 / 1000.0
                    } else {
                        -1.0
                    }
                }
                Output::AmountRatio { .. } => {
                    let week = aggregate_over(0, WEEK_MS);
                    amount_ratio(event.values[0], week.count, week.sum.value())
                }
                Output::Distinct { window } => {
                    let (slot, length) = layout.attr_windows[window];
                    let counts = attr_counts(slot, length);
                    let own = event.attrs[slot];
                    (counts.len() + usize::from(own != 0 && !counts.contains_key(&own))) as f64
                }
                Output::New { window } => {
                    let (slot, length) = layout.attr_windows[window];
                    let own = event.attrs[slot];
                    new_value(own, attr_counts(slot, length).contains_key(&own))
                }
            };
        }
    }

    /// Appends an event at or after the newest (windows already advanced to its time).
    fn push(&mut self, layout: &EntityLayout, event: &EntityEvent) {
        let index = self.end();
        self.timestamps.push_back(event.timestamp_ms);
        self.values.extend(event.values);
        self.attrs.extend(event.attrs);
        self.newest = event.timestamp_ms;
        for (w, window) in self.windows.iter_mut().enumerate() {
            let value = event.values[layout.windows[w].0];
            if !window.add(value) {
                continue;
            }
            let first = self.first;
            let stride = layout.values;
            let slot = layout.windows[w].0;
            let at = |i: u64| self.values[(i - first) as usize * stride + slot];
            while window.max_candidates.back().is_some_and(|&i| at(i) <= value) {
                window.max_candidates.pop_back();
            }
            window.max_candidates.push_back(index);
            while window.min_candidates.back().is_some_and(|&i| at(i) >= value) {
                window.min_candidates.pop_back();
            }
            window.min_candidates.push_back(index);
        }
        for (a, running) in self.attr_windows.iter_mut().enumerate() {
            let hash = event.attrs[layout.attr_windows[a].0];
            if hash != 0 {
                *running.counts.entry(hash).or_default() += 1;
            }
        }
    }

    /// Drops the events older than `newest − 30 d` (every window starts after them).
    fn evict(&mut self, layout: &EntityLayout) {
        while self.timestamps.front().is_some_and(|&ts| ts < self.newest - RETENTION_MS) {
            self.timestamps.pop_front();
            self.values.drain(..layout.values);
            self.attrs.drain(..layout.attrs);
            self.first += 1;
        }
    }

    /// Inserts an accepted event older than the newest in timestamp order (after equal ones)
    /// and adds it to the running windows it falls in (their indices after it move up by one).
    fn insert(&mut self, layout: &EntityLayout, event: &EntityEvent) {
        if event.timestamp_ms < self.newest - RETENTION_MS {
            return;
        }
        let at = self.timestamps.partition_point(|&ts| ts <= event.timestamp_ms);
        self.timestamps.insert(at, event.timestamp_ms);
        for (k, &v) in event.values.iter().enumerate() {
            self.values.insert(at * layout.values + k, v);
        }
        for (k, &h) in event.attrs.iter().enumerate() {
            self.attrs.insert(at * layout.attrs + k, h);
        }
        let index = self.first + at as u64;
        let t = event.timestamp_ms;
        for (w, window) in self.windows.iter_mut().enumerate() {
            let (slot, length) = layout.windows[w];
            // Indices from the new event's on moved up by one.
            for i in window.max_candidates.iter_mut().chain(window.min_candidates.iter_mut()) {
                if *i >= index {
                    *i += 1;
                }
            }
            if t < self.newest - length {
                // Before the window: only its start moves.
                window.start += 1;
                continue;
            }
            let value = event.values[slot];
            if !window.add(value) {
                continue;
            }
            let (first, stride) = (self.first, layout.values);
            let at_value = |i: u64| self.values[(i - first) as usize * stride + slot];
            insert_candidate(&mut window.max_candidates, index, value, &at_value, |a, b| a > b);
            insert_candidate(&mut window.min_candidates, index, value, &at_value, |a, b| a < b);
        }
        for (a, running) in self.attr_windows.iter_mut().enumerate() {
            let (slot, length) = layout.attr_windows[a];
            if t < self.newest - length {
                running.start += 1;
            } else if event.attrs[slot] != 0 {
                *running.counts.entry(event.attrs[slot]).or_default() += 1;
            }
        }
    }
}

/// Adds the event at absolute `index` (inside the window, with `value`) to a window's
/// suffix-extremum candidates: it is one iff it beats the extremum of the events after it (the
/// first candidate after it), and it removes the candidates before it that it beats or ties.
fn insert_candidate(
    candidates: &mut VecDeque<u64>,
    index: u64,
    value: f64,
    at: &dyn Fn(u64) -> f64,
    beats: fn(f64, f64) -> bool,
) {
    let position = candidates.partition_point(|&i| i < index);
    if candidates.get(position).is_some_and(|&after| !beats(value, at(after))) {
        return;
    }
    let mut keep = position;
    while keep > 0 && !beats(at(candidates[keep - 1]), value) {
        keep -= 1;
    }
    candidates.drain(keep..position);
    candidates.insert(keep, index);
}

/// `amount / mean` of the week's amounts: 1 with no history, missing when the mean is 0 or the
/// ratio overflows (SPEC §2).
fn amount_ratio(amount: f64, count: u64, sum: f64) -> f64 {
    if count == 0 {
        return 1.0;
    }
    let ratio = amount / (sum / count as f64);
    if ratio.is_finite() {
        ratio
    } else {
        f64::NAN
    }
}

/// `new_<attr>`: missing without a value, else 1 unless the history has it.
fn new_value(own: u64, seen: bool) -> f64 {
    if own == 0 {
        f64::NAN
    } else {
        f64::from(u8::from(!seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::spec::FeatureSpec;
    use proptest::prelude::*;

    /// One event of the reference: key, time, values, attributes, accepted.
    #[derive(Clone, Debug)]
    struct Input {
        key: u8,
        ts: i64,
        values: Vec<f64>,
        attrs: Vec<u64>,
        accept: bool,
    }

    /// SPEC §2b by definition: per event, a scan of the key's whole prior history.
    fn reference(spec: &EntitySpec, value_names: &[String], attr_names: &[String], events: &[Input]) -> Vec<Vec<f64>> {
        let slot = |names: &[String], n: &str| names.iter().position(|x| x == n).unwrap();
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let prior: Vec<&Input> = events[..i].iter().filter(|p| p.accept && p.key == e.key).collect();
            let newest = prior.iter().map(|p| p.ts).max().unwrap_or(i64::MIN);
            let retained: Vec<&&Input> = prior.iter().filter(|p| p.ts >= newest.saturating_sub(RETENTION_MS)).collect();
            let within = |w: i64| retained.iter().filter(move |p| p.ts >= e.ts - w && p.ts <= e.ts).map(|p| **p);
            let mut row = Vec::new();
            for block in &spec.windows {
                let v = slot(value_names, &block.of);
                for span in &block.spans {
                    let members: Vec<&Input> = match span {
                        Span::All => prior.clone(),
                        Span::Trailing(w) => within(*w).collect(),
                    };
                    let mut all: Vec<f64> = members.iter().map(|p| p.values[v]).collect();
                    all.push(e.values[v]);
                    let present: Vec<f64> = all.iter().copied().filter(|x| !x.is_nan()).collect();
                    let n = present.len() as f64;
                    let sum: f64 = present.iter().sum();
                    let mean = sum / n;
                    for agg in &block.aggs {
                        row.push(match agg {
                            Agg::Cnt => all.len() as f64,
                            Agg::Sum => sum,
                            _ if present.is_empty() => f64::NAN,
                            Agg::Max => present.iter().copied().fold(f64::MIN, f64::max),
                            Agg::Min => present.iter().copied().fold(f64::MAX, f64::min),
                            Agg::Mean => mean,
                            Agg::Std => (present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
                        });
                    }
                }
            }
            for p in &spec.priors {
                row.push(match p {
                    Prior::SecsSincePrev => {
                        within(RETENTION_MS).map(|p| p.ts).max().map_or(-1.0, |n| (e.ts - n) as f64 / 1000.0)
                    }
                    Prior::AmountRatio => {
                        let week: Vec<f64> = within(WEEK_MS).map(|p| p.values[0]).collect();
                        if week.is_empty() {
                            1.0
                        } else {
                            let r = e.values[0] / (week.iter().sum::<f64>() / week.len() as f64);
                            if r.is_finite() {
                                r
                            } else {
                                f64::NAN
                            }
                        }
                    }
                    Prior::Distinct { attr, span_ms, .. } => {
                        let a = slot(attr_names, attr);
                        let mut seen: Vec<u64> =
                            within(*span_ms).map(|p| p.attrs[a]).chain([e.attrs[a]]).filter(|h| *h != 0).collect();
                        seen.sort_unstable();
                        seen.dedup();
                        seen.len() as f64
                    }
                    Prior::New { attr, span_ms, .. } => {
                        let a = slot(attr_names, attr);
                        if e.attrs[a] == 0 {
                            f64::NAN
                        } else {
                            f64::from(u8::from(!within(*span_ms).any(|p| p.attrs[a] == e.attrs[a])))
                        }
                    }
                });
            }
            out.push(row);
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    fn check(spec_text: &str, events: &[Input]) -> Result<(), TestCaseError> {
        let spec = FeatureSpec::parse(spec_text).unwrap();
        let entity = &spec.entities[0];
        let value_names: Vec<String> = ["amount".to_owned()].into_iter().chain(spec.window_inputs()).collect();
        let attr_names = ["userId".to_owned(), "device".to_owned()];
        let layout = EntityLayout::new(entity, &value_names, &attr_names);
        let expected = reference(entity, &value_names, &attr_names, events);
        let mut keys: HashMap<u8, KeyState> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let state = keys.entry(e.key).or_insert_with(|| KeyState::new(&layout));
            let mut got = vec![0.0; layout.width()];
            let event = EntityEvent { timestamp_ms: e.ts, values: &e.values, attrs: &e.attrs };
            state.observe(&layout, &event, e.accept, &mut got);
            for (f, name) in entity.feature_names().iter().enumerate() {
                prop_assert!(
                    close(got[f], expected[i][f]),
                    "event {i} {name}: got {} expected {}",
                    got[f],
                    expected[i][f]
                );
            }
        }
        Ok(())
    }

    const SPEC: &str = r#"
[[entity]]
name = "card"
key = ["card"]
[[window]]
entity = "card"
windows = ["10m", "1h", "24h", "all"]
aggs = ["cnt", "sum", "max", "min", "mean", "std"]
[[window]]
entity = "card"
of = "v1"
windows = ["2h"]
aggs = ["max", "min", "mean"]
[[prior]]
entity = "card"
aggs = ["secs_since_prev", "amount_ratio", "distinct:userId:1h", "new:device:30d", "distinct:device:24h"]
"#;

    /// Events of 3 keys, mostly in time order with some disorder and big jumps (eviction),
    /// missing values and attributes, and some not accepted (late or duplicate users' events).
    fn events() -> impl Strategy<Value = Vec<Input>> {
        let one = (0u8..3, -40i64..600, 0u8..20, prop::option::of(-5.0f64..5.0), 0u64..4, 0u64..3, 0u8..10);
        prop::collection::vec(one, 1..120).prop_map(|raw| {
            let mut clock = 1_700_000_000_000i64;
            raw.into_iter()
                .map(|(key, step, jump, v1, user, device, accept)| {
                    // Steps in minutes; now and then a jump of days, beyond the retention.
                    clock += step * 60_000 + if jump == 0 { 20 * 86_400_000 } else { 0 };
                    let amount = f64::from(step.rem_euclid(7) as u8) * 12.5;
                    Input {
                        key,
                        ts: clock,
                        values: vec![amount, v1.unwrap_or(f64::NAN)],
                        attrs: vec![user + 1, if device == 0 { 0 } else { device + 10 }],
                        accept: accept != 0,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn entity_features_equal_the_naive_reference(events in events()) {
            check(SPEC, &events)?;
        }
    }

    #[test]
    fn card_testing_shows_in_distinct_users() {
        let spec = "[[entity]]\nname = \"card\"\nkey = [\"card\"]\n[[prior]]\nentity = \"card\"\naggs = [\"distinct:userId:1h\"]\n";
        let events: Vec<Input> = (0..7)
            .map(|u| Input {
                key: 1,
                ts: 1_000_000 + u * 60_000,
                values: vec![1.0],
                attrs: vec![u as u64 + 1],
                accept: true,
            })
            .collect();
        check(spec, &events).unwrap();
        let spec = FeatureSpec::parse(spec).unwrap();
        let layout = EntityLayout::new(&spec.entities[0], &["amount".to_owned()], &["userId".to_owned()]);
        let mut state = KeyState::new(&layout);
        let mut out = [0.0];
        for e in &events {
            state.observe(
                &layout,
                &EntityEvent { timestamp_ms: e.ts, values: &e.values, attrs: &e.attrs },
                true,
                &mut out,
            );
        }
        assert_eq!(out[0], 7.0, "seven accounts on one card within the hour");
    }
}
