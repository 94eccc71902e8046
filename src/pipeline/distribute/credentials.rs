//! The registry and its credentials: from the environment, stdin or the Docker config.

use super::*;

/// The most `--password-stdin` reads (registry tokens are a few KiB at most).
const PASSWORD_LIMIT: u64 = 64 * 1024;

/// Resolves the registry and its credentials: the tool's environment variables (password
/// from `--password-stdin` or the environment), else the Docker config and its credential
/// helpers (blocking: run off the async threads).
pub async fn remote(repo: &str, password_stdin: bool) -> Result<Remote, DistError> {
    let repo = Repository::parse(repo)?;
    let stdin = if password_stdin {
        // tokio's stdin reads on a blocking thread, so this await is a point where the
        // run's cancellation (`app::run`'s race) can end it: a Ctrl-C while stdin stays
        // open exits 130 at once. A blocking read here held the runtime's thread instead.
        // Bounded: a password is short, and stdin may be a file of any size.
        let mut s = String::new();
        let mut limited = tokio::io::AsyncReadExt::take(tokio::io::stdin(), PASSWORD_LIMIT + 1);
        tokio::io::AsyncReadExt::read_to_string(&mut limited, &mut s)
            .await
            .map_err(|e| DistError::Input(format!("--password-stdin: cannot read stdin: {e}")))?;
        if s.len() as u64 > PASSWORD_LIMIT {
            return Err(DistError::Input(format!(
                "--password-stdin: more than {PASSWORD_LIMIT} bytes on stdin: pipe only the password or token"
            )));
        }
        Some(s)
    } else {
        None
    };
    let user = std::env::var(registry::USER_ENV).ok();
    let password = std::env::var(registry::PASSWORD_ENV).ok();
    // The Docker config is read only when the tool's own variables are not set.
    let docker_config = if user.as_deref().is_some_and(|u| !u.is_empty()) || stdin.is_some() {
        DockerConfigLookup::Nothing
    } else {
        let host = repo.host.clone();
        tokio::task::spawn_blocking(move || docker_config_lookup(&host))
            .await
            .unwrap_or_else(|e| DockerConfigLookup::Failed(e.to_string()))
    };
    let creds = registry::resolve_credentials(&repo.host, user, password, stdin, || docker_config)
        .map_err(|e| match e {
            Ok(input) => DistError::from(input),
            Err(helper) => DistError::Credentials(helper),
        })?;
    Ok(Remote { repo, creds })
}

pub(super) fn docker_config_lookup(host: &str) -> DockerConfigLookup {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential as C};
    // docker_credential reports a missing file as unreadable; no file means anonymous.
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")));
    if !config.is_some_and(|d| d.join("config.json").exists()) {
        return DockerConfigLookup::Nothing;
    }
    match docker_credential::get_credential(host) {
        Ok(C::UsernamePassword(username, password)) => {
            DockerConfigLookup::Found(Credential::UsernamePassword {
                username,
                password: Secret::new(password),
            })
        }
        Ok(C::IdentityToken(t)) => DockerConfigLookup::Found(Credential::IdentityToken(Secret::new(t))),
        Err(E::ConfigNotFound | E::NoCredentialConfigured) => DockerConfigLookup::Nothing,
        // A helper's stdout may hold a secret: name the helper, never echo what it said,
        // except the helpers' own "not found" answer, which means anonymous.
        Err(E::HelperFailure { helper, stdout, .. }) => {
            if stdout.to_ascii_lowercase().contains("credentials not found") {
                DockerConfigLookup::Nothing
            } else {
                DockerConfigLookup::Failed(format!(
                    "the Docker credential helper `docker-credential-{helper}` failed for {host}: run `docker login {host}` again, or set RDNA1_IMAGES_REGISTRY_USER and RDNA1_IMAGES_REGISTRY_PASSWORD"
                ))
            }
        }
        Err(e) => DockerConfigLookup::Failed(format!(
            "reading the Docker config for {host}: {e} (fix ~/.docker/config.json or $DOCKER_CONFIG, or set RDNA1_IMAGES_REGISTRY_USER and RDNA1_IMAGES_REGISTRY_PASSWORD)"
        )),
    }
}
