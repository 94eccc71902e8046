//! Which recipes fit a GPU, best first, and the override each runs with. Pure: `doctor`
//! advises with it and `run` picks with it, so neither imports the other.

use serde::Serialize;

use crate::host::GfxVersion;
use crate::recipe::{Recipe, Status};

/// A recipe that fits a GPU, and the override it runs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipeChoice {
    pub recipe: String,
    pub status: Status,
    /// `HSA_OVERRIDE_GFX_VERSION` for this GPU; `None` = native code.
    pub hsa_override: Option<String>,
    pub why: String,
}

impl RecipeChoice {
    pub fn describe(&self) -> String {
        match &self.hsa_override {
            Some(o) => format!("{} (HSA_OVERRIDE_GFX_VERSION={o})", self.recipe),
            None => format!("{} (native)", self.recipe),
        }
    }
}

/// The recipes that list `gfx`, best first.
///
/// A recipe whose primary target is this GPU comes first, ordered by status, then native
/// code before an override: on gfx1010 therock (AMD's own gfx101X build of a current
/// PyTorch, minutes to install), then rocm52 (proven, but PyTorch 1.13 through the gfx1030
/// override), then rocm62 (native, but hours of compiling and open questions). For other
/// targets, the override that stays within the GPU's own family comes first (gfx1012 runs
/// gfx1010 code with 10.1.0 more safely than gfx1030 code with 10.3.0, which uses
/// instructions RDNA1 lacks), then status.
pub fn recipes_for(gfx: &GfxVersion, recipes: &[Recipe]) -> Vec<RecipeChoice> {
    let name = gfx.name();
    let mut ranked: Vec<((u8, u8, u8), RecipeChoice)> = recipes
        .iter()
        .filter_map(|r| {
            let ov = r.gpu.targets.get(name.as_str())?.as_ref().map(|v| v.to_string());
            let primary = r.gpu.target == name;
            let risk = match ov.as_deref().map(GfxVersion::from_override) {
                None => 0,
                Some(Some(o)) if o.same_family(gfx) => 1,
                Some(_) => 2,
            };
            let status = match r.status {
                Status::Recommended => 0,
                Status::Advanced => 1,
                Status::Experimental => 2,
            };
            let why = match (&ov, risk) {
                (None, _) => format!("built for {name}: native code, no override"),
                (Some(o), 1) => format!("runs {} code on {name}, same family", gfx_of(o)),
                (Some(o), _) => format!(
                    "runs {} code on {name} (another generation: works with this stack's kernels, may fault with others)",
                    gfx_of(o)
                ),
            };
            let why = format!("{why}; PyTorch {}", r.pytorch.version());
            let key = if primary {
                (0, status, risk)
            } else {
                (1, risk, status)
            };
            Some((
                key,
                RecipeChoice {
                    recipe: r.name.to_string(),
                    status: r.status,
                    hsa_override: ov,
                    why,
                },
            ))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.recipe.cmp(&b.1.recipe)));
    ranked.into_iter().map(|(_, c)| c).collect()
}

fn gfx_of(dotted: &str) -> String {
    GfxVersion::from_override(dotted).map_or_else(|| dotted.to_string(), |g| g.name())
}
