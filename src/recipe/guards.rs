//! Values that would change the system or how programs start: cache folders, environment
//! names, and the paths the build context must be able to store.

use super::*;
use crate::values::cache_path::check_cache_dir;

/// Environment names that change how a shell, the dynamic loader or Python starts: set in
/// an image they run code before anything the user asked for (BASH_ENV is read by every
/// non-interactive bash, LD_PRELOAD by every program). Refused in `env` and in the build
/// environments; `run -e` remains the way to set one for a container on purpose.
pub const STARTUP_ENV: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "IFS",
    "PS4",
    "PROMPT_COMMAND",
    "PATH",
    "GCONV_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONUSERBASE",
    "PERL5OPT",
    "PERL5LIB",
    "NODE_OPTIONS",
    "MALLOC_CONF",
];
/// Prefixes of the same kind: the loader's `LD_*`.
const STARTUP_PREFIXES: &[&str] = &["LD_"];
/// Prefixes that change where a build fetches from or what it trusts: pip's and git's
/// configuration by environment (PIP_INDEX_URL, GIT_CONFIG_COUNT/KEY/VALUE, GIT_SSH_COMMAND),
/// refused in the build environments, where they would bypass the hashed lock files and
/// the pinned commits.
const BUILD_PREFIXES: &[&str] = &["PIP_", "GIT_", "UV_", "CURL_", "SSL_", "REQUESTS_CA_BUNDLE"];

fn startup(name: &str) -> bool {
    STARTUP_ENV.contains(&name) || STARTUP_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The checks of this module, in the order of the fields.
pub(super) fn guard(file: &str, text: &str, r: &Recipe) -> Result<(), RecipeError> {
    let err = |path: &[&str], msg: String| Err(RecipeError::at(file, text, path, msg));
    for k in r.env.keys() {
        if startup(k) {
            return err(
                &["env", k],
                format!("`{k}` changes how programs start in every container of the image: it is not allowed in a recipe (set it for one container with `rdna1-images run` and `docker run -e` if you need it)"),
            );
        }
    }
    for key in ["MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR"] {
        if let Some(v) = r.env.get(key) {
            if let Err(m) = check_cache_dir(v) {
                return err(&["env", key], m);
            }
        }
    }
    if let PyTorch::Source(s) = &r.pytorch {
        let envs: [(&BTreeMap<EnvName, Text>, &[&str]); 2] = [
            (&s.env, &["pytorch", "source", "env"]),
            (
                s.torchvision.as_ref().map(|t| &t.env).unwrap_or(&s.env),
                &["pytorch", "source", "torchvision", "env"],
            ),
        ];
        for (env, at) in envs {
            for (k, v) in env {
                let mut path = at.to_vec();
                path.push(k);
                if startup(k) || BUILD_PREFIXES.iter().any(|p| k.starts_with(p)) {
                    return err(
                        &path,
                        format!("`{k}` changes how the build starts programs or where it fetches from (pip and git configuration would bypass the hashed lock files and pinned commits): it is not allowed in a build environment"),
                    );
                }
                if k.as_str() == "HSA_OVERRIDE_GFX_VERSION" {
                    if let Err(m) = GfxVersion::parse(v) {
                        return err(&path, m);
                    }
                }
            }
        }
        if let Some(c) = &s.ccache {
            if let Err(m) = check_cache_dir(&c.dir) {
                return err(&["pytorch", "source", "ccache", "dir"], m);
            }
        }
        for (i, p) in s.patches.iter().enumerate() {
            let name = p.rsplit('/').next().unwrap_or(p);
            if let Err(m) = crate::recipe_files::fits_tar(&format!("patches/{name}")) {
                return err(&["pytorch", "source", "patches", &i.to_string()], m);
            }
        }
    }
    // Case names are shown in every smoke table and message: plain text only.
    for (i, c) in r.smoke.cases.iter().enumerate() {
        if let Err(m) = Text::parse(&c.name) {
            return err(&["smoke", "cases", &i.to_string(), "name"], m);
        }
    }
    for (i, f) in r.files.iter().enumerate() {
        if let Err(m) = crate::recipe_files::fits_tar(&format!("files/{f}")) {
            return err(&["files", &i.to_string()], m);
        }
    }
    Ok(())
}
