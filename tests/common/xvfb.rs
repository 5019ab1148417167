//! A private X server (Xvfb) on a display number it picks itself (`-displayfd`: the first one with no
//! live server, so no race with other X servers and no guessing at lock files), stopped on drop.
//! Needs `Xvfb` (apt-get install xvfb).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private X server, stopped on drop.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    #[allow(dead_code)] // not every test binary that includes this file uses both
    pub fn start() -> Xvfb {
        Xvfb::start_sized(1440, 900)
    }

    /// A private X server with a screen of `width` × `height` pixels.
    #[allow(dead_code)]
    pub fn start_sized(width: u32, height: u32) -> Xvfb {
        let screen = format!("{width}x{height}x24");
        let mut child = Command::new("Xvfb")
            // Xvfb writes the display number it took, and a newline, to fd 1 once it listens.
            .args(["-displayfd", "1", "-screen", "0", &screen, "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts (apt-get install xvfb)");
        let mut stdout = child.stdout.take().expect("Xvfb stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut number = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdout.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                number.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&number).trim().to_string());
        });
        let mut x = Xvfb {
            child,
            display: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                x.display = format!(":{n}");
                x
            }
            other => panic!("Xvfb did not say which display it took: {other:?}"),
        }
    }
}

impl Drop for Xvfb {
    /// SIGTERM first, so Xvfb removes its lock file and socket; SIGKILL if it lingers.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which `wait` has not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
