//! Markdown decks: CommonMark slides separated by `---` lines.
//!
//! - A `---` line outside a fenced code block ends a slide (so a setext `---` underline
//!   is a slide break too: write `##` headings).
//! - If the first slide starts with a `# ` line, it is the title slide, written as Go's
//!   title block: `# Title`, then subtitle, date and `Tags:` lines, a blank line, and author
//!   blocks separated by blank lines. Otherwise the deck's title is the first slide's.
//! - A slide's title is its first block when that is a heading (of any level).
//! - Lines starting with `: ` outside code blocks are speaker notes.
//! - A paragraph holding only an image is a picture: its path is relative to the deck,
//!   and an image title `=WIDTHxHEIGHT` sizes it (`_` keeps the aspect ratio), as in
//!   `![gopher](gopher.png "=300x_")`.
//! - A fenced code block's info string says what Run does (module `fenced`): for instance
//!   `rust playbook editable`, `playbook name=two-arch`, `sh guest=amd`.

use super::blocks::{self, Snippet};
use super::deck::{CodeBlock, Deck, Element, LabMachine, Runnable, Slide};
use super::error::DeckError;
use super::fenced::Fence;
use super::header;
use super::origin::Origin;

/// Parses a Markdown deck's text. A slide that cannot be read becomes a slide showing its
/// error, and the error is returned beside the deck; an error that leaves no slide
/// boundary to trust (an unclosed fence, a bad title block) fails the whole deck.
pub(super) fn parse(text: &str, origin: &Origin) -> Result<(Deck, Vec<DeckError>), DeckError> {
    let mut chunks = split(text, origin)?
        .into_iter()
        .filter(|chunk| !chunk.is_blank())
        .peekable();
    let mut deck = Deck::default();
    if let Some(first) = chunks.next_if(Chunk::is_title_block) {
        let title = header::parse(&first.lines, origin)?;
        deck.title = title.title;
        deck.subtitle = title.subtitle;
        deck.date = title.date;
        deck.tags = title.tags;
        deck.lab = title.lab;
        deck.authors = title.authors;
        deck.notes = first.notes;
    }
    let mut problems = Vec::new();
    for chunk in chunks {
        let number = deck.slides.len() + 1;
        let line = chunk.first_line();
        let slide = chunk
            .slide(number, origin)
            .and_then(|slide| guests_known(slide, &deck.lab, origin));
        match slide {
            Ok(slide) => deck.slides.push(slide),
            Err(problem) => {
                deck.slides.push(Slide {
                    number,
                    title: String::new(),
                    anchor: None,
                    file: origin.file(),
                    line,
                    body: vec![Element::Problem(problem.to_string())],
                    notes: Vec::new(),
                    background: None,
                });
                problems.push(problem);
            }
        }
    }
    if deck.title.is_empty() {
        deck.title = deck
            .slides
            .first()
            .map(|s| s.title.clone())
            .unwrap_or_default();
    }
    Ok((deck, problems))
}

/// `slide`, if each of its `guest=` blocks names a machine of `lab`.
fn guests_known(slide: Slide, lab: &[LabMachine], origin: &Origin) -> Result<Slide, DeckError> {
    for block in slide.code_blocks() {
        if let CodeBlock {
            run: Some(Runnable::Guest { guest, .. }),
            line,
            ..
        } = block
        {
            if !lab.iter().any(|m| m.name == *guest) {
                let names: Vec<&str> = lab.iter().map(|m| m.name.as_str()).collect();
                return Err(DeckError::UnknownGuest {
                    file: origin.file(),
                    line: *line,
                    guest: guest.clone(),
                    known: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
    }
    Ok(slide)
}

/// The lines of one slide, speaker notes apart.
#[derive(Debug, Default)]
struct Chunk<'t> {
    lines: Vec<(usize, &'t str)>,
    notes: Vec<String>,
}

impl Chunk<'_> {
    fn is_blank(&self) -> bool {
        self.notes.is_empty() && self.lines.iter().all(|(_, line)| line.trim().is_empty())
    }

    fn is_title_block(&self) -> bool {
        self.lines
            .iter()
            .find(|(_, line)| !line.trim().is_empty())
            .is_some_and(|(_, line)| line.starts_with("# "))
    }

    /// The slide's first line that is not blank.
    fn first_line(&self) -> usize {
        self.lines
            .iter()
            .find(|(_, text)| !text.trim().is_empty())
            .or(self.lines.first())
            .map_or(1, |(line, _)| *line)
    }

    fn slide(self, number: usize, origin: &Origin) -> Result<Slide, DeckError> {
        let mut snippet = Snippet::default();
        for &(line, text) in &self.lines {
            snippet.push(line, text);
        }
        let mut body = if snippet.is_blank() {
            Vec::new()
        } else {
            blocks::elements(&snippet, origin)?
        };
        let (title, anchor) = match body.first() {
            Some(Element::Heading { text, anchor, .. }) => {
                let title = (text.clone(), anchor.clone());
                body.remove(0);
                title
            }
            _ => (String::new(), None),
        };
        let line = self.first_line();
        Ok(Slide {
            number,
            title,
            anchor,
            file: origin.file(),
            line,
            body,
            notes: self.notes,
            background: None,
        })
    }
}

/// The deck's slides, split at `---` lines outside fenced code blocks.
fn split<'t>(text: &'t str, origin: &Origin) -> Result<Vec<Chunk<'t>>, DeckError> {
    let mut chunks = vec![Chunk::default()];
    let mut fence: Option<(Fence, usize)> = None;
    for (line, number) in text.lines().zip(1..) {
        let Some(chunk) = chunks.last_mut() else {
            break;
        };
        if let Some((open, _)) = &fence {
            if open.closes(line) {
                fence = None;
            }
            chunk.lines.push((number, line));
        } else if line.trim_end() == "---" {
            chunks.push(Chunk::default());
        } else if let Some(note) = super::speaker_note(line) {
            chunk.notes.push(note.to_owned());
        } else {
            fence = Fence::open(line).map(|open| (open, number));
            chunk.lines.push((number, line));
        }
    }
    if let Some((open, line)) = fence {
        return Err(DeckError::UnterminatedFence {
            file: origin.file(),
            line,
            fence: open.text(),
        });
    }
    Ok(chunks)
}
