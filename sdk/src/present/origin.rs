//! Where a deck comes from: its file, for errors, and its directory, which the files it
//! names are relative to.

use std::path::{Path, PathBuf};

use super::deck::Asset;
use super::error::DeckError;

/// The deck file being parsed.
#[derive(Debug)]
pub(super) struct Origin {
    file: PathBuf,
    dir: PathBuf,
}

impl Origin {
    pub(super) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// The deck file, for an error.
    pub(super) fn file(&self) -> PathBuf {
        self.file.clone()
    }

    /// Reads a file the deck names at `line`.
    pub(super) fn read(&self, name: &str, line: usize) -> Result<(PathBuf, String), DeckError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(source) => Err(DeckError::MissingFile {
                file: self.file(),
                line,
                path,
                source,
            }),
        }
    }

    /// A picture, video or background named at `line`: an address (`scheme://`, `//host`,
    /// `data:`) as written, or a file next to the deck, which must exist.
    pub(super) fn asset(&self, name: &str, line: usize) -> Result<Asset, DeckError> {
        if name.contains("://") || name.starts_with("//") || name.starts_with("data:") {
            return Ok(Asset::Url(name.to_owned()));
        }
        let path = self.dir.join(name);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(Asset::File(path)),
            Err(source) => Err(DeckError::MissingFile {
                file: self.file(),
                line,
                path,
                source,
            }),
        }
    }
}
