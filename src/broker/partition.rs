//! One partition: its log and the idempotent-producer state that guards appends to it.

use std::path::Path;

use kafka_protocol::ResponseError;
use parking_lot::{Mutex, MutexGuard};

use crate::broker::log::batch::BatchHeader;
use crate::broker::log::{LogConfig, LogError, PartitionLog};
use crate::broker::producer_state::{last_seq, ProducerStates, SequenceCheck};

pub struct PartitionState {
    pub log: PartitionLog,
    pub producers: ProducerStates,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    state: Mutex<PartitionState>,
}

/// Where a produced record set landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    /// False when every batch was a retry of one already written (nothing new to wake fetchers for).
    pub wrote: bool,
    /// The log start offset at the time of the append (Produce v5+ reports it).
    pub log_start_offset: i64,
}

/// Why a produced record set was refused.
#[derive(Debug)]
pub enum AppendError {
    /// The producer broke the protocol (stale epoch, sequence gap): its own error code.
    Producer(ResponseError),
    /// The disk refused the write; the log is unchanged.
    Storage(LogError),
}

impl Partition {
    /// Opens (and recovers) the partition's log, and rebuilds producer state from the batches
    /// still in its active segment, so a producer retrying across a broker restart is still
    /// deduplicated.
    pub fn open(topic: &str, index: i32, dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        let (log, report) = PartitionLog::open(dir, config)?;
        if report.is_clean() {
            tracing::debug!(topic, partition = index, "opened partition");
        } else {
            tracing::warn!(topic, partition = index, "recovered partition: {report}");
        }
        let mut producers = ProducerStates::default();
        for header in log.recent_batch_headers()? {
            if header.producer_id >= 0 {
                producers.record(
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    last_seq(header.base_sequence, header.last_offset_delta),
                    header.base_offset,
                );
            }
        }
        Ok(Partition {
            topic: topic.to_string(),
            index,
            state: Mutex::new(PartitionState { log, producers }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, PartitionState> {
        self.state.lock()
    }

    /// Appends validated batches (`headers` describes `records`, in order). Batches from an
    /// idempotent producer are checked one by one against its sequence state: a retry is
    /// acknowledged with the offset it was first written at and not written again.
    pub fn append(
        &self,
        records: &mut [u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        let mut state = self.state.lock();
        let idempotent = headers.iter().any(|h| h.producer_id >= 0);
        if !idempotent {
            let info = state
                .log
                .append(records, now_ms)
                .map_err(AppendError::Storage)?;
            return Ok(Appended {
                base_offset: info.base_offset,
                wrote: true,
                log_start_offset: state.log.log_start_offset(),
            });
        }
        let mut first_offset = None;
        let mut wrote = false;
        let mut rest = records;
        for header in headers {
            let len = (header.batch_length as usize + 12).min(rest.len());
            let (batch, tail) = rest.split_at_mut(len);
            rest = tail;
            let base_offset = if header.producer_id < 0 {
                wrote = true;
                state
                    .log
                    .append(batch, now_ms)
                    .map_err(AppendError::Storage)?
                    .base_offset
            } else {
                let last = last_seq(header.base_sequence, header.last_offset_delta);
                match state
                    .producers
                    .check(
                        header.producer_id,
                        header.producer_epoch,
                        header.base_sequence,
                        last,
                    )
                    .map_err(AppendError::Producer)?
                {
                    SequenceCheck::Duplicate { base_offset } => base_offset,
                    SequenceCheck::Append => {
                        let info = state
                            .log
                            .append(batch, now_ms)
                            .map_err(AppendError::Storage)?;
                        state.producers.record(
                            header.producer_id,
                            header.producer_epoch,
                            header.base_sequence,
                            last,
                            info.base_offset,
                        );
                        wrote = true;
                        info.base_offset
                    }
                }
            };
            first_offset.get_or_insert(base_offset);
        }
        Ok(Appended {
            base_offset: first_offset.unwrap_or_else(|| state.log.log_end_offset()),
            wrote,
            log_start_offset: state.log.log_start_offset(),
        })
    }
}
