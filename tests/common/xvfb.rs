//! A private X server (Xvfb) on the first free display number from :91 (a lock left by a killed
//! server counts as free), killed on drop, for tests that run the real window. Needs `Xvfb` (apt-get install xvfb).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private X server, killed on drop.
pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        for n in 91..200u32 {
            let lock = format!("/tmp/.X{n}-lock");
            let socket = format!("/tmp/.X11-unix/X{n}");
            if Path::new(&lock).exists() || Path::new(&socket).exists() {
                if held_by_a_live_process(&lock) {
                    continue;
                }
                // Left behind by an X server that was killed: the display is free again (Xvfb
                // itself would take over a stale lock, but not our socket check).
                let _ = std::fs::remove_file(&lock);
                let _ = std::fs::remove_file(&socket);
            }
            let child = Command::new("Xvfb")
                .args([
                    format!(":{n}").as_str(),
                    "-screen",
                    "0",
                    "1440x900x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb starts (apt-get install xvfb)");
            let mut x = Xvfb {
                child,
                display: format!(":{n}"),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return x;
                }
                if let Ok(Some(_)) = x.child.try_wait() {
                    break; // lost a race for this display number: try the next
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = x.child.kill();
        }
        panic!("no free X display for Xvfb");
    }
}

/// Whether the X lock file names a process that is still running (a lock that cannot be read is
/// taken as held, to stay clear of a server that is starting).
fn held_by_a_live_process(lock: &str) -> bool {
    match std::fs::read_to_string(lock) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        },
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
