//! A small blocking HTTP/1.1 GET client on hyper for `http://` sources. HTTPS is refused:
//! no pure-Rust TLS stack is in the workspace.

use std::io::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Why an HTTP GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL does not parse.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// An `https://` URL: not supported.
    #[error("{url}: https is not supported by this build (no pure-Rust TLS stack); serve the image over http or copy it locally")]
    HttpsUnsupported {
        /// The URL.
        url: String,
    },
    /// The server answered 404.
    #[error("{url}: not found (404)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The server answered with another non-success status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is larger than allowed.
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Connecting, sending or receiving failed.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// Writing the body out failed.
    #[error("{url}: writing the response: {source}")]
    Write {
        /// The URL.
        url: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The async runtime could not be started.
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
}

/// A blocking HTTP client.
#[derive(Debug)]
pub struct HttpClient {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl HttpClient {
    /// A client with its own single-threaded runtime.
    pub fn new() -> Result<HttpClient, HttpError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Runtime)?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(HttpClient { runtime, client })
    }

    /// GETs `url` into `out`, refusing bodies over `limit` bytes; returns the body length.
    pub fn get(&self, url: &str, out: &mut dyn Write, limit: u64) -> Result<u64, HttpError> {
        let uri = parse_http_url(url)?;
        let transport = |e: &dyn std::fmt::Display| HttpError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        self.runtime.block_on(async {
            let response = self.client.get(uri).await.map_err(|e| transport(&e))?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    return Err(HttpError::NotFound {
                        url: url.to_owned(),
                    })
                }
                status => {
                    return Err(HttpError::Status {
                        url: url.to_owned(),
                        status,
                    })
                }
            }
            let mut body = response.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| transport(&e))?;
                if let Ok(data) = frame.into_data() {
                    total += data.len() as u64;
                    if total > limit {
                        return Err(HttpError::TooLarge {
                            url: url.to_owned(),
                            limit,
                        });
                    }
                    out.write_all(&data).map_err(|source| HttpError::Write {
                        url: url.to_owned(),
                        source,
                    })?;
                }
            }
            Ok(total)
        })
    }
}

/// True when `source` is meant as a URL rather than a path.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn parse_http_url(url: &str) -> Result<Uri, HttpError> {
    if url.starts_with("https://") {
        return Err(HttpError::HttpsUnsupported {
            url: url.to_owned(),
        });
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(HttpError::BadUrl {
            url: url.to_owned(),
            reason: "expected http://host[:port]/path".to_owned(),
        });
    }
    Ok(uri)
}
