//! Who holds what, so that runs that overlap never undo each other.
//!
//! - [`Owner`]: this process as a label value (`<host id>:<pid>:<boot id>-<start ticks>`),
//!   put on every container the tool creates, so `clean` can tell a live run's container
//!   from a leftover: on this host the pid and its start time are checked in `/proc` (a
//!   reused pid has another start time, a reboot another boot id); another host's owner
//!   cannot be checked and is treated as live while its container runs.
//! - [`RunLock`]: an advisory lock per engine and recipe in the state folder
//!   (`$XDG_STATE_HOME/rdna1-images/locks/`), held by every command that makes, tags,
//!   pushes or removes a recipe's images (build, smoke, push, pull, promote, clean). A
//!   second run of the same recipe on the same engine waits and says for whom; runs of
//!   different recipes go side by side. The kernel drops the lock when its holder exits,
//!   however it ends, so a crashed run never blocks the next. It is per host: runs on two
//!   hosts that share one engine do not see each other's locks (the README says so).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// This host's id: `/etc/machine-id`, else the host name.
fn host_id() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    read("/etc/machine-id")
        .or_else(|| read("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "unknown-host".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect()
}

/// The start of a process: this boot's id and its start time in clock ticks since boot
/// (`/proc/<pid>/stat` field 22), or None when there is no such process.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks = after.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot: String = boot.trim().chars().filter(|c| *c != '-').take(12).collect();
    Some(format!("{boot}-{ticks}"))
}

/// Whether a process of this pid runs on this host now (in this pid namespace).
pub fn pid_is_running(pid: u32) -> bool {
    process_start(pid).is_some()
}

/// A process that owns something on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub start: String,
}

/// Whether an owner is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Gone,
    /// On another host (or unreadable): cannot be checked from here.
    Unknown,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: host_id(),
            pid,
            start: process_start(pid).unwrap_or_default(),
        }
    }

    /// The label value.
    pub fn label(&self) -> String {
        format!("{}:{}:{}", self.host, self.pid, self.start)
    }

    /// Reads a label value; None when it is not one of ours.
    pub fn parse(v: &str) -> Option<Owner> {
        let mut it = v.splitn(3, ':');
        let host = it.next()?.to_string();
        let pid = it.next()?.parse().ok()?;
        let start = it.next()?.to_string();
        (!host.is_empty()).then_some(Owner { host, pid, start })
    }

    /// Alive when this host's process `pid` exists and started when the label says.
    pub fn liveness(&self) -> Liveness {
        if self.host != host_id() {
            return Liveness::Unknown;
        }
        match process_start(self.pid) {
            Some(s) if s == self.start => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }
}

/// The folder of the run locks: `$XDG_STATE_HOME/rdna1-images/runs`, else
/// `~/.local/state/rdna1-images/runs`, else a folder in the temp dir.
pub fn lock_dir() -> PathBuf {
    crate::state_home::folder("runs")
        .unwrap_or_else(|| std::env::temp_dir().join("rdna1-images-runs"))
}

/// The lock file of one recipe on one engine: the engine's address is hashed (it may hold
/// `/` and `:`); the recipe name is a validated name (letters, digits, `-`, `_`, `.`).
pub fn lock_path(dir: &Path, engine: &str, recipe: &str) -> PathBuf {
    let h = Sha256::digest(engine.as_bytes());
    let h: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
    let safe: String = recipe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{h}-{safe}.lock"))
}

/// An advisory lock on one recipe of one engine, held until [`RunLock::release`]d. Dropped
/// without it (an error returned with `?`, a run cancelled by a signal) it stays held until
/// the process exits: the guards of such a run remove its leftovers only after the
/// command's future is gone (`main` drains them), and a run that took the lock in between
/// could have made the very image they remove (same inputs, same image id).
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
    pub path: PathBuf,
}

/// Locks dropped without a release: held until the process exits.
fn parked() -> std::sync::MutexGuard<'static, Vec<File>> {
    static PARKED: std::sync::Mutex<Vec<File>> = std::sync::Mutex::new(Vec::new());
    PARKED.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a holder wrote into its lock file: `pid <n> started <start>: <command>`.
fn holder_line(command: &str) -> String {
    let me = Owner::current();
    format!("pid {} ({}): {command}", me.pid, me.label())
}

/// Who holds a lock, from its file (empty while the holder is writing it).
fn holder_of(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another run (it is starting)".into()
    } else {
        s.to_string()
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

impl RunLock {
    /// Takes the lock of `recipe` on `engine` for `command`, waiting while another run
    /// holds it; `waiting` is told once whom it waits for. Polls (every 200 ms), so a
    /// cancelled run stops waiting at once.
    pub async fn acquire(
        engine: &str,
        recipe: &str,
        command: &str,
        waiting: &mut (dyn FnMut(&str) + Send),
    ) -> std::io::Result<RunLock> {
        let path = lock_path(&lock_dir(), engine, recipe);
        let mut said = false;
        loop {
            match Self::try_acquire_at(&path, command)? {
                Ok(l) => return Ok(l),
                Err(holder) => {
                    if !said {
                        said = true;
                        waiting(&format!(
                            "another run of {recipe} on this engine holds it: waiting for {holder} (lock {})",
                            path.display()
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Takes the lock at `path` if free: Ok(Ok(lock)), or Ok(Err(who holds it)).
    pub fn try_acquire_at(path: &Path, command: &str) -> std::io::Result<Result<RunLock, String>> {
        let mut file = open(path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", holder_line(command))?;
                file.flush()?;
                Ok(Ok(RunLock {
                    file: Some(file),
                    path: path.to_path_buf(),
                }))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Err(holder_of(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the lock of `recipe` on `engine` if free (for `clean`, which never waits).
    pub fn try_acquire(
        engine: &str,
        recipe: &str,
        command: &str,
    ) -> std::io::Result<Result<RunLock, String>> {
        Self::try_acquire_at(&lock_path(&lock_dir(), engine, recipe), command)
    }
}

impl RunLock {
    /// The run is done with the recipe, its guards drained: the next run may go.
    pub fn release(mut self) {
        if let Some(f) = self.file.take() {
            // What it says is true only while held: empty it before the kernel lets go.
            let _ = f.set_len(0);
            let _ = f.unlock();
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            parked().push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.label()), Some(me.clone()));
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = Owner {
            start: "0-0".into(),
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Gone);
        let elsewhere = Owner {
            host: "another-host".into(),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        assert_eq!(Owner::parse("true"), None);
        assert_eq!(Owner::parse("h:notapid:x"), None);
    }

    #[test]
    fn a_held_lock_names_its_holder_and_frees_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = lock_path(dir.path(), "unix:///var/run/docker.sock", "rocm52");
        assert!(p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-rocm52.lock"));
        let held = RunLock::try_acquire_at(&p, "build rocm52")
            .unwrap()
            .unwrap();
        let who = RunLock::try_acquire_at(&p, "build rocm52")
            .unwrap()
            .unwrap_err();
        assert!(
            who.contains(&format!("pid {}", std::process::id())) && who.contains("build rocm52"),
            "{who}"
        );
        held.release();
        let again = RunLock::try_acquire_at(&p, "build rocm52")
            .unwrap()
            .unwrap();
        // Dropped without a release (a cancelled run): held until the process exits.
        drop(again);
        assert!(RunLock::try_acquire_at(&p, "x").unwrap().is_err());
    }

    #[test]
    fn engines_and_recipes_get_locks_of_their_own() {
        let d = Path::new("/x");
        let a = lock_path(d, "unix:///a.sock", "r");
        assert_ne!(a, lock_path(d, "unix:///b.sock", "r"));
        assert_ne!(a, lock_path(d, "unix:///a.sock", "s"));
        assert!(!lock_path(d, "e", "../x").to_str().unwrap().contains("../"));
    }
}
