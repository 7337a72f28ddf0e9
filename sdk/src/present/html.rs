//! Slide elements as HTML. The markup is what `present.css` styles and `present.js` drives:
//! a code block with a Run button is a `div.code` whose `data-block` names it to the server.

use std::fmt::Write as _;

use super::deck::{Asset, CodeBlock, Element, Size, Slide};
use super::files::Files;

/// The id of code block `index` (from 0, counting every code block) on slide `slide`; the
/// title slide is 0 and has none.
pub fn block_id(slide: usize, index: usize) -> String {
    format!("{slide}.{index}")
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values, as Go's
/// `html/template` escapes them.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders slides' bodies; pictures and videos next to the deck become `files/` URLs.
#[derive(Debug)]
pub struct Renderer<'a> {
    /// The deck's local files and their URLs.
    pub files: &'a Files,
    /// Whether Run buttons appear (false in an export).
    pub live: bool,
    /// Whether every runnable block is editable (`--edit`), not only those marked so.
    pub edit_all: bool,
}

impl Renderer<'_> {
    /// The body of `slide` as HTML.
    pub fn slide_body(&self, slide: &Slide) -> String {
        let mut out = String::new();
        let mut blocks = 0;
        for element in &slide.body {
            match element {
                Element::Code(code) => {
                    out.push_str(&self.code(code, &block_id(slide.number, blocks)));
                    blocks += 1;
                }
                other => out.push_str(&self.element(other)),
            }
            out.push('\n');
        }
        out
    }

    /// A URL for `asset`.
    pub fn url(&self, asset: &Asset) -> String {
        match asset {
            Asset::File(path) => self.files.url(path),
            Asset::Url(url) => url.clone(),
        }
    }

    fn element(&self, element: &Element) -> String {
        match element {
            Element::Heading {
                level, html, anchor, ..
            } => {
                let id = anchor
                    .as_ref()
                    .map(|a| format!(" id=\"{}\"", escape(a)))
                    .unwrap_or_default();
                format!("<h{level}{id}>{html}</h{level}>")
            }
            Element::Paragraph { html } => format!("<p>{html}</p>"),
            Element::List { start, items } => {
                let items: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
                match start {
                    Some(1) => format!("<ol>{items}</ol>"),
                    Some(n) => format!("<ol start=\"{n}\">{items}</ol>"),
                    None => format!("<ul>{items}</ul>"),
                }
            }
            Element::Code(_) => String::new(),
            Element::Image(image) => format!(
                "<div class=\"image\"><img src=\"{}\" alt=\"{}\"{}></div>",
                escape(&self.url(&image.src)),
                escape(&image.alt),
                size(image.size)
            ),
            Element::Video(video) => format!(
                "<div class=\"video\"><video controls{}><source src=\"{}\" type=\"{}\"></video></div>",
                size(video.size),
                escape(&self.url(&video.src)),
                escape(&video.mime)
            ),
            Element::Link(link) => format!(
                "<p class=\"link\"><a href=\"{}\" target=\"_blank\">{}</a></p>",
                escape(&link.url),
                escape(&link.label)
            ),
            Element::Caption { html } => format!("<figcaption>{html}</figcaption>"),
            Element::Iframe(frame) => format!(
                "<iframe src=\"{}\"{}></iframe>",
                escape(&frame.url),
                size(frame.size)
            ),
            Element::Html(html) => html.clone(),
            Element::Problem(problem) => format!("<pre class=\"problem\">{}</pre>", escape(problem)),
        }
    }

    fn code(&self, code: &CodeBlock, id: &str) -> String {
        let runnable = code.run.is_some();
        let editable = runnable && (code.editable || self.edit_all);
        let mut out = String::new();
        let _ = write!(
            out,
            "<div class=\"code{}{}\" data-block=\"{id}\" data-lang=\"{}\"{}>",
            if code.numbers { " numbers" } else { "" },
            if editable { " editable" } else { "" },
            escape(&code.language),
            if code.stop_on_leave {
                " data-stop-on-leave"
            } else {
                ""
            },
        );
        let _ = write!(
            out,
            "<pre{}>",
            if editable {
                " contenteditable=\"plaintext-only\" spellcheck=\"false\""
            } else {
                ""
            }
        );
        for line in &code.lines {
            let _ = write!(
                out,
                "<span class=\"line{}\" data-n=\"{}\">{}\n</span>",
                if line.highlighted { " hl" } else { "" },
                line.number,
                escape(&line.text)
            );
        }
        out.push_str("</pre>");
        if runnable {
            if self.live {
                out.push_str(
                    "<div class=\"buttons\"><button class=\"run\">Run</button>\
                     <button class=\"stop\" disabled>Stop</button>\
                     <span class=\"state\"></span></div>",
                );
            }
            out.push_str("<pre class=\"output\"></pre>");
        }
        out.push_str("</div>");
        out
    }
}

fn size(size: Size) -> String {
    let mut out = String::new();
    if let Some(w) = size.width {
        let _ = write!(out, " width=\"{w}\"");
    }
    if let Some(h) = size.height {
        let _ = write!(out, " height=\"{h}\"");
    }
    out
}
