//! The status endpoint: `GET /status` answers each service's listeners, routing and
//! backends with their state and counters, as JSON.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::backends::{Pool, PoolStatus};
use crate::config::Listen;

/// One service as `/status` shows it.
#[derive(Debug, Serialize)]
struct ServiceStatus {
    /// `address mode` of each listener for it.
    listeners: Vec<String>,
    #[serde(flatten)]
    pool: PoolStatus,
}

/// What the endpoint reports on.
#[derive(Debug)]
pub struct Reporter {
    /// The pools by service.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// The listeners.
    pub listen: Vec<Listen>,
}

impl Reporter {
    /// Every service's status, as the endpoint's JSON.
    pub fn status(&self) -> serde_json::Value {
        let services: BTreeMap<&str, ServiceStatus> = self
            .pools
            .iter()
            .map(|(service, pool)| {
                let listeners = self
                    .listen
                    .iter()
                    .filter(|listen| &listen.service == service)
                    .map(|listen| format!("{} {}", listen.address, listen.mode.name()))
                    .collect();
                (
                    service.as_str(),
                    ServiceStatus {
                        listeners,
                        pool: pool.status(),
                    },
                )
            })
            .collect();
        serde_json::json!({ "services": services })
    }
}

/// Serves the endpoint on `listener` for as long as the proxy runs.
pub async fn serve(listener: TcpListener, reporter: Arc<Reporter>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a status connection failed");
                continue;
            }
        };
        let reporter = Arc::clone(&reporter);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let reporter = Arc::clone(&reporter);
                async move { Ok::<_, Infallible>(answer(&request, &reporter)) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "status connection ended");
            }
        });
    }
}

fn answer<B>(request: &Request<B>, reporter: &Reporter) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/status") => (
            StatusCode::OK,
            "application/json",
            format!("{:#}\n", reporter.status()),
        ),
        (_, "/status") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
        (_, path) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{path}: not found; the status is at /status\n"),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
