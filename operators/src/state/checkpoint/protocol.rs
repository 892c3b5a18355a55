//! The running job's side of checkpoints: when sources send barriers, how a worker's window
//! state writes its part, and how a checkpoint is completed once its output is delivered.
//!
//! Protocol (Flink's aligned barriers, with timely's frontiers doing the aligning):
//! 1. every `interval`, worker 0's source sends a [`Marker::Checkpoint`] to every worker at its
//!    current epoch `E`; a stopping source sends [`Marker::Final`];
//! 2. each window state, once its input frontier has passed `E` (so it has applied every
//!    event of epochs ≤ `E` and nothing later), writes its part: users by key group and its
//!    source's offsets through `E` — before it releases epoch `E`;
//! 3. once the end of the dataflow has passed `E` — every part written, every output of
//!    epochs ≤ `E` delivered — worker 0 writes the manifest, which completes the checkpoint,
//!    and each Kafka worker commits the checkpoint's offsets for its partitions.
//!
//! A restore therefore loses nothing (output up to `E` was delivered, input after `E` is read
//! again) and double-counts nothing in the state (it is exactly the state after `E`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::probe::Handle as ProbeHandle;

use crate::batch::Marker;
use crate::event::hashing::KEY_GROUPS;
use crate::state::checkpoint::offsets::PartitionOffsets;
use crate::state::checkpoint::store::{CheckpointStore, Manifest, Part, RestoredState, MANIFEST_FORMAT};
use crate::time::clock::unix_ms;

/// Job-wide checkpoint settings.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    pub store: CheckpointStore,
    pub interval: Duration,
    /// The state to start from (`None`: a fresh start).
    pub restore: Option<Arc<RestoredState>>,
    /// Identity of the input, recorded in manifests and checked on restore.
    pub input: String,
    /// Records per epoch of block sources, recorded in manifests.
    pub block_len: usize,
    /// Exactly-once mode: the process's transaction gate, told of every checkpoint.
    pub transactions: Option<Arc<TransactionGate>>,
}

/// When worker 0's source is due to send the next checkpoint barrier.
#[derive(Clone, Debug)]
struct MarkerClock {
    every: Duration,
    last: Instant,
}

/// The barriers a source sends, if checkpoints are on. At most one periodic checkpoint is in
/// flight: worker 0 sends the next barrier only once the previous checkpoint has completed
/// (or was abandoned), so slow storage delays checkpoints instead of queueing them up.
#[derive(Clone, Debug, Default)]
pub struct SourceBarriers {
    /// Worker 0 only: the interval clock.
    clock: Option<MarkerClock>,
    enabled: bool,
    in_progress: Rc<Cell<bool>>,
}

impl SourceBarriers {
    /// Barriers of the source on worker `index` (`every`: `None` when checkpoints are off).
    pub fn new(every: Option<Duration>, index: usize) -> Self {
        SourceBarriers {
            clock: every.filter(|_| index == 0).map(|every| MarkerClock { every, last: Instant::now() }),
            enabled: every.is_some(),
            in_progress: Rc::default(),
        }
    }

    /// The barrier to send now, if one is due.
    pub fn periodic(&mut self) -> Option<Marker> {
        let clock = self.clock.as_mut()?;
        if self.in_progress.get() || clock.last.elapsed() < clock.every {
            return None;
        }
        clock.last = Instant::now();
        self.in_progress.set(true);
        Some(Marker::Checkpoint)
    }

    /// The barrier to send when the source stops.
    pub fn last(&self) -> Option<Marker> {
        self.enabled.then_some(Marker::Final)
    }
}

/// A part this worker handed to its writer, waiting for its checkpoint to complete.
#[derive(Debug)]
struct QueuedPart {
    epoch: u64,
    final_checkpoint: bool,
    offsets: PartitionOffsets,
    snapshot_time: Duration,
    /// When the end of the dataflow was first seen past the epoch.
    passed_at: Option<Instant>,
}

/// The source position of this worker through an epoch: next offset per Kafka partition.
pub type SourcePosition = Rc<dyn Fn(u64) -> PartitionOffsets>;

/// What a worker's window state needs to take part in checkpoints.
#[derive(Clone)]
pub struct WorkerCheckpoints {
    pub restore: Option<Arc<RestoredState>>,
    /// Global index of this worker.
    pub worker: u32,
    source_position: SourcePosition,
    queued: Rc<RefCell<VecDeque<QueuedPart>>>,
    writer: mpsc::Sender<Part>,
    transactions: Option<Arc<TransactionGate>>,
}

impl WorkerCheckpoints {
    /// Snapshots this worker's part of the checkpoint of `epoch` (on the worker: it must see
    /// the state exactly after `epoch`) and hands it to the writer thread (off the worker: the
    /// write and fsync take far longer than the snapshot).
    pub fn write(&self, epoch: u64, final_checkpoint: bool, build: impl FnOnce(PartitionOffsets) -> Part) {
        let started = Instant::now();
        let offsets = (self.source_position)(epoch);
        let part = build(offsets.clone());
        let snapshot_time = started.elapsed();
        if let Some(gate) = &self.transactions {
            gate.checkpointed(epoch, &offsets);
        }
        if self.writer.send(part).is_ok() {
            self.queued.borrow_mut().push_back(QueuedPart {
                epoch,
                final_checkpoint,
                offsets,
                snapshot_time,
                passed_at: None,
            });
        }
    }
}

/// How long worker 0 waits for the other workers' parts of a checkpoint whose epoch the whole
/// dataflow has passed before giving the checkpoint up (a worker failed to write).
const PART_WAIT: Duration = Duration::from_secs(60);

/// Completes this worker's checkpoints once the end of the dataflow has passed them.
pub struct CheckpointCompleter {
    cfg: CheckpointConfig,
    worker: usize,
    peers: usize,
    queued: Rc<RefCell<VecDeque<QueuedPart>>>,
    in_progress: Rc<Cell<bool>>,
    writer: Option<(mpsc::Sender<Part>, std::thread::JoinHandle<()>)>,
}

/// Creates the window state's side and the worker loop's side of one worker's checkpoints,
/// and the worker's writer thread. `barriers` are the ones given to the worker's source.
pub fn worker_checkpoints(
    cfg: &CheckpointConfig,
    worker: usize,
    peers: usize,
    source_position: SourcePosition,
    barriers: &SourceBarriers,
) -> std::io::Result<(WorkerCheckpoints, CheckpointCompleter)> {
    let queued = Rc::new(RefCell::new(VecDeque::new()));
    let (sender, parts) = mpsc::channel::<Part>();
    let store = cfg.store.clone();
    let thread = std::thread::Builder::new().name(format!("checkpoint-writer-{worker}")).spawn(move || {
        for part in parts {
            let started = Instant::now();
            match store.write_part(&part) {
                Ok(bytes) => tracing::debug!(
                    target: "vigil::checkpoint",
                    epoch = part.header.epoch,
                    worker,
                    bytes,
                    write_ms = started.elapsed().as_secs_f64() * 1e3,
                    "checkpoint part written"
                ),
                Err(e) => tracing::error!(
                    target: "vigil::checkpoint",
                    worker,
                    "checkpoint {} part not written: {e}",
                    part.header.epoch
                ),
            }
        }
    })?;
    let writer = WorkerCheckpoints {
        restore: cfg.restore.clone(),
        worker: worker as u32,
        source_position,
        queued: Rc::clone(&queued),
        writer: sender.clone(),
        transactions: cfg.transactions.clone(),
    };
    let completer = CheckpointCompleter {
        cfg: cfg.clone(),
        worker,
        peers,
        queued,
        in_progress: Rc::clone(&barriers.in_progress),
        writer: Some((sender, thread)),
    };
    Ok((writer, completer))
}

impl CheckpointCompleter {
    /// Completes what `probe` has passed. Returns the offsets of the newest checkpoint that is
    /// now complete, for the worker to commit to Kafka.
    pub fn tick(&mut self, probe: &ProbeHandle<u64>) -> Option<PartitionOffsets> {
        let mut queued = self.queued.borrow_mut();
        let now = Instant::now();
        let mut passed = 0;
        for part in queued.iter_mut() {
            if probe.less_equal(&part.epoch) {
                break;
            }
            part.passed_at.get_or_insert(now);
            passed += 1;
        }
        if passed == 0 {
            return None;
        }
        if self.worker == 0 {
            for part in queued.iter().take(passed) {
                if !self.try_complete(part) {
                    break;
                }
            }
        }
        let newest_complete = (0..passed).rev().find(|&i| self.cfg.store.manifest_path(queued[i].epoch).exists())?;
        let done: Vec<QueuedPart> = queued.drain(..=newest_complete).collect();
        done.into_iter().last().map(|part| part.offsets)
    }

    /// Worker 0: writes the manifest of `part`'s epoch once every worker's part is on disk;
    /// false while some part is still being written.
    fn try_complete(&self, part: &QueuedPart) -> bool {
        if self.cfg.store.manifest_path(part.epoch).exists() {
            return true;
        }
        let missing = (0..self.peers).filter(|&w| !self.cfg.store.part_path(part.epoch, w).exists()).count();
        if missing > 0 {
            if part.passed_at.is_some_and(|at| at.elapsed() > PART_WAIT) {
                // Exactly-once output waits for this checkpoint's transaction, so without it the
                // job cannot go on; a restart resumes from the last committed transaction.
                assert!(
                    self.cfg.transactions.is_none(),
                    "exactly-once: checkpoint {} cannot complete ({missing} parts missing after {PART_WAIT:?})",
                    part.epoch
                );
                tracing::error!(
                    target: "vigil::checkpoint",
                    "checkpoint {} abandoned: {missing} of {} parts missing after {PART_WAIT:?}",
                    part.epoch,
                    self.peers
                );
                self.in_progress.set(false);
                return true;
            }
            return false;
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            epoch: part.epoch,
            workers: self.peers as u32,
            key_groups: KEY_GROUPS,
            block_len: self.cfg.block_len,
            input: self.cfg.input.clone(),
            final_checkpoint: part.final_checkpoint,
            created_unix_ms: unix_ms(),
        };
        match self.cfg.store.complete(&manifest) {
            Ok(()) => tracing::info!(
                target: "vigil::checkpoint",
                epoch = part.epoch,
                final_checkpoint = part.final_checkpoint,
                snapshot_ms = part.snapshot_time.as_secs_f64() * 1e3,
                "checkpoint complete"
            ),
            Err(e) => tracing::error!(target: "vigil::checkpoint", "checkpoint {} not completed: {e}", part.epoch),
        }
        self.in_progress.set(false);
        true
    }

    /// After the dataflow has finished: waits for this worker's writer, and on worker 0 for
    /// every part of the last checkpoints, and completes them.
    pub fn finish(&mut self, probe: &ProbeHandle<u64>) -> Option<PartitionOffsets> {
        if let Some((sender, thread)) = self.writer.take() {
            drop(sender);
            let _ = thread.join();
        }
        let deadline = Instant::now() + PART_WAIT;
        loop {
            let offsets = self.tick(probe);
            if self.worker != 0 || self.queued.borrow().is_empty() || Instant::now() > deadline {
                return offsets;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Checkpoints whose output is produced in the open transaction but not yet committed, with
/// their input offsets (merged over the process's workers): exactly-once mode.
///
/// A sink sends output of an epoch only up to the oldest pending checkpoint's epoch, so one
/// transaction holds exactly the output of the epochs up to its checkpoint; later output waits
/// until that transaction is committed.
#[derive(Debug, Default)]
pub struct TransactionGate {
    pending: Mutex<BTreeMap<u64, PartitionOffsets>>,
}

impl TransactionGate {
    /// Notes a worker's part of the checkpoint of `epoch` and its offsets through it.
    pub fn checkpointed(&self, epoch: u64, offsets: &PartitionOffsets) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let merged = pending.entry(epoch).or_default();
        for (&partition, &next) in offsets {
            let entry = merged.entry(partition).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// Whether output of `epoch` may be produced now.
    pub(crate) fn open_for(&self, epoch: u64) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).first_key_value().is_none_or(|(&e, _)| epoch <= e)
    }

    /// The oldest pending checkpoint, if any.
    pub fn oldest(&self) -> Option<(u64, PartitionOffsets)> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).first_key_value().map(|(&e, o)| (e, o.clone()))
    }

    pub(crate) fn committed(&self, epoch: u64) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).retain(|&e, _| e > epoch);
    }
}
