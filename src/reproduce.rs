//! Deterministic images on an engine that ignores SOURCE_DATE_EPOCH, and the comparison that
//! says why two builds differ. Pure: files in, files out, no daemon.
//!
//! Docker 20.10's BuildKit writes the build time into the image config (`created`, history)
//! and into the layers (mtimes of every file a RUN touches and of the parent folders of every
//! COPY). So the image the engine builds is rewritten, in the `docker save` format:
//!
//! - every layer the build added (the base's layers are kept byte for byte): entries sorted
//!   by path, mtimes clamped to SOURCE_DATE_EPOCH, atime/ctime and sub-second times dropped,
//!   uid/gid/mode/xattrs and whiteouts kept, hard links pointed at the first path in order;
//! - the config: `created` = SOURCE_DATE_EPOCH, history times clamped to it, `diff_ids`
//!   recomputed.
//!
//! The result is a `docker load` archive holding only the rewritten layers (the engine finds
//! the base layers by their chain id and does not read them), and its image id is the sha256
//! of the config, known before the load.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hex::encode as hex;

mod compare;

pub use compare::*;

/// A file (or folder, link...) in a layer, after normalisation: what decides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo`, or the tar type byte.
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// sha256 of the content (regular files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Extended attributes and other kept PAX records, `key=sha256(value)[..12]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<String>,
}

/// One layer of a normalised image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub index: usize,
    pub diff_id: String,
    /// The Dockerfile instruction that made it (from the history), for messages.
    pub created_by: String,
    /// Rewritten by us (false: a base layer, kept as the engine had it).
    pub rewritten: bool,
    /// The entries (rewritten layers only).
    #[serde(skip)]
    pub files: Vec<FileInfo>,
    pub bytes: u64,
}

/// The result of normalising one image.
#[derive(Debug, Clone, Serialize)]
pub struct Normalised {
    /// sha256 of the rewritten config: the id the engine gives the loaded image.
    pub image_id: String,
    pub layers: Vec<LayerReport>,
    #[serde(skip)]
    pub config: serde_json::Value,
}

impl Normalised {
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    #[error("reading the saved image")]
    Io(#[from] io::Error),
    #[error("the saved image is not in the expected format: {0}")]
    Format(String),
}

/// Writes through and hashes what it writes.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads through and hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// One entry of a layer, located in the source for the second pass.
struct Item {
    path: Vec<u8>,
    header: tar::Header,
    link: Option<Vec<u8>>,
    pax: Vec<(String, Vec<u8>)>,
    data_pos: u64,
    size: u64,
}

/// The PAX records a layer keeps: extended attributes (capabilities, ACLs). Engines add others
/// of their own (times, names, sizes the header already says), which would make the same
/// change differ from one engine to the next.
fn kept_pax(key: &str) -> bool {
    key.starts_with("SCHILY.xattr.")
}

/// A fresh GNU header holding only what decides the file: type, mode, owner ids, the clamped
/// mtime and device numbers. Nothing of the engine's own header survives (ustar or GNU or PAX
/// format, user and group names, atime/ctime), so every engine's layer for the same change
/// comes out byte for byte the same.
fn canonical_header(src: &tar::Header, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(src.entry_type());
    h.set_mode(src.mode().unwrap_or(0o644) & 0o7777);
    h.set_uid(src.uid().unwrap_or(0));
    h.set_gid(src.gid().unwrap_or(0));
    h.set_mtime(mtime);
    if matches!(
        src.entry_type(),
        tar::EntryType::Char | tar::EntryType::Block
    ) {
        h.set_device_major(src.device_major()?.unwrap_or(0))?;
        h.set_device_minor(src.device_minor()?.unwrap_or(0))?;
    }
    Ok(h)
}

fn trim_slash(p: &[u8]) -> &[u8] {
    let mut p = p;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    while p.starts_with(b"./") {
        p = &p[2..];
    }
    p
}

fn kind(t: tar::EntryType) -> String {
    use tar::EntryType as T;
    match t {
        T::Regular | T::Continuous => "file".into(),
        T::Directory => "dir".into(),
        T::Symlink => "symlink".into(),
        T::Link => "hardlink".into(),
        T::Char => "char".into(),
        T::Block => "block".into(),
        T::Fifo => "fifo".into(),
        other => format!("type {}", other.as_byte() as char),
    }
}

/// What decides a folder besides its entries and mtime: mode, owner ids, kept PAX records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    pax: Vec<(String, Vec<u8>)>,
}

impl DirMeta {
    fn of(h: &tar::Header, pax: &[(String, Vec<u8>)]) -> Self {
        DirMeta {
            mode: h.mode().unwrap_or(0o755) & 0o7777,
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            pax: pax.to_vec(),
        }
    }
}

/// One entry of a layer as [`Lower`] needs it: its path and, for a folder, its metadata.
#[derive(Debug, Clone)]
pub struct LowerEntry {
    path: Vec<u8>,
    dir: Option<DirMeta>,
}

/// The kept PAX records of an entry, sorted.
fn kept_pax_of<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut pax = Vec::new();
    if let Some(exts) = e.pax_extensions()? {
        for x in exts {
            let x = x?;
            let key = String::from_utf8_lossy(x.key_bytes()).into_owned();
            if kept_pax(&key) {
                pax.push((key, x.value_bytes().to_vec()));
            }
        }
    }
    pax.sort();
    Ok(pax)
}

/// The entries of a layer tar (a base layer, read in passing), up to its end-of-archive
/// marker; what follows the marker is left unread.
pub fn layer_entries<R: Read>(r: R) -> io::Result<Vec<LowerEntry>> {
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in ar.entries()? {
        let mut e = e?;
        let path = trim_slash(&e.path_bytes()).to_vec();
        let dir = if e.header().entry_type() == tar::EntryType::Directory {
            let pax = kept_pax_of(&mut e)?;
            Some(DirMeta::of(e.header(), &pax))
        } else {
            None
        };
        out.push(LowerEntry { path, dir });
    }
    Ok(out)
}

/// The folders of the layers below the one being rewritten, with their metadata, so that a
/// folder entry that changes nothing can be told from one that does.
///
/// Why: a RUN's layer sometimes holds a bare `etc` entry and sometimes not, from one build
/// to the next and on every engine. The runtime creates mount stubs (`/etc/hosts`,
/// `/etc/resolv.conf`, `/etc/hostname`) in the rootfs, which copies `/etc` up into the
/// snapshot; BuildKit removes the stubs and restores the folder's times, and its differ then
/// leaves the folder out only if the times came back equal. The entry it leaves in is the
/// lower folder unchanged (mode, owner, xattrs), touched only in its mtime, which the
/// rewrite clamps anyway.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lower {
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Some layer below could not be read: never drop anything.
    pub unknown: bool,
}

impl Lower {
    fn remove_tree(&mut self, p: &[u8]) {
        self.dirs.remove(p);
        let mut from = p.to_vec();
        from.push(b'/');
        let mut to = p.to_vec();
        to.push(b'/' + 1);
        let gone: Vec<Vec<u8>> = self.dirs.range(from..to).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.dirs.remove(&k);
        }
    }

    /// Applies one layer's entries on top: its whiteouts first (they hide what is below,
    /// not what the same layer adds), then what it adds.
    pub fn apply(&mut self, entries: &[LowerEntry]) {
        for e in entries {
            let (parent, name) = match e.path.iter().rposition(|&c| c == b'/') {
                Some(i) => (&e.path[..i], &e.path[i + 1..]),
                None => (&b""[..], &e.path[..]),
            };
            if name == b".wh..wh..opq" {
                let mut kids = parent.to_vec();
                kids.push(b'/');
                let gone: Vec<Vec<u8>> = self
                    .dirs
                    .keys()
                    .filter(|k| k.starts_with(&kids) || parent.is_empty())
                    .cloned()
                    .collect();
                for k in gone {
                    self.dirs.remove(&k);
                }
            } else if let Some(target) = name.strip_prefix(b".wh.") {
                let mut t = parent.to_vec();
                if !t.is_empty() {
                    t.push(b'/');
                }
                t.extend_from_slice(target);
                self.remove_tree(&t);
            }
        }
        for e in entries {
            let name = e.path.rsplit(|&c| c == b'/').next().unwrap_or(&[]);
            if name.starts_with(b".wh.") {
                continue;
            }
            match &e.dir {
                Some(m) => {
                    self.dirs.insert(e.path.clone(), m.clone());
                }
                None => self.remove_tree(&e.path),
            }
        }
    }

    /// The folder `path` is below with exactly this metadata.
    fn has(&self, path: &[u8], meta: &DirMeta) -> bool {
        !self.unknown && self.dirs.get(path) == Some(meta)
    }

    /// A self-checking byte form, for the per-base cache (src/pipeline/normalise.rs): a
    /// base's folders are a function of its layers alone, so they are read once per base.
    pub fn to_bytes(&self) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        let mut out = LOWER_MAGIC.to_vec();
        out.push(self.unknown as u8);
        out.extend_from_slice(&(self.dirs.len() as u64).to_le_bytes());
        for (path, m) in &self.dirs {
            put(&mut out, path);
            out.extend_from_slice(&m.mode.to_le_bytes());
            out.extend_from_slice(&m.uid.to_le_bytes());
            out.extend_from_slice(&m.gid.to_le_bytes());
            out.extend_from_slice(&(m.pax.len() as u64).to_le_bytes());
            for (k, v) in &m.pax {
                put(&mut out, k.as_bytes());
                put(&mut out, v);
            }
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// The inverse of [`Lower::to_bytes`]; None for anything it did not write whole.
    pub fn from_bytes(b: &[u8]) -> Option<Lower> {
        let (body, sum) = b.split_at_checked(b.len().checked_sub(32)?)?;
        if Sha256::digest(body)[..] != *sum {
            return None;
        }
        let mut r = body.strip_prefix(LOWER_MAGIC)?;
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (a, rest) = r.split_at_checked(n)?;
            *r = rest;
            Some(a)
        }
        fn int(r: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(r, 8)?.try_into().ok()?))
        }
        fn bytes<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
            let n = usize::try_from(int(r)?).ok()?;
            take(r, n)
        }
        let unknown = take(&mut r, 1)?[0] != 0;
        let mut dirs = BTreeMap::new();
        for _ in 0..int(&mut r)? {
            let path = bytes(&mut r)?.to_vec();
            let mode = u32::from_le_bytes(take(&mut r, 4)?.try_into().ok()?);
            let uid = int(&mut r)?;
            let gid = int(&mut r)?;
            let mut pax = Vec::new();
            for _ in 0..int(&mut r)? {
                let k = String::from_utf8(bytes(&mut r)?.to_vec()).ok()?;
                pax.push((k, bytes(&mut r)?.to_vec()));
            }
            dirs.insert(
                path,
                DirMeta {
                    mode,
                    uid,
                    gid,
                    pax,
                },
            );
        }
        r.is_empty().then_some(Lower { dirs, unknown })
    }
}

const LOWER_MAGIC: &[u8] = b"rdna1-lower-v1\n";

/// Rewrites one layer tar deterministically into `out`; returns its diff id, size and entries.
///
/// `lower` is the image below this layer; a folder entry with nothing under it in this layer
/// and the same metadata as the folder below changes nothing but an mtime and is left out
/// (see [`Lower`]); then the layer is applied to `lower`.
pub fn rewrite_layer<R: Read + Seek, W: Write>(
    src: R,
    epoch: u64,
    lower: &mut Lower,
    out: W,
) -> Result<(String, u64, Vec<FileInfo>), NormaliseError> {
    let mut ar = tar::Archive::new(src);
    let mut items = Vec::new();
    for e in ar.entries_with_seek()? {
        let mut e = e?;
        let pax = kept_pax_of(&mut e)?;
        items.push(Item {
            path: trim_slash(&e.path_bytes()).to_vec(),
            header: e.header().clone(),
            link: e.link_name_bytes().map(|l| l.into_owned()),
            pax,
            data_pos: e.raw_file_position(),
            size: e.size(),
        });
    }
    // A path twice in one layer: the later entry is what extraction leaves, so it is kept.
    items.reverse();
    items.sort_by(|a, b| a.path.cmp(&b.path));
    items.dedup_by(|next, kept| next.path == kept.path);
    canonical_hardlinks(&mut items);
    let applied: Vec<LowerEntry> = items
        .iter()
        .map(|it| LowerEntry {
            path: it.path.clone(),
            dir: (it.header.entry_type() == tar::EntryType::Directory)
                .then(|| DirMeta::of(&it.header, &it.pax)),
        })
        .collect();
    let mut parents: HashSet<&[u8]> = HashSet::new();
    for it in &items {
        let mut p = &it.path[..];
        while let Some(i) = p.iter().rposition(|&c| c == b'/') {
            p = &p[..i];
            if !parents.insert(p) {
                break;
            }
        }
    }
    let unchanged: HashSet<Vec<u8>> = applied
        .iter()
        .filter(|e| {
            e.dir
                .as_ref()
                .is_some_and(|m| !parents.contains(&e.path[..]) && lower.has(&e.path, m))
        })
        .map(|e| e.path.clone())
        .collect();
    drop(parents);
    items.retain(|it| !unchanged.contains(&it.path));
    lower.apply(&applied);

    let mut src = ar.into_inner();
    let mut b = tar::Builder::new(Hashing {
        inner: BufWriter::new(out),
        hash: Sha256::new(),
        bytes: 0,
    });
    let mut files = Vec::with_capacity(items.len());
    for it in &items {
        let mtime = it.header.mtime().unwrap_or(0).min(epoch);
        let mut h = canonical_header(&it.header, mtime)?;
        if !it.pax.is_empty() {
            b.append_pax_extensions(it.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        let path = bytes_path(&it.path);
        let t = h.entry_type();
        let mut sha = None;
        match (&it.link, t) {
            (Some(link), tar::EntryType::Link | tar::EntryType::Symlink) => {
                h.set_size(0);
                b.append_link(&mut h, path, bytes_path(link))?;
            }
            _ => {
                src.seek(SeekFrom::Start(it.data_pos))?;
                let mut r = HashingReader {
                    inner: (&mut src).take(it.size),
                    hash: Sha256::new(),
                };
                h.set_size(it.size);
                b.append_data(&mut h, path, &mut r)?;
                if t.is_file() {
                    sha = Some(hex(r.hash.finalize()));
                }
            }
        }
        files.push(FileInfo {
            path: String::from_utf8_lossy(&it.path).into_owned(),
            kind: kind(t),
            size: if it.link.is_some() { 0 } else { it.size },
            mode: h.mode().unwrap_or(0),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime,
            sha256: sha,
            link: it
                .link
                .as_ref()
                .map(|l| String::from_utf8_lossy(l).into_owned()),
            xattrs: it
                .pax
                .iter()
                .map(|(k, v)| format!("{k}={}", &hex(Sha256::digest(v))[..12]))
                .collect(),
        });
    }
    b.finish()?;
    let mut w = b.into_inner()?;
    w.flush()?;
    Ok((format!("sha256:{}", hex(w.hash.finalize())), w.bytes, files))
}

fn bytes_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// After sorting, a hard link may come before the file it points at, which cannot be
/// extracted. Each group of hard-linked paths gets its first path (in order) as the file and
/// the others as links to it.
fn canonical_hardlinks(items: &mut [Item]) {
    let pos: HashMap<Vec<u8>, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.path.clone(), i))
        .collect();
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        if it.header.entry_type() == tar::EntryType::Link {
            if let Some(&t) = it.link.as_ref().and_then(|l| pos.get(trim_slash(l))) {
                groups.entry(t).or_default().push(i);
            }
        }
    }
    for (target, links) in groups {
        let first = *links.iter().min().expect("a group has links");
        if first < target {
            // The first path takes the file (header, data, xattrs); the old file becomes a link.
            let canonical = items[first].path.clone();
            let (file_header, data_pos, size, pax) = {
                let t = &items[target];
                (t.header.clone(), t.data_pos, t.size, t.pax.clone())
            };
            let link_header = items[first].header.clone();
            let it = &mut items[first];
            it.header = file_header;
            it.data_pos = data_pos;
            it.size = size;
            it.link = None;
            it.pax = pax;
            let t = &mut items[target];
            t.header = link_header;
            t.size = 0;
            t.pax.clear();
            t.link = Some(canonical.clone());
            for &l in links.iter().filter(|&&l| l != first) {
                items[l].link = Some(canonical.clone());
            }
        }
    }
}

/// The config with `created` = SOURCE_DATE_EPOCH, history times clamped to it, and the new
/// diff ids.
pub fn rewrite_config(
    config: &serde_json::Value,
    diff_ids: &[String],
    epoch: u64,
) -> serde_json::Value {
    let stamp = crate::render::rfc3339(epoch);
    let mut c = config.clone();
    c["created"] = serde_json::Value::String(stamp.clone());
    if let Some(h) = c.get_mut("history").and_then(|h| h.as_array_mut()) {
        for e in h {
            let late = match e.get("created").and_then(|v| v.as_str()) {
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp() > epoch as i64)
                    .unwrap_or(true),
                None => false,
            };
            if late {
                e["created"] = serde_json::Value::String(stamp.clone());
            }
            if let Some(arg) = e
                .get("created_by")
                .and_then(|v| v.as_str())
                .and_then(canonical_arg)
            {
                e["created_by"] = serde_json::Value::String(arg);
            }
        }
    }
    c["rootfs"]["diff_ids"] = serde_json::Value::Array(
        diff_ids
            .iter()
            .map(|d| serde_json::Value::String(d.clone()))
            .collect(),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_form_of_lower_round_trips_and_refuses_damage() {
        let mut l = Lower::default();
        let dir = |p: &str, mode: u32, pax: Vec<(String, Vec<u8>)>| LowerEntry {
            path: p.as_bytes().to_vec(),
            dir: Some(DirMeta {
                mode,
                uid: 0,
                gid: 7,
                pax,
            }),
        };
        l.apply(&[
            dir("etc", 0o755, vec![]),
            dir(
                "opt/x",
                0o2775,
                vec![("SCHILY.xattr.user.a".into(), vec![0, 255])],
            ),
        ]);
        let b = l.to_bytes();
        assert_eq!(Lower::from_bytes(&b), Some(l.clone()));
        for cut in [0, 1, b.len() / 2, b.len() - 1] {
            assert_eq!(Lower::from_bytes(&b[..cut]), None, "cut at {cut}");
        }
        let mut flipped = b.clone();
        flipped[LOWER_MAGIC.len() + 3] ^= 1;
        assert_eq!(Lower::from_bytes(&flipped), None);
        let unknown = Lower {
            unknown: true,
            ..Lower::default()
        };
        assert_eq!(Lower::from_bytes(&unknown.to_bytes()), Some(unknown));
    }
    use std::io::Cursor;

    /// (path, type, mtime, data, hard link target)
    type Entry<'a> = (&'a str, tar::EntryType, u64, &'a [u8], Option<&'a str>);

    fn layer(entries: &[Entry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, t, mtime, data, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*t);
            h.set_mtime(*mtime);
            h.set_mode(if *t == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(if link.is_some() { 0 } else { data.len() as u64 });
            match link {
                Some(l) => b.append_link(&mut h, path, l).unwrap(),
                None => b.append_data(&mut h, path, *data).unwrap(),
            }
        }
        b.into_inner().unwrap()
    }

    fn rewrite(l: &[u8], epoch: u64) -> (String, Vec<u8>, Vec<FileInfo>) {
        let mut out = Vec::new();
        let (id, n, files) =
            rewrite_layer(Cursor::new(l), epoch, &mut Lower::default(), &mut out).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(id, format!("sha256:{}", hex(Sha256::digest(&out))));
        (id, out, files)
    }

    #[test]
    fn rewritten_layers_do_not_depend_on_build_time_or_order() {
        use tar::EntryType::{Directory as D, Link as L, Regular as F};
        let a = layer(&[
            ("etc/", D, 2000, b"", None),
            ("etc/x/", D, 2001, b"", None),
            ("etc/x/b.conf", F, 2001, b"cfg", None),
            ("etc/x/a.conf", L, 2001, b"", Some("etc/x/b.conf")),
            ("old", F, 5, b"old", None),
        ]);
        let b = layer(&[
            ("old", F, 5, b"old", None),
            ("etc/", D, 3000, b"", None),
            ("etc/x/", D, 3005, b"", None),
            ("etc/x/b.conf", F, 3001, b"cfg", None),
            ("etc/x/a.conf", L, 3001, b"", Some("etc/x/b.conf")),
        ]);
        let (ia, ta, files) = rewrite(&a, 1000);
        let (ib, _, _) = rewrite(&b, 1000);
        assert_eq!(ia, ib);
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            ["etc", "etc/x", "etc/x/a.conf", "etc/x/b.conf", "old"]
        );
        // Clamped, not set: an old mtime stays.
        assert_eq!(files[0].mtime, 1000);
        assert_eq!(files[4].mtime, 5);
        // The hard link now points at the first path, which holds the data, and the
        // archive extracts (a link before its target would not).
        assert_eq!(files[2].kind, "file");
        assert_eq!(files[3].kind, "hardlink");
        assert_eq!(files[3].link.as_deref(), Some("etc/x/a.conf"));
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(ta.as_slice()).unpack(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("etc/x/b.conf")).unwrap(),
            b"cfg"
        );
        // Idempotent: a normalised layer stays as it is.
        let (again, _, _) = rewrite(&ta, 1000);
        assert_eq!(again, ia);
    }

    #[test]
    fn a_bare_folder_the_runtime_touched_is_left_out_but_a_changed_one_stays() {
        use tar::EntryType::{Directory as D, Regular as F};
        let base = layer(&[
            ("etc/", D, 10, b"", None),
            ("etc/passwd", F, 10, b"root", None),
            ("opt/", D, 10, b"", None),
            ("opt/d/", D, 10, b"", None),
            ("var/", D, 10, b"", None),
        ]);
        let below = || {
            let mut l = Lower::default();
            l.apply(&layer_entries(base.as_slice()).unwrap());
            l
        };
        let run = |entries: &[Entry], lower: &mut Lower| {
            let mut out = Vec::new();
            let (id, _, files) =
                rewrite_layer(Cursor::new(layer(entries)), 1000, lower, &mut out).unwrap();
            let names: Vec<String> = files.into_iter().map(|f| f.path).collect();
            (id, names)
        };
        // The same RUN, once with the bare `etc` its mount stubs left and once without.
        let with = [
            ("etc/", D, 5000, &b""[..], None),
            ("var/", D, 5000, b"", None),
            ("var/x", F, 5000, b"x", None),
        ];
        let (a, names) = run(&with, &mut below());
        let (b, _) = run(&with[1..], &mut below());
        assert_eq!(a, b);
        assert_eq!(names, ["var", "var/x"]);
        // Without what is below (a base that could not be read), nothing is dropped.
        let mut unknown = below();
        unknown.unknown = true;
        assert_eq!(run(&with, &mut unknown).1, ["etc", "var", "var/x"]);
        // A folder the RUN changed (here: created after a whiteout) is kept.
        let mut lower = below();
        run(
            &[
                ("opt/", D, 5000, b"", None),
                ("opt/.wh.d", F, 5000, b"", None),
            ],
            &mut lower,
        );
        assert_eq!(
            run(&[("opt/d/", D, 5000, b"", None)], &mut lower).1,
            ["opt/d"]
        );
        // And a bare folder that is new.
        assert_eq!(
            run(&[("srv/", D, 5000, b"", None)], &mut below()).1,
            ["srv"]
        );
    }

    #[test]
    fn the_same_change_in_another_engines_tar_dialect_gives_the_same_layer() {
        // Docker 20.10 writes ustar with user names; BuildKit's differ GNU or PAX headers with
        // atime/ctime records, and another order.
        let mut a = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o100644);
        h.set_mtime(5000);
        h.set_size(3);
        h.set_username("root").unwrap();
        h.set_groupname("root").unwrap();
        a.append_data(&mut h, "opt/x/smoke.py", &b"abc"[..])
            .unwrap();
        let mut d = tar::Header::new_ustar();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_mode(0o755);
        d.set_mtime(5000);
        d.set_size(0);
        a.append_data(&mut d, "opt/x/", &b""[..]).unwrap();
        let a = a.into_inner().unwrap();

        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("atime", &b"5000.1"[..]), ("ctime", &b"5000.2"[..])])
            .unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_mode(0o40755);
        d.set_mtime(6000);
        d.set_size(0);
        b.append_data(&mut d, "opt/x", &b""[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(7000);
        h.set_size(3);
        b.append_data(&mut h, "./opt/x/smoke.py", &b"abc"[..])
            .unwrap();
        let b = b.into_inner().unwrap();

        let (ia, _, fa) = rewrite(&a, 1000);
        let (ib, _, fb) = rewrite(&b, 1000);
        assert_eq!(fa, fb);
        assert_eq!(ia, ib);
    }

    #[test]
    fn config_gets_the_epoch_and_new_diff_ids() {
        let c = serde_json::json!({
            "created": "2026-11-25T19:03:50.054215533Z",
            "history": [
                {"created": "2020-01-01T00:00:00Z", "comment": "base"},
                {"created": "2026-11-25T19:03:49.9Z", "created_by": "RUN x"},
            ],
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b"]},
        });
        let r = rewrite_config(&c, &["sha256:a".into(), "sha256:c".into()], 1764028800);
        assert_eq!(r["created"], "2025-11-25T00:00:00Z");
        assert_eq!(r["history"][0]["created"], "2020-01-01T00:00:00Z");
        assert_eq!(r["history"][1]["created"], "2025-11-25T00:00:00Z");
        assert_eq!(r["rootfs"]["diff_ids"][1], "sha256:c");
    }

    #[test]
    fn arg_history_is_the_same_whatever_buildkit_wrote() {
        let entry = |by: &str| {
            serde_json::json!({
                "created": "2026-11-25T19:03:50Z",
                "history": [{"created": "2026-11-25T19:03:50Z", "created_by": by, "empty_layer": true}],
                "rootfs": {"type": "layers", "diff_ids": []},
            })
        };
        let old = rewrite_config(&entry("ARG SOURCE_DATE_EPOCH"), &[], 1764028800);
        let new = rewrite_config(&entry("ARG SOURCE_DATE_EPOCH=1764028800"), &[], 1764028800);
        assert_eq!(old, new);
        assert_eq!(old["history"][0]["created_by"], "ARG SOURCE_DATE_EPOCH");
        let two = rewrite_config(&entry("ARG A=1 B_2=x"), &[], 0);
        assert_eq!(two["history"][0]["created_by"], "ARG A B_2");
        let run = rewrite_config(&entry("RUN echo ARG=1"), &[], 0);
        assert_eq!(run["history"][0]["created_by"], "RUN echo ARG=1");
    }

    #[test]
    fn comparison_names_the_layer_and_the_file() {
        let info = |path: &str, sha: &str| FileInfo {
            path: path.into(),
            kind: "file".into(),
            size: 29,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1000,
            sha256: Some(sha.into()),
            link: None,
            xattrs: vec![],
        };
        let img = |id: &str, d: &str, sha: &str| Normalised {
            image_id: id.into(),
            layers: vec![LayerReport {
                index: 0,
                diff_id: d.into(),
                created_by: "RUN date > /etc/build-date".into(),
                rewritten: true,
                files: vec![info("etc/build-date", sha), info("etc/same", "00")],
                bytes: 0,
            }],
            config: serde_json::json!({}),
        };
        let c = compare(
            &img("sha256:1", "sha256:a", "aaaa"),
            &img("sha256:2", "sha256:b", "bbbb"),
        );
        assert!(!c.reproducible);
        let text = c.to_string();
        assert!(
            text.contains("layer 0 (RUN date > /etc/build-date)"),
            "{text}"
        );
        assert!(
            text.contains("etc/build-date: content sha256 aaaa -> bbbb;"),
            "{text}"
        );
        assert!(!text.contains("etc/same"), "{text}");
    }
}
