//! A log file's bytes, arriving in chunks of any size, into the agent's line splitter: it
//! must never panic, never emit a line longer than the limit or containing a newline, and
//! every line it emits must be exactly the file's bytes without the `\n` or `\r\n` (or their
//! first `max` bytes, flagged) with an end offset just past its newline. Nothing is lost and nothing is invented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_agent::lines::{Line, LineSplitter};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let Some((&chunking, file)) = rest.split_first() else {
        return;
    };
    let max = usize::from(limit % 64) + 1;
    let chunk = usize::from(chunking % 16) + 1;
    let mut splitter = LineSplitter::new(max);
    let mut lines: Vec<Line> = Vec::new();
    let mut offset = 0u64;
    for piece in file.chunks(chunk) {
        offset += piece.len() as u64;
        splitter.push(piece, offset, &mut lines);
    }
    let mut start = 0usize;
    for line in &lines {
        let end = usize::try_from(line.end_offset).expect("offset fits");
        assert!(
            end > start && end <= file.len(),
            "end offsets advance within the file"
        );
        assert_eq!(file[end - 1], b'\n', "a line ends just past its newline");
        // The terminator is `\n` or `\r\n`.
        let whole = &file[start..end - 1];
        let whole = whole.strip_suffix(b"\r").unwrap_or(whole);
        assert!(!line.bytes.contains(&b'\n'));
        if line.truncated {
            assert!(
                whole.len() > max && line.bytes == whole[..max],
                "cut lines keep their head"
            );
        } else {
            assert_eq!(line.bytes, whole, "lines are the file's bytes");
        }
        start = end;
    }
    assert!(
        !file[start..].contains(&b'\n'),
        "every complete line was emitted"
    );
});
