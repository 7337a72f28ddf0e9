//! Fenced code blocks: finding fences line by line (so that a `---` or a `: ` line inside
//! one stays code), and reading an info string into a [`CodeBlock`].
//!
//! An info string is the language, then words: `playbook` (a complete playbook, run as
//! shown; `playbook` alone as the first word means `rust playbook`), `name=NAME` (with
//! `playbook`: the workspace's playbook NAME instead), `guest=MACHINE` (a shell command on
//! that machine of the deck's lab), `editable`, `numbers`, `hl=LINES` (`hl=2,4-6`) and
//! `stop-on-leave` (leaving the slide stops the block's run).

use super::deck::{CodeBlock, CodeLine, Runnable};
use super::error::DeckError;
use super::origin::Origin;

const WORDS: &str = "expected playbook, name=PLAYBOOK, guest=MACHINE, editable, numbers, \
                     hl=LINES or stop-on-leave after the language";

/// An open fence: its character and length, which a closing fence must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fence {
    marker: char,
    length: usize,
}

impl Fence {
    /// The fence `line` opens, if it opens one: three or more backticks (with no backtick
    /// after them) or tildes. Indentation is allowed, for fences inside list items.
    pub(super) fn open(line: &str) -> Option<Fence> {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let length = trimmed.len() - trimmed.trim_start_matches(marker).len();
        let info = &trimmed[length..];
        (length >= 3 && !(marker == '`' && info.contains('`'))).then_some(Fence { marker, length })
    }

    /// Whether `line` closes this fence.
    pub(super) fn closes(&self, line: &str) -> bool {
        let trimmed = line.trim();
        trimmed.len() >= self.length && trimmed.chars().all(|c| c == self.marker)
    }

    /// The fence as written, for errors.
    pub(super) fn text(&self) -> String {
        self.marker.to_string().repeat(self.length)
    }
}

/// A fenced (or indented, with an empty `info`) block's code read with its info string;
/// `line` is where the block starts.
pub(super) fn code_block(
    info: &str,
    text: &str,
    line: usize,
    origin: &Origin,
) -> Result<CodeBlock, DeckError> {
    let bad = |problem: String| DeckError::BadCodeInfo {
        file: origin.file(),
        line,
        info: info.to_owned(),
        problem,
    };
    let (language, options) = Options::parse(info).map_err(&bad)?;
    let lines = options.numbered(text).map_err(&bad)?;
    let run = options.runnable(text).map_err(&bad)?;
    if let Some(empty) = empty(run.as_ref()) {
        return Err(DeckError::EmptyRunnable {
            file: origin.file(),
            line,
            kind: empty.0,
            expected: empty.1,
        });
    }
    Ok(CodeBlock {
        language,
        lines,
        numbers: options.numbers,
        editable: options.editable,
        stop_on_leave: options.stop_on_leave,
        run,
        line,
    })
}

/// The kind and the expected content of a runnable with nothing to run.
fn empty(run: Option<&Runnable>) -> Option<(&'static str, &'static str)> {
    match run? {
        Runnable::Playbook { source } if source.trim().is_empty() => Some((
            "playbook",
            "a complete playbook (`fn main`), or `name=` for one of the workspace",
        )),
        Runnable::Guest { command, .. } if command.trim().is_empty() => {
            Some(("guest", "a shell command to run on the guest"))
        }
        _ => None,
    }
}

/// The words after the language.
#[derive(Debug, Default)]
struct Options {
    playbook: bool,
    name: Option<String>,
    guest: Option<String>,
    editable: bool,
    stop_on_leave: bool,
    numbers: bool,
    highlight: Vec<usize>,
}

impl Options {
    /// The language and the options of an info string.
    fn parse(info: &str) -> Result<(String, Options), String> {
        let mut words = info.split_whitespace();
        let mut options = Options::default();
        let language = match words.next() {
            Some("playbook") => {
                options.playbook = true;
                "rust"
            }
            Some(language) => language,
            None => "",
        };
        for word in words {
            options.add(word)?;
        }
        Ok((language.to_owned(), options))
    }

    /// The block's lines numbered from 1, highlighted as `hl=` says.
    fn numbered(&self, text: &str) -> Result<Vec<CodeLine>, String> {
        let mut lines: Vec<CodeLine> = text
            .lines()
            .zip(1..)
            .map(|(text, number)| CodeLine {
                text: text.to_owned(),
                number,
                highlighted: false,
            })
            .collect();
        let count = lines.len();
        for number in &self.highlight {
            let line = lines.get_mut(number - 1).ok_or_else(|| {
                format!("hl= names line {number}, but the block has {count} lines")
            })?;
            line.highlighted = true;
        }
        Ok(lines)
    }

    fn add(&mut self, word: &str) -> Result<(), String> {
        match word.split_once('=') {
            None => match word {
                "playbook" => self.playbook = true,
                "editable" => self.editable = true,
                "stop-on-leave" => self.stop_on_leave = true,
                "numbers" => self.numbers = true,
                _ => return Err(format!("unknown word `{word}`: {WORDS}")),
            },
            Some(("name", name)) => self.name = Some(machine_name(name)?),
            Some(("guest", guest)) => self.guest = Some(machine_name(guest)?),
            Some(("hl", lines)) => self.highlight = line_list(lines)?,
            Some(_) => return Err(format!("unknown word `{word}`: {WORDS}")),
        }
        Ok(())
    }

    fn runnable(&self, text: &str) -> Result<Option<Runnable>, String> {
        match (self.playbook, &self.name, &self.guest) {
            (true, _, Some(_)) => Err(
                "`playbook` and `guest=` do not go together: a block runs a playbook or a \
                 command on a guest"
                    .to_owned(),
            ),
            (false, Some(_), _) => {
                Err("`name=` names a workspace playbook: expected `playbook name=NAME`".to_owned())
            }
            (true, Some(name), None) => {
                Ok(Some(Runnable::WorkspacePlaybook { name: name.clone() }))
            }
            (true, None, None) => Ok(Some(Runnable::Playbook {
                source: text.to_owned(),
            })),
            (false, None, Some(guest)) => Ok(Some(Runnable::Guest {
                guest: guest.clone(),
                command: text.trim_end().to_owned(),
            })),
            (false, None, None) => Ok(None),
        }
    }
}

/// A playbook or machine name: letters, digits, `-`, `_` and `.`.
fn machine_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "bad name {name:?}: expected letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// `2,4-6` as line numbers from 1.
fn line_list(list: &str) -> Result<Vec<usize>, String> {
    let bad =
        || format!("bad line list {list:?}: expected numbers from 1 and ranges, as in hl=2,4-6");
    let number = |n: &str| n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(bad);
    let mut lines = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if last < first || last - first > 10_000 {
                    return Err(bad());
                }
                lines.extend(first..=last);
            }
            None => lines.push(number(part)?),
        }
    }
    Ok(lines)
}
