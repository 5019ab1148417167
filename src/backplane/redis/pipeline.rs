//! The sending side of our own Redis connections (the classic link's publisher and subscriber):
//! commands pipelined in order, each matched to its replies by position.
//!
//! `send` appends its command to one shared buffer and its reply slot to a FIFO under one short
//! lock (so both orders are the same), and wakes the writer task only when the buffer was empty;
//! the writer takes the whole buffer and writes it with one call, so under load many commands
//! share a write. The connection's reader hands every reply to [`Pipeline::answer`], which
//! completes the slot at the front: a command waits for as many replies as it named (one per
//! PUBLISH; one confirmation per channel of a SUBSCRIBE or UNSUBSCRIBE), and an error reply
//! answers it whole (Redis refuses a command with one error). A caller that gives up waiting (its
//! timeout) leaves its slot to be completed into the void: the order is never lost, and no
//! command is ever half written.
//!
//! On a plain TCP connection given its socket (`start`'s `direct`: the publisher's), a command
//! queued while nothing waits to be written and the writer is not writing is written by its
//! caller at once, a non-blocking `send` under the same lock: no wake-up of the writer task
//! (which, with connection threads, lives on another thread). What the socket does not take
//! stays in the buffer for the writer, which is woken; the order is the same either way.
//!
//! When the connection fails, every waiting command fails at once and so does every later one,
//! until the link replaces the connection. A watched connection (`start`'s `answer_within`: the
//! publisher's, with the link's `COMMAND_TIMEOUT`) that answers nothing for that long while
//! commands wait is taken as failed the same way (the writer watches it: one timer per
//! connection, not one per command). Replies come in order, so one late reply
//! means every later command waits too: the link's reconnect is the only cure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::resp::{self, Resp};
use crate::backplane::reconnect::{Failure, LinkFailure};
use crate::redis_conn::describe_text;
use crate::tls::BoxedIo;

/// Bytes read from a Redis connection at a time (more when a reply is larger).
pub const READ_CHUNK: usize = 16 * 1024;

/// The read step every reader of our Redis connections shares (the publisher's, the
/// subscriber's, the sharded link's): more bytes into `buffer`, or why the connection is gone.
pub async fn read_more(read: &mut (impl AsyncRead + Unpin), buffer: &mut BytesMut) -> Result<(), String> {
    buffer.reserve(READ_CHUNK);
    match read.read_buf(buffer).await {
        Ok(0) => Err("connection to Redis lost".to_string()),
        Ok(_) => Ok(()),
        // Whatever the error, the connection is gone.
        Err(e) => Err(format!("connection to Redis lost: {e}")),
    }
}

/// Bytes of commands not yet taken by the writer, at most: one more command is refused (`Down`),
/// so a connection Redis does not drain cannot grow without bound.
const MAX_UNWRITTEN: usize = 64 << 20;

/// A reply as Redis wrote it; an error reply is its text.
pub type Reply = Result<Resp, String>;

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// Redis answered with an error reply, kept as Redis wrote it (never a password); shown in
    /// words.
    Refused(String),
    /// The connection is gone, or too many commands wait for it.
    Down(String),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Refused(text) => f.write_str(&describe_text(text)),
            CommandError::Down(text) => f.write_str(text),
        }
    }
}

impl CommandError {
    /// As a link failure: a refusal by its error code (`LinkFailure::of_error_code`), anything
    /// else a lost connection.
    pub fn failure(&self) -> Failure {
        let kind = match self {
            CommandError::Refused(text) => {
                LinkFailure::of_error_code(text.split_whitespace().next().unwrap_or_default())
            }
            CommandError::Down(_) => LinkFailure::Lost,
        };
        Failure::new(kind, self.to_string())
    }
}

/// Hears the outcome of every counted command (`send_counted`) of a pipeline, exactly once
/// each: its last reply, its error reply, or why the connection went. Called without the
/// pipeline's lock held, from the connection's reader (or from whoever closes the pipeline).
pub type Counter = Arc<dyn Fn(Result<Resp, CommandError>) + Send + Sync>;

/// Who waits for a command's outcome.
enum Waiter {
    /// A caller of `send`, awaiting it.
    Task(oneshot::Sender<Reply>),
    /// Nobody: the pipeline's `Counter` hears it.
    Counted,
}

/// A command written or queued and not yet answered in full.
struct Slot {
    /// Replies still to come.
    remaining: usize,
    waiter: Waiter,
}

#[derive(Default)]
struct State {
    /// Encoded commands the writer has not taken yet.
    out: Vec<u8>,
    /// A slot per command written or queued, oldest first.
    waiting: VecDeque<Slot>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
    /// Replies read so far (the writer's watch compares it between its checks).
    answered: u64,
    /// The writer took commands out of `out` and has not written them all yet: nobody else
    /// writes now.
    writing: bool,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    /// Commands that may wait for replies at once; one more is refused (`Down`).
    max_waiting: usize,
    /// Hears counted commands' outcomes; without it, `send_counted` is refused.
    counted: Option<Counter>,
    /// A second handle on a plain TCP connection's socket, for direct writes (see the module's
    /// docs); shut down when the pipeline closes.
    direct: Option<std::net::TcpStream>,
}

/// The sending side of one connection: cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    /// Starts the writer task on `write`; it ends (with why) when the connection is closed or a
    /// write fails. At most `max_waiting` commands wait for replies at once.
    /// With `answer_within`, the connection fails when commands wait that long with no reply;
    /// with `counted`, commands may be sent without waiting (`send_counted`); with `direct`
    /// (the same connection's socket, when it is plain TCP), callers write commands themselves
    /// when the writer is idle.
    pub fn start(
        write: WriteHalf<BoxedIo>,
        max_waiting: usize,
        answer_within: Option<Duration>,
        counted: Option<Counter>,
        direct: Option<std::net::TcpStream>,
    ) -> (Pipeline, JoinHandle<Failure>) {
        let pipeline = Pipeline {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                max_waiting,
                counted,
                direct,
            }),
        };
        let writer = tokio::spawn(write_loop(write, pipeline.clone(), answer_within));
        (pipeline, writer)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data changed in whole steps: a poisoned lock is consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a command with its slot, in order; wakes the writer when the buffer was empty.
    fn queue(&self, args: &[&[u8]], replies: usize, waiter: Waiter) -> Result<(), CommandError> {
        let wake = {
            let mut state = self.state();
            if let Some(why) = &state.closed {
                return Err(CommandError::Down(why.clone()));
            }
            if state.waiting.len() >= self.inner.max_waiting {
                return Err(CommandError::Down(format!(
                    "{} commands are waiting for Redis: it is not keeping up",
                    self.inner.max_waiting
                )));
            }
            if state.out.len() >= MAX_UNWRITTEN {
                return Err(CommandError::Down(format!(
                    "{} MiB of commands wait to be written to Redis: it is not keeping up",
                    MAX_UNWRITTEN >> 20
                )));
            }
            let was_empty = state.out.is_empty();
            resp::append_command(&mut state.out, args);
            state.waiting.push_back(Slot {
                remaining: replies.max(1),
                waiter,
            });
            match &self.inner.direct {
                Some(socket) if was_empty && !state.writing => write_direct(socket, &mut state.out),
                _ => was_empty,
            }
        };
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Sends a command without waiting for it: its outcome goes to the pipeline's `Counter`
    /// (once, later). `Err` when it could not be queued (then nothing hears of it again).
    pub fn send_counted(&self, args: &[&[u8]], replies: usize) -> Result<(), CommandError> {
        if self.inner.counted.is_none() {
            return Err(CommandError::Down(
                "this connection takes no counted commands".into(),
            ));
        }
        self.queue(args, replies, Waiter::Counted)
    }

    /// Sends a command and waits for its `replies` replies; returns the last one.
    pub async fn send(&self, args: &[&[u8]], replies: usize) -> Result<Resp, CommandError> {
        let (slot, reply) = oneshot::channel();
        self.queue(args, replies, Waiter::Task(slot))?;
        match reply.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(text)) => Err(CommandError::Refused(text)),
            Err(_) => Err(CommandError::Down(
                self.state()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "connection to Redis lost".into()),
            )),
        }
    }

    /// One reply read off the connection, for the command at the front: an error answers it
    /// whole, anything else counts down its replies and completes it with the last.
    pub fn answer(&self, reply: Reply) {
        let slot = {
            let mut state = self.state();
            state.answered = state.answered.wrapping_add(1);
            let Some(front) = state.waiting.front_mut() else {
                return;
            };
            front.remaining = front.remaining.saturating_sub(1);
            if reply.is_err() || front.remaining == 0 {
                state.waiting.pop_front()
            } else {
                None
            }
        };
        match slot.map(|slot| slot.waiter) {
            Some(Waiter::Task(waiter)) => {
                let _ = waiter.send(reply);
            }
            Some(Waiter::Counted) => {
                if let Some(counted) = &self.inner.counted {
                    counted(reply.map_err(CommandError::Refused));
                }
            }
            None => {}
        }
    }

    /// Marks the connection gone: every waiting command fails now (counted ones are told why),
    /// and every later one at once; the writer ends.
    pub fn close(&self, why: &str) {
        let (why, waiting) = {
            let mut state = self.state();
            let why = state.closed.get_or_insert_with(|| why.to_string()).clone();
            state.out.clear();
            if let Some(socket) = &self.inner.direct {
                // Its other handles are the tasks', which end now: the connection is done.
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
            (why, std::mem::take(&mut state.waiting))
        };
        self.inner.wake.notify_one();
        if let Some(counted) = &self.inner.counted {
            for slot in waiting {
                if matches!(slot.waiter, Waiter::Counted) {
                    counted(Err(CommandError::Down(why.clone())));
                }
            }
        }
    }
}

/// Writes `out` (one command, the only bytes waiting) to `socket` without waiting, under the
/// pipeline's lock; what the socket did not take stays in `out`. Returns whether the writer must
/// be woken for the rest (a full socket; an error, which its own write will meet and report).
fn write_direct(socket: &std::net::TcpStream, out: &mut Vec<u8>) -> bool {
    // Non-blocking: the descriptor shares its file status with tokio's, which set O_NONBLOCK.
    match std::io::Write::write(&mut &*socket, out) {
        Ok(n) if n == out.len() => {
            out.clear();
            false
        }
        Ok(n) => {
            out.drain(..n);
            true
        }
        Err(_) => true,
    }
}

/// Whether commands have waited a whole `answer_within` with no reply. The watch looks every
/// half of it; a stall is three looks in a row that saw commands waiting and the same count of
/// replies (so a command waited at least `answer_within`, and the stall is noticed at most one
/// and a half `answer_within` after the last reply).
#[derive(Default)]
struct Watch {
    /// `answered` at the looks that saw it unchanged with commands waiting, and how many looks.
    seen: Option<(u64, u32)>,
}

impl Watch {
    fn stalled(&mut self, state: &State) -> bool {
        if state.waiting.is_empty() {
            self.seen = None;
            return false;
        }
        let looks = match self.seen {
            Some((answered, looks)) if answered == state.answered => looks + 1,
            _ => 1,
        };
        self.seen = Some((state.answered, looks));
        looks >= 3
    }
}

async fn write_loop(
    mut write: WriteHalf<BoxedIo>,
    pipeline: Pipeline,
    answer_within: Option<Duration>,
) -> Failure {
    let mut batch = Vec::new();
    let mut looks = answer_within.map(|within| {
        let mut looks = tokio::time::interval(within / 2);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        looks
    });
    let mut watch = Watch::default();
    loop {
        let look = async {
            match looks.as_mut() {
                Some(looks) => looks.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = pipeline.inner.wake.notified() => {}
            _ = look => {
                if let Some(within) = answer_within
                    && watch.stalled(&pipeline.state())
                {
                    let why = format!("Redis answered nothing for {within:?} while commands waited");
                    pipeline.close(&why);
                    return Failure::new(LinkFailure::Lost, why);
                }
                continue;
            }
        }
        {
            let mut state = pipeline.state();
            if let Some(why) = &state.closed {
                return Failure::new(LinkFailure::Lost, why.clone());
            }
            std::mem::swap(&mut batch, &mut state.out);
            state.writing = !batch.is_empty();
        }
        if batch.is_empty() {
            continue;
        }
        let written = async {
            write.write_all(&batch).await?;
            write.flush().await
        };
        if let Err(e) = written.await {
            let why = format!("connection to Redis lost: {e}");
            pipeline.close(&why);
            return Failure::new(LinkFailure::Lost, why);
        }
        batch.clear();
        // Anything queued meanwhile woke the writer (it found `out` empty): taken next round.
        pipeline.state().writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A pipeline writing into one end of an in-memory pipe; the other end reads what it wrote.
    fn pipeline(max_waiting: usize) -> (Pipeline, JoinHandle<Failure>, tokio::io::DuplexStream) {
        pipeline_with(max_waiting, None, None)
    }

    /// `pipeline`, watched for `answer_within` and with `counter`, as `Pipeline::start` takes them.
    fn pipeline_with(
        max_waiting: usize,
        answer_within: Option<Duration>,
        counter: Option<Counter>,
    ) -> (Pipeline, JoinHandle<Failure>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (_, write) = tokio::io::split(Box::new(ours) as BoxedIo);
        let (pipeline, writer) = Pipeline::start(write, max_waiting, answer_within, counter, None);
        (pipeline, writer, theirs)
    }

    /// Reads what the pipeline wrote until it is as long as `commands`, and checks it is them,
    /// in this order.
    async fn expect_written(redis: &mut tokio::io::DuplexStream, commands: &[&[&[u8]]]) {
        let expected: Vec<u8> = commands.iter().flat_map(|args| resp::command(args)).collect();
        let mut wrote = Vec::new();
        while wrote.len() < expected.len() {
            let mut chunk = [0u8; 256];
            let n = redis.read(&mut chunk).await.unwrap();
            wrote.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(wrote, expected, "written in the order queued");
    }

    #[tokio::test]
    async fn replies_complete_commands_in_order_and_an_error_answers_a_command_whole() {
        let (pipeline, _writer, mut redis) = pipeline(8);
        let publish = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"PUBLISH", b"c", b"x"], 1).await }
        });
        tokio::task::yield_now().await;
        let subscribe = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"SUBSCRIBE", b"a", b"b"], 2).await }
        });
        tokio::task::yield_now().await;
        let refused = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"SUBSCRIBE", b"x", b"y"], 2).await }
        });
        // All three written, in the order sent.
        expect_written(
            &mut redis,
            &[
                &[b"PUBLISH", b"c", b"x"],
                &[b"SUBSCRIBE", b"a", b"b"],
                &[b"SUBSCRIBE", b"x", b"y"],
            ],
        )
        .await;
        pipeline.answer(Ok(Resp::Int(2)));
        pipeline.answer(Ok(Resp::Int(1)));
        assert!(
            !subscribe.is_finished(),
            "a SUBSCRIBE of two channels waits for both"
        );
        pipeline.answer(Ok(Resp::Int(2)));
        pipeline.answer(Err("NOPERM no".into()));
        assert_eq!(publish.await.unwrap(), Ok(Resp::Int(2)));
        assert_eq!(subscribe.await.unwrap(), Ok(Resp::Int(2)));
        assert_eq!(
            refused.await.unwrap(),
            Err(CommandError::Refused("NOPERM no".into()))
        );
    }

    #[tokio::test]
    async fn a_closed_connection_fails_every_waiting_and_later_command_and_the_bound_holds() {
        let (pipeline, writer, _redis) = pipeline(1);
        let waiting = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"PING"], 1).await }
        });
        tokio::task::yield_now().await;
        assert!(
            matches!(pipeline.send(&[b"PING"], 1).await, Err(CommandError::Down(why)) if why.contains("1 commands are waiting")),
            "one over the bound is refused at once"
        );
        pipeline.close("connection to Redis lost: reset");
        let lost = Err(CommandError::Down("connection to Redis lost: reset".into()));
        assert_eq!(waiting.await.unwrap(), lost);
        assert_eq!(pipeline.send(&[b"PING"], 1).await, lost);
        assert_eq!(writer.await.unwrap().message, "connection to Redis lost: reset");
    }

    #[tokio::test]
    async fn counted_commands_are_answered_once_each_through_the_counter_and_failed_on_close() {
        let heard: Arc<Mutex<Vec<Result<Resp, CommandError>>>> = Arc::default();
        let counter: Counter = {
            let heard = heard.clone();
            Arc::new(move |outcome| heard.lock().unwrap().push(outcome))
        };
        let (pipeline, _writer, mut redis) = pipeline_with(8, None, Some(counter));
        pipeline.send_counted(&[b"PUBLISH", b"c", b"1"], 1).unwrap();
        pipeline.send_counted(&[b"PUBLISH", b"c", b"2"], 1).unwrap();
        // An awaited command between counted ones keeps its place in the order.
        let ping = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"PING"], 1).await }
        });
        tokio::task::yield_now().await;
        pipeline.send_counted(&[b"PUBLISH", b"c", b"3"], 1).unwrap();
        expect_written(
            &mut redis,
            &[
                &[b"PUBLISH", b"c", b"1"],
                &[b"PUBLISH", b"c", b"2"],
                &[b"PING"],
                &[b"PUBLISH", b"c", b"3"],
            ],
        )
        .await;
        pipeline.answer(Ok(Resp::Int(2)));
        pipeline.answer(Err("NOPERM no".into()));
        pipeline.answer(Ok(Resp::Simple("PONG".into())));
        assert_eq!(ping.await.unwrap(), Ok(Resp::Simple("PONG".into())));
        pipeline.close("connection to Redis lost: reset");
        assert_eq!(
            *heard.lock().unwrap(),
            vec![
                Ok(Resp::Int(2)),
                Err(CommandError::Refused("NOPERM no".into())),
                Err(CommandError::Down("connection to Redis lost: reset".into())),
            ],
            "each counted command heard of once: its reply, its refusal, the lost connection"
        );
        assert!(
            matches!(
                pipeline.send_counted(&[b"PUBLISH", b"c", b"4"], 1),
                Err(CommandError::Down(_))
            ),
            "nothing is queued on a closed connection"
        );
        assert_eq!(
            heard.lock().unwrap().len(),
            3,
            "a refused queueing is not heard of again"
        );
        // Without a counter, counted commands are refused at once.
        let (plain, _writer, _redis) = pipeline_with(8, None, None);
        assert!(plain.send_counted(&[b"PUBLISH", b"c", b"x"], 1).is_err());
    }

    #[tokio::test]
    async fn commands_are_written_by_their_callers_while_the_socket_takes_them_and_in_order_after() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut redis, _) = listener.accept().await.unwrap();
        let socket = std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned().unwrap();
        let (_, write) = tokio::io::split(Box::new(ours) as BoxedIo);
        let counter: Counter = Arc::new(|_| {});
        let (pipeline, writer) = Pipeline::start(write, 1 << 20, None, Some(counter), Some(socket.into()));
        let payload = vec![b'x'; 1000];
        let command = |i: usize| -> Vec<Vec<u8>> {
            vec![b"PUBLISH".to_vec(), i.to_string().into_bytes(), payload.clone()]
        };
        let mut expected = Vec::new();
        let mut queued_for_the_writer = None;
        // Redis reads nothing for now: the socket fills, and the commands after go to the writer.
        for i in 0..20_000 {
            let args = command(i);
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            pipeline.send_counted(&args, 1).unwrap();
            expected.extend(resp::command(&args));
            // No await since the first command: the writer task has not run.
            if i == 0 {
                assert!(
                    pipeline.state().out.is_empty(),
                    "the first command was written by its caller"
                );
            }
            if queued_for_the_writer.is_none() && !pipeline.state().out.is_empty() {
                queued_for_the_writer = Some(i);
            }
        }
        let full_at = queued_for_the_writer.expect("20 MB fill the socket");
        assert!(full_at > 0);
        let mut wrote = vec![0u8; expected.len()];
        redis.read_exact(&mut wrote).await.unwrap();
        assert!(
            wrote == expected,
            "every command once, in the order sent (the socket filled at {full_at})"
        );
        // The writer done and idle again: the next command is its caller's to write again.
        tokio::time::timeout(Duration::from_secs(5), async {
            while pipeline.state().writing || !pipeline.state().out.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer finishes");
        pipeline.send_counted(&[b"PING"], 1).unwrap();
        assert!(pipeline.state().out.is_empty(), "written by its caller");
        let mut ping = vec![0u8; resp::command(&[b"PING"]).len()];
        redis.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping, resp::command(&[b"PING"]));
        // Closing shuts the socket for every handle: Redis sees the end.
        pipeline.close("done");
        assert_eq!(redis.read(&mut [0u8; 16]).await.unwrap(), 0);
        assert_eq!(writer.await.unwrap().message, "done");
    }

    #[tokio::test]
    async fn a_connection_that_answers_nothing_while_commands_wait_is_failed() {
        let within = Duration::from_millis(200);
        let (pipeline, writer, _redis) = pipeline_with(8, Some(within), None);
        // Idle with nothing waiting: never failed.
        tokio::time::sleep(3 * within).await;
        assert!(!writer.is_finished(), "an idle connection is left alone");
        // Answered in time: still fine.
        let first = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"PING"], 1).await }
        });
        tokio::time::sleep(within / 4).await;
        pipeline.answer(Ok(Resp::Int(1)));
        assert_eq!(first.await.unwrap(), Ok(Resp::Int(1)));
        assert!(!writer.is_finished(), "a connection that answers is left alone");
        // No answer: the waiting command and the connection fail, after `within` at the least.
        let started = tokio::time::Instant::now();
        let stuck = tokio::spawn({
            let p = pipeline.clone();
            async move { p.send(&[b"PING"], 1).await }
        });
        let failure = tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the stalled connection is failed")
            .unwrap();
        let waited = started.elapsed();
        assert!(
            failure.message.contains("answered nothing"),
            "{}",
            failure.message
        );
        assert!(waited >= within, "failed after only {waited:?}");
        assert!(
            matches!(stuck.await.unwrap(), Err(CommandError::Down(why)) if why.contains("answered nothing"))
        );
    }

    #[test]
    fn refusals_are_classified_and_said_in_words() {
        let noperm = CommandError::Refused(
            "NOPERM User watcher has no permissions to access the 'chat:all' channel".into(),
        );
        assert_eq!(noperm.failure().kind, LinkFailure::Auth);
        assert!(
            noperm.to_string().contains("may not use these channels"),
            "{noperm}"
        );
        assert_eq!(
            CommandError::Refused("ERR unknown command".into()).failure().kind,
            LinkFailure::Protocol
        );
        assert_eq!(
            CommandError::Down("gone".into()).failure().kind,
            LinkFailure::Lost
        );
    }
}
