//! Image names and the prefixes keys are trusted for, matched on whole path segments.

use std::fmt;

/// Why an image name or prefix was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// The text is empty or has an empty path segment.
    #[error("{what} {text:?} has an empty path segment; expected e.g. example.com/app")]
    EmptySegment {
        /// "image name" or "prefix".
        what: &'static str,
        /// The refused text.
        text: String,
    },
    /// A segment is `.` or `..`, or holds a character outside `[A-Za-z0-9._-]` (and `:` for a
    /// registry port in the first segment).
    #[error("{what} {text:?} has an invalid path segment {segment:?}; segments hold only letters, digits, '.', '_' and '-'")]
    BadSegment {
        /// "image name" or "prefix".
        what: &'static str,
        /// The refused text.
        text: String,
        /// The offending segment.
        segment: String,
    },
}

/// A key prefix such as `example.com/app`: it covers `example.com/app` and
/// `example.com/app/x`, never `example.com/apple`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix {
    segments: Vec<String>,
}

/// A full image name such as `example.com/app:1.0` or `example.com/app@sha256:…`. Trust is
/// decided on the repository part (without tag or digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    full: String,
    repository: Prefix,
}

impl Prefix {
    /// Parses `example.com/app` (a trailing `/` is allowed).
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let segments = split_segments("prefix", trimmed, text)?;
        Ok(Prefix { segments })
    }

    /// The path segments, outermost first (used as directories in the keystore).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Builds a prefix from keystore directory names, checking them like user input.
    pub fn from_segments(segments: Vec<String>) -> Result<Prefix, PrefixError> {
        Prefix::parse(&segments.join("/"))
    }

    /// True when `name`'s repository equals this prefix or lies below it.
    pub fn covers(&self, name: &ImageName) -> bool {
        name.repository.segments.starts_with(&self.segments)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

impl ImageName {
    /// Parses a full image name: at least two segments (`host/path`), an optional `:tag` on
    /// the last segment and an optional `@digest`.
    pub fn parse(text: &str) -> Result<ImageName, PrefixError> {
        let without_digest = text.split_once('@').map_or(text, |(name, _)| name);
        let repository = match without_digest.rsplit_once('/') {
            Some((head, last)) => {
                let last = last.split_once(':').map_or(last, |(repo, _tag)| repo);
                format!("{head}/{last}")
            }
            None => without_digest.to_owned(),
        };
        let segments = split_segments("image name", &repository, text)?;
        Ok(ImageName {
            full: text.to_owned(),
            repository: Prefix { segments },
        })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The repository part, e.g. `example.com/app` for `example.com/app:1.0`.
    pub fn repository(&self) -> &Prefix {
        &self.repository
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

fn split_segments(what: &'static str, path: &str, text: &str) -> Result<Vec<String>, PrefixError> {
    let mut segments = Vec::new();
    for (index, segment) in path.split('/').enumerate() {
        if segment.is_empty() {
            return Err(PrefixError::EmptySegment {
                what,
                text: text.to_owned(),
            });
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || "._-".contains(c) || (index == 0 && c == ':');
        if segment == "." || segment == ".." || !segment.chars().all(allowed) {
            return Err(PrefixError::BadSegment {
                what,
                text: text.to_owned(),
                segment: segment.to_owned(),
            });
        }
        segments.push(segment.to_owned());
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(prefix: &str, name: &str) -> bool {
        Prefix::parse(prefix)
            .unwrap()
            .covers(&ImageName::parse(name).unwrap())
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        assert!(covers("example.com/app", "example.com/app"));
        assert!(covers("example.com/app", "example.com/app/x:1.0"));
        assert!(covers("example.com", "example.com/apple"));
        assert!(!covers("example.com/app", "example.com/apple"));
        assert!(!covers("example.com/app/x", "example.com/app"));
    }

    #[test]
    fn tag_and_digest_do_not_count_as_path() {
        assert!(covers("example.com/app", "example.com/app:v1"));
        assert!(covers("localhost:5000/app", "localhost:5000/app@sha256:00"));
    }

    #[test]
    fn traversal_segments_are_refused() {
        assert!(matches!(
            Prefix::parse("example.com/../etc"),
            Err(PrefixError::BadSegment { .. })
        ));
        assert!(matches!(
            Prefix::parse("example.com//app"),
            Err(PrefixError::EmptySegment { .. })
        ));
        assert!(matches!(
            Prefix::parse(""),
            Err(PrefixError::EmptySegment { .. })
        ));
    }
}
