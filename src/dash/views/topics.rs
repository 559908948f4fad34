//! The Topics view: partitions, records held, log-end offsets, the append rate and its trend,
//! retention.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::dash::app::{list_top, App};
use crate::dash::widgets::{age, bytes, count, fit, si, sparkline};

fn retention(ms: Option<i64>, b: Option<i64>) -> String {
    let time = match ms {
        Some(ms) if ms < 0 => "forever".to_string(),
        Some(ms) => age(ms),
        None => "?".to_string(),
    };
    match b {
        Some(b) if b >= 0 => format!("{time}, {}", bytes(b as f64)),
        _ => time,
    }
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if app.topics.is_empty() {
        let msg = match app.connection() {
            Some(crate::dash::action::SourceState::Failing(e)) => {
                format!("cannot list topics: {e}")
            }
            None => "listing topics…".to_string(),
            Some(_) => "no topics yet".to_string(),
        };
        f.render_widget(Paragraph::new(Span::styled(msg, t.dim())), area);
        return;
    }
    let rows_h = area.height.saturating_sub(1) as usize;
    let top = list_top(app.topic_selected, rows_h);
    let trend_w = if area.width < 100 { 12 } else { 30 };
    let rows = app
        .topics
        .iter()
        .enumerate()
        .skip(top)
        .take(rows_h)
        .map(|(i, tv)| {
            let row = Row::new(vec![
                Cell::from(fit(&tv.info.name, 24)),
                Cell::from(tv.info.partitions.len().to_string()),
                Cell::from(count(tv.info.records().max(0) as u64)),
                Cell::from(count(tv.info.end_total().max(0) as u64)),
                Cell::from(format!("{}/s", si(tv.rate))),
                Cell::from(Span::styled(
                    sparkline(tv.rates.iter(), trend_w),
                    t.chart(0),
                )),
                Cell::from(retention(tv.info.retention_ms, tv.info.retention_bytes)),
            ]);
            if i == app.topic_selected {
                row.style(t.selected())
            } else {
                row
            }
        });
    let widths = [
        Constraint::Min(10),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(trend_w as u16),
        Constraint::Length(9),
    ];
    let header = Row::new([
        "TOPIC",
        "PARTS",
        "RECORDS",
        "END OFFSET",
        "RATE",
        "TREND",
        "RETENTION",
    ])
    .style(t.header());
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}
