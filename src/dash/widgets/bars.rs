//! The tab bar (top), the context bar (filters, prompt, messages) and the status bar
//! (bottom).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::count;
use crate::dash::action::SourceState;
use crate::dash::app::{App, PromptKind, View};

/// Where each tab starts and ends on the tab bar (for mouse clicks): " 1 Tail " etc.
pub fn tab_spans() -> Vec<(u16, u16, View)> {
    let mut x = 0u16;
    View::ALL
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = (format!(" {} {} ", i + 1, v.title()).len()) as u16;
            let span = (x, x + w, v);
            x += w + 1;
            span
        })
        .collect()
}

pub fn draw_tabs(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = Vec::new();
    for (i, &v) in View::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, v.title());
        spans.push(if v == app.view {
            Span::styled(text, t.tab_active())
        } else {
            Span::styled(text, t.dim())
        });
        spans.push(Span::raw(" "));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let title = "rill dash";
    let room = (area.width as usize).saturating_sub(used + title.len() + 1);
    if room > 0 {
        spans.push(Span::raw(" ".repeat(room)));
        spans.push(Span::styled(title, t.header()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The line above the status bar: the open prompt, else a message, else the view's context
/// (the Tail's filters and follow state).
pub fn draw_context(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let line = if let Some(p) = &app.prompt {
        let (lead, what) = match p.kind {
            PromptKind::Include => ("/", "include regex"),
            PromptKind::Exclude => ("\\", "exclude regex"),
            PromptKind::Search => (
                "search:",
                "regex since:1h until:5m host:H level:L source:GLOB",
            ),
        };
        let mut spans = vec![
            Span::styled(format!("{lead} "), t.key()),
            Span::raw(p.text.clone()),
            Span::styled("█", t.dim()),
        ];
        match &p.error {
            Some(e) => spans.push(Span::styled(format!("  {e}"), t.bad())),
            None if p.text.is_empty() => {
                spans.push(Span::styled(
                    format!("  {what} · Enter applies · Esc cancels"),
                    t.dim(),
                ));
                if p.kind != PromptKind::Search && !app.tail.filter.patterns.is_empty() {
                    spans.push(Span::styled(
                        " · Backspace removes the last filter",
                        t.dim(),
                    ));
                }
            }
            None => {}
        }
        Line::from(spans)
    } else if let Some(m) = &app.message {
        Line::from(Span::styled(m.text.clone(), t.warn()))
    } else if app.view == View::Tail {
        tail_context(app)
    } else {
        Line::default()
    };
    f.render_widget(Paragraph::new(line), area);
}

fn tail_context(app: &App) -> Line<'static> {
    let t = &app.theme;
    let tail = &app.tail;
    let mut spans = Vec::new();
    if tail.paused {
        spans.push(Span::styled(
            format!(
                "⏸ PAUSED · {} new · Space resumes",
                count(tail.arrived_while_paused())
            ),
            t.warn(),
        ));
    } else if tail.follow {
        spans.push(Span::styled("▶ following", t.ok()));
    } else {
        spans.push(Span::styled("↑ scrolled · End follows", t.warn()));
    }
    spans.push(Span::styled(
        format!(
            " · {} of {} shown",
            count(tail.visible_len() as u64),
            count(tail.len() as u64)
        ),
        t.dim(),
    ));
    let f = &tail.filter;
    for p in &f.patterns {
        if p.include {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(format!("+/{}/", p.as_str()), t.ok()));
        } else {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(format!("-\\{}\\", p.as_str()), t.bad()));
        }
    }
    if let Some(l) = f.min_level {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("level≥{}", l.as_str()),
            t.level(Some(l)),
        ));
    }
    if !f.hosts.is_empty() {
        let hosts: Vec<&str> = f.hosts.iter().map(|h| &**h).collect();
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!("hosts:{}", hosts.join(",")), t.host()));
    }
    Line::from(spans)
}

pub fn draw_status(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    match app.connection() {
        None => spans.push(Span::raw(format!("◌ {} connecting…", app.brokers))),
        Some(SourceState::Ok(_)) => {
            spans.push(Span::styled("●", t.ok()));
            spans.push(Span::raw(format!(" {} connected", app.brokers)));
        }
        Some(SourceState::Failing(why)) => {
            spans.push(Span::styled("✖", t.bad()));
            spans.push(Span::raw(format!(" {} ", app.brokers)));
            spans.push(Span::styled(
                format!("disconnected, retrying: {why}"),
                t.bad(),
            ));
        }
    }
    spans.push(Span::raw(format!(
        " │ {} {}/s",
        app.topic,
        count(app.rate().round() as u64)
    )));
    // Another source in trouble (e.g. a topic that does not exist yet) says so too.
    if let Some((kind, SourceState::Failing(why))) = app.sources.iter().find(|(k, s)| {
        **k != crate::dash::action::SourceKind::Topics && matches!(s, SourceState::Failing(_))
    }) {
        if matches!(app.connection(), Some(SourceState::Ok(_))) {
            spans.push(Span::styled(format!(" │ {}: {why}", kind.name()), t.warn()));
        }
    }
    let hints = " ? help  q quit ";
    let width = area.width as usize;
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    // The label takes what the connection state and the key hints leave.
    if let Some(label) = &app.label {
        let room = width.saturating_sub(used + hints.len() + 3);
        if room >= 8 {
            spans.push(Span::raw(format!(" │ {}", super::fit(label, room))));
        }
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    if used + hints.len() <= width {
        spans.push(Span::raw(" ".repeat(width - used - hints.len())));
        spans.push(Span::raw(hints));
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.bar()), area);
}
