//! One search of the Search view, with the same engine as `rill search`: hits are forwarded
//! in batches, with progress, until the search completes or is cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::dash::action::{DataEvent, SearchProgress};
use crate::dash::entry::Decoder;
use crate::search::{Hit, Search};

pub fn run(ctx: &Ctx, id: u64, options: crate::search::Options, cancel: &AtomicBool) {
    let mut search = match Search::start(&ctx.args, options) {
        Ok(s) => s,
        Err(e) => {
            ctx.send(DataEvent::SearchDone(id, Err(format!("{e:#}"))));
            return;
        }
    };
    let mut decoder = Decoder::default();
    let mut batch = Vec::new();
    let mut last_sent = Instant::now();
    let progress = |s: &Search| SearchProgress {
        scanned: s.stats.records.load(Ordering::Relaxed),
        bytes: s.stats.bytes.load(Ordering::Relaxed),
        matched: s.stats.matched.load(Ordering::Relaxed),
    };
    loop {
        if cancel.load(Ordering::Relaxed) || ctx.stopped() {
            search.stop();
            return;
        }
        let done = match search.next_hit(Duration::from_millis(100)) {
            Ok(hit) => {
                batch.push(entry(&mut decoder, &hit));
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if done || batch.len() >= 500 || last_sent.elapsed() >= Duration::from_millis(100) {
            last_sent = Instant::now();
            if !batch.is_empty() && !ctx.send(DataEvent::SearchHits(id, std::mem::take(&mut batch)))
            {
                return;
            }
            if !ctx.send(DataEvent::SearchProgress(id, progress(&search))) {
                return;
            }
        }
        if done {
            let p = progress(&search);
            let result = search.finish().map(|()| p).map_err(|e| format!("{e:#}"));
            ctx.send(DataEvent::SearchDone(id, result));
            return;
        }
    }
}

fn entry(decoder: &mut Decoder, hit: &Hit) -> crate::dash::entry::LogEntry {
    // The engine does not hand over headers; those of records outside the contract are
    // what it read host, source and level from, so they are rebuilt from its fields.
    let mut headers: Vec<(Box<str>, Box<str>)> = Vec::new();
    if hit.fields.record.is_none() {
        for (k, v) in [
            ("host", &hit.fields.host),
            ("source", &hit.fields.source),
            ("level", &hit.fields.level),
        ] {
            if let Some(v) = v {
                headers.push((k.into(), v.as_str().into()));
            }
        }
    }
    decoder.decode(
        hit.partition,
        hit.offset,
        hit.timestamp_ms,
        &hit.value,
        headers,
    )
}
