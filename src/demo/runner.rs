//! The demo task: owns the backplane (private redis-server or memory bus), the nodes and their
//! simulations, applies [`DemoCommand`]s one at a time and publishes [`DemoStatus`].
//!
//! Used by `DemoHandle` only; uses `hub` to start nodes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::redis_server::{self, RedisProcess};
use super::sim::{SimCounters, SimNode, SimPlan};
use super::{DemoBackplane, DemoCommand, DemoError, DemoNode, DemoOptions, DemoStatus, lock};
use crate::backplane::memory::MemoryBus;
use crate::config;
use crate::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
use crate::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use crate::monitor::TapSource;
use crate::node_token::NodeCredentials;
use crate::redis_conn::{RedisOptions, RedisSpec};

/// How long stopping one node may take (its clients get a Close first).
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(5);

enum Backplane {
    Redis(RedisProcess),
    /// The operator's own Redis (`switchboard demo --redis URL`): never stopped by the demo.
    External(Box<RedisSpec>),
    Memory(MemoryBus),
}

struct Slot {
    node: Option<NodeHandle>,
    sim: Option<SimNode>,
}

/// The demo task's state.
pub(super) struct Runner {
    opts: DemoOptions,
    backplane: Backplane,
    slots: Vec<Slot>,
    plan_tx: watch::Sender<SimPlan>,
    counters: Arc<SimCounters>,
    status: Arc<Mutex<DemoStatus>>,
    cancel: CancellationToken,
    /// With `opts.auth_secret`: the nodes' verifier, and the credentials the simulated clients
    /// mint their tokens with.
    auth: Option<(Arc<Verifier>, NodeCredentials)>,
}

/// A started runner and what the handle keeps of it.
pub(super) struct Started {
    pub runner: Runner,
    pub status: Arc<Mutex<DemoStatus>>,
    pub counters: Arc<SimCounters>,
    pub tap_source: TapSource,
}

/// The user a chat-page link's token names (each visitor picks a display name on the page).
const DEMO_PAGE_USER: &str = "audience";

/// The nodes' verifier and the simulated clients' credentials, from the demo's one secret.
fn auth_pair(secret: &[u8]) -> Result<(Verifier, NodeCredentials), DemoError> {
    let auth = |e: &dyn std::fmt::Display| DemoError::Auth(e.to_string());
    let key = JwtSecret::new(secret).map_err(|e| auth(&e))?;
    let verifier = Verifier::new(JwtSettings::new(KeySource::Secret(key))).map_err(|e| auth(&e))?;
    let credentials = NodeCredentials::mint_from_secret(secret).map_err(|e| auth(&e))?;
    Ok((verifier, credentials))
}

/// "node-a" … "node-z", then "node-27" ….
fn node_name(index: usize) -> String {
    match u8::try_from(index).ok().filter(|i| *i < 26) {
        Some(i) => format!("node-{}", char::from(b'a' + i)),
        None => format!("node-{}", index + 1),
    }
}

impl Runner {
    pub(super) async fn start(opts: DemoOptions, cancel: CancellationToken) -> Result<Started, DemoError> {
        let use_redis = match opts.backplane {
            _ if opts.external_redis.is_some() => false,
            DemoBackplane::Redis if !redis_server::on_path() => return Err(DemoError::RedisNotFound),
            DemoBackplane::Redis => true,
            DemoBackplane::Auto => redis_server::on_path(),
            DemoBackplane::Memory => false,
        };
        let (backplane, tap_source, kind, redis_url) = if let Some(spec) = opts.external_redis.clone() {
            let tap = TapSource::Redis {
                spec: Box::new(spec.clone()),
                prefix: opts.channel_prefix.clone(),
            };
            let shown = spec.redacted();
            (Backplane::External(Box::new(spec)), tap, "external", Some(shown))
        } else if use_redis {
            let server = RedisProcess::start().await.map_err(DemoError::Redis)?;
            let url = server.url();
            let spec = RedisSpec::parse(&url, &RedisOptions::default())
                .map_err(|e| DemoError::Redis(e.to_string()))?;
            let tap = TapSource::Redis {
                spec: Box::new(spec),
                prefix: opts.channel_prefix.clone(),
            };
            (Backplane::Redis(server), tap, "redis", Some(url))
        } else {
            let bus = MemoryBus::new();
            let tap = TapSource::Memory {
                bus: bus.clone(),
                prefix: opts.channel_prefix.clone(),
            };
            (Backplane::Memory(bus), tap, "memory", None)
        };
        let status = Arc::new(Mutex::new(DemoStatus {
            backplane_kind: kind.to_string(),
            redis_url,
            backplane_running: true,
            sim: opts.sim.clone(),
            ..DemoStatus::default()
        }));
        let (plan_tx, _) = watch::channel(SimPlan {
            settings: opts.sim.clone(),
            running_nodes: 0,
        });
        let counters = Arc::new(SimCounters::default());
        let auth = match &opts.auth_secret {
            Some(secret) => {
                let (verifier, credentials) = auth_pair(secret)?;
                Some((Arc::new(verifier), credentials))
            }
            None => None,
        };
        let mut runner = Runner {
            opts,
            backplane,
            slots: Vec::new(),
            plan_tx,
            counters: counters.clone(),
            status: status.clone(),
            cancel,
            auth,
        };
        tracing::info!(backplane = kind, nodes = runner.opts.nodes, "starting the demo");
        for _ in 0..runner.opts.nodes {
            if let Err(e) = runner.add_node().await {
                runner.stop_all().await;
                return Err(e);
            }
        }
        Ok(Started {
            runner,
            status,
            counters,
            tap_source,
        })
    }

    fn choice(&self) -> BackplaneChoice {
        match &self.backplane {
            Backplane::Redis(server) => BackplaneChoice::RedisUrl(server.url()),
            Backplane::External(spec) => BackplaneChoice::Redis((**spec).clone()),
            Backplane::Memory(bus) => BackplaneChoice::Memory(bus.clone()),
        }
    }

    fn update_plan(&self) {
        let running_nodes = self.slots.iter().filter(|s| s.node.is_some()).count();
        self.plan_tx.send_modify(|p| p.running_nodes = running_nodes);
    }

    /// Starts a node named `name` (on `listen`, or a free port) with its simulated clients.
    async fn start_node(
        &self,
        name: &str,
        listen: Option<SocketAddr>,
    ) -> Result<(NodeHandle, SimNode, DemoNode), DemoError> {
        let mut config = NodeConfig::new(name.to_string());
        config.channel_prefix = self.opts.channel_prefix.clone();
        if let Some(listen) = listen {
            config.listen = listen;
        }
        config.auth = self.auth.as_ref().map(|(verifier, _)| verifier.clone());
        // The simulation spreads its messages over its clients, but a presenter may drive a few
        // clients at the demo's top rate: that must not trip the per-connection limit.
        config.limits.invocations_per_second = config::DEMO_MAX_MESSAGES_PER_SEC as u32;
        config.limits.invocation_burst = config::DEMO_MAX_MESSAGES_PER_SEC as u32;
        let node = Node::start(config, self.choice())
            .await
            .map_err(|source| DemoError::Node {
                name: name.to_string(),
                source,
            })?;
        tracing::info!(node = %name, url = %node.base_url(), "demo node started");
        let page_url = match &self.auth {
            Some((_, credentials)) => {
                let token = credentials
                    .clone()
                    .with_lifetime(config::DEMO_PAGE_TOKEN_LIFETIME)
                    .bearer_for(DEMO_PAGE_USER);
                match token {
                    Some(token) => format!("{}/#access_token={}", node.base_url(), token.expose()),
                    None => format!("{}/", node.base_url()),
                }
            }
            None => format!("{}/", node.base_url()),
        };
        let info = DemoNode {
            name: name.to_string(),
            page_url,
            base_url: node.base_url(),
            hub_url: node.hub_url(),
            stats_url: format!("{}/switchboard/stats", node.base_url()),
            running: true,
        };
        let sim = SimNode::start(
            name.to_string(),
            node.hub_url(),
            self.plan_tx.subscribe(),
            self.counters.clone(),
            self.auth
                .as_ref()
                .map(|(_, credentials)| credentials.clone())
                .unwrap_or_default(),
        );
        Ok((node, sim, info))
    }

    async fn add_node(&mut self) -> Result<(), DemoError> {
        let name = node_name(self.slots.len());
        let (node, sim, info) = self.start_node(&name, None).await?;
        self.slots.push(Slot {
            node: Some(node),
            sim: Some(sim),
        });
        lock(&self.status).nodes.push(info);
        self.update_plan();
        Ok(())
    }

    /// Starts a stopped node again under its name, on its old port when that is free (so the
    /// dashboard's row, keyed by the hub URL, comes back to life), else on a new one (said in
    /// `last_error`; the node then announces itself at its new address).
    async fn restart_node(&mut self, index: usize) -> Result<(), DemoError> {
        let Some(old) = lock(&self.status).nodes.get(index).cloned() else {
            return Ok(());
        };
        if old.running || self.slots.get(index).is_none_or(|s| s.node.is_some()) {
            return Ok(());
        }
        let old_addr = old
            .base_url
            .strip_prefix("http://")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let started = match self.start_node(&old.name, old_addr).await {
            Ok(started) => started,
            Err(e) if old_addr.is_some() => {
                tracing::warn!(node = %old.name, error = %e, "the old port is taken; restarting on a new one");
                let started = self.start_node(&old.name, None).await?;
                lock(&self.status).last_error = Some(format!(
                    "{}: its old address {} was taken ({e}); restarted at {}",
                    old.name, old.base_url, started.2.base_url
                ));
                started
            }
            Err(e) => return Err(e),
        };
        let (node, sim, info) = started;
        if let Some(slot) = self.slots.get_mut(index) {
            slot.node = Some(node);
            slot.sim = Some(sim);
        }
        if let Some(row) = lock(&self.status).nodes.get_mut(index) {
            *row = info;
        }
        self.update_plan();
        Ok(())
    }

    async fn stop_node(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(sim) = slot.sim.take() {
            sim.stop().await;
        }
        if let Some(node) = slot.node.take() {
            tracing::info!(node = %node.node_name(), "stopping demo node");
            if tokio::time::timeout(NODE_STOP_TIMEOUT, node.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(node = %node.node_name(), "the node did not stop within {NODE_STOP_TIMEOUT:?}");
            }
        }
        if let Some(info) = lock(&self.status).nodes.get_mut(index) {
            info.running = false;
        }
        self.update_plan();
    }

    async fn set_backplane(&mut self, up: bool) {
        let result = match &mut self.backplane {
            Backplane::Memory(bus) => {
                bus.set_down(!up);
                Ok(())
            }
            Backplane::Redis(server) if up => {
                if server.is_running() {
                    Ok(())
                } else {
                    server.restart().await
                }
            }
            Backplane::Redis(server) => {
                server.kill();
                Ok(())
            }
            Backplane::External(_) => {
                Err("the demo does not stop or start a Redis it did not start".to_string())
            }
        };
        tracing::info!(up, "demo backplane {}", if up { "started" } else { "stopped" });
        let mut status = lock(&self.status);
        match result {
            Ok(()) => status.backplane_running = up,
            Err(e) => {
                tracing::error!(error = %e, "restarting the demo redis-server failed");
                status.last_error = Some(format!("restarting redis-server: {e}"));
                status.backplane_running = false;
            }
        }
    }

    async fn apply(&mut self, cmd: DemoCommand) {
        match cmd {
            DemoCommand::AddNode => {
                if let Err(e) = self.add_node().await {
                    tracing::error!(error = %e, "adding a demo node failed");
                    lock(&self.status).last_error = Some(e.to_string());
                }
            }
            DemoCommand::StopNode(name) => {
                let index = lock(&self.status).nodes.iter().position(|n| n.name == name);
                match index {
                    Some(index) => self.stop_node(index).await,
                    None => lock(&self.status).last_error = Some(format!("no demo node named {name}")),
                }
            }
            DemoCommand::StartNode(name) => {
                let index = lock(&self.status).nodes.iter().position(|n| n.name == name);
                let result = match index {
                    Some(index) => self.restart_node(index).await,
                    None => {
                        lock(&self.status).last_error = Some(format!("no demo node named {name}"));
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "restarting a demo node failed");
                    lock(&self.status).last_error = Some(e.to_string());
                }
            }
            DemoCommand::StopBackplane => self.set_backplane(false).await,
            DemoCommand::StartBackplane => self.set_backplane(true).await,
            DemoCommand::SetSimulation(settings) => {
                lock(&self.status).sim = settings.clone();
                self.plan_tx.send_modify(|p| p.settings = settings);
            }
        }
    }

    /// Applies commands until cancelled (or every handle is gone), then stops everything.
    pub(super) async fn run(mut self, mut cmd_rx: mpsc::Receiver<DemoCommand>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.apply(cmd).await,
                    None => break,
                },
            }
        }
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        tracing::info!("stopping the demo");
        let sims: Vec<SimNode> = self.slots.iter_mut().filter_map(|s| s.sim.take()).collect();
        futures_util::future::join_all(sims.into_iter().map(SimNode::stop)).await;
        let nodes: Vec<NodeHandle> = self.slots.iter_mut().filter_map(|s| s.node.take()).collect();
        let shutdowns = futures_util::future::join_all(nodes.iter().map(|n| n.shutdown()));
        let _ = tokio::time::timeout(NODE_STOP_TIMEOUT, shutdowns).await;
        for info in &mut lock(&self.status).nodes {
            info.running = false;
        }
        if let Backplane::Redis(server) = &mut self.backplane {
            server.kill();
        }
        lock(&self.status).backplane_running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(node_name(0), "node-a");
        assert_eq!(node_name(25), "node-z");
        assert_eq!(node_name(26), "node-27");
    }

    /// The demo's secret is random bytes; one that ended in a line break (which secrets drop)
    /// let no simulated client in (a CI run timed out waiting for them): both ends must agree.
    #[test]
    fn the_nodes_accept_the_tokens_minted_from_any_secret() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut secret = [7u8; 32];
        for last in [b'\n', b'\r', b' ', 0, 255] {
            secret[31] = last;
            let (verifier, credentials) = auth_pair(&secret).unwrap();
            let token = credentials.bearer_for("ann@node-a").unwrap();
            let identity = verifier
                .verify(token.expose(), now)
                .unwrap_or_else(|e| panic!("last byte {last}: {e}"));
            assert_eq!(identity.user, "ann@node-a");
        }
        let (other, _) = auth_pair(&[8; 32]).unwrap();
        let (_, credentials) = auth_pair(&secret).unwrap();
        let token = credentials.bearer_for("ann@node-a").unwrap();
        assert!(
            other.verify(token.expose(), now).is_err(),
            "another secret is refused"
        );
        for _ in 0..2000 {
            assert!(!matches!(crate::demo::random_secret()[31], b'\n' | b'\r'));
        }
    }
}
