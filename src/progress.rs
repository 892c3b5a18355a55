//! Progress of long CLI work: an indicatif bar when stderr is a terminal, otherwise a plain
//! log line every few seconds (so CI logs stay readable).

use std::io::IsTerminal;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between plain log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress reporting for one task.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// Starts reporting `what`; `enabled = false` keeps quiet (e.g. output on stdout).
    pub fn new(what: &'static str, total: Option<u64>, enabled: bool) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        });
        Progress { bar, what, last_log: Mutex::new(Instant::now()) }
    }

    /// Reports `done` units of work.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            tracing::info!(done, "{}", self.what);
        }
    }

    /// Ends the bar.
    pub fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.finish_and_clear();
        }
    }
}

/// How often a watcher reads its counter.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// A thread reporting a shared counter (e.g. a metric) for work whose progress is not a loop
/// in the calling thread. Stopping wakes it at once, so the work's end is never delayed by
/// the reporting interval.
pub struct Watcher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Starts reporting `count()` every [`WATCH_EVERY`] until [`Watcher::finish`].
pub fn watch(progress: Progress, count: impl Fn() -> u64 + Send + 'static) -> Watcher {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
            progress.set(count());
        }
        progress.finish(count());
    });
    Watcher { stop, thread }
}

impl Watcher {
    /// Reports the final count and ends the thread.
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
