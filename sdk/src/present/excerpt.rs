//! What `.code` and `.play` show of a file, as Go's present does: the address's range
//! widened to whole lines, lines ending in `OMIT` dropped, blank lines trimmed at both ends,
//! and `// HL` marks turned into highlighted lines.

use std::ops::Range;

use super::deck::CodeLine;

/// The shown part of a file and what lies around it.
#[derive(Debug)]
pub(super) struct Excerpt {
    /// The shown lines, numbered as in the file.
    pub lines: Vec<CodeLine>,
    /// The file before the widened range.
    pub before: String,
    /// The file after the widened range.
    pub after: String,
}

/// Cuts `range` (maybe reversed, from a wrapped search) of `text` as described above;
/// `highlight` is the word after `HL` on the command line, empty for plain `// HL` marks.
pub(super) fn cut(text: &str, range: Range<usize>, highlight: &str) -> Excerpt {
    let (lo, hi) = if range.start <= range.end {
        (range.start, range.end)
    } else {
        (range.end, range.start)
    };
    let lo = text[..lo].rfind('\n').map_or(0, |i| i + 1);
    let hi = if hi == 0 || text.as_bytes().get(hi - 1) == Some(&b'\n') {
        hi
    } else {
        text[hi..].find('\n').map_or(text.len(), |i| hi + i + 1)
    };
    let first_number = text[..lo].matches('\n').count() + 1;
    let mut lines: Vec<CodeLine> = text[lo..hi]
        .lines()
        .zip(first_number..)
        .filter(|(line, _)| !line.ends_with("OMIT"))
        .map(|(line, number)| marked(line, number, highlight))
        .collect();
    let leading = lines.iter().take_while(|l| l.text.is_empty()).count();
    lines.drain(..leading);
    while lines.last().is_some_and(|l| l.text.is_empty()) {
        lines.pop();
    }
    Excerpt {
        lines,
        before: text[..lo].to_owned(),
        after: text[hi..].to_owned(),
    }
}

/// A line with a `// HL` mark loses it, and is highlighted when the mark's word is
/// `highlight`.
fn marked(line: &str, number: usize, highlight: &str) -> CodeLine {
    match line.rfind(" // HL") {
        Some(at) if at > 0 => CodeLine {
            text: line[..at].to_owned(),
            number,
            highlighted: line[at + " // HL".len()..] == *highlight,
        },
        _ => CodeLine {
            text: line.to_owned(),
            number,
            highlighted: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "package main\n\n// START OMIT\nfunc main() {\n\tfmt.Println(1) // HL\n\tfmt.Println(2) // HLtwo\n}\n// END OMIT\n";

    #[test]
    fn omit_lines_go_and_numbers_stay_the_files() {
        let excerpt = cut(FILE, 14..FILE.len(), "");
        let shown: Vec<_> = excerpt
            .lines
            .iter()
            .map(|l| (l.number, l.text.as_str(), l.highlighted))
            .collect();
        assert_eq!(
            shown,
            [
                (4, "func main() {", false),
                (5, "\tfmt.Println(1)", true),
                (6, "\tfmt.Println(2)", false),
                (7, "}", false),
            ]
        );
        assert_eq!(excerpt.before, "package main\n\n");
        assert_eq!(excerpt.after, "");
    }

    #[test]
    fn a_highlight_word_picks_its_lines() {
        let excerpt = cut(FILE, 0..FILE.len(), "two");
        let lit: Vec<_> = excerpt
            .lines
            .iter()
            .filter(|l| l.highlighted)
            .map(|l| l.number)
            .collect();
        assert_eq!(lit, [6]);
    }

    #[test]
    fn a_reversed_range_is_the_same_range() {
        let forward = cut(FILE, 3..20, "");
        let reversed = cut(FILE, Range { start: 20, end: 3 }, "");
        assert_eq!(forward.lines, reversed.lines);
    }
}
