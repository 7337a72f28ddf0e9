//! Where an image comes from: an OCI layout directory, an OCI archive (a tar of a layout,
//! optionally gzip), or an `http://` or `https://` URL of either. Archives are unpacked into
//! the fetch's staging directory first, keeping only the layout's own files.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::digest::{copy_hashing, Digest, HashingWriter};
use super::http::{is_url, HttpClient, HttpError};
use super::unpack::open_maybe_gzip;

/// Largest JSON document (index.json) read into memory.
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// Largest signature file read into memory.
const MAX_SIGNATURE: u64 = 1 << 20;
/// Largest archive downloaded over HTTP(S).
const MAX_ARCHIVE: u64 = 16 << 30;

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path is neither a directory nor a file.
    #[error("image source {0} does not exist (expected an OCI layout directory, an OCI archive or an http(s):// URL)")]
    Missing(String),
    /// The archive holds no `index.json`.
    #[error("image source {0} is not an OCI archive: no index.json inside")]
    NotAnArchive(String),
    /// A file of the layout could not be read.
    #[error("image source {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// An HTTP request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// An opened image source.
#[derive(Debug)]
pub enum Source {
    /// A layout directory on disk (possibly an unpacked archive).
    Dir(PathBuf),
    /// A layout served over HTTP(S) under a base URL.
    Http {
        /// The base URL, without trailing `/`.
        base: String,
        /// The client (boxed: it carries a runtime).
        client: Box<HttpClient>,
    },
}

impl Source {
    /// Opens `source`; archives are unpacked under `staging`. HTTPS servers are trusted
    /// when the system roots or a certificate in `ca_files` vouch for them.
    pub fn open(source: &str, staging: &Path, ca_files: &[PathBuf]) -> Result<Source, SourceError> {
        if is_url(source) {
            let client = HttpClient::new(ca_files)?;
            if is_archive_name(source) {
                let archive = staging.join("archive");
                let mut file = create(&archive)?;
                client.get(source, &mut file, MAX_ARCHIVE)?;
                return unpack_archive(source, &archive, &staging.join("layout"));
            }
            return Ok(Source::Http {
                base: source.trim_end_matches('/').to_owned(),
                client: Box::new(client),
            });
        }
        let path = Path::new(source);
        if path.is_dir() {
            Ok(Source::Dir(path.to_owned()))
        } else if path.is_file() {
            unpack_archive(source, path, &staging.join("layout"))
        } else {
            Err(SourceError::Missing(source.to_owned()))
        }
    }

    /// The layout's `index.json`.
    pub fn index_json(&self) -> Result<Vec<u8>, SourceError> {
        let mut out = Vec::new();
        self.copy_file("index.json", &mut out, MAX_DOCUMENT)?;
        Ok(out)
    }

    /// Copies the blob named `digest` into `out` (at most `limit` bytes plus one, so an
    /// oversized blob fails its digest check); returns the digest of what was actually copied.
    pub fn copy_blob(
        &self,
        digest: &Digest,
        out: &mut File,
        limit: u64,
    ) -> Result<Digest, SourceError> {
        let relative = format!("blobs/sha256/{}", digest.hex());
        match self {
            Source::Dir(dir) => {
                let path = dir.join(&relative);
                let io_err = |source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                };
                let file = File::open(&path).map_err(io_err)?;
                let (actual, _) =
                    copy_hashing(&mut file.take(limit.saturating_add(1)), out).map_err(io_err)?;
                Ok(actual)
            }
            Source::Http { base, client } => {
                let url = format!("{base}/{relative}");
                let mut hashing = HashingWriter::new(out);
                client.get(&url, &mut hashing, limit.saturating_add(1))?;
                Ok(hashing.finish())
            }
        }
    }

    fn copy_file(&self, relative: &str, out: &mut Vec<u8>, limit: u64) -> Result<(), SourceError> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(relative);
                let io_err = |source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                };
                File::open(&path)
                    .map_err(io_err)?
                    .take(limit)
                    .read_to_end(out)
                    .map_err(io_err)?;
                Ok(())
            }
            Source::Http { base, client } => {
                client.get(&format!("{base}/{relative}"), out, limit)?;
                Ok(())
            }
        }
    }
}

/// Reads the detached signature at `location` (a path or URL, HTTPS trusted as for
/// [`Source::open`]); `None` when it does not exist.
pub fn read_signature(
    location: &str,
    ca_files: &[PathBuf],
) -> Result<Option<Vec<u8>>, SourceError> {
    let mut out = Vec::new();
    if is_url(location) {
        return match HttpClient::new(ca_files)?.get(location, &mut out, MAX_SIGNATURE) {
            Ok(_) => Ok(Some(out)),
            Err(HttpError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let io_err = |source| SourceError::Io {
        path: location.to_owned(),
        source,
    };
    match File::open(location) {
        Ok(file) => {
            file.take(MAX_SIGNATURE)
                .read_to_end(&mut out)
                .map_err(io_err)?;
            Ok(Some(out))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

/// The default signature location: `<SOURCE>.asc`, without a trailing `/` on SOURCE.
pub fn default_signature_location(source: &str) -> String {
    format!("{}.asc", source.trim_end_matches('/'))
}

fn is_archive_name(url: &str) -> bool {
    [".tar", ".tar.gz", ".tgz"]
        .iter()
        .any(|ext| url.ends_with(ext))
}

/// Unpacks only `index.json`, `oci-layout` and `blobs/sha256/<hex>` from the archive; the
/// destination names are rebuilt from validated parts, so archive paths cannot escape.
fn unpack_archive(source: &str, archive: &Path, dest: &Path) -> Result<Source, SourceError> {
    let io_err = |path: &Path, source: io::Error| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    fs::create_dir_all(dest.join("blobs/sha256")).map_err(|e| io_err(dest, e))?;
    let mut tar = tar::Archive::new(open_maybe_gzip(archive).map_err(|e| io_err(archive, e))?);
    for entry in tar.entries().map_err(|e| io_err(archive, e))? {
        let mut entry = entry.map_err(|e| io_err(archive, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| io_err(archive, e))?.into_owned();
        let Some(relative) = layout_file(&path) else {
            continue;
        };
        let target = dest.join(relative);
        let mut file = create(&target)?;
        io::copy(&mut entry, &mut file).map_err(|e| io_err(&target, e))?;
    }
    if !dest.join("index.json").is_file() {
        return Err(SourceError::NotAnArchive(source.to_owned()));
    }
    Ok(Source::Dir(dest.to_owned()))
}

fn layout_file(path: &Path) -> Option<String> {
    let parts: Vec<&str> = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        ["index.json"] | ["oci-layout"] => Some(parts[0].to_owned()),
        ["blobs", "sha256", hex] => Digest::parse(&format!("sha256:{hex}"))
            .ok()
            .map(|d| format!("blobs/sha256/{}", d.hex())),
        _ => None,
    }
}

fn create(path: &Path) -> Result<File, SourceError> {
    File::create(path).map_err(|source| SourceError::Io {
        path: path.display().to_string(),
        source,
    })
}
