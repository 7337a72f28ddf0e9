//! etcd's key-range conventions: a request names `key` and `range_end`; an empty `range_end`
//! means the single key, `"\0"` means every key from `key` on, anything else the half-open
//! interval `[key, range_end)`.

use std::collections::btree_map::Range;
use std::collections::BTreeMap;
use std::ops::Bound;

/// The set of keys a request's `key` and `range_end` select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// Exactly one key (`range_end` empty).
    Single(&'a [u8]),
    /// Every key `>= key` (`range_end` is `"\0"`).
    From(&'a [u8]),
    /// Every key in `[start, end)`; empty when `end <= start`.
    Interval(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    /// Reads etcd's convention.
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => Self::Single(key),
            [0] => Self::From(key),
            end => Self::Interval(key, end),
        }
    }

    /// The selected entries of `map`, in key order.
    pub(crate) fn select<'m, V>(&self, map: &'m BTreeMap<Vec<u8>, V>) -> Range<'m, Vec<u8>, V> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match *self {
            Self::Single(key) => (Bound::Included(key), Bound::Included(key)),
            Self::From(key) => (Bound::Included(key), Bound::Unbounded),
            Self::Interval(start, end) if start < end => {
                (Bound::Included(start), Bound::Excluded(end))
            }
            Self::Interval(start, _) => (Bound::Included(start), Bound::Excluded(start)),
        };
        map.range::<[u8], _>(bounds)
    }
}

/// The `range_end` that selects every key starting with `prefix`, as etcd's clients compute
/// it (`clientv3.GetPrefixRangeEnd`): the prefix with its last byte below `0xff` incremented
/// and what follows dropped; `"\0"` (every key) when no such byte exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(index) => {
            let mut end = prefix[..=index].to_vec();
            end[index] += 1;
            end
        }
        None => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(key: &[u8], range_end: &[u8]) -> Vec<Vec<u8>> {
        let map: BTreeMap<Vec<u8>, ()> = [&b"a"[..], b"ab", b"b", b"c", b"zzz"]
            .iter()
            .map(|key| (key.to_vec(), ()))
            .collect();
        KeyRange::new(key, range_end)
            .select(&map)
            .map(|(key, _)| key.clone())
            .collect()
    }

    #[test]
    fn empty_range_end_selects_the_single_key() {
        assert_eq!(selected(b"a", b""), vec![b"a".to_vec()]);
        assert!(selected(b"x", b"").is_empty());
    }

    #[test]
    fn nul_range_end_selects_every_key_from_key() {
        assert_eq!(
            selected(b"b", b"\0"),
            vec![b"b".to_vec(), b"c".to_vec(), b"zzz".to_vec()]
        );
        assert_eq!(selected(b"\0", b"\0").len(), 5);
    }

    #[test]
    fn range_end_is_exclusive_and_inverted_ranges_are_empty() {
        assert_eq!(
            selected(b"a", b"c"),
            vec![b"a".to_vec(), b"ab".to_vec(), b"b".to_vec()]
        );
        assert!(selected(b"c", b"a").is_empty());
        assert!(selected(b"c", b"c").is_empty());
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
        assert_eq!(
            selected(b"a", &prefix_end(b"a")),
            vec![b"a".to_vec(), b"ab".to_vec()]
        );
    }
}
