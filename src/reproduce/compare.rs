//! Comparing two normalised images: what differs but for time, and the report of
//! which files and layers differ.

use super::*;

/// Why the image the smoke test ran (the engine's) and the normalised one behave the same:
/// the rewrite changes only times, the tar dialect and order, and the config's `created`,
/// history and diff ids. Anything else differing in the config is an error, so the smoke test
/// may run on the engine's image while the normalised one is made.
pub fn same_but_for_time(
    engine: &serde_json::Value,
    normalised: &serde_json::Value,
) -> Result<(), String> {
    let strip = |c: &serde_json::Value| {
        let mut c = c.clone();
        if let Some(o) = c.as_object_mut() {
            for k in ["created", "history", "rootfs"] {
                o.remove(k);
            }
        }
        c
    };
    if strip(engine) != strip(normalised) {
        return Err("the normalised config differs from the engine's in more than times".into());
    }
    let steps = |c: &serde_json::Value| c["history"].as_array().map(Vec::len);
    if steps(engine) != steps(normalised) {
        return Err("the normalised history has another number of steps".into());
    }
    Ok(())
}

/// `ARG` history entries name the arguments only: BuildKit 0.8 (Docker 20.10) writes the
/// Dockerfile's text (`ARG SOURCE_DATE_EPOCH`), newer ones the value passed in
/// (`ARG SOURCE_DATE_EPOCH=1764028800`). The values are in every later RUN entry anyway.
pub(super) fn canonical_arg(created_by: &str) -> Option<String> {
    let rest = created_by.strip_prefix("ARG ")?;
    let names: Vec<&str> = rest
        .split_whitespace()
        .map(|w| w.split('=').next().unwrap_or(""))
        .filter(|n| {
            let mut c = n.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .collect();
    Some(format!("ARG {}", names.join(" ")))
}

/// `created_by` of the history entry of each layer (entries with `empty_layer` have none).
pub fn layer_history(config: &serde_json::Value, layers: usize) -> Vec<String> {
    let mut out: Vec<String> = config
        .get("history")
        .and_then(|h| h.as_array())
        .map(|h| {
            h.iter()
                .filter(|e| {
                    !e.get("empty_layer")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                })
                .map(|e| {
                    e.get("created_by")
                        .or_else(|| e.get("comment"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    out.resize(layers, String::new());
    out
}

/// How two entries of the same path differ, field by field.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub first: Option<FileInfo>,
    pub second: Option<FileInfo>,
}

impl fmt::Display for FileDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.first, &self.second) {
            (Some(a), Some(b)) => {
                write!(f, "{}:", self.path)?;
                let mut field = |name: &str, x: String, y: String| -> fmt::Result {
                    if x != y {
                        write!(f, " {name} {x} -> {y};")?;
                    }
                    Ok(())
                };
                field("kind", a.kind.clone(), b.kind.clone())?;
                field("size", a.size.to_string(), b.size.to_string())?;
                field("mode", format!("{:o}", a.mode), format!("{:o}", b.mode))?;
                field(
                    "owner",
                    format!("{}:{}", a.uid, a.gid),
                    format!("{}:{}", b.uid, b.gid),
                )?;
                field("mtime", a.mtime.to_string(), b.mtime.to_string())?;
                let short = |s: &Option<String>| {
                    s.as_deref()
                        .map(|s| s[..12.min(s.len())].to_string())
                        .unwrap_or_else(|| "-".into())
                };
                field("content sha256", short(&a.sha256), short(&b.sha256))?;
                field(
                    "link",
                    a.link.clone().unwrap_or_default(),
                    b.link.clone().unwrap_or_default(),
                )?;
                field("xattrs", a.xattrs.join(","), b.xattrs.join(","))
            }
            (Some(a), None) => write!(f, "{}: only in the first build ({})", self.path, a.kind),
            (None, Some(b)) => write!(f, "{}: only in the second build ({})", self.path, b.kind),
            (None, None) => write!(f, "{}", self.path),
        }
    }
}

/// A layer whose digest differs between two builds.
#[derive(Debug, Clone, Serialize)]
pub struct LayerDiff {
    pub index: usize,
    pub created_by: String,
    pub first: Option<String>,
    pub second: Option<String>,
    pub files: Vec<FileDiff>,
}

/// The verdict of `build --verify-reproducible`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub reproducible: bool,
    pub first_image: String,
    pub second_image: String,
    pub first_layers: Vec<String>,
    pub second_layers: Vec<String>,
    pub layers: Vec<LayerDiff>,
    /// Top-level config keys that differ (when the layers alone do not explain the ids).
    pub config: Vec<String>,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reproducible {
            return write!(
                f,
                "reproducible: both builds gave image {} with the same {} layer digests",
                self.first_image,
                self.first_layers.len()
            );
        }
        writeln!(
            f,
            "NOT reproducible: image {} vs {}",
            self.first_image, self.second_image
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "  layer {} ({}): {} vs {}",
                l.index,
                if l.created_by.is_empty() {
                    "?"
                } else {
                    &l.created_by
                },
                l.first.as_deref().unwrap_or("none"),
                l.second.as_deref().unwrap_or("none")
            )?;
            if l.files.is_empty() {
                writeln!(
                    f,
                    "    same files and metadata: the entries differ in order or header encoding"
                )?;
            }
            for d in &l.files {
                writeln!(f, "    {d}")?;
            }
        }
        for k in &self.config {
            writeln!(f, "  config field `{k}` differs")?;
        }
        Ok(())
    }
}

/// Compares two normalised builds of the same recipe: which layers differ, and in them which
/// files and which of their fields.
pub fn compare(a: &Normalised, b: &Normalised) -> Comparison {
    let mut layers = Vec::new();
    for i in 0..a.layers.len().max(b.layers.len()) {
        let (la, lb) = (a.layers.get(i), b.layers.get(i));
        if la.map(|l| &l.diff_id) == lb.map(|l| &l.diff_id) {
            continue;
        }
        let map = |l: Option<&LayerReport>| -> BTreeMap<String, FileInfo> {
            l.map(|l| {
                l.files
                    .iter()
                    .map(|f| (f.path.clone(), f.clone()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let (fa, fb) = (map(la), map(lb));
        let mut paths: Vec<&String> = fa.keys().chain(fb.keys()).collect();
        paths.sort();
        paths.dedup();
        let files = paths
            .into_iter()
            .filter(|p| fa.get(*p) != fb.get(*p))
            .map(|p| FileDiff {
                path: p.clone(),
                first: fa.get(p).cloned(),
                second: fb.get(p).cloned(),
            })
            .collect();
        layers.push(LayerDiff {
            index: i,
            created_by: la.or(lb).map(|l| l.created_by.clone()).unwrap_or_default(),
            first: la.map(|l| l.diff_id.clone()),
            second: lb.map(|l| l.diff_id.clone()),
            files,
        });
    }
    let mut config = Vec::new();
    if let (Some(ca), Some(cb)) = (a.config.as_object(), b.config.as_object()) {
        let mut keys: Vec<&String> = ca.keys().chain(cb.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if k != "rootfs" && ca.get(k) != cb.get(k) {
                config.push(k.clone());
            }
        }
    }
    Comparison {
        reproducible: a.image_id == b.image_id,
        first_image: a.image_id.clone(),
        second_image: b.image_id.clone(),
        first_layers: a.diff_ids(),
        second_layers: b.diff_ids(),
        layers,
        config,
    }
}
