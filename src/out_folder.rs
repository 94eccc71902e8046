//! The output folder of `render --all --write` and `--check` (`dockerfiles/` by default),
//! read and written without following anything planted in it.
//!
//! The folder is usually inside a checkout, and git stores symbolic links: a hostile
//! checkout can plant a link at `dockerfiles/<recipe>` pointing at `~/.ssh`, a FIFO that
//! blocks a reader forever, or `/dev/zero`. So every access goes through a folder handle:
//! the output folder is opened with `O_DIRECTORY | O_NOFOLLOW`, each part below it with
//! `openat(.., O_NOFOLLOW)`, files with `O_NONBLOCK` and checked with `fstat` before a
//! single byte is read, and reads stop at a limit. Anything that is not a regular file or
//! a real folder is an error that names it; nothing is followed, entered or read. Writes go
//! to a temporary file in the same folder, then `renameat` over the name, so a reader sees
//! the old or the new file, never half of one, and a link at the name is replaced, not
//! followed. The stale-file cleanup walks folders through the same handles and removes
//! entries with `unlinkat`, which removes a name, never what it points to.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// Something in the output folder that cannot be read or written safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for OutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display().to_string();
        write!(
            f,
            "{}: {}",
            crate::escape::value(&p),
            crate::escape::value(&self.message)
        )
    }
}

impl std::error::Error for OutError {}

/// Largest file compared or replaced; rendered files are far smaller, and a larger one
/// differs anyway.
pub const MAX_READ: u64 = 256 * 1024 * 1024;

fn kind_name(k: FileType) -> &'static str {
    match k {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a regular file",
        _ => "a special file",
    }
}

const REMOVE: &str = "the output folder holds only the files `render --all --write` writes: remove it and run `rdna1-images render --all --write` again";

/// The output folder, open.
pub struct OutFolder {
    root: OwnedFd,
    path: PathBuf,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl OutFolder {
    /// Opens `path`, which must be a folder and not a symbolic link; with `create`, makes
    /// it (and its parents) first when it is missing.
    pub fn open(path: &Path, create: bool) -> Result<OutFolder, OutError> {
        if create {
            match std::fs::symlink_metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(path).map_err(|e| OutError {
                        path: path.to_path_buf(),
                        message: format!("cannot create the output folder: {e}"),
                    })?;
                }
                _ => {}
            }
        }
        let root = rustix::fs::open(path, dir_flags(), Mode::empty()).map_err(|e| OutError {
            path: path.to_path_buf(),
            message: describe(e, "the output folder"),
        })?;
        Ok(OutFolder {
            root,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, rel: &str, message: String) -> OutError {
        OutError {
            path: self.path.join(rel),
            message,
        }
    }

    /// The folder `parts` below the root, or None when a part is missing (and `create`
    /// is off). Never enters a link.
    fn folder(&self, parts: &[&str], create: bool) -> Result<Option<OwnedFd>, OutError> {
        let mut at = rustix::io::dup(&self.root).map_err(|e| self.err("", e.to_string()))?;
        let mut walked = String::new();
        for part in parts {
            check_part(part).map_err(|m| self.err(&walked, m))?;
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(part);
            let next = match rustix::fs::openat(&at, *part, dir_flags(), Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&at, *part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.err(&walked, describe(e, "a folder"))),
                    }
                    rustix::fs::openat(&at, *part, dir_flags(), Mode::empty())
                }
                Err(Errno::NOENT) => return Ok(None),
                r => r,
            };
            at = next.map_err(|e| self.err(&walked, self.what_is(&at, part, e)))?;
        }
        Ok(Some(at))
    }

    /// Refuses `rel` unless `st` says it is a regular file.
    fn regular_file(&self, rel: &str, st: &rustix::fs::Stat) -> Result<(), OutError> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Ok(()),
            k => Err(self.err(
                rel,
                format!("it is {}, not a regular file: {REMOVE}", kind_name(k)),
            )),
        }
    }

    /// Says what an entry that could not be opened is (a link, a FIFO...).
    fn what_is(&self, at: &OwnedFd, name: &str, e: Errno) -> String {
        match rustix::fs::statat(at, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let k = FileType::from_raw_mode(st.st_mode);
                format!(
                    "it is {}, not {}: {REMOVE}",
                    kind_name(k),
                    match e {
                        Errno::NOTDIR | Errno::LOOP => "a folder",
                        _ => "a regular file",
                    }
                )
            }
            Err(_) => describe(e, "it"),
        }
    }

    /// Reads the regular file `rel`, at most `limit` bytes (None: it is missing; Some with
    /// more than `limit` bytes means larger). Never follows a link or reads a special file.
    pub fn read(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, OutError> {
        let (parts, name) = split(rel);
        let Some(dir) = self.folder(&parts, false)? else {
            return Ok(None);
        };
        check_part(name).map_err(|m| self.err(rel, m))?;
        // Not even opened when it is a device (opening some has effects) or a FIFO; the
        // fstat after the open closes the race with a swap in between.
        if let Ok(st) = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            self.regular_file(rel, &st)?;
        }
        let flags =
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.err(rel, self.what_is(&dir, name, e))),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(rel, e.to_string()))?;
        self.regular_file(rel, &st)?;
        let mut data = Vec::new();
        File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| self.err(rel, e.to_string()))?;
        Ok(Some(data))
    }

    /// Writes `data` to `rel` atomically: a temporary file in the same folder, then a
    /// rename over the name. Folders on the way are made; none is a link.
    pub fn write(&self, rel: &str, data: &[u8]) -> Result<(), OutError> {
        let (parts, name) = split(rel);
        check_part(name).map_err(|m| self.err(rel, m))?;
        let dir = self
            .folder(&parts, true)?
            .ok_or_else(|| self.err(rel, "its folder could not be made".into()))?;
        // A folder at the name is refused; a link, FIFO or device is replaced by the rename.
        if let Ok(st) = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            self.regular_file(rel, &st)?;
        }
        let tmp = format!(".{name}.tmp-{}", std::process::id());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o644))
            .map_err(|e| self.err(rel, describe(e, "a temporary file")))?;
        let written = File::from(fd).write_all(data);
        let renamed = written.map_err(|e| e.to_string()).and_then(|()| {
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(|e| e.to_string())
        });
        if let Err(e) = renamed {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
            return Err(self.err(rel, e));
        }
        Ok(())
    }

    /// Removes the file `rel` (the name only: a link is removed, not what it points at).
    pub fn remove(&self, rel: &str) -> Result<(), OutError> {
        let (parts, name) = split(rel);
        let Some(dir) = self.folder(&parts, false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(rel, e.to_string())),
        }
    }

    /// Every regular file below the folder `rel`, as `rel/...` paths, sorted; an empty
    /// list when `rel` is missing. Any link, FIFO, device or socket on the way is an error:
    /// nothing is followed or entered but real folders.
    pub fn files_under(&self, rel: &str) -> Result<Vec<String>, OutError> {
        let parts: Vec<&str> = rel.split('/').collect();
        let Some(dir) = self.folder(&parts, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        self.walk(dir, rel, &mut out, 0)?;
        out.sort();
        Ok(out)
    }

    fn walk(
        &self,
        dir: OwnedFd,
        rel: &str,
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), OutError> {
        if depth > 32 {
            return Err(self.err(rel, "folders nested too deep".into()));
        }
        let mut entries = Vec::new();
        let d = rustix::fs::Dir::read_from(&dir).map_err(|e| self.err(rel, e.to_string()))?;
        for e in d {
            let e = e.map_err(|e| self.err(rel, e.to_string()))?;
            let name = e.file_name().to_string_lossy().to_string();
            if name == "." || name == ".." {
                continue;
            }
            entries.push(name);
        }
        for name in entries {
            let path = format!("{rel}/{name}");
            let st = rustix::fs::statat(&dir, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(&path, e.to_string()))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => out.push(path),
                FileType::Directory => {
                    let sub = rustix::fs::openat(&dir, name.as_str(), dir_flags(), Mode::empty())
                        .map_err(|e| self.err(&path, self.what_is(&dir, &name, e)))?;
                    self.walk(sub, &path, out, depth + 1)?;
                }
                k => {
                    return Err(self.err(
                        &path,
                        format!(
                            "it is {}, not a regular file or folder: {REMOVE}",
                            kind_name(k)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn split(rel: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    (parts, name)
}

fn check_part(part: &str) -> Result<(), String> {
    if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
        return Err(format!(
            "`{}` is not a plain name inside the output folder",
            crate::escape::value(part)
        ));
    }
    Ok(())
}

fn describe(e: Errno, what: &str) -> String {
    match e {
        Errno::LOOP | Errno::MLINK => {
            format!("{what} is a symbolic link: it is never followed; {REMOVE}")
        }
        Errno::NOTDIR => format!("{what} is not a folder (or is a symbolic link): {REMOVE}"),
        other => format!("{what}: {}", std::io::Error::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_refuses_links_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let out = OutFolder::open(&d.path().join("out"), true).unwrap();
        out.write("a/b/c.txt", b"hi").unwrap();
        assert_eq!(out.read("a/b/c.txt", 10).unwrap().unwrap(), b"hi");
        assert_eq!(out.files_under("a").unwrap(), ["a/b/c.txt"]);
        assert_eq!(out.read("a/missing", 10).unwrap(), None);
        std::os::unix::fs::symlink("/etc", d.path().join("out/link")).unwrap();
        let e = out.files_under("link").unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        let e = out.write("link/x", b"x").unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("out/a/f")).unwrap();
        let e = out.read("a/f", 10).unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        let e = out.files_under("a").unwrap_err();
        assert!(e.message.contains("symbolic link"), "{e}");
        out.remove("a/f").unwrap();
        assert!(std::path::Path::new("/etc/hostname").exists());
    }
}
