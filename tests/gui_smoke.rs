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

/// The pixels of an XWD file (xwd's format: a big-endian header, a color map, then rows), as raw
/// pixel values sampled on a grid (black is 0 at any depth).
fn xwd_samples(data: &[u8]) -> Vec<u32> {
    let field = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (header_size, depth, width, height) = (field(0), field(3), field(4), field(5));
    let (byte_order, bits_per_pixel, bytes_per_line, ncolors) = (field(7), field(11), field(12), field(19));
    // Xvfb 21 stores a 24-bit screen as 32 bits per pixel; other X servers pack it into 24.
    assert!(
        matches!(bits_per_pixel, 16 | 24 | 32) && (1..=bits_per_pixel).contains(&depth),
        "an XWD image of whole bytes per pixel, not {bits_per_pixel} bits at depth {depth}"
    );
    let bytes_per_pixel = bits_per_pixel / 8;
    let pixels = header_size + ncolors * 12;
    assert!(
        data.len() >= pixels + height * bytes_per_line && bytes_per_line >= width * bytes_per_pixel,
        "the XWD file is complete"
    );
    let depth_mask = u32::MAX >> (32 - depth);
    let mut out = Vec::new();
    for y in (0..height).step_by(7) {
        for x in (0..width).step_by(7) {
            let at = pixels + y * bytes_per_line + x * bytes_per_pixel;
            let bytes = &data[at..at + bytes_per_pixel];
            // byte_order 0 is LSBFirst: the first byte is the least significant.
            let v = if byte_order == 0 {
                bytes.iter().rev().fold(0u32, |v, &b| v << 8 | u32::from(b))
            } else {
                bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b))
            };
            out.push(v & depth_mask);
        }
    }
    out
}

/// The XWD parser reads packed 24-bit and padded 32-bit pixels in either byte order.
#[test]
fn xwd_samples_reads_24_and_32_bit_pixels() {
    let image = |bpp: usize, order: u32, pixel: &[u8]| {
        let mut header = [0u32; 25];
        header[0] = 100; // header size, no window name
        header[3] = 24; // depth
        header[4] = 1; // width
        header[5] = 1; // height
        header[7] = order;
        header[11] = bpp as u32;
        header[12] = (bpp / 8) as u32; // bytes per line
        let mut data: Vec<u8> = header.iter().flat_map(|f| f.to_be_bytes()).collect();
        data.extend_from_slice(pixel);
        data
    };
    assert_eq!(xwd_samples(&image(32, 0, &[0x33, 0x22, 0x11, 0xff])), [0x11_2233]);
    assert_eq!(xwd_samples(&image(32, 1, &[0xff, 0x11, 0x22, 0x33])), [0x11_2233]);
    assert_eq!(xwd_samples(&image(24, 0, &[0x33, 0x22, 0x11])), [0x11_2233]);
    assert_eq!(xwd_samples(&image(24, 1, &[0x11, 0x22, 0x33])), [0x11_2233]);
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
