//! The Lag view: every consumer group, its lag in records and in time, a Burrow-style status
//! and the trend of its total lag. Enter opens the lag per partition (overlays.rs).

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::dash::app::{list_top, App, GroupView};
use crate::dash::widgets::{age, fit, signed_count, sparkline};
use crate::lag::Status;

pub fn status_cell(app: &App, g: &GroupView) -> Span<'static> {
    let t = &app.theme;
    match g.status {
        None => Span::styled("…", t.dim()),
        Some(s) => {
            let style = match s {
                Status::Ok => t.ok(),
                Status::Lagging => t.warn(),
                Status::Stalled => t.bad(),
                Status::Empty => t.dim(),
            };
            Span::styled(s.as_str(), style)
        }
    }
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if app.groups.is_empty() {
        let msg = match app.sources.get(&crate::dash::action::SourceKind::Lag) {
            Some(crate::dash::action::SourceState::Failing(e)) => {
                format!("cannot read consumer groups: {e}")
            }
            None => "reading consumer groups…".to_string(),
            Some(_) => "no consumer groups".to_string(),
        };
        f.render_widget(Paragraph::new(Span::styled(msg, t.dim())), area);
        return;
    }
    let rows_h = area.height.saturating_sub(1) as usize;
    let top = list_top(app.group_selected, rows_h);
    let trend_w = if area.width < 100 { 12 } else { 30 };
    let rows = app
        .groups
        .iter()
        .enumerate()
        .skip(top)
        .take(rows_h)
        .map(|(i, (name, g))| {
            let lag = g.snapshot.total_lag();
            let lag_time = match (lag, g.lag_ms()) {
                (0, _) => "0".to_string(),
                (_, Some(ms)) => age(ms),
                (_, None) => "?".to_string(),
            };
            let row = Row::new(vec![
                Cell::from(fit(name, 24)),
                Cell::from(g.snapshot.info.state.clone()),
                Cell::from(g.snapshot.info.members.len().to_string()),
                Cell::from(signed_count(lag)),
                Cell::from(lag_time),
                Cell::from(status_cell(app, g)),
                Cell::from(Span::styled(sparkline(g.trend.iter(), trend_w), t.chart(0))),
            ]);
            if i == app.group_selected {
                row.style(t.selected())
            } else {
                row
            }
        });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(trend_w as u16),
    ];
    let header = Row::new([
        "GROUP", "STATE", "MEMBERS", "LAG", "LAG TIME", "STATUS", "TREND",
    ])
    .style(t.header());
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}
