//! The typed deck: what both parsers produce and what a renderer, a server and a runner read.

use std::path::PathBuf;

/// A parsed slide deck.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deck {
    /// The title block's first line.
    pub title: String,
    /// The line after the title, when it is not a date or `Tags:`.
    pub subtitle: Option<String>,
    /// The date as written (`2 Jan 2006` or `15:04 2 Jan 2006`).
    pub date: Option<String>,
    /// `Tags:` of the title block, in order.
    pub tags: Vec<String>,
    /// The guests `guest=` blocks run on (`Lab:`), booted when the first such block runs
    /// and kept across slides.
    pub lab: Vec<LabMachine>,
    /// One block per author, as in the title block.
    pub authors: Vec<Author>,
    /// Speaker notes of the title slide, one per `: ` line.
    pub notes: Vec<String>,
    /// The slides after the title slide, numbered from 1.
    pub slides: Vec<Slide>,
}

/// A guest of the deck's lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMachine {
    /// Its name, as `guest=` blocks say it.
    pub name: String,
    /// Its architecture.
    pub arch: crate::Arch,
}

/// One author block: the name first, then job, email, links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The block's lines in order.
    pub lines: Vec<AuthorLine>,
}

/// A line of an author block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorLine {
    /// Plain text: a name, a job title (the only lines shown on the title slide).
    Text(String),
    /// An email (`mailto:`), a `@handle` or a URL, labelled as written.
    Link(Link),
}

/// One slide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slide {
    /// 1 for the first slide after the title slide.
    pub number: usize,
    /// The heading that opens the slide, as plain text; empty when there is none.
    pub title: String,
    /// An anchor the title asked for (`{#name}`).
    pub anchor: Option<String>,
    /// The deck file the slide comes from.
    pub file: PathBuf,
    /// The slide's first line in `file`, from 1.
    pub line: usize,
    /// The slide's content in order.
    pub body: Vec<Element>,
    /// Speaker notes, one per `: ` line.
    pub notes: Vec<String>,
    /// A full-slide background image (`.background`).
    pub background: Option<Asset>,
}

/// A piece of slide content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A heading inside a slide (a subsection in `.slide`).
    Heading {
        /// 1 to 6, as in HTML; `.slide` subsections are level 3 and deeper.
        level: u8,
        /// The heading as plain text.
        text: String,
        /// The heading's inline content as HTML.
        html: String,
        /// An anchor the heading asked for (`{#name}`).
        anchor: Option<String>,
    },
    /// A paragraph; `html` is its inline content.
    Paragraph {
        /// Inline HTML, without the `<p>`.
        html: String,
    },
    /// A bulleted or numbered list.
    List {
        /// The first number of a numbered list; `None` for bullets.
        start: Option<u64>,
        /// Each item's content as HTML, without the `<li>`.
        items: Vec<String>,
    },
    /// A code block, maybe runnable.
    Code(CodeBlock),
    /// A picture.
    Image(Image),
    /// A video (`.video`).
    Video(Video),
    /// A link on its own line (`.link`).
    Link(Link),
    /// A figure caption (`.caption`); `html` is its inline content.
    Caption {
        /// Inline HTML.
        html: String,
    },
    /// A page inside the slide (`.iframe`).
    Iframe(Iframe),
    /// A block already in HTML: block quotes, tables, `.html` files.
    Html(String),
    /// Why the slide could not be read, shown in its place (a served deck only).
    Problem(String),
}

/// A file next to the deck or a remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asset {
    /// A local file, resolved against the deck's directory; it existed when parsed.
    File(PathBuf),
    /// An `http(s)://` or `data:` address, as written.
    Url(String),
}

/// Display size in pixels; `None` keeps the aspect ratio (`_` in `.slide`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
}

/// A picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Where the picture is.
    pub src: Asset,
    /// Alternative text (Markdown's `![alt]`; empty from `.image`).
    pub alt: String,
    /// Display size.
    pub size: Size,
}

/// A video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// Where the video is.
    pub src: Asset,
    /// Its content type, e.g. `video/mp4`.
    pub mime: String,
    /// Display size.
    pub size: Size,
}

/// A hyperlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target as written.
    pub url: String,
    /// The text shown.
    pub label: String,
}

/// An embedded page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iframe {
    /// The page's address as written.
    pub url: String,
    /// Display size.
    pub size: Size,
}

/// A code block as shown, and what its Run button does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlock {
    /// The language for highlighting: a fence's first word, or a `.code` file's extension.
    pub language: String,
    /// The lines shown, in order.
    pub lines: Vec<CodeLine>,
    /// Whether line numbers show (`numbers`, `-numbers`).
    pub numbers: bool,
    /// Whether the browser lets the text be edited before running (`editable`, `-edit`).
    pub editable: bool,
    /// Whether leaving the slide stops the block's run (`stop-on-leave`).
    pub stop_on_leave: bool,
    /// What Run does; `None` shows the code without a Run button.
    pub run: Option<Runnable>,
    /// The deck line the block comes from.
    pub line: usize,
}

/// One shown line of code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeLine {
    /// The line without its newline (and without a `// HL` mark).
    pub text: String,
    /// Its number: in the `.code` file, or from 1 in a fenced block.
    pub number: usize,
    /// Whether the line is highlighted.
    pub highlighted: bool,
}

/// What a code block's Run button runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runnable {
    /// A complete playbook, run exactly as shown.
    Playbook {
        /// The playbook's `main.rs`.
        source: String,
    },
    /// A playbook of the workspace, by binary name.
    WorkspacePlaybook {
        /// As in `cargo run --bin NAME`.
        name: String,
    },
    /// A shell command on a guest of the deck's lab.
    Guest {
        /// The machine's name in the lab.
        guest: String,
        /// The command, as shown.
        command: String,
    },
    /// A Go program (`.play`): the file around the shown lines, which are the middle.
    Go {
        /// The file before the shown lines.
        before: String,
        /// The file after the shown lines.
        after: String,
    },
}

impl Slide {
    /// The slide's code blocks in order: block `i` of slide `n` is block id `n.i`.
    pub fn code_blocks(&self) -> impl Iterator<Item = &CodeBlock> {
        self.body.iter().filter_map(|element| match element {
            Element::Code(code) => Some(code),
            _ => None,
        })
    }
}

impl CodeBlock {
    /// The shown text, one `\n` after each line.
    pub fn text(&self) -> String {
        self.lines.iter().fold(String::new(), |mut text, line| {
            text.push_str(&line.text);
            text.push('\n');
            text
        })
    }
}
