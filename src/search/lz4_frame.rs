//! LZ4 frames (the framing Kafka's lz4 codec uses in record batches v2) decompressed
//! straight from the fetched bytes into the scan buffer, with one liblz4 context per thread.
//!
//! Why not the lz4 crate's `Decoder`: it is a `Read` over a 32 KiB staging buffer, so every
//! compressed byte was copied once more on its way in, liblz4 copied again each block that
//! straddled two stagings, and each batch allocated and zeroed a new staging buffer and
//! context. That was a tenth of a search's decompression time.

use std::cell::RefCell;
use std::ffi::CStr;

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

/// Decompresses the LZ4 frame at the start of `src` into the start of `dst`: its
/// decompressed length, or `None` when `dst` is too small for it (the caller grows it, as it
/// does for every codec, and calls again). Bytes after the frame are ignored, as Kafka's
/// consumers do.
pub fn decompress(src: &[u8], dst: &mut [u8]) -> std::io::Result<Option<usize>> {
    CONTEXT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let ctx = match cell.as_mut() {
            Some(ctx) => ctx,
            None => cell.insert(Context::new()?),
        };
        let attempt = attempt(ctx, src, dst);
        if !matches!(attempt, Ok(Some(_))) {
            // The frame is left half done (the next call starts over into a larger buffer:
            // with `stable_dst`, liblz4 keeps pointers into the output it wrote, which the
            // buffer's move would leave dangling).
            reset(ctx);
        }
        attempt
    })
}

fn reset(ctx: &mut Context) {
    // SAFETY: a valid context; resetting discards the frame in progress.
    unsafe { LZ4F_resetDecompressionContext(ctx.0) };
}

/// Calls into liblz4 with all of `src` and all of `dst`: with the whole frame at hand and
/// `stable_dst`, it decodes each block in place, with no staging copies. It may stop early
/// (e.g. after a frame header); it is then called again from where it stopped, with the same
/// `dst`, so output it already wrote stays where it left it. The frame's length, or `None`
/// when `dst` fills up first.
fn attempt(ctx: &mut Context, src: &[u8], dst: &mut [u8]) -> std::io::Result<Option<usize>> {
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
            return Ok(Some(out));
        }
        if out == dst.len() {
            return Ok(None);
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
    fn frames_of_every_block_mode_round_trip_and_a_small_buffer_is_told() {
        let data = sample(700_000);
        let mut dst = vec![0; 1 << 20];
        for mode in [lz4::BlockMode::Linked, lz4::BlockMode::Independent] {
            for checksum in [
                lz4::ContentChecksum::NoChecksum,
                lz4::ContentChecksum::ChecksumEnabled,
            ] {
                let compressed = frame(&data, mode.clone(), checksum.clone());
                // Too small: said so (the caller grows the buffer and calls again).
                let small = decompress(&compressed, &mut dst[..100_000]).expect("small");
                assert_eq!(small, None);
                let len = decompress(&compressed, &mut dst).expect("decompress");
                assert_eq!(len.map(|l| &dst[..l]), Some(&data[..]));
                // Trailing bytes after the frame are ignored.
                let mut padded = compressed.clone();
                padded.extend_from_slice(b"junk");
                let len = decompress(&padded, &mut dst).expect("padded");
                assert_eq!(len.map(|l| &dst[..l]), Some(&data[..]));
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
            let mut dst = vec![0; 64 << 10];
            // Any answer will do (a flip inside a literal run decodes to other bytes); what
            // is tested is that there is one, and that the context goes on working.
            let _ = decompress(&bytes, &mut dst);
            let good = frame(&data, lz4::BlockMode::Independent, lz4::ContentChecksum::NoChecksum);
            let len = decompress(&good, &mut dst).expect("a good frame after a bad one");
            proptest::prop_assert_eq!(len.map(|l| &dst[..l]), Some(&data[..]));
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
        let mut dst = vec![0; 1 << 20];
        let cut = decompress(&compressed[..compressed.len() / 2], &mut dst)
            .expect_err("a truncated frame");
        assert!(cut.to_string().contains("cut short"), "{cut}");
        let mut corrupt = compressed.clone();
        let last = corrupt.len() - 2;
        corrupt[last] ^= 0xff; // inside the content checksum
        assert!(decompress(&corrupt, &mut dst).is_err());
        assert!(decompress(b"not lz4 at all", &mut dst).is_err());
        // Half done into a buffer too small: the next frame starts afresh.
        assert_eq!(
            decompress(&compressed, &mut dst[..1000]).expect("small"),
            None
        );
        // The thread's context is reset after each failure: the next frame decodes.
        let len = decompress(&compressed, &mut dst).expect("after errors");
        assert_eq!(len.map(|l| &dst[..l]), Some(&data[..]));
    }
}
