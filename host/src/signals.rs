//! SIGINT and SIGTERM: what tailor must undo before it exits, and the flag
//! a training loop polls to stop between steps.
//!
//! A handler thread (`signal-hook`'s iterator, so nothing runs in signal
//! context) owns the exit. While a command has asked for a graceful stop
//! ([`set_graceful`]), the first signal only raises [`interrupted`]; the
//! command finishes its step, saves and exits itself. Otherwise, or on a
//! second signal, the thread kills registered children, removes registered
//! temp files and directories, and exits with 128 + the signal number, as a
//! shell reports a process killed by it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, Once};

use signal_hook::consts::{SIGINT, SIGTERM};

static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
static GRACEFUL: AtomicBool = AtomicBool::new(false);
static LIVE: Mutex<Live> = Mutex::new(Live { temps: Vec::new(), dirs: Vec::new(), children: Vec::new() });

/// What exists only while tailor runs.
struct Live {
    temps: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    children: Vec<u32>,
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the handler thread (once; later calls do nothing).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            for sig in signals.forever() {
                let first = INTERRUPTED.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire).is_ok();
                if first && GRACEFUL.load(Ordering::Acquire) {
                    continue;
                }
                clean_up();
                std::process::exit(exit_code(sig));
            }
        });
    });
}

/// The shell's status for a process stopped by `sig` (130 for SIGINT, 143
/// for SIGTERM).
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// The signal received, if any (SIGINT = 2, SIGTERM = 15).
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::Acquire) {
        0 => None,
        s => Some(s),
    }
}

/// While on, the first signal only sets [`interrupted`].
pub fn set_graceful(on: bool) {
    GRACEFUL.store(on, Ordering::Release);
}

/// Kills registered children and removes registered files and directories.
pub fn clean_up() {
    let mut l = live();
    for pid in l.children.drain(..) {
        // SAFETY: kill(2) has no memory effects; the pid is our own child,
        // not yet reaped (unregistered before `wait`).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    for t in l.temps.drain(..) {
        let _ = std::fs::remove_file(t);
    }
    for d in l.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(d);
    }
}

pub fn add_temp(p: &Path) {
    live().temps.push(p.to_path_buf());
}

pub fn remove_temp(p: &Path) {
    live().temps.retain(|t| t != p);
}

pub fn add_dir(p: &Path) {
    live().dirs.push(p.to_path_buf());
}

pub fn remove_dir(p: &Path) {
    live().dirs.retain(|t| t != p);
}

pub fn add_child(pid: u32) {
    live().children.push(pid);
}

pub fn remove_child(pid: u32) {
    live().children.retain(|&c| c != pid);
}
