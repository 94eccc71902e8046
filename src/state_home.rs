//! The tool's state folder, `$XDG_STATE_HOME/rdna1-images`, else
//! `~/.local/state/rdna1-images` (the XDG base directory rule): one definition for the run
//! locks, the recipes' lock files and the kept build logs.

use std::path::PathBuf;

/// `<state folder>/<sub>`, or None when neither `XDG_STATE_HOME` nor `HOME` is set (each
/// caller has its own fallback).
pub fn folder(sub: &str) -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("XDG_STATE_HOME") {
        return Some(d.join("rdna1-images").join(sub));
    }
    var("HOME").map(|h| h.join(".local/state/rdna1-images").join(sub))
}
