//! Go's `.slide` decks, read as `golang.org/x/tools/present` reads them (its package
//! documentation is the specification).
//!
//! A deck whose first line starts with `# ` is Markdown-enabled: slides start at `##`,
//! subsections at `###` and deeper, comments are `//` lines, and text is CommonMark.
//! Otherwise it is legacy present: slides start at `*`, subsections at `**`, comments are
//! `#` lines, text is legacy markup ([`legacy_style`](super::legacy_style)), indented lines
//! are preformatted and `- ` lines are bullets. In both, `: ` lines are speaker notes and
//! `.` lines are [commands](super::commands); `\.` starts a text line with a dot.
//!
//! Beyond Go: a fenced block in a Markdown-enabled deck may hold lines starting with `#`
//! or `.`, and its info string is read as in Markdown decks.

use super::blocks::{self, Snippet};
use super::commands;
use super::deck::{CodeBlock, CodeLine, Deck, Element, Slide};
use super::error::DeckError;
use super::fenced::Fence;
use super::header;
use super::html::escape;
use super::legacy_style::style;
use super::origin::Origin;
use super::speaker_note;

/// Parses a `.slide` deck's text. A slide that cannot be read becomes a slide showing its
/// error (its lines skipped up to the next slide's heading), and the error is returned
/// beside the deck; an error in the title block or between slides fails the whole deck.
pub(super) fn parse(text: &str, origin: &Origin) -> Result<(Deck, Vec<DeckError>), DeckError> {
    let lines: Vec<&str> = text.lines().collect();
    let syntax = Syntax {
        markdown: lines
            .iter()
            .find(|line| !line.is_empty())
            .is_some_and(|line| line.starts_with("# ")),
    };
    let first_slide = lines
        .iter()
        .position(|line| line.starts_with(syntax.slide_prefix()))
        .unwrap_or(lines.len());
    let mut notes = Vec::new();
    let mut title_lines = Vec::new();
    for (line, number) in lines[..first_slide].iter().zip(1..) {
        if let Some(note) = speaker_note(line) {
            notes.push(note.to_owned());
        } else if !syntax.is_comment(line) {
            title_lines.push((number, *line));
        }
    }
    let title = header::parse(&title_lines, origin)?;
    let mut reader = Reader {
        lines: &lines,
        next: first_slide,
        syntax,
        origin,
    };
    let mut problems = Vec::new();
    let slides = reader.slides(&mut problems)?;
    let deck = Deck {
        title: title.title,
        subtitle: title.subtitle,
        date: title.date,
        tags: title.tags,
        lab: title.lab,
        authors: title.authors,
        notes,
        slides,
    };
    Ok((deck, problems))
}

/// Which of the two `.slide` syntaxes a deck uses.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    markdown: bool,
}

impl Syntax {
    fn slide_prefix(self) -> &'static str {
        if self.markdown {
            "##"
        } else {
            "*"
        }
    }

    fn is_comment(self, line: &str) -> bool {
        line.starts_with(if self.markdown { "//" } else { "#" })
    }

    /// A heading of any level: the marker repeated, then a space or the end.
    fn is_heading(self, line: &str) -> bool {
        let marker = if self.markdown { '#' } else { '*' };
        let rest = line.trim_start_matches(marker);
        rest.len() < line.len() && (rest.is_empty() || rest.starts_with(' '))
    }

    /// The HTML level of a heading written with `prefix` (`**` and `###` are 3).
    fn level(self, prefix: &str) -> u8 {
        let level = if self.markdown {
            prefix.len()
        } else {
            prefix.len() + 1
        };
        u8::try_from(level.min(6)).unwrap_or(6)
    }

    /// The title and anchor of a heading line `{#anchor}` (Markdown-enabled decks only).
    fn title_and_anchor(self, title: &str) -> (String, Option<String>) {
        if self.markdown {
            if let Some((text, anchor)) = title.strip_suffix('}').and_then(|t| t.rsplit_once("{#"))
            {
                return (text.trim().to_owned(), Some(anchor.to_owned()));
            }
        }
        (title.to_owned(), None)
    }
}

/// The title of a heading line written exactly with `prefix`.
fn heading_title<'l>(line: &'l str, prefix: &str) -> Option<&'l str> {
    let rest = line.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix(' ').map(str::trim)
}

/// `\.` at the start of a line is a literal dot.
fn unescape_dot(line: &str) -> &str {
    line.strip_prefix('\\')
        .filter(|rest| rest.starts_with('.'))
        .unwrap_or(line)
}

/// The deck's lines after the title block, read front to back.
struct Reader<'a> {
    lines: &'a [&'a str],
    /// Index of the next line to read (its number is one more).
    next: usize,
    syntax: Syntax,
    origin: &'a Origin,
}

impl<'a> Reader<'a> {
    /// The next line's number and text.
    fn peek(&self) -> Option<(usize, &'a str)> {
        self.lines.get(self.next).map(|line| (self.next + 1, *line))
    }

    fn skip_blank_and_comments(&mut self) {
        while self
            .peek()
            .is_some_and(|(_, line)| line.trim().is_empty() || self.syntax.is_comment(line))
        {
            self.next += 1;
        }
    }

    fn slides(&mut self, problems: &mut Vec<DeckError>) -> Result<Vec<Slide>, DeckError> {
        let prefix = self.syntax.slide_prefix();
        let mut slides = Vec::new();
        loop {
            self.skip_blank_and_comments();
            let Some((number, line)) = self.peek() else {
                return Ok(slides);
            };
            let Some(title) = heading_title(line, prefix) else {
                return Err(self.unexpected(
                    number,
                    line,
                    format!("a `{prefix} Title` line starting a slide"),
                ));
            };
            self.next += 1;
            let (title, anchor) = self.syntax.title_and_anchor(title);
            let mut slide = Slide {
                number: slides.len() + 1,
                title,
                anchor,
                file: self.origin.file(),
                line: number,
                body: Vec::new(),
                notes: Vec::new(),
                background: None,
            };
            if let Err(problem) = self.section(prefix, &mut slide) {
                slide.body = vec![Element::Problem(problem.to_string())];
                slide.notes.clear();
                slide.background = None;
                problems.push(problem);
                self.skip_to_next_slide(prefix);
            }
            slides.push(slide);
        }
    }

    /// Moves past the lines of a slide that could not be read, to the next slide heading.
    fn skip_to_next_slide(&mut self, prefix: &str) {
        while let Some((_, line)) = self.peek() {
            if heading_title(line, prefix).is_some() {
                return;
            }
            self.next += 1;
        }
    }

    /// The content of a section written with `prefix` (its heading read), up to the next
    /// heading of the same or a higher level; subsections are flattened into the slide.
    fn section(&mut self, prefix: &str, slide: &mut Slide) -> Result<(), DeckError> {
        let deeper = format!("{prefix}{}", &prefix[..1]);
        loop {
            self.skip_blank_and_comments();
            let Some((number, line)) = self.peek() else {
                return Ok(());
            };
            if self.syntax.is_heading(line) && !line.starts_with(&deeper) {
                return Ok(());
            }
            if let Some(title) = heading_title(line, &deeper) {
                self.next += 1;
                let (text, anchor) = self.syntax.title_and_anchor(title);
                slide.body.push(Element::Heading {
                    level: self.syntax.level(&deeper),
                    html: escape(&text),
                    text,
                    anchor,
                });
                self.section(&deeper, slide)?;
            } else if line.starts_with(&deeper) {
                return Err(self.unexpected(
                    number,
                    line,
                    format!("`{deeper} Title` for a subsection of a `{prefix}` section"),
                ));
            } else if let Some(note) = speaker_note(line) {
                self.next += 1;
                slide.notes.push(note.to_owned());
            } else if line.starts_with('.') {
                self.next += 1;
                commands::apply(line, number, self.origin, slide)?;
            } else if self.syntax.markdown {
                slide.body.extend(self.markdown()?);
            } else if line.starts_with(char::is_whitespace) {
                slide.body.push(self.preformatted(number, line));
            } else if line.starts_with("- ") {
                slide.body.push(self.list());
            } else {
                slide.body.push(self.paragraph());
            }
        }
    }

    /// Lines of CommonMark up to a command, a heading or a note outside fenced blocks.
    fn markdown(&mut self) -> Result<Vec<Element>, DeckError> {
        let mut snippet = Snippet::default();
        let mut fence: Option<(Fence, usize)> = None;
        let mut first = true;
        while let Some((number, line)) = self.peek() {
            if let Some((open, _)) = &fence {
                if open.closes(line) {
                    fence = None;
                }
            } else if !first && self.syntax.is_comment(line) {
                self.next += 1;
                continue;
            } else if !first
                && (line.starts_with('.')
                    || self.syntax.is_heading(line)
                    || speaker_note(line).is_some())
            {
                break;
            } else if let Some(open) = Fence::open(line) {
                fence = Some((open, number));
            }
            first = false;
            snippet.push(number, unescape_dot(line));
            self.next += 1;
        }
        if let Some((open, line)) = fence {
            return Err(DeckError::UnterminatedFence {
                file: self.origin.file(),
                line,
                fence: open.text(),
            });
        }
        blocks::elements(&snippet, self.origin)
    }

    /// Indented lines (and blank ones between them), less the first line's indentation.
    fn preformatted(&mut self, number: usize, first: &str) -> Element {
        let indent = &first[..first.len() - first.trim_start().len()];
        let mut text = Vec::new();
        while let Some((_, line)) = self.peek() {
            if !self.syntax.is_comment(line) {
                if let Some(rest) = line.strip_prefix(indent) {
                    text.push(rest);
                } else if line.trim().is_empty() {
                    text.push("");
                } else {
                    break;
                }
            }
            self.next += 1;
        }
        while text.last().is_some_and(|line| line.trim().is_empty()) {
            text.pop();
        }
        Element::Code(CodeBlock {
            language: String::new(),
            lines: text
                .into_iter()
                .zip(1..)
                .map(|(text, number)| CodeLine {
                    text: text.to_owned(),
                    number,
                    highlighted: false,
                })
                .collect(),
            numbers: false,
            editable: false,
            stop_on_leave: false,
            run: None,
            line: number,
        })
    }

    /// `- ` bullets, each continued by lines that start with a space.
    fn list(&mut self) -> Element {
        let mut items: Vec<String> = Vec::new();
        while let Some((_, line)) = self.peek() {
            if !self.syntax.is_comment(line) {
                let continued = line.starts_with(' ') && !line.trim().is_empty();
                if let Some(item) = line.strip_prefix("- ") {
                    items.push(item.to_owned());
                } else if let Some(last) = items.last_mut().filter(|_| continued) {
                    last.push('\n');
                    last.push_str(line.trim());
                } else {
                    break;
                }
            }
            self.next += 1;
        }
        Element::List {
            start: None,
            items: items.iter().map(|item| style(item)).collect(),
        }
    }

    /// Text lines up to a blank line, a command, a note or a heading.
    fn paragraph(&mut self) -> Element {
        let mut lines = Vec::new();
        while let Some((_, line)) = self.peek() {
            let ends = line.trim().is_empty()
                || line.starts_with('.')
                || speaker_note(line).is_some()
                || self.syntax.is_heading(line);
            if ends && !lines.is_empty() {
                break;
            }
            if !self.syntax.is_comment(line) {
                lines.push(style(unescape_dot(line)));
            }
            self.next += 1;
        }
        Element::Paragraph {
            html: lines.join("\n"),
        }
    }

    fn unexpected(&self, number: usize, line: &str, expected: String) -> DeckError {
        DeckError::UnexpectedLine {
            file: self.origin.file(),
            line: number,
            text: line.to_owned(),
            expected,
        }
    }
}
