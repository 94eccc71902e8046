//! rdna1-images: reproducible, smoke-tested Docker images of PyTorch for AMD RDNA1 GPUs.
//!
//! The pure core (recipe, render, context, smoke judging, host detection) needs no daemon;
//! `engine` is the only module that talks to Docker, and `pipeline` sequences the stages.

pub mod cli;
pub mod commands;
pub mod context;
pub mod digest_json;
pub mod doctor;
pub mod endpoint;
pub mod engine;
pub mod error_chain;
pub mod escape;
/// The recipe fuzz target's check, for fuzz/ and tests/fuzz_recipe.rs (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod fuzz_check;
pub mod hex;
pub mod host;
pub mod image_archive;
pub mod index_client;
pub mod labels;
pub mod lock;
pub mod out_folder;
pub mod owner;
pub mod pipeline;
pub mod quote;
pub mod recipe;
pub mod recipe_choice;
pub mod recipe_files;
pub mod registry;
pub mod render;
pub mod reproduce;
pub mod run_plan;
pub mod signals;
pub mod simple_index;
pub mod smoke;
pub mod state_home;
/// Recorded skips, for the unit tests and (feature `testing`) the integration tests.
#[cfg(any(test, feature = "testing"))]
pub mod test_skip;
pub mod ui;
pub mod values;
pub mod yaml_paths;
