//! Python package indexes (the "simple" API: PEP 503 HTML, PEP 691 JSON) and the choice of
//! the one file pip would install for a pinned version on the image's CPython.
//!
//! Pure: pages come in as text, files go out as data; `index_client` does the HTTP.

use url::Url;

/// PEP 691 content negotiation: JSON first, the HTML form for indexes that only have it.
pub const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";

/// One file a project page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    /// Absolute, with any `#sha256=` fragment removed.
    pub url: String,
    /// The sha256 the index publishes, if it does.
    pub sha256: Option<String>,
    /// The size the index publishes (PEP 700, JSON pages), if it does.
    pub size: Option<u64>,
    pub yanked: bool,
}

/// The PEP 503 form of a distribution name, as pip compares names: lowercase, every run of
/// `-`, `_`, `.` one `-` (pep508_rs's `PackageName`), and any `[extras]` the same way
/// (`ExtraName`, PEP 685): `Typing_Extensions` -> `typing-extensions`. `None` for a name
/// outside PEP 508's grammar, which names no package pip would install.
pub fn canonical_name(name: &str) -> Option<String> {
    use std::str::FromStr;
    // The split by hand: pep508_rs parses extras only inside a whole requirement, which
    // would also take `name>=1` (a version) as a name.
    let (base, extras) = match name.split_once('[') {
        Some((base, rest)) => (base, Some(rest.strip_suffix(']')?)),
        None => (name, None),
    };
    // pep508_rs takes "" as a valid (empty) name.
    if base.is_empty() {
        return None;
    }
    let mut out = pep508_rs::PackageName::from_str(base).ok()?.to_string();
    if let Some(extras) = extras {
        let extras = extras
            .split(',')
            .map(|e| {
                pep508_rs::ExtraName::from_str(e)
                    .ok()
                    .map(|e| e.to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        out = format!("{out}[{}]", extras.join(","));
    }
    Some(out)
}

fn not_a_name(name: &str) -> String {
    format!("`{name}` is not a package name (PEP 508: letters, digits, `._-`, starting and ending with a letter or digit): correct it in the recipe")
}

/// Whether two names are the same package (both valid, equal once normalised).
pub fn same_name(a: &str, b: &str) -> bool {
    matches!((canonical_name(a), canonical_name(b)), (Some(x), Some(y)) if x == y)
}

/// The project page of `name` under an index URL (`https://host/simple/` + `torch/`).
pub fn project_url(index: &str, name: &str) -> Result<Url, String> {
    let mut base = Url::parse(index).map_err(|e| format!("index `{index}` is not a URL: {e}"))?;
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    let name = canonical_name(name).ok_or_else(|| not_a_name(name))?;
    base.join(&format!("{name}/"))
        .map_err(|e| format!("index `{index}`: {e}"))
}

/// The files of a project page, whichever of the two formats the server chose.
pub fn parse_page(body: &str, content_type: &str, page: &Url) -> Result<Vec<IndexFile>, String> {
    if content_type
        .trim_start()
        .starts_with("application/vnd.pypi.simple.v1+json")
    {
        parse_json(body, page)
    } else {
        Ok(parse_html(body, page))
    }
}

fn parse_json(body: &str, page: &Url) -> Result<Vec<IndexFile>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("{page}: not a PEP 691 page: {e}"))?;
    let files = v["files"]
        .as_array()
        .ok_or_else(|| format!("{page}: a PEP 691 page without `files`"))?;
    let mut out = Vec::new();
    for f in files {
        let (Some(filename), Some(href)) = (f["filename"].as_str(), f["url"].as_str()) else {
            continue;
        };
        let url = page
            .join(href)
            .map_err(|e| format!("{page}: bad file URL `{href}`: {e}"))?;
        let yanked = match &f["yanked"] {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(_) => true,
            _ => false,
        };
        out.push(IndexFile {
            filename: filename.to_string(),
            url: without_fragment(url),
            sha256: f["hashes"]["sha256"].as_str().map(str::to_ascii_lowercase),
            size: f["size"].as_u64(),
            yanked,
        });
    }
    Ok(out)
}

/// PEP 503: one `<a href="URL#sha256=HEX">FILENAME</a>` per file, `data-yanked` when
/// yanked. Anything else on the page is ignored. Tokenized as a browser (and pip's
/// `html.parser`) would: tag and attribute names in any case, quoted or bare values, every
/// character reference decoded in values and text.
fn parse_html(body: &str, page: &Url) -> Vec<IndexFile> {
    use html5gum::{Token, Tokenizer};
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    let mut out = Vec::new();
    let mut open: Option<Anchor> = None;
    // The reader of a `&str` cannot fail (its error type is `Infallible`).
    for token in Tokenizer::new(body).flatten() {
        match token {
            Token::StartTag(tag) if tag.name == b"a" => {
                out.extend(open.take().and_then(|a| a.file(page)));
                open = Some(Anchor {
                    href: tag.attributes.get(&b"href"[..]).map(|v| text(v)),
                    yanked: tag.attributes.contains_key(&b"data-yanked"[..]),
                    text: String::new(),
                });
            }
            Token::String(s) => {
                if let Some(a) = open.as_mut() {
                    a.text.push_str(&text(&s));
                }
            }
            Token::EndTag(tag) if tag.name == b"a" => {
                out.extend(open.take().and_then(|a| a.file(page)));
            }
            _ => {}
        }
    }
    out.extend(open.and_then(|a| a.file(page)));
    out
}

/// One `<a>` of a PEP 503 page as read so far.
struct Anchor {
    href: Option<String>,
    yanked: bool,
    text: String,
}

impl Anchor {
    /// The file it links, `None` for an anchor without a usable `href`.
    fn file(self, page: &Url) -> Option<IndexFile> {
        let url = page.join(&self.href?).ok()?;
        let sha256 = url.fragment().and_then(|f| {
            f.strip_prefix("sha256=")
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        let text = self.text.trim();
        let filename = if text.is_empty() {
            last_segment(&url)
        } else {
            text.to_string()
        };
        Some(IndexFile {
            filename,
            url: without_fragment(url),
            sha256,
            size: None,
            yanked: self.yanked,
        })
    }
}

fn without_fragment(mut url: Url) -> String {
    url.set_fragment(None);
    url.to_string()
}

fn last_segment(url: &Url) -> String {
    let seg = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    percent_decode(seg)
}

/// `%2B` -> `+` and the like, for file names taken from URLs (a `+` stays a `+`).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A wheel's file name split into its parts (name, version, python, abi, platform tags).
/// By hand, as the tags below: uv's crates for both say they are internal to uv, need a
/// newer Rust than ours and its own PEP 440 types, not the pep440_rs used here.
#[derive(Debug, PartialEq, Eq)]
struct WheelName<'a> {
    name: &'a str,
    version: &'a str,
    python: &'a str,
    abi: &'a str,
    platform: &'a str,
}

fn wheel_name(filename: &str) -> Option<WheelName<'_>> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    let (name, version, rest) = match parts.len() {
        5 => (parts[0], parts[1], &parts[2..]),
        6 => (parts[0], parts[1], &parts[3..]),
        _ => return None,
    };
    Some(WheelName {
        name,
        version,
        python: rest[0],
        abi: rest[1],
        platform: rest[2],
    })
}

/// `name-version.tar.gz` (or `.zip`): the name and version of a source archive (by hand:
/// one split at the last `-`, as packaging's `parse_sdist_filename` does).
fn sdist_name(filename: &str) -> Option<(&str, &str)> {
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    stem.rsplit_once('-')
}

/// Versions compare as PEP 440 says (`pep440_rs`): `2.12.0+ROCm10.1.0` is `2.12.0+rocm10.1.0`,
/// `1.0` is `1.0.0`. A string that is not PEP 440 compares as itself, ignoring ASCII case
/// (as PEP 440 does for the versions it knows). The one rule for the index and the lock.
pub fn same_version(a: &str, b: &str) -> bool {
    use std::str::FromStr;
    match (
        pep440_rs::Version::from_str(a),
        pep440_rs::Version::from_str(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The interpreter and platform a wheel must fit: CPython `3.minor` on x86_64 Linux with
/// glibc `glibc` (major, minor), what the image's base has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub python_minor: u32,
    pub glibc: (u32, u32),
}

impl Target {
    /// `python` as `"3.13"`, `glibc` as `"2.41"`.
    pub fn parse(python: &str, glibc: &str) -> Result<Target, String> {
        let python_minor = python
            .strip_prefix("3.")
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("Python `{python}` is not 3.x"))?;
        let glibc = glibc
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .filter(|(a, _)| *a == 2)
            .ok_or_else(|| format!("glibc `{glibc}` is not 2.x"))?;
        Ok(Target {
            python_minor,
            glibc,
        })
    }

    /// The platform tags pip accepts on this machine, best first (packaging's
    /// `_manylinux.platform_tags`, then `linux_x86_64`): `manylinux_2_M_x86_64` from the
    /// base's glibc down to 2.5, each legacy alias right after its glibc (2.17
    /// manylinux2014, 2.12 manylinux2010, 2.5 manylinux1).
    fn platforms(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (_, top) = self.glibc;
        for minor in (5..=top).rev() {
            out.push(format!("manylinux_2_{minor}_x86_64"));
            let legacy = match minor {
                17 => Some("manylinux2014"),
                12 => Some("manylinux2010"),
                5 => Some("manylinux1"),
                _ => None,
            };
            if let Some(l) = legacy {
                out.push(format!("{l}_x86_64"));
            }
        }
        out.push("linux_x86_64".into());
        out
    }

    /// Every (python, abi, platform) tag pip accepts here, in pip's order of preference
    /// (packaging's `sys_tags` for CPython: `cpython_tags`, then `compatible_tags`).
    pub fn tags(&self) -> Vec<(String, String, String)> {
        let m = self.python_minor;
        let cp = format!("cp3{m}");
        let plats = self.platforms();
        let mut out = Vec::new();
        let mut push = |py: &str, abi: &str, plat: &str| {
            out.push((py.to_string(), abi.to_string(), plat.to_string()));
        };
        for abi in [cp.as_str(), "abi3", "none"] {
            for p in &plats {
                push(&cp, abi, p);
            }
        }
        // abi3 wheels built for an older CPython 3 (3.2 and up) run on this one.
        for older in (2..m).rev() {
            for p in &plats {
                push(&format!("cp3{older}"), "abi3", p);
            }
        }
        let mut pys = vec![format!("py3{m}"), "py3".to_string()];
        pys.extend((0..m).rev().map(|o| format!("py3{o}")));
        for py in &pys {
            for p in &plats {
                push(py, "none", p);
            }
        }
        push(&cp, "none", "any");
        for py in &pys {
            push(py, "none", "any");
        }
        out
    }
}

/// The rank of a wheel among `tags` (lower is better: pip installs the wheel whose best
/// tag comes first), `None` when pip would not install it here. A compressed tag set
/// (`cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64`) stands for every combination.
fn rank(w: &WheelName<'_>, tags: &[(String, String, String)]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for py in w.python.split('.') {
        for abi in w.abi.split('.') {
            for plat in w.platform.split('.') {
                if let Some(i) = tags
                    .iter()
                    .position(|(a, b, c)| a == py && b == abi && c == plat)
                {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
            }
        }
    }
    best
}

/// The file of `name` at exactly `version` that pip would pick on `target`: the wheel
/// whose best tag ranks first among the tags pip accepts there (so a `manylinux_2_39`
/// wheel is never taken for a glibc 2.35 base), or the source archive when `sdist`.
/// Yanked files are skipped. The error lists the versions the page does have.
pub fn choose<'a>(
    files: &'a [IndexFile],
    name: &str,
    version: &str,
    target: &Target,
    sdist: bool,
) -> Result<&'a IndexFile, String> {
    let tags = target.tags();
    let want = canonical_name(name).ok_or_else(|| not_a_name(name))?;
    let mut best: Option<(usize, &IndexFile)> = None;
    let mut versions: Vec<String> = Vec::new();
    for f in files.iter().filter(|f| !f.yanked) {
        let (fname, fversion, score) = if sdist {
            match sdist_name(&f.filename) {
                Some((n, v)) => (n, v, Some(0)),
                None => continue,
            }
        } else {
            match wheel_name(&f.filename) {
                Some(w) => (w.name, w.version, rank(&w, &tags)),
                None => continue,
            }
        };
        if canonical_name(fname).as_ref() != Some(&want) {
            continue;
        }
        if !versions.iter().any(|v| v == fversion) {
            versions.push(fversion.to_string());
        }
        if !same_version(fversion, version) {
            continue;
        }
        if let Some(s) = score {
            if best.is_none_or(|(b, _)| s < b) {
                best = Some((s, f));
            }
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        let kind = if sdist {
            "source archive".to_string()
        } else {
            format!(
                "wheel for CPython 3.{} on linux x86_64 with glibc {}.{}",
                target.python_minor, target.glibc.0, target.glibc.1
            )
        };
        let listed = if versions.is_empty() {
            "none".to_string()
        } else {
            let n = versions.len();
            let shown: Vec<&str> = versions.iter().rev().take(12).map(String::as_str).collect();
            format!("{}{}", shown.join(", "), if n > 12 { ", ..." } else { "" })
        };
        format!("no {kind} of `{name}` {version} (versions listed: {listed})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T313: Target = Target {
        python_minor: 13,
        glibc: (2, 41),
    };
    const T311: Target = Target {
        python_minor: 11,
        glibc: (2, 36),
    };

    fn page() -> Url {
        Url::parse("http://127.0.0.1:8000/simple/torch/").unwrap()
    }

    /// A file the index lists, by name only.
    fn file(name: &str) -> IndexFile {
        IndexFile {
            filename: name.into(),
            url: format!("https://h/{name}"),
            sha256: None,
            size: None,
            yanked: false,
        }
    }

    #[test]
    fn names_normalise_as_pep_503_says() {
        let c = |n: &str| canonical_name(n);
        assert_eq!(c("Typing_Extensions").as_deref(), Some("typing-extensions"));
        assert_eq!(
            c("amd_torch.device--gfx1010").as_deref(),
            Some("amd-torch-device-gfx1010")
        );
        assert_eq!(
            c("Torch[Device_GFX1010,b.c]").as_deref(),
            Some("torch[device-gfx1010,b-c]")
        );
        // Outside PEP 508's grammar: no name, so never the same as another.
        for bad in ["", "-a", "a-", "a b", "a>=1", "ä", "a[", "a[b", "a[-b]"] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        assert!(same_name("Markup.Safe", "markup_safe"));
        assert!(!same_name("a-", "a-"));
        let e = project_url("https://h/simple/", "a b").unwrap_err();
        assert!(e.contains("`a b` is not a package name"), "{e}");
        assert_eq!(
            project_url("https://h/rocm/whl-next", "MarkupSafe")
                .unwrap()
                .as_str(),
            "https://h/rocm/whl-next/markupsafe/"
        );
    }

    const HTML: &str = r#"<!DOCTYPE html><html><body><h1>Links for torch</h1>
<a href="../../files/torch-2.12.0%2Brocm10.1.0-cp313-cp313-linux_x86_64.whl#sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA">torch-2.12.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl</a><br/>
<a href='/files/torch-2.12.0+rocm10.1.0-cp312-cp312-linux_x86_64.whl' data-requires-python="&gt;=3.10">torch-2.12.0+rocm10.1.0-cp312-cp312-linux_x86_64.whl</a>
<A HREF="/files/torch-2.11.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl" data-yanked>torch-2.11.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl</A>
<a href="/files/torch-2.12.0+rocm10.1.0-cp313-cp313-win_amd64.whl">torch-2.12.0+rocm10.1.0-cp313-cp313-win_amd64.whl</a>
</body></html>"#;

    #[test]
    fn html_pages_give_urls_hashes_and_yanks() {
        let files = parse_page(HTML, "text/html", &page()).unwrap();
        assert_eq!(files.len(), 4);
        assert_eq!(
            files[0].url,
            "http://127.0.0.1:8000/files/torch-2.12.0%2Brocm10.1.0-cp313-cp313-linux_x86_64.whl"
        );
        assert_eq!(files[0].sha256.as_deref(), Some(&"a".repeat(64)[..]));
        assert_eq!(files[1].sha256, None);
        assert!(!files[1].yanked && files[2].yanked);
        let f = choose(&files, "torch", "2.12.0+rocm10.1.0", &T313, false).unwrap();
        assert_eq!(
            f.filename,
            "torch-2.12.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl"
        );
        let e = choose(&files, "torch", "2.11.0+rocm10.1.0", &T313, false).unwrap_err();
        assert!(
            e.contains("no wheel for CPython 3.13 on linux x86_64 with glibc 2.41"),
            "{e}"
        );
        let e = choose(&files, "torch", "2.12.0+rocm10.1.0", &T311, false).unwrap_err();
        assert!(e.contains("versions listed: 2.12.0+rocm10.1.0"), "{e}");
    }

    #[test]
    fn json_pages_are_read_too() {
        let body = r#"{"meta":{"api-version":"1.1"},"name":"rocm","files":[
            {"filename":"rocm-10.1.0.tar.gz","url":"rocm-10.1.0.tar.gz","hashes":{"sha256":"BB"},"yanked":false},
            {"filename":"rocm-10.0.0.tar.gz","url":"https://x/rocm-10.0.0.tar.gz","hashes":{},"yanked":"broken"}]}"#;
        let p = Url::parse("https://h/simple/rocm/").unwrap();
        let files = parse_page(body, "application/vnd.pypi.simple.v1+json", &p).unwrap();
        assert_eq!(files[0].url, "https://h/simple/rocm/rocm-10.1.0.tar.gz");
        assert_eq!(files[0].sha256.as_deref(), Some("bb"));
        assert!(files[1].yanked);
        assert_eq!(
            choose(&files, "rocm", "10.1.0", &T313, true)
                .unwrap()
                .filename,
            "rocm-10.1.0.tar.gz"
        );
        assert!(
            choose(&files, "rocm", "10.0.0", &T313, true).is_err(),
            "yanked"
        );
        assert!(
            choose(&files, "rocm", "10.1.0", &T313, false).is_err(),
            "not a wheel"
        );
    }

    #[test]
    fn the_most_specific_wheel_wins() {
        let f = file;
        let files = [
            f("markupsafe-3.0.4-py3-none-any.whl"),
            f("MarkupSafe-3.0.4-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            f("markupsafe-3.0.4-cp313-cp313-manylinux_2_17_aarch64.whl"),
            f("markupsafe-3.0.4-cp312-abi3-manylinux_2_28_x86_64.whl"),
        ];
        let got = choose(&files, "markupsafe", "3.0.4", &T313, false).unwrap();
        assert!(
            got.filename.contains("cp313-cp313-manylinux_2_17_x86_64"),
            "{got:?}"
        );
        let got = choose(&files[..1], "markupsafe", "3.0.4", &T313, false).unwrap();
        assert!(got.filename.ends_with("py3-none-any.whl"));
        let got = choose(&files[3..], "markupsafe", "3.0.4", &T313, false).unwrap();
        assert!(
            got.filename.contains("abi3"),
            "abi3 of an older CPython fits"
        );
        assert!(choose(&files[2..3], "markupsafe", "3.0.4", &T313, false).is_err());
        // Device wheels are py3-none-linux_x86_64.
        let dev = [f(
            "amd_torch_device_gfx1010-2.12.0+rocm10.1.0-py3-none-linux_x86_64.whl",
        )];
        assert!(choose(
            &dev,
            "amd-torch-device-gfx1010",
            "2.12.0+rocm10.1.0",
            &T313,
            false
        )
        .is_ok());
    }

    /// The choice pip makes (packaging's tag order), checked case by case: the glibc floor
    /// decides, legacy aliases count as their glibc, abi3 and pure wheels rank below an
    /// exact CPython match.
    #[test]
    fn wheels_are_chosen_as_pip_would_for_the_base() {
        let jammy = Target::parse("3.10", "2.35").unwrap();
        let pick = |names: &[&str], t: &Target| {
            let files: Vec<IndexFile> = names.iter().map(|n| file(n)).collect();
            choose(&files, "p", "1.0", t, false).map(|x| x.filename.clone())
        };
        // Above the base's glibc: never, even when it is the only cp310 wheel.
        let e = pick(&["p-1.0-cp310-cp310-manylinux_2_39_x86_64.whl"], &jammy).unwrap_err();
        assert!(e.contains("glibc 2.35"), "{e}");
        assert_eq!(
            pick(
                &[
                    "p-1.0-cp310-cp310-manylinux_2_39_x86_64.whl",
                    "p-1.0-py3-none-any.whl",
                ],
                &jammy
            )
            .unwrap(),
            "p-1.0-py3-none-any.whl"
        );
        // The newest floor the base allows wins; legacy names are their glibc.
        assert_eq!(
            pick(
                &[
                    "p-1.0-cp310-cp310-manylinux1_x86_64.whl",
                    "p-1.0-cp310-cp310-manylinux2014_x86_64.whl",
                    "p-1.0-cp310-cp310-manylinux_2_28_x86_64.whl",
                    "p-1.0-cp310-cp310-manylinux_2_36_x86_64.whl",
                ],
                &jammy
            )
            .unwrap(),
            "p-1.0-cp310-cp310-manylinux_2_28_x86_64.whl"
        );
        assert_eq!(
            pick(
                &[
                    "p-1.0-cp310-cp310-manylinux1_x86_64.whl",
                    "p-1.0-cp310-cp310-manylinux2010_x86_64.whl",
                ],
                &jammy
            )
            .unwrap(),
            "p-1.0-cp310-cp310-manylinux2010_x86_64.whl"
        );
        // Exact CPython ABI over abi3 over none; abi3 of an older CPython; never a newer one.
        assert_eq!(
            pick(
                &[
                    "p-1.0-py3-none-any.whl",
                    "p-1.0-cp38-abi3-manylinux2014_x86_64.whl",
                    "p-1.0-cp310-cp310-linux_x86_64.whl",
                ],
                &jammy
            )
            .unwrap(),
            "p-1.0-cp310-cp310-linux_x86_64.whl"
        );
        assert_eq!(
            pick(
                &[
                    "p-1.0-py3-none-any.whl",
                    "p-1.0-cp38-abi3-manylinux2014_x86_64.whl",
                ],
                &jammy
            )
            .unwrap(),
            "p-1.0-cp38-abi3-manylinux2014_x86_64.whl"
        );
        assert!(pick(&["p-1.0-cp311-abi3-manylinux2014_x86_64.whl"], &jammy).is_err());
        assert!(pick(&["p-1.0-cp311-cp311-manylinux2014_x86_64.whl"], &jammy).is_err());
        // The order of the first tags is packaging's.
        let tags = jammy.tags();
        let shown: Vec<String> = tags[..3]
            .iter()
            .map(|(a, b, c)| format!("{a}-{b}-{c}"))
            .collect();
        assert_eq!(
            shown,
            [
                "cp310-cp310-manylinux_2_35_x86_64",
                "cp310-cp310-manylinux_2_34_x86_64",
                "cp310-cp310-manylinux_2_33_x86_64"
            ]
        );
        assert_eq!(
            tags.last().unwrap(),
            &("py30".into(), "none".into(), "any".into())
        );
        // Versions are PEP 440's: case and trailing zeros do not matter, locals do.
        assert!(same_version("2.12.0+ROCm10.1.0", "2.12+rocm10.1.0"));
        assert!(!same_version("2.12.0+rocm10.1.0", "2.12.0"));
        assert!(Target::parse("3.13", "3.1").is_err());
    }

    #[test]
    fn percent_decoding_of_file_names() {
        assert_eq!(
            percent_decode("torch-2.12.0%2Brocm10.1.0.whl"),
            "torch-2.12.0+rocm10.1.0.whl"
        );
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("a&b=c%3Dd"), "a&b=c=d");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }

    /// What the old five-entity scraper got wrong: any character reference, a tag split
    /// over lines, markup inside the link, an anchor never closed, comments.
    #[test]
    fn html_pages_are_tokenized_as_a_browser_would() {
        let body = "<html><body><!-- <a href=\"/no.whl\">no.whl</a> -->\n            <a\n  href=\"/f/p-1.0%2Blocal-py3-none-any.whl#sha256=&#x41;AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n  data-yanked=\"bad &amp; broken\"\n><b>p-1.0+local-py3-none-any.whl</b></a>\n\
            <a href=/f/q-2.0-py3-none-any.whl?x=1&amp;y=2>q&#45;2.0&ndash;</a>\n\
            <a href=\"/f/r-3.0-py3-none-any.whl\">\n\
            <a name=top>no href</a>";
        let files = parse_page(body, "text/html; charset=utf-8", &page()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(
            names,
            [
                "p-1.0+local-py3-none-any.whl",
                "q-2.0\u{2013}",
                "r-3.0-py3-none-any.whl"
            ]
        );
        assert!(files[0].yanked && !files[1].yanked && !files[2].yanked);
        assert_eq!(files[0].sha256.as_deref(), Some(&"a".repeat(64)[..]));
        assert_eq!(
            files[0].url,
            "http://127.0.0.1:8000/f/p-1.0%2Blocal-py3-none-any.whl"
        );
        assert_eq!(
            files[1].url,
            "http://127.0.0.1:8000/f/q-2.0-py3-none-any.whl?x=1&y=2"
        );
    }
}
