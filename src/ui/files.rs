//! Files: export the captured traffic (JSON Lines, CSV), open a capture to browse offline, save
//! and open a workspace. Dialogs (rfd) and file I/O run on a short-lived thread each, so the UI
//! never waits on them; results come back over a channel polled every frame. One at a time.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use egui::Ui;

use super::Action;
use super::settings::Settings;
use crate::monitor::model::capture;
use crate::monitor::model::workspace::Workspace;
use crate::monitor::model::{Model, TrafficEntry};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// What a background file job produced.
enum Outcome {
    Notice(String),
    Capture {
        name: String,
        entries: Vec<TrafficEntry>,
        note: String,
    },
    Workspace {
        name: String,
        workspace: Workspace,
    },
    /// A PEM file picked for one of the Redis TLS fields.
    Pem {
        field: PemField,
        path: String,
    },
}

/// Which Redis TLS file a picker fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemField {
    Ca,
    Cert,
    Key,
}

/// The background jobs' channel; `busy` while a dialog is open.
#[derive(Default)]
pub struct Files {
    results: Option<mpsc::Receiver<Outcome>>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("busy", &self.results.is_some())
            .finish()
    }
}

/// The File menu's items.
pub fn menu(ui: &mut Ui, offline: bool, actions: &mut Vec<Action>) {
    if ui.button("Export traffic as JSON Lines…").clicked() {
        actions.push(Action::Export(Format::JsonLines));
        ui.close();
    }
    if ui.button("Export traffic as CSV…").clicked() {
        actions.push(Action::Export(Format::Csv));
        ui.close();
    }
    if ui.button("Open capture…").clicked() {
        actions.push(Action::OpenCapture);
        ui.close();
    }
    if offline && ui.button("Back to live traffic").clicked() {
        actions.push(Action::CloseCapture);
        ui.close();
    }
    ui.separator();
    if ui.button("Save workspace…").clicked() {
        actions.push(Action::SaveWorkspace);
        ui.close();
    }
    if ui.button("Open workspace…").clicked() {
        actions.push(Action::OpenWorkspace);
        ui.close();
    }
}

/// A file dialog that "returns" faster than this never opened: nobody cancels in 300 ms.
const NO_DIALOG: std::time::Duration = std::time::Duration::from_millis(300);

/// Where an export goes when no dialog can be shown: the working directory, named by the time.
pub fn default_export_path(format: Format) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("switchboard-capture-{secs}.{}", format.extension()))
}

/// Writes entries to `path` in `format`. Returns how many were written.
pub fn write_capture<'a>(
    path: &Path,
    format: Format,
    entries: impl IntoIterator<Item = &'a TrafficEntry>,
) -> Result<u64, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let written = match format {
        Format::JsonLines => capture::write_jsonl(entries.into_iter(), &mut w),
        Format::Csv => capture::write_csv(entries.into_iter(), &mut w),
    }
    .map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(written)
}

/// Reads a JSON Lines capture: (entries, a note on what was skipped).
pub fn read_capture(path: &Path) -> Result<(Vec<TrafficEntry>, String), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let capture =
        capture::read_jsonl(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))?;
    let note = if capture.skipped > 0 {
        format!(" ({} past the limit skipped)", capture.skipped)
    } else {
        String::new()
    };
    Ok((capture.entries, note))
}

/// Reads a workspace file.
pub fn read_workspace(path: &Path) -> Result<Workspace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Workspace::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl Files {
    /// Runs `job` on its own thread, unless one is still running (one dialog at a time).
    fn spawn(&mut self, job: impl FnOnce() -> Option<Outcome> + Send + 'static) {
        if self.results.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        self.results = Some(rx);
        let spawned = std::thread::Builder::new()
            .name("switchboard-file".into())
            .spawn(move || {
                let outcome = job().unwrap_or(Outcome::Notice("no file chosen".to_string()));
                let _ = tx.send(outcome);
            });
        if let Err(e) = spawned {
            self.results = None;
            tracing::warn!("cannot start the file thread: {e}");
        }
    }

    /// Asks where to save, then writes the traffic kept now. The UI thread only takes a shared
    /// snapshot (one reference count per entry); the file thread serializes it, so capture goes on.
    pub fn export(&mut self, format: Format, model: &Model) {
        let entries = model.traffic.snapshot();
        self.spawn(move || {
            let asked = std::time::Instant::now();
            let chosen = rfd::FileDialog::new()
                .set_file_name(format!("switchboard-capture.{}", format.extension()))
                .add_filter(format.extension(), &[format.extension()])
                .save_file();
            let (path, fallback) = match chosen {
                Some(path) => (path, ""),
                // No dialog could open (no xdg-desktop-portal, say): rather than lose the export,
                // write it to the working directory and say so. A person who cancels takes longer.
                None if asked.elapsed() < NO_DIALOG => {
                    (default_export_path(format), " (no file dialog is available here)")
                }
                None => return None,
            };
            Some(Outcome::Notice(
                match write_capture(&path, format, entries.iter().map(|e| &**e)) {
                    Ok(n) => format!("exported {n} messages to {}{fallback}", path.display()),
                    Err(e) => e,
                },
            ))
        });
    }

    pub fn open_capture(&mut self) {
        self.spawn(|| {
            let path = rfd::FileDialog::new()
                .add_filter("JSON Lines capture", &["jsonl", "json"])
                .pick_file()?;
            Some(match read_capture(&path) {
                Ok((entries, note)) => Outcome::Capture {
                    name: file_name(&path),
                    entries,
                    note,
                },
                Err(e) => Outcome::Notice(e),
            })
        });
    }

    pub fn save_workspace(&mut self, workspace: Workspace) {
        self.spawn(move || {
            let path = rfd::FileDialog::new()
                .set_file_name("switchboard-workspace.json")
                .add_filter("workspace", &["json"])
                .save_file()?;
            Some(Outcome::Notice(
                match std::fs::write(&path, workspace.to_json()) {
                    Ok(()) => format!("workspace saved to {} (no password)", path.display()),
                    Err(e) => format!("cannot write {}: {e}", path.display()),
                },
            ))
        });
    }

    pub fn open_workspace(&mut self) {
        self.spawn(|| {
            let path = rfd::FileDialog::new()
                .add_filter("workspace", &["json"])
                .pick_file()?;
            Some(match read_workspace(&path) {
                Ok(workspace) => Outcome::Workspace {
                    name: file_name(&path),
                    workspace,
                },
                Err(e) => Outcome::Notice(e),
            })
        });
    }

    /// Asks for a PEM file for a Redis TLS field (the path is kept, never the file's content).
    pub fn pick_pem(&mut self, field: PemField) {
        self.spawn(move || {
            let path = rfd::FileDialog::new()
                .add_filter("PEM", &["pem", "crt", "key", "cer"])
                .pick_file()?;
            Some(Outcome::Pem {
                field,
                path: path.display().to_string(),
            })
        });
    }

    /// How soon to look for a result again: while a dialog or a file operation runs (its result
    /// comes over a channel, which does not wake the window), a few times a second.
    pub fn poll_in(&self) -> Option<std::time::Duration> {
        self.results
            .is_some()
            .then_some(std::time::Duration::from_millis(250))
    }

    /// Applies what a finished job produced; returns notices, and whether settings changed (a
    /// workspace was opened: the caller reconnects).
    pub fn poll(&mut self, model: &mut Model, settings: &mut Settings) -> (Vec<String>, bool) {
        let Some(rx) = &self.results else {
            return (Vec::new(), false);
        };
        let outcome = match rx.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Empty) => return (Vec::new(), false),
            Err(mpsc::TryRecvError::Disconnected) => {
                Outcome::Notice("the file dialog ended unexpectedly".into())
            }
        };
        self.results = None;
        match outcome {
            Outcome::Notice(text) => (vec![text], false),
            Outcome::Capture { name, entries, note } => {
                let n = entries.len();
                model.traffic.load(entries, name.clone());
                (vec![format!("opened capture {name}: {n} messages{note}")], false)
            }
            Outcome::Workspace { name, workspace } => {
                settings.apply_workspace(workspace);
                (vec![format!("opened workspace {name}")], true)
            }
            Outcome::Pem { field, path } => {
                let options = &mut settings.redis_options;
                match field {
                    PemField::Ca => options.ca = path,
                    PemField::Cert => options.cert = path,
                    PemField::Key => options.key = path,
                }
                (Vec::new(), false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::decode;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("switchboard-files-{}-{name}", std::process::id()))
    }

    #[test]
    fn an_exported_capture_opens_again_byte_for_byte() {
        let entries: Vec<TrafficEntry> = (0..3)
            .map(|i| decode::decode("", "Hub:all", format!("payload {i}").as_bytes(), 1_000 + i))
            .collect();
        let path = temp("roundtrip.jsonl");
        assert_eq!(write_capture(&path, Format::JsonLines, &entries).unwrap(), 3);
        let (read, note) = read_capture(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(note, "");
        assert_eq!(read.len(), 3);
        for (a, b) in entries.iter().zip(&read) {
            assert_eq!(a.payload, b.payload);
            assert_eq!(a.channel, b.channel);
            assert_eq!(a.at_ms, b.at_ms);
        }
        let csv = temp("export.csv");
        assert_eq!(write_capture(&csv, Format::Csv, &entries).unwrap(), 3);
        let text = std::fs::read_to_string(&csv).unwrap();
        let _ = std::fs::remove_file(&csv);
        assert_eq!(text.lines().count(), 4, "a header and one line per message");
    }

    #[test]
    fn a_corrupt_capture_is_a_readable_error() {
        let path = temp("corrupt.jsonl");
        std::fs::write(&path, "{\"at_ms\": 1}\nnot json at all\n").unwrap();
        let err = read_capture(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("corrupt.jsonl") && err.contains("line"), "{err}");
        let err = read_capture(Path::new("/nonexistent/capture.jsonl")).unwrap_err();
        assert!(err.contains("cannot open"), "{err}");
    }

    #[test]
    fn a_workspace_file_never_holds_a_password() {
        let mut settings = Settings::default();
        settings.set_redis_url("redis://:hunter2@10.0.0.5:6379/1");
        settings.add_node(crate::monitor::NodeTarget {
            hub_url: "http://h:1/chat".into(),
            monitor_url: None,
        });
        let path = temp("workspace.json");
        std::fs::write(&path, settings.workspace().to_json()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"));
        let back = read_workspace(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.redis_url, "redis://10.0.0.5:6379/1");
        assert_eq!(back.nodes.len(), 1);
        std::fs::write(&path, "[1, 2").unwrap();
        assert!(read_workspace(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
