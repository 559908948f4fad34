//! Drawing: a pure function of the [`App`]. One module per view, plus the help and record
//! overlays. The geometry (where a view's list rows are) is computed here once, for drawing
//! and for turning mouse clicks into rows alike.

mod help;
mod lag;
mod metrics;
mod overlays;
mod search;
mod tail;
mod topics;

use ratatui::layout::Rect;
use ratatui::Frame;

use super::app::{App, View};
use super::widgets::bars;

/// The screen's parts: tabs on top, the view, the context line and the status bar.
pub struct Areas {
    pub tabs: Rect,
    pub main: Rect,
    pub context: Rect,
    pub status: Rect,
}

pub fn areas(width: u16, height: u16) -> Areas {
    let row = |y: u16| Rect {
        x: 0,
        y,
        width,
        height: 1,
    };
    let h = height.max(4);
    Areas {
        tabs: row(0),
        main: Rect {
            x: 0,
            y: 1,
            width,
            height: h - 3,
        },
        context: row(h - 2),
        status: row(h - 1),
    }
}

/// The rows of the current view's list (below its header): what scrolling and clicks act on.
pub fn list_area(app: &App) -> Rect {
    let main = areas(app.size.0, app.size.1).main;
    match app.view {
        View::Metrics => {
            let table = metrics::table_area(main, app.hosts.len());
            below(table, 1)
        }
        View::Search => below(main, 2),
        View::Tail | View::Lag | View::Topics => below(main, 1),
    }
}

fn below(r: Rect, rows: u16) -> Rect {
    Rect {
        y: r.y + rows.min(r.height),
        height: r.height.saturating_sub(rows),
        ..r
    }
}

/// The view whose tab is at column `x` of the tab bar.
pub fn tab_at(x: u16) -> Option<View> {
    bars::tab_spans()
        .into_iter()
        .find(|&(a, b, _)| x >= a && x < b)
        .map(|(_, _, v)| v)
}

pub fn draw(f: &mut Frame, app: &App) {
    let a = areas(f.area().width, f.area().height);
    bars::draw_tabs(f, app, a.tabs);
    match app.view {
        View::Tail => tail::draw(f, app, a.main),
        View::Metrics => metrics::draw(f, app, a.main),
        View::Lag => lag::draw(f, app, a.main),
        View::Topics => topics::draw(f, app, a.main),
        View::Search => search::draw(f, app, a.main),
    }
    bars::draw_context(f, app, a.context);
    bars::draw_status(f, app, a.status);
    overlays::draw(f, app, a.main);
}
