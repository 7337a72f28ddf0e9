//! A small blocking HTTP/1.1 GET client on hyper for `http://` and `https://` sources (TLS
//! through hyper-rustls, see [`super::tls`]). Redirects are not followed: an image source is
//! named exactly, and a redirect is reported with its target.

use std::error::Error as StdError;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::LOCATION;
use hyper::{StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::tls::{client_config, Roots, TlsError, TlsFailure};

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
    /// TLS could not be set up (a bad `--ca-cert` file).
    #[error(transparent)]
    TlsSetup(#[from] TlsError),
    /// The TLS connection was refused: certificate or handshake.
    #[error("{url}: {failure}")]
    Tls {
        /// The URL.
        url: String,
        /// What failed.
        failure: TlsFailure,
    },
    /// The server answered with a redirect, which is not followed.
    #[error("{url}: the server redirects ({status}) to {location}; redirects are not followed, use that URL directly")]
    Redirect {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The `Location` header, as sent.
        location: String,
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

/// A blocking HTTP(S) client.
#[derive(Debug)]
pub struct HttpClient {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    roots: Roots,
}

impl HttpClient {
    /// A client with its own single-threaded runtime, trusting the system roots plus the
    /// CA certificates in `ca_files` (PEM) for `https://`.
    pub fn new(ca_files: &[PathBuf]) -> Result<HttpClient, HttpError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Runtime)?;
        let (tls, roots) = client_config(ca_files)?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpClient {
            runtime,
            client,
            roots,
        })
    }

    /// GETs `url` into `out`, refusing bodies over `limit` bytes; returns the body length.
    pub fn get(&self, url: &str, out: &mut dyn Write, limit: u64) -> Result<u64, HttpError> {
        let uri = parse_http_url(url)?;
        let host = uri.host().unwrap_or_default().to_owned();
        let transport = |e: &(dyn StdError + 'static)| match TlsFailure::find(e, &host, self.roots)
        {
            Some(failure) => HttpError::Tls {
                url: url.to_owned(),
                failure,
            },
            None => HttpError::Transport {
                url: url.to_owned(),
                reason: chain(e),
            },
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
                status if status.is_redirection() => {
                    return Err(HttpError::Redirect {
                        url: url.to_owned(),
                        status,
                        location: response
                            .headers()
                            .get(LOCATION)
                            .map_or("an unnamed location".to_owned(), |l| {
                                String::from_utf8_lossy(l.as_bytes()).into_owned()
                            }),
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

/// An error and its causes, joined: hyper's own message ("client error (Connect)") says
/// little without them.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        current = cause.source();
    }
    text
}

fn parse_http_url(url: &str) -> Result<Uri, HttpError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(HttpError::BadUrl {
            url: url.to_owned(),
            reason: "expected http[s]://host[:port]/path".to_owned(),
        });
    }
    Ok(uri)
}
