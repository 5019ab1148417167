//! Many socket writes in one system call: a fan-out's sends submitted together through io_uring.
//!
//! Issue 8 measured where a delivery's user time goes (`scripts/fanout-profile.sh BIN perf`): with
//! one `send` per recipient, the fan-out was a third of it, and most of that was spent right after
//! each system call returned (the wrapper and the caller, with caches and TLB cold after the
//! kernel's TCP work), not in instructions of our own. A `Sends` batch queues every recipient's
//! write and makes one `io_uring_enter` for up to `RING_ENTRIES` of them; the kernel does the same
//! TCP work, but user code runs once per batch instead of once per recipient. It costs more
//! instructions (~1,150 per delivery against ~700, callgrind) and less time (1.34 against 1.50 µs
//! of user time per delivery, median of 9 interleaved runs): see the README's table.
//!
//! Every write carries `MSG_DONTWAIT`, which makes io_uring complete it inline (with what the
//! socket took, or `EAGAIN`) instead of waiting for the socket: a batch never waits on a slow
//! client. Should a write still be left pending (a kernel that behaves otherwise), it is cancelled
//! after `WAIT_LIMIT`, so the buffers it points to are never freed under it.
//!
//! One ring per thread, made on first use. Where io_uring is unavailable (not Linux, a kernel
//! without it, a seccomp profile that refuses it, as Docker's default does) `available` says so,
//! and the node's cork (`registry::Cork`) does not batch: each socket is written on its own, as
//! with `--no-io-uring`.

use std::io::IoSlice;
#[cfg(target_os = "linux")]
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

/// A write's result when its completion never came back (io_uring failed mid-batch): whether and
/// how much it wrote is unknown, so the connection's stream can no longer be trusted.
pub(crate) const UNKNOWN: i32 = i32::MIN;

/// Submission queue size: the most writes per system call.
pub(crate) const RING_ENTRIES: usize = 256;

/// The longest a batch waits for writes that did not complete inline before cancelling them.
#[cfg(target_os = "linux")]
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Process-wide state: not tried yet, usable, or not (failed once on some thread, or turned off).
static STATE: AtomicU8 = AtomicU8::new(UNTRIED);
const UNTRIED: u8 = 0;
const USABLE: u8 = 1;
const UNUSABLE: u8 = 2;

/// Turns batching off for the whole process (after io_uring failed under a batch).
pub(crate) fn disable() {
    STATE.store(UNUSABLE, Ordering::Relaxed);
}

/// Whether batches can be submitted on this thread (makes its ring on first call).
pub(crate) fn available() -> bool {
    match STATE.load(Ordering::Relaxed) {
        UNUSABLE => false,
        _ => imp::with_ring(|_| ()).is_some(),
    }
}

/// Writes to submit together. The slices are borrowed for `'a`, so they outlive the system call.
pub(crate) struct Sends<'a> {
    #[cfg(target_os = "linux")]
    fds: Vec<RawFd>,
    /// Each write's range in `iovecs`.
    spans: Vec<(usize, usize)>,
    iovecs: Vec<IoSlice<'a>>,
    /// `send` flags of every write: `MSG_DONTWAIT` always, except in the test that makes a write
    /// wait on a full socket to run the cancellation.
    #[cfg(target_os = "linux")]
    flags: i32,
}

impl<'a> Sends<'a> {
    /// Room for `writes` writes of one frame each (more grow the buffers).
    pub fn with_capacity(writes: usize) -> Self {
        Sends {
            #[cfg(target_os = "linux")]
            fds: Vec::with_capacity(writes),
            spans: Vec::with_capacity(writes),
            iovecs: Vec::with_capacity(writes),
            #[cfg(target_os = "linux")]
            flags: imp::FLAGS,
        }
    }

    /// Writes that wait for a full socket instead of answering `EAGAIN` (so they stay pending
    /// and the batch has to cancel them).
    #[cfg(all(test, target_os = "linux"))]
    fn waiting(mut self) -> Self {
        self.flags &= !libc::MSG_DONTWAIT;
        self
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Queues one write of `slices`, in order, to the socket `fd`: write number `len()` before
    /// the call.
    #[cfg(target_os = "linux")]
    pub fn push(&mut self, fd: RawFd, slices: impl IntoIterator<Item = &'a [u8]>) {
        let start = self.iovecs.len();
        self.iovecs.extend(slices.into_iter().map(IoSlice::new));
        self.fds.push(fd);
        self.spans.push((start, self.iovecs.len()));
    }

    /// Submits every queued write and waits for all of them. Returns each write's result in push
    /// order (bytes taken, a negated errno such as `-EAGAIN`, or `UNKNOWN`), or `None` when
    /// io_uring cannot be used here: then nothing was written.
    pub fn run(&self) -> Option<Vec<i32>> {
        imp::run(self)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::RefCell;
    use std::sync::atomic::Ordering;

    use io_uring::{IoUring, opcode, types};

    use super::{RING_ENTRIES, STATE, Sends, UNKNOWN, UNUSABLE, USABLE, WAIT_LIMIT};

    thread_local! {
        static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
    }

    /// A ring that can send: setup allowed, and the send opcodes known to the kernel.
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

    pub(super) fn with_ring<T>(f: impl FnOnce(&mut IoUring) -> T) -> Option<T> {
        if STATE.load(Ordering::Relaxed) == UNUSABLE {
            return None;
        }
        RING.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.is_none() {
                match make() {
                    Ok(ring) => {
                        if STATE.swap(USABLE, Ordering::Relaxed) != USABLE {
                            tracing::debug!("fan-out writes are batched through io_uring");
                        }
                        *slot = Some(ring);
                    }
                    Err(e) => {
                        if STATE.swap(UNUSABLE, Ordering::Relaxed) != UNUSABLE {
                            tracing::info!(
                                error = %e,
                                "io_uring is unavailable: every delivery is written with its own send"
                            );
                        }
                        return None;
                    }
                }
            }
            slot.as_mut().map(f)
        })
    }

    pub(super) const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    /// `user_data` of cancellations (writes use their index).
    const CANCEL: u64 = u64::MAX;

    pub(super) fn run(sends: &Sends<'_>) -> Option<Vec<i32>> {
        let n = sends.len();
        // A write whose completion never came back (see `UNKNOWN`).
        let mut results = vec![UNKNOWN; n];
        if n == 0 {
            return Some(results);
        }
        // One msghdr per vectored write, made before anything is submitted: they must not move.
        let mut msgs: Vec<libc::msghdr> = Vec::new();
        for &(start, end) in &sends.spans {
            if end - start > 1 {
                // SAFETY: a zeroed msghdr is valid (no name, no control data).
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                // `IoSlice` is ABI-compatible with `iovec` on unix (std guarantees it).
                msg.msg_iov = sends.iovecs[start..end].as_ptr().cast_mut().cast();
                msg.msg_iovlen = (end - start) as _;
                msgs.push(msg);
            }
        }
        let outcome = with_ring(|ring| {
            let mut next_msg = 0;
            for chunk_start in (0..n).step_by(RING_ENTRIES) {
                let chunk_end = (chunk_start + RING_ENTRIES).min(n);
                for i in chunk_start..chunk_end {
                    let (start, end) = sends.spans[i];
                    let fd = types::Fd(sends.fds[i]);
                    let entry = if end - start == 1 {
                        let slice = &sends.iovecs[start];
                        // A frame is at most a few tens of KiB: its length fits.
                        opcode::Send::new(fd, slice.as_ptr(), slice.len() as u32)
                            .flags(sends.flags)
                            .build()
                    } else {
                        let msg: *const libc::msghdr = &msgs[next_msg];
                        next_msg += 1;
                        opcode::SendMsg::new(fd, msg).flags(sends.flags as u32).build()
                    };
                    // SAFETY: the buffers (borrowed for the `Sends`' lifetime) and the msghdrs
                    // (`msgs`, untouched until this function returns) stay valid until the write
                    // completes, which `complete` waits for (or, failing that, the ring is
                    // leaked with them: see `abandon`). The queue has room: it holds at most
                    // one chunk, and `complete` submitted the previous one.
                    if unsafe { ring.submission().push(&entry.user_data(i as u64)) }.is_err() {
                        return Err(std::io::Error::other("the io_uring submission queue is full"));
                    }
                }
                complete(ring, chunk_end - chunk_start, &mut results)?;
            }
            Ok(())
        })?;
        if let Err(e) = outcome {
            // Some writes may still be in the kernel, pointing into buffers the caller is about to
            // free: keep the ring (and, with it, whatever it holds) alive forever, and never use
            // io_uring again in this process.
            tracing::warn!(error = %e, "io_uring failed; every delivery is written with its own send from now on");
            abandon();
        }
        Some(results)
    }

    /// Submits what is queued and collects `want` write completions into `results`.
    fn complete(ring: &mut IoUring, want: usize, results: &mut [i32]) -> std::io::Result<()> {
        let timeout = types::Timespec::from(WAIT_LIMIT);
        let args = types::SubmitArgs::new().timespec(&timeout);
        let mut got = 0;
        let mut cancelled = false;
        while got < want {
            match ring.submitter().submit_with_args(want - got, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let before = got;
            for cqe in ring.completion() {
                if let Some(slot) = results.get_mut(cqe.user_data() as usize) {
                    *slot = cqe.result();
                    got += 1;
                }
            }
            if got < want && got == before {
                if cancelled {
                    return Err(std::io::Error::other(
                        "io_uring writes stay pending after cancellation",
                    ));
                }
                // Writes that did not complete inline: cancel them. Each then completes (with
                // `ECANCELED` or with what it wrote), so no buffer is freed under the kernel.
                tracing::warn!(
                    left = want - got,
                    "io_uring writes did not complete inline; cancelling them"
                );
                let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(CANCEL);
                // SAFETY: a cancellation points to no buffer.
                if unsafe { ring.submission().push(&entry) }.is_err() {
                    return Err(std::io::Error::other("the io_uring submission queue is full"));
                }
                cancelled = true;
            }
        }
        Ok(())
    }

    /// Leaks this thread's ring and turns io_uring off for the process (see `run`).
    fn abandon() {
        super::disable();
        RING.with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut()
                && let Some(ring) = slot.take()
            {
                std::mem::forget(ring);
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Sends;

    pub(super) fn with_ring<T>(_: impl FnOnce(&mut ()) -> T) -> Option<T> {
        None
    }

    pub(super) fn run(_: &Sends<'_>) -> Option<Vec<i32>> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::{Sends, available};

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

    /// A batch's writes complete inline: each result is what its socket took, or `-EAGAIN` for a
    /// full socket, which the batch does not wait for.
    #[test]
    fn writes_complete_inline_and_a_full_socket_answers_eagain() {
        assert!(available(), "io_uring works on this machine (kernel 6.x)");
        let (a, a_peer) = UnixStream::pair().expect("a socket pair");
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let mut sends = Sends::with_capacity(2);
        sends.push(a.as_raw_fd(), [&b"one "[..], &b"frame"[..]]);
        sends.push(full.as_raw_fd(), [&b"lost"[..]]);
        let started = std::time::Instant::now();
        assert_eq!(sends.run(), Some(vec![9, -libc::EAGAIN]));
        assert!(
            started.elapsed() < super::WAIT_LIMIT,
            "nothing waited for the full socket"
        );
        assert_eq!(drain(&a_peer), b"one frame");
        drop(full_peer);
    }

    /// A write left pending (one that waits for a full socket: the batches never make one, but a
    /// kernel might) is cancelled after `WAIT_LIMIT`; its buffer is not used after `run` returns,
    /// the other writes of the batch are reported, and the ring stays usable.
    #[test]
    fn a_write_left_pending_is_cancelled_and_the_ring_stays_usable() {
        assert!(available(), "io_uring works on this machine (kernel 6.x)");
        let (full, full_peer) = UnixStream::pair().expect("a socket pair");
        let (free, free_peer) = UnixStream::pair().expect("a socket pair");
        fill(&full);
        let started = std::time::Instant::now();
        let results = {
            let payload = vec![7u8; 1024];
            let mut sends = Sends::with_capacity(2).waiting();
            sends.push(free.as_raw_fd(), [&b"fine"[..]]);
            sends.push(full.as_raw_fd(), [&payload[..]]);
            sends.run()
            // `payload` is freed here: the cancelled write must be done with it.
        };
        let waited = started.elapsed();
        assert_eq!(results, Some(vec![4, -libc::ECANCELED]));
        assert!(
            waited >= super::WAIT_LIMIT,
            "the batch waited {waited:?} before cancelling"
        );
        assert_eq!(drain(&free_peer), b"fine");
        // Nothing of the cancelled write reached the full socket's reader.
        let before = drain(&full_peer);
        assert!(before.iter().all(|&b| b == 0), "only the filler was received");
        // The same thread's ring takes the next batch.
        assert!(available());
        let mut sends = Sends::with_capacity(1);
        sends.push(free.as_raw_fd(), [&b"again"[..]]);
        assert_eq!(sends.run(), Some(vec![5]));
        assert_eq!(drain(&free_peer), b"again");
    }
}
