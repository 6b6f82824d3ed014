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

/// Where `OutQueue::begin_placeholder` put its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Front,
    Segment(usize),
}

/// A queue of bytes to write. Empty queues hold no heap memory, so idle connections stay cheap.
///
/// Framing: a transport that wraps what the broker queues in frames (WebSocket) sets
/// `set_frame_room`; every run of bytes queued through `tail`/`push_slice`/`push_shared` is
/// then preceded by that much placeholder room, which the transport fills with the frame header
/// at flush (`take_open_frame`). So the broker encodes MQTT without knowing about frames, and a
/// burst of packets costs one frame header. Bytes a transport adds itself (control frames) go
/// through `raw_tail`, outside any frame.
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
    /// Placeholder bytes reserved in front of each run of queued bytes (0: no framing).
    frame_room: u8,
    /// The placeholder of the run being queued, not yet filled.
    open_frame: Option<Placeholder>,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.tail.len() <= self.front_written
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        (self.sealed + self.tail.len()).saturating_sub(self.front_written)
    }

    /// The owned tail to encode into; bytes appended here are queued (inside the open frame,
    /// when framing is on). O(1).
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.frame_room != 0 && self.open_frame.is_none() {
            self.open_frame = Some(self.begin_placeholder(usize::from(self.frame_room)));
        }
        self.reserved_tail()
    }

    fn reserved_tail(&mut self) -> &mut Vec<u8> {
        if self.tail.capacity() == 0 {
            self.tail.reserve(256);
        }
        &mut self.tail
    }

    /// The owned tail, outside any frame: for a transport's own bytes (HTTP answer, control
    /// frames). The open frame, if any, must have been taken first.
    pub fn raw_tail(&mut self) -> &mut Vec<u8> {
        debug_assert!(self.open_frame.is_none(), "raw bytes queued inside an open frame");
        self.reserved_tail()
    }

    /// Reserve `room` bytes for a frame header in front of every run of queued bytes (see the
    /// type's documentation); 0 turns framing off.
    pub fn set_frame_room(&mut self, room: u8) {
        self.frame_room = room;
    }

    /// The placeholder of the run queued since the last call, and the bytes queued behind it:
    /// the transport fills it with the frame header (`fill_placeholder`) before any write.
    pub fn take_open_frame(&mut self) -> Option<(Placeholder, usize)> {
        let at = self.open_frame.take()?;
        let room = usize::from(self.frame_room);
        Some((at, self.bytes_since(at).saturating_sub(room)))
    }

    /// Append bytes by copying them.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// Append shared bytes: referenced when large, copied when small. O(1), or O(len) below
    /// `SHARE_THRESHOLD`.
    #[inline]
    pub fn push_shared(&mut self, bytes: &SharedBytes) {
        if bytes.len() >= SHARE_THRESHOLD {
            self.push_reference(bytes);
        } else {
            self.push_slice(bytes);
        }
    }

    #[inline(never)]
    fn push_reference(&mut self, bytes: &SharedBytes) {
        // Opens the frame (if framing) in front of the shared bytes.
        self.tail();
        self.seal_tail();
        self.sealed += bytes.len();
        self.segments.push_back(Segment::Shared(Rc::clone(bytes)));
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

    /// Queue `n` placeholder bytes, to be replaced by `fill_placeholder` before the next write
    /// (a WebSocket frame header whose length is known only at flush time). On an empty queue
    /// they lead the tail; otherwise they are a segment of their own. Either way the bytes
    /// queued after them are never moved.
    pub fn begin_placeholder(&mut self, n: usize) -> Placeholder {
        if self.is_empty() {
            // Keep the tail's allocation (a busy connection reuses it every turn).
            self.segments.clear();
            self.sealed = 0;
            self.front_written = 0;
            self.tail.clear();
            self.tail.resize(n, 0);
            Placeholder::Front
        } else {
            self.seal_tail();
            self.sealed += n;
            self.segments.push_back(Segment::Owned(vec![0; n]));
            Placeholder::Segment(self.segments.len() - 1)
        }
    }

    /// Replace the `n`-byte placeholder with `bytes` (at most `n` long). Nothing may have been
    /// written since `begin_placeholder`.
    pub fn fill_placeholder(&mut self, at: Placeholder, n: usize, bytes: &[u8]) {
        debug_assert!(bytes.len() <= n, "placeholder of {n} bytes filled with {}", bytes.len());
        let bytes = bytes.get(..n).unwrap_or(bytes);
        match at {
            Placeholder::Front => {
                // Write into the end of the placeholder and skip its unused start.
                let skip = n - bytes.len();
                let front = match self.segments.front_mut() {
                    Some(Segment::Owned(v)) => v,
                    Some(Segment::Shared(_)) => {
                        debug_assert!(false, "front placeholder became a shared segment");
                        return;
                    }
                    None => &mut self.tail,
                };
                let slot = front.get_mut(skip..n);
                debug_assert!(slot.is_some(), "front placeholder shorter than {n} bytes");
                if let Some(slot) = slot {
                    slot.copy_from_slice(bytes);
                    self.front_written = skip;
                }
            }
            Placeholder::Segment(index) => {
                match self.segments.get_mut(index) {
                    Some(Segment::Owned(v)) => {
                        self.sealed = self.sealed - v.len() + bytes.len();
                        v.clear();
                        v.extend_from_slice(bytes);
                    }
                    // The placeholder was written out, or never made: the frame header would be
                    // lost, so tests must see it.
                    _ => debug_assert!(false, "placeholder segment {index} is gone"),
                }
            }
        }
    }

    /// Bytes queued from the placeholder `at` (included) to the end.
    pub fn bytes_since(&self, at: Placeholder) -> usize {
        match at {
            Placeholder::Front => self.len(),
            Placeholder::Segment(index) => {
                self.segments.iter().skip(index).map(|s| s.bytes().len()).sum::<usize>() + self.tail.len()
            }
        }
    }

    /// Drop everything queued and give the memory back (framing stays as set).
    pub fn clear(&mut self) {
        self.segments = VecDeque::new();
        self.tail = Vec::new();
        self.front_written = 0;
        self.sealed = 0;
        self.open_frame = None;
    }

    /// Write as much as the writer takes without blocking. `Ok(true)`: all written;
    /// `Ok(false)`: the writer would block (wait for writability).
    pub fn write_to<W: Write + ?Sized>(&mut self, writer: &mut W) -> io::Result<bool> {
        debug_assert!(self.open_frame.is_none(), "write with an unfilled frame header");
        while !self.is_empty() {
            let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            let mut skip = self.front_written;
            let all = self.segments.iter().map(Segment::bytes).chain(std::iter::once(&self.tail[..]));
            for (slot, bytes) in slices.iter_mut().zip(all) {
                debug_assert!(skip <= bytes.len(), "written offset past the front segment");
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

    /// Memory held (for tests of idle cost).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The unconsumed bytes.
    pub fn filled_mut(&mut self) -> &mut [u8] {
        debug_assert!(self.start <= self.end && self.end <= self.data.len(), "InBuf bounds broken");
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
    fn placeholder_is_filled_in_place_even_behind_shared_bytes() {
        let big: SharedBytes = vec![7u8; SHARE_THRESHOLD].into();
        let mut q = OutQueue::default();
        let at = q.begin_placeholder(10);
        assert_eq!(at, Placeholder::Front);
        q.push_slice(b"ab");
        q.push_shared(&big);
        q.fill_placeholder(at, 10, &[0x82, 0x7E, 0x08, 0x02]);
        assert_eq!(q.len(), 4 + 2 + SHARE_THRESHOLD);
        let mut w = Trickle { out: Vec::new(), limit: usize::MAX, calls: 10 };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(&w.out[..6], &[0x82, 0x7E, 0x08, 0x02, b'a', b'b']);
    }

    #[test]
    fn placeholder_behind_unwritten_bytes_is_its_own_segment() {
        let mut q = OutQueue::default();
        q.push_slice(b"old");
        let at = q.begin_placeholder(10);
        assert!(matches!(at, Placeholder::Segment(_)));
        q.push_slice(b"new");
        q.fill_placeholder(at, 10, &[0x82, 3]);
        assert_eq!(q.len(), 3 + 2 + 3);
        let mut w = Trickle { out: Vec::new(), limit: 4, calls: 10 };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(w.out, b"old\x82\x03new");
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
