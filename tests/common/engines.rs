//! Where the engines of a cross-engine test are: the machine's (what the tool itself would
//! use) and the two Docker 28.5 engines of ci/engines.sh.

use std::path::Path;
use std::process::Command;

/// The machine's engine: DOCKER_HOST, else Docker's default socket.
pub fn machine_engine() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// The 28.5 engines of ci/engines.sh as (label, variable, address): the address from the
/// variable, else from `ci/engines.sh env` (which lists the running ones); `None` when
/// neither names one. Whether it answers is the caller's to ask.
pub fn engines_28() -> Vec<(&'static str, &'static str, Option<String>)> {
    let listed = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/engines.sh"))
        .arg("env")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    [
        ("28 classic", "RDNA1_ENGINE_CLASSIC"),
        ("28 containerd", "RDNA1_ENGINE_CONTAINERD"),
    ]
    .into_iter()
    .map(|(label, var)| {
        let host = std::env::var(var).ok().or_else(|| {
            listed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {var}=")))
                .map(|v| v.trim_matches(|c| c == '"' || c == '\'').to_string())
        });
        (label, var, host)
    })
    .collect()
}
