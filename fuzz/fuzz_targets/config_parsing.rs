//! Configuration text (any bytes, read as a user's editor would save them) into the broker's
//! and the agent's config parsers: a config is accepted or refused with an error naming the
//! file, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/rill/fuzz.toml");
    if let Err(e) = rill::config::RillConfig::parse(&text, path) {
        assert!(
            e.to_string().contains("fuzz.toml"),
            "error names the file: {e}"
        );
    }
    if let Err(e) = rill_agent::config::Config::parse(path, &text) {
        assert!(
            e.to_string().contains("fuzz.toml"),
            "error names the file: {e}"
        );
    }
});
