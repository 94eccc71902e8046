//! HTTP for `lock`: project pages of a package index and sha256 of files, through ureq
//! (rustls, timeouts, proxies from the usual environment variables). Blocking: callers run
//! it in `spawn_blocking`.

use std::io::Read;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::ResponseExt;
use url::Url;

use crate::simple_index::{self, IndexFile};

/// Why a request failed: the index could not be reached (the environment), or it answered
/// something that is not what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The transport's error (ureq's, or the body's read) is the source.
    #[error("{url}: cannot reach it")]
    Unreachable {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("{url}: {reason}")]
    Answer { url: String, reason: String },
}

/// Index pages are small; a wheel may be a few GB (rocm-sdk-core is ~700 MB).
const PAGE_LIMIT: u64 = 64 << 20;
const FILE_LIMIT: u64 = 16 << 30;

pub struct IndexClient {
    agent: ureq::Agent,
}

impl Default for IndexClient {
    fn default() -> Self {
        Self::new()
    }
}

/// The certificate authorities an index's TLS certificate is checked against. A machine
/// behind a TLS-inspecting proxy, or with an index of its own, names its bundle in
/// `SSL_CERT_FILE` (OpenSSL's variable, which curl and pip's `cert` follow too): then that
/// bundle is the trust store, as for those tools. Without it, the Web PKI roots built in.
fn tls_config() -> ureq::tls::TlsConfig {
    let builder = ureq::tls::TlsConfig::builder();
    let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) else {
        return builder.build();
    };
    match roots_from(std::path::Path::new(&file)) {
        Ok(certs) => builder
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build(),
        Err(why) => {
            tracing::warn!(
                "SSL_CERT_FILE={}: {why}; checking index certificates against the built-in roots",
                std::path::Path::new(&file).display()
            );
            builder.build()
        }
    }
}

/// The certificates of a PEM bundle; an error when it cannot be read or holds none.
fn roots_from(file: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read it: {e}"))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

impl IndexClient {
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .tls_config(tls_config())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled transfer fails; a slow but moving one of a large wheel does not.
            .timeout_per_read(Some(Duration::from_secs(120)))
            .user_agent(concat!("rdna1-images/", env!("CARGO_PKG_VERSION")))
            .build();
        IndexClient {
            agent: config.into(),
        }
    }

    fn get(&self, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        self.agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| match e {
                ureq::Error::StatusCode(code) => FetchError::Answer {
                    url: url.to_string(),
                    reason: format!("the server answered HTTP {code}"),
                },
                other => FetchError::Unreachable {
                    url: url.to_string(),
                    source: other.into(),
                },
            })
    }

    /// The files the index lists for `name`.
    pub fn project_files(&self, index: &str, name: &str) -> Result<Vec<IndexFile>, FetchError> {
        let page = simple_index::project_url(index, name).map_err(|reason| FetchError::Answer {
            url: index.to_string(),
            reason,
        })?;
        let mut resp = self.get(page.as_str(), simple_index::ACCEPT)?;
        // Relative links resolve against the page actually served (after redirects).
        let served = Url::parse(&resp.get_uri().to_string()).unwrap_or(page);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/html")
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(PAGE_LIMIT)
            .read_to_string()
            .map_err(|e| FetchError::Unreachable {
                url: served.to_string(),
                source: e.into(),
            })?;
        simple_index::parse_page(&body, &content_type, &served).map_err(|reason| {
            FetchError::Answer {
                url: served.to_string(),
                reason,
            }
        })
    }

    /// sha256 of what `url` serves, streamed (never held in memory).
    pub fn sha256(&self, url: &str) -> Result<String, FetchError> {
        self.sha256_and_size(url).map(|(h, _)| h)
    }

    /// sha256 and size in bytes of what `url` serves, streamed.
    pub fn sha256_and_size(&self, url: &str) -> Result<(String, u64), FetchError> {
        let unreachable = |e: std::io::Error| FetchError::Unreachable {
            url: url.to_string(),
            source: e.into(),
        };
        let mut resp = self.get(url, "*/*")?;
        let mut reader = resp.body_mut().with_config().limit(FILE_LIMIT).reader();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(unreachable)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        Ok((crate::hex::encode(h.finalize()), size))
    }
}

#[cfg(test)]
mod tests {
    use super::roots_from;

    /// A self-signed certificate made for this test (its key was thrown away).
    const ROOT: &str = "-----BEGIN CERTIFICATE-----\nMIIBmjCCAT+gAwIBAgIURYqrini/gJbipLvL9xHSDWjR+FkwCgYIKoZIzj0EAwIw\nITEfMB0GA1UEAwwWcmRuYTEtaW1hZ2VzIHRlc3Qgcm9vdDAgFw0yNjEyMDYwOTIz\nNDNaGA8yMTI2MTExMjA5MjM0M1owITEfMB0GA1UEAwwWcmRuYTEtaW1hZ2VzIHRl\nc3Qgcm9vdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABI7RsIUoIzVRhng+J5k5\nI0SRYOM8NWjsaHJP4FJlLEb3ZS5a1G/jQ1Fre2ELYG5g3q8RGR+7VSszLslt5Dyp\nkECjUzBRMB0GA1UdDgQWBBS+iIm4tJ+W7FRyDMyPzSzA/YR2fzAfBgNVHSMEGDAW\ngBS+iIm4tJ+W7FRyDMyPzSzA/YR2fzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49\nBAMCA0kAMEYCIQDJ2k+sFTrIHoUHUxiAT1O79TrK2Q1oEPPFTIqsS8Y/tgIhAJdf\n9RzBphDYlDN9zVmA1FgfEbY88w614U54/4XmGavB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_bundle_named_by_ssl_cert_file_gives_its_certificates_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, format!("# a comment\n{ROOT}{ROOT}")).unwrap();
        assert_eq!(roots_from(&bundle).unwrap().len(), 2);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = roots_from(&empty).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = roots_from(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.contains("cannot read it"), "{e}");
    }
}
