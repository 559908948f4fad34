//! The Metrics view: a table of hosts (stale ones marked) and the selected host's CPU,
//! memory and network over the last minutes.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table};
use ratatui::Frame;

use crate::dash::app::{list_top, App, HostMetrics, METRICS_WINDOW_MS, STALE_AFTER_MS};
use crate::dash::widgets::{self, age, bytes, fit};

/// The host table's area: its rows plus a header, at most 40 % of the view, at least 4 rows.
pub fn table_area(main: Rect, hosts: usize) -> Rect {
    let want = (hosts as u16).saturating_add(1).max(4);
    let max = (main.height * 2 / 5).max(4);
    Rect {
        height: want.min(max).min(main.height),
        ..main
    }
}

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if app.hosts.is_empty() {
        let msg = format!(
            "no metric samples on topic {:?} in the last 15 minutes (rill-agent publishes them)",
            app.metrics_topic
        );
        f.render_widget(Paragraph::new(Span::styled(msg, t.dim())), area);
        return;
    }
    let table = table_area(area, app.hosts.len());
    let rows_h = table.height.saturating_sub(1) as usize;
    let top = list_top(app.host_selected, rows_h);
    let narrow = area.width < 100;
    let rows = app
        .hosts
        .iter()
        .enumerate()
        .skip(top)
        .take(rows_h)
        .map(|(i, (name, h))| {
            let s = &h.latest;
            let since = app.now_ms - h.last_seen_ms;
            let stale = since > STALE_AFTER_MS;
            let seen = if stale {
                Span::styled(format!("stale {}", age(since)), t.bad())
            } else {
                Span::raw(format!("{} ago", age(since)))
            };
            let mem_pct = if s.mem.total_bytes > 0 {
                s.mem.used_bytes as f64 * 100.0 / s.mem.total_bytes as f64
            } else {
                0.0
            };
            let rx: f64 = s.net.iter().map(|n| n.rx_bps).sum();
            let tx: f64 = s.net.iter().map(|n| n.tx_bps).sum();
            let mem = if narrow {
                format!("{mem_pct:.0}%")
            } else {
                format!(
                    "{mem_pct:.0}% {}/{}",
                    bytes(s.mem.used_bytes as f64),
                    bytes(s.mem.total_bytes as f64)
                )
            };
            let row = Row::new(vec![
                Cell::from(Span::styled(
                    fit(name, if narrow { 12 } else { 16 }),
                    t.host(),
                )),
                Cell::from(seen),
                Cell::from(Span::styled(
                    format!("{:.1}%", s.cpu.usage_pct),
                    pct_style(app, f64::from(s.cpu.usage_pct)),
                )),
                Cell::from(Span::styled(mem, pct_style(app, mem_pct))),
                Cell::from(format!(
                    "{:.2} {:.2} {:.2}",
                    s.load[0], s.load[1], s.load[2]
                )),
                Cell::from(format!("↓{}/s ↑{}/s", bytes(rx), bytes(tx))),
            ]);
            let row = if stale { row.style(t.dim()) } else { row };
            if i == app.host_selected {
                row.style(t.selected())
            } else {
                row
            }
        });
    let widths = [
        Constraint::Length(if narrow { 12 } else { 16 }),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(if narrow { 4 } else { 24 }),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    let header =
        Row::new(["HOST", "LAST SEEN", "CPU", "MEM", "LOAD 1/5/15", "NET"]).style(t.header());
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table,
    );

    let charts = Rect {
        y: table.y + table.height,
        height: area.height - table.height,
        ..area
    };
    if charts.height < 4 {
        return;
    }
    let Some((name, host)) = app.hosts.iter().nth(app.host_selected) else {
        return;
    };
    let parts = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(charts);
    let cpu: Vec<(f64, f64)> = points(app, host, |p| p.cpu_pct);
    let mem: Vec<(f64, f64)> = points(app, host, |p| p.mem_pct);
    let rx: Vec<(f64, f64)> = points(app, host, |p| p.rx_bps);
    let tx: Vec<(f64, f64)> = points(app, host, |p| p.tx_bps);
    let now = host.history.back().map_or(0.0, |p| p.cpu_pct);
    let mem_now = host.history.back().map_or(0.0, |p| p.mem_pct);
    pct_chart(
        f,
        app,
        host,
        parts[0],
        &format!("{name} CPU {now:.1}%"),
        &cpu,
        0,
    );
    pct_chart(
        f,
        app,
        host,
        parts[1],
        &format!("MEM {mem_now:.0}%"),
        &mem,
        1,
    );
    let max = rx.iter().chain(tx.iter()).map(|p| p.1).fold(1.0, f64::max);
    let net_title = format!(
        "NET ↓{}B/s ↑{}B/s",
        widgets::si(rx.last().map_or(0.0, |p| p.1)),
        widgets::si(tx.last().map_or(0.0, |p| p.1))
    );
    let datasets = vec![
        Dataset::default()
            .name("rx")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.chart(2))
            .data(&rx),
        Dataset::default()
            .name("tx")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.chart(3))
            .data(&tx),
    ];
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(Line::from(net_title)))
        .x_axis(x_axis(app, host))
        .y_axis(
            Axis::default()
                .bounds([0.0, max * 1.1])
                .labels([Span::raw("0"), Span::raw(widgets::si(max))])
                .style(t.dim()),
        )
        .hidden_legend_constraints(if narrow {
            (Constraint::Length(0), Constraint::Length(0))
        } else {
            (Constraint::Ratio(1, 4), Constraint::Ratio(1, 2))
        });
    f.render_widget(chart, parts[2]);
}

fn pct_style(app: &App, pct: f64) -> ratatui::style::Style {
    if pct >= 90.0 {
        app.theme.bad()
    } else if pct >= 70.0 {
        app.theme.warn()
    } else {
        ratatui::style::Style::new()
    }
}

/// (seconds before now, value) of the host's points in the window.
fn points(
    app: &App,
    host: &HostMetrics,
    value: impl Fn(&crate::dash::app::MetricPoint) -> f64,
) -> Vec<(f64, f64)> {
    host.history
        .iter()
        .filter(|p| app.now_ms - p.ts_ms <= METRICS_WINDOW_MS)
        .map(|p| (((p.ts_ms - app.now_ms) as f64 / 1000.0).min(0.0), value(p)))
        .collect()
}

/// The time axis spans the host's history (at least a minute, at most the 15-minute window),
/// so a host seen for 30 s does not get a line squeezed against the right edge.
fn x_axis(app: &App, host: &HostMetrics) -> Axis<'static> {
    let oldest = host.history.front().map_or(app.now_ms, |p| p.ts_ms);
    let span_ms = (app.now_ms - oldest).clamp(60_000, METRICS_WINDOW_MS);
    Axis::default()
        .bounds([-(span_ms as f64) / 1000.0, 0.0])
        .labels([
            Span::raw(format!("-{}", age(span_ms))),
            Span::raw("now".to_string()),
        ])
        .style(app.theme.dim())
}

fn pct_chart(
    f: &mut Frame,
    app: &App,
    host: &HostMetrics,
    area: Rect,
    title: &str,
    data: &[(f64, f64)],
    colour: usize,
) {
    let t = &app.theme;
    let datasets = vec![Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.chart(colour))
        .data(data)];
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title.to_string()))
        .x_axis(x_axis(app, host))
        .y_axis(
            Axis::default()
                .bounds([0.0, 100.0])
                .labels([Span::raw("0"), Span::raw("100")])
                .style(t.dim()),
        );
    f.render_widget(chart, area);
}
