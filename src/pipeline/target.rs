//! What the pipeline builds, tests and distributes: a stack recipe, or an app on the stack
//! image that passed its smoke test. Both go through one flow (build, pull-or-build, push,
//! pull, promote); an app adds its own checks after the stack's suite, and its input digest
//! covers the stack image, so an app is prepared against the engine's stack image.

use crate::context::{self, Prepared};
use crate::engine::{Engine, EngineError};
use crate::pipeline::app::{app_smoke, stack_image};
use crate::pipeline::smoke_stage::smoke_image;
use crate::pipeline::types::{short_id, Progress, SmokeResult};
use crate::recipe::app::LoadedApp;
use crate::recipe::{Loaded, Recipe, RecipeError};
use crate::render::app::{as_recipe, stack_tag};
use crate::smoke::Level;

/// A recipe as a command names it: a stack, or an app (which needs its stack's image to be
/// prepared: see [`Subject::target`]).
pub enum Subject {
    Stack(Box<Loaded>),
    App(Box<LoadedApp>),
}

impl Subject {
    pub fn name(&self) -> &str {
        match self {
            Subject::Stack(l) => l.recipe.name.as_str(),
            Subject::App(l) => l.app.name.as_str(),
        }
    }

    /// Prepares it on `engine`: an app on the stack image tagged here.
    pub async fn target(&self, engine: &Engine) -> Result<Target<'_>, EngineError> {
        match self {
            Subject::Stack(l) => Ok(Target::stack(l)?),
            Subject::App(l) => Target::app(engine, l).await,
        }
    }
}

/// An app and the stack image it is prepared on.
pub struct AppOn<'a> {
    pub loaded: &'a LoadedApp,
    /// The id of the stack image (its input digest covers it).
    pub stack_id: String,
}

/// A prepared recipe: what the stages see ([`as_recipe`] for an app), its context and
/// input digest, and for an app, the app and its stack image.
pub struct Target<'a> {
    pub recipe: Recipe,
    pub prepared: Prepared,
    pub app: Option<AppOn<'a>>,
}

impl<'a> Target<'a> {
    pub fn stack(loaded: &Loaded) -> Result<Target<'a>, RecipeError> {
        Ok(Target {
            recipe: loaded.recipe.clone(),
            prepared: context::prepare(loaded)?,
            app: None,
        })
    }

    /// An app on the image `rdna1-images:<stack>` names here, which must be one this tool
    /// tested (it carries its `<stack>-<digest12>` tag).
    pub async fn app(engine: &Engine, l: &'a LoadedApp) -> Result<Target<'a>, EngineError> {
        let (stack_id, stack_ref) = stack_image(engine, l).await?;
        let prepared = context::app::prepare(l, &stack_id, &stack_ref)?;
        Ok(Target {
            recipe: as_recipe(l),
            prepared,
            app: Some(AppOn {
                loaded: l,
                stack_id,
            }),
        })
    }

    pub fn name(&self) -> &str {
        self.recipe.name.as_str()
    }

    /// "app X on rdna1-images:<stack> (image ...)" or "X": for the notes.
    pub fn describe(&self) -> String {
        match &self.app {
            None => self.name().to_string(),
            Some(a) => format!(
                "app {} on {} (image {})",
                self.name(),
                stack_tag(a.loaded),
                short_id(&a.stack_id)
            ),
        }
    }

    /// Whether an image's labels say it was built on this target's stack image (always
    /// true for a stack); the stack image id it names otherwise, for the message.
    pub fn same_stack(
        &self,
        labels: &std::collections::HashMap<String, String>,
    ) -> Result<(), String> {
        let Some(a) = &self.app else {
            return Ok(());
        };
        match labels.get(crate::labels::STACK_IMAGE) {
            Some(id) if *id == a.stack_id => Ok(()),
            other => Err(format!(
                "it was built on stack image {}, and {} here is image {}",
                other.map(String::as_str).unwrap_or("(no label)"),
                stack_tag(a.loaded),
                a.stack_id
            )),
        }
    }
}

/// The smoke test of a target's image: the stack's suite, and for an app its own checks
/// after it, even after a stack failure (the table shows both).
pub async fn smoke_target(
    engine: &Engine,
    image: &str,
    t: &Target<'_>,
    level: Level,
    progress: &mut dyn Progress,
) -> Result<SmokeResult, EngineError> {
    let Some(a) = &t.app else {
        return smoke_image(engine, image, &t.recipe, level, progress).await;
    };
    progress.note("the stack's smoke test again, inside the app image");
    let mut result = smoke_image(engine, image, &t.recipe, level, progress).await?;
    let (passed, findings, table) = app_smoke(engine, image, a.loaded, level, progress).await?;
    result.passed = result.passed && passed;
    result.findings.extend(findings);
    result.table = format!("{}\n{table}", result.table);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::STACK_IMAGE;
    use crate::recipe::Catalog;
    use std::collections::HashMap;

    #[test]
    fn an_app_image_is_on_this_stack_only_when_its_label_names_this_stack_image() {
        let l = Catalog::embedded().load_app("comfyui").unwrap();
        let id = format!("sha256:{}", "a".repeat(64));
        let prepared = context::app::prepare(&l, &id, "rdna1-images:therock-0123456789ab").unwrap();
        // The build sets the label the check reads.
        assert_eq!(prepared.labels[STACK_IMAGE], id);
        let t = Target {
            recipe: as_recipe(&l),
            prepared,
            app: Some(AppOn {
                loaded: &l,
                stack_id: id.clone(),
            }),
        };
        let mut labels = HashMap::new();
        assert!(t.same_stack(&labels).unwrap_err().contains("(no label)"));
        let other = format!("sha256:{}", "b".repeat(64));
        labels.insert(STACK_IMAGE.to_string(), other.clone());
        let e = t.same_stack(&labels).unwrap_err();
        assert!(e.contains(&other) && e.contains(&id), "{e}");
        labels.insert(STACK_IMAGE.to_string(), id.clone());
        assert_eq!(t.same_stack(&labels), Ok(()));
        assert!(t
            .describe()
            .starts_with("app comfyui on rdna1-images:therock (image "));
        // A stack is on no other image: nothing to check.
        let s = Target::stack(&Catalog::embedded().load("rocm52").unwrap()).unwrap();
        assert_eq!(s.same_stack(&HashMap::new()), Ok(()));
        assert_eq!(s.describe(), "rocm52");
    }
}
