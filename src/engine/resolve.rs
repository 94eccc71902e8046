//! Tag -> digest for `lock`, as the engine sees the registry (its TLS, its insecure-registry
//! list, its mirrors): the same look-up as [`Engine::registry_digest`], anonymous, where a
//! tag that is not there is an error.

use super::{Engine, EngineError};

impl Engine {
    /// The content digest a tag points at in its registry (the manifest list's, for a
    /// multi-platform image), without pulling it.
    pub async fn resolve_digest(&self, reference: &str) -> Result<String, EngineError> {
        self.lookup_digest(
            reference,
            None,
            format!("resolving {reference} in its registry"),
        )
        .await
    }
}
