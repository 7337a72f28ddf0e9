//! Key paths as etcd's v2 store sees them: cleaned like Go's `path.Clean` under `/`, so
//! `a//b/../c/` is `/a/c` and nothing climbs above the root.

/// The most path segments a key may have. Deeper keys are refused so that answering a
/// recursive read, which nests one JSON object per level, stays within the stack.
pub const MAX_DEPTH: usize = 512;

/// The absolute, cleaned form of `key`: `/` for the root.
pub(crate) fn clean(key: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in key.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    format!("/{}", segments.join("/"))
}

/// How many segments a cleaned path has (0 for the root).
pub(crate) fn depth(path: &str) -> usize {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .count()
}

/// The proper ancestors of a cleaned path, outermost first, root excluded:
/// `/a/b/c` gives `/a`, `/a/b`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(at, _)| at)
        .filter(|&at| at > 0)
        .map(move |at| &path[..at])
}

/// The prefix every descendant of a cleaned path starts with.
pub(crate) fn child_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    }
}

/// Whether the node's own name starts with `_`, which hides it from listings.
pub(crate) fn is_hidden(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go_path_clean() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a"), "/a");
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/a/../../b"), "/b");
    }

    #[test]
    fn lists_ancestors_outermost_first() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a", "/a/b"]);
        assert_eq!(ancestors("/a").count(), 0);
        assert_eq!(depth("/a/b/c"), 3);
        assert_eq!(depth("/"), 0);
    }

    #[test]
    fn hidden_names_start_with_underscore() {
        assert!(is_hidden("/a/_b"));
        assert!(!is_hidden("/_a/b"));
    }
}
