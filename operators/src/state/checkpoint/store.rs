//! Checkpoint storage: per-worker part files and the manifest that completes a checkpoint.
//!
//! A checkpoint of epoch `E` is the keyed state after every event of epochs ≤ `E`, plus the
//! source positions just past them. Layout, one directory per checkpoint:
//!
//! ```text
//! DIR/chk-00000000000000001234/part-0   worker 0's key groups and source offsets
//! DIR/chk-00000000000000001234/part-1
//! DIR/chk-00000000000000001234/MANIFEST written last: the checkpoint is complete
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed, so a crash leaves either the
//! old or the new file, never half of one. Part files carry a CRC-32 of their payload, so a
//! truncated or corrupted part is detected on restore and the previous checkpoint is used.
//! State is stored per key group (user key mod [`KEY_GROUPS`]): a checkpoint written by any
//! number of workers restores onto any other number, each worker taking the groups it owns.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::event::hashing::KEY_GROUPS;
use crate::state::checkpoint::offsets::PartitionOffsets;
use crate::state::user::UserState;

/// First bytes of every part file (format version in the last byte).
const PART_MAGIC: &[u8; 8] = b"VIGILCK2";
/// Name of the file that completes a checkpoint.
const MANIFEST: &str = "MANIFEST";
/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 2;

/// What restores a job to where a checkpoint was taken, beyond the users themselves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    pub epoch: u64,
    /// Global index of the worker that wrote the part.
    pub worker: u32,
    /// Next offset to read per Kafka partition this worker read (empty for files and the
    /// generator, whose position follows from the epoch).
    pub source_offsets: Vec<(i32, i64)>,
    /// Newest event time seen per input partition (the watermark's inputs).
    pub partition_newest: Vec<(u32, i64)>,
    pub last_sweep_watermark: i64,
}

/// One worker's share of a checkpoint: its header and its users, bincode-encoded per key group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub header: PartHeader,
    /// (key group, bincode of that group's `Vec<(user key, state)>`), groups ascending.
    pub groups: Vec<(u16, Vec<u8>)>,
}

/// The record that completes a checkpoint, and what a restore checks it against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub epoch: u64,
    /// Workers (over all processes) that wrote parts: `part-0` … `part-{workers-1}`.
    pub workers: u32,
    pub key_groups: u64,
    /// Records per epoch of a file or generator source: the epoch → position mapping.
    pub block_len: usize,
    /// The input the checkpoint was taken from (`file:PATH`, `generator:…`, `kafka:TOPIC`).
    pub input: String,
    /// Written when the job stopped (drained), not on the interval.
    pub final_checkpoint: bool,
    pub created_unix_ms: u64,
}

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt { path: path.display().to_string(), reason: reason.into() }
}

/// The key group of a user key.
pub fn key_group(user_key: u64) -> u16 {
    (user_key % KEY_GROUPS) as u16
}

/// A checkpoint directory: where checkpoints are written, pruned and found again.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    /// Complete checkpoints kept; older ones are deleted after a new one completes.
    keep: usize,
}

impl CheckpointStore {
    /// Opens (creating) `dir` and checks that files can be written there, so an unwritable
    /// directory is an error at start rather than a failed checkpoint minutes later.
    pub fn open(dir: &Path, keep: usize) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let probe = dir.join(format!(".write-test-{}", std::process::id()));
        File::create(&probe).and_then(|mut f| f.write_all(b"ok")).map_err(io_error(dir))?;
        fs::remove_file(&probe).map_err(io_error(&probe))?;
        Ok(CheckpointStore { dir: dir.to_owned(), keep: keep.max(1) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checkpoint_dir(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("chk-{epoch:020}"))
    }

    /// Path of the manifest of `epoch` (exists once that checkpoint is complete).
    pub fn manifest_path(&self, epoch: u64) -> PathBuf {
        self.checkpoint_dir(epoch).join(MANIFEST)
    }

    /// Path of worker `worker`'s part of `epoch` (exists once that part is durable).
    pub fn part_path(&self, epoch: u64, worker: usize) -> PathBuf {
        self.checkpoint_dir(epoch).join(format!("part-{worker}"))
    }

    /// Writes one worker's part durably; returns its size in bytes.
    pub fn write_part(&self, part: &Part) -> Result<u64, CheckpointError> {
        let dir = self.checkpoint_dir(part.header.epoch);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let payload = bincode::serialize(part).map_err(|e| corrupt(&dir, format!("encoding the part: {e}")))?;
        let mut bytes = Vec::with_capacity(payload.len() + 20);
        bytes.extend_from_slice(PART_MAGIC);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        write_durably(&self.part_path(part.header.epoch, part.header.worker as usize), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Completes the checkpoint of `manifest.epoch` and deletes all but the newest `keep`
    /// complete checkpoints (and incomplete ones older than the kept).
    pub fn complete(&self, manifest: &Manifest) -> Result<(), CheckpointError> {
        let path = self.manifest_path(manifest.epoch);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| corrupt(&path, e.to_string()))?;
        write_durably(&path, &json)?;
        sync_dir(&self.checkpoint_dir(manifest.epoch))?;
        self.prune()
    }

    /// Epochs of the checkpoint directories present, newest first, with whether each is complete.
    fn listed(&self) -> Result<Vec<(u64, bool)>, CheckpointError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name();
            let Some(epoch) = name.to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok()) else {
                continue;
            };
            found.push((epoch, entry.path().join(MANIFEST).exists()));
        }
        found.sort_unstable_by(|a, b| b.cmp(a));
        Ok(found)
    }

    fn prune(&self) -> Result<(), CheckpointError> {
        let listed = self.listed()?;
        let Some(&(oldest_kept, _)) = listed.iter().filter(|(_, complete)| *complete).nth(self.keep - 1) else {
            return Ok(());
        };
        for &(epoch, _) in listed.iter().filter(|(epoch, _)| *epoch < oldest_kept) {
            let dir = self.checkpoint_dir(epoch);
            fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }

    /// The newest complete checkpoint whose every part is intact. Damaged ones are skipped
    /// with a warning naming what is wrong; `None` when there is none (a fresh start).
    pub fn latest_valid(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        self.latest_valid_where(|_| true)
    }

    /// Like [`Self::latest_valid`], among the checkpoints `usable` accepts (exactly-once: the
    /// one whose offsets the consumer group committed in the last transaction).
    pub fn latest_valid_where(
        &self,
        usable: impl Fn(&Checkpoint) -> bool,
    ) -> Result<Option<Checkpoint>, CheckpointError> {
        for (epoch, complete) in self.listed()? {
            if !complete {
                continue;
            }
            match Checkpoint::open(self.checkpoint_dir(epoch)) {
                Ok(checkpoint) if usable(&checkpoint) => return Ok(Some(checkpoint)),
                Ok(_) => tracing::info!(
                    target: "vigil::checkpoint",
                    "skipping checkpoint {epoch}: its transaction was not committed"
                ),
                Err(e) => tracing::warn!(
                    target: "vigil::checkpoint",
                    "skipping checkpoint {epoch}, it is damaged ({e}); trying the previous one"
                ),
            }
        }
        Ok(None)
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io_error(&temp))?;
    fs::rename(&temp, path).map_err(io_error(path))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// A complete, verified checkpoint to restore from, its parts read into memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub manifest: Manifest,
    dir: PathBuf,
    parts: Vec<Part>,
}

/// A checkpoint's users decoded, to be taken by the workers that now own their key groups.
#[derive(Debug)]
pub struct RestoredState {
    pub epoch: u64,
    /// Users by key group.
    groups: Vec<Mutex<Vec<(u64, UserState)>>>,
    /// Newest event time per input partition over all parts (the watermark's inputs).
    pub partition_newest: Vec<(u32, i64)>,
    /// Latest idle-user sweep over all parts.
    pub last_sweep_watermark: i64,
}

impl RestoredState {
    /// Moves out the users of the key groups `worker` of `peers` owns (see `owner_worker`).
    pub fn take_users(&self, worker: usize, peers: usize) -> Vec<(u64, UserState)> {
        let mut users = Vec::new();
        for group in self.groups.iter().skip(worker).step_by(peers.max(1)) {
            users.append(&mut group.lock().unwrap_or_else(|p| p.into_inner()));
        }
        users
    }
}

impl Checkpoint {
    /// Reads the manifest and verifies every part it names (presence, size, checksum, epoch).
    fn open(dir: PathBuf) -> Result<Self, CheckpointError> {
        let path = dir.join(MANIFEST);
        let text = fs::read(&path).map_err(io_error(&path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| corrupt(&path, e.to_string()))?;
        if manifest.format != MANIFEST_FORMAT || manifest.key_groups != KEY_GROUPS {
            return Err(corrupt(&path, "written by an incompatible version of vigil"));
        }
        let mut checkpoint = Checkpoint { manifest, dir, parts: Vec::new() };
        for worker in 0..checkpoint.manifest.workers {
            let part = checkpoint.read_part(worker)?;
            if part.header.epoch != checkpoint.manifest.epoch || part.header.worker != worker {
                return Err(corrupt(&checkpoint.part_path(worker), "belongs to another checkpoint"));
            }
            checkpoint.parts.push(part);
        }
        Ok(checkpoint)
    }

    pub fn epoch(&self) -> u64 {
        self.manifest.epoch
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn part_path(&self, worker: u32) -> PathBuf {
        self.dir.join(format!("part-{worker}"))
    }

    /// Reads and checks one worker's part.
    fn read_part(&self, worker: u32) -> Result<Part, CheckpointError> {
        let path = self.part_path(worker);
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_error(&path))?;
        let payload = verified_payload(&bytes).map_err(|reason| corrupt(&path, reason))?;
        bincode::deserialize(payload).map_err(|e| corrupt(&path, format!("undecodable: {e}")))
    }

    /// Next offsets to read of every Kafka partition any worker read.
    pub fn source_offsets(&self) -> PartitionOffsets {
        let mut offsets = PartitionOffsets::new();
        for &(partition, next) in self.parts.iter().flat_map(|p| &p.header.source_offsets) {
            let entry = offsets.entry(partition).or_insert(next);
            *entry = (*entry).max(next);
        }
        offsets
    }

    /// Decodes every user. A restored worker starts from the newest event time per partition
    /// over all parts, whichever users it now owns, so its watermark never moves backwards.
    pub fn decode(self) -> Result<RestoredState, CheckpointError> {
        let mut restored = RestoredState {
            epoch: self.manifest.epoch,
            groups: (0..KEY_GROUPS).map(|_| Mutex::new(Vec::new())).collect(),
            partition_newest: Vec::new(),
            last_sweep_watermark: i64::MIN,
        };
        for part in self.parts {
            let path = self.dir.join(format!("part-{}", part.header.worker));
            for &(partition, t) in &part.header.partition_newest {
                match restored.partition_newest.iter_mut().find(|(p, _)| *p == partition) {
                    Some((_, newest)) => *newest = (*newest).max(t),
                    None => restored.partition_newest.push((partition, t)),
                }
            }
            restored.last_sweep_watermark = restored.last_sweep_watermark.max(part.header.last_sweep_watermark);
            for (group, bytes) in part.groups {
                let slot =
                    restored.groups.get(group as usize).ok_or_else(|| corrupt(&path, "key group out of range"))?;
                let mut users: Vec<(u64, UserState)> = bincode::deserialize(&bytes)
                    .map_err(|e| corrupt(&path, format!("key group {group} undecodable: {e}")))?;
                slot.lock().unwrap_or_else(|p| p.into_inner()).append(&mut users);
            }
        }
        Ok(restored)
    }
}

/// The payload of a part file after checking magic, length and checksum.
fn verified_payload(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 20 || &bytes[..8] != PART_MAGIC {
        return Err("not a vigil checkpoint part (bad header)".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[20..];
    if payload.len() != len {
        return Err(format!("truncated: {} of {len} payload bytes", payload.len()));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(epoch: u64, worker: u32) -> Part {
        Part {
            header: PartHeader {
                epoch,
                worker,
                source_offsets: vec![(worker as i32, 100 + epoch as i64)],
                partition_newest: vec![(0, 1_000 * worker as i64)],
                last_sweep_watermark: 7,
            },
            groups: vec![(3, vec![1, 2, 3]), (200, vec![0; 8])],
        }
    }

    fn manifest(epoch: u64, workers: u32) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            epoch,
            workers,
            key_groups: KEY_GROUPS,
            block_len: 4096,
            input: "file:x".into(),
            final_checkpoint: false,
            created_unix_ms: 0,
        }
    }

    fn write_checkpoint(store: &CheckpointStore, epoch: u64, workers: u32) {
        for w in 0..workers {
            store.write_part(&part(epoch, w)).unwrap();
        }
        store.complete(&manifest(epoch, workers)).unwrap();
    }

    #[test]
    fn a_complete_checkpoint_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 3).unwrap();
        write_checkpoint(&store, 42, 2);
        let restored = store.latest_valid().unwrap().expect("one checkpoint");
        assert_eq!(restored.manifest, manifest(42, 2));
        assert_eq!(restored.parts, vec![part(42, 0), part(42, 1)]);
        assert_eq!(restored.source_offsets(), PartitionOffsets::from([(0, 142), (1, 142)]));
    }

    #[test]
    fn parts_without_a_manifest_are_not_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 3).unwrap();
        write_checkpoint(&store, 1, 1);
        store.write_part(&part(2, 0)).unwrap();
        assert_eq!(store.latest_valid().unwrap().unwrap().epoch(), 1);
    }

    #[test]
    fn a_damaged_part_falls_back_to_the_previous_checkpoint() {
        for damage in ["truncate", "flip", "remove"] {
            let dir = tempfile::tempdir().unwrap();
            let store = CheckpointStore::open(dir.path(), 3).unwrap();
            write_checkpoint(&store, 1, 2);
            write_checkpoint(&store, 2, 2);
            let victim = store.checkpoint_dir(2).join("part-1");
            let mut bytes = fs::read(&victim).unwrap();
            match damage {
                "truncate" => fs::write(&victim, &bytes[..bytes.len() - 1]).unwrap(),
                "flip" => {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x40;
                    fs::write(&victim, &bytes).unwrap();
                }
                _ => fs::remove_file(&victim).unwrap(),
            }
            assert_eq!(store.latest_valid().unwrap().unwrap().epoch(), 1, "after {damage}");
        }
    }

    #[test]
    fn a_garbled_manifest_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 3).unwrap();
        write_checkpoint(&store, 1, 1);
        write_checkpoint(&store, 2, 1);
        fs::write(store.manifest_path(2), b"{\"format\": 1, \"epo").unwrap();
        assert_eq!(store.latest_valid().unwrap().unwrap().epoch(), 1);
    }

    #[test]
    fn only_the_newest_checkpoints_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2).unwrap();
        for epoch in [5, 9, 12, 30] {
            write_checkpoint(&store, epoch, 1);
        }
        store.write_part(&part(31, 0)).unwrap();
        let epochs: Vec<u64> = store.listed().unwrap().into_iter().map(|(e, _)| e).collect();
        assert_eq!(epochs, vec![31, 30, 12]);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = CheckpointStore::open(&file.join("sub"), 3).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
