//! Presenter mode on the screens people present on: `switchboard demo --nodes 3 --presenter` in
//! a real window under Xvfb at 1024×768, 1280×720, 1440×900 and 1920×1080. At each size it takes
//! three screenshots (the first look, after a test message sent with the T key, and with Redis
//! stopped with the B key), reads each back with tesseract, and checks what the audience sees:
//! the story (the latest messages, the test message, the outage sentence) and nothing of the
//! internals (no probe, no trace marker, no PUBSUB, no "…" cut). The PNG files stay in
//! `target/presenter-screens/` for people to look at.
//! Needs Xvfb, xwd, xdotool and tesseract (the README's test command installs them).
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/xvfb.rs"]
mod xvfb;
#[path = "common/xwd.rs"]
mod xwd;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// How long one screen may take to show what a step waits for (a cold debug build on a shared
/// machine draws its first frame in a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);

/// Words that must never reach the audience.
const INTERNALS: [&str; 5] = ["probe", "sb-trace", "PUBSUB", "NUMSUB", "dropped"];

/// The demo in a window, killed on drop.
struct Demo {
    child: Child,
    _state: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._state);
    }
}

fn start_demo(display: &str, tag: &str) -> Demo {
    let state = std::env::temp_dir().join(format!("sb-presenter-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let child = Command::new(BIN)
        // A slow chat (one message every 2 s) keeps the test message among the latest long
        // enough for a screenshot and tesseract to catch it.
        .args([
            "demo",
            "--nodes",
            "3",
            "--presenter",
            "--backplane",
            "redis",
            "--rate",
            "0.5",
        ])
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_CONFIG_HOME", &state)
        .env("XDG_DATA_HOME", &state)
        .env("XDG_STATE_HOME", &state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    Demo { child, _state: state }
}

/// What tesseract reads on a screenshot (one text, lines joined by newlines), in lower case.
fn read_text(png: &std::path::Path) -> String {
    let out = Command::new("tesseract")
        // One thread each: the four sizes already share the machine's cores.
        .env("OMP_THREAD_LIMIT", "1")
        .arg(png)
        .args(["stdout", "--psm", "11"])
        .stderr(Stdio::null())
        .output()
        .expect("tesseract runs (apt-get install tesseract-ocr)");
    assert!(out.status.success(), "tesseract read {}", png.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Takes screenshots until the text read on one satisfies `done`; saves the last as `name`.
fn shoot_until(display: &str, path: &std::path::Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        let shot = xwd::take(display);
        shot.save_png(path);
        // Lower case: tesseract sometimes reads a capital at the start of a caption.
        let text = read_text(path).to_lowercase();
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < until,
            "{}: waited {DEADLINE:?} for {what}; the screen read:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Presses `key` in the demo's window.
fn press(display: &str, key: &str) {
    let search = Command::new("xdotool")
        .args(["search", "--name", "Switchboard"])
        .env("DISPLAY", display)
        .output()
        .expect("xdotool runs (apt-get install xdotool)");
    let window = String::from_utf8_lossy(&search.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!window.is_empty(), "the demo's window is found");
    // Focus first, then a real key press (XTEST) to the focused window: a key sent to a window
    // that is not focused yet (XSendEvent) is ignored.
    let run = |args: &[&str]| {
        let status = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", display)
            .status()
            .unwrap();
        assert!(status.success(), "xdotool {args:?}");
    };
    run(&["windowfocus", "--sync", &window]);
    std::thread::sleep(Duration::from_millis(300));
    run(&["key", key]);
}

/// Nothing of the internals, and nothing cut, on a screen.
fn audience_only(name: &str, text: &str) {
    for word in INTERNALS {
        assert!(
            !text.contains(&word.to_lowercase()),
            "{name}: the audience sees {word:?}:\n{text}"
        );
    }
    assert!(
        !text.contains('…') && !text.contains("..."),
        "{name}: something is cut with an ellipsis:\n{text}"
    );
}

/// One screen size: the three screenshots, each read back and checked.
fn one_size(width: u32, height: u32) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../presenter-screens");
    let x = xvfb::Xvfb::start_sized(width, height);
    let tag = format!("{width}x{height}");
    let _demo = start_demo(&x.display, &tag);

    let first = dir.join(format!("{tag}-1-first-look.png"));
    let text = shoot_until(&x.display, &first, "chat messages from the nodes", |t| {
        t.contains("latest messages") && t.contains("on node-") && t.contains("nodes up")
    });
    audience_only(&tag, &text);
    assert!(
        text.contains("chat clients") && text.contains("messages/s"),
        "{tag}: the counters:\n{text}"
    );
    // Full screen: the window covers the bottom right corner (Xvfb's background is black).
    let shot = xwd::take(&x.display);
    assert_ne!(
        shot.pixel(shot.width - 3, shot.height - 3),
        0,
        "{tag}: presenter mode fills the screen"
    );

    press(&x.display, "t");
    let sent = dir.join(format!("{tag}-2-test-message.png"));
    let text = shoot_until(&x.display, &sent, "the test message among the latest", |t| {
        t.contains("hello, audience")
    });
    audience_only(&tag, &text);

    press(&x.display, "b");
    let down = dir.join(format!("{tag}-3-redis-stopped.png"));
    let text = shoot_until(&x.display, &down, "the outage sentence and its marker", |t| {
        // The sentence is white on red, which tesseract reads less well than the rest: any of its
        // parts will do (tests/presenter_kittest.rs checks its exact words).
        ["each node", "deliver", "own clients"]
            .iter()
            .any(|w| t.contains(w))
            && t.contains("went down")
    });
    audience_only(&tag, &text);
    println!(
        "presenter screens at {tag}: {}, {}, {}",
        first.display(),
        sent.display(),
        down.display()
    );
}

// The four sizes run side by side (each demo idles between its chat messages).
#[test]
fn presenter_at_1024x768() {
    one_size(1024, 768);
}

#[test]
fn presenter_at_1280x720() {
    one_size(1280, 720);
}

#[test]
fn presenter_at_1440x900() {
    one_size(1440, 900);
}

#[test]
fn presenter_at_1920x1080() {
    one_size(1920, 1080);
}
