//! The cork: deliveries held back and written once per connection, a fan-out's or a backlog
//! batch's, and with io_uring all of a batch's writes in one submission.
//!
//! Owned by the node's backplane receive loop (`hub::mod`); `lifetime` hands deliveries to it
//! through `Outbox::deliver_corked`. Reaches into `outbox`'s queue state (the same lock every
//! writer takes) and submits through `uring::Batch`; no `unsafe` here, and nothing of the
//! registry's maps.

#[cfg(target_os = "linux")]
use super::outbox::queued_frames;
use super::outbox::{CloseReason, IDLE_QUEUE_CAPACITY, Outbox, Queued, advance};
use super::stats::Stats;
use super::uring;
use super::ws::WsFrame;
#[cfg(target_os = "linux")]
use bytes::Bytes;

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
///
/// A *direct* cork (`set_direct`: io_uring, one message, no backlog) does not queue at all:
/// `deliver_all` locks each recipient once as the caller walks them and hands the frame itself
/// to one `uring::Sends` when the recipient's queue is empty (the usual case), then writes them;
/// only what a socket did not take goes into its queue, for the writer. A recipient with frames
/// already queued gets this one queued behind them, for its writer. Recipients past the first
/// `uring::RING_ENTRIES` (and any handed over one at a time, `Outbox::deliver_corked`) are noted
/// in `pending` and written the same way by `flush`. Frames of other senders written between the
/// fan-out and its flush may go out first: order holds per sender (one message per direct cork,
/// and the receive loop flushes in order), as it does for any two senders.
#[derive(Default)]
pub(crate) struct Cork {
    active: bool,
    batched: bool,
    /// Deliveries are written by `deliver_all` or noted in `pending`, never queued (see above).
    direct: bool,
    /// A direct cork's deliveries left for its flush: each recipient with its frame.
    pending: Vec<(Outbox, bytes::Bytes)>,
    touched: Vec<Outbox>,
    /// A batched flush's results (key, result), kept for its capacity.
    #[cfg(target_os = "linux")]
    results: Vec<(usize, uring::WriteResult)>,
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

    /// Makes an active batched cork direct until its flush: for one message's fan-out only
    /// (see the type's docs). Ignored without io_uring batching.
    pub fn set_direct(&mut self, direct: bool) {
        self.direct = direct && self.active && self.batched && cfg!(target_os = "linux");
    }

    /// Whether the cork is direct (until its flush).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Hands each recipient its frame: `Outbox::deliver_corked` for each, but a direct cork
    /// writes them now, in one pass (see the type's docs): the first `uring::RING_ENTRIES` (a
    /// usual fan-out's all) with one `uring::Sends` while the caller still holds them (the
    /// registry's read lock: one submission of non-blocking writes), the rest noted for `flush`.
    pub fn deliver_all<'a>(
        &mut self,
        recipients: impl Iterator<Item = (&'a Outbox, &'a WsFrame)>,
        stats: &Stats,
    ) {
        #[cfg(target_os = "linux")]
        if self.direct {
            let mut wires = recipients.map(|(outbox, frame)| (outbox, frame.wire()));
            if write_direct(&mut wires) {
                self.pending
                    .extend(wires.map(|(outbox, wire)| (outbox.clone(), wire.clone())));
            }
            return;
        }
        for (outbox, frame) in recipients {
            outbox.deliver_corked(frame, stats, self);
        }
    }

    /// Writes every touched connection's queued frames (one vectored write each when the socket
    /// takes them all) and deactivates the cork. Returns how many connections were touched.
    pub fn flush(&mut self) -> usize {
        self.active = false;
        #[cfg(target_os = "linux")]
        if std::mem::take(&mut self.direct) {
            let n = self.pending.len();
            let mut pending = self.pending.iter().map(|(outbox, frame)| (outbox, frame));
            while write_direct(&mut pending) {}
            self.pending.clear();
            if self.pending.capacity() > 4 * IDLE_QUEUE_CAPACITY {
                self.pending.shrink_to(IDLE_QUEUE_CAPACITY);
            }
            return n;
        }
        let n = self.touched.len();
        if cfg!(target_os = "linux") && self.batched && n > 1 {
            #[cfg(target_os = "linux")]
            for chunk in self.touched.chunks(uring::RING_ENTRIES) {
                flush_together(chunk, &mut self.results);
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

/// How far ahead of the recipient whose send result is applied its successor's outbox is asked
/// for (`syscalls::prefetch`).
#[cfg(target_os = "linux")]
const PREFETCH_AHEAD: usize = 6;

#[cfg(target_os = "linux")]
thread_local! {
    /// The recipient list of the thread's last direct fan-out, empty, kept for its capacity
    /// (`uring::take_spare`): one allocation less per message.
    static SPARE_RECIPIENTS: std::cell::RefCell<Vec<(&'static Outbox, &'static Bytes)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A cork's flush of `outboxes` with their writes submitted together (`hub::uring`).
///
/// Every outbox is locked for the duration, so nothing else writes or reorders its queue while
/// the batch runs; the batch borrows the queued frames from the locked queues (they stay unchanged
/// until it returns, and a batch that must abandon its ring keeps clones of them, see `uring`),
/// and its results are applied to the queues after it returns. Only this function holds more than
/// one outbox lock at a time, and it takes them with `try_lock`: one held elsewhere (its writer,
/// another delivery) is flushed on its own afterwards, so two threads can never wait on each
/// other. Each write goes into the batch under its index in `held`, and each result comes back
/// under the same key.
#[cfg(target_os = "linux")]
fn flush_together(outboxes: &[Outbox], results: &mut Vec<(usize, uring::WriteResult)>) {
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
    for (_, state) in held.iter_mut() {
        state.corked = false;
    }
    results.clear();
    let mut batch = uring::Batch::with_capacity(held.len(), held.len());
    for (k, (outbox, state)) in held.iter().enumerate() {
        let outbox: &Outbox = outbox;
        if !state.closed
            && !state.queue.is_empty()
            && outbox.shared.writes_directly()
            && let Some(direct) = &outbox.shared.direct
        {
            batch.push(k, direct.fd(), queued_frames(state));
        }
    }
    let writing = batch.len();
    let ran = batch.run_each(|k, result| results.push((k, result)));
    let mut broken = Vec::new();
    for &(k, result) in results.iter() {
        let Some((outbox, state)) = held.get_mut(k) else {
            continue;
        };
        state.writes += 1;
        match result {
            uring::WriteResult::Written(written) => {
                state.active = true;
                advance(state, written);
            }
            // The socket took nothing: the writer's to retry or to find broken on its next
            // write.
            uring::WriteResult::WouldBlock
            | uring::WriteResult::Failed(_)
            | uring::WriteResult::Cancelled => {}
            // What reached the client is unknown.
            uring::WriteResult::Abandoned => broken.push(*outbox),
        }
    }
    if ran && writing > 0 {
        if let Some((outbox, _)) = held.first() {
            // One submission per chunk (it may wait more than once, rarely: not counted).
            Stats::inc(&outbox.shared.stats.client_writes);
        }
    } else if !ran && writing > 0 {
        // No ring on this thread: each socket on its own, still under the lock.
        for (outbox, state) in &mut held {
            if !state.closed && !state.queue.is_empty() && outbox.shared.writes_directly() {
                outbox.shared.write_queue(state);
            }
        }
    }
    release(held, broken);
    for outbox in alone {
        outbox.shared.flush_corked();
    }
}

/// The end of a batched flush: unlocks every held outbox, then wakes the writers of those with
/// frames left and closes those whose writes were abandoned (what reached the client is unknown).
#[cfg(target_os = "linux")]
fn release<'a>(
    held: impl IntoIterator<Item = (&'a Outbox, std::sync::MutexGuard<'a, super::outbox::OutState>)>,
    broken: Vec<&Outbox>,
) {
    let mut wake = Vec::new();
    for (outbox, state) in held {
        if !state.closed && !state.queue.is_empty() {
            wake.push(outbox);
        }
    }
    for outbox in wake {
        outbox.shared.writer.wake();
    }
    for outbox in broken {
        outbox.close(CloseReason::error());
    }
}

/// A direct cork's writes to the next `uring::RING_ENTRIES` of `recipients` (see `Cork`), in one
/// pass over them; returns whether any may be left. Each is locked once (`try_lock`, as in
/// `flush_together`: one held elsewhere gets its frame through `deliver` afterwards), and one
/// whose queue is empty (the usual case) stays locked while its frame, the frame itself, is
/// written by one `uring::Sends` with everyone else's; only what its socket did not take is
/// queued for its writer. One with frames already queued (or no direct
/// socket, or a writer ending the connection) gets the frame queued behind them and is let go at
/// once, its writer woken; one that is closed or too slow is let go at once too.
#[cfg(target_os = "linux")]
fn write_direct<'a>(recipients: &mut impl Iterator<Item = (&'a Outbox, &'a Bytes)>) -> bool {
    /// A recipient whose frame the batch writes, locked until the batch returns.
    struct Held<'a> {
        outbox: &'a Outbox,
        state: std::sync::MutexGuard<'a, super::outbox::OutState>,
        frame: &'a Bytes,
    }
    let room = uring::RING_ENTRIES.min(recipients.size_hint().1.unwrap_or(uring::RING_ENTRIES));
    let mut held: Vec<Held<'_>> = Vec::with_capacity(room);
    let mut sends = uring::Sends::with_capacity(room);
    let mut alone = Vec::new();
    let mut slow = Vec::new();
    let mut writer = Vec::new();
    // Every recipient's outbox is asked for before the first is locked: the kernel's sends of
    // the message before evicted them all from the caches, and locked in turn each was a miss
    // (two thirds of this function's time in a `perf` profile at 100 recipients). The misses
    // now overlap. `for_each`, not `extend` or `for`: it runs as the adapters' `try_fold`, one
    // loop with the registry's walk inlined; `extend` called their `next` out of line for each.
    let mut batch: Vec<(&Outbox, &Bytes)> = uring::take_spare(&SPARE_RECIPIENTS, room);
    recipients.take(uring::RING_ENTRIES).for_each(|(outbox, frame)| {
        outbox.shared.prefetch_for_delivery();
        batch.push((outbox, frame));
    });
    let seen = batch.len();
    for (outbox, frame) in batch.drain(..) {
        let mut state = match outbox.shared.state.try_lock() {
            Ok(state) => state,
            // As in `lock_state`: a poisoned lock is still usable.
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                alone.push((outbox, frame));
                continue;
            }
        };
        if state.closed {
            continue;
        }
        if state.queue.len() >= outbox.shared.capacity {
            slow.push(outbox);
            continue;
        }
        match &outbox.shared.direct {
            Some(direct) if state.queue.is_empty() && outbox.shared.writes_directly() => {
                sends.push(direct.fd(), frame);
                held.push(Held { outbox, state, frame });
            }
            _ => {
                state.queue.push_back(Bytes::clone(frame));
                writer.push(outbox);
            }
        }
    }
    uring::keep_spare(&SPARE_RECIPIENTS, batch);
    let writing = sends.len();
    let mut broken = Vec::new();
    let ran = sends.run_each(|k, result| {
        // The kernel's sends evicted the outboxes again: ask for the next ones' state ahead.
        if let Some(ahead) = held.get(k + PREFETCH_AHEAD) {
            super::syscalls::prefetch(&*ahead.state);
        }
        let Some(h) = held.get_mut(k) else {
            return;
        };
        h.state.writes += 1;
        let taken = match result {
            uring::WriteResult::Written(written) => {
                h.state.active = true;
                written
            }
            // What reached the client is unknown.
            uring::WriteResult::Abandoned => {
                broken.push(h.outbox);
                return;
            }
            // The socket took nothing: the writer's to retry or to find broken on its next
            // write.
            uring::WriteResult::WouldBlock
            | uring::WriteResult::Failed(_)
            | uring::WriteResult::Cancelled => 0,
        };
        if taken < h.frame.len() {
            // The rest is the writer's: queued as the only frame, from where it stopped.
            h.state.queue.push_back(Bytes::clone(h.frame));
            h.state.written = taken;
        }
    });
    if let Some(stats) = held
        .first()
        .map(|h| h.outbox)
        .or(writer.first().copied())
        .map(|outbox| &outbox.shared.stats)
    {
        Stats::add(&stats.client_out, (held.len() + writer.len()) as u64);
        if ran && writing > 0 {
            // One submission per chunk (it may wait more than once, rarely: not counted).
            Stats::inc(&stats.client_writes);
        }
    }
    if !ran {
        // No ring on this thread: each socket on its own, still under the lock.
        for h in &mut held {
            h.state.queue.push_back(Bytes::clone(h.frame));
            h.state.written = 0;
            h.outbox.shared.write_queue(&mut h.state);
        }
    }
    release(held.into_iter().map(|h| (h.outbox, h.state)), broken);
    for outbox in writer {
        outbox.shared.writer.wake();
    }
    for outbox in slow {
        outbox.slow(&outbox.shared.stats);
    }
    for (outbox, frame) in alone {
        outbox.deliver_bytes(frame, &outbox.shared.stats);
    }
    seen == uring::RING_ENTRIES
}

impl Outbox {
    /// `deliver`, but under an active `cork` the frame is only queued (no system call, no
    /// wake-up) and the outbox is written once when the cork flushes; under a direct cork it
    /// is only noted (see `Cork`). Without an active cork it is `deliver`.
    pub fn deliver_corked(&self, frame: &WsFrame, stats: &Stats, cork: &mut Cork) -> bool {
        if !cork.active {
            return self.deliver(frame, stats);
        }
        if cork.direct {
            cork.pending.push((self.clone(), frame.wire().clone()));
            return true;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::Flush;
    use crate::hub::outbox::Wake;
    use crate::hub::outbox::tests::{direct, fill_socket, frame, noop_cx, numbered, queued, tcp_pair};
    use std::sync::Arc;
    use std::task::Poll;
    use std::time::Duration;

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
            // Connection 0 written: the flush is past its `try_lock`s, with connection 1 left
            // for afterwards. (A marker, not a sleep: the flush's own thread sets it.)
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while pairs[0].2.writes() == before[0] {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the flush never wrote connection 0"
                );
                std::thread::yield_now();
            }
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
        let (server, client, _, rx) = pairs.pop().unwrap();
        writer_delivers_in_order(server, client, rx, sent + 3).await;
        assert_eq!(Stats::get(&stats.client_out), u64::from(sent) + 9);
    }

    /// A direct cork (one message, io_uring): a recipient with an empty queue gets the frame
    /// written by the batch without it ever being queued; one with frames already queued gets it
    /// behind them, for its writer; one whose socket is full has it queued for its writer, in
    /// order; a closed one gets nothing, and nothing is counted for it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_direct_cork_writes_the_frame_itself_and_queues_only_what_a_socket_refuses() {
        use tokio::io::AsyncReadExt;
        let node = Arc::new(Stats::default());
        let mut pairs = Vec::new();
        for _ in 0..4 {
            let (server, client) = tcp_pair().await;
            let (out, rx) = direct(100_000, &server, node.clone());
            pairs.push((server, client, out, rx));
        }
        // Connection 1 has a frame waiting (queued, not written); connection 2's socket is full;
        // connection 3 is closed.
        pairs[1].2.hold(&numbered(7));
        let filled = fill_socket(&pairs[2].2, &pairs[2].3, &node);
        let (_, _, closed, closed_rx) = pairs.pop().unwrap();
        drop(closed_rx);
        let delivered = Stats::get(&node.client_out);
        let calls = Stats::get(&node.client_writes);
        let message = numbered(filled);
        let Some(mut cork) = direct_cork() else {
            return;
        };
        for (_, _, out, _) in &pairs {
            assert!(out.deliver_corked(&message, &node, &mut cork));
        }
        assert!(closed.deliver_corked(&message, &node, &mut cork));
        assert_eq!(
            pairs[0].2.shared.lock_state().queue.len(),
            0,
            "a direct cork queues nothing before its flush"
        );
        assert_eq!(cork.flush(), 4);
        assert!(!cork.is_direct(), "a flushed cork is no longer direct");
        assert_eq!(Stats::get(&node.client_writes), calls + 1, "one submission");
        assert_eq!(
            Stats::get(&node.client_out),
            delivered + 3,
            "the closed one is not counted"
        );
        // Connection 0: written by the batch, nothing queued, nothing for the writer.
        assert!(pairs[0].2.shared.lock_state().queue.is_empty());
        assert_eq!(pairs[0].3.poll_next(&mut noop_cx()), Poll::Pending);
        let mut got = vec![0u8; 4 + 4096];
        tokio::time::timeout(Duration::from_secs(5), pairs[0].1.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u32::from_be_bytes(got[4..8].try_into().unwrap()), filled);
        // Connection 1: this frame queued behind the waiting one, both for its writer, which
        // was woken; it writes them in order.
        assert_eq!(pairs[1].2.shared.lock_state().queue.len(), 2);
        assert_eq!(pairs[1].3.poll_next(&mut noop_cx()), Poll::Ready(Wake::Frames));
        assert_eq!(pairs[1].3.flush_direct().unwrap(), Flush::Done);
        for expected in [7, filled] {
            tokio::time::timeout(Duration::from_secs(5), pairs[1].1.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(u32::from_be_bytes(got[4..8].try_into().unwrap()), expected);
        }
        assert!(pairs[1].2.shared.lock_state().queue.is_empty());
        // Connection 2: the frame waits for its writer, which was woken, behind everything sent.
        assert_eq!(pairs[2].3.poll_next(&mut noop_cx()), Poll::Ready(Wake::Frames));
        let (server, client, _, rx) = pairs.pop().unwrap();
        writer_delivers_in_order(server, client, rx, filled + 1).await;
    }

    /// A direct cork's `deliver_all` over more recipients than one submission takes: the first
    /// `RING_ENTRIES` are written at once (while the caller holds them), the rest are noted and
    /// written by the flush, one submission each; every recipient gets the frame once.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_direct_fan_out_past_one_submission_writes_the_rest_at_its_flush() {
        use tokio::io::AsyncReadExt;
        let node = Arc::new(Stats::default());
        let count = uring::RING_ENTRIES + 44;
        let mut pairs = Vec::new();
        for _ in 0..count {
            let (server, client) = tcp_pair().await;
            let (out, rx) = direct(100, &server, node.clone());
            pairs.push((server, client, out, rx));
        }
        let Some(mut cork) = direct_cork() else {
            return;
        };
        let message = frame(9);
        let calls = Stats::get(&node.client_writes);
        cork.deliver_all(pairs.iter().map(|(_, _, out, _)| (out, &message)), &node);
        assert_eq!(
            Stats::get(&node.client_out),
            uring::RING_ENTRIES as u64,
            "the first submission's"
        );
        assert_eq!(
            Stats::get(&node.client_writes),
            calls + 1,
            "one submission so far"
        );
        assert_eq!(cork.pending.len(), 44, "the rest wait for the flush");
        assert_eq!(pairs[count - 1].2.writes(), 0, "not written before the flush");
        assert_eq!(cork.flush(), 44);
        assert_eq!(Stats::get(&node.client_out), count as u64);
        assert_eq!(Stats::get(&node.client_writes), calls + 2, "one more submission");
        for (i, (_, client, out, rx)) in pairs.iter_mut().enumerate() {
            let mut got = [0u8; 3];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, [0x82, 1, 9], "recipient {i}");
            assert_eq!(out.writes(), 1, "recipient {i}: one write");
            assert_eq!(
                rx.poll_next(&mut noop_cx()),
                Poll::Pending,
                "nothing for its writer"
            );
        }
    }

    /// An active direct cork, or `None` (said on stderr) where io_uring is unavailable.
    #[cfg(target_os = "linux")]
    fn direct_cork() -> Option<Cork> {
        let mut cork = Cork::new(uring::available());
        cork.set_active(true);
        cork.set_direct(true);
        if !cork.is_direct() {
            eprintln!("io_uring is unavailable here: no direct cork to test");
            return None;
        }
        Some(cork)
    }

    /// Runs a connection's writer until its queue is empty, while its client reads numbered
    /// frames `0..count` and checks they come in order.
    #[cfg(target_os = "linux")]
    async fn writer_delivers_in_order(
        server: Arc<tokio::net::TcpStream>,
        mut client: tokio::net::TcpStream,
        rx: crate::hub::outbox::OutboxReceiver,
        count: u32,
    ) {
        use tokio::io::AsyncReadExt;
        let writer = tokio::spawn(async move {
            loop {
                match rx.flush_direct().unwrap() {
                    Flush::Done => return rx,
                    Flush::Blocked => server.writable().await.unwrap(),
                }
            }
        });
        let mut frame = vec![0u8; 4 + 4096];
        for next in 0..count {
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
}
