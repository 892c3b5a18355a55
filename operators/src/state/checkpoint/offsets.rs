//! Which input offsets may be committed: the bookkeeping behind at-least-once delivery.
//!
//! The Kafka source notes, per epoch it emits, the next offset to read of each partition it
//! read from. An epoch is *complete* once the dataflow's end (the sink, which holds each epoch
//! open until the broker has acknowledged all of its output) has passed it; only then do its
//! offsets become committable. Offsets therefore never run ahead of delivered output, which is
//! what makes a crash at any moment lose nothing: a restart re-reads from the last commit.

use std::collections::{BTreeMap, VecDeque};

/// Next offset to read per partition, as Kafka commits it.
pub type PartitionOffsets = BTreeMap<i32, i64>;

#[derive(Debug)]
struct EpochOffsets {
    epoch: u64,
    next: Vec<(i32, i64)>,
    messages: u64,
}

/// One worker's record of emitted-but-unacknowledged input and of what may be committed.
#[derive(Debug, Default)]
pub struct OffsetLedger {
    open: VecDeque<EpochOffsets>,
    open_messages: u64,
    completed: PartitionOffsets,
    committed: PartitionOffsets,
}

impl OffsetLedger {
    /// Notes that the message at `offset` of `partition` was emitted in `epoch`.
    ///
    /// Epochs must not decrease from call to call (the source's capability only moves forward).
    pub fn record(&mut self, epoch: u64, partition: i32, offset: i64) {
        if self.open.back().is_none_or(|last| last.epoch != epoch) {
            debug_assert!(self.open.back().is_none_or(|last| last.epoch < epoch), "epochs go forward");
            self.open.push_back(EpochOffsets { epoch, next: Vec::new(), messages: 0 });
        }
        let last = self.open.back_mut().expect("an open epoch was just ensured");
        match last.next.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, next)) => *next = (*next).max(offset + 1),
            None => last.next.push((partition, offset + 1)),
        }
        last.messages += 1;
        self.open_messages += 1;
    }

    /// Marks every open epoch for which `still_open(epoch)` is false as complete.
    pub fn complete(&mut self, still_open: impl Fn(u64) -> bool) {
        while let Some(front) = self.open.front() {
            if still_open(front.epoch) {
                break;
            }
            let done = self.open.pop_front().expect("front exists");
            self.open_messages -= done.messages;
            for (partition, next) in done.next {
                let entry = self.completed.entry(partition).or_insert(next);
                *entry = (*entry).max(next);
            }
        }
    }

    /// Messages emitted whose epochs are not complete yet (the source's backpressure measure).
    pub fn open_messages(&self) -> u64 {
        self.open_messages
    }

    /// Offsets that are complete but not yet committed, or `None` when there is nothing new.
    pub fn to_commit(&self) -> Option<PartitionOffsets> {
        let fresh: PartitionOffsets = self
            .completed
            .iter()
            .filter(|(p, next)| self.committed.get(p).is_none_or(|c| c < next))
            .map(|(p, next)| (*p, *next))
            .collect();
        (!fresh.is_empty()).then_some(fresh)
    }

    /// Next offset to read per partition after everything emitted in epochs ≤ `epoch` (what a
    /// checkpoint of `epoch` restarts from).
    pub fn next_through(&self, epoch: u64) -> PartitionOffsets {
        let mut next = self.completed.clone();
        for open in self.open.iter().take_while(|o| o.epoch <= epoch) {
            for &(partition, offset) in &open.next {
                let entry = next.entry(partition).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
        next
    }

    /// Sum of the committed next offsets over partitions (progress, for logs).
    pub fn committed_total(&self) -> i64 {
        self.committed.values().sum()
    }

    /// Notes that `offsets` were committed successfully.
    pub fn committed(&mut self, offsets: &PartitionOffsets) {
        for (partition, next) in offsets {
            let entry = self.committed.entry(*partition).or_insert(*next);
            *entry = (*entry).max(*next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_committable_only_when_their_epoch_completes() {
        let mut ledger = OffsetLedger::default();
        ledger.record(5, 0, 10);
        ledger.record(5, 0, 11);
        ledger.record(5, 2, 7);
        ledger.record(9, 0, 12);
        assert_eq!(ledger.open_messages(), 4);
        assert_eq!(ledger.to_commit(), None);

        ledger.complete(|epoch| epoch >= 9);
        assert_eq!(ledger.open_messages(), 1);
        let first = ledger.to_commit().expect("epoch 5 is complete");
        assert_eq!(first, PartitionOffsets::from([(0, 12), (2, 8)]));
        ledger.committed(&first);
        assert_eq!(ledger.to_commit(), None);

        ledger.complete(|_| false);
        assert_eq!(ledger.open_messages(), 0);
        assert_eq!(ledger.to_commit(), Some(PartitionOffsets::from([(0, 13)])));
    }

    #[test]
    fn the_position_through_an_epoch_covers_completed_and_open_epochs_up_to_it() {
        let mut ledger = OffsetLedger::default();
        ledger.record(1, 0, 4);
        ledger.record(2, 1, 9);
        ledger.record(3, 0, 5);
        ledger.complete(|epoch| epoch >= 2);
        assert_eq!(ledger.next_through(2), PartitionOffsets::from([(0, 5), (1, 10)]));
        assert_eq!(ledger.next_through(3), PartitionOffsets::from([(0, 6), (1, 10)]));
        assert_eq!(ledger.next_through(1), PartitionOffsets::from([(0, 5)]));
    }

    #[test]
    fn an_incomplete_epoch_holds_back_later_ones() {
        let mut ledger = OffsetLedger::default();
        ledger.record(1, 0, 0);
        ledger.record(2, 0, 1);
        ledger.complete(|epoch| epoch == 1);
        assert_eq!(ledger.to_commit(), None, "epoch 2 must wait for epoch 1");
    }
}
