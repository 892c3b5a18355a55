//! Deterministic synthetic payment events: the built-in source of `vigil run` and the engine of
//! `vigil gen` (SPEC §1, §5; DESIGN "Data").
//!
//! The stream has to be good enough to train and evaluate the fraud model on, so users are not
//! interchangeable: each has a profile derived only from `(seed, user index)` — typical amount
//! and its dispersion, a home radius, a timezone, a usual band of local hours and a heavily
//! skewed activity weight — and injected fraud (amount spikes, far new locations, odd hours,
//! velocity bursts, account takeovers) departs from that profile in ways the SPEC §2 window
//! features can see, while benign noise (big purchases, travel, off-band hours) keeps the two
//! classes from being trivially separable. Arrivals come from a stratified main stream merged
//! with a small binary heap of scheduled fraud follow-ups, and a few events are emitted with
//! earlier timestamps (out of order within the lateness, or late) to exercise SPEC §2.
//!
//! Everything is a function of the seed: one xoshiro256** stream decides *what happens*
//! (arrival, user, fraud scheduling, delays) and is advanced identically by [`Generator::skip`]
//! and [`Generator::next_line`]; the values only needed for rendering (amount, distance,
//! timestamp form) come from a per-event SplitMix64 keyed by the event's sequence number. That
//! split is what makes `skip` cheap — a worker that owns every n-th block of events walks past
//! the others without drawing or formatting them — and guarantees the two agree.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::event::hashing::mix64;
use crate::time::epoch::TimestampUnit;
use crate::time::rfc3339::{days_from_civil, write_rfc3339_ms, DAY_MS, HOUR_MS, MAX_MS, MIN_MS};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;

/// Share of events rendered with an integer epoch-ms timestamp instead of RFC 3339, so that
/// consumers exercise both forms SPEC §1 allows.
const EPOCH_FORM_P: f64 = 0.10;
/// Share of events whose timestamp is 1 s–4 min before their arrival (out of order, within
/// the default 5 min lateness).
const OUT_OF_ORDER_P: f64 = 0.005;
/// Share of events whose timestamp is 10–90 min before their arrival (late under the default
/// lateness when the user has a newer event).
const LATE_P: f64 = 0.001;
/// Share of a normal user's events inside their usual band of local hours.
const IN_BAND_SHARE: f64 = 0.95;
/// Bound on the rejection loop that picks a user active at the current hour; after this many
/// refusals the last candidate is taken (keeps the cost bounded for odd configurations).
const MAX_PICK_TRIES: u32 = 64;
/// Event rate used in endless mode (`events == 0`): this many events per `span_ms`.
const ENDLESS_EVENTS_PER_SPAN: u64 = 1_000_000;

/// Fraud kinds, their share of *fraudulent events* and their mean events per incident; the
/// incident probabilities are derived from these so the label rate matches `fraud_rate`.
const FRAUD_EVENT_SHARE: [f64; 5] = [0.25, 0.20, 0.15, 0.20, 0.20];
/// Mean events per incident: spike, far location, odd hour, burst (5–15), takeover (1 + 2–6).
const FRAUD_EVENTS_PER_INCIDENT: [f64; 5] = [1.0, 1.0, 1.0, 10.0, 5.0];

/// Settings of a synthetic stream; every output byte is a function of these.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    /// Number of events to produce; 0 means endless.
    pub events: u64,
    /// Number of distinct users (`user_0` … `user_{users-1}`); 0 is treated as 1.
    pub users: u32,
    /// Target share of events labelled 1 (clamped to [0, 0.9]).
    pub fraud_rate: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Event time of the first arrival slot, epoch milliseconds.
    pub start_ms: i64,
    /// Event-time span covered by `events` (in endless mode the rate is
    /// 1,000,000 events per `span_ms`, i.e. the default config's rate).
    pub span_ms: i64,
    /// How `timestamp` is written.
    pub timestamp_form: TimestampForm,
    /// Adds string attributes (`card`, `device`, `ip`) with cross-entity fraud: card testing
    /// (one card used by many accounts), takeovers from a ring's shared devices and IPs. The
    /// attributes are drawn after every other value, so the events are otherwise the same.
    pub entities: bool,
}

/// How the generator writes an event's `timestamp` (SPEC §1 accepts each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampForm {
    /// RFC 3339, with a tenth of the events as integer epoch milliseconds, so consumers meet
    /// both forms.
    #[default]
    Mixed,
    Rfc3339,
    /// A number in this unit (seconds with a three-digit fraction; `Auto` is milliseconds).
    Epoch(TimestampUnit),
}

impl TimestampForm {
    /// The form named `mixed`, `rfc3339`, or a unit `s`, `ms`, `us`, `ns`.
    pub fn from_name(name: &str) -> Option<TimestampForm> {
        match name {
            "mixed" => Some(TimestampForm::Mixed),
            "rfc3339" => Some(TimestampForm::Rfc3339),
            "auto" => None,
            unit => TimestampUnit::from_name(unit).map(TimestampForm::Epoch),
        }
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            events: 1_000_000,
            users: 10_000,
            fraud_rate: 0.01,
            seed: 1,
            // 2026-01-01T00:00:00Z
            start_ms: days_from_civil(2026, 1, 1) * DAY_MS,
            span_ms: 30 * DAY_MS,
            timestamp_form: TimestampForm::Mixed,
            entities: false,
        }
    }
}

/// A deterministic, seekable-by-skipping stream of synthetic §1 events as JSON lines.
#[derive(Clone)]
pub struct Generator {
    /// `None` = endless.
    limit: Option<u64>,
    /// Events produced so far; also the next event's sequence number (its `eventId`).
    emitted: u64,
    /// The "what happens" stream, advanced identically by `skip` and `next_line`.
    rng: Xoshiro256,
    /// Key of the per-event render streams.
    render_key: u64,
    users: Vec<UserProfile>,
    picker: AliasTable,
    /// Timestamp of each user's previous event; `i64::MIN` = none yet.
    last_ts: Vec<i64>,
    /// Scheduled fraud events, earliest arrival first.
    pending: BinaryHeap<Pending>,
    /// Tie-breaker among pending events, so heap order never depends on insertion details.
    pending_order: u64,
    /// Index of the next main-stream arrival slot.
    main_index: u64,
    /// Arrival time of the next main-stream slot once drawn.
    next_main_ms: Option<i64>,
    start_ms: i64,
    timestamp_form: TimestampForm,
    entities: bool,
    /// Width of one main-stream arrival slot, ms.
    main_gap_ms: f64,
    /// Probability that a main arrival also starts a fraud incident.
    incident_p: f64,
    /// Cumulative incident-kind probabilities.
    kind_cdf: [f64; 5],
}

impl Generator {
    /// Every line of `cfg` without its newline (tests and small tools; the job streams instead).
    pub fn lines(cfg: GeneratorConfig) -> Vec<Vec<u8>> {
        let mut generator = Generator::new(cfg);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while generator.next_line(&mut line) {
            line.pop();
            lines.push(std::mem::take(&mut line));
        }
        lines
    }

    /// Builds the user profiles and the activity sampler (O(users)); no I/O, cannot fail.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let n_users = cfg.users.max(1);
        let profile_key = mix64(cfg.seed ^ 0x005E_ED0F_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut users = Vec::with_capacity(n_users as usize);
        let mut weights = Vec::with_capacity(n_users as usize);
        for idx in 0..n_users {
            let (profile, weight) = UserProfile::derive(profile_key, idx);
            users.push(profile);
            weights.push(weight);
        }
        let picker = AliasTable::new(&weights);

        let fraud_rate = if cfg.fraud_rate.is_finite() { cfg.fraud_rate.clamp(0.0, 0.9) } else { 0.0 };
        // Incident probabilities proportional to share / events-per-incident, so each kind's
        // share of fraudulent *events* is FRAUD_EVENT_SHARE.
        let mut incident_w = [0.0; 5];
        for (w, (share, per)) in
            incident_w.iter_mut().zip(FRAUD_EVENT_SHARE.iter().zip(FRAUD_EVENTS_PER_INCIDENT.iter()))
        {
            *w = share / per;
        }
        let total_w: f64 = incident_w.iter().sum();
        let mut kind_cdf = [0.0; 5];
        let mut acc = 0.0;
        let mut events_per_incident = 0.0;
        for (i, w) in incident_w.iter().enumerate() {
            acc += w / total_w;
            kind_cdf[i] = acc;
            events_per_incident += w / total_w * FRAUD_EVENTS_PER_INCIDENT[i];
        }
        kind_cdf[4] = 1.0;
        // Every fraud event is an extra event scheduled next to a normal main arrival, so per
        // main arrival there are q·E fraud events and 1 normal one: q·E / (1 + q·E) = rate.
        let incident_p = fraud_rate / (events_per_incident * (1.0 - fraud_rate));
        let events_for_rate = if cfg.events == 0 { ENDLESS_EVENTS_PER_SPAN } else { cfg.events };
        let main_gap_ms = cfg.span_ms.max(0) as f64 / events_for_rate as f64 * (1.0 + incident_p * events_per_incident);

        Generator {
            limit: if cfg.events == 0 { None } else { Some(cfg.events) },
            emitted: 0,
            rng: Xoshiro256::from_seed(cfg.seed),
            render_key: mix64(cfg.seed ^ 0xD1CE_D1CE_D1CE_D1CE),
            last_ts: vec![i64::MIN; users.len()],
            users,
            picker,
            pending: BinaryHeap::new(),
            pending_order: 0,
            main_index: 0,
            next_main_ms: None,
            start_ms: cfg.start_ms,
            timestamp_form: cfg.timestamp_form,
            entities: cfg.entities,
            main_gap_ms,
            incident_p,
            kind_cdf,
        }
    }

    /// Appends the next event as one JSON line (with trailing '\n') to `out`; returns false
    /// when `events` are exhausted.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        match self.advance() {
            Some(planned) => {
                self.render(&planned, out);
                true
            }
            None => false,
        }
    }

    /// Like [`Generator::next_line`], and also sets `key` to the event's userId (the Kafka
    /// message key).
    pub fn next_keyed_line(&mut self, out: &mut Vec<u8>, key: &mut Vec<u8>) -> bool {
        match self.advance() {
            Some(planned) => {
                self.render(&planned, out);
                key.clear();
                write_user_id(key, planned.user);
                true
            }
            None => false,
        }
    }

    /// Advances past the next event without rendering it: only the decision stream is
    /// drawn, so it costs a fraction of `next_line`. Returns false when exhausted.
    pub fn skip(&mut self) -> bool {
        self.advance().is_some()
    }

    /// Decides the next event: which arrival (main slot or scheduled fraud), which user, its
    /// timestamp and kind. Updates all state that later events depend on, and nothing else.
    fn advance(&mut self) -> Option<Planned> {
        if let Some(limit) = self.limit {
            if self.emitted >= limit {
                return None;
            }
        }
        let next_main = match self.next_main_ms {
            Some(t) => t,
            None => {
                let slot = self.main_index as f64 + self.rng.f64();
                let t = self.start_ms.saturating_add((slot * self.main_gap_ms) as i64);
                self.next_main_ms = Some(t);
                t
            }
        };
        let from_pending = match self.pending.peek() {
            Some(p) => p.arrival_ms <= next_main,
            None => false,
        };
        let popped = if from_pending { self.pending.pop() } else { None };
        let (user, arrival, kind) = match popped {
            Some(p) => (p.user, p.arrival_ms, p.kind),
            None => {
                self.main_index += 1;
                self.next_main_ms = None;
                if self.rng.f64() < self.incident_p {
                    self.schedule_incident(next_main);
                }
                let user = self.pick_active_user(next_main);
                (user, next_main, Kind::Normal)
            }
        };

        let d = self.rng.f64();
        let (ts_ms, delay) = if d < LATE_P {
            let back = self.rng.range_i64(10 * MINUTE_MS, 90 * MINUTE_MS);
            (arrival.saturating_sub(back), Delay::Late)
        } else if d < LATE_P + OUT_OF_ORDER_P {
            let back = self.rng.range_i64(SECOND_MS, 4 * MINUTE_MS);
            (arrival.saturating_sub(back), Delay::OutOfOrder)
        } else {
            (arrival, Delay::None)
        };

        let slot = &mut self.last_ts[user as usize];
        let prev_ts_ms = if *slot == i64::MIN { None } else { Some(*slot) };
        *slot = ts_ms;
        let seq = self.emitted;
        self.emitted += 1;
        Some(Planned { seq, user, ts_ms, prev_ts_ms, kind, delay })
    }

    /// Picks a user by activity weight, rejecting (with the user's own probability) those
    /// for whom `at_ms` is outside their usual local hours, so ≈95 % of a normal user's
    /// events fall inside their band.
    fn pick_active_user(&mut self, at_ms: i64) -> u32 {
        let utc_hour = at_ms.div_euclid(HOUR_MS).rem_euclid(24) as i32;
        let mut user = 0;
        for _ in 0..MAX_PICK_TRIES {
            user = self.picker.sample(&mut self.rng);
            let p = &self.users[user as usize];
            let local = (utc_hour + p.tz_hours).rem_euclid(24) as u32;
            if (p.band_mask >> local) & 1 == 1 || self.rng.f64() < p.p_out {
                return user;
            }
        }
        user
    }

    /// Starts one fraud incident at main arrival `t`: its events go to the pending heap at
    /// arrival times ≥ `t`, so the merged stream stays in arrival order.
    fn schedule_incident(&mut self, t: i64) {
        let u = self.rng.f64();
        let kind = self.kind_cdf.iter().position(|&c| u < c).unwrap_or(4);
        let user = self.picker.sample(&mut self.rng);
        let at = t + self.rng.range_i64(0, 10 * MINUTE_MS);
        match kind {
            0 => self.push_pending(at, user, Kind::Spike),
            1 => self.push_pending(at, user, Kind::FarLocation),
            2 => {
                let at = self.odd_hour_time(user, t);
                self.push_pending(at, user, Kind::OddHour);
            }
            3 => {
                let n = 5 + self.rng.below(11);
                let centre_km = self.rng.log_uniform(40.0, 400.0);
                let mut at = at;
                for _ in 0..n {
                    self.push_pending(at, user, Kind::Burst { centre_km });
                    at += self.rng.range_i64(5 * SECOND_MS, 40 * SECOND_MS);
                }
            }
            _ => {
                let far_km = self.rng.log_uniform(500.0, 8000.0);
                self.push_pending(at, user, Kind::AtoProbe { far_km });
                let charges = 2 + self.rng.below(5);
                let mut at = at;
                for _ in 0..charges {
                    at += self.rng.range_i64(MINUTE_MS, 10 * MINUTE_MS);
                    self.push_pending(at, user, Kind::AtoCharge { far_km });
                }
            }
        }
    }

    /// The first instant after `t` (+1 min) at which it is a clearly unusual local hour for
    /// `user`: 1–5 am when that is away from the user's band, else the hour opposite the band.
    fn odd_hour_time(&mut self, user: u32, t: i64) -> i64 {
        let p = &self.users[user as usize];
        let (tz, mask, quiet) = (p.tz_hours, p.band_mask, p.quiet_hour);
        let mut local = 1 + self.rng.below(5) as i32;
        let near_band = (-1..=1).any(|d| (mask >> (local + d).rem_euclid(24)) & 1 == 1);
        if near_band {
            local = quiet;
        }
        let target_utc = i64::from((local - tz).rem_euclid(24));
        let base = t + MINUTE_MS;
        let hour_index = base.div_euclid(HOUR_MS);
        let delta = (target_utc - hour_index.rem_euclid(24)).rem_euclid(24);
        let mut at = (hour_index + delta) * HOUR_MS + self.rng.range_i64(0, HOUR_MS);
        if at < base {
            at += DAY_MS;
        }
        at
    }

    fn push_pending(&mut self, arrival_ms: i64, user: u32, kind: Kind) {
        self.pending.push(Pending { arrival_ms, order: self.pending_order, user, kind });
        self.pending_order += 1;
    }

    /// Draws the render-only values from the event's own stream and writes the JSON line.
    fn render(&self, p: &Planned, out: &mut Vec<u8>) {
        let prof = &self.users[p.user as usize];
        let mut r = SplitMix64(mix64(self.render_key ^ p.seq));
        // Drawn whatever the form, so the form changes no other value of the event.
        let epoch_when_mixed = r.f64() < EPOCH_FORM_P;
        let form = match self.timestamp_form {
            TimestampForm::Mixed if epoch_when_mixed => TimestampForm::Epoch(TimestampUnit::Millis),
            TimestampForm::Mixed => TimestampForm::Rfc3339,
            other => other,
        };
        let (amount, distance_km) = match p.kind {
            Kind::Normal => {
                let mut amount = prof.typical * (prof.sigma * r.normal()).exp();
                if r.f64() < 0.015 {
                    // Benign big purchase.
                    amount *= r.range(3.0, 6.0);
                }
                (amount, prof.normal_distance(&mut r))
            }
            Kind::Spike => (prof.typical * r.log_uniform(6.0, 30.0), prof.normal_distance(&mut r)),
            Kind::FarLocation => (prof.typical * r.range(1.5, 5.0), r.log_uniform(300.0, 8000.0)),
            Kind::OddHour => (prof.typical * r.range(3.0, 12.0), prof.normal_distance(&mut r)),
            Kind::Burst { centre_km } => (prof.typical * r.range(1.0, 4.0), centre_km + r.range(0.0, 2.0)),
            Kind::AtoProbe { far_km } => (r.range(0.5, 3.0), far_km),
            Kind::AtoCharge { far_km } => {
                (prof.typical * r.log_uniform(4.0, 15.0), (far_km + r.range(-3.0, 3.0)).max(0.0))
            }
        };
        let cents = (amount * 100.0).round().clamp(1.0, 1e15) as i64;
        let hour = (p.ts_ms.div_euclid(HOUR_MS) + i64::from(prof.tz_hours)).rem_euclid(24);

        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"eventId\":\"evt-");
        out.extend_from_slice(num.format(p.seq).as_bytes());
        out.extend_from_slice(b"\",\"timestamp\":");
        write_timestamp(out, p.ts_ms, form);
        out.extend_from_slice(b",\"userId\":\"");
        write_user_id(out, p.user);
        out.extend_from_slice(b"\",\"value\":");
        write_cents(out, cents);
        out.extend_from_slice(b",\"features\":{\"amount\":");
        write_cents(out, cents);
        out.extend_from_slice(b",\"hour_of_day\":");
        out.extend_from_slice(num.format(hour).as_bytes());
        out.extend_from_slice(b",\"location_distance\":");
        write_fixed(out, distance_km, 2);
        if let Some(prev) = p.prev_ts_ms {
            let days = p.ts_ms.saturating_sub(prev).max(0) as f64 / DAY_MS as f64;
            out.extend_from_slice(b",\"days_since_last_txn\":");
            write_fixed(out, days, 4);
        }
        if self.entities {
            write_attributes(out, p, &mut r);
        }
        out.extend_from_slice(if p.kind == Kind::Normal { b"},\"label\":0}\n" } else { b"},\"label\":1}\n" });
    }
}

/// Cards tested by fraudsters, devices and IPs of takeover rings: small pools, so one of them
/// shows up on many accounts.
const TESTED_CARDS: u64 = 40;
const RING_DEVICES: u64 = 15;
const RING_IPS: u64 = 8;

/// Appends `card`, `device` and `ip` (SPEC §1 attributes). Normal events use the user's own
/// card, the household's device (two users) and the neighbourhood's IP (eight users, a NAT).
/// A velocity burst is card testing: its events share one card from a small pool of stolen
/// cards, used across the bursts of many accounts. A takeover's probe and charges come from one
/// of a ring's few devices and IPs; a far-location fraud from one of the ring's IPs.
fn write_attributes(out: &mut Vec<u8>, p: &Planned, r: &mut SplitMix64) {
    let user = u64::from(p.user);
    let (own_card, household, neighbourhood) = (("c", user), ("d", user / 2), ("ip", user / 8));
    let [card, device, ip] = match p.kind {
        Kind::Burst { centre_km } => [("tc", (centre_km * 1e3) as u64 % TESTED_CARDS), household, neighbourhood],
        Kind::AtoProbe { far_km } | Kind::AtoCharge { far_km } => {
            let ring = (far_km * 1e3) as u64;
            [own_card, ("rd", ring % RING_DEVICES), ("rip", ring % RING_IPS)]
        }
        Kind::FarLocation => [own_card, household, ("rip", (r.f64() * RING_IPS as f64) as u64)],
        Kind::Normal | Kind::Spike | Kind::OddHour => [own_card, household, neighbourhood],
    };
    let mut num = itoa::Buffer::new();
    for (name, (prefix, id)) in [("card", card), ("device", device), ("ip", ip)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":\"");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(num.format(id).as_bytes());
        out.push(b'"');
    }
}

/// What one event is, decided by [`Generator::advance`].
/// Appends the userId of user number `user`.
fn write_user_id(out: &mut Vec<u8>, user: u32) {
    out.extend_from_slice(b"user_");
    out.extend_from_slice(itoa::Buffer::new().format(user).as_bytes());
}

#[derive(Clone, Copy, Debug)]
struct Planned {
    seq: u64,
    user: u32,
    ts_ms: i64,
    prev_ts_ms: Option<i64>,
    kind: Kind,
    // Only read by the tests, which check that per-user order breaks exactly at these.
    #[cfg_attr(not(test), allow(dead_code))]
    delay: Delay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delay {
    None,
    OutOfOrder,
    Late,
}

/// Normal events and the fraud kinds (all but `Normal` are labelled 1). Multi-event kinds
/// carry the location shared by their events.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Normal,
    Spike,
    FarLocation,
    OddHour,
    Burst { centre_km: f64 },
    AtoProbe { far_km: f64 },
    AtoCharge { far_km: f64 },
}

/// A scheduled fraud event; ordered so that `BinaryHeap` pops the earliest arrival first.
#[derive(Clone, Copy, Debug)]
struct Pending {
    arrival_ms: i64,
    order: u64,
    user: u32,
    kind: Kind,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the max-heap's top is the earliest (arrival, order).
        (other.arrival_ms, other.order).cmp(&(self.arrival_ms, self.order))
    }
}

/// A user's habits; fraud is a departure from them.
#[derive(Clone, Debug)]
struct UserProfile {
    /// Median amount of a normal purchase.
    typical: f64,
    /// Log-space dispersion of normal amounts.
    sigma: f64,
    /// Radius around home within which most purchases happen, km.
    radius_km: f64,
    /// Local hour = UTC hour + this (mod 24).
    tz_hours: i32,
    /// Bit h set ⇔ local hour h is in the usual band.
    band_mask: u32,
    /// Acceptance probability of an off-band arrival, set so ≈95 % of events are in band.
    p_out: f64,
    /// Local hour opposite the band's centre: the most unusual hour for this user.
    quiet_hour: i32,
}

impl UserProfile {
    /// Profile and activity weight of user `idx`, a function of `(key, idx)` only, so a user
    /// is the same whatever `users` is.
    fn derive(key: u64, idx: u32) -> (UserProfile, f64) {
        let mut r = SplitMix64(mix64(key ^ u64::from(idx)));
        let typical = (40.0f64.ln() + r.normal()).exp().clamp(2.0, 5000.0);
        let sigma = r.range(0.2, 0.6);
        let radius_km = r.range(3.0, 15.0);
        let tz_hours = r.below(18) as i32 - 8;
        let centre = r.range(8.0, 20.0);
        let half_width = r.range(8.0, 14.0) / 2.0;
        let mut band_mask = 0u32;
        for h in 0..24u32 {
            let d = (f64::from(h) + 0.5 - centre).abs();
            if d.min(24.0 - d) <= half_width {
                band_mask |= 1 << h;
            }
        }
        let w = f64::from(band_mask.count_ones());
        let p_out = if w >= 24.0 { 1.0 } else { (1.0 - IN_BAND_SHARE) / IN_BAND_SHARE * w / (24.0 - w) };
        let quiet_hour = ((centre + 12.0) as i32).rem_euclid(24);
        // Log-normal activity, capped: a few users very active, many rarely.
        let weight = (1.4 * r.normal()).exp().min(60.0);
        (UserProfile { typical, sigma, radius_km, tz_hours, band_mask, p_out, quiet_hour }, weight)
    }

    /// Distance of a normal purchase: mostly within the home radius, sometimes up to ~40 km,
    /// rarely benign travel of 50–400 km.
    fn normal_distance(&self, r: &mut SplitMix64) -> f64 {
        let u = r.f64();
        if u < 0.005 {
            r.log_uniform(50.0, 400.0)
        } else if u < 0.04 {
            (self.radius_km * r.range(1.0, 2.7)).min(40.0)
        } else {
            self.radius_km * r.f64().sqrt()
        }
    }
}

/// Walker/Vose alias table: O(1) weighted choice of a user.
#[derive(Clone, Debug)]
struct AliasTable {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl AliasTable {
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let sum: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
        let mut scaled: Vec<f64> = weights
            .iter()
            .map(|&w| {
                if sum > 0.0 && w.is_finite() && w > 0.0 {
                    w * n as f64 / sum
                } else if sum > 0.0 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut small: Vec<u32> = Vec::new();
        let mut large: Vec<u32> = Vec::new();
        for (i, &s) in scaled.iter().enumerate() {
            if s < 1.0 {
                small.push(i as u32);
            } else {
                large.push(i as u32);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            prob[s as usize] = scaled[s as usize];
            alias[s as usize] = l;
            scaled[l as usize] += scaled[s as usize] - 1.0;
            if scaled[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (rounding) keep prob 1 and alias to themselves.
        AliasTable { prob, alias }
    }

    fn sample(&self, rng: &mut impl Rng) -> u32 {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.f64() < self.prob[i] {
            i as u32
        } else {
            self.alias[i]
        }
    }
}

/// The few draws the generator needs, on top of a 64-bit source.
trait Rng {
    fn next_u64(&mut self) -> u64;

    /// Uniform in [0, 1) with 53 random bits.
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Uniform in [0, n) (multiply-shift; the bias is below 2⁻³² for our n). n = 0 gives 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform integer in [lo, hi); lo when the range is empty.
    fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo) as u64) as i64
        }
    }
    /// Log-uniform in [lo, hi): scale-free spread for multipliers and distances.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo * (hi / lo).powf(self.f64())
    }
    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]: ln is finite
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// SplitMix64: tiny and good enough for the short per-user and per-event streams.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// xoshiro256**: the long decision stream.
#[derive(Clone, Debug)]
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn from_seed(seed: u64) -> Self {
        let mut sm = SplitMix64(seed);
        let mut s = [0u64; 4];
        for x in s.iter_mut() {
            *x = sm.next_u64();
        }
        if s == [0; 4] {
            // The all-zero state is a fixed point; any other state is fine.
            s[0] = 1;
        }
        Xoshiro256 { s }
    }
}

impl Rng for Xoshiro256 {
    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }
}

/// Writes `ms` in `form`: a quoted `YYYY-MM-DDTHH:MM:SS.mmmZ` (bare epoch ms when the year has
/// no four-digit form), or a number in the form's unit.
fn write_timestamp(out: &mut Vec<u8>, ms: i64, form: TimestampForm) {
    let mut digits = itoa::Buffer::new();
    let unit = match form {
        TimestampForm::Epoch(unit) => unit,
        _ if !(MIN_MS..=MAX_MS).contains(&ms) => TimestampUnit::Millis,
        _ => {
            out.push(b'"');
            write_rfc3339_ms(ms, out);
            out.push(b'"');
            return;
        }
    };
    match unit {
        TimestampUnit::Seconds => {
            if ms < 0 {
                out.push(b'-');
            }
            out.extend_from_slice(digits.format(ms.unsigned_abs() / 1000).as_bytes());
            let millis = ms.unsigned_abs() % 1000;
            out.extend_from_slice(&[
                b'.',
                b'0' + (millis / 100) as u8,
                b'0' + (millis / 10 % 10) as u8,
                b'0' + (millis % 10) as u8,
            ]);
        }
        TimestampUnit::Micros => out.extend_from_slice(digits.format(i128::from(ms) * 1000).as_bytes()),
        TimestampUnit::Nanos => out.extend_from_slice(digits.format(i128::from(ms) * 1_000_000).as_bytes()),
        TimestampUnit::Auto | TimestampUnit::Millis => out.extend_from_slice(digits.format(ms).as_bytes()),
    }
}

/// Writes an amount given in cents as `units.cc` — exact, unlike printing a rounded f64.
fn write_cents(out: &mut Vec<u8>, cents: i64) {
    write_scaled(out, cents, 2);
}

/// Writes `value` rounded to `decimals` places in fixed-point notation.
fn write_fixed(out: &mut Vec<u8>, value: f64, decimals: u32) {
    let scaled = (value * 10f64.powi(decimals as i32)).round();
    let scaled = if scaled.is_finite() { scaled as i64 } else { 0 };
    write_scaled(out, scaled, decimals);
}

fn write_scaled(out: &mut Vec<u8>, scaled: i64, decimals: u32) {
    let scale = 10u64.pow(decimals);
    if scaled < 0 {
        out.push(b'-');
    }
    let mag = scaled.unsigned_abs();
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(mag / scale).as_bytes());
    out.push(b'.');
    let frac = num.format(mag % scale).as_bytes();
    for _ in frac.len()..decimals as usize {
        out.push(b'0');
    }
    out.extend_from_slice(frac);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(events: u64, seed: u64) -> GeneratorConfig {
        GeneratorConfig { events, seed, ..GeneratorConfig::default() }
    }

    fn render_all(cfg: GeneratorConfig) -> Vec<u8> {
        let mut g = Generator::new(cfg);
        let mut out = Vec::new();
        while g.next_line(&mut out) {}
        out
    }

    fn parse_ts(v: &serde_json::Value) -> i64 {
        if let Some(ms) = v.as_i64() {
            return ms;
        }
        let s = v.as_str().expect("timestamp is a string or an integer");
        let b = s.as_bytes();
        assert_eq!(b.len(), 24, "{s}");
        let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().expect("digits");
        let days = days_from_civil(num(0..4), num(5..7) as u32, num(8..10) as u32);
        assert_eq!((b[4], b[7], b[10], b[13], b[16], b[19], b[23]), (b'-', b'-', b'T', b':', b':', b'.', b'Z'));
        days * DAY_MS + num(11..13) * HOUR_MS + num(14..16) * MINUTE_MS + num(17..19) * SECOND_MS + num(20..23)
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different() {
        let a = render_all(cfg(20_000, 7));
        let b = render_all(cfg(20_000, 7));
        let c = render_all(cfg(20_000, 8));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn event_count_is_exact_and_endless_keeps_going() {
        for n in [0u64, 1, 2, 17, 12_345] {
            if n == 0 {
                continue;
            }
            let out = render_all(cfg(n, 3));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count() as u64, n);
            let mut g = Generator::new(cfg(n, 3));
            let mut k = 0;
            while g.skip() {
                k += 1;
            }
            assert_eq!(k, n);
            assert!(!g.skip());
        }
        let mut g = Generator::new(cfg(0, 3));
        let mut out = Vec::new();
        for _ in 0..50_000 {
            assert!(g.next_line(&mut out));
        }
    }

    #[test]
    fn lines_follow_spec_schema() {
        let out = render_all(cfg(30_000, 11));
        let mut ids = std::collections::BTreeSet::new();
        let mut seen_user = std::collections::BTreeSet::new();
        let g = Generator::new(cfg(30_000, 11));
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
            let o = v.as_object().expect("object");
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            let mut want = vec!["eventId", "timestamp", "userId", "value", "features", "label"];
            want.sort();
            let mut got = keys.clone();
            got.sort();
            assert_eq!(got, want);
            let id = o["eventId"].as_str().expect("eventId string");
            assert!(id.starts_with("evt-"));
            assert!(ids.insert(id.to_string()), "duplicate {id}");
            let ts = parse_ts(&o["timestamp"]);
            let user = o["userId"].as_str().expect("userId string");
            let idx: usize = user.strip_prefix("user_").expect("user_ prefix").parse().expect("index");
            assert!(idx < 10_000);
            let label = o["label"].as_u64().expect("label integer");
            assert!(label <= 1);
            let f = o["features"].as_object().expect("features object");
            let amount = f["amount"].as_f64().expect("amount number");
            assert!(amount > 0.0 && amount.is_finite());
            assert_eq!(o["value"].as_f64(), Some(amount));
            assert!(((amount * 100.0).round() - amount * 100.0).abs() < 1e-6, "cents");
            let hour = f["hour_of_day"].as_u64().expect("hour integer");
            let tz = i64::from(g.users[idx].tz_hours);
            assert_eq!(hour as i64, (ts.div_euclid(HOUR_MS) + tz).rem_euclid(24));
            let dist = f["location_distance"].as_f64().expect("distance number");
            assert!((0.0..=10_000.0).contains(&dist));
            let first = seen_user.insert(idx);
            match f.get("days_since_last_txn") {
                None => assert!(first, "only a user's first event lacks days_since_last_txn"),
                Some(d) => {
                    assert!(!first);
                    assert!(d.as_f64().expect("days number") >= 0.0);
                }
            }
            let mut fk: Vec<&str> = f.keys().map(String::as_str).collect();
            fk.retain(|k| !["amount", "hour_of_day", "location_distance", "days_since_last_txn"].contains(k));
            assert!(fk.is_empty(), "unexpected feature keys {fk:?}");
        }
        assert_eq!(ids.len(), 30_000);
    }

    #[test]
    fn both_timestamp_forms_present() {
        let out = render_all(cfg(5_000, 5));
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let epoch = lines
            .iter()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).expect("json");
                v["timestamp"].is_i64()
            })
            .count();
        let frac = epoch as f64 / lines.len() as f64;
        assert!((0.07..0.13).contains(&frac), "epoch form share {frac}");
    }

    /// Each line's `timestamp` value as raw JSON text, and the line with that value cut out.
    fn timestamp_texts(form: TimestampForm) -> Vec<(String, String)> {
        let out = render_all(GeneratorConfig { timestamp_form: form, ..cfg(2_000, 3) });
        let lines = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|line| {
            #[derive(serde::Deserialize)]
            struct Line<'a> {
                #[serde(borrow)]
                timestamp: &'a serde_json::value::RawValue,
            }
            let text = std::str::from_utf8(line).expect("utf-8");
            let timestamp = serde_json::from_str::<Line>(text).expect("json").timestamp.get().to_owned();
            let rest = text.replacen(&timestamp, "", 1);
            (timestamp, rest)
        });
        lines.collect()
    }

    #[test]
    fn every_timestamp_form_reads_back_as_the_same_instant_and_changes_nothing_else() {
        let rfc3339 = timestamp_texts(TimestampForm::Rfc3339);
        assert!(rfc3339.iter().all(|(t, _)| t.starts_with('"')));
        let read = |(t, _): &(String, String)| {
            crate::event::parse::event_time(t, TimestampUnit::Auto).expect("valid").expect("present")
        };
        let instants: Vec<i64> = rfc3339.iter().map(read).collect();
        let rest = |lines: &[(String, String)]| lines.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>();
        for name in ["s", "ms", "us", "ns", "mixed"] {
            let lines = timestamp_texts(TimestampForm::from_name(name).expect("a form"));
            if name != "mixed" {
                assert!(lines.iter().all(|(t, _)| !t.starts_with('"')), "{name}: numbers only");
            }
            assert_eq!(lines.iter().map(read).collect::<Vec<_>>(), instants, "{name}");
            assert_eq!(rest(&lines), rest(&rfc3339), "{name}: only the timestamp differs");
        }
        assert_eq!(TimestampForm::from_name("auto"), None);
    }

    #[test]
    fn per_user_order_breaks_only_at_delayed_events() {
        let n = 200_000u64;
        let mut g = Generator::new(cfg(n, 21));
        let mut newest: BTreeMap<u32, i64> = BTreeMap::new();
        let (mut late, mut ooo, mut global_back) = (0u64, 0u64, 0u64);
        let mut global_max = i64::MIN;
        let mut prev_arrival_ok = i64::MIN;
        while let Some(p) = g.advance() {
            let entry = newest.entry(p.user).or_insert(i64::MIN);
            match p.delay {
                Delay::None => {
                    assert!(p.ts_ms >= *entry, "non-delayed event went back in time for its user");
                    assert!(p.ts_ms >= prev_arrival_ok, "arrivals must be non-decreasing");
                    prev_arrival_ok = p.ts_ms;
                }
                Delay::OutOfOrder => ooo += 1,
                Delay::Late => late += 1,
            }
            if p.ts_ms < global_max {
                global_back += 1;
            }
            global_max = global_max.max(p.ts_ms);
            *entry = (*entry).max(p.ts_ms);
        }
        let (e_ooo, e_late) = (n as f64 * OUT_OF_ORDER_P, n as f64 * LATE_P);
        assert!((ooo as f64 - e_ooo).abs() < 0.3 * e_ooo, "out-of-order {ooo} vs {e_ooo}");
        assert!((late as f64 - e_late).abs() < 0.3 * e_late, "late {late} vs {e_late}");
        // Nearly every delayed event shows up out of order in the file.
        assert!(global_back <= ooo + late && global_back as f64 > 0.8 * (ooo + late) as f64);
        // Time span: the main stream covers [start, start + span].
        let d = GeneratorConfig::default();
        assert!(global_max <= d.start_ms + d.span_ms + DAY_MS);
        assert!(global_max >= d.start_ms + d.span_ms - DAY_MS);
    }

    #[test]
    fn fraud_fraction_tracks_rate() {
        for rate in [0.01, 0.05] {
            let c = GeneratorConfig { events: 200_000, fraud_rate: rate, seed: 99, ..GeneratorConfig::default() };
            let out = render_all(c);
            let frauds = out.windows(10).filter(|w| w == b"\"label\":1}").count();
            let frac = frauds as f64 / 200_000.0;
            assert!((frac - rate).abs() < 0.3 * rate, "rate {rate}: got {frac}");
        }
        let none = render_all(GeneratorConfig { events: 20_000, fraud_rate: 0.0, ..GeneratorConfig::default() });
        assert_eq!(none.windows(10).filter(|w| w == b"\"label\":1}").count(), 0);
    }

    #[test]
    fn all_fraud_kinds_occur_and_normal_users_keep_to_their_hours() {
        let mut g = Generator::new(cfg(200_000, 4));
        let mut kinds = [0u64; 7];
        let (mut normal, mut in_band) = (0u64, 0u64);
        while let Some(p) = g.advance() {
            let k = match p.kind {
                Kind::Normal => 0,
                Kind::Spike => 1,
                Kind::FarLocation => 2,
                Kind::OddHour => 3,
                Kind::Burst { .. } => 4,
                Kind::AtoProbe { .. } => 5,
                Kind::AtoCharge { .. } => 6,
            };
            kinds[k] += 1;
            let prof = &g.users[p.user as usize];
            let local = (p.ts_ms.div_euclid(HOUR_MS) + i64::from(prof.tz_hours)).rem_euclid(24);
            let inside = (prof.band_mask >> local) & 1 == 1;
            if p.kind == Kind::Normal {
                normal += 1;
                in_band += u64::from(inside);
            }
            if p.kind == Kind::OddHour {
                assert!(!inside, "odd-hour fraud inside the user's band");
            }
        }
        assert!(kinds.iter().all(|&k| k > 0), "{kinds:?}");
        let share = in_band as f64 / normal as f64;
        assert!((0.93..0.97).contains(&share), "in-band share {share}");
    }

    #[test]
    fn skip_advances_exactly_like_next_line() {
        let n = 30_000u64;
        let mut full = Generator::new(cfg(n, 13));
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        while full.next_line(&mut buf) {
            lines.push(std::mem::take(&mut buf));
        }
        assert_eq!(lines.len() as u64, n);
        let mut half = Generator::new(cfg(n, 13));
        let mut i = 0usize;
        loop {
            let more = if i.is_multiple_of(2) {
                buf.clear();
                let more = half.next_line(&mut buf);
                if more {
                    assert_eq!(buf, lines[i], "event {i}");
                }
                more
            } else {
                half.skip()
            };
            if !more {
                break;
            }
            i += 1;
        }
        assert_eq!(i as u64, n);
        // Blocks of a worker out of three, as a multi-worker source would do.
        let mut w = Generator::new(cfg(n, 13));
        for (j, line) in lines.iter().enumerate() {
            if (j / 1000) % 3 == 1 {
                buf.clear();
                assert!(w.next_line(&mut buf));
                assert_eq!(&buf, line);
            } else {
                assert!(w.skip());
            }
        }
    }

    #[test]
    fn date_conversion_matches_known_instants() {
        let fmt = |ms: i64| {
            let mut v = Vec::new();
            write_timestamp(&mut v, ms, TimestampForm::Rfc3339);
            String::from_utf8(v).expect("ascii")
        };
        assert_eq!(fmt(0), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(fmt(1_709_251_199_999), "\"2024-02-29T23:59:59.999Z\"");
        assert_eq!(fmt(1_767_225_600_000), "\"2026-01-01T00:00:00.000Z\"");
        assert_eq!(fmt(951_782_400_000), "\"2000-02-29T00:00:00.000Z\"");
        assert_eq!(fmt(-1), "\"1969-12-31T23:59:59.999Z\"");
        assert_eq!(fmt(MIN_MS), "\"0000-01-01T00:00:00.000Z\"");
        assert_eq!(fmt(MAX_MS), "\"9999-12-31T23:59:59.999Z\"");
        assert_eq!(fmt(MAX_MS + 1), "253402300800000");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29) * DAY_MS + DAY_MS - 1, 1_709_251_199_999);
        assert_eq!(GeneratorConfig::default().start_ms, 1_767_225_600_000);
        let mut v = Vec::new();
        write_timestamp(&mut v, 1_709_251_199_999, TimestampForm::Epoch(TimestampUnit::Millis));
        assert_eq!(v, b"1709251199999");
        for (unit, text) in [
            (TimestampUnit::Seconds, "-1.005"),
            (TimestampUnit::Millis, "-1005"),
            (TimestampUnit::Micros, "-1005000"),
            (TimestampUnit::Nanos, "-1005000000"),
        ] {
            v.clear();
            write_timestamp(&mut v, -1005, TimestampForm::Epoch(unit));
            assert_eq!(v, text.as_bytes(), "{unit:?}");
        }
    }

    #[test]
    fn fixed_point_writer() {
        let w = |x: f64, d: u32| {
            let mut v = Vec::new();
            write_fixed(&mut v, x, d);
            String::from_utf8(v).expect("ascii")
        };
        assert_eq!(w(150.25, 2), "150.25");
        assert_eq!(w(5.0, 2), "5.00");
        assert_eq!(w(0.05, 2), "0.05");
        assert_eq!(w(2.1, 4), "2.1000");
        assert_eq!(w(0.00004, 4), "0.0000");
        assert_eq!(w(-1.5, 1), "-1.5");
    }

    /// Release-mode throughput: `cargo test --release -p operators --lib generator -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let n = 1_000_000u64;
        let mut g = Generator::new(cfg(n, 1));
        // Reused buffer drained every ~1 MiB, as a file or Kafka sink would.
        let mut out = Vec::with_capacity(2 << 20);
        let mut bytes = 0usize;
        let t0 = std::time::Instant::now();
        while g.next_line(&mut out) {
            if out.len() > 1 << 20 {
                bytes += out.len();
                out.clear();
            }
        }
        bytes += out.len();
        let render = t0.elapsed();
        let mut g = Generator::new(cfg(n, 1));
        let t1 = std::time::Instant::now();
        while g.skip() {}
        let skip = t1.elapsed();
        println!(
            "render: {n} events in {render:?} ({:.0} ev/s, {} bytes); skip: {skip:?} ({:.0} ev/s)",
            n as f64 / render.as_secs_f64(),
            bytes,
            n as f64 / skip.as_secs_f64()
        );
    }
}
