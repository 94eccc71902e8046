//! Any bytes as a recipe: see `recipe_render_check.rs`, which the stable-toolchain harness
//! (`tests/fuzz_recipe.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod recipe_render_check;

fuzz_target!(|data: &[u8]| {
    recipe_render_check::check(data);
});
