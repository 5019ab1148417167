//! A chat message's path on the topology: from the sending client to its node, to the backplane,
//! to every live node, and on to their clients. One journey per chat message the tap sees (a few
//! per frame at most: at 50k msg/s the picture shows "busy", not 50k dots); the sender is known
//! for test messages and the demo's users (see `monitor::model::chat::sender_node`), else the
//! journey starts at the backplane. Positions are computed here from the times; drawing is the
//! caller's.

use egui::{Color32, Pos2};

use crate::monitor::model::chat;
use crate::monitor::model::{Model, TrafficEntry};

/// How long a journey takes from the sender to the receiving clients.
pub const JOURNEY_MS: f64 = 2000.0;

/// How long an upkeep dot takes from the backplane to a node.
pub const UPKEEP_MS: f64 = 700.0;

/// Journeys started per frame at most, and in flight at most.
const PER_FRAME: usize = 3;
const MAX_IN_FLIGHT: usize = 24;

/// Where each stage begins, as a share of the journey: client → node, node → backplane,
/// backplane → nodes, nodes → clients.
const TO_NODE: f32 = 0.0;
const TO_BUS: f32 = 0.2;
const TO_NODES: f32 = 0.45;
const TO_CLIENTS: f32 = 0.72;

/// The colour of a chat message, and of a test message from a dashboard.
pub const CHAT: Color32 = Color32::from_rgb(110, 180, 255);
pub const TEST: Color32 = Color32::from_rgb(255, 196, 40);

/// One message on its way.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// When it left the sender (unix ms, fractional).
    pub t0: f64,
    /// The sending node's hub URL, when known.
    pub sender: Option<String>,
    /// Who sent it ("ann"), when known.
    pub user: Option<String>,
    pub test: bool,
    /// To everyone (every client lights up), or to some (a group, a user, a connection).
    pub everyone: bool,
    /// Picks the sending client's dot and, for a group, which dots light up.
    pub seed: u64,
}

/// The journeys' state between frames.
#[derive(Debug, Default)]
pub struct Journeys {
    pub list: Vec<Journey>,
    /// When other traffic (heartbeats, group bookkeeping) last crossed, at most one a frame:
    /// drawn as small grey dots from the backplane outside presenter mode.
    pub upkeep: Vec<f64>,
    last_seq: u64,
    started: bool,
}

impl Journeys {
    /// Starts a journey for each chat message that arrived since the last frame (the newest few)
    /// and forgets the ones that arrived.
    pub fn spawn(&mut self, model: &Model, now: f64) {
        let newest = model.traffic.iter().next_back().map_or(0, |e| e.seq);
        if !self.started || model.traffic.offline().is_some() {
            self.started = true;
            self.last_seq = newest;
            return;
        }
        let names: Vec<(&str, &str)> = model
            .nodes
            .rows()
            .iter()
            .map(|r| (r.name.as_str(), r.target.hub_url.as_str()))
            .collect();
        let arrived: Vec<&TrafficEntry> = model
            .traffic
            .iter()
            .rev()
            .take(chat::LOOK_BACK)
            .take_while(|e| e.seq > self.last_seq)
            .collect();
        if arrived.iter().any(|e| !chat::is_chat(e)) {
            self.upkeep.push(now);
        }
        let fresh: Vec<&TrafficEntry> = arrived
            .into_iter()
            .filter(|e| chat::is_chat(e))
            .take(PER_FRAME)
            .collect();
        self.last_seq = newest.max(self.last_seq);
        for entry in fresh.into_iter().rev() {
            let sender = chat::sender_node(entry, &model.traces, &names);
            let line = chat::line(entry);
            // Without a sender, the picture starts where the tap saw it: at the backplane.
            let t0 = if sender.is_some() {
                now
            } else {
                now - f64::from(TO_NODES) * JOURNEY_MS
            };
            self.list.push(Journey {
                t0,
                sender,
                user: line
                    .user
                    .map(|u| u.split('@').next().unwrap_or_default().to_string()),
                test: line.test,
                everyone: matches!(entry.kind, crate::monitor::model::EntryKind::All),
                seed: entry.seq,
            });
        }
        self.list.retain(|j| now - j.t0 < JOURNEY_MS);
        self.upkeep.retain(|t0| now - t0 < UPKEEP_MS);
        if self.upkeep.len() > MAX_IN_FLIGHT {
            let excess = self.upkeep.len() - MAX_IN_FLIGHT;
            self.upkeep.drain(..excess);
        }
        if self.list.len() > MAX_IN_FLIGHT {
            let excess = self.list.len() - MAX_IN_FLIGHT;
            self.list.drain(..excess);
        }
    }

    /// Whether anything is still moving.
    pub fn moving(&self) -> bool {
        !self.list.is_empty() || !self.upkeep.is_empty()
    }
}

/// Where a journey is at time `t` (0..1 of the journey).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// From the sending client to its node, this far (0..1).
    Node(f32),
    /// From the sending node to the backplane.
    Bus(f32),
    /// From the backplane to every live node.
    Nodes(f32),
    /// From every live node to its receiving clients.
    Clients(f32),
}

/// The stage of a journey `t` of the way through (0..1).
pub fn stage(t: f32) -> Stage {
    let within = |from: f32, to: f32| ((t - from) / (to - from)).clamp(0.0, 1.0);
    if t < TO_BUS {
        Stage::Node(within(TO_NODE, TO_BUS))
    } else if t < TO_NODES {
        Stage::Bus(within(TO_BUS, TO_NODES))
    } else if t < TO_CLIENTS {
        Stage::Nodes(within(TO_NODES, TO_CLIENTS))
    } else {
        Stage::Clients(within(TO_CLIENTS, 1.0))
    }
}

/// A point `f` of the way from `a` to `b`, eased so a dot leaves and lands gently.
pub fn between(a: Pos2, b: Pos2, f: f32) -> Pos2 {
    let eased = f * f * (3.0 - 2.0 * f);
    a + (b - a) * eased
}

/// Whether dot `k` of `shown` receives a message to some clients (a group, a user): a steady
/// third of the dots per message, picked by `seed`, at least one. The dashboard does not know
/// the group's members per client; the picture says "some of them".
pub fn receives(everyone: bool, seed: u64, k: usize, shown: usize) -> bool {
    everyone || shown == 0 || (k as u64 + seed).is_multiple_of(3) || (shown < 3 && k == 0)
}

/// The sending client's dot of `shown`.
pub fn sender_dot(seed: u64, shown: usize) -> usize {
    if shown == 0 {
        0
    } else {
        (seed as usize * 7) % shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_each_other() {
        assert!(matches!(stage(0.0), Stage::Node(f) if f == 0.0));
        assert!(matches!(stage(0.1), Stage::Node(f) if (f - 0.5).abs() < 1e-6));
        assert!(matches!(stage(0.3), Stage::Bus(_)));
        assert!(matches!(stage(0.5), Stage::Nodes(_)));
        assert!(matches!(stage(0.99), Stage::Clients(f) if f > 0.9));
        let a = Pos2::new(0.0, 0.0);
        let b = Pos2::new(10.0, 0.0);
        assert_eq!(between(a, b, 0.0), a);
        assert_eq!(between(a, b, 1.0), b);
    }

    #[test]
    fn some_clients_receive_a_group_message_and_all_receive_everyone() {
        let lit = (0..9).filter(|k| receives(false, 4, *k, 9)).count();
        assert_eq!(lit, 3);
        assert_eq!((0..9).filter(|k| receives(true, 4, *k, 9)).count(), 9);
        assert!((0..2).any(|k| receives(false, 1, k, 2)));
        assert!(sender_dot(5, 6) < 6);
    }
}
