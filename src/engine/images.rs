//! Image inspection, tagging and removal.

use std::collections::HashMap;

use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};

use super::{Engine, EngineError};

/// What the tool needs to know of a local image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSummary {
    pub id: String,
    pub tags: Vec<String>,
    pub labels: HashMap<String, String>,
    pub size: Option<i64>,
}

impl Engine {
    /// The image a reference names, or None when it does not exist.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageSummary>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageSummary {
                id: i.id.unwrap_or_default(),
                tags: i.repo_tags.unwrap_or_default(),
                labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
                size: i.size,
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspecting image {reference}"), e)),
        }
    }

    /// Points `repo:tag` at an image.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        self.docker
            .tag_image(
                image,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(repo)
                        .tag(tag)
                        .build(),
                ),
            )
            .await
            .map_err(|e| EngineError::api(format!("tagging {image} as {repo}:{tag}"), e))?;
        // The containerd store keeps an image that no name points at as a record named
        // `moby-dangling@<id>`, and its tag call drops that record only when it moves a tag,
        // not when the tag already points at the image: a `--force` rebuild (which loads
        // the same normalised image again) left the image listed as dangling beside its own
        // tags. Measured on 28.5; removing the record untags nothing else. On the classic
        // store there is no such record (404, fine).
        if image.starts_with("sha256:") {
            self.untag(&format!("moby-dangling@{image}")).await?;
        }
        Ok(())
    }

    /// Removes an image by id unless a tag still points at it (then it is someone's good
    /// image and stays). Returns whether it was removed.
    pub async fn remove_untagged(&self, id: &str) -> Result<bool, EngineError> {
        match self.image(id).await? {
            Some(i) if i.tags.is_empty() => {}
            _ => return Ok(false),
        }
        match self
            .docker
            .remove_image(id, Some(RemoveImageOptionsBuilder::default().build()), None)
            .await
        {
            Ok(_) => Ok(true),
            // In use by a container or a child image: leave it, `clean` finds it later.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(EngineError::api(format!("removing image {id}"), e)),
        }
    }
}

impl Engine {
    /// The untagged images whose input-digest label is `digest` (bare hex).
    pub async fn untagged_images_of(&self, digest: &str) -> Result<Vec<String>, EngineError> {
        let label = format!("{}={digest}", crate::labels::INPUT_DIGEST);
        let list = self.untagged_with_label(label).await?;
        Ok(list.into_iter().map(|i| i.id).collect())
    }

    /// Untagged images carrying the tool's label (only `recipe`'s when given): failed
    /// candidates kept by a crash or an interrupted run, or the candidates of a run under
    /// way. (id, size, recipe label)
    pub async fn managed_untagged_images(
        &self,
        recipe: Option<&str>,
    ) -> Result<Vec<(String, i64, Option<String>)>, EngineError> {
        let label = match recipe {
            Some(r) => format!("{}={r}", crate::labels::RECIPE),
            None => format!("{}=true", crate::labels::MANAGED),
        };
        let list = self.untagged_with_label(label).await?;
        Ok(list
            .into_iter()
            .map(|i| {
                let recipe = i.labels.get(crate::labels::RECIPE).cloned();
                (i.id, i.size, recipe)
            })
            .collect())
    }

    /// Tagged images carrying `label` (`key=value`): (tags, labels), e.g. the smoke reports.
    pub async fn tagged_with_label(
        &self,
        label: &str,
    ) -> Result<Vec<(Vec<String>, HashMap<String, String>)>, EngineError> {
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![label.to_string()])].into();
        let list = self
            .docker
            .list_images(Some(
                bollard::query_parameters::ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| EngineError::api("listing images", e))?;
        Ok(list
            .into_iter()
            .filter(|i| !i.repo_tags.is_empty())
            .map(|i| (i.repo_tags, i.labels))
            .collect())
    }

    async fn untagged_with_label(
        &self,
        label: String,
    ) -> Result<Vec<bollard::models::ImageSummary>, EngineError> {
        let filters: HashMap<String, Vec<String>> = [
            ("label".to_string(), vec![label]),
            ("dangling".to_string(), vec!["true".to_string()]),
        ]
        .into();
        self.docker
            .list_images(Some(
                bollard::query_parameters::ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| EngineError::api("listing images", e))
    }
}
