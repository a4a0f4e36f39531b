//! Where a command may write: every file tailor writes goes through
//! [`write`], which refuses what would lose a user's file.
//!
//! - Only a new path or an existing regular file is written; through a
//!   symlink the target is replaced and the link kept.
//! - Never one of the command's inputs: compared by device and inode, so
//!   another name, a hard link or a symlink to an input is caught too.
//! - Never a device, FIFO, socket or directory (`--out /dev/null` once
//!   replaced the system's `/dev/null` with a regular file).
//!
//! The bytes go to `.NAME.PID.tmp` beside the target, are synced, then
//! renamed over it; the temp file is removed on any error and, being
//! registered with [`crate::signals`], on SIGINT/SIGTERM. Only `kill -9`
//! (or a crash) leaves one behind; the next write to that directory removes
//! the temp files of processes that no longer exist.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::signals;

/// The file really written for `path`: the path itself, or a symlink's
/// target (which may not exist yet).
pub fn target(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    // A bounded walk: a loop of links ends in an error, not a hang.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p).with_context(|| format!("reading the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// Checks that `path` may be written by a command reading `inputs`;
/// returns the file to write (see [`target`]).
pub fn check(path: &Path, inputs: &[PathBuf]) -> Result<PathBuf> {
    if path.file_name().is_none() {
        bail!("{}: not a file path", path.display());
    }
    let real = target(path)?;
    let meta = match std::fs::metadata(&real) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(real),
        Err(e) => return Err(e).with_context(|| format!("output {}", path.display())),
    };
    if !meta.is_file() {
        bail!("output {}: {}, not a regular file; refusing to replace it", path.display(), kind(&meta));
    }
    for i in inputs {
        if let Ok(im) = std::fs::metadata(i) {
            if (im.dev(), im.ino()) == (meta.dev(), meta.ino()) {
                bail!(
                    "output {} is the input {}; writing it would destroy the input, choose another --out",
                    path.display(),
                    i.display()
                );
            }
        }
    }
    Ok(real)
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

fn temp_beside(real: &Path) -> Result<PathBuf> {
    let dir = real.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = real.file_name().with_context(|| format!("{}: not a file path", real.display()))?;
    Ok(dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

/// The PID in a temp file name of [`temp_beside`]'s form (`.NAME.PID.tmp`).
fn temp_pid(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, pid) = rest.rsplit_once('.')?;
    if name.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether a process `pid` exists (signal 0 checks without sending; EPERM
/// means it exists under another user).
fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temp files in `dir` left by tailor processes that are gone
/// (killed with SIGKILL mid-write). Best effort: a file that cannot be
/// removed stays, and another live process's temp file is never touched.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else { continue };
        if pid as u32 != std::process::id() && !alive(pid) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Checks `path` as [`check`] does and that its directory takes a new file
/// (created and removed), so a long run fails before it starts rather than
/// at its first save.
pub fn probe(path: &Path, inputs: &[PathBuf]) -> Result<()> {
    let real = check(path, inputs)?;
    let tmp = temp_beside(&real)?;
    signals::add_temp(&tmp);
    let res = std::fs::File::create(&tmp);
    let _ = std::fs::remove_file(&tmp);
    signals::remove_temp(&tmp);
    res.map(drop).with_context(|| format!("output {}: cannot create a file beside it", path.display()))
}

/// Writes `bytes` to `path` atomically, after [`check`].
pub fn write(path: &Path, bytes: &[u8], inputs: &[PathBuf]) -> Result<()> {
    let real = check(path, inputs)?;
    let tmp = temp_beside(&real)?;
    sweep_stale(tmp.parent().unwrap_or(Path::new(".")));
    signals::add_temp(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &real)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    signals::remove_temp(&tmp);
    res.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_regular_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.ckpt");
        write(&p, b"one", &[]).unwrap();
        write(&p, b"two", &[]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn writes_through_a_symlink_to_its_target() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.ckpt");
        std::fs::write(&real, b"old").unwrap();
        let link = d.path().join("link.ckpt");
        std::os::unix::fs::symlink("real.ckpt", &link).unwrap();
        write(&link, b"new", &[]).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link: its target is created.
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink("sub/made.q8", &dangling).unwrap();
        write(&dangling, b"x", &[]).unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/made.q8")).unwrap(), b"x");
    }

    #[test]
    fn refuses_special_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let e = write(Path::new("/dev/null"), b"x", &[]).unwrap_err().to_string();
        assert!(e.contains("/dev/null") && e.contains("a device"), "{e}");
        let e = write(d.path(), b"x", &[]).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = d.path().join("f");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = probe(&fifo, &[]).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn refuses_an_input_by_inode_not_name() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("a.ckpt");
        std::fs::write(&input, b"model").unwrap();
        let hard = d.path().join("b.ckpt");
        std::fs::hard_link(&input, &hard).unwrap();
        let link = d.path().join("c.ckpt");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let via_dots = d.path().join(".").join("a.ckpt");
        for out in [&input, &hard, &link, &via_dots] {
            let e = write(out, b"x", std::slice::from_ref(&input)).unwrap_err().to_string();
            assert!(e.contains("is the input"), "{}: {e}", out.display());
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"model");
        write(&d.path().join("other.ckpt"), b"x", &[input]).unwrap();
    }

    /// A `kill -9` mid-write leaves `.NAME.PID.tmp`: the next write to the
    /// directory removes those of dead processes, never a live one's.
    #[test]
    fn the_next_write_sweeps_temp_files_of_dead_processes() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let parent = std::os::unix::process::parent_id();
        let stale = [format!(".m.ckpt.{dead}.tmp"), format!(".other.q8.{dead}.tmp")];
        let kept = [
            format!(".m.ckpt.{parent}.tmp"),
            format!("m.ckpt.{dead}.tmp"),
            format!(".m.ckpt.{dead}x.tmp"),
            format!(".{dead}.tmp"),
        ];
        for n in stale.iter().chain(&kept) {
            std::fs::write(d.path().join(n), b"partial").unwrap();
        }
        write(&d.path().join("new.ckpt"), b"x", &[]).unwrap();
        for n in &stale {
            assert!(!d.path().join(n).exists(), "{n} of a dead process was left");
        }
        for n in &kept {
            assert!(d.path().join(n).exists(), "{n} was removed");
        }
        assert_eq!(temp_pid(".m.ckpt.123.tmp"), Some(123));
        assert_eq!(temp_pid(".m.ckpt.0.tmp"), None);
    }

    #[test]
    fn probe_fails_early_on_an_unwritable_place() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        // A path under a regular file can never be created.
        let e = probe(&file.join("m.ckpt"), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("plain"), "{e:#}");
        probe(&d.path().join("new/m.ckpt"), &[]).unwrap();
        assert_eq!(std::fs::read_dir(d.path().join("new")).unwrap().count(), 0);
    }
}
