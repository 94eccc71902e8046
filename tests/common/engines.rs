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

/// The machine's engine (labelled `machine_label`) and each 28.5 engine for which `usable`
/// holds, as (label, address). A 28.5 engine that is missing or not usable fails the test
/// under RDNA1_REQUIRE_DOCKER=1 and is otherwise skipped, recorded.
pub fn engines_for(
    test: &str,
    machine_label: &str,
    usable: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut hosts = vec![(machine_label.to_string(), machine_engine())];
    for (label, var, host) in engines_28() {
        match host {
            Some(h) if usable(&h) => hosts.push((label.to_string(), h)),
            _ if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") => panic!(
                "{test}: the {label} engine ({var}) is not running or not ready: `bash ci/engines.sh start`"
            ),
            _ => crate::common::skip(&format!(
                "{test} on {label}: {var} is not running (bash ci/engines.sh start)"
            )),
        }
    }
    hosts
}
