//! Images as files: `docker save` and `docker load`, and the layers of an image. Used to
//! rewrite built images deterministically (src/normalise.rs).

use std::path::Path;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{describe, Engine, EngineError};

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

    /// `docker save` of one image into a file; returns the bytes written.
    pub async fn save_image(&self, image: &str, dest: &Path) -> Result<u64, EngineError> {
        let what = || format!("saving image {image} to {}", dest.display());
        let io = |e: std::io::Error| EngineError::Api {
            what: what(),
            detail: e.to_string(),
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = self.docker.export_image(image);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| EngineError::api(what(), e))?;
            n += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(n)
    }

    /// `docker load` of an archive file; returns the loaded image id.
    pub async fn load_image(&self, src: &Path) -> Result<String, EngineError> {
        let what = || format!("loading image archive {}", src.display());
        let file = tokio::fs::File::open(src)
            .await
            .map_err(|e| EngineError::Api {
                what: what(),
                detail: e.to_string(),
            })?;
        let body = futures_util::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let mut stream = self.docker.import_image(
            ImportImageOptionsBuilder::default().quiet(true).build(),
            bollard::body_try_stream(body),
            None,
        );
        let mut said = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::Api {
                what: what(),
                detail: describe(&e),
            })?;
            if let Some(s) = info.stream {
                said.push_str(&s);
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
