//! A service's output: the last lines in memory, everything in a log file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// Lines kept in memory per service.
pub const RING_LINES: usize = 1000;
/// Longer lines are split, so one runaway line cannot take all the memory.
const MAX_LINE: usize = 8 * 1024;

/// Where a service's output goes. Shared by all runs of the service.
#[derive(Debug)]
pub struct ServiceLog {
    ring: Mutex<VecDeque<String>>,
    file: Mutex<Option<File>>,
    path: PathBuf,
}

impl ServiceLog {
    /// A log for service `name` appending to `<dir>/<name>.log`. If the file cannot be
    /// opened the output is still kept in memory.
    pub fn open(dir: &Path, name: &str) -> Self {
        let path = dir.join(format!("{name}.log"));
        let file = std::fs::create_dir_all(dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
        let file = match file {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "service log file unavailable; keeping output in memory only");
                None
            }
        };
        Self {
            ring: Mutex::new(VecDeque::with_capacity(RING_LINES)),
            file: Mutex::new(file),
            path,
        }
    }

    /// Starts copying a run's output pipes into the log until they close.
    pub fn attach(self: &Arc<Self>, pipes: impl IntoIterator<Item = OwnedFd>) {
        for fd in pipes {
            match pipe::Receiver::from_owned_fd(fd) {
                Ok(receiver) => {
                    tokio::spawn(Arc::clone(self).pump(receiver));
                }
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "cannot read service output")
                }
            }
        }
    }

    async fn pump(self: Arc<Self>, mut receiver: pipe::Receiver) {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut partial = Vec::new();
        loop {
            let n = match receiver.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            partial.extend_from_slice(&buffer[..n]);
            let mut lines = Vec::new();
            let mut start = 0;
            while let Some(end) = line_end(&partial[start..]) {
                lines.push(partial[start..start + end.len].to_vec());
                start += end.next;
            }
            partial.drain(..start);
            self.append(lines);
        }
        if !partial.is_empty() {
            self.append(vec![partial]);
        }
    }

    fn append(&self, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        if let Some(file) = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            let mut text = Vec::new();
            for line in &lines {
                text.extend_from_slice(line);
                text.push(b'\n');
            }
            // Output goes to tmpfs (or the host's page cache): a small synchronous write.
            if let Err(error) = file.write_all(&text) {
                tracing::warn!(path = %self.path.display(), %error, "cannot append to service log");
            }
        }
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for line in lines {
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(String::from_utf8_lossy(&line).into_owned());
        }
    }

    /// The last `count` lines, oldest first.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .skip(ring.len().saturating_sub(count))
            .cloned()
            .collect()
    }
}

/// Where the first line in `buffer` ends: its length without terminator, and where the next
/// line starts. Lines longer than [`MAX_LINE`] end at that length.
#[derive(Debug, PartialEq, Eq)]
struct LineEnd {
    len: usize,
    next: usize,
}

fn line_end(buffer: &[u8]) -> Option<LineEnd> {
    match buffer
        .iter()
        .take(MAX_LINE + 1)
        .position(|&byte| byte == b'\n')
    {
        Some(newline) => {
            let len = if newline > 0 && buffer[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            Some(LineEnd {
                len,
                next: newline + 1,
            })
        }
        None if buffer.len() > MAX_LINE => Some(LineEnd {
            len: MAX_LINE,
            next: MAX_LINE,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines() {
        assert_eq!(line_end(b"abc\ndef"), Some(LineEnd { len: 3, next: 4 }));
        assert_eq!(line_end(b"abc\r\n"), Some(LineEnd { len: 3, next: 5 }));
        assert_eq!(line_end(b"\n"), Some(LineEnd { len: 0, next: 1 }));
        assert_eq!(line_end(b"no end"), None);
        let long = vec![b'x'; MAX_LINE + 5];
        assert_eq!(
            line_end(&long),
            Some(LineEnd {
                len: MAX_LINE,
                next: MAX_LINE
            })
        );
    }

    #[tokio::test]
    async fn keeps_the_last_lines_and_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(ServiceLog::open(dir.path(), "web"));
        let (sender, receiver) = pipe::pipe().unwrap();
        let pump = tokio::spawn(Arc::clone(&log).pump(receiver));
        let mut sender = sender;
        let text: String = (0..RING_LINES + 10)
            .map(|i| format!("line {i}\n"))
            .collect();
        tokio::io::AsyncWriteExt::write_all(&mut sender, text.as_bytes())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut sender, b"unterminated")
            .await
            .unwrap();
        drop(sender);
        pump.await.unwrap();
        assert_eq!(log.tail(2), ["line 1009", "unterminated"]);
        assert_eq!(log.tail(usize::MAX).len(), RING_LINES);
        let file = std::fs::read_to_string(dir.path().join("web.log")).unwrap();
        assert!(file.starts_with("line 0\nline 1\n"));
        assert!(file.ends_with("line 1009\nunterminated\n"));
    }
}
