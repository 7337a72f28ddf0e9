//! Both parsers end to end: every element, the errors with their lines, and garbled decks.

use std::path::{Path, PathBuf};

use super::*;

/// A directory holding the files decks name.
struct Fixture {
    dir: tempfile::TempDir,
}

const HELLO_GO: &str = "package main

import \"fmt\"

// START OMIT
func main() {
\tfmt.Println(\"hello\") // HL
\tfmt.Println(\"secret\") // OMIT
}
// END OMIT
";

const HL_GO: &str = "func a() {
\tone() // HLx
\ttwo() // HL
}
";

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.go"), HELLO_GO).unwrap();
        std::fs::write(dir.path().join("hl.go"), HL_GO).unwrap();
        std::fs::write(dir.path().join("gopher.png"), b"\x89PNG").unwrap();
        std::fs::write(dir.path().join("box.html"), "<div>box</div>\n").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn markdown(&self, text: &str) -> Result<Deck, DeckError> {
        parse_markdown(text, &self.path("talk.md"))
    }

    fn slide(&self, text: &str) -> Result<Deck, DeckError> {
        parse_slide(text, &self.path("talk.slide"))
    }
}

/// The number of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

fn code(element: &Element) -> &CodeBlock {
    match element {
        Element::Code(code) => code,
        other => panic!("expected code, got {other:?}"),
    }
}

fn numbered(code: &CodeBlock) -> Vec<(usize, &str, bool)> {
    code.lines
        .iter()
        .map(|l| (l.number, l.text.as_str(), l.highlighted))
        .collect()
}

const MARKDOWN_DECK: &str = "# Live infrastructure
Playbooks in a browser
3 Dec 2026
Tags: sinew, qemu
Lab: amd=x86_64

Ada Lovelace
Analytical Engines
ada@example.com

Grace Hopper
@grace
: Welcome everyone.

---

## Why {#why}

Some *text* here.

- one
- two **bold**

1. first
2. second

![gopher](gopher.png \"=300x_\")

> quoted

: Mention the gopher.

---

## Code

```rust playbook editable
fn main() {}
```

```playbook name=two-arch
```

```sh guest=amd numbers hl=2
uname -m
echo done
```

~~~text
---
: not a note
~~~
";

#[test]
fn a_markdown_deck_has_every_element() {
    let fixture = Fixture::new();
    let deck = fixture.markdown(MARKDOWN_DECK).unwrap();
    assert_eq!(deck.title, "Live infrastructure");
    assert_eq!(deck.subtitle.as_deref(), Some("Playbooks in a browser"));
    assert_eq!(deck.date.as_deref(), Some("3 Dec 2026"));
    assert_eq!(deck.tags, ["sinew", "qemu"]);
    assert_eq!(deck.notes, ["Welcome everyone."]);
    assert_eq!(
        deck.authors,
        [
            Author {
                lines: vec![
                    AuthorLine::Text("Ada Lovelace".into()),
                    AuthorLine::Text("Analytical Engines".into()),
                    AuthorLine::Link(Link {
                        url: "mailto:ada@example.com".into(),
                        label: "ada@example.com".into()
                    }),
                ]
            },
            Author {
                lines: vec![
                    AuthorLine::Text("Grace Hopper".into()),
                    AuthorLine::Link(Link {
                        url: "https://twitter.com/grace".into(),
                        label: "@grace".into()
                    })
                ]
            },
        ]
    );
    assert_eq!(deck.slides.len(), 2, "{:#?}", deck.slides);

    let why = &deck.slides[0];
    assert_eq!((why.number, why.title.as_str()), (1, "Why"));
    assert_eq!(why.anchor.as_deref(), Some("why"));
    assert_eq!(why.line, line_of(MARKDOWN_DECK, "## Why"));
    assert_eq!(why.file, fixture.path("talk.md"));
    assert_eq!(why.notes, ["Mention the gopher."]);
    assert_eq!(
        why.body[..4],
        [
            Element::Paragraph {
                html: "Some <em>text</em> here.".into()
            },
            Element::List {
                start: None,
                items: vec!["one".into(), "two <strong>bold</strong>".into()]
            },
            Element::List {
                start: Some(1),
                items: vec!["first".into(), "second".into()]
            },
            Element::Image(Image {
                src: Asset::File(fixture.path("gopher.png")),
                alt: "gopher".into(),
                size: Size {
                    width: Some(300),
                    height: None
                },
            }),
        ]
    );
    assert!(
        matches!(&why.body[4], Element::Html(html) if html.contains("<blockquote>") && html.contains("quoted")),
        "{:?}",
        why.body[4]
    );
    assert_eq!(why.body.len(), 5);

    let code_slide = &deck.slides[1];
    assert_eq!(code_slide.title, "Code");
    assert!(code_slide.notes.is_empty());
    let blocks: Vec<&CodeBlock> = code_slide.body.iter().map(code).collect();
    assert_eq!(blocks.len(), 4);

    assert_eq!(blocks[0].language, "rust");
    assert_eq!(blocks[0].text(), "fn main() {}\n");
    assert!(blocks[0].editable && !blocks[0].numbers);
    assert_eq!(
        blocks[0].run,
        Some(Runnable::Playbook {
            source: "fn main() {}\n".into()
        })
    );
    assert_eq!(blocks[0].line, line_of(MARKDOWN_DECK, "```rust playbook"));

    assert_eq!(blocks[1].language, "rust");
    assert!(blocks[1].lines.is_empty());
    assert_eq!(
        blocks[1].run,
        Some(Runnable::WorkspacePlaybook {
            name: "two-arch".into()
        })
    );

    assert_eq!(blocks[2].language, "sh");
    assert!(blocks[2].numbers && !blocks[2].editable);
    assert_eq!(
        numbered(blocks[2]),
        [(1, "uname -m", false), (2, "echo done", true)]
    );
    assert_eq!(
        blocks[2].run,
        Some(Runnable::Guest {
            guest: "amd".into(),
            command: "uname -m\necho done".into()
        })
    );

    assert_eq!(blocks[3].language, "text");
    assert_eq!(blocks[3].text(), "---\n: not a note\n");
    assert_eq!(blocks[3].run, None);
}

#[test]
fn a_fenced_rule_is_not_a_slide_break() {
    let fixture = Fixture::new();
    let deck = fixture
        .markdown("## One\n\n```\n---\n```\n\n  ````md\n  ---\n  ````\n---\n## Two\n")
        .unwrap();
    let titles: Vec<_> = deck.slides.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(titles, ["One", "Two"]);
    assert_eq!(code(&deck.slides[0].body[0]).text(), "---\n");
    assert_eq!(deck.slides[1].line, 11);
}

#[test]
fn a_markdown_deck_without_a_title_block_takes_its_first_slides_title() {
    let fixture = Fixture::new();
    let deck = fixture
        .markdown("---\n## Hello\ntext\n: a note\n: another\n---\n\n---\nno heading\n")
        .unwrap();
    assert_eq!(deck.title, "Hello");
    assert_eq!(deck.slides.len(), 2);
    assert_eq!(deck.slides[0].notes, ["a note", "another"]);
    assert_eq!(deck.slides[0].line, 2);
    assert_eq!(deck.slides[1].title, "");
    assert_eq!(deck.slides[1].number, 2);
    assert_eq!(deck.slides[1].line, 9);
}

const LEGACY_DECK: &str = "Live Go
Running code in slides
15:04 2 Jan 2006
Tags: go, present

Rob Pike
Google
https://golang.org
@rob

Ken Thompson
: title note

# a legacy comment
* First slide

Some _italic_ and *bold* text
over two lines.

- bullet one
- bullet two
  continued

  preformatted
    indented more

.code hello.go /START OMIT/,/END OMIT/
.play -edit hello.go
.image gopher.png _ 300
.caption _Gopher_ by [[https://instagram.com/reneefrench][Renee French]]

: first notes

** A subsection

.link https://go.dev Go site
.iframe https://example.com 300 400
.link https://go.dev/doc

* Second slide
.background gopher.png
\\.not a command
";

#[test]
fn a_legacy_slide_deck_reads_as_go_reads_it() {
    let fixture = Fixture::new();
    let deck = fixture.slide(LEGACY_DECK).unwrap();
    assert_eq!(deck.title, "Live Go");
    assert_eq!(deck.subtitle.as_deref(), Some("Running code in slides"));
    assert_eq!(deck.date.as_deref(), Some("15:04 2 Jan 2006"));
    assert_eq!(deck.tags, ["go", "present"]);
    assert_eq!(deck.notes, ["title note"]);
    assert_eq!(deck.authors.len(), 2);
    assert_eq!(
        deck.authors[0].lines,
        [
            AuthorLine::Text("Rob Pike".into()),
            AuthorLine::Text("Google".into()),
            AuthorLine::Link(Link {
                url: "https://golang.org".into(),
                label: "https://golang.org".into()
            }),
            AuthorLine::Link(Link {
                url: "https://twitter.com/rob".into(),
                label: "@rob".into()
            }),
        ]
    );
    assert_eq!(
        deck.authors[1].lines,
        [AuthorLine::Text("Ken Thompson".into())]
    );
    assert_eq!(deck.slides.len(), 2);

    let first = &deck.slides[0];
    assert_eq!((first.number, first.title.as_str()), (1, "First slide"));
    assert_eq!(first.line, line_of(LEGACY_DECK, "* First slide"));
    assert_eq!(first.notes, ["first notes"]);
    let body = &first.body;
    assert_eq!(body.len(), 11, "{body:#?}");
    assert_eq!(
        body[0],
        Element::Paragraph {
            html: "Some <i>italic</i> and <b>bold</b> text\nover two lines.".into()
        }
    );
    assert_eq!(
        body[1],
        Element::List {
            start: None,
            items: vec!["bullet one".into(), "bullet two\ncontinued".into()]
        }
    );
    assert_eq!(code(&body[2]).text(), "preformatted\n  indented more\n");
    assert_eq!(code(&body[2]).run, None);

    let excerpt = code(&body[3]);
    assert_eq!(excerpt.language, "go");
    assert_eq!(
        numbered(excerpt),
        [
            (6, "func main() {", false),
            (7, "\tfmt.Println(\"hello\")", true),
            (9, "}", false)
        ]
    );
    assert_eq!(excerpt.run, None);
    assert!(!excerpt.editable);
    assert_eq!(excerpt.line, line_of(LEGACY_DECK, ".code"));

    let play = code(&body[4]);
    assert!(play.editable && !play.numbers);
    assert_eq!(
        play.lines.iter().map(|l| l.number).collect::<Vec<_>>(),
        [1, 2, 3, 4, 6, 7, 9]
    );
    assert_eq!(
        play.run,
        Some(Runnable::Go {
            before: String::new(),
            after: String::new()
        })
    );

    assert_eq!(
        body[5],
        Element::Image(Image {
            src: Asset::File(fixture.path("gopher.png")),
            alt: String::new(),
            size: Size {
                width: Some(300),
                height: None
            },
        })
    );
    assert_eq!(
        body[6],
        Element::Caption {
            html: r#"<i>Gopher</i> by <a href="https://instagram.com/reneefrench" target="_blank">Renee French</a>"#.into()
        }
    );
    assert_eq!(
        body[7],
        Element::Heading {
            level: 3,
            text: "A subsection".into(),
            html: "A subsection".into(),
            anchor: None
        }
    );
    assert_eq!(
        body[8],
        Element::Link(Link {
            url: "https://go.dev".into(),
            label: "Go site".into()
        })
    );
    assert_eq!(
        body[9],
        Element::Iframe(Iframe {
            url: "https://example.com".into(),
            size: Size {
                width: Some(400),
                height: Some(300)
            }
        })
    );
    assert_eq!(
        body[10],
        Element::Link(Link {
            url: "https://go.dev/doc".into(),
            label: "go.dev/doc".into()
        })
    );

    let second = &deck.slides[1];
    assert_eq!(second.title, "Second slide");
    assert_eq!(
        second.background,
        Some(Asset::File(fixture.path("gopher.png")))
    );
    assert_eq!(
        second.body,
        [Element::Paragraph {
            html: ".not a command".into()
        }]
    );
}

#[test]
fn a_play_excerpt_keeps_the_rest_of_the_file_to_run() {
    let fixture = Fixture::new();
    let deck = fixture
        .slide("T\n\n* S\n.play hello.go /^func main/,/^}/\n")
        .unwrap();
    let play = code(&deck.slides[0].body[0]);
    assert_eq!(play.lines.first().map(|l| l.number), Some(6));
    assert_eq!(
        play.run,
        Some(Runnable::Go {
            before: "package main\n\nimport \"fmt\"\n\n// START OMIT\n".into(),
            after: "// END OMIT\n".into()
        })
    );
}

#[test]
fn video_html_and_remote_pictures() {
    let fixture = Fixture::new();
    let deck = fixture
        .slide("T\n\n* S\n.video gopher.png video/mp4 _ 200\n.html box.html\n.image https://go.dev/g.png\n")
        .unwrap();
    assert_eq!(
        deck.slides[0].body,
        [
            Element::Video(Video {
                src: Asset::File(fixture.path("gopher.png")),
                mime: "video/mp4".into(),
                size: Size {
                    width: Some(200),
                    height: None
                },
            }),
            Element::Html("<div>box</div>\n".into()),
            Element::Image(Image {
                src: Asset::Url("https://go.dev/g.png".into()),
                alt: String::new(),
                size: Size::default(),
            }),
        ]
    );
    let deck = fixture
        .markdown("## S\n\n![remote](https://go.dev/g.png)\n")
        .unwrap();
    assert!(matches!(
        &deck.slides[0].body[0],
        Element::Image(Image { src: Asset::Url(url), .. }) if url == "https://go.dev/g.png"
    ));
}

const MARKDOWN_SLIDE_DECK: &str = "# Markdown talk
Subtitle here
2 Jan 2006

Author Name
// a comment in the title block

## First {#first}

Some **bold** text
// a comment
more text.

```go
# not a heading
.not a command
```

.code -numbers hl.go HLx

### Sub

: md note

## Second
- item one
- item two
";

#[test]
fn a_markdown_enabled_slide_deck_uses_hashes_and_commonmark() {
    let fixture = Fixture::new();
    let deck = fixture.slide(MARKDOWN_SLIDE_DECK).unwrap();
    assert_eq!(deck.title, "Markdown talk");
    assert_eq!(deck.subtitle.as_deref(), Some("Subtitle here"));
    assert_eq!(deck.date.as_deref(), Some("2 Jan 2006"));
    assert_eq!(
        deck.authors,
        [Author {
            lines: vec![AuthorLine::Text("Author Name".into())]
        }]
    );
    assert_eq!(deck.slides.len(), 2);

    let first = &deck.slides[0];
    assert_eq!(first.title, "First");
    assert_eq!(first.anchor.as_deref(), Some("first"));
    assert_eq!(first.line, line_of(MARKDOWN_SLIDE_DECK, "## First"));
    assert_eq!(first.notes, ["md note"]);
    assert_eq!(first.body.len(), 4, "{:#?}", first.body);
    assert_eq!(
        first.body[0],
        Element::Paragraph {
            html: "Some <strong>bold</strong> text\nmore text.".into()
        }
    );
    let fenced = code(&first.body[1]);
    assert_eq!(fenced.language, "go");
    assert_eq!(fenced.text(), "# not a heading\n.not a command\n");
    assert_eq!(fenced.line, line_of(MARKDOWN_SLIDE_DECK, "```go"));

    let highlighted = code(&first.body[2]);
    assert!(highlighted.numbers);
    assert_eq!(
        numbered(highlighted),
        [
            (1, "func a() {", false),
            (2, "\tone()", true),
            (3, "\ttwo()", false),
            (4, "}", false)
        ]
    );
    assert!(matches!(
        &first.body[3],
        Element::Heading { level: 3, text, .. } if text == "Sub"
    ));

    assert_eq!(
        deck.slides[1].body,
        [Element::List {
            start: None,
            items: vec!["item one".into(), "item two".into()]
        }]
    );
}

#[test]
fn read_picks_the_format_by_extension() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("talk.slide"), LEGACY_DECK).unwrap();
    std::fs::write(fixture.path("talk.md"), MARKDOWN_DECK).unwrap();
    assert_eq!(read(&fixture.path("talk.slide")).unwrap().title, "Live Go");
    assert_eq!(
        read(&fixture.path("talk.md")).unwrap().title,
        "Live infrastructure"
    );
    assert!(matches!(
        read(&fixture.path("missing.md")),
        Err(DeckError::Read { .. })
    ));
}

/// A deck, how its error looks, and the error's line.
type ErrorCase = (&'static str, fn(&DeckError) -> bool, usize);

/// The error's line, checking that its message starts with `file:line:`.
fn error_line(error: &DeckError, file: &Path) -> usize {
    let line = match error {
        DeckError::Read { .. } => panic!("no line in {error}"),
        DeckError::MissingTitle { line, .. }
        | DeckError::BadHeader { line, .. }
        | DeckError::UnexpectedLine { line, .. }
        | DeckError::UnknownCommand { line, .. }
        | DeckError::BadCommand { line, .. }
        | DeckError::Address { line, .. }
        | DeckError::MissingFile { line, .. }
        | DeckError::EmptyRunnable { line, .. }
        | DeckError::BadImageSize { line, .. }
        | DeckError::UnterminatedFence { line, .. }
        | DeckError::BadCodeInfo { line, .. }
        | DeckError::BadLab { line, .. }
        | DeckError::UnknownGuest { line, .. } => *line,
    };
    let prefix = format!("{}:{line}: ", file.display());
    assert!(error.to_string().starts_with(&prefix), "{error}");
    line
}

#[test]
fn slide_errors_name_their_line() {
    let fixture = Fixture::new();
    let file = fixture.path("talk.slide");
    let cases: [ErrorCase; 13] = [
        (
            "T\n\n* S\n.foo bar\n",
            |e| matches!(e, DeckError::UnknownCommand { command, .. } if command == ".foo"),
            4,
        ),
        (
            "T\n\n* S\n\n.code hello.go /START/x\n",
            |e| {
                matches!(
                    e,
                    DeckError::Address {
                        source: AddressError::Syntax(_),
                        ..
                    }
                )
            },
            5,
        ),
        (
            "T\n\n* S\n.code hello.go 2,x\n",
            |e| {
                matches!(
                    e,
                    DeckError::Address {
                        source: AddressError::Syntax(_),
                        ..
                    }
                )
            },
            4,
        ),
        (
            "T\n\n* S\n.code nope.go\n",
            |e| matches!(e, DeckError::MissingFile { path, .. } if path.ends_with("nope.go")),
            4,
        ),
        (
            "T\n\n* S\n.code hello.go /NOPE/\n",
            |e| {
                matches!(
                    e,
                    DeckError::Address {
                        source: AddressError::NoMatch(_),
                        ..
                    }
                )
            },
            4,
        ),
        (
            "T\n\n* S\n.play hello.go 99\n",
            |e| {
                matches!(
                    e,
                    DeckError::Address {
                        source: AddressError::OutOfRange(_),
                        ..
                    }
                )
            },
            4,
        ),
        (
            "T\n\n* S\n.image gopher.png big 300\n",
            |e| matches!(e, DeckError::BadImageSize { .. }),
            4,
        ),
        (
            "T\n\n* S\n.image nope.png\n",
            |e| matches!(e, DeckError::MissingFile { .. }),
            4,
        ),
        (
            "T\n\n* S\n.image gopher.png 1 2 3\n",
            |e| matches!(e, DeckError::BadCommand { .. }),
            4,
        ),
        (
            "T\n\n* S\n.code -bogus hello.go\n",
            |e| matches!(e, DeckError::BadCommand { .. }),
            4,
        ),
        (
            "T\n\n* S\n.code hello.go HL\n",
            |e| matches!(e, DeckError::BadCommand { .. }),
            4,
        ),
        (
            "T\n\n* S\n*** too deep\n",
            |e| matches!(e, DeckError::UnexpectedLine { .. }),
            4,
        ),
        (
            "T\nSub\nAnother\n\n* S\n",
            |e| matches!(e, DeckError::BadHeader { text, .. } if text == "Another"),
            3,
        ),
    ];
    for (deck, expected, line) in cases {
        let error = fixture.slide(deck).expect_err(deck);
        assert!(expected(&error), "{deck:?}: {error:?}");
        assert_eq!(error_line(&error, &file), line, "{deck:?}: {error}");
    }
    let error = fixture.slide("\n\n").unwrap_err();
    assert!(matches!(error, DeckError::MissingTitle { .. }), "{error:?}");
    let error = fixture.slide("# T\n\n## S\n\n```sh\nls\n").unwrap_err();
    assert!(
        matches!(error, DeckError::UnterminatedFence { .. }),
        "{error:?}"
    );
    assert_eq!(error_line(&error, &file), 5);
    let error = fixture
        .slide("# T\n\n## S\ntext\n# Not a slide\n")
        .unwrap_err();
    assert!(
        matches!(error, DeckError::UnexpectedLine { .. }),
        "{error:?}"
    );
    assert_eq!(error_line(&error, &file), 5);
}

#[test]
fn markdown_errors_name_their_line() {
    let fixture = Fixture::new();
    let file = fixture.path("talk.md");
    let cases: [ErrorCase; 11] = [
        (
            "# T\nLab: amd=x86_64\n\n---\n## S\n\n```sh guest=arm\nuname -m\n```\n",
            |e| {
                matches!(e, DeckError::UnknownGuest { guest, known, .. }
                    if guest == "arm" && known == "amd")
            },
            7,
        ),
        (
            "## S\n\n```sh guest=amd\nls\n```\n",
            |e| matches!(e, DeckError::UnknownGuest { known, .. } if known == "none"),
            3,
        ),
        (
            "# T\nLab: amd=sparc\n",
            |e| matches!(e, DeckError::BadLab { expected, .. } if expected.contains("sparc")),
            2,
        ),
        (
            "# T\nLab: amd=x86_64 amd=aarch64\n",
            |e| matches!(e, DeckError::BadLab { expected, .. } if expected.contains("twice")),
            2,
        ),
        (
            "## S\n\n```playbook\n```\n",
            |e| {
                matches!(
                    e,
                    DeckError::EmptyRunnable {
                        kind: "playbook",
                        ..
                    }
                )
            },
            3,
        ),
        (
            "## S\n\n```sh guest=amd\n\n```\n",
            |e| matches!(e, DeckError::EmptyRunnable { kind: "guest", .. }),
            3,
        ),
        (
            "## S\n\n![g](gopher.png \"=wide\")\n",
            |e| matches!(e, DeckError::BadImageSize { .. }),
            3,
        ),
        (
            "## S\n\n```sh\nls\n---\nmore\n",
            |e| matches!(e, DeckError::UnterminatedFence { fence, .. } if fence == "```"),
            3,
        ),
        (
            "## S\n---\n## T\n\n```rust playbok\n```\n",
            |e| matches!(e, DeckError::BadCodeInfo { .. }),
            5,
        ),
        (
            "## S\n\n```rust name=two-arch\n```\n",
            |e| matches!(e, DeckError::BadCodeInfo { .. }),
            3,
        ),
        (
            "## S\n\n```sh numbers hl=3\nls\n```\n",
            |e| matches!(e, DeckError::BadCodeInfo { .. }),
            3,
        ),
    ];
    for (deck, expected, line) in cases {
        let error = fixture.markdown(deck).expect_err(deck);
        assert!(expected(&error), "{deck:?}: {error:?}");
        assert_eq!(error_line(&error, &file), line, "{deck:?}: {error}");
    }
    let error = fixture
        .markdown("# T\nSub\n\n---\n![g](nope.png)\n")
        .unwrap_err();
    assert!(matches!(error, DeckError::MissingFile { .. }), "{error:?}");
    assert_eq!(error_line(&error, &file), 5);
}

/// A small deterministic generator, so a failure replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % 1_000_003).unwrap() % below.max(1)
    }
}

#[test]
fn truncated_and_garbled_decks_never_panic() {
    let fixture = Fixture::new();
    let parse_both = |text: &str| {
        let _ = fixture.markdown(text);
        let _ = fixture.slide(text);
    };
    for deck in [MARKDOWN_DECK, LEGACY_DECK, MARKDOWN_SLIDE_DECK] {
        for (cut, _) in deck.char_indices().step_by(3) {
            parse_both(&deck[..cut]);
        }
    }
    let noise = [
        "*",
        "**",
        "#",
        "## ",
        ".",
        ".code hello.go /",
        ".play ",
        ".image ",
        ": ",
        "`",
        "```",
        "~~~",
        "---",
        "\n",
        " ",
        "\t",
        "/",
        "_",
        "[[",
        "]]",
        "é",
        "-",
        "HL",
        ",",
        "$",
        "{#",
    ];
    let mut random = XorShift(0x5eed);
    for round in 0..600 {
        let deck = [MARKDOWN_DECK, LEGACY_DECK, MARKDOWN_SLIDE_DECK][round % 3];
        let mut garbled: Vec<char> = deck.chars().collect();
        for _ in 0..1 + random.next(8) {
            let at = random.next(garbled.len());
            let piece = noise[random.next(noise.len())];
            match random.next(3) {
                0 => {
                    garbled.splice(at..at, piece.chars());
                }
                1 => {
                    let end = (at + random.next(20)).min(garbled.len());
                    garbled.drain(at..end);
                }
                _ => {
                    let end = (at + 1).min(garbled.len());
                    garbled.splice(at..end, piece.chars());
                }
            }
        }
        parse_both(&garbled.into_iter().collect::<String>());
    }
}

#[test]
fn decks_of_random_lines_never_panic() {
    let fixture = Fixture::new();
    let vocabulary = [
        "# T",
        "* S",
        "** sub",
        "*** x",
        "## S {#a}",
        "### s",
        "####",
        "",
        " ",
        "  pre",
        "\t\tpre",
        "- item",
        " continued",
        "1. one",
        "text _it_ *b* `c`",
        "\\.dot",
        "// c",
        "# c",
        ": note",
        ":",
        "---",
        "```",
        "```playbook",
        "```sh guest=a hl=1-2",
        "```rust playbook name=x",
        "~~~",
        "    ```",
        "Tags: a, b",
        "2 Jan 2006",
        "@h",
        "a@b",
        "https://x",
        "é",
        ".code hello.go /START OMIT/,/END OMIT/",
        ".play -edit hl.go HLx",
        ".code hello.go $-2,$",
        ".code -numbers hello.go #3,/}/+1",
        ".code hello.go 3-#2,+",
        ".image gopher.png _ _",
        ".caption _x_ [[http://a][b]]",
        ".link",
        ".iframe x 1",
        ".background",
        ".html box.html",
        "![i](gopher.png \"=1x_\")",
        "![i](gopher.png \"=x\")",
        "> quote",
        "| a | b |",
    ];
    let mut random = XorShift(0xdec0de);
    for _ in 0..1500 {
        let lines: Vec<&str> = (0..1 + random.next(30))
            .map(|_| vocabulary[random.next(vocabulary.len())])
            .collect();
        let deck = lines.join("\n");
        let _ = fixture.markdown(&deck);
        let _ = fixture.slide(&deck);
    }
}

#[test]
fn snippets_highlights_lists_and_preformatted_text_as_in_gos_testdata() {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path("code.txt"),
        "code file\nSnippet\nimportant // HL1\n",
    )
    .unwrap();
    let deck = fixture
        .slide(
            "Code\n\n*\n\n.code code.txt /Snippet/\n.code code.txt HL1\n\n- Item 1\n on two \
             lines.\n- Item 2.\n\n- New list.\n\n\tbefore\n\n\tafter\n\nEOF\n",
        )
        .unwrap();
    let slide = &deck.slides[0];
    assert_eq!(slide.title, "");
    let body = &slide.body;
    assert_eq!(body.len(), 6, "{body:#?}");
    assert_eq!(numbered(code(&body[0])), [(2, "Snippet", false)]);
    assert_eq!(
        numbered(code(&body[1])),
        [
            (1, "code file", false),
            (2, "Snippet", false),
            (3, "important", true)
        ]
    );
    assert_eq!(
        body[2..4],
        [
            Element::List {
                start: None,
                items: vec!["Item 1\non two lines.".into(), "Item 2.".into()]
            },
            Element::List {
                start: None,
                items: vec!["New list.".into()]
            },
        ]
    );
    assert_eq!(code(&body[4]).text(), "before\n\nafter\n");
    assert_eq!(body[5], Element::Paragraph { html: "EOF".into() });
}

#[test]
fn a_lab_line_names_the_guests_of_guest_blocks() {
    let fixture = Fixture::new();
    let deck = fixture
        .markdown("# T\nLab: amd=x86_64 arm=arm64\n\n---\n## S\n\n```sh guest=arm\nuname -m\n```\n")
        .unwrap();
    assert_eq!(
        deck.lab,
        vec![
            LabMachine {
                name: "amd".into(),
                arch: crate::Arch::X86_64
            },
            LabMachine {
                name: "arm".into(),
                arch: crate::Arch::Aarch64
            },
        ]
    );
    assert_eq!(
        code(&deck.slides[0].body[0]).run,
        Some(Runnable::Guest {
            guest: "arm".into(),
            command: "uname -m".into()
        })
    );
}

#[test]
fn a_tolerant_read_shows_a_broken_slide_in_its_place_and_keeps_the_others() {
    let fixture = Fixture::new();
    let deck = fixture.path("talk.md");
    std::fs::write(
        &deck,
        "# T\n\n---\n\n## One\n\n```rust playbok\nfn main() {}\n```\n\n---\n\n## Two\n\ntext\n",
    )
    .unwrap();
    let strict = read(&deck).unwrap_err().to_string();
    assert!(strict.contains("talk.md:7"), "{strict}");
    let (tolerant, problems) = read_tolerant(&deck).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].to_string(), strict);
    assert_eq!(tolerant.slides.len(), 2);
    assert_eq!(tolerant.slides[0].body, vec![Element::Problem(strict)]);
    assert_eq!(tolerant.slides[1].title, "Two");
}

#[test]
fn a_tolerant_read_of_a_slide_deck_skips_a_broken_slide_to_the_next() {
    let fixture = Fixture::new();
    let deck = fixture.path("talk.slide");
    std::fs::write(
        &deck,
        "T\n\n* One\n\n.code nope.go\n\ntext\n\n* Two\n\nok\n",
    )
    .unwrap();
    let strict = read(&deck).unwrap_err().to_string();
    assert!(strict.contains("talk.slide:5"), "{strict}");
    let (tolerant, problems) = read_tolerant(&deck).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(tolerant.slides.len(), 2);
    assert_eq!(tolerant.slides[0].title, "One");
    assert_eq!(tolerant.slides[0].body, vec![Element::Problem(strict)]);
    assert_eq!(tolerant.slides[1].title, "Two");
}
