//! What one health evaluation costs the UI thread (`Model::refresh_health`, run at most every 2 s):
//! the pass over the last minute of the traffic ring plus the rules, with a full 100,000-entry
//! ring inside that minute (the worst case: at 1,700 msg/s the ring holds one minute), a census of
//! 10 hubs and 20 servers, and a health round for them. Prints the median of 9 runs, and the same
//! with only 1,000 entries in the window.
//!
//! `cargo bench --bench health_refresh` (`HEALTH_ENTRIES` changes the ring size).

use std::time::{Duration, Instant};

use switchboard::monitor::model::{Limits, Model};
use switchboard::monitor::{HealthRound, HubCensus, HubSubscribers, MonitorEvent, decode};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

const NOW: u64 = 1_800_000_000_000;

fn model(entries: usize, spread_ms: u64) -> Model {
    let mut model = Model::new(Limits {
        ring_entries: entries.max(1),
        ring_bytes: usize::MAX,
        traces: 10,
    });
    let hubs: Vec<HubCensus> = (0..10)
        .map(|h| HubCensus {
            hub: format!("App.Hub{h}"),
            connections: 1000,
            users: 800,
            groups: 50,
            servers: vec![format!("web-{h}-a_0123"), format!("web-{h}-b_4567")],
            return_servers: vec![format!("web-{h}-a_0123"), format!("web-{h}-b_4567")],
        })
        .collect();
    model.apply(
        MonitorEvent::HealthRound(HealthRound {
            at_ms: NOW,
            hubs: hubs
                .iter()
                .map(|h| HubSubscribers {
                    hub: h.hub.clone(),
                    all: 2,
                    groups: 2,
                    ack_servers: h.servers.clone(),
                })
                .collect(),
            ..HealthRound::default()
        }),
        NOW,
    );
    model.apply(MonitorEvent::Census { at_ms: NOW, hubs }, NOW);
    let mut batch = Vec::with_capacity(entries);
    for i in 0..entries {
        let payload = format!(
            "{{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"u{}\",\"hello {i}\"]}}",
            i % 50
        );
        let at = NOW - spread_ms + (i as u64 * spread_ms) / entries.max(1) as u64;
        let channel = format!("App.Hub{}:group:room-{}", i % 10, i % 200);
        batch.push(decode::decode("", &channel, payload.as_bytes(), at));
    }
    model.apply(MonitorEvent::Traffic(batch), NOW);
    model
}

fn time(model: &mut Model) -> Duration {
    let runs: Vec<Duration> = (0..9u64)
        .map(|i| {
            // Every call 2 s after the last: the gate lets each one through.
            let now = NOW + (i + 1) * 2_000;
            let t = Instant::now();
            assert!(model.refresh_health("", now));
            t.elapsed()
        })
        .collect();
    median(runs)
}

fn main() {
    let n: usize = std::env::var("HEALTH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut full = model(n, 40_000);
    let findings = {
        full.refresh_health("", NOW);
        full.health.latest.as_ref().map_or(0, |e| e.findings.len())
    };
    let full_cost = time(&mut full);
    let mut light = model(1_000, 40_000);
    let light_cost = time(&mut light);
    println!(
        "health refresh on the UI thread (every 2 s at most): {n} entries in the window {:.2} ms, 1,000 entries {:.3} ms ({findings} findings)",
        full_cost.as_secs_f64() * 1000.0,
        light_cost.as_secs_f64() * 1000.0,
    );
}
