//! RILL_DASH_STATS=FILE: the dashboard records its own timings there, one line each, for
//! bench/dash.sh: `frame US` (time to draw and flush a frame), `key US` (from a key's arrival
//! to the end of the frame that shows its effect) and, every second, `rate R` (the records/s
//! the status bar shows) and `records N` (records received so far).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use super::Error;

pub struct Stats {
    out: Option<BufWriter<File>>,
}

impl Stats {
    pub fn from_env() -> Result<Stats, Error> {
        let Some(path) = std::env::var_os("RILL_DASH_STATS").filter(|p| !p.is_empty()) else {
            return Ok(Stats { out: None });
        };
        let file = File::create(&path).map_err(|source| Error::Stats {
            path: path.to_string_lossy().into_owned(),
            source,
        })?;
        Ok(Stats {
            out: Some(BufWriter::new(file)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        if let Some(out) = self.out.as_mut() {
            // Timings are best effort: a full disk must not stop the dashboard.
            let _ = out.write_fmt(args);
        }
    }

    pub fn frame(&mut self, took: Duration) {
        self.line(format_args!("frame {}\n", took.as_micros()));
    }

    pub fn key(&mut self, took: Duration) {
        self.line(format_args!("key {}\n", took.as_micros()));
    }

    pub fn rate(&mut self, rate: f64, received: u64) {
        self.line(format_args!("rate {rate:.0}\nrecords {received}\n"));
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }

    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}
