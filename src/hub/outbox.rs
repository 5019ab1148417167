//! One connection's sending side: its bounded queue of frames (`Outbox`), the writer's end
//! (`OutboxReceiver`), and why a connection ends (`CloseReason`).
//!
//! Owned by `registry::LocalConnection` (the `Outbox`) and `connection` (the receiver, in the
//! connection's writer task); called by `lifetime` for every delivery, and by `cork` (corked
//! deliveries and their flush). Writes go to the socket through `syscalls::Direct`; this file has
//! no `unsafe` of its own and must not use the registry's maps nor io_uring.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use super::syscalls::{Direct, prefetch};
use super::ws::{self, WsFrame};

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
    pub(super) shared: Arc<OutboxShared>,
}

/// In this order (`repr(C)`): what a fan-out reads of every recipient first, so it takes two
/// or three cache lines, not four (`prefetch_for_delivery`).
#[repr(C)]
pub(super) struct OutboxShared {
    pub(super) state: Mutex<OutState>,
    pub(super) capacity: usize,
    /// The socket, when deliveries may write it themselves (see the type's docs).
    pub(super) direct: Option<Direct>,
    /// The writer should end: set by `close` and by `stop_writer` (node shutdown).
    stop: AtomicBool,
    /// The node's counters (`client_writes` is counted here, at each write).
    pub(super) stats: Arc<Stats>,
    /// The writer task, parked until a frame or a stop arrives.
    pub(super) writer: AtomicWaker,
    kill: CancellationToken,
    reason: OnceLock<CloseReason>,
    slow: AtomicBool,
}

#[derive(Default)]
pub(super) struct OutState {
    /// Frames not yet (completely) written, in order.
    pub(super) queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    pub(super) written: usize,
    /// Something was written since the last keep-alive tick.
    pub(super) active: bool,
    /// How long nothing was written, counted in keep-alive ticks (`Outbox::keep_alive_tick`).
    idle: std::time::Duration,
    /// The writer is gone: frames are refused.
    pub(super) closed: bool,
    /// Frames were queued under a `Cork` that has not flushed yet (the outbox is on its list).
    pub(super) corked: bool,
    /// Write system calls made on the direct socket (sends and vectored writes), for tests.
    pub(super) writes: u64,
}

/// The writer's end of an `Outbox`. Dropping it refuses further frames.
pub(crate) struct OutboxReceiver {
    shared: Arc<OutboxShared>,
}

/// Queued frames kept in an idle connection's queue after a burst: more is given back.
pub(super) const IDLE_QUEUE_CAPACITY: usize = 32;

/// Most frames in one vectored write (Linux takes up to 1024; 64 bounds the stack array).
pub(super) const MAX_IOV: usize = 64;

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
        self.deliver_bytes(frame.wire(), stats)
    }

    /// `deliver` of a frame's wire bytes.
    pub(super) fn deliver_bytes(&self, bytes: &Bytes, stats: &Stats) -> bool {
        match self.shared.send(bytes) {
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

    pub(super) fn slow(&self, stats: &Stats) {
        if !self.shared.slow.swap(true, Ordering::Relaxed) {
            Stats::inc(&stats.slow_client_disconnects);
            tracing::warn!("client does not read fast enough: outbound queue full, closing it");
            self.close(CloseReason {
                flush: false,
                ..CloseReason::error()
            });
        }
    }

    /// One keep-alive tick of `tick` (the node's sweep, `connection::keep_alive_loop`): a
    /// connection nothing was written to for `keep_alive` gets `ping`, queued like any frame. A
    /// write since the last tick (the ping's own included) starts the idle time again.
    pub fn keep_alive_tick(
        &self,
        tick: std::time::Duration,
        keep_alive: std::time::Duration,
        ping: &WsFrame,
    ) {
        let due = {
            let mut state = self.shared.lock_state();
            if std::mem::take(&mut state.active) {
                state.idle = std::time::Duration::ZERO;
                false
            } else {
                state.idle += tick;
                state.idle >= keep_alive
            }
        };
        if due {
            self.send_control(ping);
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

enum Sent {
    Yes,
    Refused,
    Full,
}

pub(super) enum Queued {
    /// Queued, and the first frame of this cork for this outbox: the cork must flush it.
    First,
    Yes,
    Refused,
    Full,
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

/// `queued_slices` as the frames themselves, each with where its unwritten bytes start, for a
/// batch that borrows what the kernel reads (`uring::Batch`): at most `MAX_IOV` of them.
#[cfg(target_os = "linux")]
pub(super) fn queued_frames(state: &OutState) -> impl Iterator<Item = (&Bytes, usize)> + '_ {
    state
        .queue
        .iter()
        .take(MAX_IOV)
        .enumerate()
        .map(|(i, frame)| (frame, if i == 0 { state.written.min(frame.len()) } else { 0 }))
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
    pub(super) fn lock_state(&self) -> MutexGuard<'_, OutState> {
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
    pub(super) fn queue_corked(&self, bytes: &Bytes) -> Queued {
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

    /// Asks the CPU for what a delivery reads of this outbox (its state, lock and socket) ahead
    /// of its use (`syscalls::prefetch`).
    #[inline(always)]
    pub(super) fn prefetch_for_delivery(&self) {
        prefetch(&self.state);
        prefetch(&self.stop);
    }

    /// Whether deliveries may write the socket themselves now: a direct socket, and a writer
    /// that is not ending the connection (its goodbye decides what still goes out).
    pub(super) fn writes_directly(&self) -> bool {
        self.direct.is_some() && !self.stop.load(Ordering::Acquire)
    }

    /// A cork's flush: writes the queue to the direct socket (`write_queue`); what is left (a
    /// full socket, an error, no direct socket, a writer that is ending the connection) is the
    /// writer's, which is woken.
    pub(super) fn flush_corked(&self) {
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
    pub(super) fn write_queue(&self, state: &mut OutState) {
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
pub(super) fn advance(state: &mut OutState, mut n: usize) {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// An outbox of `capacity` frames with no socket of its own: its writer sends everything.
    pub(crate) fn queued(capacity: usize) -> (Outbox, OutboxReceiver) {
        Outbox::new(capacity, &CancellationToken::new(), None, Arc::default())
    }

    /// An outbox of `capacity` frames that writes `socket` itself, counting its system calls in
    /// `node`.
    pub(crate) fn direct(
        capacity: usize,
        socket: &Arc<TcpStream>,
        node: Arc<Stats>,
    ) -> (Outbox, OutboxReceiver) {
        Outbox::new(capacity, &CancellationToken::new(), Some(socket.clone()), node)
    }

    pub(crate) fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    pub(crate) fn frame(i: u8) -> WsFrame {
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
    pub(crate) async fn tcp_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Arc::new(accepted.unwrap().0), client.unwrap())
    }

    /// A 4,100-byte binary frame whose payload starts with `n` (to check the order on arrival).
    pub(crate) fn numbered(n: u32) -> WsFrame {
        WsFrame::binary(&[n.to_be_bytes().as_slice(), &[0u8; 4092]].concat())
    }

    /// Delivers numbered frames from 0 until the socket is full and frames queue; returns how many.
    pub(crate) fn fill_socket(out: &Outbox, rx: &OutboxReceiver, stats: &Stats) -> u32 {
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
