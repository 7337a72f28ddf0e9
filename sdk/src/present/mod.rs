//! Slide decks whose code runs live: `sinew present talk.md` serves them, as Go's `present`
//! serves `.slide` files. This module reads a deck into a typed [`Deck`], renders it, serves
//! it and runs its blocks.
//!
//! Two formats:
//!
//! - Markdown (any extension but `.slide`): slides separated by `---`, a title slide
//!   written as Go's title block, `: ` speaker notes, pictures next to the deck, and fenced
//!   code blocks whose info string says what Run does (module `markdown` and `fenced`):
//!
//!   ````markdown
//!   # Two architectures
//!   A sinew talk
//!   3 Dec 2026
//!
//!   Ada Lovelace
//!   ada@example.com
//!
//!   ---
//!
//!   ## Boot both
//!
//!   ```playbook name=two-arch
//!   ```
//!
//!   ```sh guest=amd editable
//!   uname -m
//!   ```
//!
//!   : Say why aarch64 is slower here.
//!   ````
//!
//! - Go's `.slide`, legacy and Markdown-enabled, as `golang.org/x/tools/present` reads it
//!   (module `go_slide`): `*`/`##` slides, `.code`/`.play` with sam addresses, `OMIT` and
//!   `HL` (modules `address`, `excerpt`), `.image`, `.video`, `.iframe`, `.background`,
//!   `.caption`, `.link`, `.html`. `.play` runs Go.
//!
//! [`serve`] serves a deck and runs its blocks ([`run`]); [`export`] writes it as a static
//! page; [`page`] renders it.
//!
//! Files a deck names are relative to the deck; a missing one is an error when the deck is
//! read, as is anything malformed: every [`DeckError`] names the deck, the line and what
//! was expected. Parsing never panics.

use std::path::Path;

mod address;
mod blocks;
mod commands;
mod deck;
mod error;
mod excerpt;
pub mod export;
mod fenced;
mod files;
mod go_slide;
mod header;
mod html;
mod legacy_style;
mod markdown;
mod origin;
pub mod page;
pub mod run;
pub mod serve;
mod size;
#[cfg(test)]
mod tests;

pub use address::AddressError;
pub use deck::{
    Asset, Author, AuthorLine, CodeBlock, CodeLine, Deck, Element, Iframe, Image, LabMachine, Link,
    Runnable, Size, Slide, Video,
};
pub use error::DeckError;
pub use files::Files;
pub use html::block_id;

use origin::Origin;

/// Reads the deck at `path`: Go's format if it ends in `.slide`, else Markdown. The first
/// problem anywhere in the deck is the error.
pub fn read(path: &Path) -> Result<Deck, DeckError> {
    let text = read_text(path)?;
    if is_slide(path) {
        parse_slide(&text, path)
    } else {
        parse_markdown(&text, path)
    }
}

/// Reads the deck at `path` as [`read`] does, except that a slide that cannot be read
/// shows its error in its place, so that a presenter's server keeps serving the
/// other slides; the errors come beside the deck.
pub fn read_tolerant(path: &Path) -> Result<(Deck, Vec<DeckError>), DeckError> {
    let text = read_text(path)?;
    if is_slide(path) {
        go_slide::parse(&text, &Origin::new(path))
    } else {
        markdown::parse(&text, &Origin::new(path))
    }
}

fn read_text(path: &Path) -> Result<String, DeckError> {
    std::fs::read_to_string(path).map_err(|source| DeckError::Read {
        file: path.to_path_buf(),
        source,
    })
}

fn is_slide(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "slide")
}

/// Parses a Markdown deck; `file` is where it lives, for errors and relative paths.
pub fn parse_markdown(text: &str, file: &Path) -> Result<Deck, DeckError> {
    let (deck, problems) = markdown::parse(text, &Origin::new(file))?;
    match problems.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(deck),
    }
}

/// Parses a Go `.slide` deck; `file` is where it lives, for errors and relative paths.
pub fn parse_slide(text: &str, file: &Path) -> Result<Deck, DeckError> {
    let (deck, problems) = go_slide::parse(text, &Origin::new(file))?;
    match problems.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(deck),
    }
}

/// The text of a `: ` speaker note line (both formats).
fn speaker_note(line: &str) -> Option<&str> {
    if line == ":" {
        Some("")
    } else {
        line.strip_prefix(": ")
    }
}
