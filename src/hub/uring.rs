//! Many socket writes in one system call: a fan-out's sends submitted together through io_uring.
//!
//! Owns the thread's ring and every byte the kernel may read during a batch. Called by the cork
//! (`Batch` from its batched flush, `cork::flush_together`; `Sends` from a direct fan-out,
//! `cork::write_direct`) and by the node's start (`available`); uses `io_uring`, `libc` and
//! `bytes` only, nothing of the hub. Together with `syscalls` it is the only place in
//! the hub with `unsafe`.
//!
//! Issue 8 measured where a delivery's user time goes (`scripts/fanout-profile.sh BIN perf`): with
//! one `send` per recipient, the fan-out was a third of it, and most of that was spent right after
//! each system call returned (the wrapper and the caller, with caches and TLB cold after the
//! kernel's TCP work), not in instructions of our own. A `Batch` queues every recipient's write
//! and makes one `io_uring_enter` for up to `RING_ENTRIES` of them; the kernel does the same TCP
//! work, but user code runs once per batch instead of once per recipient. See the README's table.
//!
//! Sound by construction, not by the kernel's behaviour:
//! - The kernel reads only memory that lives until the batch is done with it: the frames, lent
//!   to the batch (`push` borrows them for the batch's lifetime, so the caller can neither drop
//!   nor change them before `run_each` returns), and the iovecs and msghdrs that point into
//!   them, in one `Pinned` block of the batch's own (a write of one frame, a fan-out's usual
//!   write, needs neither: its `Send` points into the frame). A batch whose writes all completed keeps
//!   the block, emptied, for the thread's next batch, and owns no frame; a batch that cannot
//!   prove that (a write still pending after the cancel, an io_uring error, a panic between push
//!   and reap) *abandons* the ring: it clones every lent frame into the block (still inside
//!   `run_each`, so the frames are still lent) and leaks ring and block together, so whatever
//!   the kernel may still read stays alive forever. The leak is counted (`leaks`) and bounded:
//!   after `MAX_ABANDONED_RINGS` abandoned rings the process stops using io_uring.
//! - The ring is taken out of its thread-local slot for the batch and held by a drop guard
//!   (`InFlight`): on unwinding it is abandoned, never put back, so stale entries can never be
//!   submitted by the thread's next batch, which makes a fresh ring.
//! - Sockets are `BorrowedFd`s, open for the batch's lifetime; each entry's `user_data` is its
//!   write's index, and `run_each` hands back `(key, WriteResult)` pairs: results are paired with
//!   the writes they belong to, not by position.
//!
//! Every write carries `MSG_DONTWAIT`, which makes io_uring complete it inline (with what the
//! socket took, or `EAGAIN`) instead of waiting for the socket: a batch never waits on a slow
//! client. Should a write still be left pending (a kernel that behaves otherwise), it is cancelled
//! after `WAIT_LIMIT` with `IORING_OP_ASYNC_CANCEL` by its `user_data` (no flags: the
//! `IORING_ASYNC_CANCEL_ALL`/`FD`/`ANY` flags need 5.19, matching one request by `user_data` works
//! wherever the opcode does, which `make` probes); a write still pending `WAIT_LIMIT` after its
//! cancellation, or where cancelling is off, abandons the ring.
//!
//! One ring per thread, made on first use. Where io_uring is unavailable (not Linux, a kernel
//! without it, a seccomp profile that refuses it, as Docker's default does) `available` says so,
//! and the node's cork does not batch: each socket is written on its own, as with
//! `--no-io-uring`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Submission queue size: the most writes per system call.
pub(crate) const RING_ENTRIES: usize = 256;

/// The longest a batch waits for writes that did not complete inline before cancelling them (and
/// again for the cancelled ones before abandoning the ring). Inline completion takes microseconds;
/// 100 ms is far beyond it and still a short stall of the node's receive loop in the case that
/// should never happen.
#[cfg(target_os = "linux")]
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Abandoned rings after which the process stops using io_uring: each one leaks a ring and one
/// batch's frames (at most `RING_ENTRIES` writes), so the leak stays bounded even on a kernel that
/// never completes a write inline.
pub(crate) const MAX_ABANDONED_RINGS: u64 = 4;

/// Process-wide state: not tried yet, usable, or not (failed once on some thread, or turned off).
static STATE: AtomicU8 = AtomicU8::new(UNTRIED);
const UNTRIED: u8 = 0;
const USABLE: u8 = 1;
const UNUSABLE: u8 = 2;

/// Rings abandoned (leaked with their batch) in this process.
static ABANDONED_RINGS: AtomicU64 = AtomicU64::new(0);
/// Frame bytes leaked with them.
static LEAKED_BYTES: AtomicU64 = AtomicU64::new(0);

/// What the abandoned rings of this process keep alive forever (see the module docs): in
/// `/metrics`, and in a `warn` line per abandoned ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leaks {
    pub rings: u64,
    pub bytes: u64,
}

/// The leak so far (exported in `/metrics`).
pub(crate) fn leaks() -> Leaks {
    Leaks {
        rings: ABANDONED_RINGS.load(Ordering::Relaxed),
        bytes: LEAKED_BYTES.load(Ordering::Relaxed),
    }
}

/// Turns batching off for the whole process.
pub(crate) fn disable() {
    STATE.store(UNUSABLE, Ordering::Relaxed);
}

/// Whether batches can be submitted on this thread (makes its ring on first call).
pub(crate) fn available() -> bool {
    match STATE.load(Ordering::Relaxed) {
        UNUSABLE => false,
        _ => imp::ready(),
    }
}

/// What became of one write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteResult {
    /// The socket took this many bytes (maybe fewer than given).
    Written(usize),
    /// The socket was full (`EAGAIN`): nothing was written.
    WouldBlock,
    /// The kernel refused the write with this errno (a reset, a closed socket): nothing was written.
    Failed(i32),
    /// Nothing was written: cancelled before the socket took anything, or never submitted because
    /// the batch stopped before it.
    Cancelled,
    /// Its completion never came: the ring was abandoned with the write maybe still in the kernel.
    /// Whether and how much it wrote is unknown, so the stream can no longer be trusted.
    Abandoned,
}

impl WriteResult {
    /// A completion's `res`: bytes taken, or a negated errno.
    #[cfg(target_os = "linux")]
    fn from_completion(res: i32) -> WriteResult {
        match usize::try_from(res) {
            Ok(n) => WriteResult::Written(n),
            Err(_) => match -res {
                libc::EAGAIN => WriteResult::WouldBlock,
                libc::ECANCELED => WriteResult::Cancelled,
                errno => WriteResult::Failed(errno),
            },
        }
    }
}

/// A frame of a batch, borrowed for it, written from byte `.1` on.
pub(crate) type FrameRef<'fd> = (&'fd bytes::Bytes, usize);

/// One write of a batch: its key, its socket and its frames' range in `Batch::frames`.
struct Write<'fd, K> {
    key: K,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fd: std::os::fd::BorrowedFd<'fd>,
    frames: (usize, usize),
}

/// Writes to submit together, each under the caller's key. The batch owns (refcounted clones
/// of) every frame; the sockets are borrowed for `'fd`, so they stay open until `run` returns.
pub(crate) struct Batch<'fd, K> {
    writes: Vec<Write<'fd, K>>,
    frames: Vec<FrameRef<'fd>>,
    /// Test hooks: writes that wait for a full socket, no cancellation, a panic between push and
    /// submit.
    #[cfg(test)]
    hooks: Hooks,
}

#[cfg(test)]
#[derive(Clone, Copy, Default)]
struct Hooks {
    waiting: bool,
    no_cancel: bool,
    panic_after_push: bool,
}

thread_local! {
    /// The frame list of the thread's last batch, empty, kept for its capacity: a node's receive
    /// loop batches every message, and this saves it an allocation each time.
    static SPARE_FRAMES: std::cell::RefCell<Vec<FrameRef<'static>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty list of any lifetime (of elements of the same layout) with `list`'s allocation: std collects a `Vec`'s
/// own iterator in place when the element layouts match, as they do here (where it does not,
/// this allocates anew; nothing depends on it).
fn relist<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter()
        .map(|_| -> U { unreachable!("the list is empty") })
        .collect()
}

/// A list kept in `spare` (a thread's emptied list of some lifetime), emptied, as a list of any
/// lifetime with room for `room` (a new one when there is none).
pub(super) fn take_spare<S, T>(
    spare: &'static std::thread::LocalKey<std::cell::RefCell<Vec<S>>>,
    room: usize,
) -> Vec<T> {
    let kept = spare
        .try_with(|spare| {
            spare
                .try_borrow_mut()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut list = relist(kept);
    list.reserve(room);
    list
}

/// Keeps an emptied `list` in `spare` for the thread's next batch; a one-off huge list gives its
/// memory back.
pub(super) fn keep_spare<S, T>(
    spare: &'static std::thread::LocalKey<std::cell::RefCell<Vec<S>>>,
    list: Vec<T>,
) {
    if list.capacity() <= 4 * RING_ENTRIES {
        let list = relist(list);
        let _ = spare.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                *spare = list;
            }
        });
    }
}

impl<'fd, K> Batch<'fd, K> {
    /// Room for `writes` writes of `frames` frames in all (more grow the buffers).
    pub fn with_capacity(writes: usize, frames: usize) -> Self {
        Batch {
            writes: Vec::with_capacity(writes),
            frames: take_spare(&SPARE_FRAMES, frames),
            #[cfg(test)]
            hooks: Hooks::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Queues one write of `frames` (each from its offset on), in order, to `fd`, under `key`.
    /// The frames are borrowed until `run_each` returns: the caller keeps them, unchanged, for
    /// as long (a batch that must abandon its ring clones them then, see the module docs).
    pub fn push(
        &mut self,
        key: K,
        fd: std::os::fd::BorrowedFd<'fd>,
        frames: impl IntoIterator<Item = FrameRef<'fd>>,
    ) {
        let start = self.frames.len();
        self.frames.extend(frames);
        self.writes.push(Write {
            key,
            fd,
            frames: (start, self.frames.len()),
        });
    }

    /// Submits every queued write and waits for all of them (see the module docs for what happens
    /// when one does not complete). Returns every write's key with its result, or `None` when
    /// io_uring cannot be used here: then nothing was written.
    #[cfg(test)]
    pub fn run(self) -> Option<Vec<(K, WriteResult)>>
    where
        K: Copy,
    {
        // Each write keyed by its position too, so the results come back in the order pushed.
        let Batch {
            writes,
            frames,
            hooks,
        } = self;
        let writes = writes
            .into_iter()
            .enumerate()
            .map(|(i, write)| Write {
                key: (i, write.key),
                fd: write.fd,
                frames: write.frames,
            })
            .collect();
        let mut results = Vec::new();
        let ran = imp::run(
            Batch {
                writes,
                frames,
                hooks,
            },
            |key, result| results.push((key, result)),
        );
        results.sort_by_key(|((i, _), _)| *i);
        ran.then(|| {
            results
                .into_iter()
                .map(|((_, key), result)| (key, result))
                .collect()
        })
    }

    /// `run`, handing each write's key and result to `each` (in the order they complete)
    /// instead of collecting them. Returns false when io_uring cannot be used here: then nothing
    /// was written and `each` was not called.
    pub fn run_each(self, each: impl FnMut(K, WriteResult)) -> bool
    where
        K: Copy,
    {
        imp::run(self, each)
    }
}

/// One frame to each of many sockets: a fan-out's writes, each a `Send` straight from its
/// frame (no iovec, no message header), each under its position in the list.
pub(crate) struct Sends<'fd> {
    writes: Vec<(std::os::fd::BorrowedFd<'fd>, &'fd bytes::Bytes)>,
    #[cfg(test)]
    hooks: Hooks,
}

thread_local! {
    /// The write list of the thread's last `Sends`, empty, kept for its capacity.
    static SPARE_SENDS: std::cell::RefCell<Vec<(std::os::fd::BorrowedFd<'static>, &'static bytes::Bytes)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl<'fd> Sends<'fd> {
    /// Room for `writes` writes (the thread's spare list when there is one).
    pub fn with_capacity(writes: usize) -> Self {
        Sends {
            writes: take_spare(&SPARE_SENDS, writes),
            #[cfg(test)]
            hooks: Hooks::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Queues a write of all of `frame` to `fd`; its key is the number of writes pushed before
    /// it. The frame is borrowed until `run_each` returns, as in `Batch::push`.
    pub fn push(&mut self, fd: std::os::fd::BorrowedFd<'fd>, frame: &'fd bytes::Bytes) {
        self.writes.push((fd, frame));
    }

    /// Submits every write and waits for all of them, as `Batch::run_each`, handing each write's
    /// key (its position) and result to `each`, in order. Returns false when io_uring cannot be
    /// used here: then nothing was written and `each` was not called.
    pub fn run_each(self, each: impl FnMut(usize, WriteResult)) -> bool {
        imp::run_sends(self, each)
    }
}

/// The test hooks of a `Batch` or a `Sends`.
#[cfg(test)]
trait Hooked: Sized {
    fn hooks(&mut self) -> &mut Hooks;

    /// Writes that wait for a full socket instead of answering `EAGAIN` (so they stay pending).
    fn waiting(mut self) -> Self {
        self.hooks().waiting = true;
        self
    }

    /// No cancellation of pending writes: the batch abandons the ring after `WAIT_LIMIT`.
    fn without_cancel(mut self) -> Self {
        self.hooks().no_cancel = true;
        self
    }
}

#[cfg(test)]
impl Hooked for Sends<'_> {
    fn hooks(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

#[cfg(test)]
impl<K> Hooked for Batch<'_, K> {
    fn hooks(&mut self) -> &mut Hooks {
        &mut self.hooks
    }
}

#[cfg(test)]
impl<K> Batch<'_, K> {
    /// Panics after pushing the entries, before submitting them.
    fn panicking_after_push(mut self) -> Self {
        self.hooks.panic_after_push = true;
        self
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::RefCell;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;

    use bytes::Bytes;
    use io_uring::{IoUring, opcode, squeue, types};

    use super::{
        ABANDONED_RINGS, Batch, LEAKED_BYTES, MAX_ABANDONED_RINGS, RING_ENTRIES, STATE, UNUSABLE, USABLE,
        WAIT_LIMIT, WriteResult,
    };

    thread_local! {
        /// The thread's ring with its batch buffers, made on first use; empty again after an
        /// abandoned batch (the next one makes a fresh ring). A batch borrows it in place.
        static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
    }

    /// A thread's ring and the buffers of its batches, kept emptied between batches for their
    /// capacity.
    struct Ring {
        uring: IoUring,
        /// What the kernel reads besides the lent frames; boxed, so it can be leaked alone.
        pinned: Box<Pinned>,
        /// One bit per write of the batch: its result was handed out.
        reported: Vec<u64>,
    }

    impl Ring {
        /// Empties the buffers (a one-off huge batch gives their memory back).
        fn clear(&mut self) {
            let pinned = &mut *self.pinned;
            pinned.owned.clear();
            pinned.iovecs.clear();
            pinned.msgs.clear();
            self.reported.clear();
            if pinned.iovecs.capacity() > 4 * RING_ENTRIES {
                pinned.iovecs = Vec::new();
                pinned.msgs = Vec::new();
                self.reported = Vec::new();
            }
        }
    }

    /// `send` flags of every write.
    const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    /// Set in the `user_data` of cancellations (writes use their index, far below it).
    const CANCEL: u64 = 1 << 63;

    /// A ring that can send: setup allowed, the timed wait (5.11), and the send and cancel
    /// opcodes known to the kernel (`Probe`, 5.6).
    fn make() -> std::io::Result<IoUring> {
        let cq = u32::try_from(2 * RING_ENTRIES).unwrap_or(u32::MAX);
        let entries = u32::try_from(RING_ENTRIES).unwrap_or(u32::MAX);
        // One thread submits to this ring; older kernels refuse the hint, so retry without it.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_cqsize(cq)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(std::io::Error::other("the kernel's io_uring has no timed wait"));
        }
        if !(probe.is_supported(opcode::Send::CODE)
            && probe.is_supported(opcode::SendMsg::CODE)
            && probe.is_supported(opcode::AsyncCancel::CODE))
        {
            return Err(std::io::Error::other(
                "the kernel's io_uring cannot send on sockets",
            ));
        }
        Ok(ring)
    }

    /// Puts a ring in the thread's empty slot (made now); false when io_uring is unusable in
    /// this process.
    fn fill(slot: &mut Option<Ring>) -> bool {
        if STATE.load(Ordering::Relaxed) == UNUSABLE {
            return false;
        }
        if slot.is_some() {
            return true;
        }
        match make() {
            Ok(uring) => {
                if STATE.swap(USABLE, Ordering::Relaxed) != USABLE {
                    tracing::debug!("fan-out writes are batched through io_uring");
                }
                *slot = Some(Ring {
                    uring,
                    pinned: Box::new(Pinned {
                        owned: Vec::new(),
                        iovecs: Vec::new(),
                        msgs: Vec::new(),
                    }),
                    reported: Vec::new(),
                });
                true
            }
            Err(e) => {
                if STATE.swap(UNUSABLE, Ordering::Relaxed) != UNUSABLE {
                    tracing::info!(
                        error = %e,
                        "io_uring is unavailable: every delivery is written with its own send"
                    );
                }
                false
            }
        }
    }

    /// Runs `f` on the thread's slot with a ring in it; `None` when io_uring is unusable, or the
    /// slot is already borrowed (no batch runs inside another).
    fn with_ring<R>(f: impl FnOnce(&mut Option<Ring>) -> R) -> Option<R> {
        RING.try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            fill(&mut slot).then(|| f(&mut slot))
        })
        .ok()
        .flatten()
    }

    /// Whether this thread has (or can make) a ring.
    pub(super) fn ready() -> bool {
        with_ring(|_| ()).is_some()
    }

    /// The ring's descriptor: a fresh ring has another one (the abandoned one stays open).
    #[cfg(test)]
    pub(super) fn ring_fd() -> Option<i32> {
        with_ring(|slot| slot.as_ref().map(|ring| ring.uring.as_raw_fd())).flatten()
    }

    /// What the kernel may read during a batch besides the frames themselves (which the caller
    /// lends the batch): the iovecs pointing into the frames and the msghdrs pointing into the
    /// iovecs. Filled before the first entry is pushed and never changed after, so no pointer
    /// into it moves; reused only once every write completed. When the batch cannot prove that,
    /// `owned` takes a clone of every frame and the block is leaked with the ring: the frames'
    /// memory then lives for ever too.
    struct Pinned {
        owned: Vec<Bytes>,
        iovecs: Vec<libc::iovec>,
        msgs: Vec<libc::msghdr>,
    }

    /// The thread's ring slot while a batch's writes may be in flight. Dropped with `settled`
    /// (every pushed entry submitted and reaped), it empties the ring's buffers for the next
    /// batch; dropped otherwise (an error, or unwinding from a panic), it takes the ring out of
    /// the slot and abandons it.
    struct InFlight<'s, 'a> {
        slot: &'s mut Option<Ring>,
        settled: bool,
        /// The frames the entries point into, lent by the caller for the batch.
        lent: Lent<'a>,
    }

    /// The frames lent to a batch: a `Batch`'s, or a `Sends`' (one per write).
    #[derive(Clone, Copy)]
    enum Lent<'a> {
        Frames(&'a [super::FrameRef<'a>]),
        Sends(&'a [(std::os::fd::BorrowedFd<'a>, &'a Bytes)]),
    }

    impl Lent<'_> {
        /// A clone of every lent frame (for a leaked block).
        fn clone_into(self, owned: &mut Vec<Bytes>) {
            match self {
                Lent::Frames(frames) => owned.extend(frames.iter().map(|(frame, _)| Bytes::clone(frame))),
                Lent::Sends(writes) => owned.extend(writes.iter().map(|(_, frame)| Bytes::clone(frame))),
            }
        }
    }

    impl Drop for InFlight<'_, '_> {
        fn drop(&mut self) {
            if self.settled {
                if let Some(ring) = self.slot.as_mut() {
                    ring.clear();
                }
            } else if let Some(mut ring) = self.slot.take() {
                // The lent frames are still borrowed here (this runs inside `run`, unwinding
                // included): clones of them keep their memory alive with the leaked block.
                self.lent.clone_into(&mut ring.pinned.owned);
                abandon(ring);
            }
        }
    }

    /// Leaks a ring with its `Pinned` block: a write still in the kernel may read the block (and
    /// the frames it owns clones of) at any time, and the ring's queues may still receive its
    /// completion. Counted; past `MAX_ABANDONED_RINGS` the process stops using io_uring.
    fn abandon(ring: Ring) {
        let Ring { uring, pinned, .. } = ring;
        let bytes: usize = pinned.owned.iter().map(Bytes::len).sum();
        std::mem::forget(uring);
        Box::leak(pinned);
        let rings = ABANDONED_RINGS.fetch_add(1, Ordering::Relaxed) + 1;
        LEAKED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
        if rings >= MAX_ABANDONED_RINGS {
            super::disable();
        }
        tracing::warn!(
            rings,
            bytes,
            "an io_uring batch could not prove its writes done: its ring and buffers are leaked{}",
            if rings >= MAX_ABANDONED_RINGS {
                "; every delivery is written with its own send from now on"
            } else {
                ""
            }
        );
    }

    pub(super) fn run<K: Copy>(batch: Batch<'_, K>, mut each: impl FnMut(K, WriteResult)) -> bool {
        let Batch { writes, frames, .. } = batch;
        if writes.is_empty() {
            super::keep_spare(&super::SPARE_FRAMES, frames);
            return true;
        }
        #[cfg(not(test))]
        let options = Options::default();
        #[cfg(test)]
        let options = Options::from(batch.hooks);
        let ran = settle(
            Lent::Frames(&frames),
            writes.len(),
            options,
            |ring| prepare(ring, &frames, &writes),
            |i, msgs| {
                let write = &writes[i];
                let fd = types::Fd(write.fd.as_raw_fd());
                Ok(match frames_of(&frames, write) {
                    (_, Some(bytes)) => Some(send(fd, bytes, options.flags)),
                    ([], None) => None,
                    (_, None) => {
                        let Some(msg) = msgs.next() else {
                            return Err(std::io::Error::other("a write without its msghdr"));
                        };
                        let msg: *const libc::msghdr = msg;
                        Some(opcode::SendMsg::new(fd, msg).flags(options.flags as u32).build())
                    }
                })
            },
            |i, result| each(writes[i].key, result),
        );
        super::keep_spare(&super::SPARE_FRAMES, frames);
        ran
    }

    pub(super) fn run_sends(sends: super::Sends<'_>, each: impl FnMut(usize, WriteResult)) -> bool {
        let super::Sends { writes, .. } = sends;
        if writes.is_empty() {
            super::keep_spare(&super::SPARE_SENDS, writes);
            return true;
        }
        #[cfg(not(test))]
        let options = Options::default();
        #[cfg(test)]
        let options = Options::from(sends.hooks);
        let ran = settle(
            Lent::Sends(&writes),
            writes.len(),
            options,
            |_| {},
            |i, _| {
                let (fd, frame) = writes[i];
                Ok(Some(send(types::Fd(fd.as_raw_fd()), frame, options.flags)))
            },
            each,
        );
        super::keep_spare(&super::SPARE_SENDS, writes);
        ran
    }

    /// A `Send` of `bytes` (at most `u32::MAX` of them: a longer frame is a partial write).
    fn send(fd: types::Fd, bytes: &[u8], flags: i32) -> squeue::Entry {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        opcode::Send::new(fd, bytes.as_ptr(), len).flags(flags).build()
    }

    /// A batch of `n` writes on the thread's ring: `prepare` fills the block the entries may
    /// point into (the ring's buffers are empty), `entry_of` makes write `i`'s entry (`None`:
    /// nothing to write), which may point only into that block or into `lent`; every write's
    /// index and result go to `each` as they complete (a write whose completion never came is
    /// `Abandoned`). Returns false when io_uring cannot be used here: then nothing was written
    /// and `each` was not called.
    fn is_set(bits: &[u64], i: usize) -> bool {
        bits.get(i / 64).is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i`; false when it was set already.
    fn set(bits: &mut [u64], i: usize) -> bool {
        match bits.get_mut(i / 64) {
            Some(word) if *word & (1 << (i % 64)) == 0 => {
                *word |= 1 << (i % 64);
                true
            }
            _ => false,
        }
    }

    fn settle(
        lent: Lent<'_>,
        n: usize,
        options: Options,
        prepare: impl FnOnce(&mut Ring),
        entry_of: impl FnMut(
            usize,
            &mut std::slice::Iter<'_, libc::msghdr>,
        ) -> std::io::Result<Option<squeue::Entry>>,
        mut each: impl FnMut(usize, WriteResult),
    ) -> bool {
        with_ring(|slot| {
            let Some(ring) = slot.as_mut() else {
                return;
            };
            // Whatever a batch that unwound before settling left behind.
            ring.clear();
            ring.reported.resize(n.div_ceil(64), 0);
            prepare(ring);
            let mut flight = InFlight {
                slot,
                settled: false,
                lent,
            };
            match submit_all(&mut flight, n, options, entry_of, &mut each) {
                // Every write was reported.
                Ok(()) => flight.settled = true,
                Err(e) => {
                    tracing::warn!(error = %e, "an io_uring batch failed");
                    // A write not reported is one whose completion never came.
                    let reported = flight
                        .slot
                        .as_ref()
                        .map(|ring| ring.reported.as_slice())
                        .unwrap_or_default();
                    for i in (0..n).filter(|&i| !is_set(reported, i)) {
                        each(i, WriteResult::Abandoned);
                    }
                }
            }
            // Empties the buffers, or abandons the ring with its block (see `InFlight`).
            drop(flight);
        })
        .is_some()
    }

    /// The bytes of a lent frame still to be written.
    fn unwritten<'a>((frame, from): &super::FrameRef<'a>) -> &'a [u8] {
        frame.get(*from..).unwrap_or_default()
    }

    /// A write's frames, and, for a write of one frame whose length fits a `Send` (a fan-out's
    /// usual write), that frame's bytes: its entry points into the frame, with no iovec.
    fn frames_of<'f, 'a, K>(
        frames: &'f [super::FrameRef<'a>],
        write: &super::Write<'_, K>,
    ) -> (&'f [super::FrameRef<'a>], Option<&'a [u8]>) {
        let (start, end) = write.frames;
        let of = frames.get(start..end).unwrap_or_default();
        match of {
            [one] => {
                let bytes = unwritten(one);
                (of, u32::try_from(bytes.len()).is_ok().then_some(bytes))
            }
            _ => (of, None),
        }
    }

    /// Fills the ring's buffers for a batch: the block the kernel reads, complete before
    /// anything is pushed (and not changed after: no pointer into it moves). Only a write of
    /// several frames needs it (an iovec per frame, a msghdr per write, in the order of the
    /// writes); when every write has one frame there is nothing to do.
    fn prepare<K>(ring: &mut Ring, frames: &[super::FrameRef<'_>], writes: &[super::Write<'_, K>]) {
        let pinned = &mut ring.pinned;
        if frames.len() == writes.len() && writes.iter().all(|w| w.frames.1 - w.frames.0 == 1) {
            return;
        }
        // Room for every frame's iovec up front: the msghdrs point into `iovecs`, which must not
        // move once the first one is made.
        pinned.iovecs.reserve(frames.len());
        for write in writes {
            let (many, None) = frames_of(frames, write) else {
                continue;
            };
            if many.is_empty() {
                continue;
            }
            let first = pinned.iovecs.len();
            pinned.iovecs.extend(many.iter().map(|frame| {
                let bytes = unwritten(frame);
                libc::iovec {
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                }
            }));
            // SAFETY: `msghdr` is a C struct of integers and pointers, for which all-zero bytes
            // are a valid value (no name, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = pinned.iovecs[first..].as_ptr().cast_mut();
            msg.msg_iovlen = many.len() as _;
            pinned.msgs.push(msg);
        }
    }

    #[derive(Clone, Copy)]
    struct Options {
        flags: i32,
        cancel: bool,
        #[cfg(test)]
        panic_after_push: bool,
    }

    #[cfg(test)]
    impl From<super::Hooks> for Options {
        fn from(hooks: super::Hooks) -> Self {
            Options {
                flags: if hooks.waiting {
                    FLAGS & !libc::MSG_DONTWAIT
                } else {
                    FLAGS
                },
                cancel: !hooks.no_cancel,
                panic_after_push: hooks.panic_after_push,
            }
        }
    }

    impl Default for Options {
        fn default() -> Self {
            Options {
                flags: FLAGS,
                cancel: true,
                #[cfg(test)]
                panic_after_push: false,
            }
        }
    }

    /// Pushes and reaps every write, `RING_ENTRIES` at a time. `Ok` means every pushed entry was
    /// submitted and its completion reaped: nothing is left in the ring.
    fn submit_all(
        flight: &mut InFlight<'_, '_>,
        n: usize,
        options: Options,
        mut entry_of: impl FnMut(
            usize,
            &mut std::slice::Iter<'_, libc::msghdr>,
        ) -> std::io::Result<Option<squeue::Entry>>,
        each: &mut impl FnMut(usize, WriteResult),
    ) -> std::io::Result<()> {
        let Some(Ring {
            uring: ring,
            pinned,
            reported,
        }) = flight.slot.as_mut()
        else {
            return Err(std::io::Error::other("no ring"));
        };
        // The msghdr of the next write of several frames (`prepare` made them in write order).
        let mut msgs = pinned.msgs.iter();
        for chunk_start in (0..n).step_by(RING_ENTRIES) {
            let chunk_end = (chunk_start + RING_ENTRIES).min(n);
            let mut pushed = 0;
            // One view of the queue for the chunk: its tail is published when it drops.
            let mut queue = ring.submission();
            for i in chunk_start..chunk_end {
                let Some(entry) = entry_of(i, &mut msgs)? else {
                    set(reported, i);
                    each(i, WriteResult::Written(0));
                    continue;
                };
                // SAFETY: the entry points into `pinned` (iovecs and msghdrs built before the
                // first push and never changed after) or into the frames lent to the batch,
                // which all live until every write completed: `InFlight` reuses the block only
                // when the batch settled, and otherwise leaks it with clones of the frames. The
                // fd is borrowed for the batch's lifetime, so it is open at submission. The queue
                // has room: it holds at most one chunk, and the previous chunk was submitted and
                // reaped.
                if unsafe { queue.push(&entry.user_data(i as u64)) }.is_err() {
                    return Err(std::io::Error::other("the io_uring submission queue is full"));
                }
                pushed += 1;
            }
            drop(queue);
            #[cfg(test)]
            if options.panic_after_push {
                panic!("injected: a panic between push and reap");
            }
            if pushed > 0 {
                complete(
                    ring,
                    chunk_start..chunk_end,
                    pushed,
                    reported,
                    each,
                    options.cancel,
                )?;
            }
        }
        Ok(())
    }

    /// Submits what is queued and hands the results of `want` writes in `range` to `each` as
    /// they complete, marking them in `reported`. Writes left pending after `WAIT_LIMIT` are cancelled by their `user_data` (when
    /// `cancel`); still pending `WAIT_LIMIT` later, or without `cancel`, the batch fails (and the
    /// caller's `InFlight` abandons the ring).
    fn complete(
        ring: &mut IoUring,
        range: std::ops::Range<usize>,
        want: usize,
        reported: &mut [u64],
        each: &mut impl FnMut(usize, WriteResult),
        cancel: bool,
    ) -> std::io::Result<()> {
        let timeout = types::Timespec::from(WAIT_LIMIT);
        let args = types::SubmitArgs::new().timespec(&timeout);
        let mut left = want;
        // Cancellations submitted but not reaped: their completions must be reaped too before
        // the ring can go back.
        let mut cancels = 0usize;
        let mut cancelled = false;
        while left > 0 || cancels > 0 {
            match ring.submitter().submit_with_args(left + cancels, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let before = (left, cancels);
            for cqe in ring.completion() {
                let data = cqe.user_data();
                if data & CANCEL != 0 {
                    cancels = cancels.saturating_sub(1);
                    continue;
                }
                let Ok(i) = usize::try_from(data) else {
                    continue;
                };
                if range.contains(&i) && set(reported, i) {
                    each(i, WriteResult::from_completion(cqe.result()));
                    left -= 1;
                }
            }
            if (left, cancels) != before {
                continue;
            }
            // Nothing came within `WAIT_LIMIT`.
            if cancelled || !cancel {
                return Err(std::io::Error::other(format!(
                    "{left} io_uring writes stay pending{}",
                    if cancelled { " after cancellation" } else { "" }
                )));
            }
            tracing::warn!(left, "io_uring writes did not complete inline; cancelling them");
            for i in range.clone() {
                if !is_set(reported, i) {
                    let entry = opcode::AsyncCancel::new(i as u64)
                        .build()
                        .user_data(CANCEL | i as u64);
                    // SAFETY: a cancellation points to no memory. The queue has room: the
                    // chunk's writes were all submitted, and there is at most one cancellation
                    // per write.
                    if unsafe { ring.submission().push(&entry) }.is_err() {
                        return Err(std::io::Error::other("the io_uring submission queue is full"));
                    }
                    cancels += 1;
                }
            }
            cancelled = true;
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Batch, WriteResult};

    pub(super) fn ready() -> bool {
        false
    }

    pub(super) fn run<K>(_: Batch<'_, K>, _: impl FnMut(K, WriteResult)) -> bool {
        false
    }

    pub(super) fn run_sends(_: super::Sends<'_>, _: impl FnMut(usize, WriteResult)) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;

    use super::{Batch, Hooked, Sends, WriteResult, available, imp, leaks};

    /// Whether io_uring works here; prints why a test is skipped when it does not (Docker's default
    /// seccomp profile refuses `io_uring_setup`, a kernel may lack it).
    fn usable(test: &str) -> bool {
        let ok = available();
        if !ok {
            eprintln!("{test}: skipped: io_uring is refused or unavailable on this machine");
        }
        ok
    }

    /// Writes to `socket` until the kernel takes no more.
    fn fill(socket: &UnixStream) {
        socket.set_nonblocking(true).expect("a non-blocking socket");
        let chunk = [0u8; 64 * 1024];
        loop {
            match (&*socket).write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the socket: {e}"),
            }
        }
    }

    /// Reads what `socket` holds now, without waiting.
    fn drain(socket: &UnixStream) -> Vec<u8> {
        socket.set_nonblocking(true).expect("a non-blocking socket");
        let mut all = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match (&*socket).read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("draining the socket: {e}"),
            }
        }
        all
    }

    /// A frame whose storage reports its drop through `freed`.
    fn watched(byte: u8, len: usize, freed: &Arc<AtomicBool>) -> Bytes {
        struct Owner(Vec<u8>, Arc<AtomicBool>);
        impl AsRef<[u8]> for Owner {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.1.store(true, Ordering::SeqCst);
            }
        }
        Bytes::from_owner(Owner(vec![byte; len], freed.clone()))
    }

    /// A batch's writes complete inline: each result is what its socket took, or `WouldBlock` for
    /// a full socket, which the batch does not wait for; every result carries its write's key.
    #[test]
    fn writes_complete_inline_and_a_full_socket_answers_would_block() {
        if !usable("writes_complete_inline_and_a_full_socket_answers_would_block") {
            return;
        }
        let (a, a_peer) = UnixStream::pair().expect("a socket pair");
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let (one, frame, lost) = (
            Bytes::from_static(b"one "),
            Bytes::from_static(b"frame"),
            Bytes::from_static(b"lost"),
        );
        let mut batch = Batch::with_capacity(2, 3);
        // The first frame from its second byte on (a frame partly written before).
        batch.push("a", a.as_fd(), [(&one, 1), (&frame, 0)]);
        batch.push("full", full.as_fd(), [(&lost, 0)]);
        assert_eq!(
            batch.run(),
            Some(vec![
                ("a", WriteResult::Written(8)),
                ("full", WriteResult::WouldBlock)
            ])
        );
        assert_eq!(drain(&a_peer), b"ne frame");
        drop(full_peer);
    }

    /// `Sends` (a fan-out's one frame per socket): each write's result under its position, a
    /// full socket answering `WouldBlock`; a write left pending with cancelling off abandons the
    /// ring, and its frame stays alive for the kernel, as with a `Batch`.
    #[test]
    fn sends_report_each_write_under_its_position_and_an_abandoned_one_keeps_its_frame() {
        if !usable("sends_report_each_write_under_its_position_and_an_abandoned_one_keeps_its_frame") {
            return;
        }
        let (a, a_peer) = UnixStream::pair().expect("a socket pair");
        let (b, b_peer) = UnixStream::pair().expect("a socket pair");
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let (one, two) = (Bytes::from_static(b"one"), Bytes::from_static(b"frame two"));
        let mut sends = Sends::with_capacity(3);
        sends.push(a.as_fd(), &one);
        sends.push(full.as_fd(), &two);
        sends.push(b.as_fd(), &two);
        assert_eq!(sends.len(), 3);
        let mut results = Vec::new();
        assert!(sends.run_each(|k, result| results.push((k, result))));
        results.sort_by_key(|(k, _)| *k);
        assert_eq!(
            results,
            vec![
                (0, WriteResult::Written(3)),
                (1, WriteResult::WouldBlock),
                (2, WriteResult::Written(9))
            ]
        );
        assert_eq!(drain(&a_peer), b"one");
        assert_eq!(drain(&b_peer), b"frame two");
        // A write left pending, not cancelled: abandoned, its frame leaked for the kernel.
        let before = leaks();
        let freed = Arc::new(AtomicBool::new(false));
        let payload = watched(7, 1024, &freed);
        let mut sends = Sends::with_capacity(2).waiting().without_cancel();
        sends.push(a.as_fd(), &one);
        sends.push(full.as_fd(), &payload);
        let mut results = Vec::new();
        assert!(sends.run_each(|k, result| results.push((k, result))));
        results.sort_by_key(|(k, _)| *k);
        assert_eq!(
            results,
            vec![(0, WriteResult::Written(3)), (1, WriteResult::Abandoned)]
        );
        drop(payload);
        assert!(
            !freed.load(Ordering::SeqCst),
            "the pending write's frame is not freed"
        );
        let after = leaks();
        assert!(after.rings > before.rings, "the abandoned ring is counted");
        assert!(after.bytes >= before.bytes + 1024, "its bytes are counted");
        // The next `Sends` gets a fresh ring and delivers.
        let mut sends = Sends::with_capacity(1);
        sends.push(a.as_fd(), &two);
        assert!(sends.run_each(|_, result| assert_eq!(result, WriteResult::Written(9))));
        assert_eq!(drain(&a_peer), b"oneframe two");
        drop(full_peer);
    }

    /// A write left pending (one that waits for a full socket: the batches never make one, but a
    /// kernel might) is cancelled after `WAIT_LIMIT`; the other writes of the batch are reported,
    /// and the same ring takes the next batch.
    #[test]
    fn a_write_left_pending_is_cancelled_and_the_ring_stays_usable() {
        if !usable("a_write_left_pending_is_cancelled_and_the_ring_stays_usable") {
            return;
        }
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        let (free, free_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let ring = imp::ring_fd();
        let leaked = leaks().rings;
        let freed = Arc::new(AtomicBool::new(false));
        let started = std::time::Instant::now();
        let (fine, payload) = (Bytes::from_static(b"fine"), watched(7, 1024, &freed));
        let mut batch = Batch::with_capacity(2, 2).waiting();
        batch.push(1, free.as_fd(), [(&fine, 0)]);
        batch.push(2, full.as_fd(), [(&payload, 0)]);
        let results = batch.run();
        let waited = started.elapsed();
        assert_eq!(
            results,
            Some(vec![(1, WriteResult::Written(4)), (2, WriteResult::Cancelled)])
        );
        assert!(
            waited >= super::WAIT_LIMIT,
            "the batch waited {waited:?} before cancelling"
        );
        drop(payload);
        assert!(
            freed.load(Ordering::SeqCst),
            "a settled batch keeps no copy of the frames lent to it"
        );
        assert_eq!(drain(&free_peer), b"fine");
        // Nothing of the cancelled write reached the full socket's reader.
        let before = drain(&full_peer);
        assert!(before.iter().all(|&b| b == 0), "only the filler was received");
        // The same thread's ring takes the next batch: nothing was abandoned by this thread.
        assert_eq!(imp::ring_fd(), ring, "the same ring");
        assert!(leaks().rings >= leaked);
        let again = Bytes::from_static(b"again");
        let mut batch = Batch::with_capacity(1, 1);
        batch.push((), free.as_fd(), [(&again, 0)]);
        assert_eq!(batch.run(), Some(vec![((), WriteResult::Written(5))]));
        assert_eq!(drain(&free_peer), b"again");
    }

    /// A write still pending when the batch gives up on it (cancelling off, as on a kernel
    /// without a usable cancel) abandons the ring: `run` returns, the caller drops every copy of
    /// the frame, and the frame stays alive: the kernel writes it, intact, when the socket drains.
    /// The leak is counted, and the thread's next batch gets a fresh ring that delivers.
    #[test]
    fn an_abandoned_ring_keeps_its_buffers_alive_and_the_next_batch_gets_a_fresh_ring() {
        if !usable("an_abandoned_ring_keeps_its_buffers_alive_and_the_next_batch_gets_a_fresh_ring") {
            return;
        }
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        let (free, free_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let old_ring = imp::ring_fd();
        let before = leaks();
        let freed = Arc::new(AtomicBool::new(false));
        let (fine, payload) = (Bytes::from_static(b"fine"), watched(7, 1024, &freed));
        let mut batch = Batch::with_capacity(2, 2).waiting().without_cancel();
        batch.push("free", free.as_fd(), [(&fine, 0)]);
        batch.push("full", full.as_fd(), [(&payload, 0)]);
        assert_eq!(
            batch.run(),
            Some(vec![
                ("free", WriteResult::Written(4)),
                ("full", WriteResult::Abandoned)
            ])
        );
        drop(payload);
        // Every copy of ours is gone; the kernel's is not.
        assert!(
            !freed.load(Ordering::SeqCst),
            "the pending write's frame is not freed"
        );
        let after = leaks();
        assert!(after.rings > before.rings, "the abandoned ring is counted");
        assert!(after.bytes >= before.bytes + 1024 + 4, "its bytes are counted");
        // The kernel still holds the write: draining the socket lets it complete, from the
        // leaked frame, intact.
        full_peer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        full_peer.set_nonblocking(false).expect("a blocking socket");
        let mut got = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while got.iter().rev().take_while(|&&b| b == 7).count() < 1024 {
            let n = (&full_peer).read(&mut chunk).expect("the pending write arrives");
            assert!(n > 0, "the socket closed before the pending write arrived");
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(
            !freed.load(Ordering::SeqCst),
            "still alive after the kernel read it"
        );
        // The thread's next batch: a fresh ring (the abandoned one stays open), and it delivers.
        let new_ring = imp::ring_fd();
        assert!(new_ring.is_some() && new_ring != old_ring, "a fresh ring");
        let again = Bytes::from_static(b"again");
        let mut batch = Batch::with_capacity(1, 1);
        batch.push("free", free.as_fd(), [(&again, 0)]);
        assert_eq!(batch.run(), Some(vec![("free", WriteResult::Written(5))]));
        assert_eq!(drain(&free_peer), b"fineagain");
    }

    /// A panic between pushing the entries and reaping them abandons the ring (the drop guard),
    /// so the thread's next batch never submits the stale entries: it gets a fresh ring, and only
    /// its own bytes arrive.
    #[test]
    fn a_panic_between_push_and_reap_never_leaves_stale_entries() {
        if !usable("a_panic_between_push_and_reap_never_leaves_stale_entries") {
            return;
        }
        let (socket, peer) = UnixStream::pair().expect("a socket pair");
        let old_ring = imp::ring_fd();
        let before = leaks();
        let freed = Arc::new(AtomicBool::new(false));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let frame = watched(b's', 5, &freed);
            let mut batch = Batch::with_capacity(1, 1).panicking_after_push();
            batch.push((), socket.as_fd(), [(&frame, 0)]);
            batch.run()
        }));
        assert!(panicked.is_err(), "the injected panic");
        assert!(
            !freed.load(Ordering::SeqCst),
            "the pushed entry's frame is leaked"
        );
        assert!(leaks().rings > before.rings, "the abandoned ring is counted");
        let new_ring = imp::ring_fd();
        assert!(new_ring.is_some() && new_ring != old_ring, "a fresh ring");
        let fresh = Bytes::from_static(b"fresh");
        let mut batch = Batch::with_capacity(1, 1);
        batch.push((), socket.as_fd(), [(&fresh, 0)]);
        assert_eq!(batch.run(), Some(vec![((), WriteResult::Written(5))]));
        assert_eq!(drain(&peer), b"fresh", "the stale entry was never submitted");
    }
}
