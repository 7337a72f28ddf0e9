//! TCP proxying: each connection goes to one backend, and bytes flow both ways until either
//! side closes, or the backend has drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::accept::Connections;
use crate::backends::{InUse, Pool};

/// Relays the `connections` handed to this worker to `pool`'s backends, until the listener
/// stops accepting.
pub async fn serve(mut connections: Connections, pool: Arc<Pool>, connect_timeout: Duration) {
    while let Some((client, peer, session)) = connections.next().await {
        let pool = Arc::clone(&pool);
        session.spawn(async move {
            relay(client, peer, &pool, connect_timeout).await;
        });
    }
}

async fn relay(mut client: TcpStream, peer: SocketAddr, pool: &Pool, connect_timeout: Duration) {
    let Some((in_use, mut upstream)) = connect_any(pool, connect_timeout).await else {
        pool.unavailable();
        tracing::warn!(service = pool.service(), %peer, "no healthy backend; closing the connection");
        return;
    };
    let _ = client.set_nodelay(true);
    let backend = in_use.backend();
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(error) = copied {
                tracing::debug!(service = pool.service(), backend = %backend.address, %error, "connection ended");
            }
        }
        () = backend.drained() => tracing::info!(
            service = pool.service(),
            backend = %backend.address,
            %peer,
            "the backend's grace period is over; closing its connection"
        ),
    }
}

/// A connection to the backend at `address`, for small messages (no Nagle delay); the
/// reason as text when there is none within `timeout`.
pub async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("connecting to {address}: {error}")),
        Err(_) => {
            return Err(format!(
                "connecting to {address}: no answer within {timeout:?}"
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects to the pool's backends in turn until one accepts; `None` when none did.
pub async fn connect_any(pool: &Pool, connect_timeout: Duration) -> Option<(InUse, TcpStream)> {
    let mut tried = Vec::new();
    while let Some(backend) = pool.pick(&tried) {
        let reason = match connect(backend.address, connect_timeout).await {
            Ok(stream) => return Some((backend.begin(), stream)),
            Err(reason) => reason,
        };
        backend.failed();
        tracing::warn!(
            service = pool.service(),
            backend = %backend.address,
            instance = %backend.registration.instance,
            %reason,
            "cannot connect; trying the next backend"
        );
        tried.push(backend.address);
    }
    None
}
