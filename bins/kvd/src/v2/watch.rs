//! Which applied changes answer a waiting watch (etcd's `watcherHub.notify`).

use crate::v2::history::under_or_at;
use crate::v2::node::Event;
use crate::v2::path::{child_prefix, clean};

/// Whether a newly applied `event` answers a watch on `key` waiting from index `since`:
/// a change to the key itself; with `recursive`, a change below it unless a hidden (`_`)
/// name lies between; or the removal of a directory holding the key. TTL refreshes never
/// answer a watch.
pub fn watch_matches(event: &Event, key: &str, recursive: bool, since: u64) -> bool {
    if event.refresh || event.index() < since {
        return false;
    }
    let key = clean(key);
    let changed = &event.node.key;
    if *changed == key {
        return true;
    }
    let below = changed.starts_with(&child_prefix(&key));
    if recursive && below && !hidden_between(&key, changed) {
        return true;
    }
    event.removed_dir() && under_or_at(&key, changed)
}

/// Whether a name starting with `_` lies on the way from `watched` down to `changed`.
fn hidden_between(watched: &str, changed: &str) -> bool {
    changed[watched.len()..]
        .split('/')
        .any(|segment| segment.starts_with('_'))
}
