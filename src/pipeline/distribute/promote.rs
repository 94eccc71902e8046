//! Promotion from nightly to stable: pull the nightly by digest, test it at the
//! level stable needs, and only on a pass push the report and the stable tags.

use super::*;
use crate::values::reference::Reference;

#[derive(Debug, Clone, Serialize)]
pub struct PromoteOutcome {
    pub recipe: String,
    pub nightly: String,
    pub image_id: String,
    pub level: Level,
    pub promoted: bool,
    pub smoke: Option<SmokeResult>,
    /// The stable tag's digest before; after, when promoted.
    pub stable_before: Option<String>,
    pub tags: Vec<PushedTag>,
}

/// The digest of `--image REF@sha256:<hex>`: promote tests and moves exactly the manifest
/// the nightly built and signed, never what a moving tag names by the time it runs.
pub fn pinned_digest(given: &str) -> Result<(String, String), DistError> {
    let moving = || {
        DistError::Input(format!(
            "--image {given}: a tag moves, so it does not say which image was built and signed; \
             give the digest the nightly pushed, as REPO@sha256:<64 hex> (the nightly job's `digest` output)"
        ))
    };
    if !given.contains('@') {
        return Err(moving());
    }
    let reference =
        Reference::parse(given).map_err(|e| DistError::Input(format!("--image {given}: {e}")))?;
    // `repo:tag@sha256:...` is allowed; the tag is ignored, the digest decides.
    let digest = reference.digest().ok_or_else(moving)?;
    Ok((reference.name(), digest.to_string()))
}

/// Pulls the nightly image (exactly `image`'s digest, or the one `<recipe>-nightly` names
/// now, resolved once), smoke tests it at `level`, and only on a pass pushes its report and
/// moves the stable tags to it. On a failure nothing in the registry moves.
pub async fn promote(
    engine: &Engine,
    remote: &Remote,
    target: &Target<'_>,
    level: Level,
    image: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<PromoteOutcome, DistError> {
    let r = &target.recipe;
    let prepared = &target.prepared;
    let nightly_tag = Channel::Nightly.tag(&r.name);
    let digest = match image {
        Some(given) => {
            let (repo, digest) = pinned_digest(given)?;
            if repo != remote.repo.name() {
                return Err(DistError::Input(format!(
                    "--image {given} is in repository {repo}, but the registry is {}: promote moves the tags of one repository",
                    remote.repo.name()
                )));
            }
            digest
        }
        None => {
            let nightly = remote.repo.reference(&nightly_tag);
            let d = engine
                .registry_digest(&nightly, remote.creds.as_ref())
                .await?
                .ok_or_else(|| DistError::Job(format!("{nightly} is not in the registry")))?;
            progress.note(&format!(
                "WARNING: no --image REF@sha256:...: promoting what {nightly} names now ({d}); the nightly passes the digest it signed"
            ));
            d
        }
    };
    let nightly = format!("{}@{digest}", remote.repo.name());
    let stable_before = engine
        .registry_digest(&remote.repo.reference(&r.name), remote.creds.as_ref())
        .await?;
    progress.note(&format!("pulling {nightly}"));
    let (image, _, pulled) = pull_checked(engine, remote, &r.name, &digest, progress).await?;
    // The digest the report and the stable tags are recorded under is the one the image
    // carries: a label that is missing or not a digest stops here, before anything moves.
    let label = image.labels.get(labels::INPUT_DIGEST);
    let nightly_digest = match label_digest(&nightly, label) {
        Ok(Some(d)) => d,
        other => {
            pulled.release().await?;
            engine.remove_untagged(&image.id).await?;
            return Err(other.err().unwrap_or_else(|| {
                DistError::Job(format!(
                    "{nightly} has no {} label: promote records the pass under the input digest the image was built from; promote a nightly that rdna1-images built",
                    labels::INPUT_DIGEST
                ))
            }));
        }
    };
    let digest = nightly_digest;
    if nightly_digest != prepared.digest {
        progress.note(&format!(
            "note: {nightly} was built from a different recipe version (input digest {}, the local recipe's is {}); it is judged against the local recipe's smoke spec",
            nightly_digest.hex(),
            prepared.digest.hex()
        ));
    }
    // An app's: the stack's suite and the app's own checks, as its build ran them.
    let result = smoke_target(engine, &image.id, target, level, progress).await;
    // The pulled nightly is not kept under the registry's name (only a pass tags anything);
    // its layers stay only while a local tag holds them. The name goes last (untagging the
    // only name deletes the image), and with its guard on an error or a signal.
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            pulled.release().await?;
            engine.remove_untagged(&image.id).await?;
            return Err(e.into());
        }
    };
    let mut outcome = PromoteOutcome {
        recipe: r.name.to_string(),
        nightly: nightly.clone(),
        image_id: image.id.clone(),
        level,
        promoted: false,
        smoke: Some(result.clone()),
        stable_before,
        tags: vec![],
    };
    if !result.passed {
        // Nothing it pulled stays behind unless a local tag already held it.
        pulled.release().await?;
        engine.remove_untagged(&image.id).await?;
        return Ok(outcome);
    }
    let report_ref = record_pass(engine, &r.name, &digest, &image.id, &result).await?;
    outcome.tags.push(
        push_one(
            engine,
            remote,
            &report_ref,
            &registry::report_tag(&r.name, &digest.short(), level),
            progress,
        )
        .await?,
    );
    let date = registry::date_tag(chrono::Utc::now());
    for t in Channel::Stable.tags(
        &r.name,
        &digest.short(),
        &date,
        r.status == Status::Recommended,
    ) {
        outcome
            .tags
            .push(push_one(engine, remote, &image.id, &t, progress).await?);
    }
    outcome.promoted = true;
    pulled.release().await?;
    engine.remove_untagged(&image.id).await?;
    Ok(outcome)
}

/// The input digest label of the image at `reference`, parsed: None when there is none, a
/// clear error when it is not 64 lowercase hex digits (short, malformed, non-ASCII: what a
/// registry hands us is never sliced by byte index). The label is shown escaped and cut.
pub(super) fn label_digest(
    reference: &str,
    label: Option<&String>,
) -> Result<Option<InputDigest>, DistError> {
    let Some(text) = label else {
        return Ok(None);
    };
    InputDigest::from_hex(text).map(Some).ok_or_else(|| {
        let shown: String = text.chars().take(80).collect();
        let cut = if shown.len() < text.len() { "..." } else { "" };
        DistError::Job(format!(
            "{reference}: its {} label {shown:?}{cut} is not an input digest (64 lowercase hex digits): the image was not built by rdna1-images or its labels were changed; it is not used",
            labels::INPUT_DIGEST
        ))
    })
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn malformed_short_and_non_ascii_labels_are_clear_errors_not_panics() {
        let good = "ab".repeat(32);
        assert_eq!(
            label_digest("r:t", Some(&good)).unwrap().unwrap().hex(),
            good
        );
        assert!(label_digest("r:t", None).unwrap().is_none());
        for bad in [
            "".to_string(),
            "abc".to_string(),
            "zz".repeat(32),
            format!("a{}b", "é".repeat(31)),
            format!("a{}", "é".repeat(7)),
            "x".repeat(500),
        ] {
            let e = label_digest("reg/repo:tag", Some(&bad)).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            let m = e.to_string();
            assert!(
                m.contains("reg/repo:tag") && m.contains("is not an input digest"),
                "{m}"
            );
            assert!(m.len() < 400, "the label is cut: {m}");
        }
    }

    #[test]
    fn pinned_digest_takes_the_repository_and_digest_and_says_what_is_wrong() {
        let d = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(
            pinned_digest(&format!("127.0.0.1:5000/x/y:nightly@{d}")).unwrap(),
            ("127.0.0.1:5000/x/y".to_string(), d.clone())
        );
        for (given, says) in [
            ("127.0.0.1:5000/x/y:nightly".to_string(), "a tag moves"),
            (
                "127.0.0.1:5000/x/y@sha256:1234".to_string(),
                "`sha256:1234` is not a digest",
            ),
            (format!("127.0.0.1:5000/X@{d}"), "path component `X`"),
            (format!("-h-.io:1/x@{d}"), "the registry host `-h-.io:1`"),
        ] {
            let e = pinned_digest(&given).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{given}");
            let m = e.to_string();
            assert!(
                m.contains(&format!("--image {given}")) && m.contains(says),
                "{m}"
            );
        }
    }
}
