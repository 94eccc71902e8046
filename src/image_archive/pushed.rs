//! The other way in: an image as a registry receives it from a push (src/engine/sink.rs),
//! blob by blob, instead of as one `docker save` stream.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::Descriptor;
use sha2::{Digest, Sha256};

use super::documents::{blob_path, find_config, find_manifest};
use super::{unpack, HashRead, Unpacked, METADATA_LIMIT};
use crate::hex::encode as hex;
use crate::reproduce::{self, NormaliseError};

/// One blob as a registry receives it (src/engine/sink.rs): the digest of the bytes as
/// sent, and, uncompressed, its diff id, size, tar entries (for [`reproduce::Lower`]) and,
/// when `spool_in` names a folder, a spool of it. Both hashes are taken as the bytes pass.
pub struct Received {
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub bytes: u64,
    pub entries: Option<Vec<reproduce::LowerEntry>>,
    pub spool: Option<tempfile::NamedTempFile>,
}

pub fn receive_blob<R: Read>(r: R, spool_in: Option<&Path>) -> io::Result<Received> {
    let mut raw = HashRead {
        inner: r,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut spool = spool_in
        .map(|d| tempfile::Builder::new().prefix("blob-").tempfile_in(d))
        .transpose()?;
    let Unpacked {
        diff_id,
        bytes,
        entries,
    } = unpack(&mut raw, spool.as_mut().map(|f| f.as_file_mut()))?;
    // Whatever follows the end of a gzip stream is part of the blob, and of its digest.
    io::copy(&mut raw, &mut io::sink())?;
    Ok(Received {
        digest: format!("sha256:{}", hex(raw.hash.finalize())),
        size: raw.bytes,
        diff_id,
        bytes,
        entries,
        spool,
    })
}

/// A small blob's bytes (a config), read back from its spool.
pub fn small_blob(r: &Received) -> Option<Vec<u8>> {
    if r.bytes > METADATA_LIMIT {
        return None;
    }
    std::fs::read(r.spool.as_ref()?.path()).ok()
}

/// The pushed image, as the registry saw it: `top` is the manifest (or index) the tag
/// names, `blobs` the small blobs and manifests by digest. Returns the config and the
/// manifest's layer descriptors, as `find_config` does for a save.
pub fn pushed_config(
    top: &[u8],
    by_digest: &HashMap<String, Vec<u8>>,
) -> Result<(serde_json::Value, Vec<Descriptor>), NormaliseError> {
    find_config(&as_layout(top, by_digest))
}

/// The pushed image manifest: its config digest and layer descriptors, config or not.
pub fn pushed_manifest(
    top: &[u8],
    by_digest: &HashMap<String, Vec<u8>>,
) -> Result<(String, Vec<Descriptor>), NormaliseError> {
    let manifest = find_manifest(&as_layout(top, by_digest))?;
    Ok((
        manifest.config().digest().to_string(),
        manifest.layers().clone(),
    ))
}

fn as_layout(top: &[u8], by_digest: &HashMap<String, Vec<u8>>) -> HashMap<String, Vec<u8>> {
    let mut metadata: HashMap<String, Vec<u8>> = by_digest
        .iter()
        .map(|(d, b)| (blob_path(d), b.clone()))
        .collect();
    metadata.insert("index.json".into(), top.to_vec());
    metadata
}
