//! The tail reader: every partition of the logs topic, decoded into [`LogEntry`]s.

use rdkafka::Message;

use super::reader::{read, Start};
use super::{Ctx, Reporter};
use crate::dash::action::{DataEvent, SourceKind};
use crate::dash::entry::{headers_of, Decoder};
use crate::dash::StartFrom;

/// "A few screens back": what the Tail shows on start with `--from end`.
pub const BACKLOG: i64 = 2000;

pub fn run(ctx: &Ctx, topic: &str, from: StartFrom) {
    let mut reporter = Reporter::new(SourceKind::Tail);
    let mut decoder = Decoder::default();
    let start = match from {
        StartFrom::End => Start::Back(BACKLOG),
        StartFrom::Beginning => Start::Beginning,
        StartFrom::Time(ms) => Start::Time(ms),
    };
    read(
        ctx,
        &mut reporter,
        topic,
        start,
        |msg| {
            let ts = msg.timestamp().to_millis().unwrap_or(0);
            let value = msg.payload().unwrap_or_default();
            Some(decoder.decode(msg.partition(), msg.offset(), ts, value, headers_of(msg)))
        },
        |e| e.ts_ms,
        |batch| ctx.send(DataEvent::Logs(batch)),
    );
}
