//! The HTTP detect API's way into the dataflow: a bounded queue of request bodies, read by a
//! source operator on one worker of the process, and the table of requests awaiting their
//! answer (filled in by `sink/http_reply.rs`).
//!
//! Epochs: the job's main source numbers its epochs its own way (block index for files and
//! the generator, wall-clock milliseconds for Kafka), and the window state releases an epoch
//! only once the frontier of *all* sources has passed it. So this source never picks its own
//! epochs while the main source runs: it holds its capability at the main source's current
//! frontier (read through a probe) and re-checks every millisecond, holding the stream back
//! by at most that long; requests are emitted in the epoch the main source is filling. Once
//! the main source is finished, the HTTP source jumps past every epoch the main source could have
//! used (to 2^62) and alone moves time forward: each activation that took requests emits them
//! at its epoch and steps to the next, so they are decided at once.
//! HTTP events form their own partition ([`HTTP_PARTITION`], position = request id), so within
//! an epoch they are applied after the main source's events, in request order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;
use tokio::sync::oneshot;

use crate::batch::{EventBatch, Origin, TimestampSource, HTTP_PARTITION};
use crate::event::parse::{Envelope, EventParser};
use crate::time::clock::now_ns;

/// The answer to one detect request.
#[derive(Debug, PartialEq, Eq)]
pub enum DetectReply {
    /// The decision record (SPEC §3), one JSON object.
    Decision(Vec<u8>),
    /// The dead letter (SPEC §3) of a bad body or a duplicate, one JSON object.
    DeadLetter(Vec<u8>),
}

/// Why a request was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("too many requests in flight")]
    Overloaded,
    #[error("the job is stopping")]
    Stopped,
}

struct Request {
    id: u64,
    body: Vec<u8>,
    /// When the server received the request: the event time of a body without `timestamp`.
    received_ms: i64,
    /// The eventId for a body without one (SPEC §6), returned in its decision record.
    generated_id: Option<String>,
}

/// Shared by the HTTP server (which submits) and the dataflow (which reads and answers).
pub struct DetectChannel {
    queue: SyncSender<Request>,
    receiver: Mutex<Option<Receiver<Request>>>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<DetectReply>>>,
    next_id: AtomicU64,
    activator: Mutex<Option<SyncActivator>>,
    stopped: AtomicBool,
}

/// How often the source re-reads the main source's frontier while that one runs.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(1);

/// How often the source checks the stop flag once it alone holds the job open (requests wake
/// it at once through the channel's activator).
const STOP_POLL: Duration = Duration::from_millis(100);

/// The first epoch of the HTTP source once the main source is finished: past any epoch a main
/// source uses (block indices, wall-clock milliseconds), so the main source's last epochs,
/// which this source may still have been holding, complete at once.
const AFTER_MAIN: u64 = 1 << 62;

/// Most requests taken per activation.
const REQUESTS_PER_ACTIVATION: usize = 4096;

impl DetectChannel {
    /// A channel holding at most `capacity` requests not yet read by the dataflow.
    pub fn new(capacity: usize) -> Arc<DetectChannel> {
        let (queue, receiver) = sync_channel(capacity);
        Arc::new(DetectChannel {
            queue,
            receiver: Mutex::new(Some(receiver)),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            activator: Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }

    /// Queues a request body received at `received_ms` (epoch milliseconds), with the id to
    /// give it if it has none; the receiver yields its answer.
    pub fn submit(
        &self,
        body: Vec<u8>,
        received_ms: i64,
        generated_id: Option<String>,
    ) -> Result<oneshot::Receiver<DetectReply>, SubmitError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id, tx);
        if let Err(e) = self.queue.try_send(Request { id, body, received_ms, generated_id }) {
            self.waiting().remove(&id);
            return Err(match e {
                TrySendError::Full(_) => SubmitError::Overloaded,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            });
        }
        if let Some(activator) = self.activator.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            // Fails only when the worker has shut down; the request is then answered by
            // `stop`'s drain or dropped with the channel, which the caller sees as closed.
            let _ = activator.activate();
        }
        Ok(rx)
    }

    /// Answers request `id`, if it is still waiting.
    pub fn answer(&self, id: u64, reply: DetectReply) {
        if let Some(tx) = self.waiting().remove(&id) {
            // The client may have gone away; nothing to do then.
            let _ = tx.send(reply);
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<DetectReply>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses further requests and drops the unread ones (their callers see a closed
    /// answer channel).
    fn stop(&self, receiver: &Receiver<Request>) {
        self.stopped.store(true, Ordering::Release);
        let mut waiting = self.waiting();
        while let Ok(request) = receiver.try_recv() {
            waiting.remove(&request.id);
        }
    }
}

/// Settings of the HTTP source.
pub struct HttpSourceConfig {
    /// `None`: no HTTP API in this process (the operator exists anyway so every process
    /// builds the same dataflow).
    pub channel: Option<Arc<DetectChannel>>,
    /// Frontier of the main source's output.
    pub main: ProbeHandle<u64>,
    /// Set on SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
}

/// Builds the HTTP source; the first worker of the process to build it takes the queue.
pub fn http_source<'s>(
    scope: Scope<'s, u64>,
    mut parser: EventParser,
    cfg: HttpSourceConfig,
) -> Stream<'s, u64, Vec<EventBatch>> {
    let index = scope.index();
    let peers = scope.peers();
    source::<u64, CapacityContainerBuilder<Vec<EventBatch>>, _, _>(scope, "HttpSource", move |capability, info| {
        let receiver = cfg.channel.as_ref().and_then(|c| c.receiver.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut capability = receiver.is_some().then_some(capability);
        if let (Some(channel), Some(_)) = (&cfg.channel, &receiver) {
            let activator = scope.worker().sync_activator_for(info.address.to_vec());
            *channel.activator.lock().unwrap_or_else(|p| p.into_inner()) = Some(activator);
        }
        let activator = scope.activator_for(info.address);
        move |output| {
            let (Some(cap), Some(receiver), Some(channel)) = (capability.as_mut(), &receiver, &cfg.channel) else {
                return;
            };
            if cfg.stop.load(Ordering::Relaxed) {
                channel.stop(receiver);
                capability = None;
                return;
            }
            let main_frontier = cfg.main.with_frontier(|f| f.iter().min().copied());
            let epoch = match main_frontier {
                Some(t) => t,
                None => AFTER_MAIN,
            };
            cap.downgrade(&epoch.max(*cap.time()));
            let mut batches: Vec<EventBatch> = (0..peers)
                .map(|dest| EventBatch { dest: dest as u32, ingest_ns: now_ns(), ..EventBatch::default() })
                .collect();
            let mut taken = 0;
            while taken < REQUESTS_PER_ACTIVATION {
                let Ok(request) = receiver.try_recv() else { break };
                let origin = Origin { partition: HTTP_PARTITION, position: request.id };
                let envelope = Envelope {
                    timestamp: Some((request.received_ms, TimestampSource::Received)),
                    event_id: request.generated_id.as_deref(),
                };
                parser.parse_enveloped(&request.body, origin, envelope, &mut batches, index);
                taken += 1;
            }
            if taken > 0 {
                let mut session = output.session(&*cap);
                for batch in batches.into_iter().filter(|b| !b.events.is_empty() || !b.dead.is_empty()) {
                    session.give(batch);
                }
            }
            match main_frontier {
                Some(_) => activator.activate_after(FOLLOW_INTERVAL),
                None => {
                    if taken > 0 {
                        let next = *cap.time() + 1;
                        cap.downgrade(&next);
                    }
                    match taken == REQUESTS_PER_ACTIVATION {
                        true => activator.activate(),
                        false => activator.activate_after(STOP_POLL),
                    }
                }
            }
        }
    })
}
