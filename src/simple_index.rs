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
    pub yanked: bool,
}

/// PEP 503 name normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The project page of `name` under an index URL (`https://host/simple/` + `torch/`).
pub fn project_url(index: &str, name: &str) -> Result<Url, String> {
    let mut base = Url::parse(index).map_err(|e| format!("index `{index}` is not a URL: {e}"))?;
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(&format!("{}/", canonical_name(name)))
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
            yanked,
        });
    }
    Ok(out)
}

/// PEP 503: one `<a href="URL#sha256=HEX">FILENAME</a>` per file, `data-yanked` when
/// yanked. Anything else on the page is ignored.
fn parse_html(body: &str, page: &Url) -> Vec<IndexFile> {
    let lower = body.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("<a").map(|i| at + i) {
        let Some(tag_end) = lower[i..].find('>').map(|e| i + e) else {
            break;
        };
        let attrs = &body[i + 2..tag_end];
        let close = lower[tag_end..]
            .find("</a")
            .map(|e| tag_end + e)
            .unwrap_or(body.len());
        let text = unescape(body[tag_end + 1..close].trim());
        at = close;
        let Some(href) = attribute(attrs, "href") else {
            continue;
        };
        let Ok(url) = page.join(&unescape(&href)) else {
            continue;
        };
        let sha256 = url.fragment().and_then(|f| {
            f.strip_prefix("sha256=")
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        let filename = if text.is_empty() {
            last_segment(&url)
        } else {
            text
        };
        out.push(IndexFile {
            filename,
            url: without_fragment(url),
            sha256,
            yanked: attribute(attrs, "data-yanked").is_some(),
        });
    }
    out
}

/// The value of `name="..."` (or `'...'`, or bare) in a tag's attributes; `Some("")` for
/// an attribute without a value.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let lower = attrs.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| from + i) {
        from = i + name.len();
        let before_ok = i == 0 || lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = attrs[from..].trim_start();
        if !before_ok {
            continue;
        }
        let Some(v) = rest.strip_prefix('=') else {
            let next = rest.chars().next();
            if next.is_none() || next.is_some_and(|c| c.is_whitespace() || c == '/') {
                return Some(String::new());
            }
            continue;
        };
        let v = v.trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
            _ => v
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or("")
                .to_string(),
        });
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
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

/// `%2B` -> `+` and the like, for file names taken from URLs.
pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// A wheel's file name split into its parts (name, version, python, abi, platform tags).
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

/// `name-version.tar.gz` (or `.zip`): the name and version of a source archive.
fn sdist_name(filename: &str) -> Option<(&str, &str)> {
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    stem.rsplit_once('-')
}

/// Versions compare as PEP 440 local versions do in practice here: case-insensitive, `_`
/// and `-` in the local part meaning `.`.
fn same_version(a: &str, b: &str) -> bool {
    let norm = |v: &str| {
        let v = v.to_ascii_lowercase();
        match v.split_once('+') {
            Some((public, local)) => format!("{public}+{}", local.replace(['_', '-'], ".")),
            None => v,
        }
    };
    norm(a) == norm(b)
}

/// How well a wheel fits CPython `major.minor` on x86_64 Linux (glibc): higher is more
/// specific, `None` when pip would not install it there.
fn fit(w: &WheelName<'_>, minor: u32) -> Option<(u8, u8, u8)> {
    let cp = format!("cp3{minor}");
    let py = w
        .python
        .split('.')
        .filter_map(|t| {
            if t == cp {
                Some(3)
            } else if t == format!("py3{minor}") {
                Some(2)
            } else if t == "py3" {
                Some(1)
            } else if let Some(m) = t.strip_prefix("cp3").and_then(|m| m.parse::<u32>().ok()) {
                // An abi3 wheel built for an older CPython 3 runs on newer ones.
                (m < minor && w.abi.split('.').any(|a| a == "abi3")).then_some(1)
            } else {
                None
            }
        })
        .max()?;
    let abi = w
        .abi
        .split('.')
        .filter_map(|a| match a {
            a if a == cp => Some(3),
            "abi3" => Some(2),
            "none" => Some(1),
            _ => None,
        })
        .max()?;
    let plat = w
        .platform
        .split('.')
        .filter_map(|p| {
            if p == "linux_x86_64" || (p.starts_with("manylinux") && p.ends_with("_x86_64")) {
                Some(1)
            } else if p == "any" {
                Some(0)
            } else {
                None
            }
        })
        .max()?;
    Some((py, abi, plat))
}

/// The file of `name` at exactly `version` that pip would pick on CPython `python`
/// (`"3.13"`), linux x86_64: the most specific wheel, or the source archive when `sdist`.
/// Yanked files are skipped. The error lists the versions the page does have.
pub fn choose<'a>(
    files: &'a [IndexFile],
    name: &str,
    version: &str,
    python: &str,
    sdist: bool,
) -> Result<&'a IndexFile, String> {
    let minor: u32 = python
        .strip_prefix("3.")
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("Python `{python}` is not 3.x"))?;
    let want = canonical_name(name);
    let mut best: Option<((u8, u8, u8), &IndexFile)> = None;
    let mut versions: Vec<String> = Vec::new();
    for f in files.iter().filter(|f| !f.yanked) {
        let (fname, fversion, score) = if sdist {
            match sdist_name(&f.filename) {
                Some((n, v)) => (n, v, Some((0, 0, 0))),
                None => continue,
            }
        } else {
            match wheel_name(&f.filename) {
                Some(w) => (w.name, w.version, fit(&w, minor)),
                None => continue,
            }
        };
        if canonical_name(fname) != want {
            continue;
        }
        if !versions.iter().any(|v| v == fversion) {
            versions.push(fversion.to_string());
        }
        if !same_version(fversion, version) {
            continue;
        }
        if let Some(s) = score {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, f));
            }
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        let kind = if sdist {
            "source archive".to_string()
        } else {
            format!("wheel for CPython {python} on linux x86_64")
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

    fn page() -> Url {
        Url::parse("http://127.0.0.1:8000/simple/torch/").unwrap()
    }

    #[test]
    fn names_normalise_as_pep_503_says() {
        assert_eq!(canonical_name("Typing_Extensions"), "typing-extensions");
        assert_eq!(
            canonical_name("amd_torch.device--gfx1010"),
            "amd-torch-device-gfx1010"
        );
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
        let f = choose(&files, "torch", "2.12.0+rocm10.1.0", "3.13", false).unwrap();
        assert_eq!(
            f.filename,
            "torch-2.12.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl"
        );
        let e = choose(&files, "torch", "2.11.0+rocm10.1.0", "3.13", false).unwrap_err();
        assert!(e.contains("no wheel for CPython 3.13"), "{e}");
        let e = choose(&files, "torch", "2.12.0+rocm10.1.0", "3.11", false).unwrap_err();
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
            choose(&files, "rocm", "10.1.0", "3.13", true)
                .unwrap()
                .filename,
            "rocm-10.1.0.tar.gz"
        );
        assert!(
            choose(&files, "rocm", "10.0.0", "3.13", true).is_err(),
            "yanked"
        );
        assert!(
            choose(&files, "rocm", "10.1.0", "3.13", false).is_err(),
            "not a wheel"
        );
    }

    #[test]
    fn the_most_specific_wheel_wins() {
        let f = |n: &str| IndexFile {
            filename: n.into(),
            url: format!("https://h/{n}"),
            sha256: None,
            yanked: false,
        };
        let files = [
            f("markupsafe-3.0.4-py3-none-any.whl"),
            f("MarkupSafe-3.0.4-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            f("markupsafe-3.0.4-cp313-cp313-manylinux_2_17_aarch64.whl"),
            f("markupsafe-3.0.4-cp312-abi3-manylinux_2_28_x86_64.whl"),
        ];
        let got = choose(&files, "markupsafe", "3.0.4", "3.13", false).unwrap();
        assert!(
            got.filename.contains("cp313-cp313-manylinux_2_17_x86_64"),
            "{got:?}"
        );
        let got = choose(&files[..1], "markupsafe", "3.0.4", "3.13", false).unwrap();
        assert!(got.filename.ends_with("py3-none-any.whl"));
        let got = choose(&files[3..], "markupsafe", "3.0.4", "3.13", false).unwrap();
        assert!(
            got.filename.contains("abi3"),
            "abi3 of an older CPython fits"
        );
        assert!(choose(&files[2..3], "markupsafe", "3.0.4", "3.13", false).is_err());
        // Device wheels are py3-none-linux_x86_64.
        let dev = [f(
            "amd_torch_device_gfx1010-2.12.0+rocm10.1.0-py3-none-linux_x86_64.whl",
        )];
        assert!(choose(
            &dev,
            "amd-torch-device-gfx1010",
            "2.12.0+rocm10.1.0",
            "3.13",
            false
        )
        .is_ok());
    }

    #[test]
    fn percent_decoding_of_file_names() {
        assert_eq!(
            percent_decode("torch-2.12.0%2Brocm10.1.0.whl"),
            "torch-2.12.0+rocm10.1.0.whl"
        );
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
