//! `switchboard tap`: the dashboard's live decoder in a terminal, for SSH sessions, CI and cron.
//!
//! It runs the dashboard's own Redis tap task (`monitor::tap`: PSUBSCRIBE on the prefix, the same
//! decoder, reconnects with a capped backoff, sheds load it cannot decode) behind the same bounded
//! [`EventSink`](crate::monitor::sink::EventSink), and none of the rest of the monitor: no node
//! probes, so watching never adds clients to the nodes. What it shows passes the Traffic view's
//! [`Filter`]; gaps come from the model's [`TapStatus`], as on the dashboard, and are printed
//! whatever the filter (a gap may hide the very messages filtered for).
//!
//! Output: a compact table (or JSON Lines with `--json`, one [`TrafficEntry`] per line, the
//! capture schema) on stdout only; connection states, drops and the closing summary on stderr.
//! What is shown, gaps included, also goes to a JSON Lines capture with a header line, which the
//! dashboard opens. Exit codes: [`EXIT_OK`], [`EXIT_INCOMPLETE`], [`EXIT_BAD_INPUT`].
//!
//! Called by `cli` only. Uses `monitor` (tap, sink, model), `redis_conn`, `signals`, `config`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backplane::naming::Channels;
use crate::config;
use crate::monitor::model::capture::CaptureHeader;
use crate::monitor::model::traffic::{Filter, hms_utc};
use crate::monitor::model::{EntryKind, TapStatus, TrafficEntry};
use crate::monitor::sink::{self, EventSink};
use crate::monitor::{LinkState, MonitorEvent, TapSource, now_ms, tap};
use crate::redis_conn::RedisSpec;

/// Stopped as asked: `--count` reached, `--duration` over (without an unmet `--count`), or
/// SIGINT/SIGTERM, after Redis was reached at least once.
pub const EXIT_OK: i32 = 0;
/// Stopped without doing what was asked: `--duration` ran out before `--count` messages, Redis
/// was never reached, or the capture or stdout could not be written.
pub const EXIT_INCOMPLETE: i32 = 2;
/// Bad input (a malformed URL, an unreadable CA file, a capture file that cannot be created),
/// said in one line before anything starts; also clap's code for bad flags.
pub const EXIT_BAD_INPUT: i32 = 3;

/// The longest `--duration`: a week, past which an unattended tap is more likely a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// The table's width when stdout is not a terminal and COLUMNS is not set.
const DEFAULT_WIDTH: usize = 100;

/// The narrowest the last (arguments) column gets, however narrow the terminal.
const MIN_REST: usize = 12;

/// How often a growing drop count is reported on stderr, at most.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// How often the same "link down" error is repeated on stderr while the tap retries.
const DOWN_REPEAT_EVERY_MS: u64 = 5_000;

/// How long the tap task gets to stop before it is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What `cli` checked and decided.
#[derive(Debug)]
pub struct TapOptions {
    pub spec: RedisSpec,
    /// The channel prefix (ASP.NET Core's `ChannelPrefix`).
    pub prefix: String,
    pub filter: Filter,
    /// JSON Lines on stdout instead of the table.
    pub json: bool,
    /// Stop after this many messages shown.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Where the capture goes (`None`: no capture).
    pub capture: Option<PathBuf>,
    /// The table's width in characters (see [`output_width`]).
    pub width: usize,
}

/// The default capture file: `switchboard-tap-YYYYMMDD-HHMMSS.jsonl` (UTC) in the current
/// directory, or `...-HHMMSS-2.jsonl` (and so on) when a tap started in the same second already
/// wrote that one: a default name never overwrites a capture.
pub fn default_capture_path(now_ms: u64) -> PathBuf {
    let stamp = file_stamp(now_ms);
    let first = PathBuf::from(format!("switchboard-tap-{stamp}.jsonl"));
    if !first.exists() {
        return first;
    }
    (2..1000)
        .map(|n| PathBuf::from(format!("switchboard-tap-{stamp}-{n}.jsonl")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn file_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The table's width: the terminal's when stdout is one, else `COLUMNS`, else 100.
pub fn output_width() -> usize {
    terminal_columns()
        .or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<usize>().ok())
                .filter(|c| *c > 0)
        })
        .unwrap_or(DEFAULT_WIDTH)
}

#[cfg(unix)]
fn terminal_columns() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the one `winsize` it is given, which outlives the call.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (r == 0 && size.ws_col > 0).then_some(size.ws_col as usize)
}

#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}

// ---- the table ----

const W_TIME: usize = 12;
const W_KIND: usize = 10;
const W_HUB: usize = 19;
const W_TARGET: usize = 12;
const W_METHOD: usize = 14;

/// The table's header line.
pub fn table_header(width: usize) -> String {
    let line = format!(
        "{:W_TIME$} {:W_KIND$} {:W_HUB$} {:W_TARGET$} {:W_METHOD$} {}",
        "TIME (UTC)", "KIND", "HUB", "TARGET", "METHOD", "ARGS"
    );
    clip(&line, width.max(prefix_width() + MIN_REST))
}

fn prefix_width() -> usize {
    W_TIME + W_KIND + W_HUB + W_TARGET + W_METHOD + 5
}

/// One table line for an entry (a gap included), at most `width` characters (or the fixed
/// columns plus a few characters of arguments, when the terminal is narrower), with control
/// characters replaced so one message is one line.
pub fn table_row(entry: &TrafficEntry, width: usize) -> String {
    let time = format!("{}.{:03}", hms_utc(entry.at_ms), entry.at_ms % 1000);
    let width = width.max(prefix_width() + MIN_REST);
    if entry.kind == EntryKind::Gap {
        let seconds = entry
            .gap
            .map(|(from, to)| to.saturating_sub(from) as f64 / 1000.0)
            .unwrap_or(0.0);
        let line = format!(
            "{time:W_TIME$} {:W_KIND$} --- {} ({seconds:.1} s): messages then were not seen ---",
            "gap",
            clean(&entry.summary)
        );
        return clip(&line, width);
    }
    let mut rest = match (&entry.method, &entry.args) {
        (Some(_), Some(args)) => args.clone(),
        _ => entry.summary.clone(),
    };
    if !entry.excluded.is_empty() {
        rest.push_str(&format!(" (excluding {})", entry.excluded.len()));
    }
    if let Some(error) = &entry.error {
        rest = format!("! {error}: {rest}");
    }
    let line = format!(
        "{time:W_TIME$} {:W_KIND$} {:W_HUB$} {:W_TARGET$} {:W_METHOD$} {}",
        entry.kind.label(),
        clip_left(&clean(entry.hub.as_deref().unwrap_or("-")), W_HUB),
        clip(&clean(entry.scope.as_deref().unwrap_or("-")), W_TARGET),
        clip(&clean(entry.method.as_deref().unwrap_or("-")), W_METHOD),
        clean(&rest),
    );
    clip(&line, width)
}

/// Control characters (newlines, escape sequences) as spaces: the terminal shows text only.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, the last one `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// At most `max` characters, keeping the end (hub type names differ at the end).
fn clip_left(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let mut out = String::from("…");
    out.extend(text.chars().skip(n - max.saturating_sub(1)));
    out
}

// ---- the session: events in, lines out ----

/// The capture file being written.
struct CaptureOut<W: Write> {
    path: PathBuf,
    writer: Option<W>,
    written: u64,
    error: Option<String>,
}

impl<W: Write> CaptureOut<W> {
    fn line(&mut self, entry: &TrafficEntry) {
        let Some(w) = self.writer.as_mut() else { return };
        let result = serde_json::to_writer(&mut *w, entry)
            .map_err(std::io::Error::from)
            .and_then(|()| w.write_all(b"\n"));
        match result {
            Ok(()) => self.written += 1,
            Err(e) => self.fail(e),
        }
    }

    fn flush(&mut self) {
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.flush()
        {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        let error = format!(
            "writing the capture {}: {e}; capture stopped",
            self.path.display()
        );
        eprintln!("switchboard tap: {error}");
        self.error = Some(error);
        self.writer = None;
    }
}

/// Why the tap stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Count,
    Duration,
    Signal,
    /// Whoever read stdout went away (`| head`).
    StdoutClosed,
    /// Writing stdout failed otherwise.
    StdoutFailed(String),
    /// The tap gave up (a connection that can never work).
    Failed(String),
    /// The tap's events ended (the runtime is going away).
    Ended,
}

/// Folds the tap's events into output: what passes the filter (and every gap) as table or JSON
/// lines in `out`, the capture, the counts for the summary. Pure but for the state lines it
/// prints on stderr.
struct Session<W: Write> {
    filter: Filter,
    json: bool,
    width: usize,
    count: Option<u64>,
    status: TapStatus,
    ever_connected: bool,
    seen: u64,
    shown: u64,
    gaps: u64,
    gap_ms: u64,
    /// The `seq` of the next line (messages and gaps, from 1), as in a dashboard capture.
    next_seq: u64,
    capture: Option<CaptureOut<W>>,
    /// The last "link down" line printed and when (unix ms).
    last_down_line: Option<(String, u64)>,
    /// stdout bytes not yet written.
    out: Vec<u8>,
    stop: Option<Stop>,
}

impl<W: Write> Session<W> {
    fn new(options: &TapOptions, capture: Option<CaptureOut<W>>) -> Self {
        Session {
            filter: options.filter.clone(),
            json: options.json,
            width: options.width,
            count: options.count,
            status: TapStatus::default(),
            ever_connected: false,
            seen: 0,
            shown: 0,
            gaps: 0,
            gap_ms: 0,
            next_seq: 1,
            capture,
            last_down_line: None,
            out: Vec::new(),
            stop: None,
        }
    }

    fn header(&mut self) {
        if !self.json {
            let line = table_header(self.width);
            self.out.extend_from_slice(line.as_bytes());
            self.out.push(b'\n');
        }
    }

    fn apply(&mut self, event: MonitorEvent) {
        if self.stop.is_some() {
            return;
        }
        match event {
            MonitorEvent::Traffic(entries) => {
                for entry in entries {
                    if self.stop.is_some() {
                        break;
                    }
                    self.seen += 1;
                    if self.filter.matches(&entry) {
                        self.shown += 1;
                        self.emit(entry);
                        if self.count.is_some_and(|n| self.shown >= n) {
                            self.stop = Some(Stop::Count);
                        }
                    }
                }
            }
            MonitorEvent::Tap { state, at_ms } => self.tap_state(state, at_ms),
            // Heartbeats also arrive as traffic; the census and node events are the dashboard's.
            _ => {}
        }
    }

    fn tap_state(&mut self, state: LinkState, at_ms: u64) {
        match &state {
            LinkState::Connected => {
                self.ever_connected = true;
                self.last_down_line = None;
                match self.status.down_since_ms {
                    Some(from) => eprintln!(
                        "switchboard tap: reconnected after {:.1} s without data",
                        at_ms.saturating_sub(from) as f64 / 1000.0
                    ),
                    None => eprintln!("switchboard tap: connected"),
                }
            }
            LinkState::Reconnecting {
                attempt,
                retry_at_ms,
                error,
            } => {
                // Retries come every 100 ms against a refused port: say a new error at once, the
                // same one again only every few seconds.
                let repeat = self
                    .last_down_line
                    .as_ref()
                    .is_some_and(|(e, at)| e == error && at_ms < at + DOWN_REPEAT_EVERY_MS);
                if !repeat {
                    eprintln!(
                        "switchboard tap: Redis link down ({error}); attempt {attempt}, next in {:.1} s",
                        retry_at_ms.saturating_sub(at_ms) as f64 / 1000.0
                    );
                    self.last_down_line = Some((error.clone(), at_ms));
                }
            }
            LinkState::Failed { error } => {
                eprintln!("switchboard tap: cannot watch this Redis: {error}");
                self.stop = Some(Stop::Failed(error.clone()));
            }
            LinkState::Connecting | LinkState::Idle => {}
        }
        if let Some((from, to)) = self.status.apply(state, at_ms) {
            self.gap(from, to, at_ms);
        }
    }

    fn gap(&mut self, from: u64, to: u64, at_ms: u64) {
        self.gaps += 1;
        self.gap_ms += to.saturating_sub(from);
        self.emit(TrafficEntry::gap_marker(from, to, at_ms));
    }

    /// At the end: an outage still under way becomes a gap up to now.
    fn close(&mut self, now_ms: u64) {
        if let Some(from) = self.status.down_since_ms.take() {
            self.gap(from, now_ms.max(from), now_ms);
        }
    }

    fn emit(&mut self, mut entry: TrafficEntry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        if self.json {
            // A TrafficEntry always serializes (plain fields, base64 payload).
            if serde_json::to_writer(&mut self.out, &entry).is_ok() {
                self.out.push(b'\n');
            }
        } else {
            self.out
                .extend_from_slice(table_row(&entry, self.width).as_bytes());
            self.out.push(b'\n');
        }
        if let Some(capture) = self.capture.as_mut() {
            capture.line(&entry);
        }
    }

    /// Hands the pending stdout bytes to `stdout` and flushes the capture.
    fn write_out(&mut self, stdout: &mut impl Write) {
        if let Some(capture) = self.capture.as_mut() {
            capture.flush();
        }
        if self.out.is_empty() {
            return;
        }
        let result = stdout.write_all(&self.out).and_then(|()| stdout.flush());
        self.out.clear();
        if let Err(e) = result
            && (self.stop.is_none() || self.stop == Some(Stop::Count))
        {
            self.stop = Some(if e.kind() == std::io::ErrorKind::BrokenPipe {
                Stop::StdoutClosed
            } else {
                Stop::StdoutFailed(e.to_string())
            });
        }
    }

    fn exit_code(&self) -> i32 {
        let capture_failed = self.capture.as_ref().is_some_and(|c| c.error.is_some());
        let done = match &self.stop {
            Some(Stop::Count) => true,
            Some(Stop::Signal | Stop::StdoutClosed) => self.ever_connected,
            Some(Stop::Duration) => self.ever_connected && self.count.is_none(),
            Some(Stop::StdoutFailed(_) | Stop::Failed(_) | Stop::Ended) | None => false,
        };
        if done && !capture_failed {
            EXIT_OK
        } else {
            EXIT_INCOMPLETE
        }
    }

    /// The closing lines for stderr.
    fn summary(&self, elapsed: Duration, dropped: u64) -> Vec<String> {
        let why = match &self.stop {
            Some(Stop::Count) => format!("stopped: --count {} reached", self.shown),
            Some(Stop::Duration) => match self.count {
                Some(n) => format!("stopped: --duration ran out before --count {n}"),
                None => "stopped: --duration ran out".to_string(),
            },
            Some(Stop::Signal) => "stopped: interrupted".to_string(),
            Some(Stop::StdoutClosed) => "stopped: stdout was closed".to_string(),
            Some(Stop::StdoutFailed(e)) => format!("stopped: writing stdout failed: {e}"),
            Some(Stop::Failed(e)) => format!("stopped: {e}"),
            Some(Stop::Ended) | None => "stopped".to_string(),
        };
        let mut lines = vec![why];
        if !self.ever_connected {
            lines.push("Redis was never reached".to_string());
        }
        let gaps = if self.gaps == 0 {
            "0 gaps".to_string()
        } else {
            format!(
                "{} gap{} ({:.1} s without data)",
                self.gaps,
                if self.gaps == 1 { "" } else { "s" },
                self.gap_ms as f64 / 1000.0
            )
        };
        lines.push(format!(
            "summary: {} message{} seen, {} shown, {} dropped, {}, {:.1} s",
            self.seen,
            if self.seen == 1 { "" } else { "s" },
            self.shown,
            dropped,
            gaps,
            elapsed.as_secs_f64()
        ));
        if let Some(c) = &self.capture {
            lines.push(match &c.error {
                None => format!(
                    "capture: {} ({} entries; open it with `switchboard dashboard --capture {}`)",
                    c.path.display(),
                    c.written,
                    c.path.display()
                ),
                Some(e) => format!("capture: {} is incomplete: {e}", c.path.display()),
            });
        }
        lines
    }
}

/// Creates the capture file and writes its header line.
fn open_capture(path: &Path, prefix: &str) -> Result<CaptureOut<std::io::BufWriter<std::fs::File>>, String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("--capture: cannot create {}: {e}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let header = CaptureHeader {
        switchboard_capture: 1,
        created_ms: now_ms(),
        prefix: prefix.to_string(),
    };
    serde_json::to_writer(&mut writer, &header)
        .map_err(std::io::Error::from)
        .and_then(|()| writer.write_all(b"\n"))
        .and_then(|()| writer.flush())
        .map_err(|e| format!("--capture: cannot write {}: {e}", path.display()))?;
    Ok(CaptureOut {
        path: path.to_path_buf(),
        writer: Some(writer),
        written: 0,
        error: None,
    })
}

/// Runs the tap until it is told to stop; returns the exit code. Everything it says goes to
/// stderr but the lines shown.
pub fn run(options: TapOptions) -> i32 {
    let capture = match &options.capture {
        Some(path) => match open_capture(path, &options.prefix) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("switchboard tap: {e}");
                return EXIT_BAD_INPUT;
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard tap: cannot start the tokio runtime: {e}");
            return EXIT_INCOMPLETE;
        }
    };
    let code = runtime.block_on(watch(options, capture));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn watch(options: TapOptions, capture: Option<CaptureOut<std::io::BufWriter<std::fs::File>>>) -> i32 {
    let started = Instant::now();
    eprintln!(
        "switchboard tap: watching {} ({}) on {}{}",
        options.spec.redacted(),
        options.spec.describe(),
        Channels::tap_pattern(&options.prefix),
        match &capture {
            Some(c) => format!("; capture: {}", c.path.display()),
            None => String::new(),
        }
    );
    let mut session = Session::new(&options, capture);
    session.header();

    let sink = EventSink::new();
    let (events_tx, events_rx) = mpsc::channel(config::DEFAULT_MONITOR_EVENT_QUEUE);
    let mut events = sink.events(events_rx);
    let flusher_cancel = CancellationToken::new();
    let flusher = tokio::spawn(sink::flush_loop(sink.clone(), events_tx, flusher_cancel.clone()));
    // Announcements feed the dashboard's node discovery; the tap watches no nodes.
    let (announce_tx, announce_rx) = mpsc::channel(1);
    drop(announce_rx);
    let tap_cancel = CancellationToken::new();
    let source = TapSource::Redis {
        spec: Box::new(options.spec.clone()),
        prefix: options.prefix.clone(),
    };
    let tap_task = tokio::spawn(tap::run(source, sink.clone(), announce_tx, tap_cancel.clone()));

    let signal = async {
        if let Err(e) = crate::signals::wait_for_signal().await {
            eprintln!("switchboard tap: cannot watch for Ctrl-C ({e}); stop it with --count or --duration");
            std::future::pending::<()>().await;
        }
    };
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(signal, deadline);
    let mut reported_drops = 0;
    let mut last_drop_report = Instant::now();
    {
        let mut stdout = std::io::stdout();
        session.write_out(&mut stdout);
    }
    while session.stop.is_none() {
        tokio::select! {
            _ = &mut signal => session.stop = Some(Stop::Signal),
            _ = &mut deadline => session.stop = Some(Stop::Duration),
            batch = events.recv() => match batch {
                Some(batch) => {
                    for event in batch {
                        session.apply(event);
                    }
                }
                None => session.stop = Some(Stop::Ended),
            },
        }
        let dropped = sink.dropped_entries();
        if dropped > reported_drops && last_drop_report.elapsed() >= DROP_REPORT_EVERY {
            eprintln!("switchboard tap: {dropped} messages dropped so far (decoding or output fell behind)");
            reported_drops = dropped;
            last_drop_report = Instant::now();
        }
        let mut stdout = std::io::stdout();
        session.write_out(&mut stdout);
    }
    tap_cancel.cancel();
    if tokio::time::timeout(STOP_GRACE, tap_task).await.is_err() {
        eprintln!("switchboard tap: the Redis tap did not stop within {STOP_GRACE:?}");
    }
    flusher_cancel.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, flusher).await;
    session.close(now_ms());
    {
        let mut stdout = std::io::stdout();
        session.write_out(&mut stdout);
    }
    for line in session.summary(started.elapsed(), sink.dropped_entries()) {
        eprintln!("switchboard tap: {line}");
    }
    session.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::decode;
    use crate::monitor::model::capture;

    fn options(filter: Filter, json: bool, count: Option<u64>) -> TapOptions {
        TapOptions {
            spec: RedisSpec::parse("redis://127.0.0.1:1", &Default::default()).expect("spec"),
            prefix: "p:".into(),
            filter,
            json,
            count,
            duration: None,
            capture: None,
            width: 100,
        }
    }

    fn capture() -> CaptureOut<Vec<u8>> {
        CaptureOut {
            path: PathBuf::from("t.jsonl"),
            writer: Some(Vec::new()),
            written: 0,
            error: None,
        }
    }

    /// An ASP.NET Core invocation on `channel`, decoded as the tap does.
    fn message(channel: &str, at_ms: u64) -> TrafficEntry {
        use crate::protocol::{HubMessage, Protocol, Value};
        let message = HubMessage::invocation("ReceiveMessage", vec![Value::from("ann"), Value::from("hi")]);
        let json = Protocol::Json.encode(&message);
        let payload = crate::backplane::wire::encode_invocation(&[], &[("json", json.as_slice())], None);
        decode::decode("p:", channel, &payload, at_ms)
    }

    fn state(state: LinkState, at_ms: u64) -> MonitorEvent {
        MonitorEvent::Tap { state, at_ms }
    }

    fn lost(at_ms: u64) -> MonitorEvent {
        state(
            LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: at_ms + 500,
                error: "connection to Redis lost".into(),
            },
            at_ms,
        )
    }

    #[test]
    fn json_lines_are_capture_entries_and_count_stops_after_n_shown() {
        let filter = Filter {
            kind: Some(EntryKind::Group),
            ..Filter::default()
        };
        let mut s = Session::new(&options(filter, true, Some(2)), Some(capture()));
        s.header();
        s.apply(state(LinkState::Connected, 1));
        s.apply(MonitorEvent::Traffic(vec![
            message("p:H:all", 10),
            message("p:H:group:room", 11),
            message("p:H:all", 12),
            message("p:H:group:room", 13),
            message("p:H:group:room", 14),
        ]));
        assert_eq!(s.stop, Some(Stop::Count));
        assert_eq!((s.seen, s.shown), (4, 2), "nothing is looked at past --count");
        let text = String::from_utf8(std::mem::take(&mut s.out)).expect("utf8");
        let lines: Vec<TrafficEntry> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a capture entry"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines
                .iter()
                .all(|e| e.kind == EntryKind::Group && e.method.as_deref() == Some("ReceiveMessage"))
        );
        assert_eq!(lines.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(s.exit_code(), EXIT_OK);

        // The capture holds the same lines, readable by the dashboard's reader.
        let mut c = s.capture.take().expect("capture");
        let mut file = Vec::new();
        let header = CaptureHeader {
            switchboard_capture: 1,
            created_ms: 0,
            prefix: "p:".into(),
        };
        serde_json::to_writer(&mut file, &header).expect("header");
        file.push(b'\n');
        file.extend(c.writer.take().expect("writer"));
        let back = capture::read_jsonl(file.as_slice()).expect("read back");
        assert_eq!(back.entries, lines);
        assert_eq!(c.written, 2);
    }

    #[test]
    fn a_lost_link_is_a_gap_line_whatever_the_filter_and_an_open_outage_ends_as_one() {
        let filter = Filter {
            kind: Some(EntryKind::Group),
            ..Filter::default()
        };
        let mut s: Session<Vec<u8>> = Session::new(&options(filter, false, None), None);
        s.apply(state(LinkState::Connecting, 0));
        s.apply(lost(500));
        assert_eq!(s.gaps, 0, "never connected: nothing was missed yet");
        s.apply(state(LinkState::Connected, 1_000));
        s.apply(lost(2_000));
        s.apply(lost(3_000));
        s.apply(state(LinkState::Connected, 5_500));
        assert_eq!((s.gaps, s.gap_ms), (1, 3_500));
        let text = String::from_utf8(std::mem::take(&mut s.out)).expect("utf8");
        assert!(text.contains("gap"), "{text}");
        assert!(text.contains("no data 00:00:02 to 00:00:05 (3.5 s)"), "{text}");
        s.apply(lost(7_000));
        s.close(9_000);
        assert_eq!((s.gaps, s.gap_ms), (2, 5_500));
        s.stop = Some(Stop::Signal);
        assert_eq!(s.exit_code(), EXIT_OK);
        let summary = s.summary(Duration::from_secs(9), 3).join("\n");
        assert!(
            summary.contains("0 messages seen, 0 shown, 3 dropped, 2 gaps (5.5 s without data)"),
            "{summary}"
        );
    }

    #[test]
    fn exit_codes_say_whether_the_tap_did_what_was_asked() {
        let mut s: Session<Vec<u8>> = Session::new(&options(Filter::default(), false, Some(5)), None);
        s.stop = Some(Stop::Duration);
        assert_eq!(s.exit_code(), EXIT_INCOMPLETE, "never connected");
        s.stop = None;
        s.apply(state(LinkState::Connected, 1));
        s.stop = Some(Stop::Duration);
        assert_eq!(s.exit_code(), EXIT_INCOMPLETE, "--count not reached");
        s.count = None;
        assert_eq!(s.exit_code(), EXIT_OK);
        s.stop = Some(Stop::StdoutClosed);
        assert_eq!(s.exit_code(), EXIT_OK);
        s.stop = Some(Stop::Failed("x".into()));
        assert_eq!(s.exit_code(), EXIT_INCOMPLETE);
    }

    #[test]
    fn a_closed_stdout_stops_the_tap() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut s: Session<Vec<u8>> = Session::new(&options(Filter::default(), false, None), None);
        s.header();
        s.write_out(&mut Closed);
        assert_eq!(s.stop, Some(Stop::StdoutClosed));
    }

    #[test]
    fn table_rows_fit_the_width_and_stay_on_one_line() {
        let mut e = message("p:Switchboard.ChatHub:group:room", 45_296_789);
        e.hub = Some("Switchboard.ChatHub".into());
        e.args = Some(format!("[\"ann\",\"{}\\n\"]", "x".repeat(300)));
        let row = table_row(&e, 100);
        assert_eq!(row.chars().count(), 100, "{row}");
        assert!(
            row.starts_with(
                "12:34:56.789 group      Switchboard.ChatHub room         ReceiveMessage [\"ann\""
            ),
            "{row}"
        );
        assert!(row.ends_with('…'));
        e.summary = "line one\nline two\x1b[31m".into();
        e.method = None;
        let row = table_row(&e, 200);
        assert!(!row.contains('\n') && !row.contains('\x1b'), "{row:?}");
        // A narrow terminal still shows a few characters of arguments.
        assert!(table_row(&e, 20).chars().count() >= prefix_width() + MIN_REST - 1);
        assert!(table_header(100).starts_with("TIME (UTC)   KIND"));
        let hub = clip_left("Company.Product.Hubs.ChatHub", W_HUB);
        assert_eq!((hub.chars().count(), hub.starts_with('…')), (W_HUB, true));
        assert!(hub.ends_with(".Hubs.ChatHub"), "{hub}");
    }

    #[test]
    fn the_default_capture_is_named_by_the_utc_time() {
        // 2026-11-26 13:45:41 UTC
        assert_eq!(file_stamp(1_795_700_741_000), "20261126-134541");
        assert_eq!(file_stamp(0), "19700101-000000");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
