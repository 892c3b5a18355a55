//! The block source: turns any record reader into a parallel, backpressured timely source.
//!
//! Input is cut into blocks of `block_len` records; block `b` is epoch `b` and belongs to worker
//! `b mod peers`, which parses it and sends each event to the worker owning its user. Epochs
//! therefore follow input position, the same for any worker count (the determinism the window
//! state relies on). A worker emits a block only while the dataflow's output frontier is less
//! than `max_in_flight` blocks behind, so a slow sink pauses reading instead of growing memory.
//! With a `rate`, block `b` is not emitted before `b · block_len / rate` seconds have passed;
//! the source then sleeps through timely's delayed activation instead of spinning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::{Scope, Stream};

use crate::batch::{BatchSizes, EventBatch, Origin};
use crate::event::parse::EventParser;
use crate::state::checkpoint::protocol::SourceBarriers;
use crate::time::clock::now_ns;

/// Something that yields records block by block, in arrival order.
pub trait BlockReader: 'static {
    /// Visits (when `visit`) or skips the next block of up to `len` records, calling
    /// `record(bytes, position)` for each visited one. Returns the number of records in the
    /// block; 0 means the input is exhausted.
    fn next_block(&mut self, len: usize, visit: bool, record: &mut dyn FnMut(&[u8], u64)) -> usize;
}

/// Settings shared by block sources.
#[derive(Clone)]
pub struct SourceConfig {
    /// Records per block (= per epoch).
    pub block_len: usize,
    /// Most blocks (over all workers) between the source and the completed output.
    pub max_in_flight: u64,
    /// Partition number recorded in every [`Origin`].
    pub partition: u32,
    /// Set on SIGINT/SIGTERM: the source stops and the dataflow drains.
    pub stop: Arc<AtomicBool>,
    /// Frontier of the end of the dataflow, for backpressure.
    pub probe: ProbeHandle<u64>,
    /// Offered load in records per second over all workers (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// The checkpoint barriers this source sends (default: none).
    pub barriers: SourceBarriers,
    /// First block to read: the one after a restored checkpoint's epoch (0 on a fresh start).
    pub start_block: u64,
}

impl SourceConfig {
    /// How long until block `block` is due at the configured rate, measured from `start`.
    fn wait_for(&self, block: u64, start: Instant) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let due = Duration::from_secs_f64((block * self.block_len as u64) as f64 / rate);
        due.checked_sub(start.elapsed()).filter(|d| !d.is_zero())
    }
}

/// Blocks a source emits per activation before yielding to other operators.
const BLOCKS_PER_ACTIVATION: usize = 2;

/// Builds a source reading `reader` with `parser`.
pub fn block_source<'s, R: BlockReader>(
    scope: Scope<'s, u64>,
    name: &str,
    mut reader: R,
    mut parser: EventParser,
    cfg: SourceConfig,
) -> Stream<'s, u64, Vec<EventBatch>> {
    let index = scope.index();
    let peers = scope.peers();
    source::<u64, CapacityContainerBuilder<Vec<EventBatch>>, _, _>(scope, name, move |mut capability, info| {
        let activator = scope.activator_for(info.address);
        for _ in 0..cfg.start_block {
            if reader.next_block(cfg.block_len, false, &mut |_, _| {}) == 0 {
                break;
            }
        }
        let mut next_block = cfg.start_block;
        capability.downgrade(&next_block);
        let mut capability = Some(capability);
        let mut barriers = cfg.barriers.clone();
        let start = Instant::now();
        let paced_from = next_block;
        let mut sizes = BatchSizes::default();
        move |output| {
            let Some(cap) = capability.as_mut() else { return };
            if cfg.stop.load(Ordering::Relaxed) {
                if let Some(last) = barriers.last() {
                    output.session(&*cap).give_iterator(EventBatch::markers(last, peers));
                }
                capability = None;
                return;
            }
            if let Some(barrier) = barriers.periodic() {
                output.session(&*cap).give_iterator(EventBatch::markers(barrier, peers));
            }
            let mut emitted = 0;
            while emitted < BLOCKS_PER_ACTIVATION {
                let mine = next_block % peers as u64 == index as u64;
                let backlog_limit = next_block.saturating_sub(cfg.max_in_flight);
                if mine && cfg.probe.less_than(&backlog_limit) {
                    break;
                }
                if let Some(wait) = cfg.wait_for(next_block - paced_from, start).filter(|_| mine) {
                    cap.downgrade(&next_block);
                    activator.activate_after(wait);
                    return;
                }
                let ingest_ns = now_ns();
                let mut batches: Vec<EventBatch> =
                    if mine { (0..peers).map(|dest| sizes.batch(dest, ingest_ns)).collect() } else { Vec::new() };
                let read = reader.next_block(cfg.block_len, mine, &mut |bytes, position| {
                    let origin = Origin { partition: cfg.partition, position };
                    parser.parse_into(bytes, origin, &mut batches, index);
                });
                if read == 0 {
                    if let Some(last) = barriers.last() {
                        output.session(&*cap).give_iterator(EventBatch::markers(last, peers));
                    }
                    capability = None;
                    return;
                }
                if mine {
                    sizes.remember(&batches);
                    cap.downgrade(&next_block);
                    let mut session = output.session(&*cap);
                    for batch in batches.into_iter().filter(|b| !b.events.is_empty() || !b.dead.is_empty()) {
                        session.give(batch);
                    }
                    emitted += 1;
                }
                next_block += 1;
            }
            let until_mine = (index as u64 + peers as u64 - next_block % peers as u64) % peers as u64;
            cap.downgrade(&(next_block + until_mine));
            activator.activate();
        }
    })
}
