//! The recipe set a command works on: the embedded recipes or a folder.

use super::*;

/// The recipe set a command works on.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub source: Origin,
}

impl Catalog {
    pub fn embedded() -> Self {
        Catalog {
            source: Origin::Embedded,
        }
    }
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Catalog {
            source: Origin::Dir(dir.into()),
        }
    }

    fn place(&self) -> String {
        match &self.source {
            Origin::Embedded => "the recipes built into this binary".into(),
            Origin::Dir(d) => d.display().to_string(),
        }
    }

    /// Stack recipe names, sorted (app recipes in the same folder: [`Catalog::app_names`]).
    pub fn names(&self) -> Result<Vec<String>, LookupError> {
        let apps = self.app_names()?;
        Ok(self
            .all_names()?
            .into_iter()
            .filter(|n| !apps.contains(n))
            .collect())
    }

    /// Every recipe name in the folder, stacks and apps, sorted.
    pub(super) fn all_names(&self) -> Result<Vec<String>, LookupError> {
        let mut names: Vec<String> = match &self.source {
            Origin::Embedded => EMBEDDED.iter().map(|(n, _)| n.to_string()).collect(),
            Origin::Dir(dir) => std::fs::read_dir(dir)
                .map_err(|source| LookupError::Dir {
                    dir: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension().and_then(|x| x.to_str()) == Some("yaml"))
                        .then(|| p.file_stem()?.to_str().map(String::from))
                        .flatten()
                })
                .filter(|n| is_plain_name(n))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// Files in the recipes folder that look like recipes (`.yaml` or `.yml`, any case) but
    /// whose name is not a recipe name, so no command can find them: `list` warns about
    /// each, `check` counts each as an error.
    pub fn misnamed(&self) -> Vec<String> {
        let Origin::Dir(dir) = &self.source else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let (stem, ext) = name.rsplit_once('.')?;
                let yaml = ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml");
                (yaml && !(ext == "yaml" && is_plain_name(stem))).then_some(name)
            })
            .collect();
        out.sort();
        out
    }

    /// Finds, parses and validates one recipe by name.
    pub fn load(&self, name: &str) -> Result<Loaded, LookupError> {
        if !is_plain_name(name) {
            return Err(LookupError::NotAName(name.to_string()));
        }
        let unknown = || -> LookupError {
            LookupError::Unknown {
                name: name.to_string(),
                place: self.place(),
                known: self.names().unwrap_or_default(),
            }
        };
        let (file, text, origin) = match &self.source {
            Origin::Embedded => {
                let (_, text) = EMBEDDED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(unknown)?;
                (
                    format!("recipes/{name}.yaml"),
                    text.to_string(),
                    Origin::Embedded,
                )
            }
            Origin::Dir(dir) => {
                let path = dir.join(format!("{name}.yaml"));
                let shown = path.display().to_string();
                let bytes = match crate::recipe_files::read_recipe(&path) {
                    Ok(b) => b,
                    Err((std::io::ErrorKind::NotFound, _)) => return Err(unknown()),
                    Err((_, message)) => {
                        let message = format!("cannot read the recipe: {message}");
                        return Err(RecipeError::located(&shown, None, &[], message).into());
                    }
                };
                let text = String::from_utf8(bytes).map_err(|e| {
                    let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                    let good = std::str::from_utf8(good).unwrap_or_default();
                    let line = good.matches('\n').count() + 1;
                    let col = good.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    let message = format!("the recipe is not UTF-8 text: {}", e.utf8_error());
                    RecipeError::located(&shown, Some((line, col)), &[], message)
                })?;
                (shown, text, Origin::Dir(dir.clone()))
            }
        };
        let recipe = parse(&file, &text)?;
        Ok(Loaded::new(recipe, file, text, origin)?)
    }

    /// Every recipe, each parsed on its own so one bad file does not hide the others.
    pub fn load_all(&self) -> Result<Vec<Result<Loaded, LookupError>>, LookupError> {
        Ok(self.names()?.iter().map(|n| self.load(n)).collect())
    }
}
