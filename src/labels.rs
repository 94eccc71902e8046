//! Label keys the tool sets and reads, in one reverse-DNS namespace of its own. Pure data,
//! in the core, so the engine can mark and find what the tool made without importing render.

pub const RECIPE: &str = "io.github.rdna1-images.recipe";
pub const INPUT_DIGEST: &str = "io.github.rdna1-images.input-digest";
pub const ROCM: &str = "io.github.rdna1-images.rocm";
pub const PYTORCH: &str = "io.github.rdna1-images.pytorch";
pub const PYTHON: &str = "io.github.rdna1-images.python";
pub const GFX_TARGET: &str = "io.github.rdna1-images.gfx-target";
pub const HSA_OVERRIDE: &str = "io.github.rdna1-images.hsa-override";
/// sha256 of the lock file whose wheels the image installed (recipes with a lock).
pub const LOCK: &str = "io.github.rdna1-images.lock";
/// Marks everything the tool creates (images, smoke and run containers), for `clean`.
pub const MANAGED: &str = "io.github.rdna1-images.managed";
/// What a container is for: `smoke` or `run`.
pub const ROLE: &str = "io.github.rdna1-images.role";
/// Who created a container: `<host id>:<pid>:<boot id>-<start ticks>` (see
/// [`crate::owner::Owner`]), so `clean` leaves a live run's containers alone.
pub const OWNER: &str = "io.github.rdna1-images.owner";
/// On an app image: the stack recipe it was built on.
pub const STACK: &str = "io.github.rdna1-images.stack";
/// On an app image: the id of the stack image it was built on (its input digest covers it).
pub const STACK_IMAGE: &str = "io.github.rdna1-images.stack-image";
