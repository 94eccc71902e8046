//! Push, pull and registry look-ups through the engine, which does the registry protocol
//! (and its insecure-loopback rules) for us; credentials go in the X-Registry-Auth header
//! and nowhere else.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{describe, Engine, EngineError};

use crate::registry::{Credential, Credentials, RegistryAnswer, RegistryFailure, RegistryOp};

/// Progress of a push or pull. The engine names the layer on pulls; its push stream names
/// it too, but bollard's `PushImageInfo` drops that field, so push events carry no layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferEvent {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

fn header(creds: Option<&Credentials>) -> Option<DockerCredentials> {
    let c = creds?;
    let mut d = DockerCredentials {
        serveraddress: Some(c.host.clone()),
        ..Default::default()
    };
    match &c.credential {
        Credential::UsernamePassword { username, password } => {
            d.username = Some(username.clone());
            d.password = Some(password.expose().to_string());
        }
        Credential::IdentityToken(t) => d.identitytoken = Some(t.expose().to_string()),
    }
    Some(d)
}

impl EngineError {
    /// A registry failure, classed for the exit code from what the engine said: its HTTP
    /// status where it answered with one, and the registry's error code in its message (the
    /// engine passes the registry's error on only as text, in its message or stream).
    pub fn registry(
        what: impl Into<String>,
        op: RegistryOp,
        status: Option<u16>,
        message: String,
    ) -> Self {
        let class = RegistryFailure::of(op, &RegistryAnswer::read(status, &message));
        EngineError::Registry {
            what: what.into(),
            detail: message,
            class,
        }
    }

    /// The same from a bollard error: a server error keeps its status.
    fn registry_call(what: impl Into<String>, op: RegistryOp, e: &bollard::errors::Error) -> Self {
        // The engine's own message is read; the detail shown adds its status.
        let (status, message) = match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => (Some(*status_code), message.clone()),
            other => (None, describe(other)),
        };
        EngineError::Registry {
            what: what.into(),
            detail: describe(e),
            class: RegistryFailure::of(op, &RegistryAnswer::read(status, &message)),
        }
    }
}

impl Engine {
    /// The manifest digest `reference` names in its registry (the manifest list's, for a
    /// multi-platform image), asked of the engine (`GET /distribution/{name}/json`, so its
    /// TLS, insecure-registry list and mirrors apply) without pulling. The one look-up behind
    /// [`Engine::registry_digest`] and [`Engine::resolve_digest`]: a failure is classed from
    /// the engine's answer, and an answer without a sha256 digest is an error, never a digest.
    pub(super) async fn lookup_digest(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
        what: String,
    ) -> Result<String, EngineError> {
        match self
            .docker
            .inspect_registry_image(reference, header(creds))
            .await
        {
            Ok(d) => match d.descriptor.digest {
                Some(digest) if crate::hex::is_sha256_digest(&digest) => Ok(digest),
                other => Err(EngineError::Registry {
                    what,
                    detail: format!(
                        "the engine answered without a manifest digest (got {:?})",
                        other.unwrap_or_default()
                    ),
                    class: RegistryFailure::Other,
                }),
            },
            Err(e) => Err(EngineError::registry_call(what, RegistryOp::Lookup, &e)),
        }
    }

    /// The manifest digest of `reference` in its registry, or None when the tag is not
    /// there, or the registry answers DENIED as GHCR does for a package never pushed ("not
    /// there yet": a push that follows says whether access was the problem). Unreachable and
    /// refused credentials are errors (the caller decides whether that stops it).
    pub async fn registry_digest(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, EngineError> {
        match self
            .lookup_digest(reference, creds, format!("looking up {reference}"))
            .await
        {
            Ok(digest) => Ok(Some(digest)),
            Err(EngineError::Registry {
                class: RegistryFailure::NotFound | RegistryFailure::NotThereYet,
                ..
            }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Pulls `repo:tag` (always a named tag).
    pub async fn pull(
        &self,
        repo: &str,
        tag: &str,
        creds: Option<&Credentials>,
        emit: &mut dyn FnMut(TransferEvent),
    ) -> Result<(), EngineError> {
        let what = format!("pulling {repo}:{tag}");
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, header(creds));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::registry_call(&what, RegistryOp::Pull, &e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::registry(&what, RegistryOp::Pull, None, err));
            }
            if let Some(status) = info.status {
                emit(TransferEvent {
                    layer: info.id,
                    status,
                    current: info.progress_detail.as_ref().and_then(|p| p.current),
                    total: info.progress_detail.as_ref().and_then(|p| p.total),
                });
            }
        }
        Ok(())
    }

    /// Pushes the one tag `repo:tag` (bollard without a tag pushes every tag of the
    /// repository) and returns the pushed manifest digest.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        creds: Option<&Credentials>,
        emit: &mut dyn FnMut(TransferEvent),
    ) -> Result<String, EngineError> {
        let what = format!("pushing {repo}:{tag}");
        let opts = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = self.docker.push_image(repo, Some(opts), header(creds));
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Err(e) if digest.is_some() && super::stray_end_of_stream(&e) => break,
                other => {
                    other.map_err(|e| EngineError::registry_call(&what, RegistryOp::Push, &e))?
                }
            };
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::registry(&what, RegistryOp::Push, None, err));
            }
            if let Some(status) = info.status {
                if let Some(d) = crate::registry::pushed_digest(&status) {
                    digest = Some(d);
                }
                emit(TransferEvent {
                    layer: None,
                    status,
                    current: info.progress_detail.as_ref().and_then(|p| p.current),
                    total: info.progress_detail.as_ref().and_then(|p| p.total),
                });
            }
        }
        match digest {
            Some(d) => Ok(d),
            // Older engines put it only in RepoDigests.
            None => self
                .repo_digest(&format!("{repo}:{tag}"), repo)
                .await?
                .ok_or_else(|| EngineError::Registry {
                    what,
                    detail: "the engine reported no pushed digest".into(),
                    class: RegistryFailure::Other,
                }),
        }
    }

    /// The `repo@sha256:...` digest the engine recorded for an image, for `repo`.
    pub async fn repo_digest(
        &self,
        reference: &str,
        repo: &str,
    ) -> Result<Option<String>, EngineError> {
        let i = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|e| EngineError::api(format!("inspecting image {reference}"), e))?;
        Ok(i.repo_digests
            .unwrap_or_default()
            .into_iter()
            .find_map(|d| {
                d.strip_prefix(&format!("{repo}@"))
                    .map(|digest| digest.to_string())
            }))
    }

    /// Removes one tag (never the image's layers while another tag holds them). A tag that
    /// is already gone is fine.
    pub async fn untag(&self, reference: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptionsBuilder::default().noprune(true).build()),
                None,
            )
            .await
        {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::api(format!("removing tag {reference}"), e)),
        }
    }

    /// `docker import` of a tar with `LABEL` changes: the tiny smoke-report image.
    /// Label values must be plain tokens (the engine parses `LABEL k=v` like a Dockerfile).
    pub async fn import(
        &self,
        tar: Vec<u8>,
        repo: &str,
        tag: &str,
        labels: &[(String, String)],
    ) -> Result<String, EngineError> {
        let what = format!("importing {repo}:{tag}");
        let changes: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("LABEL {k}={v}"))
            .collect();
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
        let mut id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::api(&what, e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Api { what, detail: err });
            }
            if let Some(s) = info.status {
                if s.starts_with("sha256:") {
                    id = Some(s.trim().to_string());
                }
            }
        }
        id.ok_or_else(|| EngineError::Api {
            what,
            detail: "the engine reported no image id".into(),
        })
    }
}
