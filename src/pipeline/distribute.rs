//! The registry side of the pipeline: push a tested image with its channel's tags and its
//! smoke report, pull a tag and say what it was built from and how it was tested,
//! pull-or-build, and promotion from nightly to stable.
//!
//! The rule it keeps: nothing reaches a channel without a passed smoke test of the level
//! that channel needs, and the report of that test travels beside the image (tag
//! `<recipe>-<digest12>-smoke-<level>`), so a puller can see it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::context::InputDigest;
use crate::engine::{Engine, EngineError, ImageSummary, TagGuard, TransferEvent};
use crate::labels;
use crate::pipeline::target::{smoke_target, Target};
use crate::pipeline::types::{
    self as pipeline, BuildOutcome, BuildStatus, Progress, PushedTag, RegistryPlan, Remote,
    SmokeResult, REPOSITORY,
};
use crate::recipe::Status;
use crate::registry::{
    self, labels as rlabels, Channel, Credential, DockerConfigLookup, RegistryInputError,
    Repository, Secret, TestedLevel,
};
use crate::smoke::Level;

mod credentials;
mod promote;
mod report;

pub use credentials::*;
pub use promote::*;
pub use report::record_pass;

/// Errors of the registry commands, with the CLI contract's exit code.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad input: exit 2.
    #[error("{0}")]
    Input(String),
    /// The job cannot be done (nothing tested to push, a nightly that failed): exit 1.
    #[error("{0}")]
    Job(String),
    /// The credential store failed: exit 3.
    #[error("{0}")]
    Credentials(String),
}

impl DistError {
    pub fn exit_code(&self) -> i32 {
        match self {
            DistError::Engine(e) => e.exit_code(),
            DistError::Input(_) => 2,
            DistError::Job(_) => 1,
            DistError::Credentials(_) => 3,
        }
    }
}

impl From<RegistryInputError> for DistError {
    fn from(e: RegistryInputError) -> Self {
        DistError::Input(e.to_string())
    }
}

/// Turns a transfer stream into readable lines: one per layer and status change, byte
/// progress at most every few seconds.
struct TransferPrinter {
    last: std::collections::HashMap<String, String>,
    last_bytes: Instant,
    /// The size of each layer seen, by its id (the push stream has none: by size then).
    sizes: std::collections::HashMap<String, i64>,
    pub bytes: i64,
}

impl TransferPrinter {
    fn new() -> Self {
        TransferPrinter {
            last: Default::default(),
            last_bytes: Instant::now(),
            sizes: Default::default(),
            bytes: 0,
        }
    }

    fn event(&mut self, e: TransferEvent, progress: &mut dyn Progress) {
        let layer = e.layer.clone().unwrap_or_default();
        let is_bytes = matches!(e.status.as_str(), "Downloading" | "Pushing" | "Extracting");
        let changed = self.last.get(&layer) != Some(&e.status);
        if changed {
            self.last.insert(layer.clone(), e.status.clone());
        }
        // Totals by layer id, so two layers of one size both count. The engine's push
        // stream names no layer once bollard 0.21 has parsed it (its PushImageInfo has no
        // `id`): there a layer can only be told apart by its size.
        if is_bytes && e.status != "Extracting" {
            if let Some(t) = e.total {
                let key = e.layer.clone().unwrap_or_else(|| format!("size:{t}"));
                if let Some(old) = self.sizes.insert(key, t) {
                    self.bytes -= old;
                }
                self.bytes += t;
            }
        }
        if let Some(id) = &e.layer {
            progress.layer(&crate::pipeline::types::LayerEvent {
                id,
                status: &e.status,
                current: e.current,
                total: e.total,
                finished: matches!(
                    e.status.as_str(),
                    "Pull complete" | "Already exists" | "Pushed" | "Layer already exists"
                ),
            });
        }
        let mb = |b: i64| b as f64 / 1e6;
        let line = match (&e.layer, e.current, e.total) {
            (Some(l), Some(c), Some(t)) if is_bytes => {
                format!("layer {l}: {} {:.1}/{:.1} MB", e.status, mb(c), mb(t))
            }
            (None, Some(c), Some(t)) if is_bytes => {
                format!("{} {:.1}/{:.1} MB", e.status, mb(c), mb(t))
            }
            (Some(l), _, _) => format!("layer {l}: {}", e.status),
            (None, _, _) => e.status.clone(),
        };
        if is_bytes {
            // First sight of a layer's transfer, then every 5 s.
            if !changed && self.last_bytes.elapsed() < Duration::from_secs(5) {
                return;
            }
            self.last_bytes = Instant::now();
        } else if !changed && e.layer.is_some() {
            return;
        }
        progress.transfer_line(&line);
    }
}

/// Pushes `image` as `<repo>:<tag>`: a temporary local tag, the push, the tag removed again
/// (the local repository stays `rdna1-images`). A `<repo>:<tag>` that existed before stays,
/// naming the image it named.
async fn push_one(
    engine: &Engine,
    remote: &Remote,
    image: &str,
    tag: &str,
    progress: &mut dyn Progress,
) -> Result<PushedTag, DistError> {
    let name = remote.repo.name();
    let reference = remote.repo.reference(tag);
    progress.note(&format!("pushing {reference}"));
    // A name the user already had (a `docker pull` of it, say) is theirs: it stays, and
    // names what it named before once the push is done.
    let before = engine.image(&reference).await?.map(|i| i.id);
    // The registry's name is local only while its push runs, however the push ends. The
    // guard comes first: a Ctrl-C while the tag request is under way drops that request,
    // but the engine may still make the name, and then nothing would take it away.
    let temporary = match &before {
        None => Some(TagGuard::new(engine, reference.clone())),
        Some(_) => None,
    };
    engine.tag(image, &name, tag).await?;
    // The test hook: the temporary tag is made, the push not started.
    crate::signals::pause_at("push").await;
    let started = Instant::now();
    let mut printer = TransferPrinter::new();
    let result = engine
        .push(&name, tag, remote.creds.as_ref(), &mut |e| {
            printer.event(e, progress)
        })
        .await;
    match (temporary, before) {
        (Some(t), _) => t.release().await?,
        (None, Some(was)) => {
            if engine.image(&reference).await?.map(|i| i.id).as_deref() != Some(was.as_str()) {
                engine.tag(&was, &name, tag).await?;
            }
        }
        (None, None) => {}
    }
    let digest = result?;
    let seconds = started.elapsed().as_secs_f64();
    progress.note(&format!(
        "pushed {reference} @ {digest} ({:.1} MB sent, {seconds:.1} s)",
        printer.bytes as f64 / 1e6
    ));
    Ok(PushedTag {
        reference,
        digest,
        seconds,
        bytes_uploaded: printer.bytes,
    })
}

/// The level `image_id` is recorded to have passed locally (its strongest smoke report), for
/// the skip check.
pub async fn recorded_level(
    engine: &Engine,
    recipe: &str,
    digest: &InputDigest,
    image_id: &str,
) -> Result<Option<Level>, EngineError> {
    Ok(local_report(engine, recipe, &digest.short(), image_id)
        .await?
        .map(|(l, _)| l))
}

/// The strongest local smoke report for `image_id`: (level, report reference).
async fn local_report(
    engine: &Engine,
    recipe: &str,
    digest12: &str,
    image_id: &str,
) -> Result<Option<(Level, String)>, EngineError> {
    for level in [Level::Gpu, Level::Cpu] {
        let r = format!(
            "{REPOSITORY}:{}",
            registry::report_tag(recipe, digest12, level)
        );
        if let Some(i) = engine.image(&r).await? {
            if i.labels.get(rlabels::TESTED_IMAGE).map(String::as_str) == Some(image_id) {
                return Ok(Some((level, r)));
            }
        }
    }
    Ok(None)
}

/// The strongest smoke report in the registry for `image_id`; pulled and kept locally as
/// `rdna1-images:<recipe>-<digest12>-smoke-<level>`.
async fn registry_report(
    engine: &Engine,
    remote: &Remote,
    recipe: &str,
    digest12: &str,
    image_id: &str,
    progress: &mut dyn Progress,
) -> Result<Option<TestedLevel>, DistError> {
    for level in [Level::Gpu, Level::Cpu] {
        let tag = registry::report_tag(recipe, digest12, level);
        let reference = remote.repo.reference(&tag);
        if engine
            .registry_digest(&reference, remote.creds.as_ref())
            .await?
            .is_none()
        {
            continue;
        }
        let existed = engine.image(&reference).await?.is_some();
        engine
            .pull(
                &remote.repo.name(),
                &tag,
                remote.creds.as_ref(),
                &mut |_| {},
            )
            .await?;
        // The registry's name goes however this ends (unless it was here before); the
        // report stays under a local one.
        let pulled = TagGuard::pulled(engine, reference.clone(), existed);
        let Some(i) = engine.image(&reference).await? else {
            continue;
        };
        if i.labels.get(rlabels::TESTED_IMAGE).map(String::as_str) != Some(image_id) {
            pulled.release().await?;
            progress.note(&format!(
                "WARNING: {reference} is about another image ({}), not {}: ignored",
                i.labels
                    .get(rlabels::TESTED_IMAGE)
                    .map(String::as_str)
                    .unwrap_or("none"),
                pipeline::short_id(image_id)
            ));
            continue;
        }
        // Kept under the local name before the registry's name goes (untagging the last
        // name would delete it).
        engine.tag(&i.id, REPOSITORY, &tag).await?;
        pulled.release().await?;
        return Ok(Some(TestedLevel {
            level,
            tested_at: i
                .labels
                .get(rlabels::TESTED_AT)
                .cloned()
                .unwrap_or_default(),
            report: reference,
        }));
    }
    Ok(None)
}

#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    pub recipe: String,
    pub image_id: String,
    #[serde(serialize_with = "crate::digest_json::sha256")]
    pub input_digest: String,
    pub level: Level,
    pub channels: Vec<Channel>,
    pub report: PushedTag,
    pub tags: Vec<PushedTag>,
}

/// Pushes the tested image of the current recipe (or app) with the tags of every channel its
/// smoke level allows (or only `only`), and its smoke report first.
pub async fn push(
    engine: &Engine,
    remote: &Remote,
    target: &Target<'_>,
    only: Option<Channel>,
    progress: &mut dyn Progress,
) -> Result<PushOutcome, DistError> {
    let r = &target.recipe;
    let prepared = &target.prepared;
    let d12 = prepared.digest.short();
    let pinned = format!("{REPOSITORY}:{}-{d12}", r.name);
    let image = engine.image(&pinned).await?.ok_or_else(|| {
        DistError::Job(format!(
            "no tested image of {} for the current recipe: {pinned} does not exist (only an image that passed its smoke test gets it); run `rdna1-images build {}` first, or `build {} --push`",
            r.name, r.name, r.name
        ))
    })?;
    let (level, report_ref) = local_report(engine, &r.name, &d12, &image.id)
        .await?
        .ok_or_else(|| {
            DistError::Job(format!(
                "{pinned} has no smoke report beside it (rdna1-images:{}), so its tested level is unknown: rebuild it with `rdna1-images build {} --force`",
                registry::report_tag(&r.name, &d12, Level::Cpu),
                r.name
            ))
        })?;
    let mut channels = registry::channels_for(level);
    if let Some(c) = only {
        if !channels.contains(&c) {
            return Err(DistError::Job(format!(
                "{pinned} passed the {level} smoke test; the {c} channel needs a {} pass: use `rdna1-images promote {}` on a machine with the GPU",
                c.required_level(),
                r.name
            )));
        }
        channels = vec![c];
    }
    progress.note(&format!(
        "pushing {pinned} (image {}, passed the {level} smoke test) to {} as {}",
        pipeline::short_id(&image.id),
        remote.repo,
        channels
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    ));
    let report = push_one(
        engine,
        remote,
        &report_ref,
        &registry::report_tag(&r.name, &d12, level),
        progress,
    )
    .await?;
    let date = registry::date_tag(chrono::Utc::now());
    let mut tags = Vec::new();
    for c in &channels {
        let mut set = c.tags(&r.name, &d12, &date, r.status == Status::Recommended);
        // The immutable tag first, the moving ones after it.
        set.sort_by_key(|t| !t.ends_with(&d12));
        for t in set {
            tags.push(push_one(engine, remote, &image.id, &t, progress).await?);
        }
    }
    Ok(PushOutcome {
        recipe: r.name.to_string(),
        image_id: image.id,
        input_digest: prepared.digest.hex(),
        level,
        channels,
        report,
        tags,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct PullOutcome {
    pub recipe: String,
    pub reference: String,
    pub manifest_digest: Option<String>,
    pub image_id: String,
    /// Local tags set.
    pub tags: Vec<String>,
    #[serde(serialize_with = "crate::digest_json::sha256_opt")]
    pub input_digest: Option<String>,
    #[serde(serialize_with = "crate::digest_json::sha256")]
    pub local_input_digest: String,
    pub same_inputs: bool,
    pub tested: Option<TestedLevel>,
    pub seconds: f64,
    pub bytes_downloaded: i64,
}

async fn pull_checked(
    engine: &Engine,
    remote: &Remote,
    recipe: &str,
    tag: &str,
    progress: &mut dyn Progress,
) -> Result<(ImageSummary, i64, TagGuard), DistError> {
    let name = remote.repo.name();
    // A digest (`sha256:...`) names exactly one manifest: `repo@sha256:...`.
    let reference = if tag.starts_with("sha256:") {
        format!("{name}@{tag}")
    } else {
        remote.repo.reference(tag)
    };
    let mut printer = TransferPrinter::new();
    let existed = engine.image(&reference).await?.is_some();
    engine
        .pull(&name, tag, remote.creds.as_ref(), &mut |e| {
            printer.event(e, progress)
        })
        .await?;
    // The name the pull made: the caller keeps or releases it; an error or a signal before
    // that takes it (and the image, when it was its only name) away again. A name that was
    // here before the pull is someone's, and stays.
    let pulled = TagGuard::pulled(engine, reference.clone(), existed);
    let image = engine.image(&reference).await?.ok_or_else(|| {
        DistError::Job(format!(
            "{reference} was pulled but the engine does not list it"
        ))
    })?;
    let labelled_recipe = image.labels.get(labels::RECIPE).cloned();
    if labelled_recipe.as_deref() != Some(recipe) {
        pulled.release().await?;
        return Err(DistError::Input(format!(
            "{reference} is not an image of recipe {recipe} (its {} label is {}): pick the tag of that recipe",
            labels::RECIPE,
            labelled_recipe.as_deref().unwrap_or("missing")
        )));
    }
    Ok((image, printer.bytes, pulled))
}

/// Pulls `<repo>:<tag>`, tags it `rdna1-images:<recipe>` (and `<recipe>-<digest12>` when a
/// smoke report for it is in the registry), and compares its inputs with the local recipe
/// (an app's with the local recipe on the local stack image).
pub async fn pull(
    engine: &Engine,
    remote: &Remote,
    target: &Target<'_>,
    tag: &str,
    progress: &mut dyn Progress,
) -> Result<PullOutcome, DistError> {
    let r = &target.recipe;
    let prepared = &target.prepared;
    let reference = remote.repo.reference(tag);
    progress.note(&format!("pulling {reference}"));
    let started = Instant::now();
    let (image, bytes, pulled) = pull_checked(engine, remote, &r.name, tag, progress).await?;
    let seconds = started.elapsed().as_secs_f64();
    let pulled_label = image.labels.get(labels::INPUT_DIGEST).cloned();
    let local_digest = prepared.digest.hex();
    let same = pulled_label.as_deref() == Some(local_digest.as_str());
    if let Err(m) = target.same_stack(&image.labels) {
        progress.note(&format!(
            "WARNING: {reference} is an app image of another stack image: {m}; `rdna1-images pull {}` first gives the stack it was tested on",
            target.recipe.name
        ));
    }
    let pulled_digest = match promote::label_digest(&reference, pulled_label.as_ref()) {
        Ok(d) => d,
        Err(e) => {
            pulled.release().await?;
            return Err(e);
        }
    };
    let tested = match &pulled_digest {
        Some(d) => {
            registry_report(engine, remote, &r.name, &d.short(), &image.id, progress).await?
        }
        None => None,
    };
    let mut tags = vec![];
    // The commit: the local tags and the registry's name kept, whole (see pipeline's).
    let manifest_digest = crate::pipeline::commit(&format!("pull of {}", r.name), async {
        engine.tag(&image.id, REPOSITORY, &r.name).await?;
        tags.push(format!("{REPOSITORY}:{}", r.name));
        if let (Some(d), Some(_)) = (&pulled_digest, &tested) {
            let t = format!("{}-{}", r.name, d.short());
            engine.tag(&image.id, REPOSITORY, &t).await?;
            tags.push(format!("{REPOSITORY}:{t}"));
        }
        // Pulled and tagged: the registry's name stays, as after `docker pull`.
        pulled.keep();
        crate::signals::finished(format!(
            "pulled {reference} and tagged {} (image {})",
            tags.join(" and "),
            pipeline::short_id(&image.id)
        ));
        engine.repo_digest(&reference, &remote.repo.name()).await
    })
    .await?;
    Ok(PullOutcome {
        recipe: r.name.to_string(),
        reference,
        manifest_digest,
        image_id: image.id,
        tags,
        input_digest: pulled_label,
        local_input_digest: local_digest,
        same_inputs: same,
        tested,
        seconds,
        bytes_downloaded: bytes,
    })
}

/// What pull-or-build found.
pub enum PullForBuild {
    /// Not in the registry (or the registry could not be asked): build.
    Build,
    /// Pulled, its registry report covers the requested level: tagged, done.
    Done(Box<BuildOutcome>),
    /// Pulled, but its report does not cover the requested level: smoke test it here. The
    /// registry's name holds it until the smoke test is judged; the caller releases it then.
    NeedsSmoke(String, Box<TagGuard>),
}

/// Pull-or-build: the image of these exact inputs may already be in the registry. An app's
/// must also name, in its label, the stack image here that its input digest covers.
pub async fn pull_for_build(
    engine: &Engine,
    plan: &RegistryPlan,
    target: &Target<'_>,
    level: Level,
    progress: &mut dyn Progress,
) -> Result<PullForBuild, EngineError> {
    let r = &target.recipe;
    let digest = &target.prepared.digest;
    let remote = &plan.remote;
    let tag = format!("{}-{}", r.name, digest.short());
    let reference = remote.repo.reference(&tag);
    let found = tokio::time::timeout(
        Duration::from_secs(30),
        engine.registry_digest(&reference, remote.creds.as_ref()),
    )
    .await;
    match found {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => {
            progress.note(&format!("{reference} is not in the registry: building"));
            return Ok(PullForBuild::Build);
        }
        Ok(Err(e)) => {
            progress.note(&format!(
                "could not ask the registry for {reference} ({}): building",
                crate::error_chain::text(&e)
                    .lines()
                    .next()
                    .unwrap_or_default()
            ));
            return Ok(PullForBuild::Build);
        }
        Err(_) => {
            progress.note(&format!(
                "the registry did not answer within 30 s for {reference}: building"
            ));
            return Ok(PullForBuild::Build);
        }
    }
    progress.note(&format!(
        "{reference} is in the registry (same input digest): pulling it instead of building; --no-pull builds"
    ));
    let pulled = pull_checked(engine, remote, &r.name, &tag, progress).await;
    let (image, bytes, pulled) = match pulled {
        Ok(p) => p,
        Err(DistError::Engine(e)) => return Err(e),
        Err(e) => {
            progress.note(&format!("{e}: building"));
            return Ok(PullForBuild::Build);
        }
    };
    if image.labels.get(labels::INPUT_DIGEST) != Some(&digest.hex()) {
        pulled.release().await?;
        progress.note(&format!(
            "WARNING: {reference} carries input digest {} in its label, not {}: not used; building",
            image
                .labels
                .get(labels::INPUT_DIGEST)
                .map(String::as_str)
                .unwrap_or("none"),
            digest.hex()
        ));
        return Ok(PullForBuild::Build);
    }
    if let Err(m) = target.same_stack(&image.labels) {
        pulled.release().await?;
        progress.note(&format!(
            "WARNING: {reference} is not used: {m}; building on the stack image here"
        ));
        return Ok(PullForBuild::Build);
    }
    let tested = match registry_report(
        engine,
        remote,
        &r.name,
        &digest.short(),
        &image.id,
        progress,
    )
    .await
    {
        Ok(t) => t,
        Err(DistError::Engine(e)) => return Err(e),
        Err(_) => None,
    };
    progress.note(&format!(
        "pulled {reference} (image {}, {:.1} MB downloaded)",
        pipeline::short_id(&image.id),
        bytes as f64 / 1e6
    ));
    match tested {
        Some(t) if crate::smoke::covers(Some(t.level), level) => {
            progress.note(&format!(
                "its smoke report {} says it passed the {} smoke test on {}",
                t.report, t.level, t.tested_at
            ));
            let (moving, pinned) = pipeline::tags(&r.name, digest);
            let mut tags = vec![];
            // The commit, whole (see pipeline's).
            crate::pipeline::commit(&format!("pull of {}", r.name), async {
                for t in [&pinned, &moving] {
                    engine.tag(&image.id, REPOSITORY, t).await?;
                    tags.push(format!("{REPOSITORY}:{t}"));
                }
                crate::signals::finished(format!(
                    "pulled and tagged {} (image {})",
                    tags.join(" and "),
                    pipeline::short_id(&image.id)
                ));
                // build's images live in the local repository only, as if built here.
                pulled.release().await
            })
            .await?;
            Ok(PullForBuild::Done(Box::new(BuildOutcome {
                status: BuildStatus::Pulled,
                image_id: Some(image.id),
                tags,
                ..BuildOutcome::new(&r.name, digest.hex())
            })))
        }
        t => {
            progress.note(&format!(
                "its registry smoke report {}: running the {level} smoke test here before tagging it",
                match &t {
                    Some(t) => format!("covers only the {} level", t.level),
                    None => "is missing".to_string(),
                }
            ));
            Ok(PullForBuild::NeedsSmoke(image.id, Box::new(pulled)))
        }
    }
}

#[cfg(test)]
mod transfer_tests {
    use super::*;

    #[derive(Default)]
    struct Layers(Vec<String>);
    impl Progress for Layers {
        fn build(&mut self, _: &crate::engine::BuildEvent) {}
        fn smoke_line(&mut self, _: &str) {}
        fn note(&mut self, _: &str) {}
        fn layer(&mut self, e: &crate::pipeline::types::LayerEvent) {
            self.0.push(format!("{} {}", e.id, e.status));
        }
    }

    fn ev(layer: &str, status: &str, current: i64, total: i64) -> TransferEvent {
        TransferEvent {
            layer: Some(layer.into()),
            status: status.into(),
            current: Some(current),
            total: Some(total),
        }
    }

    #[test]
    fn two_layers_of_one_size_both_count() {
        let mut p = TransferPrinter::new();
        let mut layers = Layers::default();
        p.event(ev("aaa", "Downloading", 10, 1000), &mut layers);
        p.event(ev("bbb", "Downloading", 10, 1000), &mut layers);
        p.event(ev("aaa", "Downloading", 900, 1000), &mut layers);
        p.event(ev("ccc", "Downloading", 1, 5), &mut layers);
        assert_eq!(p.bytes, 2005);
        assert!(
            layers.0.contains(&"bbb Downloading".to_string()),
            "{:?}",
            layers.0
        );
    }
}
