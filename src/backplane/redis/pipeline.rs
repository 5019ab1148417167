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
//! When the connection fails, every waiting command fails at once and so does every later one,
//! until the link replaces the connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::resp::{self, Resp};
use crate::backplane::reconnect::{Failure, LinkFailure};
use crate::redis_conn::describe_text;
use crate::tls::BoxedIo;

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

/// A command written or queued and not yet answered in full.
struct Slot {
    /// Replies still to come.
    remaining: usize,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct State {
    /// Encoded commands the writer has not taken yet.
    out: Vec<u8>,
    /// A slot per command written or queued, oldest first.
    waiting: VecDeque<Slot>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    /// Commands that may wait for replies at once; one more is refused (`Down`).
    max_waiting: usize,
}

/// The sending side of one connection: cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    /// Starts the writer task on `write`; it ends (with why) when the connection is closed or a
    /// write fails. At most `max_waiting` commands wait for replies at once.
    pub fn start(write: WriteHalf<BoxedIo>, max_waiting: usize) -> (Pipeline, JoinHandle<Failure>) {
        let pipeline = Pipeline {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                max_waiting,
            }),
        };
        let writer = tokio::spawn(write_loop(write, pipeline.clone()));
        (pipeline, writer)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data changed in whole steps: a poisoned lock is consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a command and waits for its `replies` replies; returns the last one.
    pub async fn send(&self, args: &[&[u8]], replies: usize) -> Result<Resp, CommandError> {
        let (slot, reply) = oneshot::channel();
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
            let was_empty = state.out.is_empty();
            resp::append_command(&mut state.out, args);
            state.waiting.push_back(Slot {
                remaining: replies.max(1),
                reply: slot,
            });
            was_empty
        };
        if wake {
            self.inner.wake.notify_one();
        }
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
        let mut state = self.state();
        let Some(front) = state.waiting.front_mut() else {
            return;
        };
        front.remaining = front.remaining.saturating_sub(1);
        if (reply.is_err() || front.remaining == 0)
            && let Some(slot) = state.waiting.pop_front()
        {
            let _ = slot.reply.send(reply);
        }
    }

    /// Marks the connection gone: every waiting command fails now, and every later one at once;
    /// the writer ends.
    pub fn close(&self, why: &str) {
        {
            let mut state = self.state();
            state.closed.get_or_insert_with(|| why.to_string());
            state.waiting.clear();
            state.out.clear();
        }
        self.inner.wake.notify_one();
    }
}

async fn write_loop(mut write: WriteHalf<BoxedIo>, pipeline: Pipeline) -> Failure {
    let mut batch = Vec::new();
    loop {
        pipeline.inner.wake.notified().await;
        {
            let mut state = pipeline.state();
            if let Some(why) = &state.closed {
                return Failure::new(LinkFailure::Lost, why.clone());
            }
            std::mem::swap(&mut batch, &mut state.out);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A pipeline writing into one end of an in-memory pipe; the other end reads what it wrote.
    fn pipeline(max_waiting: usize) -> (Pipeline, JoinHandle<Failure>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (_, write) = tokio::io::split(Box::new(ours) as BoxedIo);
        let (pipeline, writer) = Pipeline::start(write, max_waiting);
        (pipeline, writer, theirs)
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
        let mut wrote = Vec::new();
        let expected = [
            resp::command(&[b"PUBLISH", b"c", b"x"]),
            resp::command(&[b"SUBSCRIBE", b"a", b"b"]),
            resp::command(&[b"SUBSCRIBE", b"x", b"y"]),
        ]
        .concat();
        while wrote.len() < expected.len() {
            let mut chunk = [0u8; 256];
            let n = redis.read(&mut chunk).await.unwrap();
            wrote.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(wrote, expected);
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
