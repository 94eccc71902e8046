//! Reading a recipe and the files it names, safely.
//!
//! A recipe can name `files` and `patches`; they go into the build context and from there
//! into an image that may be pushed. So each is opened component by component inside the
//! recipes folder with `O_NOFOLLOW` (a symlink anywhere on the way, to `/etc/passwd` or to
//! `~/.docker/config.json`, is refused rather than followed), must be a regular file (a FIFO
//! would block the reader forever, a device like `/dev/zero` never ends), and is read only up
//! to its size limit. The recipe file itself may be a symlink, but must also be a regular
//! file within its limit: `list` and `check` read every recipe in a folder.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::values::RelPath;

/// Largest recipe file read.
pub const MAX_RECIPE_BYTES: u64 = 1024 * 1024;
/// Largest file (`files`, `patches`) read into a build context.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn describe(e: Errno) -> String {
    match e {
        Errno::LOOP | Errno::MLINK => {
            "it is a symbolic link: only regular files inside the recipes folder can be used".into()
        }
        Errno::NOTDIR => "a part of its path is not a folder (or is a symbolic link to one)".into(),
        Errno::NOENT => "it does not exist".into(),
        other => std::io::Error::from(other).to_string(),
    }
}

/// Reads an open file that must be regular and at most `limit` bytes.
fn read_regular(file: File, limit: u64) -> Result<Vec<u8>, String> {
    let st = rustix::fs::fstat(&file).map_err(describe)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(format!(
            "it is not a regular file (it is a {}): only regular files can be read",
            match kind {
                FileType::Fifo => "FIFO",
                FileType::CharacterDevice => "character device",
                FileType::BlockDevice => "block device",
                FileType::Socket => "socket",
                FileType::Directory => "folder",
                _ => "special file",
            }
        ));
    }
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    if data.len() as u64 > limit {
        return Err(format!(
            "it is larger than the limit of {} MiB",
            limit >> 20
        ));
    }
    Ok(data)
}

fn read_flags() -> OFlags {
    // NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

/// Reads a recipe file (symlinks followed), regular and at most [`MAX_RECIPE_BYTES`].
pub fn read_recipe(path: &Path) -> Result<Vec<u8>, (std::io::ErrorKind, String)> {
    let fd = rustix::fs::open(path, read_flags(), Mode::empty())
        .map_err(|e| (std::io::Error::from(e).kind(), describe(e)))?;
    read_regular(File::from(fd), MAX_RECIPE_BYTES).map_err(|m| (std::io::ErrorKind::Other, m))
}

/// Reads `rel` inside `dir` with no symlink on the way, regular, at most [`MAX_FILE_BYTES`].
pub fn read_inside(dir: &Path, rel: &RelPath) -> Result<Vec<u8>, String> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut at = rustix::fs::open(dir, dir_flags, Mode::empty()).map_err(describe)?;
    let parts: Vec<&str> = rel.as_str().split('/').collect();
    let (last, folders) = parts.split_last().expect("a RelPath has a part");
    for part in folders {
        at = rustix::fs::openat(&at, *part, dir_flags | OFlags::NOFOLLOW, Mode::empty())
            .map_err(describe)?;
    }
    let fd = rustix::fs::openat(&at, *last, read_flags() | OFlags::NOFOLLOW, Mode::empty())
        .map_err(describe)?;
    read_regular(File::from(fd), MAX_FILE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn symlinks_fifos_and_devices_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ok.txt"), b"ok").unwrap();
        assert_eq!(read_inside(d.path(), &rel("sub/ok.txt")).unwrap(), b"ok");

        std::os::unix::fs::symlink("/etc/passwd", d.path().join("passwd")).unwrap();
        let e = read_inside(d.path(), &rel("passwd")).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        let e = read_inside(d.path(), &rel("etc/passwd")).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read_inside(d.path(), &rel("fifo")).unwrap_err();
        assert!(e.contains("FIFO"), "{e}");
        let e = read_recipe(&d.path().join("fifo")).unwrap_err().1;
        assert!(e.contains("FIFO"), "{e}");

        let e = read_recipe(Path::new("/dev/zero")).unwrap_err().1;
        assert!(e.contains("character device"), "{e}");
        let e = read_inside(d.path(), &rel("missing")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn size_limits_hold() {
        let d = tempfile::tempdir().unwrap();
        let f = File::create(d.path().join("big.yaml")).unwrap();
        f.set_len(MAX_RECIPE_BYTES + 1).unwrap();
        let e = read_recipe(&d.path().join("big.yaml")).unwrap_err().1;
        assert!(e.contains("limit of 1 MiB"), "{e}");
    }
}
