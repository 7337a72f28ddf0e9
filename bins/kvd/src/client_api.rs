//! The client listener of a node: etcd's v3 JSON gateway, with everything else answered
//! with etcd's 404 page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::gateway::{self, Gateway, GatewayBody, Handled};
use crate::http_server;
use crate::node::Node;

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
            let serving = gateway.clone();
            let mut stopping = stop.subscribe();
            servers.spawn(http_server::serve(
                listener,
                move |request| answer(serving.clone(), request),
                async move {
                    // A dropped sender also means stop.
                    let _ = stopping.wait_for(|stop| *stop).await;
                },
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

async fn answer(gateway: Gateway<Node>, request: Request<Incoming>) -> Response<GatewayBody> {
    match gateway.handle(request).await {
        Handled::Response(response) => response,
        Handled::NotMine(_) => {
            let mut response = Response::new(GatewayBody::from(Bytes::from_static(
                b"404 page not found\n",
            )));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}
