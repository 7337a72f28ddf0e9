//! Calls between members over HTTP/1.1, in an [`Encoding`] of the caller's choice: one
//! pooled hyper client per node, used for Raft messages and for requests a follower
//! forwards to the leader.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use super::wire::{Encoding, WireError};

/// Why a call to another member failed.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The member's URL and the path do not make a valid request URI.
    #[error("invalid peer URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request body could not be encoded.
    #[error("cannot encode the request to {url}: {source}")]
    Encode {
        /// The URL.
        url: String,
        /// Why.
        source: WireError,
    },
    /// No connection could be made: the request was not sent.
    #[error("member at {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The connection broke after the request may have been sent, before the whole answer
    /// arrived: the member may have acted on it.
    #[error("the connection to the member at {url} broke: {reason}")]
    Broken {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer within the deadline.
    #[error("member at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The member answered with an HTTP error.
    #[error("member at {url} answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The body, as text.
        body: String,
    },
    /// The answer was not what the path returns.
    #[error("cannot decode the answer from {url}: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        source: WireError,
    },
}

/// A pooled HTTP client for member-to-member calls; clones share connections.
#[derive(Debug, Clone)]
pub struct Transport {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Transport {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }
}

impl Transport {
    /// POSTs `body` in `encoding` to `path` under `base_url` and decodes the answer, which
    /// comes in the same encoding, failing after `timeout`.
    pub async fn call<Req, Resp>(
        &self,
        base_url: &str,
        path: &str,
        body: &Req,
        encoding: Encoding,
        timeout: Duration,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let encoded = encoding
            .encode(body)
            .map_err(|source| TransportError::Encode {
                url: url.clone(),
                source,
            })?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(CONTENT_TYPE, encoding.content_type())
            .body(Full::new(Bytes::from(encoded)))
            .map_err(|error| TransportError::BadUrl {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                let url = url.clone();
                let reason = error.to_string();
                if error.is_connect() {
                    TransportError::Unreachable { url, reason }
                } else {
                    TransportError::Broken { url, reason }
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| TransportError::Broken {
                    url: url.clone(),
                    reason: error.to_string(),
                })?
                .to_bytes();
            Ok::<_, TransportError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                url: url.clone(),
                timeout,
            })??;
        if !status.is_success() {
            return Err(TransportError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        encoding
            .decode(&body)
            .map_err(|source| TransportError::Decode { url, source })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// The error of a call to `url`, which is expected to fail.
    async fn failed_call(url: &str) -> TransportError {
        Transport::default()
            .call::<_, ()>(
                url,
                "/propose",
                &"put",
                Encoding::Json,
                Duration::from_secs(5),
            )
            .await
            .unwrap_err()
    }

    /// A call's error against a listener that takes the request and closes without an
    /// answer, as a leader killed under a forwarded proposal does.
    async fn call_to_closing_listener() -> TransportError {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).await;
        });
        failed_call(&url).await
    }

    #[test]
    fn a_connection_closed_after_the_request_is_broken_not_unreachable() {
        let error = runtime().block_on(call_to_closing_listener());
        assert!(matches!(error, TransportError::Broken { .. }), "{error:?}");
    }

    #[test]
    fn a_refused_connection_is_unreachable() {
        let error = runtime().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            drop(listener);
            failed_call(&url).await
        });
        assert!(
            matches!(error, TransportError::Unreachable { .. }),
            "{error:?}"
        );
    }
}
