//! LZ4 frames (the framing Kafka's lz4 codec uses in record batches v2) decompressed
//! straight from the fetched bytes into the scan window a block at a time, with one liblz4
//! context per thread.
//!
//! Why not the lz4 crate's `Decoder`: it is a `Read` over a 32 KiB staging buffer, so every
//! compressed byte was copied once more on its way in, liblz4 copied again each block that
//! straddled two stagings, and each batch allocated and zeroed a new staging buffer and
//! context. That was a tenth of a search's decompression time.
//!
//! Why a block at a time: liblz4 decodes a block straight into the caller's buffer only when
//! the buffer has room for a whole block; handed the rest of the frame, it goes on into the
//! next block and, short of room, decodes that into its own buffer and copies it out. Fed
//! exactly one block, with the room for one, it never copies.

use std::cell::RefCell;
use std::ffi::CStr;

use lz4::liblz4::{
    BlockChecksum, BlockMode, BlockSize, ContentChecksum, FrameType, LZ4FDecompressOptions,
    LZ4FDecompressionContext, LZ4FFrameInfo, LZ4F_createDecompressionContext, LZ4F_decompress,
    LZ4F_freeDecompressionContext, LZ4F_getErrorName, LZ4F_getFrameInfo, LZ4F_isError,
    LZ4F_resetDecompressionContext, LZ4F_VERSION,
};

/// A liblz4 frame decompression context (owned; freed on drop).
struct Context(LZ4FDecompressionContext);

impl Context {
    fn new() -> std::io::Result<Context> {
        let mut ctx = LZ4FDecompressionContext(std::ptr::null_mut());
        // SAFETY: liblz4 writes a newly allocated context to `ctx`, or returns an error code.
        let code = unsafe { LZ4F_createDecompressionContext(&mut ctx, LZ4F_VERSION) };
        check(code)?;
        Ok(Context(ctx))
    }

    fn reset(&mut self) {
        // SAFETY: a valid context; resetting discards the frame in progress.
        unsafe { LZ4F_resetDecompressionContext(self.0) };
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context came from LZ4F_createDecompressionContext and is freed once.
        unsafe { LZ4F_freeDecompressionContext(self.0) };
    }
}

/// liblz4's error code as an I/O error, or the value when it is not one.
fn check(code: usize) -> std::io::Result<usize> {
    // SAFETY: both take any code; the name is a static C string.
    unsafe {
        if LZ4F_isError(code) == 0 {
            return Ok(code);
        }
        let name = CStr::from_ptr(LZ4F_getErrorName(code));
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            name.to_string_lossy().into_owned(),
        ))
    }
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the frame is cut short")
}

thread_local! {
    /// The thread's context, lent to one [`Frame`] at a time.
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// One LZ4 frame being decoded, block by block. Bytes after the frame are ignored, as
/// Kafka's consumers do.
pub struct Frame<'a> {
    /// The thread's context, given back when the frame is dropped.
    ctx: Option<Context>,
    src: &'a [u8],
    /// Where the next block (or the end mark) starts in `src`.
    pos: usize,
    max_block: usize,
    block_checksum: bool,
    content_checksum: bool,
    ended: bool,
}

impl<'a> Frame<'a> {
    /// Reads the frame header at the start of `src`.
    pub fn new(src: &'a [u8]) -> std::io::Result<Frame<'a>> {
        let ctx = match CONTEXT.with(|cell| cell.borrow_mut().take()) {
            Some(ctx) => ctx,
            None => Context::new()?,
        };
        let raw = ctx.0;
        // From here on the context goes back to the thread when `frame` is dropped.
        let mut frame = Frame {
            ctx: Some(ctx),
            src,
            pos: 0,
            max_block: 0,
            block_checksum: false,
            content_checksum: false,
            ended: false,
        };
        let mut info = LZ4FFrameInfo {
            block_size_id: BlockSize::Default,
            block_mode: BlockMode::Linked,
            content_checksum_flag: ContentChecksum::NoChecksum,
            frame_type: FrameType::Frame,
            content_size: 0,
            dict_id: 0,
            block_checksum_flag: BlockChecksum::NoBlockChecksum,
        };
        let mut read = src.len();
        // SAFETY: the context is valid; liblz4 reads at most `read` bytes of `src`, writes
        // the header's fields (each a value of its enum: liblz4 refuses any other) to `info`
        // and how much it read to `read`.
        let code = unsafe { LZ4F_getFrameInfo(raw, &mut info, src.as_ptr(), &mut read) };
        check(code)?;
        if matches!(info.frame_type, FrameType::SkippableFrame) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a skippable frame, which holds no records",
            ));
        }
        frame.pos = read;
        frame.max_block = match info.block_size_id {
            BlockSize::Max256KB => 256 << 10,
            BlockSize::Max1MB => 1 << 20,
            BlockSize::Max4MB => 4 << 20,
            BlockSize::Default | BlockSize::Max64KB => 64 << 10,
        };
        frame.block_checksum = matches!(
            info.block_checksum_flag,
            BlockChecksum::BlockChecksumEnabled
        );
        frame.content_checksum =
            matches!(info.content_checksum_flag, ContentChecksum::ChecksumEnabled);
        Ok(frame)
    }

    /// The most a block decompresses to: the room [`Frame::next_block`] needs.
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// Decodes the next block into the start of `dst`, which must hold at least
    /// [`Frame::max_block`] bytes: its length, or `None` past the frame's end (its checksum,
    /// if it has one, checked).
    pub fn next_block(&mut self, dst: &mut [u8]) -> std::io::Result<Option<usize>> {
        if self.ended {
            return Ok(None);
        }
        let word = self.src.get(self.pos..self.pos + 4).ok_or_else(cut_short)?;
        let size = u32::from_le_bytes([word[0], word[1], word[2], word[3]]) as usize;
        let len = if size == 0 {
            4 + if self.content_checksum { 4 } else { 0 }
        } else {
            4 + (size & 0x7fff_ffff) + if self.block_checksum { 4 } else { 0 }
        };
        let input = self
            .src
            .get(self.pos..self.pos + len)
            .ok_or_else(cut_short)?;
        if size != 0 && dst.len() < self.max_block {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no room for a whole block",
            ));
        }
        let Some(ctx) = self.ctx.as_ref().map(|c| c.0) else {
            return Err(std::io::Error::other("the frame has no context"));
        };
        // Without `stable_dst`: the window's bytes move between blocks. A frame of linked
        // blocks (each may refer back to the one before) then has liblz4 keep its own copy
        // of the last 64 KiB; Kafka's producers write independent blocks.
        let options = LZ4FDecompressOptions {
            stable_dst: 0,
            reserved: [0; 3],
        };
        let (mut written, mut read) = (dst.len(), input.len());
        // SAFETY: the pointers and lengths describe `dst` and `input`, which outlive the
        // call; liblz4 writes at most `written` bytes and reads at most `read`, and reports
        // how many it did in the same variables.
        let hint = unsafe {
            LZ4F_decompress(
                ctx,
                dst.as_mut_ptr(),
                &mut written,
                input.as_ptr(),
                &mut read,
                &options,
            )
        };
        let hint = check(hint)?;
        if read != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "liblz4 stopped inside a block",
            ));
        }
        self.pos += len;
        if size != 0 {
            return Ok(Some(written));
        }
        if hint != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the frame goes on past its end mark",
            ));
        }
        self.ended = true;
        Ok(None)
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        if let Some(mut ctx) = self.ctx.take() {
            if !self.ended {
                // Left mid-frame (an error, or the reader stopped): the next frame starts
                // afresh.
                ctx.reset();
            }
            CONTEXT.with(|cell| *cell.borrow_mut() = Some(ctx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame(data: &[u8], mode: lz4::BlockMode, checksum: lz4::ContentChecksum) -> Vec<u8> {
        let mut enc = lz4::EncoderBuilder::new()
            .block_size(lz4::BlockSize::Max64KB)
            .block_mode(mode)
            .checksum(checksum)
            .build(Vec::new())
            .expect("encoder");
        enc.write_all(data).expect("write");
        let (out, result) = enc.finish();
        result.expect("finish");
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"{\"line\":\"GET /x 200\",\"host\":\"web1\"}"[i % 35] ^ (i / 997) as u8)
            .collect()
    }

    /// The whole frame, a block at a time into a buffer with room for one block.
    fn decompress(src: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut frame = Frame::new(src)?;
        let mut block = vec![0; frame.max_block()];
        let mut out = Vec::new();
        while let Some(n) = frame.next_block(&mut block)? {
            out.extend_from_slice(&block[..n]);
        }
        Ok(out)
    }

    #[test]
    fn frames_of_every_block_mode_round_trip_and_a_block_needs_its_room() {
        let data = sample(700_000);
        for mode in [lz4::BlockMode::Linked, lz4::BlockMode::Independent] {
            for checksum in [
                lz4::ContentChecksum::NoChecksum,
                lz4::ContentChecksum::ChecksumEnabled,
            ] {
                let compressed = frame(&data, mode.clone(), checksum.clone());
                assert_eq!(decompress(&compressed).expect("decompress"), data);
                // Trailing bytes after the frame are ignored.
                let mut padded = compressed.clone();
                padded.extend_from_slice(b"junk");
                assert_eq!(decompress(&padded).expect("padded"), data);
                // Less room than a block: refused, not written past.
                let mut frame = Frame::new(&compressed).expect("header");
                assert_eq!(frame.max_block(), 64 << 10);
                let small = frame.next_block(&mut [0; 1000]).expect_err("no room");
                assert!(small.to_string().contains("no room"), "{small}");
            }
        }
    }

    proptest::proptest! {
        /// Damaged frames (other producers write to the topic too) are errors or some
        /// output, never a panic or a hang; and the thread's context still decodes a good
        /// frame afterwards.
        #[test]
        fn damaged_frames_never_panic(flips in proptest::collection::vec((0usize..4096, 0u8..255), 1..8), cut in 0usize..4096) {
            let data = sample(50_000);
            let mut bytes = frame(&data, lz4::BlockMode::Linked, lz4::ContentChecksum::NoChecksum);
            for (at, x) in flips {
                let at = at % bytes.len();
                bytes[at] ^= x.max(1);
            }
            bytes.truncate(bytes.len() - cut % bytes.len());
            // Any answer will do (a flip inside a literal run decodes to other bytes); what
            // is tested is that there is one, and that the context goes on working.
            let _ = decompress(&bytes);
            let good = frame(&data, lz4::BlockMode::Independent, lz4::ContentChecksum::NoChecksum);
            proptest::prop_assert_eq!(decompress(&good).expect("a good frame after a bad one"), data);
        }
    }

    #[test]
    fn bad_frames_are_errors_and_the_context_recovers() {
        let data = sample(200_000);
        let compressed = frame(
            &data,
            lz4::BlockMode::Linked,
            lz4::ContentChecksum::ChecksumEnabled,
        );
        let cut = decompress(&compressed[..compressed.len() / 2]).expect_err("a truncated frame");
        assert!(cut.to_string().contains("cut short"), "{cut}");
        let mut corrupt = compressed.clone();
        let last = corrupt.len() - 2;
        corrupt[last] ^= 0xff; // inside the content checksum
        assert!(decompress(&corrupt).is_err());
        assert!(decompress(b"not lz4 at all").is_err());
        // Left after its first block: the next frame starts afresh on the same context.
        let mut half = Frame::new(&compressed).expect("header");
        let mut block = vec![0; half.max_block()];
        assert_eq!(
            half.next_block(&mut block).expect("a block"),
            Some(64 << 10)
        );
        drop(half);
        assert_eq!(decompress(&compressed).expect("after errors"), data);
    }
}
