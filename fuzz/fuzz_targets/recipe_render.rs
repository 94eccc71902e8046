//! Any bytes as a recipe: see the library's `fuzz_check` (feature `testing`), which the stable-toolchain harness
//! (`tests/fuzz_recipe.rs`) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rdna1_images::fuzz_check::check(data);
});
