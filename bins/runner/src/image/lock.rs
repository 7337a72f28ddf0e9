//! The store-wide `flock`: shared while reading records, exclusive while publishing or
//! deleting, so concurrent sinew-run processes never see half a change.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _flock: Flock<File>,
}

impl StoreLock {
    /// Blocks until the lock on `path` is held, shared or exclusive.
    pub fn acquire(path: &Path, exclusive: bool) -> io::Result<StoreLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        let flock = Flock::lock(file, arg).map_err(|(_, errno)| io::Error::from(errno))?;
        Ok(StoreLock { _flock: flock })
    }
}
