//! The containers that cross operator boundaries.
//!
//! Events travel in batches with one text arena each, so a batch of thousands of events costs
//! a handful of allocations instead of several per event; timely moves a batch between
//! workers of one process without copying and serialises it (serde + bincode) between
//! processes. A batch is addressed to one worker (`dest`), so the exchange pact routes whole
//! batches.

use serde::{Deserialize, Serialize};

use crate::features::WindowFeatures;

/// A string stored in a batch's text arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextRef {
    pub start: u32,
    pub len: u32,
}

impl TextRef {
    /// Appends `text` to `arena` and returns where it is.
    pub fn push(arena: &mut String, text: &str) -> TextRef {
        let start = arena.len() as u32;
        arena.push_str(text);
        TextRef { start, len: text.len() as u32 }
    }

    /// Where `part` is in the arena when `self` holds a copy of `whole` and `part` is a slice
    /// of `whole` (a field of a record whose line was just pushed needs no copy of its own);
    /// `None` when `part` lies elsewhere (e.g. an unescaped copy).
    pub fn within(self, whole: &str, part: &str) -> Option<TextRef> {
        let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        (offset + part.len() <= whole.len())
            .then_some(TextRef { start: self.start + offset as u32, len: part.len() as u32 })
    }

    /// The text in `arena`.
    pub fn str(self, arena: &str) -> &str {
        &arena[self.start as usize..(self.start + self.len) as usize]
    }
}

/// The partition number of events posted to the HTTP detect API (`position` is the request
/// id); no Kafka topic has this many partitions.
pub const HTTP_PARTITION: u32 = u32::MAX;

/// Where an input record came from: partition (a file is partition 0) and position in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub partition: u32,
    /// Line index (files, generator) or offset (Kafka): arrival order within the partition.
    pub position: u64,
}

/// A bad input record or a duplicate (SPEC §3 dead letter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub raw: String,
    pub error: String,
    pub origin: Origin,
    /// The bad message's Kafka key, if it had one (the dead letter is keyed like it).
    pub key: Option<String>,
}

/// Most bytes of a bad record kept in its dead letter (SPEC §3).
pub const DEAD_LETTER_RAW_LIMIT: usize = 65_536;

impl DeadLetter {
    /// A dead letter of `raw`, cut to the SPEC limit and made valid UTF-8.
    pub fn new(raw: &[u8], error: impl Into<String>, origin: Origin) -> Self {
        let cut = &raw[..raw.len().min(DEAD_LETTER_RAW_LIMIT)];
        DeadLetter { raw: String::from_utf8_lossy(cut).into_owned(), error: error.into(), origin, key: None }
    }
}

/// One parsed, valid event (strings and extra features live in the batch).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ParsedEvent {
    pub origin: Origin,
    pub user_key: u64,
    pub id_hash: u64,
    pub event_id: TextRef,
    pub user_id: TextRef,
    /// The original record, for a duplicate's dead letter.
    pub raw: TextRef,
    pub timestamp_ms: i64,
    /// amount, hour_of_day, location_distance, days_since_last_txn (NaN when absent).
    pub own: [f64; 4],
    /// Hour used by `time_unusual`: `hour_of_day` if present, else the UTC hour.
    pub hour: u8,
    /// 0/1, or −1 when unlabelled.
    pub label: i8,
    pub timestamp_source: TimestampSource,
}

/// Where an event's time came from (SPEC §1): its own `timestamp`, or, for a record without
/// one, its Kafka message's timestamp or the HTTP request's receive time. Decision records
/// name the latter two, so a reader knows the instant is not the producer's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampSource {
    #[default]
    Event,
    Message,
    Received,
}

impl TimestampSource {
    /// The value of a decision record's `timestamp_source` (None: the event's own time).
    pub fn label(self) -> Option<&'static str> {
        match self {
            TimestampSource::Event => None,
            TimestampSource::Message => Some("message"),
            TimestampSource::Received => Some("received"),
        }
    }
}

/// Parsed events on their way to the worker that owns their users.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventBatch {
    /// Worker index this batch is addressed to.
    pub dest: u32,
    /// Nanoseconds since the job's clock origin when the source read the batch.
    pub ingest_ns: u64,
    /// Each event's own ingest instant, on the same clock, when the source knows it per event
    /// (Kafka: the message's produce time); empty means `ingest_ns` for every event.
    pub event_ingest_ns: Vec<u64>,
    pub text: String,
    pub events: Vec<ParsedEvent>,
    /// Extra features, `extra_count` per event, in event order.
    pub extras: Vec<f64>,
    /// Attribute hashes (0 = absent), one per kept attribute per event, in event order.
    pub attrs: Vec<u64>,
    pub dead: Vec<DeadLetter>,
    /// A checkpoint barrier riding with the epoch (batches carrying one have no events).
    pub marker: Option<Marker>,
}

/// Sizes of a source's previous batches, per destination worker: new batches reserve them up
/// front, since consecutive reads are alike, instead of growing (and copying)
/// their buffers several times per block.
#[derive(Default)]
pub struct BatchSizes {
    previous: Vec<(usize, usize, usize)>,
}

impl BatchSizes {
    /// An empty batch for `dest`, with room for what the previous one held.
    pub fn batch(&self, dest: usize, ingest_ns: u64) -> EventBatch {
        let (text, events, extras) = self.previous.get(dest).copied().unwrap_or_default();
        EventBatch {
            dest: dest as u32,
            ingest_ns,
            text: String::with_capacity(text + text / 8),
            events: Vec::with_capacity(events + events / 8),
            extras: Vec::with_capacity(extras + extras / 8),
            ..EventBatch::default()
        }
    }

    /// Notes the sizes of the batches just filled.
    pub fn remember(&mut self, batches: &[EventBatch]) {
        self.previous = batches.iter().map(|b| (b.text.len(), b.events.len(), b.extras.len())).collect();
    }
}

/// Checkpoint barriers a source sends to every worker's window state, at its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Marker {
    /// Worker 0's source asks for a checkpoint after this epoch (the interval has passed).
    Checkpoint,
    /// This source has stopped (end of input or SIGINT/SIGTERM): once every source has sent
    /// one, the newest of their epochs is checkpointed as the job's final state.
    Final,
}

impl EventBatch {
    /// One marker batch per worker, to be sent at the source's current epoch.
    pub fn markers(marker: Marker, peers: usize) -> impl Iterator<Item = EventBatch> {
        (0..peers).map(move |dest| EventBatch { dest: dest as u32, marker: Some(marker), ..EventBatch::default() })
    }
}

/// A scored event's identity and own inputs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ScoredRow {
    pub origin: Origin,
    pub event_id: TextRef,
    pub user_id: TextRef,
    pub timestamp_ms: i64,
    pub own: [f64; 4],
    pub label: i8,
    /// Scored from state without being accepted (SPEC §2 "late").
    pub late: bool,
    pub timestamp_source: TimestampSource,
    pub ingest_ns: u64,
}

/// Events of one epoch on one worker after the window state, filled column by column by
/// enrich (model inputs), infer (scores) and decide.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScoredBatch {
    pub text: String,
    pub rows: Vec<ScoredRow>,
    pub windows: Vec<WindowFeatures>,
    /// Extra features, `extra_count` per row.
    pub extras: Vec<f64>,
    /// Attribute hashes, `attr_count` per row (see [`EventBatch::attrs`]).
    pub attrs: Vec<u64>,
    /// Entity features of the feature specification (SPEC §2b), `entity_width` per row, in
    /// its column order (NaN = missing); empty with the default specification.
    pub entities: Vec<f64>,
    pub dead: Vec<DeadLetter>,
    /// Row-major model inputs, one row per event (filled by enrich).
    pub inputs: Vec<f32>,
    /// Anomaly scores (filled by infer).
    pub scores: Vec<f32>,
    /// Reasons from the model for the high-scoring rows (filled by infer).
    pub explanations: Explanations,
    /// Wall time of the batch's forward pass.
    pub infer_ns: u64,
}

/// Serialised output of one batch, ready for a sink.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OutputChunk {
    pub decisions: Vec<u8>,
    pub alerts: Vec<u8>,
    pub dead_letters: Vec<u8>,
    pub counts: OutputCounts,
    /// Ingest→decision latency of each decision, nanoseconds.
    pub latencies_ns: Vec<u64>,
    /// When the chunk was rendered ([`crate::time::clock::now_ns`]): a decision's ingest instant is
    /// this less its latency.
    pub rendered_ns: u64,
    /// Event time of each decision (its lag behind the wall clock is a metric).
    pub event_times_ms: Vec<i64>,
    /// Lines answering HTTP detect requests.
    pub replies: Vec<ReplyLine>,
    /// Message keys (Kafka): the userId of each decision, the key of each dead letter.
    pub keys: String,
    /// Key of each decision line, in `keys`.
    pub decision_keys: Vec<TextRef>,
    /// Which decision lines are also alerts (indexes into `decision_keys`).
    pub alert_rows: Vec<u32>,
    /// Key of each dead-letter line, in `keys`, if it had one.
    pub dead_keys: Vec<Option<TextRef>>,
}

/// The line of a chunk that answers an HTTP detect request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyLine {
    /// The request id (the event's [`Origin::position`]).
    pub request: u64,
    /// A decision line (else a dead-letter line).
    pub decision: bool,
    /// Byte range of the line (without its newline) in `decisions` or `dead_letters`.
    pub start: u32,
    pub end: u32,
}

/// What a chunk contains, for summaries and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputCounts {
    pub decisions: u64,
    pub blocked: u64,
    pub dead_letters: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Dead letters by `DeadReason` index.
    pub dead_by_reason: [u64; 5],
}

impl OutputCounts {
    /// Adds another chunk's counts.
    pub fn add(&mut self, other: &OutputCounts) {
        self.decisions += other.decisions;
        self.blocked += other.blocked;
        self.dead_letters += other.dead_letters;
        self.duplicates += other.duplicates;
        self.late += other.late;
        for (mine, theirs) in self.dead_by_reason.iter_mut().zip(other.dead_by_reason) {
            *mine += theirs;
        }
    }
}

/// One explained row: its index in the batch, where its reasons end in
/// [`Explanations::text`] (they start where the previous row's end) and how many there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExplainedRow {
    pub(crate) row: u32,
    pub(crate) end: u32,
    pub(crate) count: u32,
}

/// The rendered model reasons of a batch's explained rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Explanations {
    /// In ascending row order.
    pub(crate) rows: Vec<ExplainedRow>,
    /// Comma-separated JSON string elements, row after row.
    pub(crate) text: Vec<u8>,
}

impl Explanations {
    /// Forgets every explanation (the batch is being scored again).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.text.clear();
    }

    /// The reasons of batch row `row` — comma-separated JSON string elements and their
    /// count — if the row was explained.
    pub fn of(&self, row: usize) -> Option<(&[u8], usize)> {
        let k = self.rows.binary_search_by_key(&row, |r| r.row as usize).ok()?;
        let start = if k == 0 { 0 } else { self.rows[k - 1].end as usize };
        let r = self.rows[k];
        Some((&self.text[start..r.end as usize], r.count as usize))
    }
}
