//! Images as streams: `docker save` read as it arrives and `docker load` fed as it is
//! written, with no archive file in between (src/pipeline/normalise.rs); the layers of an image; and
//! which image store the engine uses.

use std::io;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::{Engine, EngineError};
use crate::image_archive::Store;

/// A blocking writer whose bytes become the body of an engine request: the load archive is
/// written on a blocking thread while the engine already reads it.
pub struct BodyWriter {
    tx: mpsc::Sender<io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl BodyWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A writer for the body and the stream the engine reads it from.
pub fn body_pipe() -> (BodyWriter, impl Stream<Item = io::Result<bytes::Bytes>>) {
    let (tx, rx) = mpsc::channel(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        BodyWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        stream,
    )
}

impl Engine {
    /// The diff ids of an image's layers, bottom first; None when the image does not exist.
    pub async fn image_layers(&self, reference: &str) -> Result<Option<Vec<String>>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(i.root_fs.and_then(|r| r.layers).unwrap_or_default())),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspecting image {reference}"), e)),
        }
    }

    /// The image store: the containerd snapshotter says so in the driver status.
    pub async fn store(&self) -> Result<Store, EngineError> {
        let i = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::api("engine info", e))?;
        let containerd = i.driver_status.unwrap_or_default().iter().any(|kv| {
            kv.first().map(String::as_str) == Some("driver-type")
                && kv
                    .get(1)
                    .is_some_and(|v| v.contains("containerd.snapshotter"))
        });
        Ok(if containerd {
            Store::Containerd
        } else {
            Store::Classic
        })
    }

    /// `docker save` of one image as a blocking reader, to be read on a blocking thread.
    pub fn save_reader(&self, image: &str) -> impl io::Read + Send + 'static {
        let what = format!("saving image {image}");
        let stream = self
            .docker
            .export_image(image)
            .map_err(move |e| io::Error::other(EngineError::api(what.clone(), e)));
        tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(stream)))
    }

    /// `docker load` of an archive arriving as a stream; returns the loaded image id.
    pub async fn load_stream(
        &self,
        body: impl Stream<Item = io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<String, EngineError> {
        let what = || "loading the normalised image".to_string();
        let mut stream = self.docker.import_image(
            ImportImageOptionsBuilder::default().quiet(true).build(),
            bollard::body_try_stream(body),
            None,
        );
        let mut said = String::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Err(e) if said.contains("Loaded image") && super::stray_end_of_stream(&e) => break,
                other => other.map_err(|e| EngineError::api(what(), e))?,
            };
            if let Some(s) = info.stream {
                said.push_str(&s);
            }
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Api {
                    what: what(),
                    detail: e,
                });
            }
        }
        said.lines()
            .find_map(|l| l.trim().strip_prefix("Loaded image ID: "))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| EngineError::Api {
                what: what(),
                detail: format!("the engine did not name the loaded image: {said:?}"),
            })
    }
}
