//! Go present's `.code` addresses: sam's address syntax (Plan 9's `sam(1)`, Table II) over a
//! file's text, with Rust regular expressions in multi-line mode.
//!
//! - `n`: line n; `#n`: the position after n characters; `$`: the end; `/re/`: the next
//!   match of `re` after the current selection, wrapping around to the start of the file.
//! - `a+n`, `a-n` (`a+#n`, `a-#n`): n lines (characters) after the end or before the start
//!   of `a`; a bare `+` or `-` means 1.
//! - `a,b`: from the start of `a` to the end of `b`, where `b` is evaluated from the end of
//!   `a`; `a,` runs to the end of the file.
//!
//! Searching backwards (`-/re/`) is not supported, as in Go.

use std::ops::Range;

/// Why an address selects nothing (the caller names the address and the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address is not sam syntax.
    #[error("malformed: {0}; expected line numbers, `$`, `#n`, `/regexp/`, `+`, `-` and `,`")]
    Syntax(String),
    /// A `/regexp/` that does not compile.
    #[error("malformed: bad regular expression {0}")]
    Regex(String),
    /// A `/regexp/` that matches nowhere in the file.
    #[error("matches nothing: no match for /{0}/")]
    NoMatch(String),
    /// A line or character number past either end of the file.
    #[error("matches nothing: past the {0} of the file")]
    OutOfRange(&'static str),
}

/// The byte range of `text` that `address` selects; empty `address` selects all of it.
/// The range may end before it starts when a search wrapped around.
pub fn select(address: &str, text: &str) -> Result<Range<usize>, AddressError> {
    Evaluator { text }.eval(address, 0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Lines,
    Chars,
}

struct Evaluator<'a> {
    text: &'a str,
}

impl Evaluator<'_> {
    /// Evaluates `rest` (a suffix of the address) with the selection starting at `start`.
    fn eval(&self, rest: &str, start: usize) -> Result<Range<usize>, AddressError> {
        if rest.is_empty() {
            return Ok(start..self.text.len());
        }
        let mut dot = start..start;
        let mut direction: Option<Direction> = None;
        let mut unit = Unit::Lines;
        // A sign right after a sign counts as a step of one line, as in `++`.
        let mut after_sign = false;
        let mut rest = rest;
        while let Some(c) = rest.chars().next() {
            match c {
                ',' => {
                    let end = if rest.len() == 1 {
                        self.text.len()
                    } else {
                        self.eval(&rest[1..], dot.end)?.end
                    };
                    return Ok(dot.start..end);
                }
                '+' | '-' => {
                    if after_sign {
                        dot = self.step(dot, direction, 1, unit)?;
                    }
                    direction = Some(if c == '+' {
                        Direction::Forward
                    } else {
                        Direction::Backward
                    });
                    after_sign = true;
                    rest = &rest[1..];
                    continue;
                }
                '$' => {
                    dot = self.text.len()..self.text.len();
                    if rest.len() > 1 {
                        direction = Some(Direction::Forward);
                    }
                }
                '#' => unit = Unit::Chars,
                '0'..='9' => {
                    let digits = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    let n = rest[..digits]
                        .parse()
                        .map_err(|_| syntax("line number too large"))?;
                    dot = self.step(dot, direction, n, unit)?;
                    direction = None;
                    unit = Unit::Lines;
                    rest = &rest[digits..];
                    after_sign = false;
                    continue;
                }
                '/' => {
                    let (pattern, after) = self.pattern(&rest[1..])?;
                    if direction == Some(Direction::Backward) {
                        return Err(syntax("searching backwards (`-/regexp/`) is not supported"));
                    }
                    dot = self.search(dot.end, &pattern)?;
                    direction = None;
                    rest = after;
                    after_sign = false;
                    continue;
                }
                other => return Err(syntax(&format!("unexpected {other:?}"))),
            }
            after_sign = false;
            rest = &rest[1..];
        }
        match direction {
            Some(_) => self.step(dot, direction, 1, unit),
            None => Ok(dot),
        }
    }

    /// Splits `/pattern/rest` (after the first slash) into the pattern, with `\/` meaning
    /// a slash, and what follows the closing slash (nothing when it is missing).
    fn pattern<'r>(&self, rest: &'r str) -> Result<(String, &'r str), AddressError> {
        let mut pattern = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '/' => return Ok((pattern, &rest[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, '/')) => pattern.push('/'),
                    Some((_, escaped)) => {
                        pattern.push('\\');
                        pattern.push(escaped);
                    }
                    None => pattern.push('\\'),
                },
                c => pattern.push(c),
            }
        }
        // As in Go, a last regexp may leave its closing slash out.
        Ok((pattern, ""))
    }

    /// The first match of `pattern` at or after `from`, else the first in the whole text.
    fn search(&self, from: usize, pattern: &str) -> Result<Range<usize>, AddressError> {
        let regex = regex::RegexBuilder::new(&format!("(?m:{})", literal_braces(pattern)))
            .build()
            .map_err(|e| AddressError::Regex(format!("/{pattern}/: {e}")))?;
        let found = regex
            .find_at(self.text, from)
            .or_else(|| regex.find(self.text))
            .ok_or_else(|| AddressError::NoMatch(pattern.to_owned()))?;
        Ok(found.range())
    }

    /// Moves `n` lines or characters from `dot`: forward from its end, backward from its
    /// start, or (no direction) from the start of the text.
    fn step(
        &self,
        dot: Range<usize>,
        direction: Option<Direction>,
        n: usize,
        unit: Unit,
    ) -> Result<Range<usize>, AddressError> {
        match (direction, unit) {
            (None, Unit::Lines) => self.lines_forward(0, n),
            (None, Unit::Chars) => self.chars_forward(0, n),
            (Some(Direction::Forward), Unit::Lines) => self.lines_forward(dot.end, n),
            (Some(Direction::Forward), Unit::Chars) => self.chars_forward(dot.end, n),
            (Some(Direction::Backward), Unit::Lines) => self.lines_backward(dot.start, n),
            (Some(Direction::Backward), Unit::Chars) => self.chars_backward(dot.start, n),
        }
    }

    /// Line `n` counting the line that starts at or after `from` as line 1; line 0 is the
    /// empty range at that start.
    fn lines_forward(&self, from: usize, n: usize) -> Result<Range<usize>, AddressError> {
        let mut start = self.next_line_start(from);
        if n == 0 {
            return Ok(start..start);
        }
        for _ in 1..n {
            start = self.line_end(start);
            if start >= self.text.len() {
                return Err(out_of_range("end"));
            }
        }
        if start >= self.text.len() {
            return Err(out_of_range("end"));
        }
        Ok(start..self.line_end(start))
    }

    /// The `n`th line before the line holding `from`; 0 is the empty range at its start.
    fn lines_backward(&self, from: usize, n: usize) -> Result<Range<usize>, AddressError> {
        let mut start = self.line_start(from);
        if n == 0 {
            return Ok(start..start);
        }
        for _ in 0..n {
            if start == 0 {
                return Err(out_of_range("start"));
            }
            start = self.line_start(start - 1);
        }
        Ok(start..self.line_end(start))
    }

    fn chars_forward(&self, from: usize, n: usize) -> Result<Range<usize>, AddressError> {
        if n == 0 {
            return Ok(from..from);
        }
        let at = self.text[from..]
            .char_indices()
            .map(|(i, c)| from + i + c.len_utf8())
            .nth(n - 1)
            .ok_or_else(|| out_of_range("end"))?;
        Ok(at..at)
    }

    fn chars_backward(&self, from: usize, n: usize) -> Result<Range<usize>, AddressError> {
        if n == 0 {
            return Ok(from..from);
        }
        let at = self.text[..from]
            .char_indices()
            .rev()
            .map(|(i, _)| i)
            .nth(n - 1)
            .ok_or_else(|| out_of_range("start"))?;
        Ok(at..at)
    }

    /// The start of the line holding `at`.
    fn line_start(&self, at: usize) -> usize {
        self.text[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// `at` if a line starts there, else the start of the next line (or the end).
    fn next_line_start(&self, at: usize) -> usize {
        if at == 0 || self.text.as_bytes().get(at - 1) == Some(&b'\n') {
            at
        } else {
            self.line_end(at)
        }
    }

    /// Just past the newline ending the line holding `at`, or the end of the text.
    fn line_end(&self, at: usize) -> usize {
        self.text[at..]
            .find('\n')
            .map_or(self.text.len(), |i| at + i + 1)
    }
}

/// `pattern` with the braces that open no `{n}`, `{n,}` or `{n,m}` escaped: Go's RE2 reads
/// them as literal braces (`/^func main() {/` is common in decks), Rust's regex rejects them.
fn literal_braces(pattern: &str) -> String {
    let mut escaped = String::with_capacity(pattern.len());
    let mut chars = pattern.char_indices();
    let mut in_class = false;
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                escaped.push(c);
                escaped.extend(chars.next().map(|(_, next)| next));
            }
            '[' if !in_class => {
                in_class = true;
                escaped.push(c);
            }
            ']' if in_class => {
                in_class = false;
                escaped.push(c);
            }
            '{' if !in_class => match repetition_length(&pattern[at..]) {
                Some(length) => {
                    escaped.push_str(&pattern[at..at + length]);
                    chars.nth(length - 2);
                }
                None => escaped.push_str("\\{"),
            },
            '}' if !in_class => escaped.push_str("\\}"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The length of the `{n}`, `{n,}` or `{n,m}` that `text` starts with.
fn repetition_length(text: &str) -> Option<usize> {
    let close = text.find('}')?;
    let counts = &text[1..close];
    let (min, max) = counts.split_once(',').unwrap_or((counts, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!min.is_empty() && digits(min) && digits(max)).then_some(close + 1)
}

fn syntax(problem: &str) -> AddressError {
    AddressError::Syntax(problem.to_owned())
}

fn out_of_range(end: &'static str) -> AddressError {
    AddressError::OutOfRange(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "one\ntwo\nthree\nfour\nfive\n";

    fn selected(address: &str) -> &'static str {
        let range = select(address, TEXT).unwrap();
        &TEXT[range]
    }

    #[test]
    fn line_numbers_select_whole_lines() {
        assert_eq!(selected("2"), "two\n");
        assert_eq!(selected("2,4"), "two\nthree\nfour\n");
        assert_eq!(selected("5"), "five\n");
        assert_eq!(selected(""), TEXT);
    }

    #[test]
    fn dollar_is_the_end() {
        assert_eq!(selected("3,$"), "three\nfour\nfive\n");
        assert_eq!(selected("$-1"), "five\n");
        assert_eq!(selected("3,"), "three\nfour\nfive\n");
    }

    #[test]
    fn regexps_search_forward_from_the_selection() {
        assert_eq!(selected("/two/,/four/"), "two\nthree\nfour");
        assert_eq!(selected("/^t/"), "t");
        assert_eq!(selected("/^th/+1"), "four\n");
        assert_eq!(selected("/four/-1"), "three\n");
        assert_eq!(selected(r"/a\/b|ive/"), "ive");
    }

    #[test]
    fn braces_outside_repetitions_are_literal_as_in_go() {
        let text = "func main() {\n\tx{2}\n}\n";
        assert_eq!(&text[select(r"/main\(\) {/", text).unwrap()], "main() {");
        assert_eq!(literal_braces("^{{end}}"), r"^\{\{end\}\}");
        assert_eq!(
            literal_braces(r"a{2,3}b{2}c{1,}[{}]\{"),
            r"a{2,3}b{2}c{1,}[{}]\{"
        );
        assert_eq!(select("/^}/", text).unwrap(), 20..21);
        assert_eq!(select("/^func/,/^}/", text).unwrap(), 0..21);
        assert_eq!(select("/main/,/^}", text).unwrap(), 5..21);
    }

    #[test]
    fn a_search_wraps_around() {
        let range = select("/four/,/two/", TEXT).unwrap();
        assert!(range.end < range.start);
    }

    #[test]
    fn characters_count_in_unicode() {
        let text = "héllo\n";
        assert_eq!(select("#2", text).unwrap(), 3..3);
        assert_eq!(select("#2,#4", text).unwrap(), 3..5);
    }

    #[test]
    fn a_last_line_without_newline_is_a_line() {
        assert_eq!(select("2", "a\nb").unwrap(), 2..3);
    }

    #[test]
    fn malformed_and_unmatched_addresses_say_so() {
        for address in ["/two/x", "2,x", "-/two/", "99999999999999999999999"] {
            assert!(
                matches!(select(address, TEXT), Err(AddressError::Syntax(_))),
                "{address}"
            );
        }
        assert!(matches!(select("/(/", TEXT), Err(AddressError::Regex(_))));
        assert!(matches!(
            select("/six/", TEXT),
            Err(AddressError::NoMatch(_))
        ));
        assert!(matches!(
            select("9", TEXT),
            Err(AddressError::OutOfRange(_))
        ));
        assert!(matches!(
            select("1-", TEXT),
            Err(AddressError::OutOfRange(_))
        ));
    }

    #[test]
    fn no_address_panics() {
        let pieces = [
            "/", "\\", ",", "+", "-", "#", "$", "0", "7", "é", "/t/", "#99",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let address = format!("{a}{b}{c}");
                    for text in [TEXT, "", "é\n", "x"] {
                        let _ = select(&address, text);
                    }
                }
            }
        }
    }
}
