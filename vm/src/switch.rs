//! A lab's private data-plane segment: a userspace learning Ethernet switch on a
//! unix socket that every guest's `-netdev stream` NIC connects to.
//!
//! QEMU's stream netdev frames each Ethernet frame as a 4-byte big-endian length
//! followed by the frame. The switch learns source MACs per port, forwards known
//! unicast to its port only, floods broadcast, multicast and unknown unicast, and
//! never sends a frame back to the port it came from. Nothing here needs root.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::MacAddr;

/// Largest frame accepted: QEMU's own limit is 69 KiB (64 KiB payload plus
/// headroom); anything bigger means the peer does not speak the protocol.
const MAX_FRAME: usize = 128 * 1024;
/// Frames queued per port before the switch drops, as a congested switch would,
/// rather than let one slow guest stall the segment.
const PORT_QUEUE: usize = 512;

/// A running switch; dropping it stops it and removes its socket.
#[derive(Debug)]
pub struct Switch {
    socket: PathBuf,
    ports: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Error from starting a [`Switch`].
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// Another live switch already serves this socket.
    #[error("switch socket {0} is in use by a running switch")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("cannot create switch socket {0}: a non-socket file is in the way")]
    NotASocket(PathBuf),
    /// The socket could not be created or secured.
    #[error("cannot {action} switch socket {path}: {source}")]
    Socket {
        /// What was being done.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The switch's thread or runtime could not be started.
    #[error("cannot start the switch for {path}: {source}")]
    Start {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Switch {
    /// Starts a switch serving `socket` (mode 0600; a stale socket left by a dead
    /// switch is replaced) on its own thread and single-threaded tokio runtime, so
    /// it works whatever runtime, if any, the caller uses.
    pub fn start(socket: &Path) -> Result<Switch, SwitchError> {
        let listener = bind(socket)?;
        let start_err = |source| SwitchError::Start {
            path: socket.to_owned(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(start_err)?;
        let ports = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let hub_ports = ports.clone();
        let name = socket.display().to_string();
        let thread = std::thread::Builder::new()
            .name("sinew-switch".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match UnixListener::from_std(listener) {
                        Ok(listener) => serve(listener, stopped, hub_ports).await,
                        Err(e) => {
                            tracing::error!(socket = %name, error = %e, "switch cannot listen")
                        }
                    }
                });
            })
            .map_err(start_err)?;
        Ok(Switch {
            socket: socket.to_owned(),
            ports,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The socket guests connect to (put it in [`crate::DataNic::switch_socket`]).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How many ports (guests) are connected right now.
    pub fn port_count(&self) -> usize {
        self.ports.load(Ordering::SeqCst)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error only means the thread already ended.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, SwitchError> {
    let sock_err = |action, source| SwitchError::Socket {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SwitchError::InUse(path.to_owned())),
                Err(_) => std::fs::remove_file(path).map_err(|e| sock_err("remove stale", e))?,
            }
        }
        Ok(_) => return Err(SwitchError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err("inspect", e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| sock_err("bind", e))?;
    // Between bind and chmod the socket has umask permissions; peers are also
    // checked by uid on accept, so that window gives nobody else a port.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| sock_err("chmod", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| sock_err("configure", e))?;
    Ok(listener)
}

enum Event {
    Frame(u64, Vec<u8>),
    Left(u64),
}

async fn serve(listener: UnixListener, mut stop: oneshot::Receiver<()>, count: Arc<AtomicUsize>) {
    let (events, mut inbox) = mpsc::channel::<Event>(PORT_QUEUE);
    let mut ports: BTreeMap<u64, mpsc::Sender<Vec<u8>>> = BTreeMap::new();
    let mut table: HashMap<MacAddr, u64> = HashMap::new();
    let mut next_id = 0u64;
    let uid = nix::unistd::geteuid().as_raw();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if !peer_allowed(&stream, uid) {
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    let (read, write) = stream.into_split();
                    let (tx, rx) = mpsc::channel(PORT_QUEUE);
                    ports.insert(id, tx);
                    count.store(ports.len(), Ordering::SeqCst);
                    tokio::spawn(read_port(id, read, events.clone()));
                    tokio::spawn(write_port(write, rx));
                    tracing::debug!(port = id, "switch port connected");
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "switch accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(event) = inbox.recv() => match event {
                Event::Frame(from, frame) => forward(&ports, &mut table, from, frame),
                Event::Left(id) => {
                    ports.remove(&id);
                    table.retain(|_, port| *port != id);
                    count.store(ports.len(), Ordering::SeqCst);
                    tracing::debug!(port = id, "switch port disconnected");
                }
            },
        }
    }
}

/// Only our own user (or root) may plug into the segment.
fn peer_allowed(stream: &UnixStream, uid: u32) -> bool {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == uid || cred.uid() == 0 => true,
        Ok(cred) => {
            tracing::warn!(
                peer_uid = cred.uid(),
                "switch refused a connection from another user"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "switch cannot identify a peer; refused");
            false
        }
    }
}

fn forward(
    ports: &BTreeMap<u64, mpsc::Sender<Vec<u8>>>,
    table: &mut HashMap<MacAddr, u64>,
    from: u64,
    frame: Vec<u8>,
) {
    let (Some(dst), Some(src)) = (mac_at(&frame, 0), mac_at(&frame, 6)) else {
        return;
    };
    if !src.is_multicast() {
        table.insert(src, from);
    }
    let target = if dst.is_multicast() {
        None
    } else {
        table.get(&dst).copied()
    };
    match target {
        Some(port) if port == from => {}
        Some(port) => send(ports, port, frame),
        None => {
            for &port in ports.keys().filter(|p| **p != from) {
                send(ports, port, frame.clone());
            }
        }
    }
}

fn send(ports: &BTreeMap<u64, mpsc::Sender<Vec<u8>>>, port: u64, frame: Vec<u8>) {
    if let Some(tx) = ports.get(&port) {
        // A full queue drops the frame; a closed one is a port about to be removed.
        let _ = tx.try_send(frame);
    }
}

fn mac_at(frame: &[u8], at: usize) -> Option<MacAddr> {
    frame.get(at..at + 6)?.try_into().ok().map(MacAddr)
}

async fn read_port(id: u64, mut read: OwnedReadHalf, events: mpsc::Sender<Event>) {
    loop {
        let mut len = [0u8; 4];
        if read.read_exact(&mut len).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            tracing::warn!(
                port = id,
                len,
                "switch port sent an oversized frame; disconnecting it"
            );
            break;
        }
        let mut frame = vec![0u8; len];
        if read.read_exact(&mut frame).await.is_err()
            || events.send(Event::Frame(id, frame)).await.is_err()
        {
            break;
        }
    }
    let _ = events.send(Event::Left(id)).await;
}

async fn write_port(mut write: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        let mut buf = Vec::with_capacity(4 + frame.len());
        buf.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(&frame);
        if write.write_all(&buf).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream as StdStream;
    use std::time::Instant;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);
    const D: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd]);
    const MCAST: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);

    struct Port(StdStream);

    impl Port {
        fn send(&mut self, dst: MacAddr, src: MacAddr, payload: &[u8]) {
            let mut frame = Vec::new();
            frame.extend_from_slice(&dst.0);
            frame.extend_from_slice(&src.0);
            frame.extend_from_slice(&[0x88, 0xb5]);
            frame.extend_from_slice(payload);
            self.0
                .write_all(
                    &u32::try_from(frame.len())
                        .expect("a test frame fits in u32")
                        .to_be_bytes(),
                )
                .unwrap();
            self.0.write_all(&frame).unwrap();
        }

        /// The next frame's payload, or None if nothing comes within the timeout.
        fn recv(&mut self) -> Option<Vec<u8>> {
            let mut len = [0u8; 4];
            match self.0.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("{e}"),
            }
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            self.0.read_exact(&mut frame).unwrap();
            Some(frame[14..].to_vec())
        }
    }

    fn wait_ports(switch: &Switch, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while switch.port_count() != n {
            assert!(
                Instant::now() < deadline,
                "switch has {} ports, expected {n}",
                switch.port_count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn connect(switch: &Switch, n: usize) -> Vec<Port> {
        let ports: Vec<Port> = (0..n)
            .map(|_| {
                let s = StdStream::connect(switch.socket()).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(150)))
                    .unwrap();
                Port(s)
            })
            .collect();
        wait_ports(switch, n);
        ports
    }

    #[test]
    fn floods_then_learns_and_never_echoes() {
        let dir = tempfile::tempdir().unwrap();
        let switch = Switch::start(&dir.path().join("sw.sock")).unwrap();
        let mut p = connect(&switch, 3);

        p[0].send(MacAddr::BROADCAST, A, b"hello");
        assert_eq!(p[1].recv().as_deref(), Some(&b"hello"[..]));
        assert_eq!(p[2].recv().as_deref(), Some(&b"hello"[..]));
        assert_eq!(p[0].recv(), None, "no echo to the sender");

        // A is learned on port 0: a reply goes there only.
        p[1].send(A, B, b"to-a");
        assert_eq!(p[0].recv().as_deref(), Some(&b"to-a"[..]));
        assert_eq!(p[2].recv(), None);

        // B is learned on port 1.
        p[0].send(B, A, b"to-b");
        assert_eq!(p[1].recv().as_deref(), Some(&b"to-b"[..]));
        assert_eq!(p[2].recv(), None);

        // Unknown unicast and multicast flood.
        for dst in [D, MCAST] {
            p[2].send(dst, C, b"flood");
            assert_eq!(p[0].recv().as_deref(), Some(&b"flood"[..]));
            assert_eq!(p[1].recv().as_deref(), Some(&b"flood"[..]));
            assert_eq!(p[2].recv(), None);
        }

        // A frame for a MAC learned on the sender's own port goes nowhere.
        p[0].send(A, D, b"hairpin");
        assert_eq!(p[1].recv(), None);
        assert_eq!(p[2].recv(), None);
    }

    #[test]
    fn departed_ports_are_forgotten_and_bad_peers_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let switch = Switch::start(&dir.path().join("sw.sock")).unwrap();
        let mut p = connect(&switch, 3);
        p[0].send(MacAddr::BROADCAST, A, b"hi");
        assert!(p[1].recv().is_some() && p[2].recv().is_some());
        let gone = p.remove(0);
        drop(gone);
        wait_ports(&switch, 2);
        // A is unknown again, so a frame for it floods.
        p[0].send(A, B, b"where");
        assert_eq!(p[1].recv().as_deref(), Some(&b"where"[..]));

        // An oversized length disconnects that port only.
        p[1].0.write_all(&u32::MAX.to_be_bytes()).unwrap();
        wait_ports(&switch, 1);
        let mut q = connect_one(&switch, 2);
        p[0].send(MacAddr::BROADCAST, B, b"still");
        assert_eq!(q.recv().as_deref(), Some(&b"still"[..]));
    }

    fn connect_one(switch: &Switch, expect: usize) -> Port {
        let s = StdStream::connect(switch.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        wait_ports(switch, expect);
        Port(s)
    }

    #[test]
    fn socket_is_private_exclusive_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sw.sock");
        let switch = Switch::start(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = Switch::start(&path).unwrap_err();
        assert!(matches!(err, SwitchError::InUse(_)), "{err}");
        drop(switch);
        assert!(!path.exists());

        // A stale socket (its owner died without cleaning up) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let switch = Switch::start(&path).unwrap();
        connect(&switch, 1);

        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let err = Switch::start(&dir.path().join("file"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("file") && err.contains("non-socket"), "{err}");
    }
}
