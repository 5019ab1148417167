//! The only module that knows both the tokio side and the UI: it owns the tokio runtime (on its
//! own worker threads), the monitor and, for `switchboard demo`, the demo, and gives the UI thread
//! non-blocking calls only: `drain` (take what arrived, within a per-frame budget), `command` and
//! `demo_command` (try_send; a full queue is counted, never waited on), and cheap snapshots.
//!
//! Shutdown order (written down because it matters): the window closes → `Link::shutdown` cancels
//! the monitor's tasks → the demo stops its nodes (clients get Close with allowReconnect), its
//! simulated clients and its redis-server → the runtime is shut down with a timeout, so a stuck
//! task cannot keep the process alive.
//!
//! SIGINT and SIGTERM take the same path: a signal task sends `ViewportCommand::Close` to the
//! window's egui context (attached with [`Link::attach_window`]), so the normal close runs. A
//! signal before the window opened is remembered: the caller checks [`Link::signalled`] and
//! returns without opening it (dropping the link shuts down in the same order), or the window
//! closes as soon as it attaches. A second signal exits at once (the demo's redis-server still dies
//! with the process: see `demo::redis_server`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;

use crate::demo::{DemoCommand, DemoHandle, DemoOptions, DemoStatus};
use crate::monitor::model::wake::{Showing, WakePolicy};
use crate::monitor::runtime::MonitorEvents;
use crate::monitor::{
    MonitorCommand, MonitorEvent, MonitorHandle, MonitorOptions, NodeTarget, TapSource, now_ms,
};

/// How often the link looks for a node whose stats stopped (it is shown stale 1.5 s after its
/// last stats; this adds at most a quarter of a second).
const STALE_CHECK: Duration = Duration::from_millis(250);

/// How long shutdown waits for the demo and the tasks before dropping the runtime anyway.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Worker threads of the dashboard's runtime: the UI has the main thread; two workers keep the
/// tap's decoding off the probes' path without taking the machine.
const RUNTIME_WORKERS: usize = 2;

/// The UI's handle on everything that does I/O.
pub struct Link {
    runtime: Option<tokio::runtime::Runtime>,
    monitor: MonitorHandle,
    events: MonitorEvents,
    demo: Option<DemoHandle>,
    signals: Arc<Mutex<SignalState>>,
    /// What the window shows ([`Showing`] as bits), for the waker on the monitor's thread.
    showing: Arc<AtomicU8>,
}

/// Where a SIGINT/SIGTERM goes: the window, once there is one.
#[derive(Default)]
struct SignalState {
    window: Option<egui::Context>,
    /// A signal arrived before the window attached.
    pending: bool,
}

fn lock_policy(policy: &Mutex<WakePolicy>) -> MutexGuard<'_, WakePolicy> {
    // Taken by the flusher and the stale check only, for microseconds; its maps stay whole.
    policy.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock(state: &Mutex<SignalState>) -> MutexGuard<'_, SignalState> {
    // Two plain fields set whole: a poisoned lock is still consistent.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes the window on SIGINT/SIGTERM (see the module docs); a second signal exits at once.
async fn close_on_signals(state: Arc<Mutex<SignalState>>) {
    let mut received = 0u32;
    loop {
        if let Err(e) = crate::signals::wait_for_signal().await {
            tracing::warn!("signals are not handled: {e:#}");
            return;
        }
        received += 1;
        if received > 1 {
            eprintln!("switchboard: second signal, exiting now");
            std::process::exit(130);
        }
        let mut state = lock(&state);
        match &state.window {
            Some(ctx) => {
                tracing::info!("signal received: closing the window");
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                ctx.request_repaint();
            }
            None => {
                tracing::info!("signal received before the window opened");
                state.pending = true;
            }
        }
    }
}

/// What the demo hands the dashboard when it starts: where to tap and which nodes to watch.
#[derive(Clone)]
pub struct DemoWiring {
    pub tap: TapSource,
    pub nodes: Vec<NodeTarget>,
}

impl Link {
    /// Starts the runtime and the monitor (and the demo, when `demo` is given: this waits for its
    /// nodes to listen, before the window opens).
    pub fn start(demo: Option<DemoOptions>) -> anyhow::Result<(Link, Option<DemoWiring>)> {
        Self::start_with(demo, MonitorOptions::default())
    }

    /// [`start`](Self::start) with the monitor's options (the node CA).
    pub fn start_with(
        demo: Option<DemoOptions>,
        monitor_options: MonitorOptions,
    ) -> anyhow::Result<(Link, Option<DemoWiring>)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name("switchboard-io")
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let signals = Arc::new(Mutex::new(SignalState::default()));
        runtime.spawn(close_on_signals(signals.clone()));
        // The demo's nodes require tokens: its probes and test sends present ones minted from the
        // demo's secret (the monitor starts first, so it gets them now).
        let mut monitor_options = monitor_options;
        if let Some(options) = &demo
            && options.auth_secret.is_some()
        {
            monitor_options.node_credentials = options.node_credentials();
        }
        let (monitor, events) = runtime.block_on(async { MonitorHandle::start_with(monitor_options) });
        let (demo, wiring) = match demo {
            Some(options) => {
                let demo = runtime
                    .block_on(DemoHandle::start(options))
                    .context("starting the demo")?;
                let wiring = DemoWiring {
                    tap: demo.tap_source(),
                    nodes: demo.node_targets(),
                };
                (Some(demo), Some(wiring))
            }
            None => (None, None),
        };
        let link = Link {
            runtime: Some(runtime),
            monitor,
            events,
            demo,
            signals,
            showing: Arc::new(AtomicU8::new(Showing::default().to_bits())),
        };
        Ok((link, wiring))
    }

    /// The window opened: a SIGINT/SIGTERM now closes it (at once if one already arrived), and
    /// events arriving wake it when they change what it shows (by [`WakePolicy`]; the window
    /// never polls for them).
    pub fn attach_window(&self, ctx: &egui::Context) {
        let showing = self.showing.clone();
        let policy = Arc::new(Mutex::new(WakePolicy::default()));
        let window = ctx.clone();
        let for_batches = policy.clone();
        self.monitor.set_waker(Box::new(move |events| {
            let showing = Showing::from_bits(showing.load(Ordering::Relaxed));
            let wake = lock_policy(&for_batches).wake_for(showing, events, now_ms());
            if let Some(after) = wake {
                window.request_repaint_after(after);
            }
        }));
        // A node that falls silent sends nothing that could wake the window: look for that here
        // (a lock and a comparison a few times a second, never a frame), so the window needs no
        // timer of its own to show a stale node within 2 s.
        if let Some(runtime) = &self.runtime {
            let window = ctx.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(STALE_CHECK);
                loop {
                    tick.tick().await;
                    if lock_policy(&policy).stale_due(now_ms()) {
                        window.request_repaint();
                    }
                }
            });
        }
        let mut state = lock(&self.signals);
        if state.pending {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            ctx.request_repaint();
        }
        state.window = Some(ctx.clone());
    }

    /// Tells the waker what the window shows now (called every frame; one atomic store).
    pub fn set_showing(&self, showing: Showing) {
        self.showing.store(showing.to_bits(), Ordering::Relaxed);
    }

    /// Whether event batches wait on the channel (the frame drained only its budget's worth).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether a SIGINT/SIGTERM arrived before the window attached (then do not open it).
    pub fn signalled(&self) -> bool {
        lock(&self.signals).pending
    }

    /// Takes the events that arrived, up to about `max_entries` traffic entries (whole batches),
    /// so one frame never folds more than its budget; the rest waits for the next frame.
    /// Each event comes with when it was handed over (unix ms), the time to fold it at.
    pub fn drain(&mut self, max_entries: usize) -> Vec<(u64, MonitorEvent)> {
        let mut out = Vec::new();
        let mut taken = 0usize;
        while taken < max_entries {
            let Some((at_ms, batch)) = self.events.try_recv_stamped() else {
                break;
            };
            for event in batch {
                if let MonitorEvent::Traffic(entries) = &event {
                    taken += entries.len();
                } else {
                    taken += 1;
                }
                out.push((at_ms, event));
            }
        }
        out
    }

    /// Hands a command to the monitor without waiting. False when its queue was full (the
    /// monitor counts it: [`refused_commands`](Self::refused_commands)).
    pub fn command(&mut self, command: MonitorCommand) -> bool {
        self.monitor.command(command)
    }

    /// Hands a command to the demo without waiting (no-op outside the demo). False when its
    /// queue was full or the demo had ended; counted with [`refused_commands`](Self::refused_commands).
    pub fn demo_command(&mut self, command: DemoCommand) -> bool {
        match &self.demo {
            Some(demo) if demo.command(command) => true,
            Some(_) => {
                self.monitor.count_refused();
                false
            }
            None => true,
        }
    }

    /// What the demo runs now, outside the demo `None`.
    pub fn demo_status(&self) -> Option<DemoStatus> {
        self.demo.as_ref().map(DemoHandle::status)
    }

    /// Event batches the UI was too slow to take (dropped by the monitor, counted there).
    pub fn dropped_events(&self) -> u64 {
        self.monitor.dropped_events()
    }

    /// Traffic entries in those dropped batches.
    pub fn dropped_entries(&self) -> u64 {
        self.monitor.dropped_entries()
    }

    /// Commands refused because the monitor's or the demo's queue was full (or it had stopped).
    pub fn refused_commands(&self) -> u64 {
        self.monitor.dropped_commands()
    }

    /// Stops everything in order (see the module doc). Idempotent.
    pub fn shutdown(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.monitor.shutdown();
        if let Some(demo) = self.demo.take() {
            let stopped =
                runtime.block_on(async { tokio::time::timeout(SHUTDOWN_TIMEOUT, demo.shutdown()).await });
            if stopped.is_err() {
                tracing::warn!("the demo did not stop within {SHUTDOWN_TIMEOUT:?}");
            }
        }
        runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shutdown();
    }
}
