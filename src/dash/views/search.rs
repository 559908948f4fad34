//! The Search view: the query and its progress, then the results in time order, in the Tail
//! view's columns with the matches highlighted.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::tail::{header, row, Columns};
use crate::dash::app::{list_top, App, SEARCH_LIMIT};
use crate::dash::widgets::count;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let s = &app.search;
    let mut summary = Vec::new();
    if s.query.is_empty() && !s.running {
        summary.push(Span::styled(
            "/ searches the stored logs: a regex and filters, e.g.  timeout since:1h host:web1 level:error",
            t.dim(),
        ));
    } else {
        summary.push(Span::styled("query ", t.dim()));
        summary.push(Span::styled(s.query.clone(), t.key()));
        let state = if s.running {
            " · searching…"
        } else {
            " · done"
        };
        // The engine counts what it scanned in batches: 0 means "not reported yet".
        let scanned = match s.progress.scanned {
            0 => String::new(),
            n => format!(" {} records scanned,", count(n)),
        };
        summary.push(Span::raw(format!(
            "{state}{scanned} {} matches",
            count(s.results.len() as u64)
        )));
        if s.results.len() as u64 >= SEARCH_LIMIT {
            summary.push(Span::styled(
                format!(" (first {} shown: narrow the query)", count(SEARCH_LIMIT)),
                t.warn(),
            ));
        }
        if let Some(e) = &s.error {
            summary.push(Span::styled(format!(" · {e}"), t.bad()));
        }
    }
    let mut lines = vec![Line::from(summary)];
    let rows = area.height.saturating_sub(2) as usize;
    let top = list_top(s.selected, rows);
    let shown: Vec<_> = s.results.iter().skip(top).take(rows).collect();
    let cols = Columns::measure(shown.iter().copied(), area.width);
    lines.push(header(&cols, t));
    for (i, e) in shown.iter().enumerate() {
        let mut line = row(e, &cols, area.width, t, |text| {
            s.matcher
                .as_ref()
                .map(|m| m.find_ranges(text))
                .unwrap_or_default()
        });
        if top + i == s.selected {
            line = line.patch_style(t.selected());
        }
        lines.push(line);
    }
    if shown.is_empty() && !s.query.is_empty() && !s.running && s.error.is_none() {
        lines.push(Line::from(Span::styled("no matches", t.dim())));
    }
    f.render_widget(Paragraph::new(lines), area);
}
