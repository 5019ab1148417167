//! The threads that serve a node's connections (`--threads`): the node's own runtime and, past
//! one thread, more current-thread tokio runtimes, each on a thread of its own. Accepted
//! connections are dealt to them in turn, and a connection stays on its thread: its reads, its
//! writer and its timers never hop to another thread, and no thread steals work from another.
//!
//! Why not one multi-thread runtime: on a chat load each message wakes a node briefly, and a
//! work-stealing runtime spends that wake-up waking a second worker to look for work, timing
//! its polls and parking again (docs/performance.md: the runtime shape). A connection's tasks
//! need no other thread; what they share (the registry, the outboxes, the backplane's queues)
//! is already shared between threads.
//!
//! Placement only: nothing here knows HTTP or SignalR. `listener::serve` asks [`Threads::next`]
//! where each accepted socket goes.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The extra connection threads of a node, and where the next connection goes.
pub(crate) struct Threads {
    /// The extra runtimes (the node's own runtime is place 0, not listed).
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Cancelled to stop the threads (once the node's connections are gone).
    stop: CancellationToken,
}

impl Threads {
    /// `count` threads in all, the caller's included: `count - 1` are started here.
    pub fn start(count: usize, name: &str) -> std::io::Result<Threads> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(count.saturating_sub(1));
        for i in 1..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stopped = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    runtime.block_on(stopped.cancelled());
                    // Whatever is left (a connection past the shutdown grace) is dropped, not
                    // waited for.
                    runtime.shutdown_background();
                });
            if let Err(e) = spawned {
                stop.cancel();
                return Err(e);
            }
        }
        Ok(Threads {
            handles,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// Where the next connection goes: `None` for the caller's runtime, else another thread's.
    pub fn next(&self) -> Option<&Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let place = self.next.fetch_add(1, Ordering::Relaxed) % (self.handles.len() + 1);
        place.checked_sub(1).map(|i| &self.handles[i])
    }

    /// Threads in all, the caller's included.
    pub fn count(&self) -> usize {
        self.handles.len() + 1
    }

    /// Stops the extra threads; a task still on one is dropped.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_dealt_in_turn_and_each_thread_runs_what_it_is_given() {
        let threads = Threads::start(3, "test-conn").unwrap();
        assert_eq!(threads.count(), 3);
        let here = std::thread::current().id();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let id = match threads.next() {
                None => here,
                Some(handle) => handle.spawn(async { std::thread::current().id() }).await.unwrap(),
            };
            seen.push(id);
        }
        // Place 0 (the caller), then the two threads, then again in the same order.
        assert_eq!(seen[0], here);
        assert_ne!(seen[1], here);
        assert_ne!(seen[2], here);
        assert_ne!(seen[1], seen[2]);
        assert_eq!(seen[..3], seen[3..]);
        threads.stop();
    }

    #[test]
    fn one_thread_is_the_callers_own() {
        let threads = Threads::start(1, "test-conn").unwrap();
        assert_eq!(threads.count(), 1);
        assert!(threads.next().is_none());
        let none = Threads::start(0, "test-conn").unwrap();
        assert!(none.next().is_none());
    }
}
