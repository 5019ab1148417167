//! What starting an export costs the UI thread with a full 100,000-entry ring: the old way (a deep
//! copy of every entry, in the frame) against the new one (`Traffic::snapshot`, an `Arc` per
//! entry; serializing happens on the file thread). Prints the median of 9 runs of each.
//!
//! `cargo bench --bench export_snapshot` (`EXPORT_ENTRIES` changes the ring size).

use std::time::{Duration, Instant};

use switchboard::monitor::decode;
use switchboard::monitor::model::TrafficEntry;
use switchboard::monitor::model::traffic::Traffic;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let n: usize = std::env::var("EXPORT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut traffic = Traffic::new(n, usize::MAX);
    for i in 0..n {
        // A chat broadcast's size and shape: channel, method, arguments, summary.
        let text = format!(
            "user-{} says hello number {i} to the room, with a few more words",
            i % 50
        );
        let payload = format!(
            "{{\"type\":1,\"target\":\"ReceiveMessage\",\"arguments\":[\"u{}\",\"{text}\"]}}",
            i % 50
        );
        traffic.push(decode::decode("", "Chat.Hub:all", payload.as_bytes(), i as u64));
    }
    assert_eq!(traffic.len(), n);
    let copy: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            let v: Vec<TrafficEntry> = traffic.iter().cloned().collect();
            let d = t.elapsed();
            drop(v);
            d
        })
        .collect();
    let shared: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            let v = traffic.snapshot();
            let d = t.elapsed();
            drop(v);
            d
        })
        .collect();
    let (copy, shared) = (median(copy), median(shared));
    println!(
        "export start with {n} entries, on the UI thread: deep copy {:.2} ms → Arc snapshot {:.2} ms ({:.0}× less)",
        copy.as_secs_f64() * 1000.0,
        shared.as_secs_f64() * 1000.0,
        copy.as_secs_f64() / shared.as_secs_f64().max(1e-9)
    );
}
