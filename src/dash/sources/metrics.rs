//! The metrics reader: the last 15 minutes of samples on start, then every new one. Records
//! that are not metric samples are skipped (other producers may share the topic).

use rdkafka::Message;

use super::reader::{read, Start};
use super::{Ctx, Reporter};
use crate::dash::action::{DataEvent, SourceKind};
use crate::dash::app::METRICS_WINDOW_MS;
use crate::lag::now_ms;
use crate::record::MetricSample;

pub fn run(ctx: &Ctx, topic: &str) {
    let mut reporter = Reporter::new(SourceKind::Metrics);
    read(
        ctx,
        &mut reporter,
        topic,
        Start::Time(now_ms() - METRICS_WINDOW_MS),
        |msg| {
            let ts = msg.timestamp().to_millis().unwrap_or(0);
            let sample = serde_json::from_slice::<MetricSample>(msg.payload()?).ok()?;
            Some((ts, sample))
        },
        |(ts, _)| *ts,
        |batch| ctx.send(DataEvent::Metrics(batch)),
    );
}
