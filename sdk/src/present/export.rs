//! `sinew present --export DIR`: the deck as a static page that opens with no server
//! (`DIR/index.html`, the deck's pictures beside it at the same relative URLs), showing
//! each block's output from its last run under `sinew present`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::deck::Deck;
use super::files::Files;
use super::page::{self, PageError, PageOptions};
use super::run::RunEvent;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Rendering the page failed.
    #[error(transparent)]
    Page(#[from] PageError),
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes `deck` (read from `file`) to `dir`, with `captured` output in its blocks; returns
/// the page's path.
pub fn write(
    deck: &Deck,
    file: &Path,
    captured: &HashMap<String, Vec<RunEvent>>,
    dir: &Path,
) -> Result<PathBuf, ExportError> {
    let files = Files::of(deck, file);
    let options = PageOptions {
        live: false,
        edit_all: false,
        token: None,
        captured: Some(captured),
    };
    let html = page::render(deck, &files, &options)?;
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(failed(dir))?;
    for (url, source) in files.all(deck) {
        let Some(name) = super::files::url_decode(&url) else {
            continue;
        };
        let target = dir.join(name);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(failed(parent))?;
        }
        fs::copy(&source, &target).map_err(failed(&target))?;
    }
    let index = dir.join("index.html");
    fs::write(&index, html).map_err(failed(&index))?;
    Ok(index)
}
