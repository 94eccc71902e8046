//! Containers that run to completion under a hard timeout and are always removed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{ContainerGuard, Engine, EngineError};
use crate::labels;
use crate::owner::Owner;

/// How long a container has, from the SIGKILL its hard timeout sends (the kill request
/// included), to be gone; after that the run gives up on it. A process stuck in the driver
/// (uninterruptible sleep) outlives any signal, and the engine answers neither the kill nor
/// a forced remove while it waits for that process's exit.
const KILL_GRACE: Duration = Duration::from_secs(15);

/// The longest a remove request may take: a forced remove kills first (see [`KILL_GRACE`]).
const REMOVE_LIMIT: Duration = Duration::from_secs(30);

/// The most of a container's stdout, and of its stderr, kept in memory: the first and the
/// last half of it, with what was left out between them said in place.
const OUTPUT_LIMIT: usize = 8 << 20;

/// A container's stream, kept within [`OUTPUT_LIMIT`]: its head and its tail.
struct CappedOutput {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    left_out: u64,
    limit: usize,
}

impl CappedOutput {
    fn new(limit: usize) -> Self {
        CappedOutput {
            head: Vec::new(),
            tail: Default::default(),
            left_out: 0,
            limit,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let half = self.limit / 2;
        let room = half.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..room]);
        bytes = &bytes[room..];
        let keep = self.limit - half;
        if bytes.len() > keep {
            self.left_out += (self.tail.len() + bytes.len() - keep) as u64;
            self.tail.clear();
            bytes = &bytes[bytes.len() - keep..];
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(keep);
        self.tail.drain(..over);
        self.left_out += over as u64;
        self.tail.extend(bytes);
    }

    fn into_string(self) -> String {
        let mut all = self.head;
        if self.left_out > 0 {
            all.extend_from_slice(
                format!("\n[... {} bytes left out ...]\n", self.left_out).as_bytes(),
            );
        }
        all.extend(self.tail);
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// How [`Engine::drive`] ended.
enum DriveEnd {
    Ended(ContainerOutcome),
    /// Still running [`KILL_GRACE`] after its SIGKILL: the run gives up on it.
    Stuck(EngineError),
}

/// A container to run once.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// Host device paths passed through as-is.
    pub devices: Vec<String>,
    /// Numeric GIDs: names would be resolved in the image's /etc/group, where they may differ.
    pub group_add: Vec<u32>,
    pub security_opt: Vec<String>,
    pub ipc_host: bool,
    pub shm_size: Option<i64>,
    /// Host folders and named volumes, as structured mounts: a `src:dst` bind string would
    /// split a host path that contains `:`.
    pub mounts: Vec<MountSpec>,
    pub workdir: Option<String>,
    /// Network mode (`none` for the smoke test); None = the engine's default.
    pub network: Option<String>,
    /// Killed and removed after this long (None: no limit, for `run`).
    pub timeout: Option<Duration>,
    /// A tiny init as PID 1: reaps zombies and passes signals on.
    pub init: bool,
    /// Published ports: (host address, host port, container port), TCP.
    pub ports: Vec<(String, u16, u16)>,
    /// `uid:gid` to run as, instead of the image's user.
    pub user: Option<String>,
}

/// A host folder or a named volume (created by the engine when missing) in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Bind { source: String, target: String },
    Volume { name: String, target: String },
}

impl MountSpec {
    fn to_engine(&self) -> Mount {
        let (typ, source, target) = match self {
            MountSpec::Bind { source, target } => (MountType::BIND, source, target),
            MountSpec::Volume { name, target } => (MountType::VOLUME, name, target),
        };
        Mount {
            typ: Some(typ),
            source: Some(source.clone()),
            target: Some(target.clone()),
            ..Default::default()
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone)]
pub struct ContainerOutcome {
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub seconds: f64,
}

/// How `run` connects to the container: stdin always (as `docker run -i`), a terminal too
/// when ours is one (`-it`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Nothing attached (the smoke test): output is read from the logs.
    None,
    Stdin,
    StdinAndTty,
}

/// The engine's create request for a spec.
fn create_body(spec: &ContainerSpec, attach: Attach) -> ContainerCreateBody {
    let stdin = attach != Attach::None;
    let tty = attach == Attach::StdinAndTty;
    let some_if = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let host_config = HostConfig {
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.clone()),
                    path_in_container: Some(d.clone()),
                    cgroup_permissions: Some("rwm".into()),
                })
                .collect()
        }),
        group_add: (!spec.group_add.is_empty())
            .then(|| spec.group_add.iter().map(|g| g.to_string()).collect()),
        security_opt: some_if(&spec.security_opt),
        ipc_mode: spec.ipc_host.then(|| "host".to_string()),
        shm_size: spec.shm_size,
        mounts: (!spec.mounts.is_empty())
            .then(|| spec.mounts.iter().map(MountSpec::to_engine).collect()),
        network_mode: spec.network.clone(),
        init: spec.init.then_some(true),
        port_bindings: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|(ip, host, inside)| {
                    let binding = bollard::models::PortBinding {
                        host_ip: Some(ip.clone()),
                        host_port: Some(host.to_string()),
                    };
                    (format!("{inside}/tcp"), Some(vec![binding]))
                })
                .collect()
        }),
        // Kept off: with it on, logs and inspect 404 right after exit. We remove ourselves.
        auto_remove: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // Empty: the image's own command (an interactive shell for `run` without one).
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(
            spec.labels
                .iter()
                .cloned()
                // The owner, on every container the tool creates: `clean` checks it is gone.
                .chain([(labels::OWNER.to_string(), Owner::current().label())])
                .collect::<HashMap<_, _>>(),
        ),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        exposed_ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|(_, _, inside)| format!("{inside}/tcp"))
                .collect()
        }),
        network_disabled: (spec.network.as_deref() == Some("none")).then_some(true),
        tty: tty.then_some(true),
        open_stdin: stdin.then_some(true),
        // Our stdin ending (EOF) closes the container's, as with `docker run -i`.
        stdin_once: stdin.then_some(true),
        attach_stdin: stdin.then_some(true),
        attach_stdout: stdin.then_some(true),
        attach_stderr: stdin.then_some(true),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The exit status from the first item of a wait stream. A non-zero exit comes as
/// `DockerContainerWaitError`; a stream that ends without an item (the container was removed
/// under us, the engine restarted) is a lost wait: an error, never a success.
fn wait_status(
    item: Option<Result<bollard::models::ContainerWaitResponse, bollard::errors::Error>>,
    what: &str,
) -> Result<i64, EngineError> {
    match item {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(EngineError::api(format!("waiting for the {what}"), e)),
        None => Err(EngineError::Api {
            what: format!("waiting for the {what}"),
            detail: "the engine ended the wait without an exit status (the container was removed, or the engine restarted): its result is unknown".into(),
        }),
    }
}

impl Engine {
    /// Creates, starts and waits for a container, streaming its stderr lines to `on_stderr`.
    /// Whatever happens (exit, timeout, Ctrl-C, an engine error), the container is removed.
    pub async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        on_stderr: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ContainerOutcome, EngineError> {
        let config = create_body(spec, Attach::None);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().build()),
                config,
            )
            .await
            .map_err(|e| EngineError::api(format!("creating a container of {}", spec.image), e))?;
        // Always removed, also when start failed (a missing device fails at start and would
        // otherwise leave the container behind), and by the guard when this is cancelled.
        let guard = ContainerGuard::new(self, created.id);
        let result = match self.drive(guard.id(), spec, on_stderr).await {
            Ok(DriveEnd::Ended(outcome)) => Ok(outcome),
            Ok(DriveEnd::Stuck(e)) => {
                // Left running and labelled: `clean` (or a reboot) removes it later. A
                // remove now would only wait on the engine as the kill did.
                guard.keep();
                return Err(e);
            }
            Err(e) => Err(e),
        };
        let removed = guard.release().await;
        let outcome = result?;
        removed?;
        Ok(outcome)
    }

    async fn drive(
        &self,
        id: &str,
        spec: &ContainerSpec,
        on_stderr: &mut (dyn FnMut(&str) + Send),
    ) -> Result<DriveEnd, EngineError> {
        let what = || format!("container of {}", spec.image);
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| EngineError::api(format!("starting the {}", what()), e))?;
        let started = Instant::now();
        crate::signals::pause_at("smoke").await;
        let cancel = crate::signals::token();
        let mut logs = self.docker.logs(
            id,
            Some(
                LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let mut wait = self.docker.wait_container(
            id,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        );
        let mut stdout = CappedOutput::new(OUTPUT_LIMIT);
        let mut stderr = CappedOutput::new(OUTPUT_LIMIT);
        let mut err_line = Vec::new();
        // No limit: a deadline far beyond any session.
        let deadline = tokio::time::sleep(
            spec.timeout
                .unwrap_or(Duration::from_secs(10 * 365 * 86400)),
        );
        tokio::pin!(deadline);
        let mut exit_code = None;
        let mut timed_out = false;
        let mut logs_done = false;
        let mut wait_done = false;
        while !(logs_done && wait_done) {
            tokio::select! {
                item = logs.next(), if !logs_done => match item {
                    Some(Ok(LogOutput::StdOut { message })) => stdout.push(&message),
                    Some(Ok(LogOutput::StdErr { message })) => {
                        stderr.push(&message);
                        err_line.extend_from_slice(&message);
                        while let Some(i) = err_line.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = err_line.drain(..=i).collect();
                            on_stderr(String::from_utf8_lossy(&line).trim_end());
                        }
                        // A line without an end is shown in pieces, not kept whole.
                        if err_line.len() > 64 * 1024 {
                            on_stderr(String::from_utf8_lossy(&err_line).trim_end());
                            err_line.clear();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => logs_done = true,
                },
                w = wait.next(), if !wait_done => {
                    wait_done = true;
                    exit_code = Some(wait_status(w, &what())?);
                },
                // The hard timeout, and then the kill's grace: the deadline stays armed
                // after the kill, so a container that outlives its SIGKILL cannot hold the
                // run (a kill the engine never answers counts against the grace too).
                _ = &mut deadline => {
                    if timed_out {
                        if wait_done {
                            // It is gone; only its log stream did not end: keep what came.
                            break;
                        }
                        return Ok(DriveEnd::Stuck(stuck(id, &what(), spec.timeout)));
                    }
                    timed_out = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                    if let Err(e) = self.kill(id).await {
                        tracing::warn!("{}", crate::error_chain::Chain(&e));
                    }
                },
                _ = cancel.cancelled() => {
                    if let Err(e) = self.kill(id).await {
                        tracing::warn!("{}", crate::error_chain::Chain(&e));
                    }
                    return Err(EngineError::interrupted(what()));
                }
            }
        }
        if timed_out {
            exit_code = None;
        }
        Ok(DriveEnd::Ended(ContainerOutcome {
            exit_code,
            stdout: stdout.into_string(),
            stderr: stderr.into_string(),
            timed_out,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }

    /// SIGKILL, bounded by [`KILL_GRACE`]: the engine answers a kill only once the process
    /// has exited, which a process stuck in the kernel never does.
    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        let kill = self.docker.kill_container(
            id,
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build(),
            ),
        );
        match tokio::time::timeout(KILL_GRACE, kill).await {
            Ok(Ok(())) => Ok(()),
            // Already gone or stopped: nothing to kill.
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            })) => Ok(()),
            Ok(Err(e)) => Err(EngineError::api(format!("killing container {id}"), e)),
            Err(_) => Err(EngineError::Api {
                what: format!("killing container {id}"),
                detail: format!(
                    "the engine did not answer within {} s",
                    KILL_GRACE.as_secs()
                ),
            }),
        }
    }

    /// Force-removes a container (and its anonymous volumes), waiting at most
    /// [`REMOVE_LIMIT`]: a forced remove kills first, and the engine does not answer while
    /// a process in the container will not die.
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let remove = self.docker.remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        );
        match tokio::time::timeout(REMOVE_LIMIT, remove).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(()),
            Ok(Err(e)) => Err(EngineError::api(format!("removing container {id}"), e)),
            Err(_) => Err(EngineError::Api {
                what: format!("removing container {id}"),
                detail: format!(
                    "the engine did not answer within {} s (a process in it may be stuck in the kernel): it is left, labelled; `rdna1-images clean` removes it once it can be killed",
                    REMOVE_LIMIT.as_secs()
                ),
            }),
        }
    }

    /// Containers the tool created (found by label), running or not; only those of
    /// `recipe` when given.
    pub async fn managed_containers(
        &self,
        recipe: Option<&str>,
    ) -> Result<Vec<ManagedContainer>, EngineError> {
        let mut label = vec![format!("{}=true", labels::MANAGED)];
        if let Some(r) = recipe {
            label.push(format!("{}={r}", labels::RECIPE));
        }
        let filters: HashMap<String, Vec<String>> = [("label".to_string(), label)].into();
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| EngineError::api("listing containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let l = c.labels.unwrap_or_default();
                ManagedContainer {
                    id: c.id.unwrap_or_default(),
                    name: c.names.and_then(|n| n.first().cloned()).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    running: matches!(
                        c.state,
                        Some(
                            bollard::models::ContainerSummaryStateEnum::RUNNING
                                | bollard::models::ContainerSummaryStateEnum::RESTARTING
                                | bollard::models::ContainerSummaryStateEnum::PAUSED
                        )
                    ),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    recipe: l.get(labels::RECIPE).cloned(),
                    owner: l.get(labels::OWNER).cloned(),
                }
            })
            .collect())
    }
}

/// A container the tool created, as `clean` sees it.
#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub running: bool,
    pub state: String,
    pub recipe: Option<String>,
    /// The [`crate::owner::Owner`] label (absent on containers of older versions).
    pub owner: Option<String>,
}

/// The error of a container that outlived its SIGKILL by [`KILL_GRACE`].
fn stuck(id: &str, what: &str, timeout: Option<Duration>) -> EngineError {
    EngineError::Api {
        what: format!("{what} (container {id})"),
        detail: format!(
            "it passed its hard limit of {} s and was still running {} s after SIGKILL: a process in it is stuck where no signal reaches it (on a GPU, usually the driver: see `dmesg`). The run gives up on it. The container is left, labelled; once it can be killed (a reboot may be needed), `rdna1-images clean` or `docker rm -f {id}` removes it",
            timeout.map(|t| t.as_secs()).unwrap_or_default(),
            KILL_GRACE.as_secs()
        ),
    }
}

/// Restores the terminal when dropped, also on errors and panics.
struct RawMode;

impl RawMode {
    fn enable() -> Option<RawMode> {
        crossterm::terminal::enable_raw_mode().ok().map(|_| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

impl Engine {
    /// Runs a container attached to our stdin and output, as `docker run -i` does; with
    /// [`Attach::StdinAndTty`] as `-it`: raw mode, so Ctrl-C and every key reach the program
    /// inside, and the container's terminal follows our window's size. Returns the exit code;
    /// the container is always removed.
    pub async fn run_attached(
        &self,
        spec: &ContainerSpec,
        attach: Attach,
    ) -> Result<i64, EngineError> {
        use bollard::query_parameters::AttachContainerOptionsBuilder;
        use tokio::io::AsyncWriteExt;

        let tty = attach == Attach::StdinAndTty;
        let config = create_body(spec, attach);
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().build()),
                config,
            )
            .await
            .map_err(|e| EngineError::api(format!("creating a container of {}", spec.image), e))?
            .id;
        let guard = ContainerGuard::new(self, id.clone());
        let what = || format!("container of {}", spec.image);
        let cancel = crate::signals::token();
        // Without a terminal, the first SIGINT/SIGTERM is the program's: passed on once, as
        // `docker run` does; the next one cancels the run (the one path, crate::signals).
        let mut forward = (!tty).then(crate::signals::forward);
        let result = async {
            // Attached before the start, so no early output is lost.
            let attached = self
                .docker
                .attach_container(
                    &id,
                    Some(
                        AttachContainerOptionsBuilder::default()
                            .stdin(true)
                            .stdout(true)
                            .stderr(true)
                            .stream(true)
                            .build(),
                    ),
                )
                .await
                .map_err(|e| EngineError::api(format!("attaching to the {}", what()), e))?;
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| EngineError::api(format!("starting the {}", what()), e))?;
            if let Err(e) = self.check_published(&id, spec, &what()).await {
                let _ = self.kill(&id).await;
                return Err(e);
            }
            let resizer = tty.then(|| self.follow_window_size(&id));
            let _raw = if tty { RawMode::enable() } else { None };
            let mut input = attached.input;
            let stdin_task = tokio::spawn(async move {
                let mut stdin = tokio::io::stdin();
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                let _ = input.shutdown().await;
            });
            let mut output = attached.output;
            let mut stdout = tokio::io::stdout();
            let mut stderr = tokio::io::stderr();
            let mut interrupted = false;
            loop {
                tokio::select! {
                    chunk = output.next() => match chunk {
                        Some(Ok(LogOutput::StdErr { message })) => {
                            let _ = stderr.write_all(&message).await;
                            let _ = stderr.flush().await;
                        }
                        Some(Ok(chunk)) => {
                            let _ = stdout.write_all(&chunk.into_bytes()).await;
                            let _ = stdout.flush().await;
                        }
                        Some(Err(_)) | None => break,
                    },
                    // On a terminal in raw mode Ctrl-C is a key for the program; without
                    // one it is our signal: passed on once, as `docker run` does, then fatal.
                    Some(sig) = async { match forward.as_mut() { Some(f) => f.recv().await, None => std::future::pending().await } }, if !interrupted => {
                        interrupted = true;
                        forward = None;
                        let _ = self.docker.kill_container(&id, Some(KillContainerOptionsBuilder::default().signal(sig).build())).await;
                        continue;
                    }
                    _ = cancel.cancelled() => {
                        if let Err(e) = self.kill(&id).await {
                            tracing::warn!("{}", crate::error_chain::Chain(&e));
                        }
                        stdin_task.abort();
                        return Err(EngineError::interrupted(what()));
                    }
                }
            }
            stdin_task.abort();
            if let Some(r) = resizer {
                r.abort();
            }
            let w = self
                .docker
                .wait_container(
                    &id,
                    Some(
                        WaitContainerOptionsBuilder::default()
                            .condition("not-running")
                            .build(),
                    ),
                )
                .next()
                .await;
            wait_status(w, &what())
        }
        .await;
        drop(forward);
        let removed = guard.release().await;
        let code = result?;
        removed?;
        Ok(code)
    }

    /// Sets the container's terminal to our window's size now and on every SIGWINCH, as
    /// `docker run -it` does, so full-screen programs inside redraw at the right size.
    fn follow_window_size(&self, id: &str) -> tokio::task::JoinHandle<()> {
        use bollard::query_parameters::ResizeContainerTTYOptionsBuilder;
        use tokio::signal::unix::{signal, SignalKind};

        let docker = self.docker.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            // Registered before the first size is read, so a resize in between is not lost.
            let mut winch = signal(SignalKind::window_change()).ok();
            loop {
                if let Ok((w, h)) = crossterm::terminal::size() {
                    let size = ResizeContainerTTYOptionsBuilder::default()
                        .w(w as i32)
                        .h(h as i32)
                        .build();
                    if let Err(e) = docker.resize_container_tty(&id, size).await {
                        tracing::debug!("resizing the terminal of container {id} to {w}x{h}: {e}");
                    }
                }
                let Some(w) = winch.as_mut() else { break };
                if w.recv().await.is_none() {
                    break;
                }
            }
        })
    }
}

#[cfg(test)]
mod wait_tests {
    use super::wait_status;

    #[test]
    fn a_lost_wait_is_an_error_not_exit_0() {
        let e = wait_status(None, "container of x").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let m = e.to_string();
        assert!(
            m.contains("without an exit status") && m.contains("container of x"),
            "{m}"
        );
    }

    #[test]
    fn exit_codes_come_through() {
        let ok = bollard::models::ContainerWaitResponse {
            status_code: 0,
            error: None,
        };
        assert_eq!(wait_status(Some(Ok(ok)), "c").unwrap(), 0);
        let failed = bollard::errors::Error::DockerContainerWaitError {
            error: String::new(),
            code: 3,
        };
        assert_eq!(wait_status(Some(Err(failed)), "c").unwrap(), 3);
    }
}

#[cfg(test)]
mod output_tests {
    use super::CappedOutput;

    #[test]
    fn output_past_the_limit_keeps_head_and_tail_and_says_what_was_left_out() {
        let mut o = CappedOutput::new(100);
        for i in 0..1000u32 {
            o.push(format!("{:04}\n", i).as_bytes());
        }
        let s = o.into_string();
        assert!(s.starts_with("0000\n0001\n"), "{s}");
        assert!(s.ends_with("0998\n0999\n"), "{s}");
        assert!(s.contains("[... 4900 bytes left out ...]"), "{s}");
        assert!(s.len() < 100 + 40, "{}", s.len());
        // One chunk bigger than the whole limit.
        let mut o = CappedOutput::new(10);
        o.push(b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(o.into_string(), "abcde\n[... 16 bytes left out ...]\nvwxyz");
        // Within the limit: all of it, as it came.
        let mut o = CappedOutput::new(100);
        o.push(b"{\"report\": 1}\n");
        assert_eq!(o.into_string(), "{\"report\": 1}\n");
    }
}
