//! The dashboard in a real window: `switchboard demo` runs under Xvfb for a few seconds, serves its
//! chat pages, draws something (a screenshot taken with xwd is not blank), and closes cleanly.
//! Needs `Xvfb` and `xwd` (the README's test command installs them).
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[path = "common/xvfb.rs"]
mod xvfb;
#[path = "common/xwd.rs"]
mod xwd;
use xvfb::Xvfb;

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
                .find(|w| w.starts_with("http://") && (w.ends_with('/') || w.contains("/#access_token=")))
        {
            // The demo's nodes require tokens: the printed link carries one after `#`.
            assert!(
                page.contains("/#access_token=ey"),
                "a chat-page link with a token: {line}"
            );
            pages.push(page.split_once('#').map_or(page, |(base, _)| base).to_string());
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
    let shot = xwd::take(&x.display);
    let samples: Vec<u32> = (0..shot.height)
        .step_by(7)
        .flat_map(|y| (0..shot.width).step_by(7).map(move |x| (x, y)))
        .map(|(x, y)| shot.pixel(x, y))
        .collect();
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
