//! Writing into the content-addressed parts of the cache (artifacts, boot images): a file
//! whose path is derived from its digest is written once, atomically, and never rewritten.

use std::fs;
use std::io;
use std::path::Path;

/// Stores `bytes` at `path` unless a file is already there; returns true when it wrote.
/// The file appears whole or not at all: it is written beside its final name, then renamed.
pub(crate) fn store_once(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a stored file needs a parent directory"))?;
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
    fs::write(&partial, bytes)?;
    fs::rename(&partial, path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_never_rewrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ab/cd/blob");
        assert!(store_once(&path, b"first").expect("store"));
        assert!(!store_once(&path, b"second").expect("second store"));
        assert_eq!(fs::read(&path).expect("read"), b"first");
        let left: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .collect();
        assert_eq!(left.len(), 1, "no partial file is left behind");
    }
}
