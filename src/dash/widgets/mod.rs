//! Small building blocks the views share: number, time and size formatting, highlighted
//! text, inline sparklines, and the bars at the bottom of the screen.

pub mod bars;

use std::time::{Duration, UNIX_EPOCH};

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;

use crate::record::format_ts;

/// 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn signed_count(n: i64) -> String {
    if n < 0 {
        format!("-{}", count(n.unsigned_abs()))
    } else {
        count(n as u64)
    }
}

/// A rate with its unit prefix: 950, 12.3k, 1.2M.
pub fn si(x: f64) -> String {
    let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
    if x >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Bytes in binary units: 512 B, 1.5 KiB, 3.2 GiB.
pub fn bytes(b: f64) -> String {
    let b = if b.is_finite() { b.max(0.0) } else { 0.0 };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in ms, short: 850ms, 12s, 4m05s, 3h12m, 2d4h.
pub fn age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// RFC 3339 UTC with milliseconds, from ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    format_ts(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// HH:MM:SS.mmm (UTC) of a timestamp in ms.
pub fn clock(ms: i64) -> String {
    let s = rfc3339(ms);
    s.get(11..23).unwrap_or(&s).to_string()
}

/// A text sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline<'a>(
    values: impl DoubleEndedIterator<Item = &'a u64> + ExactSizeIterator,
    width: usize,
) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let vals: Vec<u64> = values.skip(skip).copied().collect();
    let max = vals.iter().copied().max().unwrap_or(0);
    vals.iter()
        .map(|&v| {
            if max == 0 {
                BARS[0]
            } else {
                BARS[((v as f64 / max as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// `text` as spans, the byte ranges in `ranges` (sorted, not overlapping, on char
/// boundaries or not: those that are not are skipped) in `hl`.
pub fn highlighted(
    text: &str,
    ranges: &[(usize, usize)],
    base: Style,
    hl: Style,
) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut pos = 0;
    for &(s, e) in ranges {
        if s < pos || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        if s > pos {
            spans.push(Span::styled(text[pos..s].to_string(), base));
        }
        spans.push(Span::styled(text[s..e].to_string(), hl));
        pos = e;
    }
    if pos < text.len() {
        spans.push(Span::styled(text[pos..].to_string(), base));
    }
    spans
}

/// The start of `line` that can show in `width` cells, on one row: control characters
/// (tabs, the newlines of a multiline event) become visible single cells. Long lines are cut
/// before any work is done on them, so a 1 MiB line costs what a short one does.
pub fn one_row(line: &str, width: usize) -> String {
    let mut out = String::with_capacity(width.min(line.len()) + 4);
    for (n, c) in line.chars().enumerate() {
        if n >= width * 2 {
            break;
        }
        out.push(match c {
            '\n' => '⏎',
            '\t' => ' ',
            c if c.is_control() => '·',
            c => c,
        });
    }
    out
}

/// The part of `text` that fits in `width` cells, with … when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

/// The end of `text` that fits in `width` cells, with … in front when cut (for paths).
pub fn fit_end(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut s = String::from("…");
    s.extend(text.chars().skip(n - (width - 1)));
    s
}

/// A rectangle of at most `w`x`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(signed_count(-1200), "-1,200");
        assert_eq!(si(100_000.0), "100k");
        assert_eq!(si(1_500.0), "1.5k");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(age(65_000), "1m05s");
        assert_eq!(clock(1_714_564_800_123), "12:00:00.123");
        assert_eq!(sparkline([0u64, 5, 10].iter(), 10), "▁▅█");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_end("/var/log/app.log", 8), "…app.log");
        assert_eq!(one_row("a\tb\nc", 10), "a b⏎c");
    }
}
