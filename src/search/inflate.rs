//! A compressed batch's record bytes, decompressed a window at a time: the scan takes the
//! records whole in the window, the bytes of the record cut at its end move to the front,
//! and the codec fills the rest.
//!
//! Why not the whole batch at once: a batch decompresses to a megabyte or more, and every
//! scanning thread needed a buffer that large, and an index of its thousands of records,
//! in memory that had never been touched: each of its pages cost a fault and a clearing
//! (on this 2-core VM, page clearing ran at about 4 GB/s). A window of 256 KiB is enough
//! for the codecs' blocks; it grows only for a record larger than it. It is a quarter of a
//! half huge page: four readers' windows share the clearing of one half, which the search
//! faults in ahead, while it sets up its connections.

use std::io::Read;

use rill_agent::kafka::huge_pages::{HugeBuffer, QUARTER};

use crate::search::lz4_frame;

/// What a codec read through `Read` (gzip, zstd) is asked for at least at a time.
const READ_BYTES: usize = 32 << 10;
/// Batches a broker sends are at most its max message size (1 MB by default); a window that
/// would grow past this for one record is refused rather than allocated.
const MAX_WINDOW: usize = 1 << 30;

/// Decompressed bytes: `buf[..filled]` are held, the rest is room.
#[derive(Default)]
pub struct Window {
    buf: Option<HugeBuffer>,
    filled: usize,
}

impl Window {
    /// Takes the window's memory and faults its pages in now (a reader calls this while its
    /// first fetch is on the way) rather than when the first batch arrives.
    pub fn prepare(&mut self) -> std::io::Result<()> {
        if self.buf.is_none() {
            let mut buf = HugeBuffer::quarter()?;
            for page in buf.chunks_mut(4096) {
                page[0] = 0;
            }
            self.buf = Some(buf);
        }
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or_default()
    }

    /// The bytes held.
    pub fn held(&self) -> &[u8] {
        &self.bytes()[..self.filled]
    }

    /// Empties the window for the next batch. A window grown for a large record gives its
    /// memory back here, so that one huge record does not hold megabytes for the rest of a
    /// search (`--follow` runs for days); the next batch starts from a quarter again.
    pub fn clear(&mut self) {
        self.filled = 0;
        if self.bytes().len() > QUARTER {
            self.buf = None;
        }
    }

    /// Drops the first `n` bytes held, moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.copy_within(n..self.filled, 0);
        }
        self.filled -= n;
    }

    /// The room after the bytes held, made at least `at_least` long.
    fn room(&mut self, at_least: usize) -> std::io::Result<&mut [u8]> {
        self.prepare()?;
        let len = self.bytes().len();
        if len - self.filled < at_least {
            let len = (self.filled + at_least).max(len * 2);
            if len > MAX_WINDOW {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a record larger than any batch",
                ));
            }
            let mut bigger = HugeBuffer::new(len)?;
            bigger[..self.filled].copy_from_slice(self.held());
            self.buf = Some(bigger);
        }
        let filled = self.filled;
        Ok(self
            .buf
            .as_deref_mut()
            .map_or(&mut [], |b| &mut b[filled..]))
    }

    /// How much room there is after the bytes held.
    fn spare(&self) -> usize {
        self.bytes().len() - self.filled
    }
}

/// A compressed batch body being decompressed.
pub enum Inflate<'a> {
    Lz4(lz4_frame::Frame<'a>),
    /// Codecs read as a stream (gzip, zstd).
    Stream(Box<dyn Read + 'a>),
    Snappy(SnappyBlocks<'a>),
}

impl<'a> Inflate<'a> {
    /// The codec's name (for errors) and its decoder at the start of `src`; `None` for a
    /// codec that does not exist.
    pub fn new(codec: u8, src: &'a [u8]) -> Option<(&'static str, std::io::Result<Inflate<'a>>)> {
        Some(match codec {
            1 => (
                "gzip",
                Ok(Inflate::Stream(Box::new(
                    flate2::read::MultiGzDecoder::new(src),
                ))),
            ),
            2 => ("snappy", Ok(Inflate::Snappy(SnappyBlocks::new(src)))),
            3 => ("lz4", lz4_frame::Frame::new(src).map(Inflate::Lz4)),
            4 => (
                "zstd",
                zstd::stream::read::Decoder::with_buffer(src)
                    .map(|d| Inflate::Stream(Box::new(d) as Box<dyn Read>)),
            ),
            _ => return None,
        })
    }

    /// Decompresses into the window's room until it has less room left than the codec's
    /// next piece needs, or the data ends; the room is first made large enough for one
    /// piece. Whether the data has ended.
    pub fn fill(&mut self, window: &mut Window) -> std::io::Result<bool> {
        match self {
            Inflate::Lz4(frame) => {
                let (block, mut first) = (frame.max_block(), true);
                while std::mem::take(&mut first) || window.spare() >= block {
                    match frame.next_block(window.room(block)?)? {
                        Some(n) => window.filled += n,
                        None => return Ok(true),
                    }
                }
                Ok(false)
            }
            Inflate::Stream(reader) => {
                let mut first = true;
                while std::mem::take(&mut first) || window.spare() >= READ_BYTES {
                    match reader.read(window.room(READ_BYTES)?) {
                        Ok(0) => return Ok(true),
                        Ok(n) => window.filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(false)
            }
            Inflate::Snappy(blocks) => blocks.fill(window),
        }
    }
}

/// Snappy as Kafka clients write it: the Java client frames blocks the xerial way (a magic
/// header, then length-prefixed blocks), librdkafka writes one raw block (which then takes a
/// window as large as the batch).
pub struct SnappyBlocks<'a> {
    rest: &'a [u8],
    /// Xerial framing: `rest` is a run of length-prefixed blocks; else one raw block.
    framed: bool,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyBlocks<'a> {
    fn new(src: &'a [u8]) -> SnappyBlocks<'a> {
        const XERIAL: &[u8] = b"\x82SNAPPY\x00";
        let framed = src.starts_with(XERIAL);
        SnappyBlocks {
            // Magic (8), version (4), compatible version (4), then blocks.
            rest: if framed {
                src.get(16..).unwrap_or_default()
            } else {
                src
            },
            framed,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// The next block and how many bytes of `rest` it takes.
    fn next_block(&self) -> std::io::Result<(&'a [u8], usize)> {
        if !self.framed {
            return Ok((self.rest, self.rest.len()));
        }
        let truncated =
            || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated block");
        let len = self
            .rest
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .ok_or_else(truncated)?;
        let block = self.rest.get(4..4 + len).ok_or_else(truncated)?;
        Ok((block, 4 + len))
    }

    fn fill(&mut self, window: &mut Window) -> std::io::Result<bool> {
        let invalid = |e: snap::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let mut first = true;
        while !self.rest.is_empty() {
            let (block, taken) = self.next_block()?;
            let len = snap::raw::decompress_len(block).map_err(invalid)?;
            if window.spare() < len && !first {
                return Ok(false);
            }
            let room = &mut window.room(len)?[..len];
            window.filled += self.decoder.decompress(block, room).map_err(invalid)?;
            self.rest = &self.rest[taken..];
            first = false;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_what_it_holds_as_it_grows_and_refuses_absurd_sizes() {
        let mut window = Window::default();
        window.prepare().expect("prepare");
        // A quarter of a half page: four 64 KiB LZ4 blocks, the size producers write.
        assert_eq!(window.bytes().len(), QUARTER);
        window.room(10).expect("room")[..10].copy_from_slice(b"0123456789");
        window.filled = 10;
        window.consume(4);
        assert_eq!(window.held(), b"456789");
        // More room than there is: the window grows, keeping the bytes it holds.
        assert!(window.room(256 << 10).expect("grown").len() >= 256 << 10);
        assert_eq!(window.held(), b"456789");
        let refused = window.room(MAX_WINDOW).expect_err("absurd");
        assert!(
            refused.to_string().contains("larger than any batch"),
            "{refused}"
        );
        assert_eq!(window.held(), b"456789");
    }

    #[test]
    fn a_window_grown_for_a_large_record_shrinks_for_the_next_batch() {
        let mut window = Window::default();
        window.room(3 << 20).expect("grown");
        assert!(window.bytes().len() >= 3 << 20);
        window.clear();
        assert!(window.held().is_empty());
        window.room(1).expect("room");
        assert_eq!(window.bytes().len(), QUARTER);
        // A window of the usual size keeps its memory from batch to batch.
        let at = window.bytes().as_ptr();
        window.clear();
        window.room(1).expect("room");
        assert_eq!(window.bytes().as_ptr(), at);
    }

    /// A raw snappy block (librdkafka's) takes a window as large as it; xerial-framed
    /// blocks (the Java client's) come one window's worth at a time.
    #[test]
    fn snappy_blocks_fill_the_window_as_they_fit() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let raw = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compress");
        let mut window = Window::default();
        let mut inflate = SnappyBlocks::new(&raw);
        assert!(inflate.fill(&mut window).expect("raw"));
        assert_eq!(window.held(), &data[..]);

        let mut framed = b"\x82SNAPPY\x00\0\0\0\x01\0\0\0\x01".to_vec();
        for chunk in data.chunks(100_000) {
            let block = snap::raw::Encoder::new()
                .compress_vec(chunk)
                .expect("block");
            framed.extend((block.len() as u32).to_be_bytes());
            framed.extend(block);
        }
        let (mut window, mut out) = (Window::default(), Vec::new());
        let mut inflate = SnappyBlocks::new(&framed);
        loop {
            let ended = inflate.fill(&mut window).expect("framed");
            assert!(window.held().len() <= 256 << 10);
            out.extend_from_slice(window.held());
            window.clear();
            if ended {
                break;
            }
        }
        assert_eq!(out, data);
        let cut = &framed[..framed.len() - 10];
        let mut inflate = SnappyBlocks::new(cut);
        let mut window = Window::default();
        let err = loop {
            match inflate.fill(&mut window) {
                Ok(true) => panic!("a cut block decoded"),
                Ok(false) => window.clear(),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
