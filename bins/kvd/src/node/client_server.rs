//! The client listener of a node: etcd's v3 gRPC services (HTTP/2 with a gRPC content
//! type), its v2 API (`/v2/...`, `/version`, `/health`) and its v3 JSON gateway
//! (`/v3/...`), with everything else answered with etcd's 404 page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::http_server;
use super::Node;
use crate::gateway::{self, Gateway, GatewayBody, Handled};
use crate::grpc::{self, Services};
use crate::v2;

/// How long a watch may stay silent before the gateway reports progress, when it asked.
const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// The client listeners of a node, serving until [`ClientApi::finish`].
#[derive(Debug)]
pub struct ClientApi {
    servers: JoinSet<()>,
    gateway: Gateway<Node>,
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
}

impl ClientApi {
    /// Binds every `--listen-client-urls` address and starts serving.
    pub async fn start(node: &Node) -> std::io::Result<Self> {
        let gateway = Gateway::with_config(
            Arc::new(node.clone()),
            gateway::Config {
                max_request_bytes: node.config().max_request_bytes,
                progress_notify_interval: PROGRESS_NOTIFY_INTERVAL,
            },
        );
        let stop = watch::channel(false).0;
        let mut servers = JoinSet::new();
        let mut addrs = Vec::new();
        for addr in &node.config().listen_client {
            let listener = TcpListener::bind(addr).await.map_err(|error| {
                std::io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
            })?;
            addrs.push(listener.local_addr()?);
            servers.spawn(serve(
                listener,
                Arc::new(Services::new(gateway.clone())),
                gateway.clone(),
                Arc::new(node.clone()),
                stop.subscribe(),
            ));
        }
        Ok(Self {
            servers,
            gateway,
            addrs,
            stop,
        })
    }

    /// The addresses actually bound.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting clients, ends the open streams (watches, keep-alives) and waits for
    /// the requests in flight to finish.
    pub async fn finish(mut self) {
        self.stop.send_replace(true);
        self.gateway.close();
        while self.servers.join_next().await.is_some() {}
    }
}

/// Serves `listener` once `node` has published itself, as etcd serves clients only once
/// ready, until `stopping` says stop (a dropped sender also means stop).
async fn serve(
    listener: TcpListener,
    grpc: Arc<Services<Node>>,
    gateway: Gateway<Node>,
    node: Arc<Node>,
    mut stopping: watch::Receiver<bool>,
) {
    tokio::select! {
        () = node.published() => {}
        _ = stopping.wait_for(|stop| *stop) => return,
    }
    http_server::serve(
        listener,
        move |request| {
            answer(
                Arc::clone(&grpc),
                gateway.clone(),
                Arc::clone(&node),
                request,
            )
        },
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        },
    )
    .await;
}

/// An answer of the client listener: from the gRPC services, or over HTTP/1 and JSON.
type ClientBody = Either<tonic::body::Body, v2::Body>;

async fn answer(
    grpc: Arc<Services<Node>>,
    gateway: Gateway<Node>,
    node: Arc<Node>,
    request: Request<Incoming>,
) -> Response<ClientBody> {
    if grpc::is_grpc(&request) {
        return grpc.answer(request).await.map(Either::Left);
    }
    // The v2 and gateway futures are boxed: they are large, and unboxed they would make
    // every request's task as large, gRPC's included, to be moved at each spawn.
    let response = if v2::serves(request.uri().path()) {
        Box::pin(v2::handle(&node, request))
            .await
            .unwrap_or_else(not_found)
    } else {
        match Box::pin(gateway.handle(request)).await {
            Handled::Response(response) => response.map(BodyExt::boxed_unsync),
            Handled::NotMine(_) => not_found(),
        }
    };
    response.map(Either::Right)
}

fn not_found() -> Response<v2::Body> {
    let body = GatewayBody::from(Bytes::from_static(b"404 page not found\n"));
    let mut response = Response::new(body.boxed_unsync());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
