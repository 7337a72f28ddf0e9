//! The title block, as Go's present writes it: the title line, then optional subtitle,
//! date and `Tags:` lines, a blank line, and author blocks separated by blank lines. sinew
//! adds a `Lab:` line naming the guests that `guest=` blocks run on:
//! `Lab: amd=x86_64 arm=aarch64`.

use super::deck::{Author, AuthorLine, LabMachine, Link};
use super::error::DeckError;
use super::origin::Origin;

/// The title block's content.
#[derive(Debug, Default)]
pub(super) struct TitleBlock {
    pub title: String,
    pub subtitle: Option<String>,
    pub date: Option<String>,
    pub tags: Vec<String>,
    pub lab: Vec<LabMachine>,
    pub authors: Vec<Author>,
}

/// Reads the title block from its lines (numbered, without comments and notes); a
/// Markdown title line starts with `#`, which is dropped.
pub(super) fn parse(lines: &[(usize, &str)], origin: &Origin) -> Result<TitleBlock, DeckError> {
    let mut rest = lines.iter().skip_while(|(_, text)| text.trim().is_empty());
    let Some((_, title)) = rest.next() else {
        return Err(DeckError::MissingTitle {
            file: origin.file(),
            line: lines.last().map_or(1, |(number, _)| number + 1),
        });
    };
    let mut block = TitleBlock {
        title: title.strip_prefix('#').unwrap_or(title).trim().to_owned(),
        ..TitleBlock::default()
    };
    for &(number, text) in rest.by_ref() {
        if text.trim().is_empty() {
            break;
        }
        if let Some(tags) = text.strip_prefix("Tags:") {
            block
                .tags
                .extend(tags.split(',').map(|tag| tag.trim().to_owned()));
        } else if let Some(lab) = text.strip_prefix("Lab:") {
            block.lab = lab_machines(lab).map_err(|expected| DeckError::BadLab {
                file: origin.file(),
                line: number,
                text: text.to_owned(),
                expected,
            })?;
        } else if text.starts_with("Summary:") || text.starts_with("OldURL:") {
            // For Go's blog; a deck has no use for them.
        } else if is_date(text) {
            block.date = Some(text.to_owned());
        } else if block.subtitle.is_none() {
            block.subtitle = Some(text.to_owned());
        } else {
            return Err(DeckError::BadHeader {
                file: origin.file(),
                line: number,
                text: text.to_owned(),
            });
        }
    }
    let mut author = Vec::new();
    for &(_, text) in rest {
        if text.trim().is_empty() {
            if !author.is_empty() {
                block.authors.push(Author {
                    lines: std::mem::take(&mut author),
                });
            }
            continue;
        }
        author.push(author_line(text));
    }
    if !author.is_empty() {
        block.authors.push(Author { lines: author });
    }
    Ok(block)
}

/// The machines of a `Lab:` line: `NAME=ARCH` words, each name once.
fn lab_machines(words: &str) -> Result<Vec<LabMachine>, String> {
    const EXPECTED: &str = "NAME=ARCH words such as `amd=x86_64 arm=aarch64`";
    let mut machines: Vec<LabMachine> = Vec::new();
    for word in words.split_whitespace() {
        let (name, arch) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?} is not NAME=ARCH: expected {EXPECTED}"))?;
        let arch = arch
            .parse()
            .map_err(|_| format!("unknown architecture {arch:?}: expected x86_64 or aarch64"))?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(format!(
                "bad machine name {name:?}: expected letters, digits, - or _"
            ));
        }
        if machines.iter().any(|m| m.name == name) {
            return Err(format!("machine {name} is named twice"));
        }
        machines.push(LabMachine {
            name: name.to_owned(),
            arch,
        });
    }
    if machines.is_empty() {
        return Err(format!("no machines: expected {EXPECTED}"));
    }
    Ok(machines)
}

/// `@handle`, a URL (anything with `:`) or an email become links labelled as written.
fn author_line(text: &str) -> AuthorLine {
    let link = |url: String| {
        AuthorLine::Link(Link {
            url,
            label: text.to_owned(),
        })
    };
    if let Some(handle) = text.strip_prefix('@') {
        link(format!("https://twitter.com/{handle}"))
    } else if text.contains(':') {
        link(text.to_owned())
    } else if text.contains('@') {
        link(format!("mailto:{text}"))
    } else {
        AuthorLine::Text(text.to_owned())
    }
}

/// Go's date lines: `2 Jan 2006` or `15:04 2 Jan 2006`.
fn is_date(text: &str) -> bool {
    let words: Vec<&str> = text.split(' ').collect();
    let date = match words.as_slice() {
        [clock, date @ ..] if date.len() == 3 && is_clock(clock) => date,
        date => date,
    };
    let [day, month, year] = date else {
        return false;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    digits(day, 1..=2).is_some_and(|d| (1..=31).contains(&d))
        && MONTHS.iter().any(|m| m.eq_ignore_ascii_case(month))
        && digits(year, 4..=4).is_some()
}

/// `15:04`: an hour of one or two digits and two-digit minutes.
fn is_clock(text: &str) -> bool {
    text.split_once(':').is_some_and(|(hour, minute)| {
        digits(hour, 1..=2).is_some_and(|h| h < 24) && digits(minute, 2..=2).is_some_and(|m| m < 60)
    })
}

/// `text` as a number when it is only ASCII digits, as many as `count` allows.
fn digits(text: &str, count: std::ops::RangeInclusive<usize>) -> Option<u32> {
    let all_digits = text.bytes().all(|b| b.is_ascii_digit());
    if all_digits && count.contains(&text.len()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gos_two_layouts() {
        for date in [
            "2 Jan 2006",
            "15:04 2 Jan 2006",
            "9 mar 2020",
            "31 Dec 1999",
        ] {
            assert!(is_date(date), "{date}");
        }
        for text in [
            "Jan 2 2006",
            "2 January 2006",
            "32 Jan 2006",
            "24:00 2 Jan 2006",
            "A talk",
            "",
        ] {
            assert!(!is_date(text), "{text}");
        }
    }
}
