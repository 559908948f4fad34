//! File identity: device+inode, checked against a fingerprint of the file's first bytes.
//!
//! Device+inode follows a file through renames (rename rotation), but inodes are reused
//! once a file is deleted, and copytruncate rewrites a file in place. So every identity
//! also carries a hash of the first bytes as they were when the file was first read: a file
//! whose first bytes no longer hash the same is a different file (inode reuse, or truncated
//! and rewritten), however its inode looks.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file. Enough to span a couple of log lines (so two
/// files of one application rarely collide), small enough to read on every check.
pub const FINGERPRINT_BYTES: usize = 256;

/// Device and inode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of the first `len` bytes of a file (`len` < [`FINGERPRINT_BYTES`] only while the
/// file is shorter than that; it is extended as the file grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprints the first bytes of an open file, up to [`FINGERPRINT_BYTES`].
    pub fn of(file: &File) -> io::Result<Fingerprint> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_prefix(file, &mut buf)?;
        Ok(Fingerprint::of_bytes(&buf[..n]))
    }

    pub fn of_bytes(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            // Bounded by FINGERPRINT_BYTES, which fits u32.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            hash: fnv1a(bytes),
        }
    }

    /// Whether this fingerprint is complete, so it no longer needs extending.
    pub fn is_full(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }

    /// Whether `file` still starts with the bytes this fingerprint was taken from. A file now
    /// shorter than the fingerprint was truncated, so it does not match.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let want = (self.len as usize).min(FINGERPRINT_BYTES);
        let n = read_prefix(file, &mut buf[..want])?;
        Ok(n == want && fnv1a(&buf[..n]) == self.hash)
    }
}

/// Reads up to `buf.len()` bytes from offset 0 without moving the file's cursor.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// FNV-1a, 64 bit: tiny, and stable across Rust releases (std's hasher is not), which
/// matters because fingerprints are persisted in checkpoints.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_follows_content_not_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"first line\n").expect("write");
        let file = File::open(&path).expect("open");
        let fp = Fingerprint::of(&file).expect("fp");
        assert_eq!(fp.len, 11);
        assert!(!fp.is_full());

        // Growing keeps the short fingerprint matching.
        f.write_all(&[b'x'; 400]).expect("write");
        assert!(fp.matches(&file).expect("match"));
        let full = Fingerprint::of(&file).expect("fp");
        assert!(full.is_full());

        // Truncate and rewrite with other content: no longer the same file.
        f.set_len(0).expect("truncate");
        assert!(!full.matches(&file).expect("match"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all(b"other line\n").expect("write");
        assert!(!fp.matches(&file).expect("match"));
    }

    #[test]
    fn hash_is_stable() {
        // Persisted in checkpoints: must never change between builds.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
