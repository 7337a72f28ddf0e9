//! Display sizes as decks write them: `.slide`'s `HEIGHT WIDTH` arguments and Markdown's
//! `=WIDTHxHEIGHT` image title, `_` keeping the aspect ratio.

use super::deck::Size;

/// What a `.slide` size looks like.
pub(super) const SLIDE_SYNTAX: &str =
    "a height and a width in pixels, `_` for either to keep the aspect ratio";
/// What a Markdown size looks like.
pub(super) const MARKDOWN_SYNTAX: &str =
    "an image title `=WIDTHxHEIGHT` in pixels, `_` for either to keep the aspect ratio";

/// `.slide`'s height and width tokens.
pub(super) fn from_slide(height: &str, width: &str) -> Option<Size> {
    Some(Size {
        width: pixels(width)?,
        height: pixels(height)?,
    })
}

/// Markdown's `WIDTHxHEIGHT` (after the `=`).
pub(super) fn from_markdown(size: &str) -> Option<Size> {
    let (width, height) = size.split_once('x')?;
    Some(Size {
        width: pixels(width)?,
        height: pixels(height)?,
    })
}

/// A number of pixels, or `_` for none; `None` when it is neither.
fn pixels(token: &str) -> Option<Option<u32>> {
    if token == "_" {
        return Some(None);
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok().map(Some)
}
