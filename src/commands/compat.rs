//! `rdna1-images compat`: the compatibility table of every smoke report on this engine.
//!
//! A report image (tag `<recipe>-<digest12>-smoke-<level>`) is made by every passed build and
//! kept by every pull (the registry's report comes with the image), and carries its verdicts
//! in a label: so the table needs neither a container nor a layer pulled.

use crate::engine::Engine;
use crate::pipeline::Progress as _;
use crate::registry::labels as rlabels;

use super::{Console, Outcome};

pub async fn compat(console: &mut Console) -> Outcome {
    let engine = Engine::connect().await?;
    let role = format!("{}={}", crate::labels::ROLE, rlabels::ROLE_REPORT);
    let mut stacks: Vec<(String, String)> = Vec::new();
    for (tags, labels) in engine.tagged_with_label(&role).await? {
        let Some(verdicts) = labels.get(rlabels::COMPAT).filter(|v| !v.is_empty()) else {
            continue;
        };
        let recipe = labels.get(crate::labels::RECIPE).map(String::as_str);
        let level = labels.get(rlabels::LEVEL).map(String::as_str);
        let day = labels
            .get(rlabels::TESTED_AT)
            .map(|t| t.chars().take(10).collect::<String>());
        let header = match (recipe, level, day) {
            (Some(r), Some(l), Some(d)) => format!("{r} {l} {d}"),
            _ => tags[0].clone(),
        };
        stacks.push((header, verdicts.clone()));
    }
    if stacks.is_empty() {
        console.note(
            "no smoke report with a compatibility table on this engine: `rdna1-images build \
             <recipe>` or `rdna1-images pull <recipe>` makes one",
        );
        return Ok(0);
    }
    stacks.sort();
    print!("{}", crate::smoke::compat_matrix(&stacks));
    Ok(0)
}
