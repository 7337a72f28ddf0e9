//! Markdown (CommonMark with tables, strikethrough, task lists and `{#id}` heading
//! attributes) as slide elements: headings, paragraphs and lists keep their inline content
//! as HTML; a paragraph holding only an image is an [`Image`]; code blocks are read by
//! [`fenced`](super::fenced); anything else (quotes, tables, raw HTML) stays HTML.

use pulldown_cmark::{html, CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::deck::{Element, Image, Size};
use super::error::DeckError;
use super::fenced;
use super::origin::Origin;
use super::size;

/// Markdown lines gathered from a deck, each remembering its line in the deck file.
#[derive(Debug, Default)]
pub(super) struct Snippet {
    text: String,
    numbers: Vec<usize>,
}

impl Snippet {
    /// Appends deck line `number`.
    pub(super) fn push(&mut self, number: usize, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.numbers.push(number);
    }

    /// Whether there is nothing but whitespace.
    pub(super) fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// The deck line holding byte `offset` of the text.
    fn line_at(&self, offset: usize) -> usize {
        let index = self
            .text
            .get(..offset)
            .map_or(0, |before| before.matches('\n').count());
        self.numbers
            .get(index)
            .or(self.numbers.last())
            .copied()
            .unwrap_or(0)
    }
}

/// The snippet's top-level blocks as elements.
pub(super) fn elements(snippet: &Snippet, origin: &Origin) -> Result<Vec<Element>, DeckError> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut elements = Vec::new();
    let mut block = Vec::new();
    let mut depth = 0usize;
    let mut line = 0;
    for (event, range) in Parser::new_ext(&snippet.text, options).into_offset_iter() {
        if depth == 0 {
            line = snippet.line_at(range.start);
        }
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        block.push(event);
        if depth == 0 {
            elements.push(element(&std::mem::take(&mut block), line, origin)?);
        }
    }
    Ok(elements)
}

/// One top-level block as an element.
fn element(block: &[Event], line: usize, origin: &Origin) -> Result<Element, DeckError> {
    let inner = block
        .get(1..block.len().saturating_sub(1))
        .unwrap_or_default();
    Ok(match block.first() {
        Some(Event::Start(Tag::Heading { level, id, .. })) => Element::Heading {
            level: heading_level(*level),
            text: plain_text(inner).trim().to_owned(),
            html: to_html(inner),
            anchor: id.as_ref().map(ToString::to_string),
        },
        Some(Event::Start(Tag::Paragraph)) => match lone_image(inner, line, origin)? {
            Some(image) => Element::Image(image),
            None => Element::Paragraph {
                html: to_html(inner),
            },
        },
        Some(Event::Start(Tag::List(start))) => Element::List {
            start: *start,
            items: list_items(inner),
        },
        Some(Event::Start(Tag::CodeBlock(kind))) => {
            let info = match kind {
                CodeBlockKind::Fenced(info) => &**info,
                CodeBlockKind::Indented => "",
            };
            Element::Code(fenced::code_block(info, &plain_text(inner), line, origin)?)
        }
        _ => Element::Html(to_html(block)),
    })
}

/// The image a paragraph holds when it holds nothing else.
fn lone_image(inner: &[Event], line: usize, origin: &Origin) -> Result<Option<Image>, DeckError> {
    let images = inner
        .iter()
        .filter(|e| matches!(e, Event::Start(Tag::Image { .. })))
        .count();
    let (
        Some(Event::Start(Tag::Image {
            dest_url, title, ..
        })),
        Some(Event::End(TagEnd::Image)),
    ) = (inner.first(), inner.last())
    else {
        return Ok(None);
    };
    if images != 1 {
        return Ok(None);
    }
    let size = match title.strip_prefix('=') {
        Some(written) => size::from_markdown(written).ok_or_else(|| DeckError::BadImageSize {
            file: origin.file(),
            line,
            size: title.to_string(),
            expected: size::MARKDOWN_SYNTAX,
        })?,
        None => Size::default(),
    };
    Ok(Some(Image {
        src: origin.asset(dest_url, line)?,
        alt: plain_text(inner),
        size,
    }))
}

/// Each item's content as HTML.
fn list_items(inner: &[Event]) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut item = Vec::new();
    for event in inner {
        match event {
            Event::Start(Tag::Item) if depth == 0 => {
                depth = 1;
                continue;
            }
            Event::End(TagEnd::Item) if depth == 1 => {
                items.push(to_html(&std::mem::take(&mut item)));
                depth = 0;
                continue;
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        item.push(event.clone());
    }
    items
}

fn to_html(events: &[Event]) -> String {
    let mut out = String::new();
    html::push_html(&mut out, events.iter().cloned());
    out
}

/// The text and inline code of `events`, without markup.
fn plain_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text(text) | Event::Code(text) => Some(&**text),
            Event::SoftBreak | Event::HardBreak => Some(" "),
            _ => None,
        })
        .collect()
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}
