//! The deck as one HTML page: every slide a `<section>`, the CSS and JavaScript inlined, so
//! the page needs nothing but itself (and the deck's pictures) to show, served or exported.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

use super::deck::{AuthorLine, Deck};
use super::files::Files;
use super::html::{escape, Renderer};
use super::run::RunEvent;

const TEMPLATE: &str = include_str!("assets/deck.html");
const CSS: &str = include_str!("assets/present.css");
const JS: &str = include_str!("assets/present.js");

/// Why a page could not be rendered (a bug in the template, not in a deck).
#[derive(Debug, thiserror::Error)]
#[error("cannot render the deck page: {0}")]
pub struct PageError(String);

/// How the page is rendered.
#[derive(Debug, Default)]
pub struct PageOptions<'a> {
    /// Served with Run buttons (false: an export).
    pub live: bool,
    /// Every runnable block editable, not only those the deck marks.
    pub edit_all: bool,
    /// The token requests must carry, when the server asks for one.
    pub token: Option<&'a str>,
    /// Output to show in blocks before anything runs (an export's last runs).
    pub captured: Option<&'a HashMap<String, Vec<RunEvent>>>,
}

/// The page's data for the template.
#[derive(Debug, Serialize)]
struct Context {
    title: String,
    subtitle: Option<String>,
    date: Option<String>,
    authors: Vec<Vec<String>>,
    notes: Vec<String>,
    slides: Vec<SlideContext>,
    css: &'static str,
    js: &'static str,
    config: String,
}

#[derive(Debug, Serialize)]
struct SlideContext {
    number: usize,
    title: String,
    anchor: Option<String>,
    background: Option<String>,
    body: String,
    notes: Vec<String>,
}

/// What the page's script is told.
#[derive(Debug, Serialize)]
struct Config<'a> {
    title: &'a str,
    live: bool,
    token: Option<&'a str>,
    captured: Option<&'a HashMap<String, Vec<RunEvent>>>,
}

/// Renders `deck`, whose files are `files`.
pub fn render(deck: &Deck, files: &Files, options: &PageOptions<'_>) -> Result<String, PageError> {
    let renderer = Renderer {
        files,
        live: options.live,
        edit_all: options.edit_all,
    };
    let config = serde_json::to_string(&Config {
        title: &deck.title,
        live: options.live,
        token: options.token,
        captured: options.captured,
    })
    .map_err(|e| PageError(e.to_string()))?
    // Inside <script>: no `</script>` or `<!--` can come out of a string.
    .replace('<', "\\u003c");
    let context = Context {
        title: deck.title.clone(),
        subtitle: deck.subtitle.clone(),
        date: deck.date.clone(),
        authors: deck
            .authors
            .iter()
            .map(|author| author.lines.iter().map(author_line).collect())
            .collect(),
        notes: deck.notes.clone(),
        slides: deck
            .slides
            .iter()
            .map(|slide| SlideContext {
                number: slide.number,
                title: slide.title.clone(),
                anchor: slide.anchor.clone(),
                background: slide.background.as_ref().map(|b| renderer.url(b)),
                body: renderer.slide_body(slide),
                notes: slide.notes.clone(),
            })
            .collect(),
        css: CSS,
        js: JS,
        config,
    };
    let context = tera::Context::from_serialize(&context).map_err(|e| PageError(e.to_string()))?;
    template()?
        .render("deck.html", &context)
        .map_err(|e| PageError(e.to_string()))
}

/// An author line as HTML.
fn author_line(line: &AuthorLine) -> String {
    match line {
        AuthorLine::Text(text) => escape(text),
        AuthorLine::Link(link) => format!(
            "<a href=\"{}\">{}</a>",
            escape(&link.url),
            escape(&link.label)
        ),
    }
}

/// The parsed template, once.
fn template() -> Result<&'static tera::Tera, PageError> {
    static TERA: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = tera::Tera::new();
        tera.autoescape_on(vec![".html"]);
        tera.add_raw_template("deck.html", TEMPLATE)
            .map_err(|e| e.to_string())?;
        Ok(tera)
    })
    .as_ref()
    .map_err(|e| PageError(e.clone()))
}
