//! Containers that run to completion under a hard timeout and are always removed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{Engine, EngineError};
use crate::render::labels;

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
    /// `host:container[:ro]` binds and `volume:container` named volumes.
    pub binds: Vec<String>,
    pub workdir: Option<String>,
    /// No network at all (the smoke test needs none).
    pub network_none: bool,
    /// Killed and removed after this long.
    pub timeout: Duration,
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

impl Engine {
    /// Creates, starts and waits for a container, streaming its stderr lines to `on_stderr`.
    /// Whatever happens (exit, timeout, Ctrl-C, an engine error), the container is removed.
    pub async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        on_stderr: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ContainerOutcome, EngineError> {
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
            security_opt: (!spec.security_opt.is_empty()).then(|| spec.security_opt.clone()),
            ipc_mode: spec.ipc_host.then(|| "host".to_string()),
            shm_size: spec.shm_size,
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            network_mode: spec.network_none.then(|| "none".to_string()),
            // Kept off: with it on, logs and inspect 404 right after exit. We remove ourselves.
            auto_remove: Some(false),
            ..Default::default()
        };
        let config = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.iter().cloned().collect::<HashMap<_, _>>()),
            working_dir: spec.workdir.clone(),
            network_disabled: spec.network_none.then_some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().build()),
                config,
            )
            .await
            .map_err(|e| EngineError::api(format!("creating a container of {}", spec.image), e))?;
        let id = created.id;
        let result = self.drive(&id, spec, on_stderr).await;
        // Always removed, also when start failed (a missing device fails at start and would
        // otherwise leave the container behind).
        let removed = self.remove_container(&id).await;
        let outcome = result?;
        removed?;
        Ok(outcome)
    }

    async fn drive(
        &self,
        id: &str,
        spec: &ContainerSpec,
        on_stderr: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ContainerOutcome, EngineError> {
        let what = || format!("container of {}", spec.image);
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| EngineError::api(format!("starting the {}", what()), e))?;
        let started = Instant::now();
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
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut err_line = Vec::new();
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let mut exit_code = None;
        let mut timed_out = false;
        let mut logs_done = false;
        let mut wait_done = false;
        while !(logs_done && wait_done) {
            tokio::select! {
                item = logs.next(), if !logs_done => match item {
                    Some(Ok(LogOutput::StdOut { message })) => stdout.extend_from_slice(&message),
                    Some(Ok(LogOutput::StdErr { message })) => {
                        stderr.extend_from_slice(&message);
                        err_line.extend_from_slice(&message);
                        while let Some(i) = err_line.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = err_line.drain(..=i).collect();
                            on_stderr(String::from_utf8_lossy(&line).trim_end());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => logs_done = true,
                },
                w = wait.next(), if !wait_done => {
                    wait_done = true;
                    exit_code = Some(match w {
                        Some(Ok(r)) => r.status_code,
                        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                        Some(Err(e)) => return Err(EngineError::api(format!("waiting for the {}", what()), e)),
                        None => -1,
                    });
                },
                _ = &mut deadline, if !timed_out => {
                    timed_out = true;
                    self.kill(id).await;
                },
                _ = tokio::signal::ctrl_c() => {
                    self.kill(id).await;
                    return Err(EngineError::Interrupted { what: what() });
                }
            }
        }
        if timed_out {
            exit_code = None;
        }
        Ok(ContainerOutcome {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    async fn kill(&self, id: &str) {
        let _ = self
            .docker
            .kill_container(
                id,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build(),
                ),
            )
            .await;
    }

    /// Force-removes a container (and its anonymous volumes).
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::api(format!("removing container {id}"), e)),
        }
    }

    /// Containers the tool created (found by label), running or not: (id, name, image).
    pub async fn managed_containers(&self) -> Result<Vec<(String, String, String)>, EngineError> {
        let filters: HashMap<String, Vec<String>> = [(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )]
        .into();
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
                (
                    c.id.unwrap_or_default(),
                    c.names.and_then(|n| n.first().cloned()).unwrap_or_default(),
                    c.image.unwrap_or_default(),
                )
            })
            .collect())
    }
}
