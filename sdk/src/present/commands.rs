//! `.slide`'s `.` commands: `.code` and `.play` (a file, or the part an address selects),
//! `.image`, `.video`, `.iframe`, `.background`, `.caption`, `.link` and `.html`. Files are
//! relative to the deck.

use std::path::Path;

use super::address;
use super::deck::{CodeBlock, Element, Iframe, Image, Link, Runnable, Size, Slide, Video};
use super::error::DeckError;
use super::excerpt;
use super::legacy_style::style;
use super::origin::Origin;
use super::size;

const CODE: &str = "`.code [-edit] [-numbers] FILE [ADDRESS] [HLword]` (`.play` alike)";
const IMAGE: &str = "`.image FILE [HEIGHT WIDTH]`";
const VIDEO: &str = "`.video FILE TYPE [HEIGHT WIDTH]`";
const IFRAME: &str = "`.iframe URL [HEIGHT WIDTH]`";
const BACKGROUND: &str = "`.background FILE`";
const LINK: &str = "`.link URL [LABEL]`";
const HTML: &str = "`.html FILE`";

/// Applies the command `line` (deck line `number`) to `slide`.
pub(super) fn apply(
    line: &str,
    number: usize,
    origin: &Origin,
    slide: &mut Slide,
) -> Result<(), DeckError> {
    let command = Command {
        line: line.trim(),
        number,
        origin,
    };
    let words: Vec<&str> = command.line.split_whitespace().collect();
    let element = match words.as_slice() {
        [".code", ..] => command.code(false)?,
        [".play", ..] => command.code(true)?,
        [".image", file, size @ ..] => Element::Image(Image {
            src: origin.asset(file, number)?,
            alt: String::new(),
            size: command.size(size, IMAGE)?,
        }),
        [".video", file, mime, size @ ..] => Element::Video(Video {
            src: origin.asset(file, number)?,
            mime: (*mime).to_owned(),
            size: command.size(size, VIDEO)?,
        }),
        [".iframe", url, size @ ..] => Element::Iframe(Iframe {
            url: (*url).to_owned(),
            size: command.size(size, IFRAME)?,
        }),
        [".background", file] => {
            slide.background = Some(origin.asset(file, number)?);
            return Ok(());
        }
        [".caption", ..] => Element::Caption {
            html: style(
                command
                    .line
                    .strip_prefix(".caption")
                    .unwrap_or_default()
                    .trim(),
            ),
        },
        [".link", url, label @ ..] => Element::Link(Link {
            url: (*url).to_owned(),
            label: if label.is_empty() {
                without_scheme(url).to_owned()
            } else {
                label.join(" ")
            },
        }),
        [".html", file] => Element::Html(origin.read(file, number)?.1),
        [name @ (".image" | ".video" | ".iframe"), ..] => {
            return Err(command.bad(match *name {
                ".image" => IMAGE,
                ".video" => VIDEO,
                _ => IFRAME,
            }))
        }
        [".background", ..] => return Err(command.bad(BACKGROUND)),
        [".link", ..] => return Err(command.bad(LINK)),
        [".html", ..] => return Err(command.bad(HTML)),
        _ => {
            return Err(DeckError::UnknownCommand {
                file: origin.file(),
                line: number,
                command: words.first().copied().unwrap_or(".").to_owned(),
            })
        }
    };
    slide.body.push(element);
    Ok(())
}

/// A link's default label: the URL without `scheme://` or `mailto:`.
fn without_scheme(url: &str) -> &str {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .or_else(|| url.strip_prefix("mailto:"))
        .unwrap_or(url)
}

/// The highlighting language of a file, by extension.
fn language(path: &Path) -> String {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match extension {
        "rs" => "rust",
        "py" => "python",
        "js" => "javascript",
        "ts" => "typescript",
        other => other,
    }
    .to_owned()
}

/// One command line being read.
struct Command<'a> {
    line: &'a str,
    number: usize,
    origin: &'a Origin,
}

impl Command<'_> {
    /// `.code` or (`play`) `.play`: flags, the file, an address, a highlight word.
    fn code(&self, play: bool) -> Result<Element, DeckError> {
        let (rest, highlight) = self.highlight()?;
        let mut rest = rest
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r)
            .trim();
        let (mut editable, mut numbers) = (false, false);
        let file = loop {
            let (word, after) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(word, after)| (word, after.trim_start()));
            rest = after;
            match word {
                "-edit" => editable = true,
                "-numbers" => numbers = true,
                "" => return Err(self.bad(CODE)),
                flag if flag.starts_with('-') => return Err(self.bad(CODE)),
                file => break file,
            }
        };
        let (path, text) = self.origin.read(file, self.number)?;
        let address = rest.trim();
        let range = address::select(address, &text).map_err(|source| DeckError::Address {
            file: self.origin.file(),
            line: self.number,
            address: address.to_owned(),
            code_file: path.clone(),
            source,
        })?;
        let excerpt = excerpt::cut(&text, range, highlight);
        Ok(Element::Code(CodeBlock {
            language: language(&path),
            lines: excerpt.lines,
            numbers,
            editable,
            stop_on_leave: false,
            run: play.then_some(Runnable::Go {
                before: excerpt.before,
                after: excerpt.after,
            }),
            line: self.number,
        }))
    }

    /// The line without a trailing ` HLword`, and the word.
    fn highlight(&self) -> Result<(&str, &str), DeckError> {
        let Some((rest, last)) = self.line.rsplit_once(char::is_whitespace) else {
            return Ok((self.line, ""));
        };
        let Some(word) = last.strip_prefix("HL") else {
            return Ok((self.line, ""));
        };
        if word.is_empty() {
            return Err(self.bad(CODE));
        }
        if word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok((rest.trim_end(), word))
        } else {
            Ok((self.line, ""))
        }
    }

    /// No size, or a height and a width.
    fn size(&self, words: &[&str], syntax: &'static str) -> Result<Size, DeckError> {
        match words {
            [] => Ok(Size::default()),
            [height, width] => {
                size::from_slide(height, width).ok_or_else(|| DeckError::BadImageSize {
                    file: self.origin.file(),
                    line: self.number,
                    size: format!("{height} {width}"),
                    expected: size::SLIDE_SYNTAX,
                })
            }
            _ => Err(self.bad(syntax)),
        }
    }

    fn bad(&self, expected: &'static str) -> DeckError {
        DeckError::BadCommand {
            file: self.origin.file(),
            line: self.number,
            text: self.line.to_owned(),
            expected,
        }
    }
}
