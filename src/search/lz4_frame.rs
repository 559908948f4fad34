//! LZ4 frames (the framing Kafka's lz4 codec uses in record batches v2) decompressed
//! straight from the fetched bytes into the scan buffer, with one liblz4 context per thread.
//!
//! Why not the lz4 crate's `Decoder`: it is a `Read` over a 32 KiB staging buffer, so every
//! compressed byte was copied once more on its way in, liblz4 copied again each block that
//! straddled two stagings, and each batch allocated and zeroed a new staging buffer and
//! context. That was a tenth of a search's decompression time.

use std::cell::RefCell;
use std::ffi::CStr;

use rill_agent::kafka::huge_pages::HugeBuffer;

use lz4::liblz4::{
    LZ4FDecompressOptions, LZ4FDecompressionContext, LZ4F_createDecompressionContext,
    LZ4F_decompress, LZ4F_freeDecompressionContext, LZ4F_getErrorName, LZ4F_isError,
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

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// What one attempt at a frame came to.
enum Attempt {
    /// The frame ended: its decompressed length.
    Done(usize),
    /// `dst` filled up first.
    Full,
}

/// Decompresses the LZ4 frame at the start of `src` into the start of `dst`, growing `dst`
/// (doubling, up to `max` bytes) when it is too small; returns the decompressed length.
/// Bytes after the frame are ignored, as Kafka's consumers do.
pub fn decompress(src: &[u8], dst: &mut HugeBuffer, max: usize) -> std::io::Result<usize> {
    CONTEXT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let ctx = match cell.as_mut() {
            Some(ctx) => ctx,
            None => cell.insert(Context::new()?),
        };
        loop {
            match attempt(ctx, src, dst) {
                Ok(Attempt::Done(len)) => return Ok(len),
                Ok(Attempt::Full) if dst.len() < max => {
                    // Start over into a larger buffer: with `stable_dst`, liblz4 keeps
                    // pointers into the output it wrote, which the resize may move.
                    reset(ctx);
                    dst.grow((dst.len() * 2).min(max), 0)?;
                }
                Ok(Attempt::Full) => {
                    reset(ctx);
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "larger than any batch",
                    ));
                }
                Err(e) => {
                    reset(ctx);
                    return Err(e);
                }
            }
        }
    })
}

fn reset(ctx: &mut Context) {
    // SAFETY: a valid context; resetting discards the frame in progress.
    unsafe { LZ4F_resetDecompressionContext(ctx.0) };
}

/// Calls into liblz4 with all of `src` and all of `dst`: with the whole frame at hand and
/// `stable_dst`, it decodes each block in place, with no staging copies. It may stop early
/// (e.g. after a frame header); it is then called again from where it stopped, with the same
/// `dst`, so output it already wrote stays where it left it.
fn attempt(ctx: &mut Context, src: &[u8], dst: &mut [u8]) -> std::io::Result<Attempt> {
    let options = LZ4FDecompressOptions {
        stable_dst: 1,
        reserved: [0; 3],
    };
    let (mut out, mut consumed) = (0, 0);
    loop {
        let (rest, input) = (&mut dst[out..], &src[consumed..]);
        let (mut written, mut read) = (rest.len(), input.len());
        // SAFETY: the pointers and lengths describe `rest` and `input`, which outlive the
        // call; liblz4 writes at most `written` bytes and reads at most `read`, and reports
        // how many it did in the same variables.
        let hint = unsafe {
            LZ4F_decompress(
                ctx.0,
                rest.as_mut_ptr(),
                &mut written,
                input.as_ptr(),
                &mut read,
                &options,
            )
        };
        let hint = check(hint)?;
        (out, consumed) = (out + written, consumed + read);
        if hint == 0 {
            return Ok(Attempt::Done(out));
        }
        if out == dst.len() {
            return Ok(Attempt::Full);
        }
        if consumed == src.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the frame is cut short",
            ));
        }
        if written == 0 && read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "liblz4 made no progress",
            ));
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

    #[test]
    fn frames_of_every_block_mode_round_trip_and_the_buffer_grows() {
        let data = sample(5_000_000);
        for mode in [lz4::BlockMode::Linked, lz4::BlockMode::Independent] {
            for checksum in [
                lz4::ContentChecksum::NoChecksum,
                lz4::ContentChecksum::ChecksumEnabled,
            ] {
                let compressed = frame(&data, mode.clone(), checksum.clone());
                // Start small, so the frame needs the buffer to grow (and start over).
                let mut dst = HugeBuffer::new(1000).expect("buffer");
                let len = decompress(&compressed, &mut dst, 1 << 30).expect("decompress");
                assert_eq!(&dst[..len], &data[..]);
                // Trailing bytes after the frame are ignored.
                let mut padded = compressed.clone();
                padded.extend_from_slice(b"junk");
                let len = decompress(&padded, &mut dst, 1 << 30).expect("padded");
                assert_eq!(&dst[..len], &data[..]);
            }
        }
    }

    proptest::proptest! {
        /// Damaged frames (other producers write to the topic too) are errors or some
        /// output, never a panic, a hang or more memory than the limit; and the thread's
        /// context still decodes a good frame afterwards.
        #[test]
        fn damaged_frames_never_panic(flips in proptest::collection::vec((0usize..4096, 0u8..255), 1..8), cut in 0usize..4096) {
            let data = sample(50_000);
            let mut bytes = frame(&data, lz4::BlockMode::Linked, lz4::ContentChecksum::NoChecksum);
            for (at, x) in flips {
                let at = at % bytes.len();
                bytes[at] ^= x.max(1);
            }
            bytes.truncate(bytes.len() - cut % bytes.len());
            let mut dst = HugeBuffer::new(1).expect("buffer");
            let _ = decompress(&bytes, &mut dst, 4 << 20);
            proptest::prop_assert!(dst.len() <= 4 << 20);
            let good = frame(&data, lz4::BlockMode::Independent, lz4::ContentChecksum::NoChecksum);
            let len = decompress(&good, &mut dst, 4 << 20).expect("a good frame after a bad one");
            proptest::prop_assert_eq!(&dst[..len], &data[..]);
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
        let mut dst = HugeBuffer::new(1 << 20).expect("buffer");
        let cut = decompress(&compressed[..compressed.len() / 2], &mut dst, 1 << 30)
            .expect_err("a truncated frame");
        assert!(cut.to_string().contains("cut short"), "{cut}");
        let mut corrupt = compressed.clone();
        let last = corrupt.len() - 2;
        corrupt[last] ^= 0xff; // inside the content checksum
        assert!(decompress(&corrupt, &mut dst, 1 << 30).is_err());
        assert!(decompress(b"not lz4 at all", &mut dst, 1 << 30).is_err());
        let big = frame(
            &sample(5_000_000),
            lz4::BlockMode::Independent,
            lz4::ContentChecksum::NoChecksum,
        );
        let mut small = HugeBuffer::new(1000).expect("buffer");
        let too_big = decompress(&big, &mut small, 2 << 20).expect_err("over max");
        assert!(too_big.to_string().contains("larger"), "{too_big}");
        // The thread's context is reset after each failure: the next frame decodes.
        let len = decompress(&compressed, &mut dst, 1 << 30).expect("after errors");
        assert_eq!(&dst[..len], &data[..]);
    }
}
