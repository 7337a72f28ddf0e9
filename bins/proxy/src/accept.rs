//! Client connections: each listener is accepted on the daemon's thread, each connection
//! goes to the worker with the fewest open connections (ties in turn), as HAProxy's
//! threads share theirs, and it is counted from then until it closes. Workers that all
//! accepted on one socket got what the kernel woke them for: with 64 kept-alive clients
//! one worker served six in ten, and the busier thread set the pace.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};

/// An accepted connection on its way to a worker: not yet registered with any runtime, so
/// that the worker's own takes it, and already counted as the worker's.
#[derive(Debug)]
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    session: Session,
}

/// A worker's end of one listener: the connections handed to it.
#[derive(Debug)]
pub struct Connections(mpsc::UnboundedReceiver<Accepted>);

impl Connections {
    /// The next connection, on the current runtime, and the session that counts it;
    /// `None` once the listener has stopped accepting.
    pub async fn next(&mut self) -> Option<(TcpStream, SocketAddr, Session)> {
        loop {
            let Accepted {
                stream,
                peer,
                session,
            } = self.0.recv().await?;
            match TcpStream::from_std(stream) {
                Ok(stream) => return Some((stream, peer, session)),
                Err(error) => tracing::warn!(%peer, %error, "a worker cannot take a connection"),
            }
        }
    }
}

/// A listener's way to its workers.
#[derive(Debug)]
pub struct Dispatch {
    workers: Vec<(Sessions, mpsc::UnboundedSender<Accepted>)>,
    /// Where the search for the least busy worker starts: ties go in turn.
    next: usize,
}

impl Dispatch {
    /// A dispatch to workers whose open connections `sessions` count, and the workers'
    /// ends, in the same order.
    pub fn new(sessions: &[Sessions]) -> (Self, Vec<Connections>) {
        let (workers, connections) = sessions
            .iter()
            .map(|sessions| {
                let (sender, receiver) = mpsc::unbounded_channel();
                ((sessions.clone(), sender), Connections(receiver))
            })
            .unzip();
        (Self { workers, next: 0 }, connections)
    }

    /// Accepts connections on `listener` (non-blocking) until `stopping` turns true, then
    /// closes it, so that new connections are refused rather than left waiting through the
    /// drain.
    pub async fn run(
        mut self,
        listener: std::net::TcpListener,
        mut stopping: watch::Receiver<bool>,
    ) {
        // SAFETY: the listener owns its descriptor, and the AsyncFd owns the listener, so
        // the descriptor stays open and the same for as long as it is registered.
        let listener = match unsafe { AsyncFd::register(listener) } {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot wait for connections on a listener");
                return;
            }
        };
        loop {
            tokio::select! {
                accepted = accept(&listener) => match accepted {
                    Ok(accepted) => self.hand_over(accepted),
                    Err(error) => tracing::warn!(%error, "accepting a connection failed"),
                },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Gives a connection to the worker with the fewest open connections; a worker that has
    /// stopped (its runtime would not start) is left out from then on, so that the others
    /// serve.
    fn hand_over(&mut self, (mut stream, peer): (std::net::TcpStream, SocketAddr)) {
        while !self.workers.is_empty() {
            let count = self.workers.len();
            let chosen = (0..count)
                .map(|offset| (self.next + offset) % count)
                .min_by_key(|&index| self.workers[index].0.open())
                .unwrap_or_default();
            self.next = (chosen + 1) % count;
            let (sessions, worker) = &self.workers[chosen];
            let accepted = Accepted {
                stream,
                peer,
                session: sessions.begin(),
            };
            match worker.send(accepted) {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    tracing::error!("a worker has stopped; the others serve its share");
                    self.workers.remove(chosen);
                    stream = returned.stream;
                }
            }
        }
        tracing::warn!(%peer, "no worker serves; the connection is closed");
    }
}

/// The next connection on `listener`, accepted without registering it with this runtime.
async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        if let Ok(accepted) = ready.try_io(|listener| listener.get_ref().accept()) {
            let (stream, peer) = accepted?;
            stream.set_nonblocking(true)?;
            return Ok((stream, peer));
        }
    }
}

/// One worker's open client connections, counted so that connections go to the least busy
/// worker and a stopping proxy can let them finish.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Open>);

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    none: Notify,
}

impl Sessions {
    /// Counts a session from now until the returned [`Session`] is dropped.
    fn begin(&self) -> Session {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Session(Arc::clone(&self.0))
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Resolves when no session is open.
    pub async fn finished(&self) {
        loop {
            let none = self.0.none.notified();
            tokio::pin!(none);
            none.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            none.await;
        }
    }
}

/// A connection counted as open, until dropped (even if its task panics).
#[derive(Debug)]
pub struct Session(Arc<Open>);

impl Session {
    /// Serves the connection as a task of its own on the current runtime, counted until it
    /// ends.
    pub fn spawn(self, serve: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(async move {
            let _counted = self;
            serve.await;
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to hand over, as [`accept`] gives it: the accepted end of a loopback
    /// pair, non-blocking (the client end is returned too, to keep it open).
    fn connection(
        listener: &std::net::TcpListener,
    ) -> ((std::net::TcpStream, SocketAddr), std::net::TcpStream) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        ((stream, peer), client)
    }

    #[tokio::test]
    async fn each_connection_goes_to_the_worker_with_the_fewest_open_and_ties_go_in_turn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sessions = [Sessions::default(), Sessions::default()];
        let (mut dispatch, mut workers) = Dispatch::new(&sessions);
        let mut clients = Vec::new();
        let mut next = |dispatch: &mut Dispatch| {
            let (accepted, client) = connection(&listener);
            clients.push(client);
            dispatch.hand_over(accepted);
        };
        for _ in 0..4 {
            next(&mut dispatch);
        }
        let mut first = Vec::new();
        for _ in 0..2 {
            first.push(workers[0].next().await.unwrap().2);
        }
        let second = workers[1].next().await.unwrap().2;
        assert_eq!((sessions[0].open(), sessions[1].open()), (2, 2));
        // Worker 0's connections close: the next two go to it, though it was not its turn.
        drop(first);
        next(&mut dispatch);
        next(&mut dispatch);
        assert_eq!((sessions[0].open(), sessions[1].open()), (2, 2));
        drop(second);
        assert_eq!((sessions[0].open(), sessions[1].open()), (2, 1));
    }

    #[tokio::test]
    async fn a_stopped_worker_gets_no_connection_and_the_others_serve() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sessions = [Sessions::default(), Sessions::default()];
        let (mut dispatch, mut workers) = Dispatch::new(&sessions);
        drop(workers.remove(0));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (accepted, client) = connection(&listener);
            clients.push(client);
            dispatch.hand_over(accepted);
        }
        assert_eq!((sessions[0].open(), sessions[1].open()), (0, 3));
        for _ in 0..3 {
            assert!(workers[0].next().await.is_some());
        }
    }
}
