//! Windows over the view: help, the record view, the host picker and the lag per partition
//! of a group.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::help;
use crate::dash::app::{list_top, App, Overlay};
use crate::dash::entry::LogEntry;
use crate::dash::widgets::{age, centered, count, rfc3339, signed_count};

pub fn draw(f: &mut Frame, app: &App, main: Rect) {
    let Some(overlay) = &app.overlay else {
        return;
    };
    let t = &app.theme;
    match overlay {
        Overlay::Help => {
            let lines = help::lines(t);
            let area = centered(main, 78, lines.len() as u16 + 2);
            f.render_widget(Clear, area);
            f.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(" keys · Esc closes ")),
                area,
            );
        }
        Overlay::Record(e, scroll) => {
            let area = centered(main, main.width.saturating_sub(4).max(20), main.height);
            f.render_widget(Clear, area);
            f.render_widget(
                Paragraph::new(record_lines(app, e))
                    .wrap(Wrap { trim: false })
                    .scroll((*scroll, 0))
                    .block(Block::bordered().title(" record · ↑↓ scroll · Esc closes ")),
                area,
            );
        }
        Overlay::Hosts { cursor, picked } => {
            let hosts: Vec<_> = app.tail.hosts.iter().collect();
            let area = centered(main, 50, (hosts.len() as u16).max(1) + 3);
            f.render_widget(Clear, area);
            let rows_h = area.height.saturating_sub(3) as usize;
            let top = list_top(*cursor, rows_h);
            let mut lines: Vec<Line> = hosts
                .iter()
                .enumerate()
                .skip(top)
                .take(rows_h)
                .map(|(i, h)| {
                    let mark = if picked.contains(*h) { "[x]" } else { "[ ]" };
                    let line = Line::from(format!(" {mark} {h}"));
                    if i == *cursor {
                        line.patch_style(t.selected())
                    } else {
                        line
                    }
                })
                .collect();
            if hosts.is_empty() {
                lines.push(Line::from(Span::styled(" no hosts seen yet", t.dim())));
            }
            lines.push(Line::from(Span::styled(
                " Space tick · a all/none · Enter apply",
                t.dim(),
            )));
            f.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(" hosts ")),
                area,
            );
        }
        Overlay::Group(name, scroll) => {
            let Some(g) = app.groups.get(name) else {
                return;
            };
            let area = centered(main, main.width.saturating_sub(4).max(20), main.height);
            f.render_widget(Clear, area);
            let rows = g
                .snapshot
                .partitions
                .iter()
                .skip(*scroll as usize)
                .map(|p| {
                    Row::new(vec![
                        Cell::from(p.topic.clone()),
                        Cell::from(p.partition.to_string()),
                        Cell::from(p.committed.map_or_else(|| "-".to_string(), signed_count)),
                        Cell::from(signed_count(p.end)),
                        Cell::from(if p.committed.is_none() && p.lag > 0 {
                            format!("{}*", signed_count(p.lag))
                        } else {
                            signed_count(p.lag)
                        }),
                        Cell::from(p.lag_ms.map_or_else(|| "?".to_string(), age)),
                        Cell::from(p.owner.clone().unwrap_or_else(|| "-".to_string())),
                    ])
                });
            let widths = [
                Constraint::Min(10),
                Constraint::Length(4),
                Constraint::Length(11),
                Constraint::Length(11),
                Constraint::Length(11),
                Constraint::Length(8),
                Constraint::Min(10),
            ];
            let title = format!(
                " {name} · {} · {} members · lag {} · * never committed · Esc closes ",
                g.snapshot.info.state,
                g.snapshot.info.members.len(),
                count(g.snapshot.total_lag().max(0) as u64)
            );
            let header = Row::new([
                "TOPIC",
                "PART",
                "COMMITTED",
                "END",
                "LAG",
                "LAG TIME",
                "OWNER",
            ])
            .style(t.header());
            f.render_widget(
                Table::new(rows, widths)
                    .header(header)
                    .column_spacing(1)
                    .block(Block::bordered().title(title)),
                area,
            );
        }
    }
}

fn record_lines(app: &App, e: &LogEntry) -> Vec<Line<'static>> {
    let t = &app.theme;
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<10}"), t.header()),
            Span::raw(v),
        ])
    };
    let mut lines = vec![
        field("topic", app_topic(app)),
        field("partition", e.partition.to_string()),
        field("offset", e.offset.to_string()),
        field(
            "timestamp",
            format!("{} ({} ms)", rfc3339(e.ts_ms), e.ts_ms),
        ),
        field("level", e.level.map_or("-", |l| l.as_str()).to_string()),
    ];
    if e.headers.is_empty() {
        lines.push(field("headers", "none".into()));
    } else {
        for (i, (k, v)) in e.headers.iter().enumerate() {
            lines.push(field(
                if i == 0 { "headers" } else { "" },
                format!("{k}: {v}"),
            ));
        }
    }
    lines.push(Line::default());
    let body = match serde_json::from_slice::<serde_json::Value>(&e.value) {
        Ok(v) => serde_json::to_string_pretty(&v)
            .unwrap_or_else(|_| String::from_utf8_lossy(&e.value).into_owned()),
        Err(_) => String::from_utf8_lossy(&e.value).into_owned(),
    };
    lines.extend(body.lines().map(|l| Line::from(l.to_string())));
    lines
}

fn app_topic(app: &App) -> String {
    app.topic.clone()
}
