//! The archives engines save and load, read and written as streams. Pure: bytes in, bytes
//! out, no daemon.
//!
//! Three save formats reach us: Docker 20.10's (`<v1 id>/layer.tar`, `manifest.json`),
//! Docker 25+'s classic store (an OCI layout whose layer blobs are the uncompressed layers),
//! and the containerd image store's (an OCI layout with gzip or zstd layer blobs, and an
//! index above the manifest). Entries arrive in name order, so the manifest comes after the
//! layers: each layer is recognised as it passes, by its blob name or (20.10) by recomputing
//! its v1 id, and a base layer is not stored: only its tar headers are read in passing, for the
//! folders below the added layers ([`crate::reproduce::Lower`]). Only the layers the
//! build added are spooled, rewritten canonically ([`crate::reproduce::rewrite_layer`]) and
//! kept until the load.
//!
//! The load archive holds only the rewritten layers, the config and (containerd) the
//! manifest: both stores find the base layers they already have (classic by chain id,
//! containerd by blob digest) without reading them.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::image::{
    Descriptor, ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::hex::encode as hex;
use crate::reproduce::{self, LayerReport, NormaliseError, Normalised};

mod documents;
mod pushed;
use documents::{blob_path, find_config, oci_digest, sorted_json, ConfigLayers, SaveManifest};
pub use pushed::{pushed_config, pushed_manifest, receive_blob, small_blob, Received};

/// How the engine keeps images, which decides the load format and what an image id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A graph driver: image id = config digest; loads `manifest.json` archives.
    Classic,
    /// The containerd image store: image id = manifest digest; loads OCI layouts.
    Containerd,
}

/// What is known of the built image before its save is read.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The built image's layer diff ids, bottom first (from inspect).
    pub diff_ids: Vec<String>,
    /// How many of them are the base's, left as the engine has them.
    pub keep: usize,
    pub epoch: u64,
}

/// Time spent per step, for `-v`.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Reading the save stream, base layers skipped included.
    pub save: Duration,
    /// Decompressing and hashing the added layers into their spools.
    pub spool: Duration,
    /// The canonical rewrite of the added layers.
    pub rewrite: Duration,
    pub bytes_skipped: u64,
    pub bytes_added: u64,
    /// The push way (src/pipeline/normalise.rs): the base's push, and how many pushes of
    /// the built image it took (its time is in `save`).
    pub push_base: Duration,
    pub passes: u32,
}

/// A rewritten layer waiting for the load; its file is removed when this is dropped.
pub struct Spooled {
    pub index: usize,
    pub diff_id: String,
    pub file: tempfile::NamedTempFile,
    pub bytes: u64,
}

/// The save, read: the normalised image and the rewritten layers to load.
pub struct SavedImage {
    pub normalised: Normalised,
    /// The config as the engine built it.
    pub engine_config: serde_json::Value,
    pub spooled: Vec<Spooled>,
    /// OCI descriptors of the base layers as the engine stores them (containerd manifests).
    pub base_descriptors: Vec<Descriptor>,
}

fn bad(msg: impl Into<String>) -> NormaliseError {
    NormaliseError::Format(msg.into())
}

fn sha256_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(Sha256::digest(bytes)))
}

/// Chain ids as moby computes them: sha256("<parent chain> <diff id>").
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(p) => sha256_id(format!("{p} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Which layer a Docker 20.10 `<v1 id>/json` describes. moby's `v1.CreateID` hashes that JSON
/// without `id`, with `layer_id` (the chain id) and `parent` (as a digest) added, keys sorted,
/// values as written; `os` is added to the lower layers' JSON after their id is computed.
pub fn v1_layer_index(dir: &str, json: &[u8], chains: &[String]) -> Option<usize> {
    let mut map: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(json).ok()?;
    map.remove("id");
    let parent = map
        .remove("parent")
        .and_then(|p| serde_json::from_str::<String>(p.get()).ok());
    if let Some(p) = parent {
        map.insert(
            "parent".into(),
            RawValue::from_string(format!("\"sha256:{p}\"")).ok()?,
        );
    }
    let without_os = {
        let mut m = map.clone();
        m.remove("os");
        m
    };
    for candidate in [&map, &without_os] {
        for (i, chain) in chains.iter().enumerate() {
            let mut m = candidate.clone();
            m.insert(
                "layer_id".into(),
                RawValue::from_string(format!("\"{chain}\"")).ok()?,
            );
            let text = serde_json::to_string(&m).ok()?;
            if hex(Sha256::digest(text.as_bytes())) == dir {
                return Some(i);
            }
        }
    }
    None
}

/// Metadata files are small; a layer never starts with `{`.
const METADATA_LIMIT: u64 = 16 << 20;

/// Hashes what passes through.
struct HashRead<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A layer blob, uncompressed whatever the engine stored.
fn uncompressed<'a, R: Read + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let chained = io::Cursor::new(head[..got].to_vec()).chain(r);
    Ok(match &head[..got] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a zstd-compressed layer: set the engine's BuildKit to gzip (the default) for now",
            ))
        }
        _ => Box::new(chained),
    })
}

/// Reads a save stream and rewrites the layers above `plan.keep` into `scratch`; also
/// returns the base's folders, read in passing, for the per-base cache.
pub fn read_save<R: Read>(
    save: R,
    plan: &Plan,
    scratch: &Path,
    timings: &mut Timings,
) -> Result<(SavedImage, reproduce::Lower), NormaliseError> {
    let started = Instant::now();
    let chains = chain_ids(&plan.diff_ids);
    let base: Vec<&str> = plan.diff_ids[..plan.keep]
        .iter()
        .map(|d| d.trim_start_matches("sha256:"))
        .collect();
    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    let mut v1_index: HashMap<String, usize> = HashMap::new();
    // Uncompressed spools of the added layers, by index, with the blob name they came in.
    let mut raw: Added = BTreeMap::new();
    // The entries of the base layers, by index (None: not a readable tar), for [`Lower`].
    let mut below: BTreeMap<usize, Option<Vec<reproduce::LowerEntry>>> = BTreeMap::new();
    let mut ar = tar::Archive::new(save);
    for entry in ar.entries()? {
        let mut e = entry?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let size = e.size();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let dir = dir.to_string();
        let name = name.to_string();
        let layer_index = if name == "layer.tar" {
            match v1_index.get(&dir) {
                Some(&i) if i < plan.keep => {
                    timings.bytes_skipped += size;
                    below.insert(i, reproduce::layer_entries(&mut e).ok());
                    continue;
                }
                known => Some(known.copied()),
            }
        } else {
            None
        };
        if layer_index.is_none() {
            // A small file, or a blob that may be metadata: look at its first byte.
            let mut first = [0u8; 1];
            let n = e.read(&mut first)?;
            let is_json = n == 1 && first[0] == b'{' && size <= METADATA_LIMIT;
            if is_json || (size <= METADATA_LIMIT && !dir.starts_with("blobs/")) {
                let mut v = first[..n].to_vec();
                e.read_to_end(&mut v)?;
                if name == "json" {
                    if let Some(i) = v1_layer_index(&dir, &v, &chains) {
                        v1_index.insert(dir.clone(), i);
                    }
                }
                metadata.insert(path, v);
                continue;
            }
            if base.contains(&name.as_str()) {
                timings.bytes_skipped += size;
                let entries = uncompressed(io::Cursor::new(first[..n].to_vec()).chain(&mut e))
                    .and_then(reproduce::layer_entries)
                    .ok();
                // The same layer can be in an image twice (an empty one, say).
                for (i, _) in base.iter().enumerate().filter(|(_, b)| **b == name) {
                    below.insert(i, entries.clone());
                }
                continue;
            }
            spool_layer(
                io::Cursor::new(first[..n].to_vec()).chain(&mut e),
                &path,
                plan,
                scratch,
                &mut raw,
                &mut below,
                timings,
            )?;
            continue;
        }
        spool_layer(&mut e, &path, plan, scratch, &mut raw, &mut below, timings)?;
    }
    let read_time = started.elapsed();

    let (config, base_descriptors) = find_config(&metadata)?;
    let mut lower = reproduce::Lower::default();
    for i in 0..plan.keep {
        match below.remove(&i).flatten() {
            Some(entries) => lower.apply(&entries),
            None => lower.unknown = true,
        }
    }
    let base_lower = lower.clone();
    let saved = finish(plan, config, base_descriptors, raw, lower, timings)?;
    timings.save += read_time.saturating_sub(timings.spool);
    Ok((saved, base_lower))
}

/// The layers the build added, uncompressed, by index, with where each came from.
pub type Added = BTreeMap<usize, (tempfile::NamedTempFile, String)>;

/// The common end of both ways in: checks the engine's config against the plan, rewrites
/// the added layers over `lower` (the base's folders) and the config.
pub fn finish(
    plan: &Plan,
    config: serde_json::Value,
    base_descriptors: Vec<Descriptor>,
    mut raw: Added,
    mut lower: reproduce::Lower,
    timings: &mut Timings,
) -> Result<SavedImage, NormaliseError> {
    let scratch_dir = |f: &tempfile::NamedTempFile| {
        f.path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
    };
    let old_ids = ConfigLayers::deserialize(&config)
        .map_err(|e| bad(format!("the config has no rootfs.diff_ids: {e}")))?
        .rootfs
        .diff_ids()
        .clone();
    if old_ids != plan.diff_ids {
        return Err(bad(format!(
            "the saved config lists layers {old_ids:?}, the engine said {:?}",
            plan.diff_ids
        )));
    }
    let history = reproduce::layer_history(&config, old_ids.len());
    let rewrite_started = Instant::now();
    let mut layers = Vec::new();
    let mut spooled = Vec::new();
    for (i, id) in old_ids.iter().enumerate() {
        if i < plan.keep {
            layers.push(LayerReport {
                index: i,
                diff_id: id.clone(),
                created_by: history[i].clone(),
                rewritten: false,
                files: vec![],
                bytes: 0,
            });
            continue;
        }
        let (src, from) = raw
            .remove(&i)
            .ok_or_else(|| bad(format!("layer {i} ({id}) is not in the saved image")))?;
        let out = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(scratch_dir(&src))?;
        let (diff_id, bytes, files) = reproduce::rewrite_layer(
            BufReader::new(src.reopen()?),
            plan.epoch,
            &mut lower,
            out.as_file().try_clone()?,
        )
        .map_err(|e| match e {
            NormaliseError::Io(e) => bad(format!("layer {i} ({from}): {e}")),
            other => other,
        })?;
        drop(src);
        layers.push(LayerReport {
            index: i,
            diff_id: diff_id.clone(),
            created_by: history[i].clone(),
            rewritten: true,
            files,
            bytes,
        });
        spooled.push(Spooled {
            index: i,
            diff_id,
            file: out,
            bytes,
        });
    }
    timings.rewrite += rewrite_started.elapsed();
    let ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let engine_config = config;
    let config = reproduce::rewrite_config(&engine_config, &ids, plan.epoch);
    let config_bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    Ok(SavedImage {
        engine_config,
        normalised: Normalised {
            image_id: sha256_id(&config_bytes),
            layers,
            config,
        },
        spooled,
        base_descriptors,
    })
}

/// Copies what it reads into `out`: the spool fills while the layer's headers are read.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// One layer blob read once: uncompressed, its diff id and size, its tar headers (None: not
/// a tar, an attestation say), and, into `spool`, a copy of it.
struct Unpacked {
    diff_id: String,
    bytes: u64,
    entries: Option<Vec<reproduce::LowerEntry>>,
}

fn unpack<R: Read>(r: R, spool: Option<&mut std::fs::File>) -> io::Result<Unpacked> {
    let mut h = HashRead {
        inner: uncompressed(r)?,
        hash: Sha256::new(),
        bytes: 0,
    };
    // Reading on to the end after the headers is what hashes (and spools) the rest.
    let entries = match spool {
        Some(f) => {
            let mut tee = Tee {
                inner: &mut h,
                out: BufWriter::with_capacity(1 << 20, f),
            };
            let entries = reproduce::layer_entries(&mut tee).ok();
            io::copy(&mut tee, &mut io::sink())?;
            tee.out.flush()?;
            entries
        }
        None => {
            let entries = reproduce::layer_entries(&mut h).ok();
            io::copy(&mut h, &mut io::sink())?;
            entries
        }
    };
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex(h.hash.finalize())),
        bytes: h.bytes,
        entries,
    })
}

/// Decompresses and hashes one layer into a spool; a layer that turns out to be a base layer
/// (a blob name that was not its diff id) is dropped at once, its entries kept in `below`.
fn spool_layer<R: Read>(
    r: R,
    path: &str,
    plan: &Plan,
    scratch: &Path,
    raw: &mut Added,
    below: &mut BTreeMap<usize, Option<Vec<reproduce::LowerEntry>>>,
    timings: &mut Timings,
) -> Result<(), NormaliseError> {
    let started = Instant::now();
    let mut spool = tempfile::Builder::new()
        .prefix("raw-")
        .tempfile_in(scratch)?;
    let Unpacked {
        diff_id: id,
        bytes,
        entries,
    } = unpack(r, Some(spool.as_file_mut())).map_err(|e| bad(format!("{path}: {e}")))?;
    timings.spool += started.elapsed();
    match plan.diff_ids.iter().position(|d| *d == id) {
        Some(i) if i >= plan.keep => {
            timings.bytes_added += bytes;
            spool.as_file_mut().seek(SeekFrom::Start(0))?;
            raw.insert(i, (spool, path.to_string()));
        }
        Some(_) => {
            timings.bytes_skipped += bytes;
            for (i, _) in plan.diff_ids[..plan.keep]
                .iter()
                .enumerate()
                .filter(|(_, d)| **d == id)
            {
                below.insert(i, entries.clone());
            }
        }
        // Not a layer of this image (an attestation blob, say).
        None => {}
    }
    Ok(())
}

/// Writes the load archive for `store`; returns the id the engine will give the image.
/// Rewritten layers go uncompressed: a second compression pass would cost more than it saves
/// on a local load, and gzip output is not the same from one implementation to the next.
pub fn write_load<W: Write>(
    out: W,
    store: Store,
    read: &SavedImage,
    epoch: u64,
) -> Result<String, NormaliseError> {
    let n = &read.normalised;
    let config_bytes = serde_json::to_vec(&n.config).expect("a JSON value serializes");
    let config_id = sha256_id(&config_bytes);
    let mut b = tar::Builder::new(out);
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(epoch);
        h.set_size(size);
        h
    };
    let add_bytes = |b: &mut tar::Builder<W>, path: &str, bytes: &[u8]| -> io::Result<()> {
        b.append_data(&mut header(bytes.len() as u64), path, bytes)
    };
    let layer_path = |id: &str| match store {
        Store::Classic => format!("{}/layer.tar", id.trim_start_matches("sha256:")),
        Store::Containerd => blob_path(id),
    };
    let mut written = std::collections::HashSet::new();
    for s in &read.spooled {
        let path = layer_path(&s.diff_id);
        if !written.insert(path.clone()) {
            continue;
        }
        let mut f = s.file.reopen()?;
        f.seek(SeekFrom::Start(0))?;
        b.append_data(
            &mut header(s.bytes),
            &path,
            BufReader::with_capacity(1 << 20, f),
        )?;
    }
    let image_id = match store {
        Store::Classic => {
            let name = format!("{}.json", config_id.trim_start_matches("sha256:"));
            add_bytes(&mut b, &name, &config_bytes)?;
            let manifest = [SaveManifest {
                config: name,
                layers: n.layers.iter().map(|l| layer_path(&l.diff_id)).collect(),
                repo_tags: None,
            }];
            add_bytes(&mut b, "manifest.json", &sorted_json(&manifest))?;
            config_id
        }
        Store::Containerd => {
            if read.base_descriptors.len() < n.layers.iter().filter(|l| !l.rewritten).count() {
                return Err(bad("the saved manifest does not list the base layers"));
            }
            let mut layers: Vec<Descriptor> = Vec::new();
            for l in &n.layers {
                if l.rewritten {
                    let size = read
                        .spooled
                        .iter()
                        .find(|s| s.index == l.index)
                        .map(|s| s.bytes)
                        .unwrap_or(0);
                    layers.push(Descriptor::new(
                        MediaType::ImageLayer,
                        size,
                        oci_digest(&l.diff_id)?,
                    ));
                } else {
                    // Only what identifies the blob: the engine has it, by this digest.
                    let d = &read.base_descriptors[l.index];
                    layers.push(Descriptor::new(
                        d.media_type().clone(),
                        d.size(),
                        d.digest().clone(),
                    ));
                }
            }
            let config = Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                oci_digest(&config_id)?,
            );
            let manifest = ImageManifestBuilder::default()
                .schema_version(oci_spec::image::SCHEMA_VERSION)
                .media_type(MediaType::ImageManifest)
                .config(config)
                .layers(layers)
                .build()
                .map_err(|e| bad(format!("the load manifest: {e}")))?;
            let manifest_bytes = sorted_json(&manifest);
            let manifest_id = sha256_id(&manifest_bytes);
            add_bytes(&mut b, &blob_path(&config_id), &config_bytes)?;
            add_bytes(&mut b, &blob_path(&manifest_id), &manifest_bytes)?;
            let layout = OciLayoutBuilder::default()
                .image_layout_version("1.0.0")
                .build()
                .map_err(|e| bad(format!("the load's oci-layout: {e}")))?;
            add_bytes(&mut b, "oci-layout", &sorted_json(&layout))?;
            let index = ImageIndexBuilder::default()
                .schema_version(oci_spec::image::SCHEMA_VERSION)
                .media_type(MediaType::ImageIndex)
                .manifests(vec![Descriptor::new(
                    MediaType::ImageManifest,
                    manifest_bytes.len() as u64,
                    oci_digest(&manifest_id)?,
                )])
                .build()
                .map_err(|e| bad(format!("the load index: {e}")))?;
            add_bytes(&mut b, "index.json", &sorted_json(&index))?;
            manifest_id
        }
    };
    b.into_inner()?.flush()?;
    Ok(image_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A containerd-store save: index -> manifest -> config, a base blob that must be
    /// skipped unread, and a gzip layer the build added.
    #[test]
    fn a_containerd_save_with_a_gzip_layer_is_read_and_loads_as_an_oci_layout() {
        use std::io::Write as _;
        let base = b"not even a tar: never read".to_vec();
        let base_id = sha256_id(&base);
        let layer = tar_of(&[("etc/x.conf", b"x=1\n".to_vec())]);
        let layer_id = sha256_id(&layer);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "created": "2026-12-01T00:00:00Z",
            "history": [{"created": "2020-01-01T00:00:00Z"}, {"created": "2026-12-01T00:00:00Z", "created_by": "RUN x"}],
            "rootfs": {"type": "layers", "diff_ids": [base_id, layer_id]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_id(&config), "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": base_id, "size": base.len()},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_id(&gz), "size": gz.len()},
            ],
        }))
        .unwrap();
        // BuildKit's attestation manifest comes first: it is passed over.
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_id(b"attestation"), "size": 11,
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                 "platform": {"architecture": "unknown", "os": "unknown"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_id(&manifest), "size": manifest.len(),
                 "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        }))
        .unwrap();
        let save = tar_of(&[
            (&blob_path(&sha256_id(&config)), config.clone()),
            (&blob_path(&sha256_id(&gz)), gz.clone()),
            (&blob_path(&base_id), base.clone()),
            (&blob_path(&sha256_id(&manifest)), manifest.clone()),
            ("index.json", index),
        ]);
        let plan = Plan {
            diff_ids: vec![base_id.clone(), layer_id.clone()],
            keep: 1,
            epoch: 1000,
        };
        let scratch = tempfile::tempdir().unwrap();
        let mut t = Timings::default();
        let (saved, base_lower) =
            read_save(save.as_slice(), &plan, scratch.path(), &mut t).unwrap();
        assert_eq!(t.bytes_skipped, base.len() as u64);
        assert!(base_lower.unknown, "the base blob is not a tar");
        assert_eq!(saved.spooled.len(), 1);
        assert_eq!(saved.normalised.layers[0].diff_id, base_id);
        assert!(saved.normalised.layers[1].rewritten);
        assert_eq!(saved.normalised.config["created"], "1970-01-01T00:16:40Z");
        // Only the rewritten layer's spool is left in the scratch folder.
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 1);

        let mut out = Vec::new();
        let id = write_load(&mut out, Store::Containerd, &saved, 1000).unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let mut names = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            names.insert(e.path().unwrap().to_string_lossy().into_owned(), v);
        }
        assert!(
            !names.contains_key(&blob_path(&base_id)),
            "the base is not loaded again"
        );
        let m: serde_json::Value = serde_json::from_slice(&names[&blob_path(&id)]).unwrap();
        assert_eq!(m["layers"][0]["digest"], base_id.as_str());
        assert_eq!(m["layers"][1]["digest"], saved.spooled[0].diff_id.as_str());
        assert_eq!(
            m["layers"][1]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar"
        );
        let idx: serde_json::Value = serde_json::from_slice(&names["index.json"]).unwrap();
        assert_eq!(idx["manifests"][0]["digest"], id.as_str());

        // The same image as a registry receives it from a push: the gzip layer and the
        // config as uploads, the manifest as the tag's; the base never sent.
        let pushed = tempfile::tempdir().unwrap();
        let layer_in = receive_blob(gz.as_slice(), Some(pushed.path())).unwrap();
        assert_eq!(layer_in.digest, sha256_id(&gz));
        assert_eq!(layer_in.size, gz.len() as u64);
        assert_eq!(layer_in.diff_id, layer_id);
        assert_eq!(layer_in.bytes, layer.len() as u64);
        assert_eq!(
            std::fs::read(layer_in.spool.as_ref().unwrap().path()).unwrap(),
            layer
        );
        assert_eq!(layer_in.entries.as_ref().map(Vec::len), Some(1));
        let config_in = receive_blob(config.as_slice(), Some(pushed.path())).unwrap();
        assert_eq!(config_in.digest, sha256_id(&config));
        let by_digest =
            HashMap::from([(config_in.digest.clone(), small_blob(&config_in).unwrap())]);
        let (config_digest, layers) = pushed_manifest(&manifest, &HashMap::new()).unwrap();
        assert_eq!(config_digest, sha256_id(&config));
        assert_eq!(layers[1].digest().to_string(), layer_in.digest);
        let (pushed_cfg, descs) = pushed_config(&manifest, &by_digest).unwrap();
        let added: Added = BTreeMap::from([(1, (layer_in.spool.unwrap(), "blob".to_string()))]);
        let mut t2 = Timings::default();
        let by_push = finish(&plan, pushed_cfg, descs, added, base_lower, &mut t2).unwrap();
        assert_eq!(by_push.normalised.image_id, saved.normalised.image_id);
        let mut out2 = Vec::new();
        let id2 = write_load(&mut out2, Store::Containerd, &by_push, 1000).unwrap();
        let mut out1 = Vec::new();
        assert_eq!(
            id2,
            write_load(&mut out1, Store::Containerd, &saved, 1000).unwrap()
        );
        assert_eq!(out1, out2, "the push and the save load the same archive");

        // The load archives, byte for byte as before the manifests were typed: the containerd
        // id is the manifest's digest, and the archives are what the reproducibility runs
        // compare.
        assert_eq!(
            id2,
            "sha256:c45f531c13cf4e2597c89cdbf19cf39d2a8e5d6623d1d7060f5397b0d667301d"
        );
        assert_eq!(
            sha256_id(&out1),
            "sha256:d5cf3a8ad1d0908cf1911593ee9a1ec929e7c02bba25e1857ab54fdc70d6dca9"
        );
        let mut out = Vec::new();
        let id = write_load(&mut out, Store::Classic, &saved, 1000).unwrap();
        assert_eq!(id, saved.normalised.image_id);
        assert_eq!(
            sha256_id(&out),
            "sha256:eafeb0c71dc5748361052acffb6f10f38b73b94427668936acbfe41a42e973cb"
        );
        drop(saved);
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_received_blob_is_hashed_whole_trailing_bytes_included() {
        // A tar read only to its end-of-archive marker still counts every byte sent.
        let mut layer = tar_of(&[("a", b"1".to_vec())]);
        layer.extend_from_slice(&[0u8; 4096]);
        let r = receive_blob(layer.as_slice(), None).unwrap();
        assert_eq!(r.digest, sha256_id(&layer));
        assert_eq!(r.diff_id, r.digest, "not compressed: one hash");
        assert_eq!(r.size, layer.len() as u64);
        assert!(r.spool.is_none());
        assert_eq!(r.entries.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn chain_ids_follow_moby() {
        let ids = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let c = chain_ids(&ids);
        assert_eq!(c[0], "sha256:a");
        assert_eq!(c[1], sha256_id(b"sha256:a sha256:b"));
    }

    #[test]
    fn a_docker_20_v1_id_names_its_layer() {
        // `docker save` of a four-layer image on Docker 20.10.24: the second layer's folder
        // and its json (moby adds `os` after computing the id of a lower layer).
        let diff_ids: Vec<String> = [
            "sha256:8ee4aebee52bd0152db6f5d842d6e7fbe013b4c5d77a077f1e2122650d3da4cb",
            "sha256:241d9d909c4314a51c3121410981b9a943b7b0d031d7e765337d19324f79fb79",
            "sha256:c44e757f7cf4d019892fdfa28bb04a17185e75f6f226d3cc92402f73801d9406",
            "sha256:44117b86299912de2df9d6fca75c9ca8c8fedbd5f3ece5aedee2a949b11c496a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let chains = chain_ids(&diff_ids);
        let dir = "991e6d5c339636980deefa98f36f807b9bf265cec23a3a0bc6863ab407536c6a";
        let json = br#"{"id":"991e6d5c339636980deefa98f36f807b9bf265cec23a3a0bc6863ab407536c6a","parent":"6b25fa9bfa3d6936e109b5bbe0d57fa780e5b44ab66b8acfb53fa8d5438d37bd","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}"#;
        assert_eq!(v1_layer_index(dir, json, &chains), Some(1));
        assert_eq!(v1_layer_index(dir, json, &chains[..1]), None);
    }
}
