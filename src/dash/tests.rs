//! The views against ratatui's TestBackend with fixed data (insta snapshots under
//! src/dash/snapshots/), and every key of the contract on the App.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::action::{Action, DataEvent, SourceKind, SourceState, TopicInfo};
use super::app::{App, Effect, Overlay, View};
use super::entry::{Decoder, LogEntry};
use super::theme::Theme;
use super::views;
use crate::lag::{GroupInfo, GroupSnapshot, Member, PartitionLag};
use crate::record::{CpuStats, Level, MemStats, MetricSample, NetStats};

/// 2024-05-01T12:00:00Z
const NOW: i64 = 1_714_564_800_000;

fn log(
    d: &mut Decoder,
    i: i64,
    host: &str,
    source: &str,
    level: Option<&str>,
    line: &str,
) -> LogEntry {
    let mut rec = serde_json::json!({
        "ts": super::widgets::rfc3339(NOW - 60_000 + i * 1000),
        "host": host, "source": source, "line": line,
    });
    if let Some(l) = level {
        rec["level"] = l.into();
    }
    let mut headers: Vec<(Box<str>, Box<str>)> = vec![
        ("host".into(), host.into()),
        ("source".into(), source.into()),
    ];
    if let Some(l) = level {
        headers.push(("level".into(), l.into()));
    }
    d.decode(
        (i % 3) as i32,
        1000 + i,
        NOW - 60_000 + i * 1000,
        rec.to_string().as_bytes(),
        headers,
    )
}

fn logs() -> Vec<LogEntry> {
    let mut d = Decoder::default();
    let lines = [
        (
            "web-1",
            "/var/log/nginx/access.log",
            Some("info"),
            "GET /api/orders/1842 200 12ms",
        ),
        (
            "web-2",
            "/var/log/nginx/access.log",
            Some("info"),
            "GET /api/cart 200 8ms",
        ),
        (
            "db-1",
            "/var/log/postgresql/main.log",
            None,
            "LOG:  checkpoint complete: wrote 214 buffers (1.3%)",
        ),
        (
            "web-1",
            "/srv/app/app.log",
            Some("warn"),
            "WARN payment provider slow: 1.8s (retrying)",
        ),
        (
            "web-2",
            "/srv/app/app.log",
            Some("error"),
            "ERROR order 1843: card declined",
        ),
        (
            "web-1",
            "/var/log/nginx/access.log",
            Some("info"),
            "GET /api/orders/1843 502 1803ms",
        ),
        (
            "db-1",
            "/var/log/postgresql/main.log",
            Some("warn"),
            "WARNING:  could not send data to client: Broken pipe",
        ),
        (
            "web-2",
            "/srv/app/app.log",
            Some("debug"),
            "DEBUG cache hit ratio 0.93",
        ),
        (
            "web-1",
            "/srv/app/app.log",
            Some("error"),
            "ERROR upstream timeout after 5000ms\n  at fetch (client.rs:88)",
        ),
        (
            "web-2",
            "/var/log/nginx/access.log",
            Some("info"),
            "POST /api/checkout 201 64ms",
        ),
    ];
    (0..40)
        .map(|i| {
            let (h, s, l, line) = lines[i as usize % lines.len()];
            log(&mut d, i, h, s, l, line)
        })
        .collect()
}

fn sample(host: &str, cpu: f32, used: u64, rx: f64) -> MetricSample {
    MetricSample {
        ts: String::new(),
        host: host.into(),
        cpu: CpuStats {
            usage_pct: cpu,
            cores_pct: vec![cpu, cpu],
        },
        mem: MemStats {
            used_bytes: used,
            total_bytes: 8 << 30,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
        },
        load: [0.42, 0.35, 0.3],
        disks: vec![],
        net: vec![NetStats {
            iface: "eth0".into(),
            rx_bps: rx,
            tx_bps: rx / 3.0,
        }],
        procs: vec![],
        agent: None,
    }
}

fn group(
    name: &str,
    members: usize,
    committed: [Option<i64>; 3],
    end: i64,
    at: i64,
) -> GroupSnapshot {
    let members: Vec<Member> = (0..members)
        .map(|i| Member {
            member_id: format!("{name}-{i}"),
            client_id: "rdkafka".into(),
            host: "/10.0.0.7".into(),
            assignment: Some(vec![("logs".into(), vec![i as i32])]),
            assignment_error: None,
            subscription: vec!["logs".into()],
        })
        .collect();
    let partitions = committed
        .iter()
        .enumerate()
        .map(|(p, &c)| {
            let lag = crate::lag::records_lag(c, 0, end);
            PartitionLag {
                topic: "logs".into(),
                partition: p as i32,
                committed: c,
                start: 0,
                end,
                lag,
                lag_ms: Some(lag * 10),
                owner: members.get(p).map(|m| m.member_id.clone()),
            }
        })
        .collect();
    GroupSnapshot {
        info: GroupInfo {
            group: name.into(),
            state: if members.is_empty() {
                "Empty".into()
            } else {
                "Stable".into()
            },
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members,
        },
        partitions,
        at_ms: at,
    }
}

/// An App holding a bit of everything, as a real run would after a minute.
fn app(w: u16, h: u16) -> App {
    let mut app = App::new(
        "127.0.0.1:9092",
        "logs",
        "metrics",
        1000,
        Some("rill up · data in ~/.local/share/rill".into()),
        Theme { colour: true },
        NOW - 2000,
    );
    app.update(Action::Resize(w, h));
    app.update(Action::Tick(NOW - 2000));
    app.update(Action::Data(DataEvent::Source(
        SourceKind::Topics,
        SourceState::Ok("3 topics".into()),
    )));
    app.update(Action::Data(DataEvent::Logs(logs())));
    app.update(Action::Tick(NOW));
    let mut samples = Vec::new();
    for i in 0..90 {
        let t = NOW - 900_000 + i * 10_000;
        let wave = ((i as f64) / 6.0).sin();
        samples.push((
            t,
            sample(
                "web-1",
                (35.0 + 20.0 * wave) as f32,
                (3 << 30) + (i as u64) * (8 << 20),
                2e6 + 1e6 * wave,
            ),
        ));
        samples.push((t, sample("db-1", (60.0 + 5.0 * wave) as f32, 6 << 30, 5e5)));
        if i < 40 {
            samples.push((t, sample("web-2", 12.0, 2 << 30, 1e5)));
        }
    }
    app.update(Action::Data(DataEvent::Metrics(samples)));
    for (k, at) in [
        (0i64, NOW - 6000),
        (1, NOW - 4000),
        (2, NOW - 2000),
        (3, NOW),
    ] {
        app.update(Action::Data(DataEvent::Lag(vec![
            group(
                "billing",
                3,
                [Some(100 + k * 50), Some(90 + k * 40), Some(120 + k * 45)],
                400 + k * 200,
                at,
            ),
            group(
                "indexer",
                2,
                [Some(400 + k * 200), Some(400 + k * 200), None],
                400 + k * 200,
                at,
            ),
            group(
                "archiver",
                0,
                [Some(50), Some(50), Some(50)],
                400 + k * 200,
                at,
            ),
        ])));
        let topic = |name: &str, per: i64, retention: i64| TopicInfo {
            name: name.into(),
            partitions: (0..3).map(|p| (p, 0, per * (k + 1) + p as i64)).collect(),
            retention_ms: Some(retention),
            retention_bytes: None,
            at_ms: at,
        };
        app.update(Action::Data(DataEvent::Topics(vec![
            topic("logs", 2400, 7 * 86_400_000),
            topic("metrics", 6, 86_400_000),
            topic("orders", 150, -1),
        ])));
    }
    app
}

fn render(app: &App) -> String {
    let (w, h) = app.size;
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    terminal.draw(|f| views::draw(f, app)).expect("draw");
    terminal.backend().to_string()
}

fn key(app: &mut App, code: KeyCode) {
    app.update(Action::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

// --- snapshots -----------------------------------------------------------------------------

#[test]
fn snapshot_tail() {
    insta::assert_snapshot!("tail_80x24", render(&app(80, 24)));
    insta::assert_snapshot!("tail_120x30", render(&app(120, 30)));
}

#[test]
fn snapshot_tail_filtered_paused() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "ERROR|WARN");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Char('\\'));
    typed(&mut a, "payment");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Char(' '));
    a.update(Action::Data(DataEvent::Logs(logs())));
    insta::assert_snapshot!("tail_filtered_paused_80x24", render(&a));
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "a(");
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("tail_prompt_error_80x24", render(&a));
}

#[test]
fn snapshot_record_and_hosts() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('E'));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("record_80x24", render(&a));
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('h'));
    key(&mut a, KeyCode::Char(' '));
    insta::assert_snapshot!("hosts_80x24", render(&a));
}

#[test]
fn snapshot_metrics() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('2'));
    insta::assert_snapshot!("metrics_80x24", render(&a));
    let mut a = app(120, 30);
    key(&mut a, KeyCode::Char('2'));
    key(&mut a, KeyCode::Down);
    insta::assert_snapshot!("metrics_120x30", render(&a));
}

#[test]
fn snapshot_lag() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('3'));
    insta::assert_snapshot!("lag_80x24", render(&a));
    key(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("lag_partitions_80x24", render(&a));
}

#[test]
fn snapshot_topics() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('4'));
    insta::assert_snapshot!("topics_80x24", render(&a));
}

#[test]
fn snapshot_search() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('5'));
    insta::assert_snapshot!("search_empty_80x24", render(&a));
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "timeout|declined level:error");
    key(&mut a, KeyCode::Enter);
    let effects = a.take_effects();
    let id = match effects.as_slice() {
        [Effect::StartSearch(id, o)] => {
            assert_eq!(o.filter.level.as_deref(), Some("error"));
            *id
        }
        other => panic!("expected one search, got {other:?}"),
    };
    let hits: Vec<LogEntry> = logs()
        .into_iter()
        .filter(|e| e.level == Some(Level::Error))
        .collect();
    a.update(Action::Data(DataEvent::SearchHits(id, hits)));
    a.update(Action::Data(DataEvent::SearchDone(
        id,
        Ok(super::action::SearchProgress {
            scanned: 40,
            bytes: 4000,
            matched: 8,
        }),
    )));
    insta::assert_snapshot!("search_80x24", render(&a));
}

#[test]
fn snapshot_help_and_disconnected() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!("help_80x24", render(&a));
    key(&mut a, KeyCode::Esc);
    a.update(Action::Data(DataEvent::Source(
        SourceKind::Topics,
        SourceState::Failing("broker unreachable".into()),
    )));
    let screen = render(&a);
    assert!(
        screen.contains("disconnected, retrying: broker unreachable"),
        "{screen}"
    );
}

// --- keys ----------------------------------------------------------------------------------

#[test]
fn view_keys() {
    let mut a = app(80, 24);
    for (c, v) in [
        ('2', View::Metrics),
        ('3', View::Lag),
        ('4', View::Topics),
        ('5', View::Search),
        ('1', View::Tail),
    ] {
        key(&mut a, KeyCode::Char(c));
        assert_eq!(a.view, v);
    }
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.view, View::Metrics);
    key(&mut a, KeyCode::BackTab);
    key(&mut a, KeyCode::BackTab);
    assert_eq!(a.view, View::Search);
    key(&mut a, KeyCode::Char('?'));
    assert!(matches!(a.overlay, Some(Overlay::Help)));
    key(&mut a, KeyCode::Char('1'));
    assert_eq!(
        a.view,
        View::Search,
        "keys go to the overlay while it is open"
    );
    key(&mut a, KeyCode::Esc);
    assert!(a.overlay.is_none());
    assert!(!a.quit);
    key(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
    let mut a = app(80, 24);
    a.update(Action::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(a.quit);
}

#[test]
fn filter_prompt_keys() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "GET q1");
    assert!(!a.quit, "q types into the prompt");
    key(&mut a, KeyCode::Esc);
    assert!(a.prompt.is_none());
    assert!(a.tail.filter.patterns.is_empty(), "Esc cancels");
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "GET");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.tail.visible_len(), 12);
    key(&mut a, KeyCode::Char('\\'));
    typed(&mut a, "cart");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.tail.visible_len(), 8);
    assert_eq!(a.tail.filter.patterns.len(), 2);
    // Backspace on an empty prompt removes the last filter.
    key(&mut a, KeyCode::Char('/'));
    key(&mut a, KeyCode::Backspace);
    assert_eq!(a.tail.filter.patterns.len(), 1);
    assert_eq!(a.tail.visible_len(), 12);
    // An invalid regex keeps the prompt open with the error.
    typed(&mut a, "(");
    key(&mut a, KeyCode::Enter);
    assert!(a.prompt.as_ref().is_some_and(|p| p.error.is_some()));
    key(&mut a, KeyCode::Esc);
    // l cycles the minimum level.
    key(&mut a, KeyCode::Backspace);
    let mut a = app(80, 24);
    for want in [
        Some(Level::Debug),
        Some(Level::Info),
        Some(Level::Warn),
        Some(Level::Error),
        None,
    ] {
        key(&mut a, KeyCode::Char('l'));
        assert_eq!(a.tail.filter.min_level, want);
    }
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('l'));
    assert_eq!(a.tail.visible_len(), 8, "errors only");
}

#[test]
fn host_picker_keys() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('h'));
    // Hosts in order: db-1, web-1, web-2.
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Char(' '));
    key(&mut a, KeyCode::Enter);
    assert!(a.overlay.is_none());
    assert_eq!(
        a.tail.filter.hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
        ["web-1"]
    );
    assert_eq!(a.tail.visible_len(), 16);
    key(&mut a, KeyCode::Char('h'));
    key(&mut a, KeyCode::Char('a'));
    key(&mut a, KeyCode::Enter);
    assert!(a.tail.filter.hosts.is_empty());
    assert_eq!(a.tail.visible_len(), 40);
}

#[test]
fn pause_scroll_and_jump_keys() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char(' '));
    assert!(a.tail.paused);
    a.update(Action::Data(DataEvent::Logs(logs())));
    assert_eq!(a.tail.len(), 40);
    assert_eq!(a.tail.arrived_while_paused(), 40);
    key(&mut a, KeyCode::Char(' '));
    assert_eq!(a.tail.len(), 80);
    assert!(a.tail.follow);
    key(&mut a, KeyCode::Up);
    assert!(!a.tail.follow);
    assert_eq!(a.tail.selected_index(), Some(78));
    key(&mut a, KeyCode::PageUp);
    assert_eq!(a.tail.selected_index(), Some(78 - a.list_height()));
    key(&mut a, KeyCode::Home);
    assert_eq!(a.tail.selected_index(), Some(0));
    key(&mut a, KeyCode::PageDown);
    assert_eq!(a.tail.selected_index(), Some(a.list_height()));
    // e/E: errors are rows 4, 8, 14, 18, ...
    key(&mut a, KeyCode::Home);
    key(&mut a, KeyCode::Char('e'));
    assert_eq!(a.tail.selected_index(), Some(4));
    key(&mut a, KeyCode::Char('e'));
    assert_eq!(a.tail.selected_index(), Some(8));
    key(&mut a, KeyCode::Char('E'));
    assert_eq!(a.tail.selected_index(), Some(4));
    key(&mut a, KeyCode::Char('E'));
    assert_eq!(a.tail.selected_index(), Some(4));
    assert!(a.message.is_some(), "says there is no previous error");
    // n/N: matches of the include filters.
    key(&mut a, KeyCode::Char('n'));
    assert!(a
        .message
        .as_ref()
        .is_some_and(|m| m.text.contains("no pattern")));
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "orders|cart");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Home);
    key(&mut a, KeyCode::Char('n'));
    assert_eq!(a.tail.selected_index(), Some(1));
    key(&mut a, KeyCode::Char('N'));
    assert_eq!(a.tail.selected_index(), Some(0));
    key(&mut a, KeyCode::End);
    assert!(a.tail.follow);
    key(&mut a, KeyCode::Enter);
    match &a.overlay {
        Some(Overlay::Record(e, _)) => assert_eq!(e.offset, 1035),
        other => panic!("expected the record view, got {other:?}"),
    }
}

#[test]
fn lag_and_search_keys() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Char('3'));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Enter);
    assert!(matches!(&a.overlay, Some(Overlay::Group(g, 0)) if g == "billing"));
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('5'));
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "x since:yesterday");
    key(&mut a, KeyCode::Enter);
    assert!(a
        .prompt
        .as_ref()
        .is_some_and(|p| p.error.as_deref().is_some_and(|e| e.starts_with("since:"))));
    assert!(a.take_effects().is_empty());
    a.update(Action::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    typed(&mut a, "x");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Char('/'));
    typed(&mut a, "y");
    key(&mut a, KeyCode::Enter);
    let effects = a.take_effects();
    assert!(
        matches!(
            effects.as_slice(),
            [
                Effect::StartSearch(1, _),
                Effect::StopSearch(1),
                Effect::StartSearch(2, _)
            ]
        ),
        "{effects:?}"
    );
    // Hits of the replaced search are dropped.
    a.update(Action::Data(DataEvent::SearchHits(1, logs())));
    assert!(a.search.results.is_empty());
}

#[test]
fn mouse_scrolls_and_selects() {
    let mut a = app(80, 24);
    let mouse = |kind, column, row| {
        Action::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    a.update(mouse(MouseEventKind::ScrollUp, 10, 10));
    assert_eq!(a.tail.selected_index(), Some(36));
    // The list starts below the tab bar and the header: screen row 2 is list row 0.
    let (top, _) = a.tail.window(a.list_height());
    a.update(mouse(MouseEventKind::Down(MouseButton::Left), 10, 5));
    assert_eq!(a.tail.selected_index(), Some(top + 3));
    // A click on a tab switches to it.
    a.update(mouse(MouseEventKind::Down(MouseButton::Left), 12, 0));
    assert_eq!(a.view, View::Metrics);
    a.update(mouse(MouseEventKind::Down(MouseButton::Left), 3, 4));
    assert_eq!(a.host_selected, 2);
    a.update(mouse(MouseEventKind::ScrollUp, 3, 4));
    assert_eq!(a.host_selected, 0);
}

#[test]
fn usable_at_80x24_in_every_view() {
    for v in ['1', '2', '3', '4', '5'] {
        let mut a = app(80, 24);
        key(&mut a, KeyCode::Char(v));
        let screen = render(&a);
        assert!(screen.contains("connected"), "view {v}: {screen}");
        assert!(screen.contains("1 Tail"), "view {v}: {screen}");
    }
}

#[test]
fn no_color_draws_without_colours() {
    for v in ['1', '2', '3', '4', '5', '?'] {
        let mut a = app(80, 24);
        a.theme = Theme { colour: false };
        key(&mut a, KeyCode::Char(v));
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
        terminal.draw(|f| views::draw(f, &a)).expect("draw");
        let buffer = terminal.backend().buffer();
        for cell in buffer.content() {
            assert_eq!(
                cell.fg,
                ratatui::style::Color::Reset,
                "view {v}: a coloured cell {cell:?}"
            );
            assert_eq!(
                cell.bg,
                ratatui::style::Color::Reset,
                "view {v}: a coloured cell {cell:?}"
            );
        }
    }
}
