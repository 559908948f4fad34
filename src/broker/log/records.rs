//! What a read of the log returns: whole record batches, either copied into memory (small
//! reads) or as byte ranges of segment files that the connection sends straight from the page
//! cache to the socket with `sendfile` (see `broker::send`), so a consumer's records are never
//! copied through the broker's memory.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

#[cfg(test)]
use super::LogError;

/// `len` bytes at `position` of a segment file: whole batches that were already written to
/// the file (in the page cache, never in a user-space buffer) when the range was taken.
///
/// The file handle is shared with the segment: if retention deletes the segment while a
/// response is being sent, the open handle keeps the inode and its bytes alive until the last
/// slice is dropped. Appends only ever go beyond `position + len`, and a segment is truncated
/// only by recovery at startup, so the range stays valid for as long as the slice lives.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<File>,
    path: PathBuf,
    position: u64,
    len: u64,
}

impl FileSlice {
    pub(super) fn new(file: Arc<File>, path: PathBuf, position: u64, len: u64) -> Self {
        FileSlice {
            file,
            path,
            position,
            len,
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends the slice's bytes to `out` (tests compare them with copied reads).
    #[cfg(test)]
    fn read_to(&self, out: &mut Vec<u8>) -> Result<(), LogError> {
        let len = usize::try_from(self.len).map_err(|_| std::io::ErrorKind::OutOfMemory.into());
        len.and_then(|len| self.read_part(0, len, out))
            .map_err(super::segment::io_err("read segment", &self.path))
    }

    /// Appends `len` bytes from `skip` bytes into the slice to `out`.
    pub fn read_part(&self, skip: u64, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        if skip + len as u64 > self.len {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        pread_append(&self.file, out, self.position + skip, len)
    }
}

/// One piece of a read: bytes copied into memory, or a range of a segment file.
#[derive(Debug, Clone)]
pub enum Chunk {
    Copied(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Copied(bytes) => bytes.len(),
            // A slice is at most one segment (< 4 GiB), and 64-bit targets only.
            Chunk::File(slice) => usize::try_from(slice.len).unwrap_or(usize::MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole batches back to back, as pieces in log order; empty at the log end.
#[derive(Debug, Clone, Default)]
pub struct Records {
    chunks: Vec<Chunk>,
    len: usize,
}

impl Records {
    pub fn push(&mut self, chunk: Chunk) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cfg(test)]
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    pub fn into_chunks(self) -> Vec<Chunk> {
        self.chunks
    }

    /// All the bytes in one buffer, reading the file ranges (tests compare them).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Result<Bytes, LogError> {
        let mut out = Vec::with_capacity(self.len);
        append_chunks(&self.chunks, &mut out)?;
        Ok(Bytes::from(out))
    }
}

/// Appends the bytes of `chunks` to `out`, reading the file ranges (tests compare them).
#[cfg(test)]
pub fn append_chunks(chunks: &[Chunk], out: &mut Vec<u8>) -> Result<(), LogError> {
    for chunk in chunks {
        match chunk {
            Chunk::Copied(bytes) => out.extend_from_slice(bytes),
            Chunk::File(slice) => slice.read_to(out)?,
        }
    }
    Ok(())
}

/// Appends the `len` bytes at `position` of `file` to `out`, read straight into its spare
/// capacity: zeroing megabytes before every fetch's read cost a tenth of the broker's CPU.
pub(super) fn pread_append(
    file: &File,
    out: &mut Vec<u8>,
    position: u64,
    len: usize,
) -> std::io::Result<()> {
    let start = out.len();
    let end = start + len;
    out.reserve_exact(len);
    while out.len() < end {
        let at = position + (out.len() - start) as u64;
        if rustix::io::pread(file, rustix::buffer::spare_capacity(out), at)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    // The last read may have gone past `len` into the spare capacity.
    out.truncate(end);
    Ok(())
}
