//! The help overlay: every key, by view. The keys are a contract (issue 5); this text and
//! `App::on_key` must agree, which the key tests check.

use ratatui::text::{Line, Span};

use crate::dash::theme::Theme;

pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("1-5  Tab  Shift-Tab", "switch view (or click its tab)"),
            ("?  Esc", "this help; Esc closes a prompt or an overlay"),
            ("q  Ctrl-C", "quit"),
            (
                "↑↓ PgUp PgDn Home End",
                "move; the mouse wheel scrolls, a click selects",
            ),
        ],
    ),
    (
        "1 Tail",
        &[
            (
                "/  \\",
                "add an include / exclude regex filter (they stack)",
            ),
            ("Backspace", "on an empty prompt: remove the last filter"),
            ("l", "cycle the minimum level: all/debug/info/warn/error"),
            ("h", "pick hosts: Space ticks, a all/none, Enter applies"),
            ("Space", "pause / resume following (counts what arrives)"),
            ("n  N", "next / previous match of the include filters"),
            ("e  E", "next / previous error"),
            ("Enter", "open the record: partition, offset, headers, JSON"),
        ],
    ),
    (
        "Other views",
        &[
            ("2 Metrics  ↑↓", "pick the host the charts show"),
            ("3 Lag  Enter", "lag per partition of the selected group"),
            (
                "5 Search  /",
                "regex since:1h until:5m host:H level:L source:G",
            ),
            ("5 Search  Enter", "open the selected result"),
        ],
    ),
];

pub fn lines(theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for (section, keys) in KEYS {
        out.push(Line::from(Span::styled(
            section.to_string(),
            theme.header(),
        )));
        for (k, what) in keys.iter() {
            out.push(Line::from(vec![
                Span::styled(format!("  {k:<22}"), theme.key()),
                Span::raw(what.to_string()),
            ]));
        }
    }
    out
}
