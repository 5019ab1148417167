//! The hub's raw socket system calls: a delivery's non-blocking `send` and `sendmsg` straight to
//! a connection's TCP socket (`Direct`), and the socket borrowed for an io_uring batch; and the
//! CPU's prefetch hint a fan-out gives for each recipient (`prefetch`).
//!
//! Owned by `outbox` (each `Outbox` with a socket of its own holds a `Direct`); called by
//! `outbox` (deliveries, cork flushes) and `cork` (the socket handed to `uring::Batch`). Uses
//! `libc` and tokio's `TcpStream` only, nothing else of the hub. With `uring` it is the only place
//! in the hub with `unsafe`: keep it small.

use std::sync::Arc;

use tokio::net::TcpStream;

/// Asks the CPU to bring the memory of `value` into its caches before it is used: a hint that
/// changes nothing the program does (an x86-64 prefetch reads nothing and never faults). A
/// fan-out touches every recipient's outbox once per message, after the kernel's sends have
/// evicted it; asking for all of them before the first is used overlaps those misses (measured:
/// see `cork::write_direct`).
/// Elsewhere than x86-64 it does nothing.
#[inline(always)]
pub(super) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = (value as *const T).cast::<i8>();
        let size = std::mem::size_of::<T>();
        // Points at most a line apart from the first byte to the last touch every line the
        // value spans, wherever it starts; the count is known when compiled (no loop is left).
        let mut offset = 0;
        while offset < size {
            // SAFETY: a prefetch is a hint: it reads no memory the program sees and cannot fault,
            // whatever the address; SSE is part of every x86-64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
            offset += 64;
        }
        if size > 1 && !(size - 1).is_multiple_of(64) {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(size - 1)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// A connection's own TCP socket, written by deliveries.
pub(super) struct Direct {
    pub(super) stream: Arc<TcpStream>,
    /// The socket's descriptor, kept next to the outbox's state: a delivery's `send` touches
    /// neither the stream nor tokio's readiness record (measured: see `send_now`).
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl Direct {
    /// The socket, borrowed for as long as `self` (for `uring::Batch::push`).
    #[cfg(target_os = "linux")]
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: `fd` is the descriptor of `self.stream`, which `self` keeps open (an `Arc`
        // that nothing closes), so it stays open for the borrow's lifetime.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) }
    }

    pub(super) fn new(stream: Arc<TcpStream>) -> Direct {
        Direct {
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(&*stream),
            stream,
        }
    }

    /// One non-blocking `send` of `bytes`: how much the socket took, or `WouldBlock`.
    ///
    /// Straight to the system call, not through tokio's `try_write`: that one first reads the
    /// socket's readiness record (another allocation, another cache line per recipient) and
    /// clears it on `WouldBlock`. Skipping it is sound: tokio's readiness can only be stale in
    /// the "writable" direction, and the writer, which does wait on it, writes through
    /// `try_write_vectored`, which finds the socket full itself and clears the readiness.
    #[cfg(unix)]
    pub(super) fn send_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes for the whole call, and `fd`
        // is the descriptor of `self.stream`, which this struct keeps open.
        let n = unsafe {
            libc::send(
                self.fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    #[cfg(not(unix))]
    pub(super) fn send_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.stream.try_write(bytes)
    }

    /// One non-blocking vectored `sendmsg` of `slices` (for the same reason as `send_now`).
    #[cfg(unix)]
    pub(super) fn send_vectored_now(&self, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        // SAFETY: a zeroed `msghdr` is valid (no name, no control data); `IoSlice` is
        // ABI-compatible with `iovec` on unix (std guarantees it), the slices outlive the call,
        // and `fd` is the descriptor of `self.stream`, which this struct keeps open.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = slices.as_ptr().cast_mut().cast();
            msg.msg_iovlen = slices.len() as _;
            libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    #[cfg(not(unix))]
    pub(super) fn send_vectored_now(&self, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.stream.try_write_vectored(slices)
    }
}
