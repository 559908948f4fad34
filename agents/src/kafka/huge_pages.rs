//! Large buffers in transparent huge pages, and the pool of them a connection reads its large
//! responses into.
//!
//! Why: a search reads tens of megabytes of Fetch responses. Memory the process touches for
//! the first time costs a page fault per 4 KiB page; on this kind of VM a 12 MiB buffer took
//! 4–16 ms to fault in with 4 KiB pages and 0.5–2 ms in 2 MiB huge pages (`MADV_HUGEPAGE`;
//! a throw-away C program, several runs on two days). Where the kernel has no huge page to
//! give, the buffer simply has small pages.

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// The huge page size on x86-64 and aarch64 (with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;
/// Buffers up to this size get half a huge page: what a buffer costs is the memory the
/// kernel clears for it, and a search's buffers (fetches of up to 1 MiB) would leave half
/// of every page they had to themselves unused.
const HALF_PAGE: usize = HUGE_PAGE / 2;
/// The size of [`HugeBuffer::quarter`]: a quarter of a half page (256 KiB).
pub const QUARTER: usize = HALF_PAGE / 4;

/// A zero-initialised buffer in memory advised to the kernel as huge pages: half a 2 MiB
/// page (1 MiB, 1 MiB-aligned) when that is enough, else a whole number of 2 MiB pages,
/// 2 MiB-aligned.
pub struct HugeBuffer {
    ptr: NonNull<u8>,
    len: usize,
    /// The mapping the buffer lies in, which other buffers may share.
    _mapping: Arc<Mapping>,
}

// SAFETY: the buffer is plain owned memory, like a `Box<[u8]>`: no other buffer overlaps
// it (the halves of a mapping are disjoint), and the mapping outlives it.
unsafe impl Send for HugeBuffer {}
unsafe impl Sync for HugeBuffer {}

/// Huge pages mapped at once for small buffers. Every mapping takes the address space's
/// lock for writing four times (mmap, two munmaps to align it, madvise); a search's threads,
/// each mapping its buffers as it started, queued on that lock behind the page faults of the
/// others (seen in scheduler traces: threads asleep in mmap and munmap while a core idled).
/// One mapping of four pages serves eight buffers. Pages never touched cost nothing; a
/// half's pages go back to the system with its mapping, once its eight halves are dropped.
const PAGES_PER_MAPPING: usize = 4;

/// Where small buffers come from: pieces of one size cut from larger buffers, handed out in
/// address order.
struct Pieces {
    size: usize,
    spare: Mutex<Vec<HugeBuffer>>,
}

impl Pieces {
    const fn new(size: usize) -> Pieces {
        Pieces {
            size,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A piece; when none is left, `whole` gives the buffer the next ones are cut from.
    fn take(
        &self,
        whole: impl FnOnce() -> std::io::Result<HugeBuffer>,
    ) -> std::io::Result<HugeBuffer> {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(piece) = spare.pop() {
            return Ok(piece);
        }
        let mut rest = whole()?;
        let mut pieces = Vec::with_capacity(rest.len() / self.size);
        while rest.len() > self.size {
            let (piece, after) = rest.split_at(self.size);
            pieces.push(piece);
            rest = after;
        }
        pieces.push(rest);
        // Popped from the end: the lowest address first.
        pieces.reverse();
        let first = pieces.pop().expect("a buffer holds pieces");
        *spare = pieces;
        Ok(first)
    }

    /// Faults in `count` pieces (cutting more as needed) and puts them first in line.
    fn prefault(
        &self,
        count: usize,
        mut whole: impl FnMut() -> std::io::Result<HugeBuffer>,
    ) -> std::io::Result<()> {
        let mut warm = Vec::with_capacity(count);
        for _ in 0..count {
            let mut piece = self.take(&mut whole)?;
            for page in piece.chunks_mut(4096) {
                page[0] = 0;
            }
            warm.push(piece);
        }
        warm.reverse();
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(warm);
        Ok(())
    }
}

/// A new mapping's worth of huge pages, to cut halves from.
fn mapping() -> std::io::Result<HugeBuffer> {
    HugeBuffer::pages(PAGES_PER_MAPPING * HUGE_PAGE)
}

/// Faults in `count` buffers of up to 1 MiB (half huge pages) ahead of their use, at most
/// one mapping's worth: the next small buffers [`HugeBuffer::new`] hands out, on any
/// thread, are these (and the next quarters, which are cut from them).
pub fn prefault_small_buffers(count: usize) -> std::io::Result<()> {
    HALF_PAGES.prefault(count.min(2 * PAGES_PER_MAPPING), mapping)
}

/// The process's half pages: the halves of a mapping may go to buffers on any threads.
static HALF_PAGES: Pieces = Pieces::new(HALF_PAGE);
/// Quarters of half pages (256 KiB), cut from the process's half pages.
static QUARTERS: Pieces = Pieces::new(QUARTER);

impl HugeBuffer {
    /// A buffer of at least `min_len` bytes: half a huge page up to 1 MiB (the other halves
    /// of its mapping go to the next small buffers, on any thread), else a multiple of 2 MiB.
    pub fn new(min_len: usize) -> std::io::Result<HugeBuffer> {
        if min_len <= HALF_PAGE {
            return HALF_PAGES.take(mapping);
        }
        let len = min_len
            .checked_next_multiple_of(HUGE_PAGE)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        HugeBuffer::pages(len)
    }

    /// A quarter of a half page (256 KiB; the other quarters of the half go to the next
    /// calls, on any thread): four buffers of this size share one half's clearing.
    pub fn quarter() -> std::io::Result<HugeBuffer> {
        QUARTERS.take(|| HALF_PAGES.take(mapping))
    }

    /// A new mapping of `len` bytes (a multiple of 2 MiB), as one buffer.
    fn pages(len: usize) -> std::io::Result<HugeBuffer> {
        let mapping = Arc::new(Mapping::new(len)?);
        Ok(HugeBuffer {
            ptr: mapping.ptr,
            len,
            _mapping: mapping,
        })
    }

    /// The first `at` bytes and the rest, as two buffers in the same mapping.
    fn split_at(self, at: usize) -> (HugeBuffer, HugeBuffer) {
        debug_assert!(at <= self.len);
        // SAFETY: `at` is inside the buffer; the two parts are disjoint.
        let second = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(at)) };
        (
            HugeBuffer {
                ptr: self.ptr,
                len: at,
                _mapping: self._mapping.clone(),
            },
            HugeBuffer {
                ptr: second,
                len: self.len - at,
                _mapping: self._mapping,
            },
        )
    }
}

impl Deref for HugeBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes of mapped memory, initialised (anonymous mappings start zeroed).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HugeBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// An anonymous mapping, 2 MiB-aligned, advised as huge pages; unmapped when dropped.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only unmapped by its drop; the buffers in it hold it alive.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(len: usize) -> std::io::Result<Mapping> {
        // Map one page more than needed and trim it, so that the buffer starts on a 2 MiB
        // boundary: only whole aligned 2 MiB ranges can be huge pages.
        let mapped = len
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let head = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
        let tail = mapped - head - len;
        // SAFETY: both ranges lie inside the mapping just made, outside the buffer; the
        // advice only asks for huge pages there (failure leaves small pages, which work).
        unsafe {
            let start = base.cast::<u8>().add(head);
            if head > 0 {
                libc::munmap(base, head);
            }
            if tail > 0 {
                libc::munmap(start.add(len).cast(), tail);
            }
            libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE);
            Ok(Mapping {
                ptr: NonNull::new_unchecked(start),
                len,
            })
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping's own memory, unmapped once, when no buffer is left in it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for HugeBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeBuffer({} bytes)", self.len)
    }
}

/// Responses smaller than this are read into a plain `Vec`: clearing half a huge page for
/// them costs more than faulting in their few small pages (a partition's last, partial
/// answer often is one of them).
pub(crate) const POOLED_FRAME_BYTES: usize = 512 << 10;
/// How many free buffers a pool keeps: a search's partition reader uses one at a time (the
/// answer being scanned, while the next waits in the socket), and a second serves a caller
/// that keeps an answer while it reads the next.
const KEPT: usize = 2;

/// The buffers a connection reads its large responses into. A response hands its buffer
/// back to the pool when the last slice of it is dropped, on whatever thread that is, so a
/// scan reuses the same few warm buffers instead of faulting in new memory per Fetch.
#[derive(Default, Clone)]
pub struct FramePool {
    free: Arc<Mutex<Vec<HugeBuffer>>>,
}

impl FramePool {
    /// Reads `len` bytes from `stream` into a pooled buffer.
    pub fn read(&self, stream: &mut impl Read, len: usize) -> std::io::Result<Bytes> {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            let fits = free.iter().position(|b| b.len() >= len);
            fits.map(|i| free.swap_remove(i))
        };
        let mut buffer = match reused {
            Some(buffer) => buffer,
            None => HugeBuffer::new(len)?,
        };
        if let Err(e) = stream.read_exact(&mut buffer[..len]) {
            self.give_back(buffer);
            return Err(e);
        }
        Ok(Bytes::from_owner(PooledFrame {
            buffer: Some(buffer),
            len,
            pool: self.clone(),
        }))
    }

    fn give_back(&self, buffer: HugeBuffer) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEPT {
            free.push(buffer);
        }
    }
}

/// A response's bytes in a pooled buffer (the owner behind its `Bytes`).
struct PooledFrame {
    buffer: Option<HugeBuffer>,
    len: usize,
    pool: FramePool,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_deref().map_or(&[], |b| &b[..self.len])
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        let b = HugeBuffer::new(3 << 20).expect("map");
        assert_eq!(b.len(), 4 << 20);
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(b.iter().all(|&x| x == 0));
    }

    #[test]
    fn small_buffers_are_disjoint_halves_of_a_mapping_in_address_order() {
        // Its own half pages: other tests take the process's at the same time.
        let pages = Pieces::new(HALF_PAGE);
        let mut halves: Vec<HugeBuffer> = (0..2 * PAGES_PER_MAPPING)
            .map(|_| pages.take(mapping).expect("map"))
            .collect();
        let lo = halves[0].as_ptr() as usize;
        assert_eq!(lo % HUGE_PAGE, 0, "the first half starts a huge page");
        for (i, half) in halves.iter().enumerate() {
            assert_eq!(half.len(), HALF_PAGE);
            assert_eq!(half.as_ptr() as usize, lo + i * HALF_PAGE, "half {i}");
        }
        let next = pages.take(mapping).expect("map");
        assert!(
            !(lo..lo + PAGES_PER_MAPPING * HUGE_PAGE).contains(&(next.as_ptr() as usize)),
            "the ninth buffer gets a new mapping"
        );
        assert_eq!(HugeBuffer::new(1000).expect("map").len(), HALF_PAGE);
        let mut b = halves.remove(1);
        let mut a = halves.remove(0);
        a.fill(1);
        assert!(
            b.iter().all(|&x| x == 0),
            "writing one half leaves the other"
        );
        b.fill(2);
        drop(a);
        drop(halves);
        assert!(
            b.iter().all(|&x| x == 2),
            "the mapping outlives the other halves"
        );
        let c = HugeBuffer::new(HALF_PAGE + 1).expect("map");
        assert_eq!(c.len(), HUGE_PAGE, "more than a half gets whole pages");
    }

    #[test]
    fn prefaulted_halves_are_handed_out_next() {
        let pages = Pieces::new(HALF_PAGE);
        let first = pages.take(mapping).expect("map");
        let lo = first.as_ptr() as usize;
        pages.prefault(2, mapping).expect("fault in");
        let next: Vec<usize> = (0..3)
            .map(|_| pages.take(mapping).expect("map").as_ptr() as usize)
            .collect();
        assert_eq!(
            next,
            [lo + HALF_PAGE, lo + 2 * HALF_PAGE, lo + 3 * HALF_PAGE],
            "the two faulted in, then the rest in address order"
        );
    }

    #[test]
    fn quarters_are_cut_from_one_half_in_address_order() {
        let (halves, quarters) = (Pieces::new(HALF_PAGE), Pieces::new(HALF_PAGE / 4));
        let cut: Vec<HugeBuffer> = (0..5)
            .map(|_| quarters.take(|| halves.take(mapping)).expect("map"))
            .collect();
        let lo = cut[0].as_ptr() as usize;
        for (i, quarter) in cut[..4].iter().enumerate() {
            assert_eq!(quarter.len(), HALF_PAGE / 4);
            assert_eq!(
                quarter.as_ptr() as usize,
                lo + i * HALF_PAGE / 4,
                "quarter {i}"
            );
        }
        assert_eq!(
            cut[4].as_ptr() as usize,
            lo + HALF_PAGE,
            "the next half's first"
        );
        assert_eq!(HugeBuffer::quarter().expect("map").len(), QUARTER);
    }

    #[test]
    fn a_frame_returns_its_buffer_when_its_last_slice_goes() {
        let pool = FramePool::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let frame = pool.read(&mut &data[..], data.len()).expect("read");
        assert_eq!(&frame[..], &data[..]);
        let slice = frame.slice(10..20);
        let first = frame.as_ptr();
        drop(frame);
        assert!(
            pool.free.lock().unwrap().is_empty(),
            "a slice still holds it"
        );
        assert_eq!(&slice[..], &data[10..20]);
        drop(slice);
        let again = pool.read(&mut &data[..500], 500).expect("read again");
        assert_eq!(again.as_ptr(), first, "the same buffer, reused");
        assert_eq!(&again[..], &data[..500]);
        drop(again);
        // A short stream is an error, and the buffer goes back to the pool.
        assert!(pool.read(&mut &data[..10], 20).is_err());
        assert_eq!(pool.free.lock().unwrap().len(), 1);
    }
}
