//! The dashboard's state and the one place it changes: [`App::update`]. Drawing
//! (`views::draw`) is a pure function of an `&App`; the event loop feeds actions in and
//! carries out the [`Effect`]s that update asks for (starting a search), so every key can be
//! tested on an `App` without a terminal or a broker.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use super::action::{Action, DataEvent, SearchProgress, SourceKind, SourceState, TopicInfo};
use super::entry::LogEntry;
use super::filter::Pattern;
use super::tail::Tail;
use super::theme::Theme;
use super::views;
use crate::lag::{GroupSnapshot, Status, Window};
use crate::record::{Level, MetricSample};
use crate::search::{self, parse_time, Filter, Matcher};

/// The five views, in the order of their keys 1-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Tail,
    Metrics,
    Lag,
    Topics,
    Search,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Tail,
        View::Metrics,
        View::Lag,
        View::Topics,
        View::Search,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Tail => "Tail",
            View::Metrics => "Metrics",
            View::Lag => "Lag",
            View::Topics => "Topics",
            View::Search => "Search",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// A window over the view (closed by Esc).
#[derive(Debug, Clone)]
pub enum Overlay {
    Help,
    /// The record view: the record and how far it is scrolled.
    Record(Box<LogEntry>, u16),
    /// The host picker: the cursor and the hosts ticked so far.
    Hosts {
        cursor: usize,
        picked: BTreeSet<Arc<str>>,
    },
    /// Lag per partition of one group, scrolled.
    Group(String, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// `/`: a regex the Tail's lines must match.
    Include,
    /// `\`: a regex the Tail's lines must not match.
    Exclude,
    /// The Search view's query.
    Search,
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
    /// Why the last Enter was refused (an invalid regex or time), shown under the prompt.
    pub error: Option<String>,
}

/// Something the event loop must do for the App (it owns the broker connections).
#[derive(Debug)]
pub enum Effect {
    StartSearch(u64, Box<search::Options>),
    StopSearch(u64),
}

/// One point of a host's charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub ts_ms: i64,
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
}

#[derive(Debug, Clone)]
pub struct HostMetrics {
    pub latest: MetricSample,
    pub last_seen_ms: i64,
    /// The last [`METRICS_WINDOW_MS`] of points, oldest first.
    pub history: VecDeque<MetricPoint>,
}

/// How far back the Metrics view keeps and charts samples.
pub const METRICS_WINDOW_MS: i64 = 15 * 60 * 1000;
/// A host whose newest sample is older than this is marked stale.
pub const STALE_AFTER_MS: i64 = 30_000;
/// At most this many points per host (a sample every 0.5 s over 15 minutes).
const MAX_POINTS: usize = 1800;
/// At most this many hosts in the Metrics view (memory stays bounded whoever writes).
const MAX_HOSTS: usize = 2000;
/// Lag samples the status looks back over (as `rill groups describe --watch`'s default).
pub const LAG_WINDOW: usize = 10;
/// Points in the lag and rate sparklines.
pub const TREND_POINTS: usize = 60;
/// At most this many search results are kept (the oldest; the search stops there).
pub const SEARCH_LIMIT: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct GroupView {
    pub snapshot: GroupSnapshot,
    window: Window,
    pub status: Option<Status>,
    /// Total lag of the last samples, oldest first.
    pub trend: VecDeque<u64>,
}

impl GroupView {
    /// The worst lag in time over the group's partitions, when known.
    pub fn lag_ms(&self) -> Option<i64> {
        self.snapshot
            .partitions
            .iter()
            .filter_map(|p| p.lag_ms)
            .max()
    }
}

#[derive(Debug, Clone)]
pub struct TopicView {
    pub info: TopicInfo,
    /// Records per second appended, over the last poll interval.
    pub rate: f64,
    pub rates: VecDeque<u64>,
}

#[derive(Debug, Default)]
pub struct SearchState {
    pub query: String,
    /// The submitted query's matcher (highlights the results).
    pub matcher: Option<Matcher>,
    pub id: u64,
    pub running: bool,
    pub results: Vec<LogEntry>,
    pub progress: SearchProgress,
    pub error: Option<String>,
    pub selected: usize,
}

/// A one-line message in the bar (e.g. "no more errors"), until the given time.
#[derive(Debug, Clone)]
pub struct Message {
    pub text: String,
    pub until_ms: i64,
}

pub struct App {
    pub view: View,
    pub overlay: Option<Overlay>,
    pub prompt: Option<Prompt>,
    pub theme: Theme,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    pub now_ms: i64,
    pub brokers: String,
    pub topic: String,
    pub metrics_topic: String,
    pub label: Option<String>,
    pub tail: Tail,
    pub hosts: BTreeMap<String, HostMetrics>,
    pub host_selected: usize,
    pub groups: BTreeMap<String, GroupView>,
    pub group_selected: usize,
    pub topics: Vec<TopicView>,
    pub topic_selected: usize,
    pub search: SearchState,
    pub sources: BTreeMap<SourceKind, SourceState>,
    pub message: Option<Message>,
    /// Records of the logs topic received, ever, and (time, that count) at recent ticks.
    pub received: u64,
    rate_marks: VecDeque<(i64, u64)>,
    pub quit: bool,
    /// Whether something changed since the last frame.
    pub dirty: bool,
    effects: Vec<Effect>,
}

impl App {
    pub fn new(
        brokers: &str,
        topic: &str,
        metrics_topic: &str,
        capacity: usize,
        label: Option<String>,
        theme: Theme,
        now_ms: i64,
    ) -> App {
        App {
            view: View::Tail,
            overlay: None,
            prompt: None,
            theme,
            size: (80, 24),
            now_ms,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            metrics_topic: metrics_topic.to_string(),
            label,
            tail: Tail::new(capacity),
            hosts: BTreeMap::new(),
            host_selected: 0,
            groups: BTreeMap::new(),
            group_selected: 0,
            topics: Vec::new(),
            topic_selected: 0,
            search: SearchState::default(),
            sources: BTreeMap::new(),
            message: None,
            received: 0,
            rate_marks: VecDeque::new(),
            quit: false,
            dirty: true,
            effects: Vec::new(),
        }
    }

    /// What the event loop must do since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub fn update(&mut self, action: Action) {
        match action {
            Action::Key(key) => {
                if key.kind != KeyEventKind::Release {
                    self.on_key(key);
                    self.dirty = true;
                }
            }
            Action::Mouse(m) => self.on_mouse(m),
            Action::Resize(w, h) => {
                self.size = (w, h);
                self.dirty = true;
            }
            Action::Tick(now) => self.on_tick(now),
            Action::Data(d) => self.on_data(d),
        }
    }

    // --- data --------------------------------------------------------------------------------

    fn on_tick(&mut self, now: i64) {
        self.now_ms = now;
        self.rate_marks.push_back((now, self.received));
        while self.rate_marks.len() > 2
            && self
                .rate_marks
                .front()
                .is_some_and(|&(t, _)| now - t > 3000)
        {
            self.rate_marks.pop_front();
        }
        if self.message.as_ref().is_some_and(|m| m.until_ms <= now) {
            self.message = None;
        }
        // Ages and the clock in the status bar move.
        self.dirty = true;
    }

    /// Records per second received from the logs topic over the last ~3 seconds.
    pub fn rate(&self) -> f64 {
        match (self.rate_marks.front(), self.rate_marks.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 * 1000.0 / (t1 - t0) as f64
            }
            _ => 0.0,
        }
    }

    fn on_data(&mut self, d: DataEvent) {
        self.dirty = true;
        match d {
            DataEvent::Logs(batch) => {
                self.received += batch.len() as u64;
                self.tail.push_batch(batch);
            }
            DataEvent::Metrics(samples) => {
                for (ts, s) in samples {
                    self.add_metric(ts, s);
                }
            }
            DataEvent::Lag(snapshots) => self.add_lag(snapshots),
            DataEvent::Topics(topics) => self.add_topics(topics),
            DataEvent::Source(kind, state) => {
                self.sources.insert(kind, state);
            }
            DataEvent::SearchHits(id, hits) if id == self.search.id => {
                let room = (SEARCH_LIMIT as usize).saturating_sub(self.search.results.len());
                self.search.results.extend(hits.into_iter().take(room));
            }
            DataEvent::SearchProgress(id, p) if id == self.search.id => self.search.progress = p,
            DataEvent::SearchDone(id, result) if id == self.search.id => {
                self.search.running = false;
                match result {
                    Ok(p) => self.search.progress = p,
                    Err(e) => self.search.error = Some(e),
                }
            }
            DataEvent::SearchHits(..)
            | DataEvent::SearchProgress(..)
            | DataEvent::SearchDone(..) => {}
        }
    }

    fn add_metric(&mut self, ts_ms: i64, s: MetricSample) {
        if !self.hosts.contains_key(&s.host) && self.hosts.len() >= MAX_HOSTS {
            return;
        }
        let mem_pct = if s.mem.total_bytes > 0 {
            s.mem.used_bytes as f64 * 100.0 / s.mem.total_bytes as f64
        } else {
            0.0
        };
        let point = MetricPoint {
            ts_ms,
            cpu_pct: f64::from(s.cpu.usage_pct),
            mem_pct,
            rx_bps: s.net.iter().map(|n| n.rx_bps).sum(),
            tx_bps: s.net.iter().map(|n| n.tx_bps).sum(),
        };
        let host = self
            .hosts
            .entry(s.host.clone())
            .or_insert_with(|| HostMetrics {
                latest: s.clone(),
                last_seen_ms: ts_ms,
                history: VecDeque::new(),
            });
        // Samples of several partitions may come out of order: keep the history sorted.
        let at = host.history.partition_point(|p| p.ts_ms <= ts_ms);
        host.history.insert(at, point);
        if ts_ms >= host.last_seen_ms {
            host.last_seen_ms = ts_ms;
            host.latest = s;
        }
        let newest = host.history.back().map_or(ts_ms, |p| p.ts_ms);
        while host.history.len() > MAX_POINTS
            || host
                .history
                .front()
                .is_some_and(|p| newest - p.ts_ms > METRICS_WINDOW_MS)
        {
            host.history.pop_front();
        }
    }

    fn add_lag(&mut self, snapshots: Vec<GroupSnapshot>) {
        let names: BTreeSet<String> = snapshots.iter().map(|s| s.info.group.clone()).collect();
        self.groups.retain(|g, _| names.contains(g));
        for snap in snapshots {
            let g = self
                .groups
                .entry(snap.info.group.clone())
                .or_insert_with(|| GroupView {
                    snapshot: snap.clone(),
                    window: Window::new(LAG_WINDOW),
                    status: None,
                    trend: VecDeque::new(),
                });
            g.window.push(snap.sample());
            g.status = g.window.status();
            push_bounded(&mut g.trend, snap.total_lag().max(0) as u64, TREND_POINTS);
            g.snapshot = snap;
        }
        self.group_selected = self.group_selected.min(self.groups.len().saturating_sub(1));
    }

    fn add_topics(&mut self, topics: Vec<TopicInfo>) {
        let mut previous: HashMap<String, TopicView> = self
            .topics
            .drain(..)
            .map(|t| (t.info.name.clone(), t))
            .collect();
        self.topics = topics
            .into_iter()
            .map(|info| match previous.remove(&info.name) {
                Some(mut old) => {
                    let dt = info.at_ms - old.info.at_ms;
                    if dt > 0 {
                        let appended = (info.end_total() - old.info.end_total()).max(0);
                        old.rate = appended as f64 * 1000.0 / dt as f64;
                        push_bounded(&mut old.rates, old.rate.round() as u64, TREND_POINTS);
                    }
                    old.info = info;
                    old
                }
                None => TopicView {
                    info,
                    rate: 0.0,
                    rates: VecDeque::new(),
                },
            })
            .collect();
        self.topics.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        self.topic_selected = self.topic_selected.min(self.topics.len().saturating_sub(1));
    }

    /// Whether the broker answers, from the Topics poller (it asks every 2 s): None until
    /// it first reported.
    pub fn connection(&self) -> Option<&SourceState> {
        self.sources.get(&SourceKind::Topics)
    }

    // --- keys --------------------------------------------------------------------------------

    fn say(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            until_ms: self.now_ms + 3000,
        });
    }

    fn on_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        if self.prompt.is_some() {
            self.on_prompt_key(key);
            return;
        }
        if self.overlay.is_some() {
            self.on_overlay_key(key);
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.overlay = Some(Overlay::Help),
            KeyCode::Tab => self.view = View::ALL[(self.view.index() + 1) % View::ALL.len()],
            KeyCode::BackTab => {
                self.view = View::ALL[(self.view.index() + View::ALL.len() - 1) % View::ALL.len()]
            }
            KeyCode::Char(c @ '1'..='5') => {
                self.view = View::ALL[(c as u8 - b'1') as usize];
            }
            KeyCode::Esc => self.message = None,
            _ => match self.view {
                View::Tail => self.on_tail_key(key),
                View::Metrics => {
                    let n = self.hosts.len();
                    let h = self.list_height();
                    list_key(&mut self.host_selected, n, h, key);
                }
                View::Lag => {
                    if key.code == KeyCode::Enter {
                        if let Some(g) = self.groups.keys().nth(self.group_selected) {
                            self.overlay = Some(Overlay::Group(g.clone(), 0));
                        }
                    } else {
                        let n = self.groups.len();
                        let h = self.list_height();
                        list_key(&mut self.group_selected, n, h, key);
                    }
                }
                View::Topics => {
                    let n = self.topics.len();
                    let h = self.list_height();
                    list_key(&mut self.topic_selected, n, h, key);
                }
                View::Search => self.on_search_key(key),
            },
        }
    }

    /// Rows of the current view's list (what PgUp/PgDn move by).
    pub fn list_height(&self) -> usize {
        views::list_area(self).height.max(1) as usize
    }

    fn on_tail_key(&mut self, key: KeyEvent) {
        let h = self.list_height();
        let t = &mut self.tail;
        match key.code {
            KeyCode::Char('/') => self.open_prompt(PromptKind::Include, ""),
            KeyCode::Char('\\') => self.open_prompt(PromptKind::Exclude, ""),
            KeyCode::Char('l') => {
                t.filter.cycle_level();
                t.refilter();
            }
            KeyCode::Char('h') => {
                self.overlay = Some(Overlay::Hosts {
                    cursor: 0,
                    picked: t.filter.hosts.clone(),
                })
            }
            KeyCode::Char(' ') => t.toggle_pause(),
            KeyCode::Up | KeyCode::Char('k') => t.move_by(-1, h),
            KeyCode::Down | KeyCode::Char('j') => t.move_by(1, h),
            KeyCode::PageUp => t.move_by(-(h as isize), h),
            KeyCode::PageDown => t.move_by(h as isize, h),
            KeyCode::Home | KeyCode::Char('g') => t.home(h),
            KeyCode::End | KeyCode::Char('G') => t.follow_end(),
            KeyCode::Char(c @ ('n' | 'N')) => {
                let forward = c == 'n';
                let patterns: Vec<Pattern> = t
                    .filter
                    .patterns
                    .iter()
                    .filter(|p| p.include)
                    .cloned()
                    .collect();
                if patterns.is_empty() {
                    self.say("no pattern to jump to: / sets one");
                } else if !t.jump(forward, h, |e| {
                    patterns.iter().any(|p| p.regex.is_match(&e.line))
                }) {
                    self.say(if forward {
                        "no next match"
                    } else {
                        "no previous match"
                    });
                }
            }
            KeyCode::Char(c @ ('e' | 'E')) => {
                let forward = c == 'e';
                if !t.jump(forward, h, |e| e.level == Some(Level::Error)) {
                    self.say(if forward {
                        "no next error"
                    } else {
                        "no previous error"
                    });
                }
            }
            KeyCode::Enter => {
                if let Some(e) = t.selected_entry() {
                    self.overlay = Some(Overlay::Record(Box::new(e.clone()), 0));
                }
            }
            _ => {}
        }
    }

    fn on_search_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Char('/') | KeyCode::Char('s') => {
                let q = self.search.query.clone();
                self.open_prompt(PromptKind::Search, &q);
            }
            KeyCode::Enter => {
                if let Some(e) = self.search.results.get(self.search.selected) {
                    self.overlay = Some(Overlay::Record(Box::new(e.clone()), 0));
                } else {
                    let q = self.search.query.clone();
                    self.open_prompt(PromptKind::Search, &q);
                }
            }
            _ => {
                let n = self.search.results.len();
                let h = self.list_height();
                list_key(&mut self.search.selected, n, h, key);
            }
        }
    }

    fn open_prompt(&mut self, kind: PromptKind, text: &str) {
        self.prompt = Some(Prompt {
            kind,
            text: text.to_string(),
            error: None,
        });
    }

    fn on_prompt_key(&mut self, key: KeyEvent) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Char('u') if ctrl => prompt.text.clear(),
            KeyCode::Char('w') if ctrl => {
                let trimmed = prompt.text.trim_end().len();
                let cut = prompt.text[..trimmed].rfind(' ').map_or(0, |i| i + 1);
                prompt.text.truncate(cut);
            }
            KeyCode::Char(c) if !ctrl => {
                prompt.text.push(c);
                prompt.error = None;
            }
            KeyCode::Backspace => {
                if prompt.text.pop().is_none() && prompt.kind != PromptKind::Search {
                    // Backspace on an empty prompt removes the last filter.
                    if self.tail.filter.patterns.pop().is_some() {
                        self.tail.refilter();
                    }
                }
                if let Some(p) = self.prompt.as_mut() {
                    p.error = None;
                }
            }
            KeyCode::Enter => {
                let kind = prompt.kind;
                let text = prompt.text.clone();
                let result = match kind {
                    PromptKind::Include | PromptKind::Exclude => {
                        if text.is_empty() {
                            Ok(())
                        } else {
                            Pattern::new(&text, kind == PromptKind::Include).map(|p| {
                                self.tail.filter.patterns.push(p);
                                self.tail.refilter();
                            })
                        }
                    }
                    PromptKind::Search => self.start_search(&text),
                };
                match result {
                    Ok(()) => self.prompt = None,
                    Err(e) => {
                        if let Some(p) = self.prompt.as_mut() {
                            p.error = Some(e);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn start_search(&mut self, text: &str) -> Result<(), String> {
        let q = parse_search(text, self.now_ms, &self.topic)?;
        if self.search.running {
            self.effects.push(Effect::StopSearch(self.search.id));
        }
        self.search = SearchState {
            query: text.to_string(),
            matcher: Some(q.matcher.clone()),
            id: self.search.id + 1,
            running: true,
            ..SearchState::default()
        };
        self.effects
            .push(Effect::StartSearch(self.search.id, Box::new(q)));
        Ok(())
    }

    fn on_overlay_key(&mut self, key: KeyEvent) {
        let Some(overlay) = self.overlay.as_mut() else {
            return;
        };
        match (overlay, key.code) {
            (_, KeyCode::Esc) => self.overlay = None,
            (_, KeyCode::Char('q')) => self.quit = true,
            (Overlay::Help, KeyCode::Char('?')) => self.overlay = None,
            (Overlay::Record(_, scroll) | Overlay::Group(_, scroll), code) => match code {
                KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
                KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                KeyCode::PageDown => *scroll = scroll.saturating_add(10),
                KeyCode::Home => *scroll = 0,
                KeyCode::Enter => self.overlay = None,
                _ => {}
            },
            (Overlay::Hosts { cursor, picked }, code) => {
                let hosts: Vec<Arc<str>> = self.tail.hosts.iter().cloned().collect();
                match code {
                    KeyCode::Up | KeyCode::Char('k') => *cursor = cursor.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        *cursor = (*cursor + 1).min(hosts.len().saturating_sub(1))
                    }
                    KeyCode::Char(' ') => {
                        if let Some(h) = hosts.get(*cursor) {
                            if !picked.remove(h) {
                                picked.insert(h.clone());
                            }
                        }
                    }
                    KeyCode::Char('a') => {
                        if picked.is_empty() {
                            picked.extend(hosts.iter().cloned());
                        } else {
                            picked.clear();
                        }
                    }
                    KeyCode::Enter => {
                        self.tail.filter.hosts = std::mem::take(picked);
                        self.tail.refilter();
                        self.overlay = None;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    // --- mouse -------------------------------------------------------------------------------

    fn on_mouse(&mut self, m: MouseEvent) {
        let h = self.list_height();
        let step = 3;
        match m.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let down = m.kind == MouseEventKind::ScrollDown;
                self.dirty = true;
                if let Some(Overlay::Record(_, s) | Overlay::Group(_, s)) = self.overlay.as_mut() {
                    *s = if down {
                        s.saturating_add(step as u16)
                    } else {
                        s.saturating_sub(step as u16)
                    };
                    return;
                }
                if self.overlay.is_some() || self.prompt.is_some() {
                    return;
                }
                let delta = if down {
                    step as isize
                } else {
                    -(step as isize)
                };
                match self.view {
                    View::Tail => self.tail.move_by(delta, h),
                    View::Metrics => move_sel(&mut self.host_selected, self.hosts.len(), delta),
                    View::Lag => move_sel(&mut self.group_selected, self.groups.len(), delta),
                    View::Topics => move_sel(&mut self.topic_selected, self.topics.len(), delta),
                    View::Search => {
                        move_sel(&mut self.search.selected, self.search.results.len(), delta)
                    }
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if self.overlay.is_some() || self.prompt.is_some() {
                    return;
                }
                self.dirty = true;
                // The tab bar: a click on a view's title switches to it.
                if m.row == 0 {
                    if let Some(v) = views::tab_at(m.column) {
                        self.view = v;
                    }
                    return;
                }
                let area = views::list_area(self);
                if !contains(area, m.column, m.row) {
                    return;
                }
                let row = (m.row - area.y) as usize;
                match self.view {
                    View::Tail => {
                        let (top, _) = self.tail.window(h);
                        if top + row < self.tail.visible_len() {
                            self.tail.select(top + row, h);
                        }
                    }
                    View::Metrics => click_sel(&mut self.host_selected, self.hosts.len(), h, row),
                    View::Lag => click_sel(&mut self.group_selected, self.groups.len(), h, row),
                    View::Topics => click_sel(&mut self.topic_selected, self.topics.len(), h, row),
                    View::Search => {
                        click_sel(&mut self.search.selected, self.search.results.len(), h, row)
                    }
                }
            }
            _ => {}
        }
    }
}

fn contains(r: Rect, x: u16, y: u16) -> bool {
    x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height
}

/// The first row shown of a list `height` rows high with row `selected` selected: the
/// selection stays on screen, the list scrolled as little as needed.
pub fn list_top(selected: usize, height: usize) -> usize {
    selected.saturating_sub(height.max(1) - 1)
}

fn click_sel(selected: &mut usize, n: usize, height: usize, row: usize) {
    let i = list_top(*selected, height) + row;
    if i < n {
        *selected = i;
    }
}

fn move_sel(selected: &mut usize, n: usize, delta: isize) {
    *selected = selected
        .saturating_add_signed(delta)
        .min(n.saturating_sub(1));
}

/// Up/Down, PgUp/PgDn, Home/End on a plain list.
fn list_key(selected: &mut usize, n: usize, height: usize, key: KeyEvent) {
    let h = height as isize;
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => move_sel(selected, n, -1),
        KeyCode::Down | KeyCode::Char('j') => move_sel(selected, n, 1),
        KeyCode::PageUp => move_sel(selected, n, -h),
        KeyCode::PageDown => move_sel(selected, n, h),
        KeyCode::Home | KeyCode::Char('g') => *selected = 0,
        KeyCode::End | KeyCode::Char('G') => *selected = n.saturating_sub(1),
        _ => {}
    }
}

fn push_bounded(v: &mut VecDeque<u64>, x: u64, cap: usize) {
    if v.len() == cap {
        v.pop_front();
    }
    v.push_back(x);
}

/// Parses the Search prompt: words `since:T`, `until:T` (15m, 1h, 2d or RFC 3339),
/// `host:H` (repeatable), `level:L` and `source:GLOB` are filters; the rest, joined by
/// single spaces, is the regex (empty: every record).
pub fn parse_search(text: &str, now_ms: i64, topic: &str) -> Result<search::Options, String> {
    let mut regex = Vec::new();
    let mut filter = Filter::default();
    let (mut since_ms, mut until_ms) = (None, None);
    for word in text.split_whitespace() {
        match word.split_once(':') {
            Some(("since", v)) => {
                since_ms = Some(parse_time(v, now_ms).map_err(|e| format!("since: {e}"))?)
            }
            Some(("until", v)) => {
                until_ms = Some(parse_time(v, now_ms).map_err(|e| format!("until: {e}"))?)
            }
            Some(("host", v)) if !v.is_empty() => filter.hosts.push(v.to_string()),
            Some(("source", v)) => filter.source = Some(Filter::source_glob(v)?),
            Some(("level", v)) => {
                let l = super::entry::parse_level(v).ok_or_else(|| {
                    format!("level: expected error, warn, info, debug or trace, got {v:?}")
                })?;
                filter.level = Some(l.as_str().to_string());
            }
            _ => regex.push(word),
        }
    }
    let matcher = Matcher::new(&regex.join(" "), false, false).map_err(|e| e.to_string())?;
    Ok(search::Options {
        topic: topic.to_string(),
        matcher,
        filter,
        since_ms,
        until_ms,
        limit: Some(SEARCH_LIMIT),
        count_only: false,
        follow: false,
    })
}
