//! Legacy `.slide` text markup as HTML: `_italic_`, `*bold*`, `` `code` `` around words (a
//! marker inside becomes a space, a doubled marker the marker itself) and `[[url][label]]`
//! links, the rules of Go present's `style.go`.

use super::html::escape;

/// `text` escaped for HTML, then styled.
pub(super) fn style(text: &str) -> String {
    font(&escape(text))
}

/// Applies font markers and links to already escaped text.
fn font(text: &str) -> String {
    if !text.contains(['[', '`', '_', '*']) {
        return text.to_owned();
    }
    split(text).into_iter().map(styled_word).collect()
}

/// A word (or run of spaces, or link) with its markup applied.
fn styled_word(word: &str) -> String {
    if word.len() < 2 {
        return word.to_owned();
    }
    if let Some((link, _)) = inline_link(word) {
        return link;
    }
    let Some(first) = word.find(['_', '*', '`']) else {
        return word.to_owned();
    };
    // An opening marker starts the word or follows punctuation.
    if word[..first]
        .chars()
        .next_back()
        .is_some_and(|c| !is_punct(c))
    {
        return word.to_owned();
    }
    let (open, marked) = word.split_at(first);
    let marker = char::from(marked.as_bytes()[0]);
    let (open_tag, close_tag) = match marker {
        '_' => ("<i>", "</i>"),
        '*' => ("<b>", "</b>"),
        _ => ("<code>", "</code>"),
    };
    let last = marked.rfind(marker).unwrap_or(0);
    if last == 0 {
        return word.to_owned();
    }
    // A closing marker ends the word or comes before punctuation.
    let tail = &marked[last + 1..];
    if tail.chars().next().is_some_and(|c| !is_punct(c)) {
        return word.to_owned();
    }
    let mut styled = format!("{open}{open_tag}");
    let mut inner = marked[1..last].chars().peekable();
    while let Some(c) = inner.next() {
        if c != marker {
            styled.push(c);
            continue;
        }
        match inner.peek() {
            Some(&next) if next != marker => styled.push(' '),
            Some(_) => {
                styled.push(marker);
                inner.next();
            }
            // The last inner marker pairs with the closing one.
            None => styled.push(marker),
        }
    }
    styled.push_str(close_tag);
    styled.push_str(tail);
    styled
}

/// Go's `unicode.IsPunct` for ASCII; other non-alphanumeric, non-space characters (dashes,
/// quotes) count as punctuation too.
fn is_punct(c: char) -> bool {
    if c.is_ascii() {
        "!\"#%&'()*,-./:;?@[\\]_{}".contains(c)
    } else {
        !c.is_alphanumeric() && !c.is_whitespace()
    }
}

/// Splits text into words and runs of whitespace, keeping each `[[...]]` link (which may
/// hold spaces) as one word.
fn split(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut push = |start: &mut usize, end: usize| {
        let piece = &text[*start..end];
        if let Some(j) = piece.find("[[") {
            if let Some((_, length)) = inline_link(&text[*start + j..]) {
                if j > 0 {
                    words.push(&text[*start..*start + j]);
                }
                words.push(&text[*start + j..*start + j + length]);
                *start += j + length;
                return;
            }
        }
        words.push(piece);
        *start = end;
    };
    let mut was_space = false;
    for (i, c) in text.char_indices() {
        let is_space = c.is_whitespace();
        if i > start && is_space != was_space {
            push(&mut start, i);
        }
        was_space = is_space;
    }
    while start < text.len() {
        push(&mut start, text.len());
    }
    words
}

/// A `[[url]]` or `[[url][label]]` link at the start of `text`: its HTML and length.
fn inline_link(text: &str) -> Option<(String, usize)> {
    let rest = text.strip_prefix("[[")?;
    let end = rest.find("]]")? + 2;
    let url_end = rest.find(']')? + 2;
    let url = &text[2..url_end];
    if url.contains(['<', '>', '"', '{', '}', '|', '\\', '^', '[', ']', ' ', '`']) {
        return None;
    }
    let html = if url_end == end {
        let label = scheme(url).map_or(url, |scheme| {
            let after = &url[scheme.len() + 1..];
            after.strip_prefix("//").unwrap_or(after)
        });
        link_html(url, label)
    } else {
        let label = text[url_end..end].strip_prefix("][")?;
        link_html(url, label)
    };
    Some((html, end + 2))
}

/// An `<a>` opening absolute links in a new window.
fn link_html(href: &str, label: &str) -> String {
    let label = font(label);
    let label = if label.is_empty() {
        href
    } else {
        label.as_str()
    };
    let target = match scheme(href) {
        Some(scheme) if !scheme.eq_ignore_ascii_case("javascript") => "_blank",
        _ => "_self",
    };
    format!(r#"<a href="{href}" target="{target}">{label}</a>"#)
}

/// A URL's scheme (the part before `:`), if it has one.
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_style_words_as_go_does() {
        let cases = [
            ("", ""),
            ("\tx", "\tx"),
            ("_a_", "<i>a</i>"),
            ("*a*", "<b>a</b>"),
            ("`a`", "<code>a</code>"),
            ("_a_b_", "<i>a b</i>"),
            ("_a__b_", "<i>a_b</i>"),
            ("_a___b_", "<i>a_ b</i>"),
            ("*a**b*?", "<b>a*b</b>?"),
            ("((_a_), _b_, _c_).", "((<i>a</i>), <i>b</i>, <i>c</i>)."),
            ("(_a)", "(_a)"),
            ("a_variable_name", "a_variable_name"),
            (
                "_Why_use_scoped__ptr_? Use plain ***ptr* instead.",
                "<i>Why use scoped_ptr</i>? Use plain <b>*ptr</b> instead.",
            ),
            (
                "Markup—_especially_italic_text_—can easily be overused.",
                "Markup—<i>especially italic text</i>—can easily be overused.",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(font(input), want, "{input:?}");
        }
    }

    #[test]
    fn style_escapes_first() {
        assert_eq!(style("_a_<>_b_."), "<i>a &lt;&gt; b</i>.");
        assert_eq!(
            style("*Gophers* are _clearly_ > *cats*!"),
            "<b>Gophers</b> are <i>clearly</i> &gt; <b>cats</b>!"
        );
    }

    #[test]
    fn links_keep_their_spaces() {
        assert_eq!(
            split("my talk ([[http://talks.golang.org/][slides here]])"),
            [
                "my",
                " ",
                "talk",
                " ",
                "(",
                "[[http://talks.golang.org/][slides here]]",
                ")"
            ]
        );
        assert_eq!(
            font("_hey_ [[http://golang.org][so _many_ *Gophers*]] *around*"),
            r#"<i>hey</i> <a href="http://golang.org" target="_blank">so <i>many</i> <b>Gophers</b></a> <b>around</b>"#
        );
        assert_eq!(
            font("Visit [[http://golang.org]] now"),
            r#"Visit <a href="http://golang.org" target="_blank">golang.org</a> now"#
        );
        assert_eq!(
            font("see [[/doc][docs]]"),
            r#"see <a href="/doc" target="_self">docs</a>"#
        );
    }

    #[test]
    fn broken_markup_is_text() {
        for input in [
            "[[",
            "[[x",
            "[[a]",
            "[[a]b]]",
            "_",
            "**",
            "`x",
            "é_é_",
            "[[é][_]]",
        ] {
            let _ = style(input);
        }
    }
}
