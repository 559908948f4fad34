//! Idempotent-producer bookkeeping: per partition, per producer id, the last batches' sequence
//! ranges, so a retried batch is answered with its original offset instead of being written
//! twice, and a gap in sequence numbers is refused (Kafka's ProducerStateManager, in small).

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;

/// Kafka remembers the last five batches per producer: librdkafka and the Java client keep at
/// most five requests in flight with idempotence on, so a retry is always among them.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSpan {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchSpan>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data in order: append it.
    Append,
    /// A retry of a batch already written at this base offset: acknowledge, do not write.
    Duplicate { base_offset: i64 },
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// The sequence number after `seq`; sequences wrap from i32::MAX to 0 as in Kafka.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Last sequence number of a batch of `count` records starting at `first`, wrapping like Kafka.
pub fn last_seq(first: i32, last_offset_delta: i32) -> i32 {
    let last = i64::from(first) + i64::from(last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

impl ProducerStates {
    /// Decides whether a batch from `producer_id`/`epoch` with sequences
    /// `first_seq..=last_seq` may be appended.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ResponseError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // No state: a new producer, or one whose state was in segments since deleted or
            // from before a restart. Accept and start tracking (Kafka does the same since
            // KIP-360 rather than failing the producer).
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            // A bumped epoch starts its sequences again at 0.
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(span) = entry
            .recent
            .iter()
            .find(|s| s.first_seq == first_seq && s.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: span.base_offset,
            });
        }
        match entry.recent.back() {
            Some(latest) if first_seq != next_seq(latest.last_seq) => {
                Err(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch that was appended at `base_offset`.
    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        base_offset: i64,
    ) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == REMEMBERED_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchSpan {
            first_seq,
            last_seq,
            base_offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_a_duplicate_with_original_offset() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 9), Ok(SequenceCheck::Append));
        s.record(7, 0, 0, 9, 100);
        assert_eq!(s.check(7, 0, 10, 19), Ok(SequenceCheck::Append));
        s.record(7, 0, 10, 19, 110);
        assert_eq!(
            s.check(7, 0, 0, 9),
            Ok(SequenceCheck::Duplicate { base_offset: 100 })
        );
    }

    #[test]
    fn gap_is_out_of_order() {
        let mut s = ProducerStates::default();
        s.record(7, 0, 0, 9, 0);
        assert_eq!(
            s.check(7, 0, 15, 20),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn old_epoch_is_fenced_and_new_epoch_restarts_at_zero() {
        let mut s = ProducerStates::default();
        s.record(7, 3, 0, 9, 0);
        assert_eq!(
            s.check(7, 2, 10, 12),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(s.check(7, 4, 0, 3), Ok(SequenceCheck::Append));
        assert_eq!(
            s.check(7, 4, 5, 6),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(1, 0, i * 10, i * 10 + 9, i64::from(i) * 10);
        }
        // The first batch fell out of the window: it is now simply out of order.
        assert_eq!(
            s.check(1, 0, 0, 9),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(1, 0, 50, 59),
            Ok(SequenceCheck::Duplicate { base_offset: 50 })
        );
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(last_seq(i32::MAX - 1, 3), 1);
        let mut s = ProducerStates::default();
        s.record(1, 0, i32::MAX - 4, i32::MAX, 0);
        assert_eq!(s.check(1, 0, 0, 4), Ok(SequenceCheck::Append));
    }
}
