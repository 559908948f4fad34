//! The one event loop: terminal input, the clock and the sources' data become actions for
//! `App::update`; a frame is drawn right after input (so keys feel instant) and at most
//! every [`FRAME_INTERVAL`] while data streams in (so a flood of records costs frames, not
//! the CPU).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::action::{Action, DataEvent};
use super::app::{App, Effect};
use super::sources::{self, Ctx, Searches};
use super::stats::Stats;
use super::terminal::Tui;
use super::theme::Theme;
use super::{views, Error, Options};
use crate::lag::now_ms;

/// At most ~30 frames a second for data; input draws at once.
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
const TICK: Duration = Duration::from_millis(500);
/// Data events handled in a row before input gets a look (fairness under a flood).
const DATA_BURST: usize = 64;

pub async fn run(options: Options) -> Result<(), Error> {
    if options.capacity == 0 {
        return Err(Error::Options(
            "the tail capacity must be at least 1 record".into(),
        ));
    }
    let mut stats = Stats::from_env()?;
    let mut app = App::new(
        &options.brokers.brokers,
        &options.topic,
        &options.metrics_topic,
        options.capacity,
        options.label.clone(),
        Theme::from_env(),
        now_ms(),
    );
    let mut tui = Tui::enter()?;
    let size = tui.terminal.size()?;
    app.size = (size.width, size.height);

    // A few batches (of up to 2,000 records each) in flight: a bound on what waits between the
    // sources and the loop, far below the ring's size; beyond it, the backlog waits in Kafka.
    let (tx, mut rx) = mpsc::channel::<DataEvent>(8);
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Ctx::new(options.brokers.clone(), tx, stop.clone());
    sources::start(&ctx, &options.topic, &options.metrics_topic, options.from);
    let mut searches = Searches::default();

    let result = event_loop(&mut app, &mut tui, &mut rx, &ctx, &mut searches, &mut stats).await;

    // Sources notice within ~100 ms and end on their own; nothing here waits for them.
    stop.store(true, Ordering::Relaxed);
    searches.stop_all();
    stats.flush();
    drop(tui);
    result
}

async fn event_loop(
    app: &mut App,
    tui: &mut Tui,
    rx: &mut mpsc::Receiver<DataEvent>,
    ctx: &Ctx,
    searches: &mut Searches,
    stats: &mut Stats,
) -> Result<(), Error> {
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_frame = Instant::now() - FRAME_INTERVAL;
    let mut last_stats = Instant::now();
    let mut data_open = true;
    loop {
        // When a key arrived (for the key-to-frame time) and whether to draw at once.
        let mut key_at: Option<Instant> = None;
        let frame_due = tokio::time::Instant::from_std(last_frame + FRAME_INTERVAL);
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    let at = Instant::now();
                    if let Some(action) = to_action(ev) {
                        if matches!(action, Action::Key(_) | Action::Mouse(_)) {
                            key_at = Some(at);
                        }
                        app.update(action);
                    }
                }
                Some(Err(e)) => return Err(Error::Terminal(e)),
                None => return Ok(()),
            },
            d = rx.recv(), if data_open => match d {
                Some(d) => {
                    app.update(Action::Data(d));
                    for _ in 0..DATA_BURST {
                        match rx.try_recv() {
                            Ok(d) => app.update(Action::Data(d)),
                            Err(_) => break,
                        }
                    }
                }
                None => data_open = false,
            },
            _ = tick.tick() => {
                app.update(Action::Tick(now_ms()));
                if stats.enabled() && last_stats.elapsed() >= Duration::from_secs(1) {
                    last_stats = Instant::now();
                    stats.rate(app.rate(), app.received);
                }
            }
            _ = tokio::time::sleep_until(frame_due), if app.dirty => {}
        }
        for effect in app.take_effects() {
            match effect {
                Effect::StartSearch(id, options) => searches.start(ctx, id, *options),
                Effect::StopSearch(id) => searches.stop(id),
            }
        }
        if app.quit {
            return Ok(());
        }
        if app.dirty && (key_at.is_some() || last_frame.elapsed() >= FRAME_INTERVAL) {
            let started = Instant::now();
            tui.terminal.draw(|f| views::draw(f, app))?;
            app.dirty = false;
            last_frame = Instant::now();
            stats.frame(last_frame - started);
            if let Some(at) = key_at {
                stats.key(last_frame - at);
            }
        }
    }
}

fn to_action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) => Some(Action::Key(k)),
        Event::Mouse(m) => Some(Action::Mouse(m)),
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        _ => None,
    }
}
