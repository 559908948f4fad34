//! The Tail view: the newest records at the bottom; time, host, level, source and line, the
//! include filters' matches highlighted.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::dash::app::App;
use crate::dash::entry::LogEntry;
use crate::dash::theme::Theme;
use crate::dash::widgets::{self, fit, fit_end, one_row};

/// Column widths that suit what is on screen: hosts and sources as wide as the widest shown,
/// within limits that leave the line most of an 80-column terminal.
pub struct Columns {
    pub host: usize,
    pub source: usize,
}

impl Columns {
    pub fn measure<'a>(entries: impl Iterator<Item = &'a LogEntry>, width: u16) -> Columns {
        let (mut host, mut source) = (4usize, 6usize);
        for e in entries {
            host = host.max(e.host.chars().count());
            source = source.max(short_source(&e.source).chars().count());
        }
        let narrow = width < 100;
        Columns {
            host: host.min(if narrow { 10 } else { 16 }),
            source: source.min(if narrow { 12 } else { 24 }),
        }
    }
}

/// A source as the column shows it: the file name, the part that tells files apart.
pub fn short_source(source: &str) -> &str {
    source.rsplit('/').next().unwrap_or(source)
}

/// One record as a row: `time host level source line`.
pub fn row(
    e: &LogEntry,
    cols: &Columns,
    width: u16,
    theme: &Theme,
    highlights: impl Fn(&str) -> Vec<(usize, usize)>,
) -> Line<'static> {
    let level = e.level.map_or("-", |l| l.as_str());
    let fixed = 12 + 1 + cols.host + 1 + 5 + 1 + cols.source + 1;
    let text = one_row(&e.line, (width as usize).saturating_sub(fixed));
    let mut spans = vec![
        Span::styled(widgets::clock(e.ts_ms), theme.dim()),
        Span::raw(" "),
        Span::styled(
            format!("{:<w$}", fit(&e.host, cols.host), w = cols.host),
            theme.host(),
        ),
        Span::raw(" "),
        Span::styled(format!("{level:<5}"), theme.level(e.level)),
        Span::raw(" "),
        Span::styled(
            format!(
                "{:<w$}",
                fit_end(short_source(&e.source), cols.source),
                w = cols.source
            ),
            theme.source(),
        ),
        Span::raw(" "),
    ];
    let ranges = highlights(&text);
    spans.extend(widgets::highlighted(
        &text,
        &ranges,
        ratatui::style::Style::new(),
        theme.highlight(),
    ));
    Line::from(spans)
}

pub fn header(cols: &Columns, theme: &Theme) -> Line<'static> {
    Line::from(Span::styled(
        format!(
            "{:<12} {:<hw$} {:<5} {:<sw$} LINE",
            "TIME (UTC)",
            "HOST",
            "LEVEL",
            "SOURCE",
            hw = cols.host,
            sw = cols.source
        ),
        theme.header(),
    ))
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let tail = &app.tail;
    let rows = area.height.saturating_sub(1) as usize;
    let (top, selected) = tail.window(rows);
    let shown: Vec<&LogEntry> = (top..(top + rows).min(tail.visible_len()))
        .filter_map(|i| tail.visible_entry(i))
        .collect();
    let cols = Columns::measure(shown.iter().copied(), area.width);
    let mut lines = vec![header(&cols, t)];
    if tail.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("waiting for records on topic {:?}…", app.topic),
            t.dim(),
        )));
    } else if shown.is_empty() {
        lines.push(Line::from(Span::styled(
            "no record matches the filters (Backspace on an empty / prompt removes the last)",
            t.dim(),
        )));
    }
    for (i, e) in shown.iter().enumerate() {
        let mut line = row(e, &cols, area.width, t, |s| tail.filter.highlights(s));
        // The selected row is what Enter opens (following: the newest).
        if selected == Some(top + i) {
            line = line.patch_style(t.selected());
        }
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines), area);
}
