//! Parsing a recipe: the YAML options and limits, the error that names file, line,
//! column and field, and the locator that finds a field's line.

use super::*;

/// A recipe problem: file, line, column, field path, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl RecipeError {
    /// An error about `path` (field names and list indices), located in `text` when possible.
    pub fn at(file: &str, text: &str, path: &[&str], message: impl Into<String>) -> Self {
        Self::located(file, locate(text, path), path, message)
    }

    pub(super) fn located(
        file: &str,
        loc: Option<(usize, usize)>,
        path: &[&str],
        message: impl Into<String>,
    ) -> Self {
        RecipeError {
            file: file.to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            field: display_path(path),
            message: message.into(),
        }
    }
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", crate::escape::value(&self.field))?;
        }
        write!(f, ": {}", crate::escape::value(&self.message))
    }
}

impl std::error::Error for RecipeError {}

/// Problems finding a recipe by name.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("recipe name `{0}` is not a plain name (letters, digits, `-`, `_`; no paths): use `--recipes DIR` to read recipes from another folder")]
    NotAName(String),
    #[error("unknown recipe `{name}`; recipes in {place}: {}", known.join(", "))]
    Unknown {
        name: String,
        place: String,
        known: Vec<String>,
    },
    #[error("cannot read recipes folder {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] RecipeError),
}

pub(super) fn display_path(path: &[&str]) -> String {
    let mut s = String::new();
    for p in path {
        if p.parse::<usize>().is_ok() {
            s.push_str(&format!("[{p}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
    }
    s
}

/// Finds the (line, column), 1-based, of a field path; when the leaf is missing, of the
/// deepest parent found, which is where the user has to add it. Builds an index of the whole
/// text: to locate many fields of one recipe, use [`Loaded::error_at`].
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    PathIndex::build(text).locate(path)
}

/// The YAML limits: nesting depth, alias expansion, and duplicate keys as errors (a
/// duplicate `gfx1010:` would otherwise silently replace the first).
pub(super) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_YAML_DEPTH,
            max_aliases: 1_000,
            max_events: 2_000_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // YAML 1.2 core booleans only: `yes`, `no`, `on`, `off` are not booleans.
        strict_booleans: true,
        with_snippet: false,
    }
}

/// Deepest nesting a recipe may have (the shipped ones use 6).
pub const MAX_YAML_DEPTH: usize = 32;
/// Most YAML events that aliases may replay in one recipe (a 1 MiB recipe has fewer events
/// than bytes, so this bounds expansion at about ten times the text).
pub const MAX_ALIAS_EVENTS: usize = 100_000;

/// Parses and validates one recipe. `file` is how errors name it.
pub fn parse(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    let recipe = parse_unvalidated(file, text)?;
    validate(file, text, &recipe)?;
    Ok(recipe)
}

/// Parses a recipe and checks every value's grammar, but not the rules across fields
/// (pins present, names unique...): what `lock` needs to read a recipe it is about to pin.
pub fn parse_unvalidated(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    if text.len() as u64 > crate::recipe_files::MAX_RECIPE_BYTES {
        return Err(RecipeError::located(
            file,
            None,
            &[],
            format!(
                "the recipe is {} bytes, more than the limit of 1 MiB",
                text.len()
            ),
        ));
    }
    let quoted = super::yaml_guard::guard(file, text)?;
    let recipe: Recipe = deserialize_tracked(file, text)?;
    super::yaml_guard::quoted_typed(file, &recipe, &quoted)?;
    Ok(recipe)
}

/// Deserializes a recipe document (a stack's or an app's) with the parser's budgets; an
/// error names the file, line, column and the field path it was in.
pub(super) fn deserialize_tracked<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, RecipeError> {
    let mut track = serde_path_to_error::Track::new();
    let parsed =
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        });
    parsed.map_err(|e| {
        let path = track.path().to_string();
        let loc = e.location().filter(|l| l.line() > 0);
        RecipeError {
            file: file.to_string(),
            line: loc.map(|l| l.line() as usize),
            column: loc.map(|l| l.column() as usize),
            field: if path == "." { String::new() } else { path },
            message: explain_serde(&e.to_string()),
        }
    })
}

/// The parser's messages end with the place, which we print ourselves.
pub(super) fn explain_serde(msg: &str) -> String {
    let msg = msg.lines().next().unwrap_or(msg);
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.trim().to_string()
}
