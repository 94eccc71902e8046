//! The OCI documents of a save, a push and a load, as oci-spec's types: indexes, image
//! manifests and their descriptors, and Docker's own `manifest.json`. Reading takes Docker's
//! media types as they come (`MediaType::Other`); writing sorts the keys, as it always has.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, Os, RootFs};
use serde::{Deserialize, Serialize};

use super::bad;
use crate::reproduce::NormaliseError;

pub(super) fn json_of<T: serde::de::DeserializeOwned>(
    metadata: &HashMap<String, Vec<u8>>,
    path: &str,
) -> Result<T, NormaliseError> {
    let bytes = metadata
        .get(path)
        .ok_or_else(|| bad(format!("no `{path}` in it")))?;
    serde_json::from_slice(bytes).map_err(|e| bad(format!("{path}: {e}")))
}

/// An index or an image manifest. Docker writes a descriptor's `size` with `omitempty`: the
/// classic store, pushing a layer the registry said it had without giving its length (our
/// sink), sends a manifest without `size` there. oci-spec requires one, so a missing size is
/// read as 0; nothing here relies on it (the load manifest copies sizes only from the
/// containerd store, which always writes them).
fn oci_document<T: serde::de::DeserializeOwned>(
    metadata: &HashMap<String, Vec<u8>>,
    path: &str,
) -> Result<T, NormaliseError> {
    let mut document: serde_json::Value = json_of(metadata, path)?;
    if let Some(top) = document.as_object_mut() {
        let descriptors = top.iter_mut().flat_map(|(k, v)| match (k.as_str(), v) {
            ("config", d) => vec![d],
            ("layers" | "manifests", serde_json::Value::Array(list)) => list.iter_mut().collect(),
            _ => vec![],
        });
        for d in descriptors.filter_map(|d| d.as_object_mut()) {
            d.entry("size").or_insert(0.into());
        }
    }
    serde_json::from_value(document).map_err(|e| bad(format!("{path}: {e}")))
}

pub(super) fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The image config is kept as the engine wrote it, every field (Docker's `container_config`,
/// `docker_version`... that oci-spec's `ImageConfiguration` drops): its rewrite is hashed into
/// the image id. Only the layer list is read, as a type.
#[derive(Deserialize)]
pub(super) struct ConfigLayers {
    pub rootfs: RootFs,
}

/// An index (it lists manifests) or an image manifest: the one key that tells them apart,
/// whether or not the document names its media type (Docker's and OCI's spell it apart).
#[derive(Deserialize)]
struct Listing {
    manifests: Option<serde::de::IgnoredAny>,
}

/// BuildKit's provenance and SBOM manifests, beside the image's in an index.
fn is_attestation(d: &Descriptor) -> bool {
    let annotated = d
        .annotations()
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|t| t == "attestation-manifest");
    let no_os = d
        .platform()
        .as_ref()
        .is_some_and(|p| *p.os() == Os::Other("unknown".into()));
    annotated || no_os
}

/// The image manifest below `index.json` (an index, or the manifest itself).
pub(super) fn find_manifest(
    metadata: &HashMap<String, Vec<u8>>,
) -> Result<ImageManifest, NormaliseError> {
    let mut path = "index.json".to_string();
    // Index -> (index ->) manifest; BuildKit's attestation manifests are skipped.
    for _ in 0..4 {
        let listing: Listing = json_of(metadata, &path)?;
        if listing.manifests.is_none() {
            break;
        }
        let index: ImageIndex = oci_document(metadata, &path)?;
        let pick = index
            .manifests()
            .iter()
            .find(|m| !is_attestation(m))
            .ok_or_else(|| bad(format!("{path} lists no image manifest")))?;
        path = blob_path(pick.digest().as_ref());
    }
    oci_document(metadata, &path)
}

/// The image config, and (OCI layouts) the base layers' descriptors from the manifest.
pub(super) fn find_config(
    metadata: &HashMap<String, Vec<u8>>,
) -> Result<(serde_json::Value, Vec<Descriptor>), NormaliseError> {
    if metadata.contains_key("index.json") {
        let manifest = find_manifest(metadata)?;
        let config = json_of(metadata, &blob_path(manifest.config().digest().as_ref()))?;
        return Ok((config, manifest.layers().clone()));
    }
    let manifest: Vec<SaveManifest> = json_of(metadata, "manifest.json")?;
    let first = manifest
        .first()
        .ok_or_else(|| bad("manifest.json lists no image"))?;
    Ok((json_of(metadata, &first.config)?, vec![]))
}

/// One image of a `docker save` archive's `manifest.json` (Docker's own format, older than
/// OCI layouts; the classic store loads it). Written with its keys sorted, as it always was.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SaveManifest {
    pub config: String,
    pub layers: Vec<String>,
    pub repo_tags: Option<Vec<String>>,
}

/// JSON with its keys sorted at every level, the form every document this tool writes into a
/// load has had: the manifest's bytes are the image id on the containerd store, so they must
/// not follow the field order of a crate's structs.
pub(super) fn sorted_json(document: &impl Serialize) -> Vec<u8> {
    let tree = serde_json::to_value(document).expect("an OCI document is plain JSON");
    serde_json::to_vec(&tree).expect("a JSON value serializes")
}

/// A digest this tool computed (`sha256:` and 64 hex), as oci-spec's type.
pub(super) fn oci_digest(digest: &str) -> Result<oci_spec::image::Digest, NormaliseError> {
    digest
        .parse()
        .map_err(|e| bad(format!("`{digest}` is not a digest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// What the classic store pushes: Docker's schema 2 media types, read as they are.
    #[test]
    fn a_docker_schema2_manifest_is_read_with_its_own_media_types() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": sha(1)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": sha(2)}],
        });
        let metadata = HashMap::from([
            (
                "index.json".to_string(),
                serde_json::to_vec(&manifest).unwrap(),
            ),
            (
                blob_path(&sha(1)),
                br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
            ),
        ]);
        let (config, layers) = find_config(&metadata).unwrap();
        assert_eq!(
            ConfigLayers::deserialize(&config).unwrap().rootfs.typ(),
            "layers"
        );
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest().to_string(), sha(2));
        assert_eq!(
            layers[0].media_type().to_string(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        // Written back, a descriptor keeps Docker's media type and sorts its keys.
        let d = Descriptor::new(
            layers[0].media_type().clone(),
            9,
            layers[0].digest().clone(),
        );
        assert_eq!(
            String::from_utf8(sorted_json(&d)).unwrap(),
            format!(
                r#"{{"digest":"{}","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9}}"#,
                sha(2)
            )
        );
    }

    /// Docker 20.10's push to our sink, for a layer the sink said it had: no `size`.
    #[test]
    fn a_descriptor_without_a_size_is_read_as_size_0() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}"}}]}}"#,
            sha(1),
            sha(2)
        );
        let metadata = HashMap::from([("index.json".to_string(), manifest.into_bytes())]);
        let m = find_manifest(&metadata).unwrap();
        assert_eq!(m.config().size(), 7);
        assert_eq!(
            (m.layers()[0].size(), m.layers()[0].digest().to_string()),
            (0, sha(2))
        );
    }

    #[test]
    fn a_broken_document_names_its_file_and_what_is_missing() {
        let only_attestations = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(3), "size": 1,
             "platform": {"architecture": "unknown", "os": "unknown"}},
        ]});
        let no_layers = serde_json::json!({"schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1, "digest": sha(1)}});
        for (index, says) in [
            (only_attestations, "index.json lists no image manifest"),
            (no_layers, "index.json: missing field `layers`"),
        ] {
            let metadata = HashMap::from([(
                "index.json".to_string(),
                serde_json::to_vec(&index).unwrap(),
            )]);
            let e = find_config(&metadata).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let save = HashMap::from([("manifest.json".to_string(), b"[]".to_vec())]);
        let e = find_config(&save).unwrap_err().to_string();
        assert!(e.contains("manifest.json lists no image"), "{e}");
        assert!(oci_digest("sha256:short").is_err());
    }
}
