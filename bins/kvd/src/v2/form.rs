//! Query strings and `application/x-www-form-urlencoded` bodies, parsed as strictly as Go's
//! `url.ParseQuery`, so that what etcd refuses as an invalid form is refused here too.

use thiserror::Error;

/// Why a query string or form body could not be parsed; the text is Go's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    #[error("invalid URL escape {0:?}")]
    BadEscape(String),
    /// A `;` separator, which Go no longer accepts.
    #[error("invalid semicolon separator in query")]
    Semicolon,
    /// Decoded bytes that are not UTF-8.
    #[error("invalid UTF-8 in {0:?}")]
    NotUtf8(String),
}

/// Request parameters in Go's `Request.Form` order: body values before query values, so the
/// first value of a name is the body's when both have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Appends the pairs of an encoded query string or form body.
    pub fn extend_from(&mut self, encoded: &str) -> Result<(), FormError> {
        for part in encoded.split('&') {
            if part.contains(';') {
                return Err(FormError::Semicolon);
            }
            if part.is_empty() {
                continue;
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            self.pairs.push((decode(name)?, decode(value)?));
        }
        Ok(())
    }

    /// The first value of `name`, if given.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of `name`, or empty (Go's `FormValue`).
    pub fn value(&self, name: &str) -> &str {
        self.first(name).unwrap_or("")
    }
}

/// Percent-decodes a URL path, where `+` is itself.
pub fn decode_path(text: &str) -> Result<String, FormError> {
    percent_decode(text, false)
}

/// Percent-decodes one name or value, with `+` as a space.
fn decode(text: &str) -> Result<String, FormError> {
    percent_decode(text, true)
}

fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, FormError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let escape = bytes.get(at + 1..at + 3);
                let byte = escape
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        let end = (at + 3).min(bytes.len());
                        FormError::BadEscape(String::from_utf8_lossy(&bytes[at..end]).into())
                    })?;
                out.push(byte);
                at += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let mut form = Form::default();
        form.extend_from("value=a%20b+c&ttl=5&flag").unwrap();
        form.extend_from("value=second").unwrap();
        assert_eq!(form.first("value"), Some("a b c"));
        assert_eq!(form.first("flag"), Some(""));
        assert_eq!(form.value("missing"), "");
    }

    #[test]
    fn refuses_what_go_refuses() {
        let mut form = Form::default();
        assert_eq!(
            form.extend_from("value=%zz"),
            Err(FormError::BadEscape("%zz".into()))
        );
        assert_eq!(form.extend_from("a=1;b=2"), Err(FormError::Semicolon));
        assert_eq!(
            form.extend_from("v=%4").unwrap_err().to_string(),
            "invalid URL escape \"%4\""
        );
    }
}
