//! The node's local connections, groups and users.
//!
//! Owned by `NodeShared`; written by `connection` (register / unregister) and `lifetime` (group
//! changes), read by `lifetime` for every delivery. One `RwLock`: deliveries take the read lock and
//! under it only write non-blocking (see `Outbox`) or queue, never await, so it is never held
//! across a wait.
//!
//! Groups and users are removed when their last local member leaves: no map grows forever. The
//! caller (`lifetime`) takes one backplane subscription reference per member and releases it when
//! the member goes, so the registry reports every membership change, not only first and last. A
//! connection's own group set is case-insensitive while group names on the wire are
//! case-sensitive, as in ASP.NET Core (B.4); its size is capped (`max_groups`).
//!
//! For the monitor's directory (`GET /switchboard/connections`) the connection ids are also kept
//! in order (`State::order`, a `BTreeSet` of the same `Arc<str>`s: by the B-tree's node layout
//! about 30 bytes a connection, not measured, and an O(log n) insert at register): a page resumes after a cursor id and examines at most
//! [`SCAN_BUDGET`] connections, so listing a node of 19,000 clients never holds the read lock for
//! a walk of all of them. A user or group filter starts from that user's or group's own set when
//! it is small enough to sort within the same budget.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use super::{uring, ws};
use crate::config;
use crate::protocol::Protocol;
use crate::status_doc::{CONNECTIONS_MAX_LISTED_GROUPS, ConnectionEntry};

/// Most connections one directory page examines under the read lock, so a connect, disconnect or
/// group change (they take the write lock) never waits behind a walk of every connection. Not
/// timed on its own; a whole 1,000-entry page over HTTP took ~7 ms end to end on a debug build with
/// 5,000 connections.
pub(crate) const SCAN_BUDGET: usize = 4096;

pub(crate) use super::ws::{WsFrame, frame_of};

/// Why the server is ending a connection; turned into a SignalR Close message by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseReason {
    pub error: Option<String>,
    pub allow_reconnect: bool,
    /// Whether frames already queued are still sent before the Close (not for slow clients).
    pub flush: bool,
    /// Whether the SignalR Close message is sent before the WebSocket Close (not when the client
    /// started the close handshake, nor when it broke the WebSocket protocol).
    pub goodbye: bool,
    /// The WebSocket Close code (1000, or 1002 for a protocol violation).
    pub ws_code: u16,
}

impl CloseReason {
    pub const ERROR_TEXT: &'static str = "Connection closed with an error.";

    /// A protocol or transport error: the client may reconnect.
    pub fn error() -> Self {
        CloseReason {
            error: Some(Self::ERROR_TEXT.to_string()),
            allow_reconnect: true,
            flush: true,
            goodbye: true,
            ws_code: ws::CLOSE_NORMAL,
        }
    }

    /// The transport is gone or the client closed it: nothing more is worth sending but the
    /// WebSocket Close (`ws_code`).
    pub fn transport(ws_code: u16) -> Self {
        CloseReason {
            error: None,
            allow_reconnect: true,
            flush: false,
            goodbye: false,
            ws_code,
        }
    }
}

/// The sending side of one connection: its bounded queue, its writer's wake-up and its kill switch.
///
/// A delivery (the node's hottest path, once per recipient) writes the frame's shared bytes to
/// the socket itself when nothing is queued: one non-blocking `send`, no task woken, no copy
/// (`direct`, the node's own TCP socket). Only when the socket cannot take the whole frame (a
/// partial write, `WouldBlock`) is the rest queued and the connection's writer woken; the writer
/// drains the queue with one vectored write per socket readiness (several frames, one syscall)
/// and, until the queue is empty, every delivery queues behind it, so frames keep their order.
/// All writes happen under the state mutex (held for a push or non-blocking syscalls, never
/// across an await), which is what orders them. Without `direct` (a TLS connection) every frame
/// is queued and the writer writes it. The backplane receive loop corks its deliveries instead
/// (every fan-out with io_uring, else only under a backlog): queued, then one vectored write per
/// connection per batch, all of a batch's writes in one io_uring submission (see `Cork`).
/// Measured on the issue-8 load (`benches/fanout.rs`, `scripts/fanout-profile.sh`): see the
/// README's table.
#[derive(Clone)]
pub(crate) struct Outbox {
    shared: Arc<OutboxShared>,
}

struct OutboxShared {
    state: Mutex<OutState>,
    /// The node's counters (`client_writes` is counted here, at each write).
    stats: Arc<Stats>,
    capacity: usize,
    /// The socket, when deliveries may write it themselves (see the type's docs).
    direct: Option<Direct>,
    /// The writer task, parked until a frame or a stop arrives.
    writer: AtomicWaker,
    /// The writer should end: set by `close` and by `stop_writer` (node shutdown).
    stop: AtomicBool,
    kill: CancellationToken,
    reason: OnceLock<CloseReason>,
    slow: AtomicBool,
}

#[derive(Default)]
struct OutState {
    /// Frames not yet (completely) written, in order.
    queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    written: usize,
    /// Something was written since the writer last looked (the keep-alive's idle clock).
    active: bool,
    /// The writer is gone: frames are refused.
    closed: bool,
    /// Frames were queued under a `Cork` that has not flushed yet (the outbox is on its list).
    corked: bool,
    /// Write system calls made on the direct socket (sends and vectored writes), for tests.
    writes: u64,
}

/// The writer's end of an `Outbox`. Dropping it refuses further frames.
pub(crate) struct OutboxReceiver {
    shared: Arc<OutboxShared>,
}

/// Queued frames kept in an idle connection's queue after a burst: more is given back.
const IDLE_QUEUE_CAPACITY: usize = 32;

/// Most frames in one vectored write (Linux takes up to 1024; 64 bounds the stack array).
const MAX_IOV: usize = 64;

/// What one attempt to write the queue achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// The queue is empty.
    Done,
    /// The socket is full: wait for it to be writable and try again.
    Blocked,
}

impl Outbox {
    /// A new outbox; `parent` is the node's shutdown token (cancelling it ends the connection).
    /// With `direct`, deliveries write that socket themselves (see the type's docs). Its writes
    /// are counted in `stats.client_writes`.
    pub fn new(
        capacity: usize,
        parent: &CancellationToken,
        direct: Option<Arc<TcpStream>>,
        stats: Arc<Stats>,
    ) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(OutboxShared {
            state: Mutex::new(OutState::default()),
            stats,
            capacity: capacity.max(1),
            direct: direct.map(Direct::new),
            writer: AtomicWaker::new(),
            stop: AtomicBool::new(false),
            kill: parent.child_token(),
            reason: OnceLock::new(),
            slow: AtomicBool::new(false),
        });
        (
            Outbox {
                shared: shared.clone(),
            },
            OutboxReceiver { shared },
        )
    }

    /// Sends a frame without waiting: written at once when the socket takes it, else queued. A
    /// full queue means the client does not read: it is closed (once) and counted. Returns
    /// whether the frame was written or queued.
    pub fn deliver(&self, frame: &WsFrame, stats: &Stats) -> bool {
        match self.shared.send(frame.wire()) {
            Sent::Yes => {
                Stats::inc(&stats.client_out);
                true
            }
            Sent::Refused => false,
            Sent::Full => {
                self.slow(stats);
                false
            }
        }
    }

    /// `deliver`, but under an active `cork` the frame is only queued (no system call, no
    /// wake-up) and the outbox is written once when the cork flushes. Without an active cork it
    /// is `deliver`.
    pub fn deliver_corked(&self, frame: &WsFrame, stats: &Stats, cork: &mut Cork) -> bool {
        if !cork.active {
            return self.deliver(frame, stats);
        }
        match self.shared.queue_corked(frame.wire()) {
            Queued::First => {
                cork.touched.push(self.clone());
                Stats::inc(&stats.client_out);
                true
            }
            Queued::Yes => {
                Stats::inc(&stats.client_out);
                true
            }
            Queued::Refused => false,
            Queued::Full => {
                self.slow(stats);
                false
            }
        }
    }

    /// Write system calls made on the direct socket so far (deliveries, cork flushes, the writer).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn writes(&self) -> u64 {
        self.shared.lock_state().writes
    }

    /// Sends a control frame (a Pong, a keep-alive ping): like `deliver`, but not counted as a
    /// delivery, and dropped (not a reason to close) when the queue is full: a client that does
    /// not read is closed by the deliveries that fill its queue, or by its own timeout.
    pub fn send_control(&self, frame: &WsFrame) {
        let _ = self.shared.send(frame.wire());
    }

    /// Queues a frame that nothing may overtake, without writing it: for the handshake's answer,
    /// queued before the connection is reachable and written once the writer starts.
    pub fn hold(&self, frame: &WsFrame) {
        self.shared.lock_state().queue.push_back(frame.wire().clone());
    }

    fn slow(&self, stats: &Stats) {
        if !self.shared.slow.swap(true, Ordering::Relaxed) {
            Stats::inc(&stats.slow_client_disconnects);
            tracing::warn!("client does not read fast enough: outbound queue full, closing it");
            self.close(CloseReason {
                flush: false,
                ..CloseReason::error()
            });
        }
    }

    /// Asks the writer to send a Close with `reason` and end the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.shared.reason.set(reason);
        self.stop_writer();
        self.shared.kill.cancel();
    }

    /// Asks the writer to end without a reason of its own (the node is shutting down): called by
    /// the reader when it sees the kill switch, which the writer does not watch.
    pub fn stop_writer(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.writer.wake();
    }

    /// Resolves when the connection is asked to end (by `close` or node shutdown).
    pub fn killed(&self) -> &CancellationToken {
        &self.shared.kill
    }

    /// The reason given to `close`, or `None` when the node is shutting down.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().cloned()
    }
}

/// A connection's own TCP socket, written by deliveries.
struct Direct {
    stream: Arc<TcpStream>,
    /// The socket's descriptor, kept next to the outbox's state: a delivery's `send` touches
    /// neither the stream nor tokio's readiness record (measured: see `send_now`).
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl Direct {
    #[cfg(target_os = "linux")]
    fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }

    fn new(stream: Arc<TcpStream>) -> Direct {
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
    fn send_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
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
    fn send_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.stream.try_write(bytes)
    }

    /// One non-blocking vectored `sendmsg` of `slices` (for the same reason as `send_now`).
    #[cfg(unix)]
    fn send_vectored_now(&self, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
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
    fn send_vectored_now(&self, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.stream.try_write_vectored(slices)
    }
}

enum Sent {
    Yes,
    Refused,
    Full,
}

enum Queued {
    /// Queued, and the first frame of this cork for this outbox: the cork must flush it.
    First,
    Yes,
    Refused,
    Full,
}

/// Deliveries held back and written once per connection: a fan-out's, or a backlog batch's.
///
/// The backplane receive loop (`hub::mod`) holds a cork over each message it hands out, and over
/// up to `CORK_BATCH` messages when more already wait in the bounded inbox: every delivery is
/// queued without a system call (`Outbox::deliver_corked`), and `flush` writes each touched
/// connection's queue with one vectored write (the writer is woken only for what the socket did
/// not take). With io_uring (`batched`, see `hub::uring`) those writes go to the kernel together,
/// up to `uring::RING_ENTRIES` per system call, so the cork is held over every message. Without
/// it the cork is held only under a backlog, and an idle node writes each delivery at once, as
/// one `send`. Either way a frame waits for nothing but its own fan-out: no added latency. Order
/// holds: a corked frame sits in the same queue every other frame of that connection goes
/// through, and any other sender queues behind it.
#[derive(Default)]
pub(crate) struct Cork {
    active: bool,
    batched: bool,
    touched: Vec<Outbox>,
}

impl Cork {
    /// A cork whose flush submits its writes together through io_uring when `batched`.
    pub fn new(batched: bool) -> Cork {
        Cork {
            batched,
            ..Cork::default()
        }
    }

    /// Whether the cork batches through io_uring (and so is held over every message).
    pub fn batched(&self) -> bool {
        self.batched
    }

    /// Whether deliveries are held back until `flush`.
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
    }

    /// Writes every touched connection's queued frames (one vectored write each when the socket
    /// takes them all) and deactivates the cork. Returns how many connections were touched.
    pub fn flush(&mut self) -> usize {
        self.active = false;
        let n = self.touched.len();
        if cfg!(target_os = "linux") && self.batched && n > 1 {
            #[cfg(target_os = "linux")]
            for chunk in self.touched.chunks(uring::RING_ENTRIES) {
                flush_together(chunk);
            }
            self.touched.clear();
        } else {
            for outbox in self.touched.drain(..) {
                outbox.shared.flush_corked();
            }
        }
        // A hot room keeps this list at its size; a one-off huge batch gives its memory back.
        if self.touched.capacity() > 4 * IDLE_QUEUE_CAPACITY {
            self.touched.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        n
    }
}

/// A cork's flush of `outboxes` with their writes submitted together (`hub::uring`).
///
/// Every outbox is locked for the duration, so nothing else writes or reorders its queue while
/// the kernel reads it. Only this function holds more than one outbox lock at a time, and it
/// takes them with `try_lock`: one held elsewhere (its writer, another delivery) is flushed on
/// its own afterwards, so two threads can never wait on each other.
#[cfg(target_os = "linux")]
fn flush_together(outboxes: &[Outbox]) {
    let mut held = Vec::with_capacity(outboxes.len());
    let mut alone = Vec::new();
    for outbox in outboxes {
        match outbox.shared.state.try_lock() {
            Ok(state) => held.push((outbox, state)),
            // As in `lock_state`: a poisoned lock is still usable.
            Err(std::sync::TryLockError::Poisoned(e)) => held.push((outbox, e.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => alone.push(outbox),
        }
    }
    // The outboxes whose queue goes to the socket now, by index in `held`.
    let mut writing = Vec::with_capacity(held.len());
    for (k, (outbox, state)) in held.iter_mut().enumerate() {
        state.corked = false;
        if !state.closed && !state.queue.is_empty() && outbox.shared.writes_directly() {
            writing.push(k);
        }
    }
    let results = {
        let mut sends = uring::Sends::with_capacity(writing.len());
        for &k in &writing {
            let (outbox, state) = &held[k];
            if let Some(direct) = &outbox.shared.direct {
                sends.push(direct.fd(), queued_slices(state));
            }
        }
        sends.run()
    };
    let mut wake = Vec::new();
    let mut broken = Vec::new();
    match results {
        Some(results) => {
            if let Some((outbox, _)) = held.first() {
                // One submission per chunk (it may wait more than once, rarely: not counted).
                Stats::inc(&outbox.shared.stats.client_writes);
            }
            for (&k, result) in writing.iter().zip(results) {
                let (outbox, state) = &mut held[k];
                state.writes += 1;
                if result == uring::UNKNOWN {
                    broken.push(*outbox);
                } else if let Ok(written) = usize::try_from(result) {
                    state.active = true;
                    advance(state, written);
                }
                // A negative result (`EAGAIN`, a reset) is the writer's to find on its next write.
            }
        }
        // No ring on this thread: each socket on its own, still under the lock.
        None => {
            for &k in &writing {
                let (outbox, state) = &mut held[k];
                outbox.shared.write_queue(state);
            }
        }
    }
    for (outbox, state) in &held {
        if !state.closed && !state.queue.is_empty() {
            wake.push(*outbox);
        }
    }
    drop(held);
    for outbox in wake {
        outbox.shared.writer.wake();
    }
    for outbox in broken {
        // The io_uring failed under this write: what reached the client is unknown.
        outbox.close(CloseReason::error());
    }
    for outbox in alone {
        outbox.shared.flush_corked();
    }
}

/// The queue's frames for one vectored write: the front one from where it stopped, at most
/// `MAX_IOV` of them.
fn queued_slices(state: &OutState) -> impl Iterator<Item = &[u8]> {
    state.queue.iter().take(MAX_IOV).enumerate().map(|(i, frame)| {
        if i == 0 {
            &frame[state.written.min(frame.len())..]
        } else {
            &frame[..]
        }
    })
}

/// `queued_slices` as one vectored write's buffers: the slices, how many are used, and their
/// total length.
fn queued_iovecs(state: &OutState) -> ([std::io::IoSlice<'_>; MAX_IOV], usize, usize) {
    let mut slices = [std::io::IoSlice::new(&[]); MAX_IOV];
    let (mut n, mut total) = (0, 0);
    for (slot, slice) in slices.iter_mut().zip(queued_slices(state)) {
        *slot = std::io::IoSlice::new(slice);
        total += slice.len();
        n += 1;
    }
    (slices, n, total)
}

impl OutboxShared {
    fn lock_state(&self) -> MutexGuard<'_, OutState> {
        // A push, a drain or a write cannot leave the state half-updated: a poisoned lock is
        // still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, bytes: &Bytes) -> Sent {
        let mut state = self.lock_state();
        if state.closed {
            return Sent::Refused;
        }
        let mut written = 0;
        // Straight to the socket when nothing is ahead of this frame and the writer is not
        // ending the connection (its goodbye decides what still goes out).
        if state.queue.is_empty()
            && let Some(direct) = &self.direct
            && !self.stop.load(Ordering::Acquire)
        {
            state.writes += 1;
            Stats::inc(&self.stats.client_writes);
            match direct.send_now(bytes) {
                Ok(n) if n == bytes.len() => {
                    state.active = true;
                    return Sent::Yes;
                }
                Ok(n) => {
                    state.active = true;
                    written = n;
                }
                // `WouldBlock`; any other error is the writer's to find on its next write.
                Err(_) => {}
            }
        }
        if state.queue.len() >= self.capacity {
            return Sent::Full;
        }
        let wake = state.queue.is_empty();
        state.queue.push_back(bytes.clone());
        state.written = if wake { written } else { state.written };
        drop(state);
        if wake {
            self.writer.wake();
        }
        Sent::Yes
    }

    /// Queues `bytes` for a cork's flush, without a system call and without waking the writer.
    fn queue_corked(&self, bytes: &Bytes) -> Queued {
        let mut state = self.lock_state();
        if state.closed {
            return Queued::Refused;
        }
        if state.queue.len() >= self.capacity {
            return Queued::Full;
        }
        if state.queue.is_empty() {
            state.written = 0;
        }
        state.queue.push_back(bytes.clone());
        if std::mem::replace(&mut state.corked, true) {
            Queued::Yes
        } else {
            Queued::First
        }
    }

    /// Whether deliveries may write the socket themselves now: a direct socket, and a writer
    /// that is not ending the connection (its goodbye decides what still goes out).
    fn writes_directly(&self) -> bool {
        self.direct.is_some() && !self.stop.load(Ordering::Acquire)
    }

    /// A cork's flush: writes the queue to the direct socket (`write_queue`); what is left (a
    /// full socket, an error, no direct socket, a writer that is ending the connection) is the
    /// writer's, which is woken.
    fn flush_corked(&self) {
        let mut state = self.lock_state();
        state.corked = false;
        if state.closed {
            return;
        }
        if self.writes_directly() {
            self.write_queue(&mut state);
            if state.queue.is_empty() {
                return;
            }
        }
        drop(state);
        self.writer.wake();
    }

    /// Writes the queue to the direct socket with one vectored `sendmsg` per `MAX_IOV` frames
    /// while the socket takes everything. The caller holds the lock and has checked
    /// `writes_directly`.
    fn write_queue(&self, state: &mut OutState) {
        let Some(direct) = &self.direct else {
            return;
        };
        while !state.queue.is_empty() {
            state.writes += 1;
            Stats::inc(&self.stats.client_writes);
            let (slices, n, total) = queued_iovecs(state);
            match direct.send_vectored_now(&slices[..n]) {
                Ok(written) => {
                    state.active = true;
                    advance(state, written);
                    if written < total {
                        break;
                    }
                }
                // `WouldBlock`; any other error is the writer's to find on its next write.
                Err(_) => break,
            }
        }
    }
}

/// What the writer is woken for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Frames are queued.
    Frames,
    /// The connection is to end (`close`, or the node is shutting down).
    Stop,
}

impl OutboxReceiver {
    /// Waits for queued frames or for the stop; the stop wins.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Wake> {
        let shared = &*self.shared;
        // Look first: with frames waiting there is no need to register.
        if let Some(wake) = self.ready() {
            return Poll::Ready(wake);
        }
        // Register, then look again, so a frame or a stop that came in between still wakes us.
        shared.writer.register(cx.waker());
        match self.ready() {
            Some(wake) => Poll::Ready(wake),
            None => Poll::Pending,
        }
    }

    fn ready(&self) -> Option<Wake> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Some(Wake::Stop);
        }
        (!self.shared.lock_state().queue.is_empty()).then_some(Wake::Frames)
    }

    /// Resolves once the connection is to end (to race a write that the client does not read).
    pub fn poll_stopped(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &*self.shared;
        shared.writer.register(cx.waker());
        if shared.stop.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether anything was written since the last call (the keep-alive's idle clock).
    pub fn take_active(&self) -> bool {
        std::mem::take(&mut self.shared.lock_state().active)
    }

    /// Writes the queue to the direct socket, one vectored write per round, until it is empty
    /// or the socket is full. An error is the transport's end.
    pub fn flush_direct(&self) -> std::io::Result<Flush> {
        let Some(Direct { stream: tcp, .. }) = &self.shared.direct else {
            return Ok(Flush::Done);
        };
        let mut state = self.shared.lock_state();
        loop {
            if state.queue.is_empty() {
                state.written = 0;
                if state.queue.capacity() > IDLE_QUEUE_CAPACITY {
                    state.queue.shrink_to(IDLE_QUEUE_CAPACITY);
                }
                return Ok(Flush::Done);
            }
            state.writes += 1;
            Stats::inc(&self.shared.stats.client_writes);
            let result = {
                let (slices, n, _) = queued_iovecs(&state);
                tcp.try_write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    state.active = true;
                    advance(&mut state, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves every queued frame (a partly written one from where it stopped) to `batch`: for a
    /// writer that writes them itself (no direct socket).
    pub fn drain(&self, batch: &mut VecDeque<Bytes>) -> usize {
        let mut state = self.shared.lock_state();
        let written = std::mem::take(&mut state.written);
        if let Some(front) = state.queue.front_mut() {
            *front = front.slice(written.min(front.len())..);
        }
        let n = state.queue.len();
        state.active |= n > 0;
        if batch.is_empty() {
            std::mem::swap(&mut state.queue, batch);
        } else {
            batch.extend(state.queue.drain(..));
        }
        if state.queue.capacity() > IDLE_QUEUE_CAPACITY {
            state.queue.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        n
    }

    /// The writer's goodbye starts: nothing more is accepted; queued frames stay (when `flush`)
    /// or go (except the rest of a partly written one: the stream must stay well-formed), and
    /// `last` (the SignalR Close, the WebSocket Close) is queued after them.
    pub fn finish(&self, flush: bool, last: &[&WsFrame]) {
        let mut state = self.shared.lock_state();
        state.closed = true;
        if !flush {
            let keep = usize::from(state.written > 0);
            state.queue.truncate(keep);
        }
        for frame in last {
            state.queue.push_back(frame.wire().clone());
        }
    }
}

/// Drops `n` written bytes from the front of the queue.
fn advance(state: &mut OutState, mut n: usize) {
    while n > 0 {
        let Some(front) = state.queue.front() else {
            return;
        };
        let left = front.len() - state.written;
        if n >= left {
            n -= left;
            state.queue.pop_front();
            state.written = 0;
        } else {
            state.written += n;
            n = 0;
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock_state();
        state.closed = true;
        state.queue = VecDeque::new();
        state.written = 0;
    }
}

/// What the registry knows of one local connection.
pub(crate) struct LocalConnection {
    pub id: Arc<str>,
    pub protocol: Protocol,
    pub user: Option<String>,
    pub outbox: Outbox,
    /// Lowercased group name → the name as first added (the channel uses that spelling).
    groups: HashMap<String, String>,
    /// When it registered (handshake done), for the directory.
    connected_at: SystemTime,
}

/// The outcome of adding a connection to (or removing it from) a group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GroupChange {
    /// Done: take (or release) one subscription reference on the group's channel.
    Changed,
    /// Already a member (or not a member, for a remove): nothing to do.
    Unchanged,
    /// No such local connection.
    NotLocal,
    /// The connection is already in `max` groups: refused.
    LimitReached { max: usize },
}

#[derive(Default)]
struct State {
    connections: HashMap<Arc<str>, LocalConnection>,
    /// The keys of `connections`, in order: where a directory page resumes (see the module docs).
    order: BTreeSet<Arc<str>>,
    groups: HashMap<String, HashSet<Arc<str>>>,
    users: HashMap<String, HashSet<Arc<str>>>,
}

/// Local connections, groups and users.
pub(crate) struct Registry {
    state: RwLock<State>,
    /// Groups one connection may be in.
    max_groups: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_max_groups(config::DEFAULT_MAX_GROUPS_PER_CONNECTION)
    }
}

/// What a connection was a member of when it left (one subscription reference each).
#[derive(Debug, Default)]
pub(crate) struct Departure {
    /// Every group it was in, as spelled on the wire.
    pub groups: Vec<String>,
    pub user: Option<String>,
}

impl Registry {
    /// A registry whose connections may each join at most `max_groups` groups.
    pub fn with_max_groups(max_groups: usize) -> Self {
        Registry {
            state: RwLock::default(),
            max_groups,
        }
    }

    /// Groups one connection may be in.
    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every update is a few map operations that cannot panic halfway in a way that breaks
        // an invariant we rely on, so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection (and to its user's set, if it has one).
    pub fn register(&self, id: Arc<str>, protocol: Protocol, user: Option<String>, outbox: Outbox) {
        let mut state = self.write();
        if let Some(user) = &user {
            state.users.entry(user.clone()).or_default().insert(id.clone());
        }
        state.order.insert(id.clone());
        state.connections.insert(
            id.clone(),
            LocalConnection {
                id,
                protocol,
                user,
                outbox,
                groups: HashMap::new(),
                connected_at: SystemTime::now(),
            },
        );
    }

    /// Removes a connection from everything; reports what it was a member of.
    pub fn unregister(&self, id: &str) -> Departure {
        let mut state = self.write();
        let mut departure = Departure::default();
        let Some(conn) = state.connections.remove(id) else {
            return departure;
        };
        state.order.remove(id);
        for group in conn.groups.into_values() {
            if let Some(members) = state.groups.get_mut(&group) {
                members.remove(id);
                if members.is_empty() {
                    state.groups.remove(&group);
                }
            }
            departure.groups.push(group);
        }
        if let Some(user) = conn.user {
            if let Some(members) = state.users.get_mut(&user) {
                members.remove(id);
                if members.is_empty() {
                    state.users.remove(&user);
                }
            }
            departure.user = Some(user);
        }
        departure
    }

    /// Adds a local connection to a group.
    pub fn join(&self, id: &str, group: &str) -> GroupChange {
        let mut state = self.write();
        let Some(conn) = state.connections.get_mut(id) else {
            return GroupChange::NotLocal;
        };
        let key = group.to_lowercase();
        if conn.groups.contains_key(&key) {
            return GroupChange::Unchanged;
        }
        if conn.groups.len() >= self.max_groups {
            return GroupChange::LimitReached { max: self.max_groups };
        }
        conn.groups.insert(key, group.to_string());
        let conn_id = conn.id.clone();
        state.groups.entry(group.to_string()).or_default().insert(conn_id);
        GroupChange::Changed
    }

    /// Removes a local connection from a group (matched case-insensitively, as added).
    pub fn leave(&self, id: &str, group: &str) -> (GroupChange, Option<String>) {
        let mut state = self.write();
        let Some(conn) = state.connections.get_mut(id) else {
            return (GroupChange::NotLocal, None);
        };
        let Some(name) = conn.groups.remove(&group.to_lowercase()) else {
            return (GroupChange::Unchanged, None);
        };
        if let Some(members) = state.groups.get_mut(&name) {
            members.remove(id);
            if members.is_empty() {
                state.groups.remove(&name);
            }
        }
        (GroupChange::Changed, Some(name))
    }

    pub fn is_local(&self, id: &str) -> bool {
        self.read().connections.contains_key(id)
    }

    /// Calls `f` for every local connection not in `excluded`, under the read lock.
    pub fn for_all(&self, excluded: &[impl AsRef<str>], mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        for conn in state.connections.values() {
            if !excluded.iter().any(|e| e.as_ref() == &*conn.id) {
                f(conn);
            }
        }
    }

    /// Calls `f` for every local member of `group` not in `excluded`.
    pub fn for_group(&self, group: &str, excluded: &[impl AsRef<str>], mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        if let Some(members) = state.groups.get(group) {
            for id in members {
                if excluded.iter().any(|e| e.as_ref() == &**id) {
                    continue;
                }
                if let Some(conn) = state.connections.get(id) {
                    f(conn);
                }
            }
        }
    }

    /// Calls `f` for every local connection of `user`.
    pub fn for_user(&self, user: &str, mut f: impl FnMut(&LocalConnection)) {
        let state = self.read();
        if let Some(members) = state.users.get(user) {
            for id in members {
                if let Some(conn) = state.connections.get(id) {
                    f(conn);
                }
            }
        }
    }

    /// Calls `f` for one local connection; returns false when it is not local.
    pub fn with_connection(&self, id: &str, f: impl FnOnce(&LocalConnection)) -> bool {
        match self.read().connections.get(id) {
            Some(conn) => {
                f(conn);
                true
            }
            None => false,
        }
    }

    /// (connections, groups, users) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.read();
        (state.connections.len(), state.groups.len(), state.users.len())
    }
}

/// What a directory page asks for (`GET /switchboard/connections`); every filter given must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionQuery<'a> {
    /// Exactly this connection id.
    pub id: Option<&'a str>,
    /// Connections of this user.
    pub user: Option<&'a str>,
    /// Members of this group, spelled as on the wire (case-sensitive, like the group's channel).
    pub group: Option<&'a str>,
    /// Resume after this connection id (the previous page's `next`).
    pub after: Option<&'a str>,
    /// Most entries to return (at least 1).
    pub limit: usize,
}

/// One directory page, in connection id order.
#[derive(Debug, Default)]
pub(crate) struct ConnectionPage {
    pub entries: Vec<ConnectionEntry>,
    /// Where the next page starts (`after=`); `None` when nothing is left.
    pub next: Option<String>,
    /// Connections examined (at most [`SCAN_BUDGET`], or the size of one user's or group's set).
    pub scanned: usize,
}

impl Registry {
    /// One page of local connections matching `q` (see the module docs for its bounds). Allocates
    /// the page's entries only; the read lock is held for at most one bounded scan.
    pub fn list(&self, q: &ConnectionQuery<'_>) -> ConnectionPage {
        let limit = q.limit.max(1);
        let state = self.read();
        let group_key = q.group.map(str::to_lowercase);
        let matches = |conn: &LocalConnection| {
            q.user.is_none_or(|u| conn.user.as_deref() == Some(u))
                && match (q.group, &group_key) {
                    (Some(group), Some(key)) => conn.groups.get(key).is_some_and(|g| g == group),
                    _ => true,
                }
        };
        let after = |id: &str| q.after.is_none_or(|a| id > a);
        let mut page = ConnectionPage::default();

        if let Some(id) = q.id {
            page.scanned = 1;
            if let Some(conn) = state.connections.get(id).filter(|c| after(id) && matches(c)) {
                page.entries.push(entry(conn));
            }
            return page;
        }

        // A user's or group's own set, when a filter names one (the smaller, if both do).
        let user_set = q.user.map(|u| state.users.get(u));
        let group_set = q.group.map(|g| state.groups.get(g));
        let candidates = match (user_set, group_set) {
            (Some(None), _) | (_, Some(None)) => return page,
            (Some(Some(u)), Some(Some(g))) => Some(if u.len() <= g.len() { u } else { g }),
            (Some(Some(set)), None) | (None, Some(Some(set))) => Some(set),
            (None, None) => None,
        };
        if let Some(set) = candidates.filter(|set| set.len() <= SCAN_BUDGET) {
            let mut ids: Vec<&Arc<str>> = set.iter().filter(|id| after(id)).collect();
            ids.sort_unstable();
            page.scanned = set.len();
            let mut ids = ids.into_iter().peekable();
            while let Some(id) = ids.next() {
                if let Some(conn) = state.connections.get(id).filter(|c| matches(c)) {
                    page.entries.push(entry(conn));
                    if page.entries.len() == limit {
                        if ids.peek().is_some() {
                            page.next = Some(id.to_string());
                        }
                        break;
                    }
                }
            }
            return page;
        }

        // Everything (or a set too large to sort): walk the ordered ids from the cursor.
        let start = q.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut ids = state.order.range::<str, _>((start, Bound::Unbounded)).peekable();
        while let Some(id) = ids.next() {
            page.scanned += 1;
            if let Some(conn) = state.connections.get(id).filter(|c| matches(c)) {
                page.entries.push(entry(conn));
            }
            if page.entries.len() == limit || page.scanned >= SCAN_BUDGET {
                if ids.peek().is_some() {
                    page.next = Some(id.to_string());
                }
                break;
            }
        }
        page
    }
}

/// A connection as the directory lists it.
fn entry(conn: &LocalConnection) -> ConnectionEntry {
    let mut groups: Vec<String> = conn.groups.values().cloned().collect();
    groups.sort_unstable();
    let groups_total = groups.len() as u64;
    groups.truncate(CONNECTIONS_MAX_LISTED_GROUPS);
    ConnectionEntry {
        id: conn.id.to_string(),
        user: conn.user.clone(),
        protocol: conn.protocol.name().to_string(),
        groups,
        groups_total,
        connected_at_ms: conn
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outbox() -> Outbox {
        queued(4).0
    }

    /// An outbox of `capacity` frames with no socket of its own: its writer sends everything.
    fn queued(capacity: usize) -> (Outbox, OutboxReceiver) {
        Outbox::new(capacity, &CancellationToken::new(), None, Arc::default())
    }

    /// An outbox of `capacity` frames that writes `socket` itself, counting its system calls in
    /// `node`.
    fn direct(capacity: usize, socket: &Arc<TcpStream>, node: Arc<Stats>) -> (Outbox, OutboxReceiver) {
        Outbox::new(capacity, &CancellationToken::new(), Some(socket.clone()), node)
    }

    #[test]
    fn groups_and_users_are_removed_with_their_last_member() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, Some("u".into()), outbox());
        r.register("b".into(), Protocol::Json, Some("u".into()), outbox());
        assert_eq!(r.join("a", "Room"), GroupChange::Changed);
        assert_eq!(r.join("b", "Room"), GroupChange::Changed);
        assert_eq!(
            r.join("a", "room"),
            GroupChange::Unchanged,
            "group set is case-insensitive"
        );
        assert_eq!(r.join("zz", "Room"), GroupChange::NotLocal);
        assert_eq!(r.counts(), (2, 1, 1));
        let d = r.unregister("a");
        assert_eq!(
            (d.groups, d.user.as_deref()),
            (vec!["Room".to_string()], Some("u"))
        );
        assert_eq!(r.counts(), (1, 1, 1));
        let (change, name) = r.leave("b", "ROOM");
        assert_eq!(change, GroupChange::Changed);
        assert_eq!(name.as_deref(), Some("Room"));
        let d = r.unregister("b");
        assert!(d.groups.is_empty());
        assert_eq!(d.user.as_deref(), Some("u"));
        assert_eq!(r.counts(), (0, 0, 0));
    }

    #[test]
    fn a_connection_joins_at_most_max_groups() {
        let r = Registry::with_max_groups(2);
        r.register("a".into(), Protocol::Json, None, outbox());
        assert_eq!(r.join("a", "g1"), GroupChange::Changed);
        assert_eq!(r.join("a", "g2"), GroupChange::Changed);
        assert_eq!(r.join("a", "g3"), GroupChange::LimitReached { max: 2 });
        assert_eq!(
            r.join("a", "G1"),
            GroupChange::Unchanged,
            "a group it is in is no new join"
        );
        assert_eq!(r.leave("a", "g2").0, GroupChange::Changed);
        assert_eq!(
            r.join("a", "g3"),
            GroupChange::Changed,
            "room again after a leave"
        );
        assert_eq!(r.counts(), (1, 2, 0));
    }

    #[test]
    fn exclusions_are_honoured() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, None, outbox());
        r.register("b".into(), Protocol::Json, None, outbox());
        r.join("a", "g");
        r.join("b", "g");
        let mut seen = Vec::new();
        r.for_all(&["a"], |c| seen.push(c.id.to_string()));
        assert_eq!(seen, ["b"]);
        seen.clear();
        r.for_group("g", &["b"], |c| seen.push(c.id.to_string()));
        assert_eq!(seen, ["a"]);
    }

    fn query(limit: usize) -> ConnectionQuery<'static> {
        ConnectionQuery {
            id: None,
            user: None,
            group: None,
            after: None,
            limit,
        }
    }

    fn ids(page: &ConnectionPage) -> Vec<&str> {
        page.entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_listing_pages_in_id_order_and_ends_without_a_cursor() {
        let r = Registry::default();
        for id in ["c", "a", "e", "b", "d"] {
            r.register(id.into(), Protocol::Json, None, outbox());
        }
        let first = r.list(&query(2));
        assert_eq!((ids(&first), first.next.as_deref()), (vec!["a", "b"], Some("b")));
        let second = r.list(&ConnectionQuery {
            after: Some("b"),
            ..query(2)
        });
        assert_eq!(
            (ids(&second), second.next.as_deref()),
            (vec!["c", "d"], Some("d"))
        );
        let last = r.list(&ConnectionQuery {
            after: Some("d"),
            ..query(2)
        });
        assert_eq!((ids(&last), last.next.as_deref()), (vec!["e"], None));
        let exact = r.list(&ConnectionQuery {
            after: Some("c"),
            ..query(2)
        });
        assert_eq!(ids(&exact), ["d", "e"]);
        assert_eq!(exact.next, None, "nothing after the last entry: no cursor");
        r.unregister("a");
        assert_eq!(
            ids(&r.list(&query(10))),
            ["b", "c", "d", "e"],
            "gone from the order too"
        );
    }

    #[test]
    fn filters_by_id_user_and_group_with_the_wire_spelling() {
        let r = Registry::default();
        r.register("a".into(), Protocol::Json, Some("ann".into()), outbox());
        r.register("b".into(), Protocol::MessagePack, Some("bob".into()), outbox());
        r.register("c".into(), Protocol::Json, Some("ann".into()), outbox());
        r.join("a", "Room");
        r.join("b", "Room");
        r.join("c", "other");
        let by = |q: ConnectionQuery<'static>| ids(&r.list(&q)).join(",");
        assert_eq!(
            by(ConnectionQuery {
                user: Some("ann"),
                ..query(10)
            }),
            "a,c"
        );
        assert_eq!(
            by(ConnectionQuery {
                group: Some("Room"),
                ..query(10)
            }),
            "a,b"
        );
        assert_eq!(
            by(ConnectionQuery {
                group: Some("room"),
                ..query(10)
            }),
            "",
            "case-sensitive"
        );
        assert_eq!(
            by(ConnectionQuery {
                user: Some("ann"),
                group: Some("Room"),
                ..query(10)
            }),
            "a"
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("b"),
                ..query(10)
            }),
            "b"
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("b"),
                user: Some("ann"),
                ..query(10)
            }),
            ""
        );
        assert_eq!(
            by(ConnectionQuery {
                id: Some("zz"),
                ..query(10)
            }),
            ""
        );
        assert_eq!(
            by(ConnectionQuery {
                user: Some("nobody"),
                ..query(10)
            }),
            ""
        );
        let page = r.list(&ConnectionQuery {
            id: Some("b"),
            ..query(10)
        });
        let b = &page.entries[0];
        assert_eq!(
            (
                b.user.as_deref(),
                b.protocol.as_str(),
                b.groups.clone(),
                b.groups_total
            ),
            (Some("bob"), "messagepack", vec!["Room".to_string()], 1)
        );
        assert!(b.connected_at_ms > 0);
    }

    #[test]
    fn one_page_examines_at_most_the_scan_budget() {
        let r = Registry::default();
        let n = SCAN_BUDGET + 10;
        // Group "g": c000000.. and z-last. User "many": d000000.. and z-last. Both sets are too
        // large to sort within the budget, and they share one connection, at the end of the order.
        for i in 0..n {
            let c = format!("c{i:06}");
            r.register(c.as_str().into(), Protocol::Json, None, outbox());
            r.join(&c, "g");
            r.register(
                format!("d{i:06}").into(),
                Protocol::Json,
                Some("many".into()),
                outbox(),
            );
        }
        r.register("z-last".into(), Protocol::Json, Some("many".into()), outbox());
        r.join("z-last", "g");
        let rare = ConnectionQuery {
            user: Some("many"),
            group: Some("g"),
            ..query(10)
        };
        let first = r.list(&rare);
        assert_eq!(first.scanned, SCAN_BUDGET);
        assert!(first.entries.is_empty());
        let mut after = first.next.clone();
        let mut found = Vec::new();
        let mut pages = 1;
        while let Some(cursor) = after.take() {
            let page = r.list(&ConnectionQuery {
                after: Some(&cursor),
                ..rare
            });
            assert!(page.scanned <= SCAN_BUDGET);
            found.extend(page.entries.iter().map(|e| e.id.clone()));
            after = page.next;
            pages += 1;
        }
        assert_eq!(found, ["z-last"]);
        assert_eq!(pages, (2 * n + 1).div_ceil(SCAN_BUDGET));
        // A user's own small set is served without a walk.
        r.register("solo".into(), Protocol::Json, Some("rare".into()), outbox());
        let small = r.list(&ConnectionQuery {
            user: Some("rare"),
            ..query(10)
        });
        assert_eq!((ids(&small), small.scanned), (vec!["solo"], 1));
        // Unfiltered pages of the maximum size cover everything once.
        let mut after: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = r.list(&ConnectionQuery {
                after: after.as_deref(),
                ..query(1000)
            });
            for e in &page.entries {
                assert!(seen.insert(e.id.clone()), "listed twice: {}", e.id);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 2 * n + 2);
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    fn frame(i: u8) -> WsFrame {
        WsFrame::binary(&[i])
    }

    #[test]
    fn without_a_direct_socket_frames_queue_in_order_for_the_writer() {
        let stats = Stats::default();
        let (out, rx) = queued(16);
        let mut batch = VecDeque::new();
        assert_eq!(rx.poll_next(&mut noop_cx()), Poll::Pending);
        for i in 0..6u8 {
            assert!(out.deliver(&frame(i), &stats));
        }
        assert_eq!(rx.poll_next(&mut noop_cx()), Poll::Ready(Wake::Frames));
        assert_eq!(rx.drain(&mut batch), 6);
        let order: Vec<u8> = batch.iter().map(|f| f[2]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5], "frames keep their order");
        assert_eq!(Stats::get(&stats.client_out), 6);
        assert_eq!(rx.poll_next(&mut noop_cx()), Poll::Pending);
    }

    #[test]
    fn a_delivery_wakes_a_parked_writer_and_the_stop_wins_over_frames() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let stats = Stats::default();
        let (out, rx) = queued(16);
        let mut batch = VecDeque::new();
        assert_eq!(rx.poll_next(&mut cx), Poll::Pending);
        out.deliver(&frame(1), &stats);
        out.deliver(&frame(2), &stats);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "one wake for frames queued while parked"
        );
        assert_eq!(rx.poll_stopped(&mut cx), Poll::Pending);
        out.close(CloseReason::error());
        assert_eq!(rx.poll_stopped(&mut cx), Poll::Ready(()));
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Wake::Stop));
        assert!(out.killed().is_cancelled(), "the reader sees the close too");
        let bye = WsFrame::close(ws::CLOSE_NORMAL);
        rx.finish(true, &[&bye]);
        assert!(
            !out.deliver(&frame(3), &stats),
            "refused once the goodbye started"
        );
        assert_eq!(
            rx.drain(&mut batch),
            3,
            "still there for a flushing goodbye, then the Close"
        );
        assert_eq!(batch.pop_back().as_deref(), Some(&bye.wire()[..]));
    }

    #[test]
    fn node_shutdown_stops_the_writer_through_the_reader() {
        let parent = CancellationToken::new();
        let (out, rx) = Outbox::new(4, &parent, None, Arc::default());
        parent.cancel();
        assert!(out.killed().is_cancelled());
        out.stop_writer();
        assert_eq!(rx.poll_next(&mut noop_cx()), Poll::Ready(Wake::Stop));
        assert_eq!(out.close_reason(), None, "no reason: the node is shutting down");
    }

    #[test]
    fn frames_are_refused_once_the_writer_is_gone() {
        let stats = Stats::default();
        let (out, rx) = queued(4);
        drop(rx);
        assert!(!out.deliver(&frame(0), &stats));
        assert_eq!(Stats::get(&stats.client_out), 0);
        assert_eq!(Stats::get(&stats.slow_client_disconnects), 0);
    }

    #[test]
    fn a_full_queue_closes_the_client_once_and_counts_it() {
        let stats = Stats::default();
        let (out, _rx) = queued(1);
        assert!(out.deliver(&frame(0), &stats));
        assert!(!out.deliver(&frame(0), &stats));
        assert!(!out.deliver(&frame(0), &stats));
        assert_eq!(Stats::get(&stats.slow_client_disconnects), 1);
        assert!(out.killed().is_cancelled());
        assert!(!out.close_reason().unwrap().flush);
    }

    /// A connected loopback pair: the server's side for the outbox, the client's side to read.
    async fn tcp_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Arc::new(accepted.unwrap().0), client.unwrap())
    }

    /// A 4,100-byte binary frame whose payload starts with `n` (to check the order on arrival).
    fn numbered(n: u32) -> WsFrame {
        WsFrame::binary(&[n.to_be_bytes().as_slice(), &[0u8; 4092]].concat())
    }

    /// Delivers numbered frames from 0 until the socket is full and frames queue; returns how many.
    fn fill_socket(out: &Outbox, rx: &OutboxReceiver, stats: &Stats) -> u32 {
        let mut sent = 0u32;
        while rx.poll_next(&mut noop_cx()).is_pending() {
            assert!(out.deliver(&numbered(sent), stats));
            sent += 1;
            assert!(sent < 50_000, "the socket never filled");
        }
        sent
    }

    #[tokio::test]
    async fn deliveries_write_the_socket_themselves_and_queue_only_behind_a_full_one() {
        use tokio::io::AsyncReadExt;
        let stats = Stats::default();
        let (server, mut client) = tcp_pair().await;
        let (out, rx) = direct(100_000, &server, Arc::default());
        // An empty queue and a writable socket: written at once, nothing queued, nobody woken.
        assert!(out.deliver(&frame(7), &stats));
        assert_eq!(
            rx.poll_next(&mut noop_cx()),
            Poll::Pending,
            "nothing for the writer"
        );
        let mut got = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, [0x82, 1, 7]);
        // Fill the socket until frames queue; numbered frames show the order on the other side.
        let mut sent = fill_socket(&out, &rx, &stats);
        for _ in 0..10 {
            assert!(out.deliver(&numbered(sent), &stats));
            sent += 1;
        }
        // The writer's part: drain the queue as the socket becomes writable, while the client reads.
        let writer = tokio::spawn(async move {
            loop {
                match rx.flush_direct().unwrap() {
                    Flush::Done => return rx,
                    Flush::Blocked => server.writable().await.unwrap(),
                }
            }
        });
        let mut next = 0u32;
        let mut frame = vec![0u8; 4 + 4096];
        while next < sent {
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut frame))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&frame[..4], &[0x82, 126, 0x10, 0x00]);
            assert_eq!(
                u32::from_be_bytes(frame[4..8].try_into().unwrap()),
                next,
                "in order"
            );
            next += 1;
        }
        let rx = writer.await.unwrap();
        assert_eq!(rx.poll_next(&mut noop_cx()), Poll::Pending, "all written");
        assert_eq!(Stats::get(&stats.client_out), u64::from(sent) + 1);
    }

    #[tokio::test]
    async fn a_corked_batch_reaches_the_client_in_order_with_one_write() {
        use tokio::io::AsyncReadExt;
        let stats = Stats::default();
        let (server, mut client) = tcp_pair().await;
        let (out, rx) = direct(1000, &server, Arc::default());
        // Uncorked: one system call per delivery.
        assert!(out.deliver(&frame(0), &stats));
        assert!(out.deliver(&frame(1), &stats));
        assert_eq!(out.writes(), 2);
        // Corked: the batch only queues (no write, no writer woken) ...
        let mut cork = Cork::default();
        cork.set_active(true);
        for i in 2..12 {
            assert!(out.deliver_corked(&frame(i), &stats, &mut cork));
        }
        // ... and another sender's frame in between queues behind it.
        out.send_control(&frame(12));
        assert!(out.deliver_corked(&frame(13), &stats, &mut cork));
        assert_eq!(out.writes(), 2, "nothing written while corked");
        assert_eq!(cork.touched.len(), 1, "the connection is flushed once");
        // The flush writes the 12 queued frames with one vectored write.
        assert_eq!(cork.flush(), 1);
        assert_eq!(out.writes(), 3);
        assert_eq!(
            rx.poll_next(&mut noop_cx()),
            Poll::Pending,
            "nothing left for the writer"
        );
        let mut got = [0u8; 3 * 14];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        let expected: Vec<u8> = (0..14).flat_map(|i| [0x82, 1, i]).collect();
        assert_eq!(got.as_slice(), expected.as_slice(), "every frame, in order");
        assert_eq!(
            Stats::get(&stats.client_out),
            13,
            "a control frame is not a delivery"
        );
        // An inactive cork (an empty inbox) writes at once, and a flushed cork is inactive.
        assert!(out.deliver_corked(&frame(14), &stats, &mut cork));
        assert_eq!(out.writes(), 4);
        assert!(cork.touched.is_empty());
    }

    /// The io_uring flush (`flush_together`): several connections written by one submission, one
    /// of them with a full socket, whose rest goes to its writer in order; and a connection whose
    /// lock is held elsewhere at flush time, written on its own afterwards.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_batched_flush_writes_every_connection_and_leaves_a_full_one_to_its_writer() {
        use tokio::io::AsyncReadExt;
        if !uring::available() {
            eprintln!("io_uring is unavailable here: the batched flush falls back to one write each");
        }
        let stats = Stats::default();
        // The node's counters, shared by the three outboxes (system calls are counted there).
        let node = Arc::new(Stats::default());
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let (server, client) = tcp_pair().await;
            let (out, rx) = direct(100_000, &server, node.clone());
            pairs.push((server, client, out, rx));
        }
        // Connection 2's socket is filled first (its client does not read yet).
        let sent = fill_socket(&pairs[2].2, &pairs[2].3, &stats);
        let before = [0, 1, 2].map(|i| pairs[i].2.writes());
        let mut cork = Cork::new(true);
        cork.set_active(true);
        for round in 0..3u32 {
            for (_, _, out, _) in &pairs {
                assert!(out.deliver_corked(&numbered(sent + round), &stats, &mut cork));
            }
        }
        assert_eq!(cork.touched.len(), 3, "each connection once");
        let calls = Stats::get(&node.client_writes);
        // Connection 1's lock is busy when the flush starts: it must not wait, nor be skipped.
        let busy = pairs[1].2.shared.lock_state();
        let flushing = std::thread::scope(|scope| {
            let flush = scope.spawn(|| cork.flush());
            std::thread::sleep(Duration::from_millis(50));
            drop(busy);
            flush.join().unwrap()
        });
        assert_eq!(flushing, 3);
        // With io_uring: one submission for the two it could lock, one `sendmsg` for the busy one.
        // Without: one `sendmsg` each.
        let expected = if uring::available() { 2 } else { 3 };
        assert_eq!(Stats::get(&node.client_writes), calls + expected, "system calls");
        for i in 0..2 {
            assert_eq!(
                pairs[i].2.writes(),
                before[i] + 1,
                "connection {i}: one write for three frames"
            );
            assert_eq!(
                pairs[i].3.poll_next(&mut noop_cx()),
                Poll::Pending,
                "nothing left for its writer"
            );
        }
        let mut frame = vec![0u8; 4 + 4096];
        for (server, client, _, rx) in &mut pairs[..2] {
            let _ = (server, rx);
            for round in 0..3u32 {
                tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut frame))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(u32::from_be_bytes(frame[4..8].try_into().unwrap()), sent + round);
            }
        }
        // The full connection: its writer has the rest, and the client gets every frame in order.
        assert_eq!(pairs[2].3.poll_next(&mut noop_cx()), Poll::Ready(Wake::Frames));
        let (server, mut client, _, rx) = pairs.pop().unwrap();
        let writer = tokio::spawn(async move {
            loop {
                match rx.flush_direct().unwrap() {
                    Flush::Done => return rx,
                    Flush::Blocked => server.writable().await.unwrap(),
                }
            }
        });
        for next in 0..sent + 3 {
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut frame))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                u32::from_be_bytes(frame[4..8].try_into().unwrap()),
                next,
                "in order"
            );
        }
        drop(writer.await.unwrap());
        assert_eq!(Stats::get(&stats.client_out), u64::from(sent) + 9);
    }

    #[test]
    fn a_corked_batch_over_the_queue_bound_closes_the_slow_client() {
        let stats = Stats::default();
        let (out, _rx) = queued(2);
        let mut cork = Cork::default();
        cork.set_active(true);
        assert!(out.deliver_corked(&frame(0), &stats, &mut cork));
        assert!(out.deliver_corked(&frame(1), &stats, &mut cork));
        assert!(!out.deliver_corked(&frame(2), &stats, &mut cork));
        assert!(out.killed().is_cancelled());
        assert_eq!(Stats::get(&stats.slow_client_disconnects), 1);
        // Without a direct socket the flush leaves the frames to the writer.
        assert_eq!(cork.flush(), 1);
        assert_eq!(out.writes(), 0);
    }

    #[test]
    fn a_goodbye_without_flush_keeps_only_a_partly_written_frame() {
        let mut state = OutState::default();
        for i in 0..3u8 {
            state.queue.push_back(Bytes::from(vec![i; 10]));
        }
        advance(&mut state, 14);
        assert_eq!((state.queue.len(), state.written), (2, 4));
        let (out, rx) = queued(8);
        *rx.shared.lock_state() = state;
        let bye = WsFrame::close(ws::CLOSE_NORMAL);
        rx.finish(false, &[&bye]);
        let mut batch = VecDeque::new();
        assert_eq!(rx.drain(&mut batch), 2);
        assert_eq!(
            batch[0],
            Bytes::from(vec![1u8; 6]),
            "the rest of the partial frame"
        );
        assert_eq!(batch[1], bye.wire());
        drop(out);
    }
}
