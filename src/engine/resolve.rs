//! Tag -> digest through the registry API, as the engine sees the registry (its TLS, its
//! insecure-registry list, its mirrors): `GET /distribution/{name}/json`.

use super::{Engine, EngineError};

impl Engine {
    /// The content digest a tag points at in its registry (the manifest list's, for a
    /// multi-platform image), without pulling it.
    pub async fn resolve_digest(&self, reference: &str) -> Result<String, EngineError> {
        let d = self
            .docker
            .inspect_registry_image(reference, None)
            .await
            .map_err(|e| EngineError::api(format!("resolving {reference} in its registry"), e))?;
        d.descriptor.digest.ok_or_else(|| EngineError::Api {
            what: format!("resolving {reference} in its registry"),
            detail: "the registry answered without a digest".into(),
        })
    }
}
