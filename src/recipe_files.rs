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
/// Largest sum of a recipe's `files` and `patches`: the context is held in memory.
pub const MAX_TOTAL_BYTES: u64 = 128 * 1024 * 1024;

/// Whether a path fits a ustar header as the build context writes it (a name of at most
/// 100 bytes, or a folder part of at most 155 and a name of at most 100, no `..`): the
/// one check both the recipe's validation and the context's tar writer use, so a path the
/// recipe accepts is one the writer stores.
pub fn fits_tar(path: &str) -> Result<(), String> {
    tar::Header::new_ustar()
        .set_path(path)
        .map(|_| ())
        .map_err(|_| {
            format!(
                "`{}` is too long for the build context's tar header: at most 100 bytes for the file name and 155 for its folders",
                crate::escape::value(path)
            )
        })
}

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

/// Reads an open file that must be regular and at most `limit` bytes; with `single_link`,
/// it must also have no other hard link.
fn read_regular(file: File, limit: u64, single_link: bool) -> Result<Vec<u8>, String> {
    let st = rustix::fs::fstat(&file).map_err(describe)?;
    // A hard link is a second name of a file that may live outside the recipes folder
    // (O_NOFOLLOW cannot tell): `ln ~/.docker/config.json recipes/x` would copy it into
    // the context. A checkout never makes hard links, so one is refused.
    if single_link
        && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_nlink > 1
    {
        return Err(format!(
            "it has {} hard links: a hard link can be a file from outside the recipes folder, so only files with one link are used (copy it instead)",
            st.st_nlink
        ));
    }
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
    read_regular(File::from(fd), MAX_RECIPE_BYTES, false)
        .map_err(|m| (std::io::ErrorKind::Other, m))
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
    read_regular(File::from(fd), MAX_FILE_BYTES, true)
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
