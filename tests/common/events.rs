//! The dashboard runtime's events as a test sees them: everything emitted so far, and a way to
//! wait for one (for tests that drive `MonitorHandle` directly: `https`, `node_trust`).

use std::time::Duration;

use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{MonitorEvent, NodeEvent};

/// Events from the runtime, kept for searching.
pub struct Seen {
    pub rx: MonitorEvents,
    pub events: Vec<MonitorEvent>,
    /// How long [`find`](Self::find) waits before it fails the test.
    wait: Duration,
}

impl Seen {
    pub fn new(rx: MonitorEvents, wait: Duration) -> Seen {
        Seen {
            rx,
            events: Vec::new(),
            wait,
        }
    }

    /// The first event (from the start) for which `f` says Some; panics after the wait, with the
    /// last events.
    pub async fn find<T>(&mut self, what: &str, mut f: impl FnMut(&MonitorEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut index = 0;
        loop {
            while index < self.events.len() {
                if let Some(v) = f(&self.events[index]) {
                    return v;
                }
                index += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(batch)) => self.events.extend(batch),
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {:?}; last events: {:#?}",
                    self.wait,
                    &self.events[self.events.len().saturating_sub(10)..]
                ),
            }
        }
    }

    /// The first event of node `hub` for which `f` says Some.
    pub async fn node<T>(&mut self, hub: &str, what: &str, f: impl Fn(&NodeEvent) -> Option<T>) -> T {
        self.find(what, |e| match e {
            MonitorEvent::Node { hub_url, event } if hub_url == hub => f(event),
            _ => None,
        })
        .await
    }

    /// Takes in what arrived so far, without waiting.
    pub fn drain(&mut self) {
        while let Some(batch) = self.rx.try_recv() {
            self.events.extend(batch);
        }
    }
}
