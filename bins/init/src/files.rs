//! Put, get and stat: files moved with digests, written atomically.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use sinew_proto::{
    Channel, ChannelError, ErrorKind, FileInfo, FileStat, FrameKind, PutRequest, RemoteError,
    Response, Sha256Digest, DATA_CHUNK_LEN,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::flow::Flow;

/// Why a file operation failed.
#[derive(Debug, Error)]
pub enum FileError {
    /// Paths must be absolute: the agent has no meaningful working directory.
    #[error("path must be absolute: {0:?}")]
    NotAbsolute(String),
    /// Only permission bits (0o7777) may be set.
    #[error("mode {0:#o} has bits outside 0o7777")]
    BadMode(u32),
    /// The path exists but is not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    /// The data received does not match the announced digest or size.
    #[error("{}: received {received_size} bytes with digest {received}, announced {size} bytes with digest {announced}", path.display())]
    Mismatch {
        /// The destination.
        path: PathBuf,
        /// Announced size.
        size: u64,
        /// Announced digest.
        announced: Sha256Digest,
        /// Bytes received.
        received_size: u64,
        /// Digest of the bytes received.
        received: Sha256Digest,
    },
    /// The worker thread doing the file work stopped (the agent is shutting down).
    #[error("file operation interrupted: {0}")]
    Interrupted(String),
    /// An operating-system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl From<FileError> for RemoteError {
    fn from(error: FileError) -> Self {
        let kind = match &error {
            FileError::NotAbsolute(_) | FileError::BadMode(_) | FileError::NotRegular(_) => {
                ErrorKind::BadRequest
            }
            FileError::Mismatch { .. } => ErrorKind::DigestMismatch,
            FileError::Interrupted(_) => ErrorKind::Internal,
            FileError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Io,
            },
        };
        RemoteError::new(kind, error.to_string())
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn absolute(path: &str) -> Result<PathBuf, FileError> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(FileError::NotAbsolute(path.to_owned()))
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join_error| Err(FileError::Interrupted(join_error.to_string())))
}

/// Size and digest of a readable file.
fn digest_of(file: &mut File) -> io::Result<(u64, Sha256Digest)> {
    let mut hasher = Sha256::new();
    let size = io::copy(file, &mut hasher)?;
    Ok((
        size,
        Sha256Digest::from(<[u8; 32]>::from(hasher.finalize())),
    ))
}

/// Whether `path` is a regular file with exactly this mode, size and digest.
fn already_stored(path: &Path, mode: u32, size: u64, sha256: Sha256Digest) -> bool {
    // Checked before opening: opening a FIFO would block.
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    metadata.is_file()
        && metadata.permissions().mode() & 0o7777 == mode
        && metadata.len() == size
        && File::open(path)
            .and_then(|mut file| digest_of(&mut file))
            .is_ok_and(|(_, digest)| digest == sha256)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file beside the destination, removed on drop unless renamed into place.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create_beside(destination: &Path) -> Result<Self, FileError> {
        let dir = destination.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let name = destination
            .file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default();
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.sinew-{}-{unique}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("create", &path))?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), FileError> {
        match &mut self.file {
            Some(file) => file.write_all(data).map_err(io_error("write", &self.path)),
            None => Ok(()),
        }
    }

    /// Syncs, sets the mode, renames over `destination` and syncs the directory.
    fn commit(mut self, destination: &Path, mode: u32) -> Result<(), FileError> {
        if let Some(file) = self.file.take() {
            file.set_permissions(Permissions::from_mode(mode))
                .map_err(io_error("set the mode of", &self.path))?;
            file.sync_all().map_err(io_error("sync", &self.path))?;
        }
        std::fs::rename(&self.path, destination)
            .map_err(io_error("rename into place", destination))?;
        self.path = PathBuf::new();
        if let Some(dir) = destination.parent() {
            // The rename is durable only once the directory is synced.
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error("sync directory", dir))?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: failing to clean up must not hide the error being reported.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves a put: answers `Unchanged` if the file already matches, otherwise `Ready`, receives
/// exactly `size` bytes into a temporary file, verifies and renames it into place.
///
/// Asks to close the connection if the client broke the protocol by sending more data than
/// announced or something other than data.
pub async fn serve_put<S: AsyncRead + AsyncWrite + Unpin>(
    request: PutRequest,
    channel: &mut Channel<S>,
) -> Result<Flow, ChannelError> {
    let prepared = async {
        let path = absolute(&request.path)?;
        if request.mode & !0o7777 != 0 {
            return Err(FileError::BadMode(request.mode));
        }
        let (mode, size, sha256) = (request.mode, request.size, request.sha256);
        blocking(move || {
            if already_stored(&path, mode, size, sha256) {
                return Ok(None);
            }
            TempFile::create_beside(&path).map(|temp| Some((path, temp)))
        })
        .await
    };
    let (path, mut temp) = match prepared.await {
        Ok(Some(prepared)) => prepared,
        Ok(None) => return reply(channel, Response::Unchanged).await,
        Err(error) => return reply(channel, Response::Error(error.into())).await,
    };
    channel.send_control(&Response::Ready).await?;

    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut write_error = None;
    while received < request.size {
        let frame = channel.recv().await?;
        let too_much = received + frame.payload.len() as u64 > request.size;
        if frame.kind != FrameKind::Data || too_much {
            let message = if too_much {
                format!(
                    "{}: more data than the {} bytes announced",
                    request.path, request.size
                )
            } else {
                format!(
                    "{}: expected file data, got a {:?} frame",
                    request.path, frame.kind
                )
            };
            // The stream is out of step; tell the client and end the connection.
            channel
                .send_control(&Response::Error(RemoteError::new(
                    ErrorKind::BadRequest,
                    message,
                )))
                .await?;
            return Ok(Flow::Close);
        }
        received += frame.payload.len() as u64;
        hasher.update(&frame.payload);
        if write_error.is_none() {
            // Keep reading after a write error so the stream stays in step. The write is
            // synchronous: a chunk lands in the page cache in microseconds, and the fsync,
            // which can take long, runs on a blocking thread in `commit`.
            if let Err(error) = temp.write(&frame.payload) {
                write_error = Some(error);
            }
        }
    }
    if let Some(error) = write_error {
        return reply(channel, Response::Error(error.into())).await;
    }
    let digest = Sha256Digest::from(<[u8; 32]>::from(hasher.finalize()));
    if digest != request.sha256 {
        let error = FileError::Mismatch {
            path,
            size: request.size,
            announced: request.sha256,
            received_size: received,
            received: digest,
        };
        drop(temp);
        return reply(channel, Response::Error(error.into())).await;
    }
    let mode = request.mode;
    match blocking(move || temp.commit(&path, mode)).await {
        Ok(()) => reply(channel, Response::Stored { sha256: digest }).await,
        Err(error) => reply(channel, Response::Error(error.into())).await,
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    channel: &mut Channel<S>,
    response: Response,
) -> Result<Flow, ChannelError> {
    channel.send_control(&response).await?;
    Ok(Flow::Continue)
}

/// Serves a get: streams the file as `Data` frames, then `File` with its size, mode and
/// digest.
pub async fn serve_get<S: AsyncRead + AsyncWrite + Unpin>(
    path: &str,
    channel: &mut Channel<S>,
) -> Result<(), ChannelError> {
    let opened = async {
        let path = absolute(path)?;
        blocking(move || {
            // Checked before opening: opening a FIFO would block.
            let metadata = std::fs::metadata(&path).map_err(io_error("stat", &path))?;
            if !metadata.is_file() {
                return Err(FileError::NotRegular(path));
            }
            let file = File::open(&path).map_err(io_error("open", &path))?;
            Ok((path, file, metadata.permissions().mode() & 0o7777))
        })
        .await
    };
    let (path, file, mode) = match opened.await {
        Ok(opened) => opened,
        Err(error) => return channel.send_control(&Response::Error(error.into())).await,
    };
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Result<Vec<u8>, FileError>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; DATA_CHUNK_LEN];
            let read = file.read(&mut chunk).map_err(io_error("read", &path));
            let done = matches!(read, Ok(0) | Err(_));
            let item = read.map(|n| {
                chunk.truncate(n);
                chunk
            });
            if chunks_tx.blocking_send(item).is_err() || done {
                return;
            }
        }
    });
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result = loop {
        match chunks.recv().await {
            Some(Ok(chunk)) if chunk.is_empty() => {
                let sha256 = Sha256Digest::from(<[u8; 32]>::from(hasher.finalize()));
                break channel
                    .send_control(&Response::File(FileInfo { size, mode, sha256 }))
                    .await;
            }
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if let Err(error) = channel.send(FrameKind::Data, &chunk).await {
                    break Err(error);
                }
            }
            Some(Err(error)) => break channel.send_control(&Response::Error(error.into())).await,
            None => {
                let error =
                    RemoteError::new(ErrorKind::Internal, "file reader stopped unexpectedly");
                break channel.send_control(&Response::Error(error)).await;
            }
        }
    };
    drop(chunks);
    // The reader ends by itself once the receiver is gone; its outcome was already reported.
    let _ = reader.await;
    result
}

/// Describes what is at `path`, following symbolic links; digests regular files that the
/// agent can read.
pub async fn stat(path: &str) -> Result<Option<FileStat>, FileError> {
    let path = absolute(path)?;
    blocking(move || {
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("stat", &path)(error)),
        };
        let sha256 = if metadata.is_file() {
            match File::open(&path) {
                Ok(mut file) => Some(digest_of(&mut file).map_err(io_error("read", &path))?.1),
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => None,
                Err(error) => return Err(io_error("open", &path)(error)),
            }
        } else {
            None
        };
        Ok(Some(FileStat {
            size: metadata.len(),
            mode: metadata.permissions().mode() & 0o7777,
            is_file: metadata.is_file(),
            sha256,
        }))
    })
    .await
}
