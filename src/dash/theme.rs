//! Colours, in one place so NO_COLOR can turn them all off: then only bold, reverse and
//! underline remain, which every terminal shows without colour.

use ratatui::style::{Color, Modifier, Style};

use crate::record::Level;

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub colour: bool,
}

impl Theme {
    /// Colour unless NO_COLOR is set (to anything, as no-color.org says).
    pub fn from_env() -> Theme {
        Theme {
            colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.colour {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn level(&self, level: Option<Level>) -> Style {
        match level {
            Some(Level::Error) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Some(Level::Warn) => self.fg(Color::Yellow),
            Some(Level::Info) => self.fg(Color::Green),
            Some(Level::Debug) => self.fg(Color::Cyan),
            Some(Level::Trace) | None => self.fg(Color::DarkGray),
        }
    }

    pub fn dim(&self) -> Style {
        if self.colour {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    pub fn host(&self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn source(&self) -> Style {
        self.fg(Color::Blue)
    }

    pub fn header(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn highlight(&self) -> Style {
        if self.colour {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::UNDERLINED | Modifier::BOLD)
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn bar(&self) -> Style {
        if self.colour {
            Style::new().bg(Color::DarkGray).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn tab_active(&self) -> Style {
        self.fg(Color::Yellow)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    pub fn chart(&self, i: usize) -> Style {
        self.fg([Color::Green, Color::Magenta, Color::Cyan, Color::Yellow][i % 4])
    }
}
