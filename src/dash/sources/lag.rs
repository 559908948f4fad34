//! The lag poller: every consumer group's lag every 2 s, through `rill::lag`'s probe (which
//! never joins the groups it observes).

use std::time::Instant;

use super::{Ctx, Reporter, POLL_INTERVAL};
use crate::dash::action::{DataEvent, SourceKind};
use crate::lag::Probe;

pub fn run(ctx: &Ctx) {
    let mut reporter = Reporter::new(SourceKind::Lag);
    let mut probe = None;
    while !ctx.stopped() {
        let started = Instant::now();
        if probe.is_none() {
            match Probe::new(&ctx.args) {
                Ok(p) => probe = Some(p),
                Err(e) => reporter.failing(ctx, format!("{e:#}")),
            }
        }
        if let Some(p) = probe.as_mut() {
            match sample(p) {
                Ok(snapshots) => {
                    reporter.ok(ctx, format!("{} groups", snapshots.len()));
                    if !ctx.send(DataEvent::Lag(snapshots)) {
                        return;
                    }
                }
                Err(e) => reporter.failing(ctx, format!("{e:#}")),
            }
        }
        ctx.sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
    }
}

fn sample(probe: &mut Probe) -> anyhow::Result<Vec<crate::lag::GroupSnapshot>> {
    let groups = probe.list_groups()?;
    let mut out = Vec::with_capacity(groups.len());
    for info in groups {
        // Only consumer groups have offsets and assignments to show.
        if !info.protocol_type.is_empty() && info.protocol_type != "consumer" {
            continue;
        }
        out.push(probe.snapshot(info, true)?);
    }
    Ok(out)
}
