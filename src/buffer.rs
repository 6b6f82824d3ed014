//! Output buffering: the bytes a connection owes its peer, batched until the end of the loop turn.
//!
//! Small packets are copied into an owned tail segment (a memcpy is cheaper than tracking a
//! reference); a large PUBLISH payload is referenced, not copied, so one message fanned out to a
//! thousand subscribers is stored once. The event loop sends everything with vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Payloads at least this large are shared by reference instead of copied per subscriber.
pub const SHARE_THRESHOLD: usize = 2048;

/// A tail that carried at least this much in one flush is kept for the next turn...
const KEEP_TAIL_AFTER: usize = 8 * 1024;
/// ...unless it grew beyond this.
const MAX_KEPT_TAIL: usize = 256 * 1024;

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Bytes shared between many output queues (and the retained store).
pub type SharedBytes = Rc<[u8]>;

#[derive(Debug)]
enum Segment {
    Owned(Vec<u8>),
    Shared(SharedBytes),
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(v) => v,
            Segment::Shared(s) => s,
        }
    }
}

/// A queue of bytes to write. Empty queues hold no heap memory, so idle connections stay cheap.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Sealed segments, written before `tail`.
    segments: VecDeque<Segment>,
    /// Owned bytes appended after the last segment; small packets are encoded straight into it.
    tail: Vec<u8>,
    /// Bytes of the front (segment, else tail) already written.
    front_written: usize,
    /// Total length of `segments`.
    sealed: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.tail.len() <= self.front_written
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        (self.sealed + self.tail.len()).saturating_sub(self.front_written)
    }

    /// The owned tail to encode into; bytes appended here are queued.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.tail.capacity() == 0 {
            self.tail.reserve(256);
        }
        &mut self.tail
    }

    /// Append bytes by copying them.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// Append shared bytes: referenced when large, copied when small.
    pub fn push_shared(&mut self, bytes: &SharedBytes) {
        if bytes.len() >= SHARE_THRESHOLD {
            self.seal_tail();
            self.sealed += bytes.len();
            self.segments.push_back(Segment::Shared(Rc::clone(bytes)));
        } else {
            self.push_slice(bytes);
        }
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            self.sealed += tail.len();
            self.segments.push_back(Segment::Owned(tail));
        }
    }

    /// Memory held (for tests of idle cost).
    pub fn capacity(&self) -> usize {
        self.tail.capacity() + self.sealed
    }

    /// On an empty queue: queue `n` placeholder bytes to be filled later by `fill_placeholder`
    /// (a WebSocket frame header whose length is known only at flush time). Returns false, doing
    /// nothing, if the queue is not empty.
    pub fn begin_with_placeholder(&mut self, n: usize) -> bool {
        if !self.is_empty() {
            return false;
        }
        self.clear();
        self.tail.resize(n, 0);
        true
    }

    /// Replace the `n`-byte placeholder at the front with `bytes` (at most `n` long): they are
    /// written into its end and the unused start is skipped, so the bytes after it are not moved.
    pub fn fill_placeholder(&mut self, n: usize, bytes: &[u8]) {
        let skip = n.saturating_sub(bytes.len());
        let front = match self.segments.front_mut() {
            Some(Segment::Owned(v)) => v,
            Some(Segment::Shared(_)) => return,
            None => &mut self.tail,
        };
        if let Some(slot) = front.get_mut(skip..n) {
            slot.copy_from_slice(bytes.get(..n - skip).unwrap_or(&[]));
            self.front_written = skip;
        }
    }

    /// Move every unwritten byte of `other` to the end of this queue, leaving `other` empty.
    /// Owned bytes are copied into the tail (they are small), shared ones stay shared.
    pub fn append_queue(&mut self, other: &mut OutQueue) {
        let mut skip = other.front_written;
        for seg in other.segments.drain(..) {
            match seg {
                Segment::Shared(s) if skip == 0 => {
                    self.seal_tail();
                    self.sealed += s.len();
                    self.segments.push_back(Segment::Shared(s));
                }
                seg => {
                    let part = seg.bytes().get(skip..).unwrap_or(&[]);
                    self.tail().extend_from_slice(part);
                }
            }
            skip = 0;
        }
        let part = other.tail.get(skip..).unwrap_or(&[]);
        self.tail().extend_from_slice(part);
        other.clear();
    }

    /// Drop everything queued and give the memory back.
    pub fn clear(&mut self) {
        self.segments = VecDeque::new();
        self.tail = Vec::new();
        self.front_written = 0;
        self.sealed = 0;
    }

    /// Write as much as the writer takes without blocking. `Ok(true)`: all written;
    /// `Ok(false)`: the writer would block (wait for writability).
    pub fn write_to<W: Write>(&mut self, writer: &mut W) -> io::Result<bool> {
        while !self.is_empty() {
            let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            let mut skip = self.front_written;
            let all = self.segments.iter().map(Segment::bytes).chain(std::iter::once(&self.tail[..]));
            for (slot, bytes) in slices.iter_mut().zip(all) {
                *slot = IoSlice::new(bytes.get(skip..).unwrap_or(&[]));
                skip = 0;
                count += 1;
            }
            let written = match writer.write_vectored(slices.get(..count).unwrap_or(&[])) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        // A busy connection (a large batch just went out) keeps its tail allocation for the next
        // turn instead of regrowing it by doubling; a quiet one gives it back.
        let keep = self.tail.len() >= KEEP_TAIL_AFTER && self.tail.capacity() <= MAX_KEPT_TAIL;
        let mut tail = std::mem::take(&mut self.tail);
        self.clear();
        if keep {
            tail.clear();
            self.tail = tail;
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segments.front() else {
                self.front_written += n;
                return;
            };
            let left = front.bytes().len().saturating_sub(self.front_written);
            if n >= left {
                n -= left;
                self.sealed -= front.bytes().len();
                self.segments.pop_front();
                self.front_written = 0;
            } else {
                self.front_written += n;
                n = 0;
            }
        }
    }
}

/// Bytes received and not yet consumed (a partial packet, frame header or HTTP head). The next
/// read goes straight into its free space, so a stream whose packets straddle reads is not
/// copied again; it holds no memory once drained.
#[derive(Debug, Default)]
pub struct InBuf {
    /// Initialised storage; `start..end` is the unconsumed data.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// The unconsumed bytes.
    pub fn filled_mut(&mut self) -> &mut [u8] {
        self.data.get_mut(self.start..self.end).unwrap_or(&mut [])
    }

    /// Drop the first `n` unconsumed bytes; give the memory back when nothing is left.
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            *self = InBuf::default();
        }
    }

    /// Free space for at least `want` more bytes after the data (moving the unconsumed bytes to
    /// the front first). Fill it, then call `commit`.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < want {
            self.data.resize(self.end + want, 0);
        }
        self.data.get_mut(self.end..).unwrap_or(&mut [])
    }

    /// Record that `n` bytes were written into `spare`.
    pub fn commit(&mut self, n: usize) {
        self.end = self.end.saturating_add(n).min(self.data.len());
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.spare(bytes.len()).get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.commit(bytes.len());
        }
    }
}

/// A slab: values addressed by small integer keys that are reused after removal. Tokens and
/// session slots index these instead of hashing on the hot path.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { entries: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if let Some(key) = self.free.pop() {
            if let Some(slot) = self.entries.get_mut(key) {
                *slot = Some(value);
                return key;
            }
        }
        self.entries.push(Some(value));
        self.entries.len() - 1
    }

    pub fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take()?;
        self.free.push(key);
        self.len -= 1;
        Some(value)
    }

    pub fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the largest key ever handed out (for side tables indexed by key).
    pub fn capacity_keys(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries.iter().enumerate().filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call, then would block after `calls` calls.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let big: SharedBytes = (0..5000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
        let mut q = OutQueue::default();
        q.push_slice(b"head");
        q.push_shared(&big);
        q.push_slice(b"tail");
        assert_eq!(q.len(), 5008);
        let mut w = Trickle { out: Vec::new(), limit: 7, calls: 3 };
        assert!(!q.write_to(&mut w).unwrap());
        w.calls = usize::MAX;
        assert!(q.write_to(&mut w).unwrap());
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"tail");
        assert_eq!(w.out, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn append_queue_keeps_unwritten_bytes_only() {
        let mut a = OutQueue::default();
        a.push_slice(b"abcdef");
        let mut w = Trickle { out: Vec::new(), limit: 2, calls: 1 };
        assert!(!a.write_to(&mut w).unwrap());
        let mut b = OutQueue::default();
        b.push_slice(b"<");
        b.append_queue(&mut a);
        assert!(a.is_empty());
        let mut w = Trickle { out: Vec::new(), limit: 100, calls: 10 };
        assert!(b.write_to(&mut w).unwrap());
        assert_eq!(w.out, b"<cdef");
    }

    #[test]
    fn placeholder_is_filled_in_place_even_behind_shared_bytes() {
        let big: SharedBytes = vec![7u8; SHARE_THRESHOLD].into();
        let mut q = OutQueue::default();
        assert!(q.begin_with_placeholder(10));
        q.push_slice(b"ab");
        q.push_shared(&big);
        q.fill_placeholder(10, &[0x82, 0x7E, 0x08, 0x02]);
        assert_eq!(q.len(), 4 + 2 + SHARE_THRESHOLD);
        let mut w = Trickle { out: Vec::new(), limit: usize::MAX, calls: 10 };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(&w.out[..6], &[0x82, 0x7E, 0x08, 0x02, b'a', b'b']);
        q.push_slice(b"x");
        assert!(!q.begin_with_placeholder(10), "only on an empty queue");
    }

    #[test]
    fn inbuf_reads_into_free_space_and_releases_when_drained() {
        let mut b = InBuf::default();
        b.extend_from_slice(b"abc");
        b.consume(1);
        let spare = b.spare(4);
        assert!(spare.len() >= 4);
        spare[..2].copy_from_slice(b"de");
        b.commit(2);
        assert_eq!(b.filled_mut(), b"bcde");
        b.consume(4);
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), 0);
    }

    #[test]
    fn quiet_connections_give_output_memory_back() {
        let mut q = OutQueue::default();
        q.push_slice(&[1; 100]);
        let mut w = Trickle { out: Vec::new(), limit: usize::MAX, calls: 10 };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(q.capacity(), 0);
        q.push_slice(&[1; 20_000]);
        assert!(q.write_to(&mut w).unwrap());
        assert!(q.capacity() >= 20_000, "busy connection keeps its buffer");
        assert!(q.is_empty());
    }

    #[test]
    fn slab_reuses_keys() {
        let mut s = Slab::default();
        let a = s.insert(1);
        let b = s.insert(2);
        assert_eq!(s.remove(a), Some(1));
        assert_eq!(s.get(a), None);
        let c = s.insert(3);
        assert_eq!(c, a);
        assert_eq!(s.get(b), Some(&2));
        assert_eq!(s.len(), 2);
    }
}
