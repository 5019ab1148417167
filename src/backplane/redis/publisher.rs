//! The classic link's command connection, spoken with our own RESP writer and reader instead of
//! redis-rs's multiplexed connection: PUBLISH on the hot path, and the odd ROLE check.
//!
//! Commands are pipelined: `publish` appends its PUBLISH to one shared buffer and its reply slot
//! to a FIFO under one short lock (so both orders are the same), and wakes the writer task only
//! when the buffer was empty; the writer takes the whole buffer and writes it with one call, so
//! under load many PUBLISHes share a write. The reader task takes replies off the socket in
//! order, and completes the slot at the
//! front. A caller that gives up waiting (its timeout) leaves its slot to be completed into the
//! void: the order is never lost, and no command is ever half written.
//!
//! When the connection fails, every waiting slot fails at once and so does every later command,
//! until the link replaces the connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::resp::{self, Resp, RespError};
use crate::backplane::reconnect::{Failure, LinkFailure};
use crate::redis_conn::describe_text;
use crate::tls::BoxedIo;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The commands written and not yet answered, at most: a publisher that runs this far ahead of
/// Redis is told the link is overloaded (the hub counts it as a failed publish and delivers
/// locally) instead of queueing without bound.
const MAX_WAITING: usize = 64 * 1024;

type Reply = Result<Resp, String>;

#[derive(Default)]
struct State {
    /// Encoded commands the writer has not taken yet.
    out: Vec<u8>,
    /// A reply slot per command written or queued, oldest first.
    waiting: VecDeque<oneshot::Sender<Reply>>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection gone: every waiting command fails now, and every later one at once.
    fn close(&self, why: &str) {
        let mut state = self.state();
        state.closed.get_or_insert_with(|| why.to_string());
        state.waiting.clear();
        state.out.clear();
    }
}

/// A command connection: cheap to clone; its tasks end with the connection.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

/// The publisher's two tasks, aborted when dropped (the link lost or replaced the connection);
/// every command still waiting, and any later one, fails then.
pub struct PublisherTasks {
    /// Ends when the connection does.
    pub reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    inner: Arc<Inner>,
}

impl Drop for PublisherTasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.inner.close("connection to Redis closed");
    }
}

/// Why a command got no reply (on the publisher or the subscriber connection).
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

impl Publisher {
    /// Starts the reader and writer of an authenticated connection (`RedisConnector::raw`).
    pub fn start(io: BoxedIo) -> (Publisher, PublisherTasks) {
        let (read, write) = tokio::io::split(io);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(read, inner.clone()));
        let writer = tokio::spawn(write_loop(write, inner.clone()));
        let tasks = PublisherTasks {
            reader,
            writer,
            inner: inner.clone(),
        };
        (Publisher { inner }, tasks)
    }

    /// PUBLISH `payload` on `channel`: the number of subscribers that received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<i64, CommandError> {
        match self.query(&[b"PUBLISH", channel.as_bytes(), payload]).await? {
            Resp::Int(n) => Ok(n),
            other => Err(CommandError::Refused(format!(
                "unexpected reply to PUBLISH: {other:?}"
            ))),
        }
    }

    /// Any command; its reply as Redis wrote it.
    pub async fn query(&self, args: &[&[u8]]) -> Result<Resp, CommandError> {
        let (slot, reply) = oneshot::channel();
        let wake = {
            let mut state = self.inner.state();
            if let Some(why) = &state.closed {
                return Err(CommandError::Down(why.clone()));
            }
            if state.waiting.len() >= MAX_WAITING {
                return Err(CommandError::Down(format!(
                    "{MAX_WAITING} commands are waiting for Redis: it is not keeping up"
                )));
            }
            let was_empty = state.out.is_empty();
            resp::append_command(&mut state.out, args);
            state.waiting.push_back(slot);
            was_empty
        };
        if wake {
            self.inner.wake.notify_one();
        }
        match reply.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(text)) => Err(CommandError::Refused(text)),
            Err(_) => Err(CommandError::Down(
                self.inner
                    .state()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "connection to Redis lost".into()),
            )),
        }
    }
}

async fn write_loop(mut write: WriteHalf<BoxedIo>, inner: Arc<Inner>) {
    let mut batch = Vec::new();
    loop {
        inner.wake.notified().await;
        {
            let mut state = inner.state();
            if state.closed.is_some() {
                return;
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
            inner.close(&format!("connection to Redis lost: {e}"));
            return;
        }
        batch.clear();
    }
}

async fn read_loop(mut read: ReadHalf<BoxedIo>, inner: Arc<Inner>) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let why = 'read: loop {
        loop {
            match next_reply(&buffer) {
                Ok(None) => break,
                Ok(Some((reply, used))) => {
                    let _ = buffer.split_to(used);
                    if let Some(slot) = inner.state().waiting.pop_front() {
                        let _ = slot.send(reply);
                    }
                }
                Err(e) => break 'read e.to_string(),
            }
        }
        buffer.reserve(READ_CHUNK);
        match read.read_buf(&mut buffer).await {
            Ok(0) => break "connection to Redis lost".to_string(),
            Ok(_) => {}
            Err(e) => break format!("connection to Redis lost: {e}"),
        }
    };
    inner.close(&why);
    inner.wake.notify_one(); // the writer sees the connection closed and ends
}

/// The next whole reply at the front of `input` and its length (an integer, PUBLISH's reply,
/// allocates nothing); an error reply is `Err(text)`.
fn next_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    Ok(resp::parse(input)?.map(|(value, used)| match value {
        Resp::Error(text) => (Err(text), used),
        value => (Ok(value), used),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn replies_are_taken_whole_in_order() {
        let input = b":3\r\n-NOPERM no\r\n*1\r\n$6\r\nmaster\r\n:-1\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((reply, used)) = next_reply(&input[at..]).unwrap() {
            got.push(reply);
            at += used;
        }
        assert_eq!(at, input.len());
        assert_eq!(got[0], Ok(Resp::Int(3)));
        assert_eq!(got[1], Err("NOPERM no".to_string()));
        assert!(matches!(&got[2], Ok(Resp::Array(Some(items))) if items[0].bytes() == Some(&b"master"[..])));
        assert_eq!(got[3], Ok(Resp::Int(-1)));
        // Incomplete input waits for more; bad input is an error, never a panic.
        assert_eq!(next_reply(b":12").unwrap(), None);
        assert_eq!(next_reply(b":12\r").unwrap(), None);
        assert!(next_reply(b"?x\r\n").is_err());
    }
}
