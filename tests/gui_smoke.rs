//! The dashboard in a real window: `switchboard demo` runs under Xvfb for a few seconds, serves its
//! chat pages, draws something (a screenshot taken with xwd is not blank), and closes cleanly.
//! Needs `Xvfb` and `xwd` (the README's test command installs them).
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[path = "common/xvfb.rs"]
mod xvfb;
use xvfb::Xvfb;

/// The pixels of an XWD file (xwd's format: a big-endian header, a color map, then rows), as
/// 0xRRGGBB values sampled on a grid.
fn xwd_samples(data: &[u8]) -> Vec<u32> {
    let field = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (header_size, width, height) = (field(0), field(4), field(5));
    let (byte_order, bits_per_pixel, bytes_per_line, ncolors) = (field(7), field(11), field(12), field(19));
    assert_eq!(
        bits_per_pixel, 32,
        "a 24-bit Xvfb screen is stored as 32 bits per pixel"
    );
    let pixels = header_size + ncolors * 12;
    assert!(
        data.len() >= pixels + height * bytes_per_line,
        "the XWD file is complete"
    );
    let mut out = Vec::new();
    for y in (0..height).step_by(7) {
        for x in (0..width).step_by(7) {
            let at = pixels + y * bytes_per_line + x * 4;
            let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
            let v = if byte_order == 0 {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            };
            out.push(v & 0x00ff_ffff);
        }
    }
    out
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

#[test]
fn the_demo_opens_a_window_that_draws_and_closes_cleanly() {
    let x = Xvfb::start();
    let mut demo = Command::new(BIN)
        .args(["demo", "--exit-after", "12", "--clients", "3", "--rate", "20"])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");

    // It says where its nodes are, before the window opens.
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut pages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pages.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && let Some(page) = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") && w.ends_with('/'))
        {
            pages.push(page.to_string());
        }
    }
    assert_eq!(pages.len(), 2, "two demo nodes announced on stdout");
    for page in &pages {
        let response = http_get(page);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{page} serves the chat page: {response:.80}"
        );
    }

    // Let it run, then look at the screen.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        demo.try_wait().unwrap().is_none(),
        "the demo is still running after 6 s"
    );
    let shot: PathBuf = std::env::temp_dir().join(format!("switchboard-smoke-{}.xwd", std::process::id()));
    let status = Command::new("xwd")
        .args(["-root", "-silent", "-display", &x.display, "-out"])
        .arg(&shot)
        .status()
        .expect("xwd runs (apt-get install x11-apps)");
    assert!(status.success());
    let data = std::fs::read(&shot).unwrap();
    let _ = std::fs::remove_file(&shot);
    let samples = xwd_samples(&data);
    let mut distinct = samples.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let background = samples.iter().filter(|p| **p == 0).count();
    assert!(
        distinct.len() > 20,
        "the screenshot has {} colors: the window drew nothing",
        distinct.len()
    );
    assert!(
        background * 2 < samples.len(),
        "most of the screen is covered by the window"
    );

    // --exit-after closes the window; the demo stops its nodes and exits 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            panic!("the demo did not exit after --exit-after");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the demo exits cleanly: {status}");
    for page in &pages {
        let refused =
            std::net::TcpStream::connect(page.trim_start_matches("http://").trim_end_matches('/')).is_err();
        assert!(refused, "{page} is closed after exit");
    }
}
