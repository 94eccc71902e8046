//! Human progress on stderr, as buildx and cargo show it.
//!
//! On a terminal: one live line (spinner, the step counter `[3/7]`, the current step, its
//! elapsed time); finished steps collapse to one line with their time, cached ones say so.
//! Not on a terminal (CI logs): plain lines without escape codes, one per step start and
//! end, with times. Build output shows with `-v` only, or when a step fails: its last
//! [`StepTail::LINES`] lines, and the path of the whole log.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{BuildEvent, StepTail};
use crate::pipeline::{LayerEvent, Progress, Stage};

/// Where the plain lines go: stderr, or a buffer in tests.
type Sink = Box<dyn Write + Send>;

enum Mode {
    Plain(Sink),
    Live(Live),
}

struct Live {
    multi: MultiProgress,
    /// The one live line of the current stage.
    line: Option<ProgressBar>,
    /// Per-layer transfer bars, by layer id.
    layers: HashMap<String, ProgressBar>,
    width: usize,
}

/// The build log of the recipe being built, written as it arrives.
struct BuildLog {
    path: PathBuf,
    file: std::fs::File,
}

pub struct Console {
    pub quiet: bool,
    pub verbose: u8,
    mode: Mode,
    /// Running steps, in the order they started, with their start.
    running: Vec<(String, Instant)>,
    /// The last lines of each step's output.
    tails: HashMap<String, StepTail>,
    log: Option<BuildLog>,
    log_dir: Option<PathBuf>,
    /// The recipe whose stages are being timed, its start and its stages.
    recipe: Option<(String, Instant)>,
    stages: Vec<(Stage, f64)>,
}

/// The folder failed build logs are kept in: `$XDG_STATE_HOME/rdna1-images/logs`, else
/// `~/.local/state/rdna1-images/logs`, else a folder in the temp dir.
pub fn log_dir() -> PathBuf {
    crate::state_home::folder("logs")
        .unwrap_or_else(|| std::env::temp_dir().join("rdna1-build-logs"))
}

/// `[3/7] RUN ...` -> `Some("3/7")`.
pub fn step_counter(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('[')?;
    let end = rest.find(']')?;
    let inner = &rest[..end];
    let (a, b) = inner.split_once('/')?;
    (a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()))
        .then_some(inner)
}

fn secs(d: f64) -> String {
    format!("{d:.1} s")
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
    t.push('…');
    t
}

impl Console {
    /// Live on a terminal, plain lines otherwise.
    pub fn new(quiet: bool, verbose: u8) -> Self {
        let mode = if std::io::stderr().is_terminal() && !quiet {
            let width = crossterm::terminal::size()
                .map(|(c, _)| c as usize)
                .unwrap_or(80)
                .max(20);
            Mode::Live(Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                line: None,
                layers: HashMap::new(),
                width,
            })
        } else {
            Mode::Plain(Box::new(std::io::stderr()))
        };
        Console::with_mode(quiet, verbose, mode)
    }

    /// Plain lines into `sink` (tests).
    pub fn plain(verbose: u8, sink: Box<dyn Write + Send>) -> Self {
        Console::with_mode(false, verbose, Mode::Plain(sink))
    }

    fn with_mode(quiet: bool, verbose: u8, mode: Mode) -> Self {
        Console {
            quiet,
            verbose,
            mode,
            running: vec![],
            tails: HashMap::new(),
            log: None,
            log_dir: None,
            recipe: None,
            stages: vec![],
        }
    }

    /// Failed build logs go here instead of [`log_dir`] (tests).
    pub fn set_log_dir(&mut self, dir: PathBuf) {
        self.log_dir = Some(dir);
    }

    /// A line above the live line, or a plain line.
    pub fn line(&mut self, s: &str) {
        if self.quiet {
            return;
        }
        let s = &*crate::escape::message(s);
        match &mut self.mode {
            Mode::Plain(w) => {
                let _ = writeln!(w, "{s}");
                let _ = w.flush();
            }
            Mode::Live(l) => {
                let width = l.width;
                for part in s.lines() {
                    let _ = l.multi.println(truncate(part, width.saturating_sub(1)));
                }
            }
        }
    }

    /// `=> <name><suffix>`, the name shortened on a terminal so the suffix (the time)
    /// stays on the line.
    fn step_line(&mut self, name: &str, suffix: &str) {
        let name = match &self.mode {
            Mode::Live(l) => truncate(
                name,
                l.width.saturating_sub(4 + suffix.chars().count()).max(10),
            ),
            Mode::Plain(_) => name.to_string(),
        };
        self.line(&format!("=> {name}{suffix}"));
    }

    /// An error's lines, shown even with -q.
    fn always(&mut self, s: &str) {
        let q = std::mem::replace(&mut self.quiet, false);
        self.line(s);
        self.quiet = q;
    }

    fn live_line(&mut self, message: String, since: Instant) {
        if self.quiet {
            return;
        }
        if let Mode::Live(l) = &mut self.mode {
            let bar = l.line.get_or_insert_with(|| {
                let b = l.multi.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {wide_msg} {elapsed:>4}")
                        .expect("a valid template"),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            bar.set_message(message);
            // The elapsed time is the step's, not the line's.
            bar.set_elapsed(since.elapsed());
        }
    }

    fn clear_live_line(&mut self) {
        if let Mode::Live(l) = &mut self.mode {
            if let Some(b) = l.line.take() {
                b.finish_and_clear();
                l.multi.remove(&b);
            }
        }
    }

    fn show_running(&mut self) {
        let Some((name, since)) = self.running.last().cloned() else {
            self.clear_live_line();
            return;
        };
        let recipe = self
            .recipe
            .as_ref()
            .map(|(r, _)| format!("{r}: "))
            .unwrap_or_default();
        self.live_line(format!("{recipe}{name}"), since);
    }

    /// Starts timing a recipe's stages (the summary line covers them).
    pub fn begin(&mut self, recipe: &str) {
        self.recipe = Some((recipe.to_string(), Instant::now()));
        self.stages.clear();
        self.tails.clear();
        self.running.clear();
    }

    /// The final line: the total time and where it went.
    pub fn summary(&mut self) -> Option<String> {
        let (recipe, started) = self.recipe.take()?;
        let total = started.elapsed().as_secs_f64();
        let mut parts = Vec::new();
        for stage in [
            Stage::Pull,
            Stage::Build,
            Stage::Normalise,
            Stage::Smoke,
            Stage::Tag,
            Stage::Push,
        ] {
            let t: f64 = self
                .stages
                .iter()
                .filter(|(s, _)| *s == stage)
                .map(|(_, t)| t)
                .sum();
            if self.stages.iter().any(|(s, _)| *s == stage) {
                parts.push(format!("{} {}", stage.name(), secs(t)));
            }
        }
        self.clear_live_line();
        let line = if parts.is_empty() {
            format!("{recipe}: {} in total", secs(total))
        } else {
            format!("{recipe}: {} in total: {}", secs(total), parts.join(", "))
        };
        self.line(&line);
        self.stages.clear();
        Some(line)
    }

    fn log_line(&mut self, line: &str) {
        if self.log.is_none() {
            let dir = self.log_dir.clone().unwrap_or_else(log_dir);
            let recipe = self
                .recipe
                .as_ref()
                .map(|(r, _)| r.clone())
                .unwrap_or_else(|| "build".into());
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let path = dir.join(format!("{recipe}-{stamp}-{}.log", std::process::id()));
            let file = std::fs::create_dir_all(&dir).and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            });
            match file {
                Ok(file) => self.log = Some(BuildLog { path, file }),
                Err(e) => {
                    tracing::warn!("cannot write the build log {}: {e}", path.display());
                    return;
                }
            }
        }
        if let Some(l) = &mut self.log {
            let _ = writeln!(l.file, "{line}");
        }
    }

    /// A build that succeeded needs no log file.
    fn drop_log(&mut self) {
        if let Some(l) = self.log.take() {
            let _ = std::fs::remove_file(&l.path);
        }
    }

    fn failed(&mut self, name: &str) {
        let since = self
            .running
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.elapsed().as_secs_f64());
        self.running.retain(|(n, _)| n != name);
        self.clear_live_line();
        let after = since
            .map(|s| format!(" after {}", secs(s)))
            .unwrap_or_default();
        let q = std::mem::replace(&mut self.quiet, false);
        self.step_line(name, &format!(": FAILED{after}"));
        self.quiet = q;
        let tail: Vec<String> = self
            .tails
            .get(name)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        if !tail.is_empty() && self.verbose == 0 {
            self.always(&format!("   its last {} lines of output:", tail.len()));
            for l in tail {
                self.always(&format!("   | {l}"));
            }
        }
        if let Some(l) = self.log.take() {
            let _ = l.file.sync_all();
            self.always(&format!("   the whole build log: {}", l.path.display()));
        }
    }
}

impl Progress for Console {
    fn build(&mut self, event: &BuildEvent) {
        match event {
            BuildEvent::Step { name } => {
                self.running.push((name.clone(), Instant::now()));
                if let Mode::Plain(_) = self.mode {
                    self.step_line(name, "");
                }
                self.show_running();
            }
            BuildEvent::Cached { name } => {
                self.running.retain(|(n, _)| n != name);
                self.step_line(name, ": CACHED");
                self.show_running();
            }
            BuildEvent::Done { name, seconds } => {
                let start = self
                    .running
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.elapsed().as_secs_f64());
                self.running.retain(|(n, _)| n != name);
                let t = seconds.or(start).unwrap_or(0.0);
                self.step_line(name, &format!(": done in {}", secs(t)));
                self.show_running();
            }
            BuildEvent::Output { step, line } => {
                self.log_line(&format!("{step}: {line}"));
                self.tails
                    .entry(step.clone())
                    .or_default()
                    .push(line.clone());
                if self.verbose > 0 {
                    self.line(&format!("   | {line}"));
                }
            }
            BuildEvent::Failed { name } => self.failed(name),
            BuildEvent::Message(m) => {
                self.log_line(m);
                if self.verbose > 0 {
                    self.line(&format!("   {m}"));
                }
            }
        }
    }

    fn smoke_line(&mut self, line: &str) {
        // One line per case as it finishes; the program's other chatter with -v.
        if let Some(rest) = line.strip_prefix("[smoke] ") {
            self.line(&format!("   smoke: {rest}"));
        } else if self.verbose > 0 {
            self.line(&format!("   smoke: {line}"));
        }
    }

    fn note(&mut self, message: &str) {
        self.line(&format!("rdna1-images: {message}"));
    }

    fn transfer_line(&mut self, line: &str) {
        match self.mode {
            Mode::Plain(_) => self.line(&format!("   {line}")),
            // On a terminal the per-layer bars show a pull; a push's stream names no layer
            // (bollard 0.21 drops the id), so its latest line is the live line.
            Mode::Live(_) => {
                let since = self
                    .running
                    .last()
                    .map(|(_, t)| *t)
                    .unwrap_or_else(Instant::now);
                self.live_line(line.to_string(), since);
            }
        }
    }

    fn layer(&mut self, e: &LayerEvent) {
        if self.quiet {
            return;
        }
        let Mode::Live(l) = &mut self.mode else {
            return;
        };
        let bar = l.layers.entry(e.id.to_string()).or_insert_with(|| {
            let b = l.multi.add(ProgressBar::new(0));
            b.set_style(
                ProgressStyle::with_template(
                    "  {prefix} {wide_msg} {bytes:>10}/{total_bytes:<10} {bar:20}",
                )
                .expect("a valid template"),
            );
            b.set_prefix(truncate(e.id, 12));
            b
        });
        bar.set_message(e.status.to_string());
        if let Some(t) = e.total {
            bar.set_length(t.max(0) as u64);
        }
        if let Some(c) = e.current {
            bar.set_position(c.max(0) as u64);
        }
        if e.finished {
            bar.finish_and_clear();
            l.multi.remove(bar);
        }
    }

    fn stage_started(&mut self, stage: Stage, what: &str) {
        if stage == Stage::Build {
            self.drop_log();
            self.tails.clear();
        }
        self.running
            .push((format!("{}: {what}", stage.name()), Instant::now()));
        self.show_running();
    }

    fn stage(&mut self, stage: Stage, seconds: f64) {
        let prefix = format!("{}: ", stage.name());
        self.running.retain(|(n, _)| !n.starts_with(&prefix));
        if stage == Stage::Build {
            self.drop_log();
        }
        if let Mode::Live(l) = &mut self.mode {
            for (_, b) in l.layers.drain() {
                b.finish_and_clear();
                l.multi.remove(&b);
            }
        }
        self.stages.push((stage, seconds));
        self.line(&format!("-- {}: {}", stage.name(), secs(seconds)));
        self.show_running();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.clear_live_line();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn step(n: &str) -> BuildEvent {
        BuildEvent::Step { name: n.into() }
    }

    #[test]
    fn the_step_counter_is_read_from_the_vertex_name() {
        assert_eq!(step_counter("[3/7] RUN make"), Some("3/7"));
        assert_eq!(step_counter("[internal] load metadata"), None);
        assert_eq!(step_counter("RUN [1/2]"), None);
    }

    #[test]
    fn plain_output_hides_build_output_until_a_step_fails() {
        let buf = Buf::default();
        let logs = tempfile::tempdir().unwrap();
        let mut c = Console::plain(0, Box::new(buf.clone()));
        c.set_log_dir(logs.path().to_path_buf());
        c.begin("fixture");
        c.stage_started(Stage::Build, "fixture");
        c.build(&step("[1/2] FROM base"));
        c.build(&BuildEvent::Done {
            name: "[1/2] FROM base".into(),
            seconds: Some(0.25),
        });
        c.build(&step("[2/2] RUN make"));
        for i in 0..50 {
            c.build(&BuildEvent::Output {
                step: "[2/2] RUN make".into(),
                line: format!("line {i}"),
            });
        }
        let before = buf.text();
        assert!(!before.contains("line 1"), "{before}");
        c.build(&BuildEvent::Failed {
            name: "[2/2] RUN make".into(),
        });
        let out = buf.text();
        assert!(
            out.contains("=> [1/2] FROM base: done in 0.2 s") || out.contains("done in 0.3 s"),
            "{out}"
        );
        assert!(out.contains("=> [2/2] RUN make: FAILED"), "{out}");
        assert!(!out.contains("| line 9\n"), "more than 40 lines: {out}");
        assert!(
            out.contains("| line 10\n") && out.contains("| line 49\n"),
            "{out}"
        );
        assert!(!out.contains('\x1b'), "escape codes in plain output: {out}");
        let path = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("the whole build log: "))
            .expect("the log's path is printed");
        let log = std::fs::read_to_string(path).unwrap();
        assert_eq!(log.lines().count(), 50, "{log}");
        assert!(path.starts_with(logs.path().to_str().unwrap()));
    }

    #[test]
    fn the_summary_says_where_the_time_went() {
        let buf = Buf::default();
        let mut c = Console::plain(0, Box::new(buf.clone()));
        c.begin("fixture");
        c.stage(Stage::Build, 8.04);
        c.stage(Stage::Normalise, 1.0);
        c.stage(Stage::Smoke, 2.5);
        c.stage(Stage::Tag, 0.04);
        let s = c.summary().unwrap();
        assert!(s.starts_with("fixture: "), "{s}");
        assert!(
            s.ends_with("in total: build 8.0 s, normalise 1.0 s, smoke 2.5 s, tag 0.0 s"),
            "{s}"
        );
        assert!(buf.text().contains(&s));
    }

    #[test]
    fn a_successful_build_leaves_no_log_behind() {
        let logs = tempfile::tempdir().unwrap();
        let mut c = Console::plain(0, Box::new(Buf::default()));
        c.set_log_dir(logs.path().to_path_buf());
        c.begin("ok");
        c.stage_started(Stage::Build, "ok");
        c.build(&BuildEvent::Output {
            step: "[1/1] RUN true".into(),
            line: "hello".into(),
        });
        assert_eq!(std::fs::read_dir(logs.path()).unwrap().count(), 1);
        c.stage(Stage::Build, 1.0);
        assert_eq!(std::fs::read_dir(logs.path()).unwrap().count(), 0);
    }
}
