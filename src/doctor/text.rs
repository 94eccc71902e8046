//! The human rendering of a [`Doctor`] report.

use super::*;

/// `7.5 GB`: decimal, as disks are sold and `df -H` shows.
pub fn human_bytes(b: u64) -> String {
    if b >= GB {
        format!("{:.1} GB", b as f64 / GB as f64)
    } else {
        format!("{:.0} MB", b as f64 / 1e6)
    }
}

pub(super) fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The report for people.
pub fn render_human(d: &Doctor) -> String {
    let mut s = String::new();
    let e = &d.engine;
    let _ = writeln!(s, "Docker engine");
    if let Some(ep) = &e.endpoint {
        let tls = if ep.tls.is_some() { ", TLS" } else { "" };
        let by = e.chosen_by.as_deref().unwrap_or("?");
        let _ = writeln!(s, "  endpoint      {}{tls} ({by})", ep.host);
    }
    if e.reachable {
        let mut line = format!(
            "  reachable     yes: Docker {}",
            e.version.as_deref().unwrap_or("?")
        );
        if let Some(api) = &e.api_version {
            let _ = write!(line, " (API {api})");
        }
        if let Some(bk) = e.buildkit {
            let _ = write!(line, ", BuildKit {}", yes(bk));
        }
        if e.rootless == Some(true) {
            line.push_str(", rootless");
        }
        let _ = writeln!(s, "{line}");
        if let Some(store) = &e.store {
            let _ = writeln!(s, "  store         {}", store.describe());
        }
        if let Some(root) = &e.root_dir {
            let free = e.free_disk_bytes.map_or_else(
                || "free space unknown".to_string(),
                |b| format!("{} free", human_bytes(b)),
            );
            let _ = writeln!(s, "  data root     {root}, {free}");
        }
    } else {
        let _ = writeln!(
            s,
            "  reachable     no: {}",
            e.error.as_deref().unwrap_or("no answer")
        );
    }

    let h = &d.host;
    let _ = writeln!(s, "\nHost");
    if !h.is_real() {
        let _ = writeln!(s, "  root          {} (not this machine)", h.root.display());
    }
    let _ = writeln!(
        s,
        "  kernel        {}",
        h.kernel.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        s,
        "  amdgpu        {}",
        if h.amdgpu_loaded {
            "loaded"
        } else {
            "not loaded"
        }
    );
    let gids: Vec<String> = h.user.gids.iter().map(|g| g.to_string()).collect();
    let _ = writeln!(
        s,
        "  user          {} (uid {}), groups {}",
        h.user.name.as_deref().unwrap_or("?"),
        h.user.uid,
        gids.join(" ")
    );

    let _ = writeln!(s, "\nDevices");
    let devices: Vec<&DeviceFile> = std::iter::once(&h.kfd)
        .chain(h.render_nodes.iter())
        .collect();
    let width = devices.iter().map(|d| d.path.len()).max().unwrap_or(0);
    for dev in devices {
        let state = if !dev.exists {
            "missing".to_string()
        } else {
            let access = match dev.access {
                AccessVia::Denied => "you cannot open it".to_string(),
                AccessVia::Unknown => {
                    format!("cannot inspect: {}", dev.error.as_deref().unwrap_or("?"))
                }
                via => format!(
                    "you can open it ({})",
                    serde_json::to_value(via)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
            };
            format!("{}; {access}", owner(dev))
        };
        let _ = writeln!(s, "  {:width$}  {state}", dev.path);
    }

    let _ = writeln!(s, "\nGPUs");
    if d.gpus.is_empty() {
        let _ = writeln!(s, "  none found");
    }
    for a in &d.gpus {
        let g = &h.gpus[a.index];
        let mut line = format!("  GPU {}  {}", a.index, a.label);
        if let Some(m) = g.local_memory_bytes {
            let _ = write!(line, ", {:.0} GiB", m as f64 / (1u64 << 30) as f64);
        }
        if let Some(r) = &g.render_node {
            let _ = write!(line, ", {r}");
        }
        let _ = writeln!(s, "{line}");
        let _ = writeln!(s, "         {}", a.summary);
        for c in &a.recipes {
            let _ = writeln!(s, "           {}: {}", c.describe(), c.why);
        }
    }

    let _ = writeln!(s, "\nProblems");
    if d.problems.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for p in &d.problems {
        let tag = match p.severity {
            Severity::Warning => "warning",
            Severity::BlocksGpu => "blocks GPU use",
            Severity::BlocksAll => "blocks everything",
        };
        let _ = writeln!(s, "  [{tag}] {}", p.what);
        let _ = writeln!(s, "      fix: {}", p.fix);
    }

    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Ready for builds (CPU smoke tests): {}",
        yes(d.ready.build)
    );
    let _ = writeln!(
        s,
        "Ready for GPU smoke tests and run:  {}",
        yes(d.ready.gpu)
    );
    s
}
