//! Application recipes (`kind: app`): an app built on a stack's passed image.
//!
//! They live in the same recipes folder as the stacks and follow the same rules (strict
//! YAML, every value typed, errors naming file, line and field), but they are another
//! shape: no base, no PyTorch install. The stack they name provides both, and the pair is
//! checked here (an app that needs torch 2.4 refuses a stack with torch 1.13).

use super::*;

/// The app recipes shipped with the tool, beside [`EMBEDDED`].
pub const EMBEDDED_APPS: &[(&str, &str)] =
    &[("comfyui", include_str!("../../recipes/comfyui.yaml"))];

/// Packages an app may never install or replace: the stack's, tested by its smoke test.
pub const STACK_PACKAGES: &[&str] = &["torch", "torchvision", "torchaudio"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    App,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRecipe {
    /// `app`: what tells an app recipe from a stack's in the same folder.
    pub kind: AppKind,
    pub name: RecipeName,
    pub description: NonEmptyText,
    pub status: Status,
    /// Why the status is what it is: what has and has not been verified.
    #[serde(default)]
    pub verified: Option<Text>,
    /// The stack recipe whose passed image the app starts from.
    pub stack: RecipeName,
    /// What the app needs of the stack.
    pub requires: AppRequires,
    pub source: AppSource,
    /// Every Python package the app installs (the whole closure: pip runs with
    /// `--no-deps`), pinned by version; the file and sha256 for the stack's Python are in the
    /// lock beside the recipe (`<name>.lock`), unless the recipe hashes a package itself.
    /// Never torch, torchvision or torchaudio: those are the stack's.
    #[serde(default)]
    pub python_packages: Vec<Wheel>,
    /// Wheel files from the recipes folder, installed from there instead of an index (apps
    /// whose packages are not on an index; the tests, which have no network).
    #[serde(default)]
    pub wheel_files: Vec<RelPath>,
    /// A pip wheel from the recipes folder to run pip from, for stacks without pip.
    #[serde(default)]
    pub pip_wheel: Option<RelPath>,
    pub serve: Serve,
    pub smoke: AppSmoke,
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRequires {
    /// Lowest torch release (major.minor) the app runs on.
    pub torch: PythonVersion,
    /// Lowest Python (major.minor) the app runs on.
    #[serde(default)]
    pub python: Option<PythonVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum AppSource {
    /// A git commit: the commit id verifies the content.
    Git {
        repository: GitUrl,
        commit: CommitId,
    },
    /// An archive by URL, verified by its sha256 (unpacked with its top folder stripped).
    Archive { url: HttpsUrl, sha256: Sha256 },
    /// Files from the recipes folder (fixtures), copied flat into the app folder.
    Files(Vec<RelPath>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serve {
    /// The port the app listens on inside the container.
    pub port: u16,
    /// The app's command (exec form), run in the app folder. The port and the data folder
    /// are the app's own flags here; `run` and the smoke test add the GPU's flags.
    pub command: Vec<Text>,
    /// Flags added when the app runs without a GPU.
    #[serde(default)]
    pub cpu_args: Vec<Text>,
    /// Flags per gfx target (what the chip needs, e.g. no bf16 on RDNA1).
    #[serde(default)]
    pub gpu_args: BTreeMap<GfxTarget, Vec<Text>>,
    /// The data folder inside the container; each of `volumes` is a folder under it,
    /// mounted from the host, never baked into the image.
    pub data: AbsPath,
    pub volumes: Vec<RelName>,
    /// The health endpoint: GET answers 200 with JSON once the app is up.
    pub health: AbsPath,
    /// The JSON field of the health answer listing the devices (an array of objects with
    /// a `type`), checked to hold a GPU at the gpu level.
    #[serde(default)]
    pub devices_field: Option<EnvName>,
}

/// A plain folder name (one path part).
pub type RelName = RecipeName;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSmoke {
    /// Seconds the app has to answer its health endpoint.
    pub start_timeout_s: f64,
    /// The job: POSTed as JSON to `job_path`; a new file must appear under `output`.
    pub job_path: AbsPath,
    pub job: Text,
    pub output: RelName,
    pub job_timeout_s: f64,
    /// Seconds the app has to exit after SIGTERM.
    pub stop_timeout_s: f64,
    /// The whole app check container is killed after this long.
    pub container_timeout_s: f64,
}

/// The app recipe plus where it was read from, with its stack.
#[derive(Debug, Clone)]
pub struct LoadedApp {
    pub app: AppRecipe,
    pub file: String,
    pub text: String,
    pub stack: Loaded,
    /// The files the recipe names (source files, wheels, pip), by path.
    pub inputs: BTreeMap<RelPath, Vec<u8>>,
    /// The lock file of the app's packages (as shown in messages), once attached.
    pub lock_file: String,
}

impl LoadedApp {
    pub fn error_at(&self, path: &[&str], message: impl Into<String>) -> RecipeError {
        RecipeError::at(&self.file, &self.text, path, message)
    }
}

/// Whether a recipe text is an app's: a top-level `kind: app` line. Cheap, so listing a
/// folder does not parse every file twice; [`parse_app`] checks the real thing.
pub fn is_app_text(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim_end();
        l == "kind: app" || l == "kind: \"app\"" || l == "kind: 'app'"
    })
}

/// Parses an app recipe and checks what each field alone can say.
pub fn parse_app(file: &str, text: &str) -> Result<AppRecipe, RecipeError> {
    if text.len() as u64 > crate::recipe_files::MAX_RECIPE_BYTES {
        return Err(RecipeError::located(
            file,
            None,
            &[],
            "the recipe is more than the limit of 1 MiB",
        ));
    }
    // The same guard as a stack's: tags, merge keys, alias bytes, quoted numbers.
    let quoted = super::yaml_guard::guard(file, text)?;
    let app: AppRecipe = super::parse::deserialize_tracked(file, text)?;
    super::yaml_guard::quoted_typed(file, &app, &quoted)?;
    validate_app(file, text, &app)?;
    Ok(app)
}

fn validate_app(file: &str, text: &str, a: &AppRecipe) -> Result<(), RecipeError> {
    let err = |path: &[&str], msg: String| Err(RecipeError::at(file, text, path, msg));
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if a.name != stem {
        return err(
            &["name"],
            format!("`{}` must match the file name `{stem}.yaml`", a.name),
        );
    }
    if a.source_date_epoch > crate::values::MAX_EPOCH {
        return err(&["source_date_epoch"], "past 9999-12-31".into());
    }
    for (i, p) in a.python_packages.iter().enumerate() {
        let i = i.to_string();
        let name = p.name.as_str().to_ascii_lowercase().replace('_', "-");
        if STACK_PACKAGES.contains(&name.as_str()) {
            return err(
                &["python_packages", &i, "name"],
                format!(
                    "`{}` is the stack's: an app never installs or replaces torch, torchvision or torchaudio (the stack `{}` provides the tested ones); remove it",
                    p.name, a.stack
                ),
            );
        }
    }
    if a.serve.port == 0 {
        return err(&["serve", "port"], "0 is not a port".into());
    }
    if a.serve.command.is_empty() {
        return err(&["serve", "command"], "the app needs a command".into());
    }
    if !a.serve.volumes.contains(&a.smoke.output) {
        return err(
            &["smoke", "output"],
            format!(
                "`{}` is not one of serve.volumes: the job's output must land in a data folder",
                a.smoke.output
            ),
        );
    }
    for (path, v) in [
        (["smoke", "start_timeout_s"], a.smoke.start_timeout_s),
        (["smoke", "job_timeout_s"], a.smoke.job_timeout_s),
        (["smoke", "stop_timeout_s"], a.smoke.stop_timeout_s),
        (
            ["smoke", "container_timeout_s"],
            a.smoke.container_timeout_s,
        ),
    ] {
        if !(v.is_finite() && v > 0.0 && v <= crate::values::MAX_TIMEOUT_S) {
            return err(
                &path,
                format!("{v} is not a number of seconds above 0 and at most a week"),
            );
        }
    }
    let inner = a.smoke.start_timeout_s + a.smoke.job_timeout_s + a.smoke.stop_timeout_s;
    if a.smoke.container_timeout_s <= inner {
        return err(
            &["smoke", "container_timeout_s"],
            format!(
                "{} s leaves no room for start, job and stop ({inner} s together)",
                a.smoke.container_timeout_s
            ),
        );
    }
    serde_json::from_str::<serde_json::Value>(&a.smoke.job).map_err(|e| {
        RecipeError::at(
            file,
            text,
            &["smoke", "job"],
            format!("the job is not JSON: {e}"),
        )
    })?;
    Ok(())
}

/// `2.12.0+rocm10.1.0` -> (2, 12); None when it does not start with numbers.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '+', 'a', 'b', 'r']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The pair rule: the stack's torch and Python are at least what the app requires.
pub fn check_pair(
    file: &str,
    text: &str,
    a: &AppRecipe,
    stack: &Recipe,
) -> Result<(), RecipeError> {
    let want = major_minor(a.requires.torch.as_str());
    let have = major_minor(stack.pytorch.version());
    if want.is_none() || have.is_none() || have < want {
        return Err(RecipeError::at(
            file,
            text,
            &["stack"],
            format!(
                "app `{}` needs torch {} or later, and stack `{}` has torch {}: that pair is not supported; name a stack with a newer torch (`rdna1-images list` shows them)",
                a.name,
                a.requires.torch,
                stack.name,
                stack.pytorch.version()
            ),
        ));
    }
    if let Some(py) = &a.requires.python {
        if major_minor(stack.python.version.as_str()) < major_minor(py.as_str()) {
            return Err(RecipeError::at(
                file,
                text,
                &["stack"],
                format!(
                    "app `{}` needs Python {py} or later, and stack `{}` has Python {}: that pair is not supported",
                    a.name, stack.name, stack.python.version
                ),
            ));
        }
    }
    Ok(())
}

impl Catalog {
    /// App recipe names, sorted.
    pub fn app_names(&self) -> Result<Vec<String>, LookupError> {
        let mut names: Vec<String> = match &self.source {
            Origin::Embedded => EMBEDDED_APPS.iter().map(|(n, _)| n.to_string()).collect(),
            Origin::Dir(_) => self
                .all_names()?
                .into_iter()
                .filter(|n| self.text_of(n).map(|t| is_app_text(&t)).unwrap_or(false))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// Whether `name` is an app recipe here.
    pub fn is_app(&self, name: &str) -> bool {
        self.app_names()
            .map(|n| n.iter().any(|x| x == name))
            .unwrap_or(false)
    }

    fn text_of(&self, name: &str) -> Option<String> {
        match &self.source {
            Origin::Embedded => EMBEDDED_APPS
                .iter()
                .chain(EMBEDDED.iter())
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string()),
            Origin::Dir(dir) => {
                let bytes =
                    crate::recipe_files::read_recipe(&dir.join(format!("{name}.yaml"))).ok()?;
                String::from_utf8(bytes).ok()
            }
        }
    }

    /// Finds, parses and validates one app recipe, with its stack and the files it names, as
    /// written: its lock not applied (`Catalog::load_app` in `lock::app` applies it; that
    /// is what render, list, build and push use).
    pub fn load_app_unlocked(&self, name: &str) -> Result<LoadedApp, LookupError> {
        if !is_plain_name(name) {
            return Err(LookupError::NotAName(name.to_string()));
        }
        let text = self
            .text_of(name)
            .filter(|t| is_app_text(t))
            .ok_or_else(|| LookupError::Unknown {
                name: name.to_string(),
                place: "the app recipes".into(),
                known: self.app_names().unwrap_or_default(),
            })?;
        let file = match &self.source {
            Origin::Embedded => format!("recipes/{name}.yaml"),
            Origin::Dir(dir) => dir.join(format!("{name}.yaml")).display().to_string(),
        };
        let app = parse_app(&file, &text)?;
        let stack = self.load(&app.stack).map_err(|e| match e {
            LookupError::Unknown { known, .. } => LookupError::Invalid(RecipeError::at(
                &file,
                &text,
                &["stack"],
                format!(
                    "no stack recipe `{}`; stacks here: {}",
                    app.stack,
                    known.join(", ")
                ),
            )),
            other => other,
        })?;
        check_pair(&file, &text, &app, &stack.recipe)?;
        let mut named: Vec<(Vec<String>, RelPath)> = Vec::new();
        if let AppSource::Files(files) = &app.source {
            for (i, f) in files.iter().enumerate() {
                named.push((
                    vec!["source".into(), "files".into(), i.to_string()],
                    f.clone(),
                ));
            }
        }
        for (i, f) in app.wheel_files.iter().enumerate() {
            named.push((vec!["wheel_files".into(), i.to_string()], f.clone()));
        }
        if let Some(p) = &app.pip_wheel {
            named.push((vec!["pip_wheel".into()], p.clone()));
        }
        let mut inputs = BTreeMap::new();
        for (path, rel) in named {
            let data = match &self.source {
                Origin::Embedded => Err(format!("file `{rel}` is not embedded in this binary")),
                Origin::Dir(dir) => crate::recipe_files::read_inside(dir, &rel)
                    .map_err(|e| format!("cannot use `{}`: {e}", dir.join(rel.as_str()).display())),
            };
            let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
            let data = data.map_err(|m| RecipeError::at(&file, &text, &p, m))?;
            inputs.insert(rel, data);
        }
        Ok(LoadedApp {
            app,
            file,
            text,
            stack,
            inputs,
            lock_file: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfyui_parses_with_its_stack() {
        let l = Catalog::embedded().load_app("comfyui").unwrap();
        assert_eq!(l.app.stack, "therock");
        assert_eq!(l.stack.recipe.name, "therock");
        assert!(Catalog::embedded().is_app("comfyui"));
        assert!(!Catalog::embedded()
            .names()
            .unwrap()
            .contains(&"comfyui".to_string()));
    }

    #[test]
    fn an_unsupported_pair_is_refused_with_file_and_line() {
        let text =
            include_str!("../../recipes/comfyui.yaml").replace("stack: therock", "stack: rocm52");
        let app = parse_app("recipes/comfyui.yaml", &text).unwrap();
        let stack = Catalog::embedded().load("rocm52").unwrap().recipe;
        let e = check_pair("recipes/comfyui.yaml", &text, &app, &stack).unwrap_err();
        let line = text.lines().position(|l| l.starts_with("stack:")).unwrap() + 1;
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("recipes/comfyui.yaml:{line}:")),
            "{shown}"
        );
        assert!(
            shown.contains("torch 1.13.1+rocm5.2") && shown.contains("not supported"),
            "{shown}"
        );
    }

    #[test]
    fn torch_in_the_app_packages_is_refused() {
        let text = include_str!("../../recipes/comfyui.yaml").replacen(
            "python_packages:\n",
            "python_packages:\n  - name: torch\n    version: 2.5.0\n    sha256: [aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n",
            1,
        );
        let e = parse_app("recipes/comfyui.yaml", &text).unwrap_err();
        assert_eq!(e.field, "python_packages[0].name");
        assert!(
            e.message.contains("never installs or replaces torch"),
            "{e}"
        );
        assert!(e.line.is_some());
    }

    #[test]
    fn app_text_is_told_from_a_stack() {
        assert!(is_app_text("# x\nkind: app\nname: a\n"));
        assert!(!is_app_text("name: a\n  kind: app\n"));
        assert!(!is_app_text(include_str!("../../recipes/therock.yaml")));
    }

    #[test]
    fn versions_compare_by_major_minor() {
        assert_eq!(major_minor("2.12.0+rocm10.1.0"), Some((2, 12)));
        assert_eq!(major_minor("1.13.0a0"), Some((1, 13)));
        assert!(major_minor("1.13.1") < major_minor("2.4"));
    }
}
