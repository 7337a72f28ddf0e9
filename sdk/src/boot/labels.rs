//! A machine's labels: what its requests say about it (`?uuid=...&mac=...&arch=...`), as
//! matchbox reads them. A MAC address is normalised (`52-54-00-...` from iPXE becomes
//! `52:54:00:...`) and one that does not parse is dropped, so it cannot match a selector.

use std::collections::BTreeMap;
use std::fmt;

pub use sinew_proto::mac::MacAddr as Mac;

/// Labels by name; a name given twice keeps its first value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// The labels in a URL's query string; also says which `mac` was dropped, if any.
    pub fn from_query(query: &str) -> (Self, Option<String>) {
        let mut labels = BTreeMap::new();
        let mut bad_mac = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if labels.contains_key(key.as_ref()) {
                continue;
            }
            let value = if key == "mac" {
                match value.parse::<Mac>() {
                    Ok(mac) => mac.to_string(),
                    Err(_) => {
                        bad_mac = Some(value.into_owned());
                        continue;
                    }
                }
            } else {
                value.into_owned()
            };
            labels.insert(key.into_owned(), value);
        }
        (Self(labels), bad_mac)
    }

    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every label, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Labels from pairs (tests, playbooks).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    /// `key=value` pairs, space-separated, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (key, value) in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_gives_labels_with_the_mac_normalised_and_the_first_value_of_each() {
        let (labels, bad) =
            Labels::from_query("uuid=u-1&mac=52-54-00-AB-cd-01&arch=x86_64&arch=arm64");
        assert_eq!(bad, None);
        assert_eq!(labels.get("mac"), Some("52:54:00:ab:cd:01"));
        assert_eq!(labels.get("arch"), Some("x86_64"));
        assert_eq!(labels.get("uuid"), Some("u-1"));
        assert_eq!(
            labels.to_string(),
            "arch=x86_64 mac=52:54:00:ab:cd:01 uuid=u-1"
        );
    }

    #[test]
    fn a_mac_that_does_not_parse_is_dropped_and_reported() {
        let (labels, bad) = Labels::from_query("mac=nonsense&hostname=a%20b");
        assert_eq!(bad.as_deref(), Some("nonsense"));
        assert_eq!(labels.get("mac"), None);
        assert_eq!(labels.get("hostname"), Some("a b"));
        assert_eq!(Labels::from_query("").0, Labels::default());
    }
}
