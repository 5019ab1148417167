//! The dashboard's data side without its window, for tests: a real `MonitorHandle` tapping a
//! real Redis, its events folded into a `Model` as the UI folds them, waits that fail with the
//! model's state in the message. Shared by the health tests and the check-against-dashboard test.

use std::time::Duration;

use switchboard::monitor::model::health::{Evaluation, Finding};
use switchboard::monitor::model::{Limits, Model};
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{MonitorCommand, MonitorHandle, NodeTarget, TapSource, now_ms};

use super::within;

pub struct Dashboard {
    pub handle: MonitorHandle,
    pub rx: MonitorEvents,
    pub model: Model,
    pub prefix: String,
    /// How long each wait may take before it fails the test.
    wait: Duration,
}

impl Dashboard {
    /// Taps `url` under `prefix`; every wait fails after `wait`.
    pub fn start(url: &str, prefix: &str, wait: Duration) -> Dashboard {
        let (handle, rx) = MonitorHandle::start();
        let spec = switchboard::redis_conn::RedisSpec::parse(url, &Default::default())
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(handle.command(MonitorCommand::SetTap(Some(TapSource::Redis {
            spec: Box::new(spec),
            prefix: prefix.to_string(),
        }))));
        Dashboard {
            handle,
            rx,
            model: Model::new(Limits::default()),
            prefix: prefix.to_string(),
            wait,
        }
    }

    /// Watches a node, as the operator's Add node does (a row first, then the probe).
    pub fn watch(&mut self, hub_url: String, base_url: String) {
        let target = NodeTarget {
            hub_url,
            monitor_url: Some(format!("{base_url}/switchboard/stats")),
        };
        self.model.nodes.upsert(target.clone());
        assert!(self.handle.command(MonitorCommand::AddNode(target)));
    }

    fn fold(&mut self, events: Vec<switchboard::monitor::MonitorEvent>) {
        for event in events {
            self.model.apply(event, now_ms());
        }
    }

    /// Folds events in until `done` holds for the model, or fails after the wait.
    pub async fn wait_model(&mut self, what: &str, done: impl Fn(&Model) -> bool) {
        let deadline = tokio::time::Instant::now() + self.wait;
        while !done(&self.model) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(events)) => self.fold(events),
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => panic!(
                    "not {what} within {:?}; census {:?}, round {:?}",
                    self.wait, self.model.census, self.model.health_round
                ),
            }
        }
    }

    /// Folds events in and re-evaluates (the model's gate: every 2 s at most) until `pick` finds
    /// what it wants in an evaluation, or fails after the wait showing the last one.
    pub async fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&Evaluation) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(e) = &self.model.health.latest
                && let Some(v) = pick(e)
            {
                return v;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(events)) => self.fold(events),
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {:?}; last evaluation: {:#?}",
                    self.wait, self.model.health.latest
                ),
            }
            let prefix = self.prefix.clone();
            self.model.refresh_health(&prefix, now_ms());
        }
    }

    /// The first finding `f` accepts, waiting for it as [`Self::wait_for`] does.
    pub async fn finding(&mut self, what: &str, f: impl Fn(&Finding) -> bool) -> Finding {
        self.wait_for(what, |e| e.findings.iter().find(|x| f(x)).cloned())
            .await
    }

    /// Folds events in for `d` (as the UI keeps doing while time passes).
    pub async fn fold_for(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(events)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            self.fold(events);
        }
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        within("monitor shutdown", self.handle.stopped()).await;
    }
}
