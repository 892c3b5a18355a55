//! File sink: appends decision, alert and dead-letter lines to their files and accumulates the
//! run's counts and latency histogram.
//!
//! Workers share the three writers; each chunk is written under one lock, so lines of one
//! batch stay together and lines never interleave.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::batch::{OutputChunk, OutputCounts};

/// Counts and latencies of a run, merged over workers.
#[derive(Debug)]
pub struct RunStats {
    pub counts: OutputCounts,
    /// Ingest→decision latency in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats { counts: OutputCounts::default(), latency_us: new_latency_histogram() }
    }
}

/// A histogram from 1 µs to 1 h with 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

impl RunStats {
    /// Adds a chunk's counts and latencies.
    pub fn record(&mut self, chunk: &OutputChunk) {
        self.counts.add(&chunk.counts);
        for &ns in &chunk.latencies_ns {
            self.latency_us.saturating_record((ns / 1000).max(1));
        }
    }

    /// Adds another worker's stats.
    pub fn merge(&mut self, other: &RunStats) {
        self.counts.add(&other.counts);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }
}

/// The three output files of a run.
pub struct OutputFiles {
    decisions: Mutex<BufWriter<File>>,
    alerts: Mutex<BufWriter<File>>,
    dead_letters: Mutex<BufWriter<File>>,
    paths: [PathBuf; 3],
}

impl OutputFiles {
    /// Creates (truncates) `decisions.jsonl`, `alerts.jsonl`, `dead-letters.jsonl` in `dir`,
    /// named `decisions-pI.jsonl` etc. for process I of a multi-process cluster (`cluster`:
    /// process I of N), so that processes sharing a directory never write the same file. With
    /// `append` (a job restored from a checkpoint) existing files are continued instead, after
    /// cutting off a line left half-written by a crash; the first process also cuts such a line
    /// from the files of a job of another shape that nobody continues (a checkpoint of one
    /// process restored onto two leaves the one's `decisions.jsonl` as it was killed).
    pub fn create(dir: &Path, cluster: Option<(usize, usize)>, append: bool) -> std::io::Result<OutputFiles> {
        std::fs::create_dir_all(dir)?;
        if append && cluster.is_none_or(|(process, _)| process == 0) {
            for leftover in outputs_of_other_shapes(dir, cluster.map_or(1, |(_, processes)| processes))? {
                drop(open_after_last_line(&leftover)?);
            }
        }
        let suffix = cluster.map(|(i, _)| format!("-p{i}")).unwrap_or_default();
        let paths = OUTPUT_NAMES.map(|n| dir.join(format!("{n}{suffix}.jsonl")));
        let open = |p: &Path| -> std::io::Result<Mutex<BufWriter<File>>> {
            let file = match append {
                true => open_after_last_line(p)?,
                false => create_fresh(p)?,
            };
            Ok(Mutex::new(BufWriter::with_capacity(1 << 20, file)))
        };
        Ok(OutputFiles { decisions: open(&paths[0])?, alerts: open(&paths[1])?, dead_letters: open(&paths[2])?, paths })
    }

    /// Paths of decisions, alerts and dead letters.
    pub fn paths(&self) -> &[PathBuf; 3] {
        &self.paths
    }

    /// Appends a chunk's lines (flushed at the end of each sink activation, so what the
    /// dataflow counts as delivered has reached the OS and survives a crash of the process).
    pub fn write(&self, chunk: &OutputChunk) -> std::io::Result<()> {
        for (writer, bytes) in [
            (&self.decisions, &chunk.decisions),
            (&self.alerts, &chunk.alerts),
            (&self.dead_letters, &chunk.dead_letters),
        ] {
            if !bytes.is_empty() {
                writer.lock().unwrap_or_else(|p| p.into_inner()).write_all(bytes)?;
            }
        }
        Ok(())
    }

    /// Flushes all three files to the OS.
    pub fn flush(&self) -> std::io::Result<()> {
        for writer in [&self.decisions, &self.alerts, &self.dead_letters] {
            writer.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
        }
        Ok(())
    }
}

/// The kinds of output file, as their names begin.
const OUTPUT_NAMES: [&str; 3] = ["decisions", "alerts", "dead-letters"];

/// Output files in `dir` that a job of `processes` processes does not write: the unsuffixed
/// ones when it is a cluster, and those of processes it does not have.
fn outputs_of_other_shapes(dir: &Path, processes: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        let Some(suffix) = OUTPUT_NAMES.iter().find_map(|name| stem.strip_prefix(name)) else { continue };
        let written_now = match suffix.strip_prefix("-p").map(str::parse::<usize>) {
            None if suffix.is_empty() => processes == 1,
            Some(Ok(process)) => processes > 1 && process < processes,
            _ => continue,
        };
        if !written_now {
            leftovers.push(path);
        }
    }
    Ok(leftovers)
}

/// Creates `path` as a new file, removing an old one first instead of truncating it: ext4
/// flushes a truncated-then-rewritten file synchronously when it is closed (`auto_da_alloc`),
/// which cost ~120 ms per 300 MB of decisions at the end of every rerun into the same directory.
fn create_fresh(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Opens `path` for appending (creating it), first truncating any partial last line.
fn open_after_last_line(path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let len = file.metadata()?.len();
    let mut keep = len;
    let mut tail = [0u8; 4096];
    while keep > 0 {
        let start = keep.saturating_sub(tail.len() as u64);
        let chunk = &mut tail[..(keep - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        match memchr::memrchr(b'\n', chunk) {
            Some(i) => {
                keep = start + i as u64 + 1;
                break;
            }
            None => keep = start,
        }
    }
    if keep < len {
        file.set_len(keep)?;
    }
    file.seek(SeekFrom::Start(keep))?;
    Ok(file)
}

/// Where a sink delivers chunks.
pub trait ChunkSink: 'static {
    /// Delivers one chunk; an error stops the job.
    fn deliver(&mut self, chunk: &OutputChunk) -> std::io::Result<()>;

    /// Called after the chunks of an activation were delivered, before the dataflow may
    /// consider them done.
    fn delivered(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChunkSink for Arc<OutputFiles> {
    fn deliver(&mut self, chunk: &OutputChunk) -> std::io::Result<()> {
        self.write(chunk)
    }

    fn delivered(&mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// Discards output (benchmarks of everything up to serialisation).
pub struct DiscardSink;

impl ChunkSink for DiscardSink {
    fn deliver(&mut self, _chunk: &OutputChunk) -> std::io::Result<()> {
        Ok(())
    }
}

/// Extension trait: `chunks.sink_to(sink, stats)`.
pub trait SinkExt<'s> {
    /// Delivers every chunk and merges this worker's stats into `stats` at the end.
    fn sink_to<S: ChunkSink>(self, sink: S, stats: Arc<Mutex<RunStats>>) -> Stream<'s, u64, Vec<()>>;
}

impl<'s> SinkExt<'s> for Stream<'s, u64, Vec<OutputChunk>> {
    fn sink_to<S: ChunkSink>(self, mut sink: S, stats: Arc<Mutex<RunStats>>) -> Stream<'s, u64, Vec<()>> {
        self.unary_frontier::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            "Sink",
            move |_, _| {
                let mut mine = RunStats::default();
                let mut merged = false;
                move |(input, frontier), _output| {
                    let mut any = false;
                    input.for_each_stamp(|_cap, data| {
                        for chunk in data.flat_map(|d| d.iter()) {
                            if let Err(e) = sink.deliver(chunk) {
                                panic!("output could not be written: {e}");
                            }
                            mine.record(chunk);
                            any = true;
                        }
                    });
                    if any {
                        if let Err(e) = sink.delivered() {
                            panic!("output could not be written: {e}");
                        }
                    }
                    if frontier.is_empty() && !merged {
                        merged = true;
                        stats.lock().unwrap_or_else(|p| p.into_inner()).merge(&mine);
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_cuts_a_half_written_last_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &[u8]); 4] = [
            (b"", b""),
            (b"{\"a\":1}\n", b"{\"a\":1}\n"),
            (b"{\"a\":1}\n{\"b\":", b"{\"a\":1}\n"),
            (b"no newline at all", b""),
        ];
        for (before, kept) in cases {
            let path = dir.path().join("decisions.jsonl");
            std::fs::write(&path, before).unwrap();
            let mut file = open_after_last_line(&path).unwrap();
            file.write_all(b"{\"c\":3}\n").unwrap();
            drop(file);
            assert_eq!(std::fs::read(&path).unwrap(), [kept, b"{\"c\":3}\n"].concat(), "{before:?}");
        }
    }

    /// A restored cluster's first process repairs the killed one-process job's files (and only
    /// the first, so no two processes touch one file); its own files start empty.
    #[test]
    fn a_restored_cluster_cuts_half_lines_from_the_files_of_another_shape() {
        let dir = tempfile::tempdir().unwrap();
        let torn = b"{\"a\":1}\n{\"b\":".as_slice();
        for name in ["decisions.jsonl", "alerts-p2.jsonl", "dead-letters-p1.jsonl", "notes.jsonl"] {
            std::fs::write(dir.path().join(name), torn).unwrap();
        }
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        drop(OutputFiles::create(dir.path(), Some((1, 2)), true).unwrap());
        assert_eq!(read("decisions.jsonl"), torn, "only process 0 repairs others' files");
        assert_eq!(read("dead-letters-p1.jsonl"), b"{\"a\":1}\n", "process 1 continues its own file");
        drop(OutputFiles::create(dir.path(), Some((0, 2)), true).unwrap());
        assert_eq!(read("decisions.jsonl"), b"{\"a\":1}\n");
        assert_eq!(read("alerts-p2.jsonl"), b"{\"a\":1}\n", "no process 2 in this cluster");
        assert_eq!(read("notes.jsonl"), torn, "not an output of vigil");
        assert!(read("decisions-p0.jsonl").is_empty());
    }

    #[test]
    fn a_long_partial_line_is_cut_back_to_the_previous_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let mut before = b"first\n".to_vec();
        before.extend(std::iter::repeat_n(b'x', 10_000));
        std::fs::write(&path, &before).unwrap();
        drop(open_after_last_line(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
    }
}
