//! Owning the terminal: raw mode, the alternate screen and mouse capture on the way in, and
//! all of it undone on the way out, whether by return, error or panic.

use std::io::{stdout, Stdout};
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Whether the terminal is in the dashboard's state (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(
            stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            cursor::Show
        );
    }
}

pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Arc<Hook>,
}

impl Tui {
    pub fn enter() -> std::io::Result<Tui> {
        // The hook first: a panic from here on must give the terminal back before the
        // message is printed, or it lands, garbled, on the alternate screen.
        let previous_hook: Arc<Hook> = Arc::new(std::panic::take_hook());
        let prev = previous_hook.clone();
        std::panic::set_hook(Box::new(move |info| {
            // A data source's panic is reported in the status bar; the dashboard goes on.
            if !super::sources::on_source_thread() {
                restore();
                prev(info);
            }
        }));
        let result = (|| {
            enable_raw_mode()?;
            ACTIVE.store(true, Ordering::SeqCst);
            execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
            terminal.hide_cursor()?;
            terminal.clear()?;
            Ok(terminal)
        })();
        let tui = Tui {
            terminal: match result {
                Ok(t) => t,
                Err(e) => {
                    restore();
                    reinstall(previous_hook);
                    return Err(e);
                }
            },
            previous_hook,
        };
        Ok(tui)
    }
}

fn reinstall(previous: Arc<Hook>) {
    // set_hook panics on a panicking thread; the process is going down then anyway.
    if !std::thread::panicking() {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
        reinstall(self.previous_hook.clone());
    }
}
