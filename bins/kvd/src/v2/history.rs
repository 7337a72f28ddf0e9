//! The last events, kept so that a watch can start from an index in the recent past
//! (etcd's `EventHistory`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::v2::error::{Code, Error};
use crate::v2::node::Event;
use crate::v2::path::child_prefix;

/// How many events are kept (etcd keeps 1000).
pub const HISTORY_CAPACITY: usize = 1000;

/// The most recent [`HISTORY_CAPACITY`] events, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct History {
    events: VecDeque<Event>,
}

impl History {
    /// Records an event, dropping the oldest when full.
    pub(crate) fn push(&mut self, event: Event) {
        if self.events.len() == HISTORY_CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The kept events, oldest first.
    pub(crate) fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// The first event at or after index `since` that a watch on `key` sees, as etcd's
    /// `scan`; fails when `since` is older than the oldest kept event.
    pub(crate) fn scan(
        &self,
        key: &str,
        recursive: bool,
        since: u64,
        store_index: u64,
    ) -> Result<Option<&Event>, Error> {
        let start = self.events.front().map_or(0, Event::index);
        if since < start {
            return Err(Error::new(
                Code::EventIndexCleared,
                format!("the requested history has been cleared [{start}/{since}]"),
                store_index,
            ));
        }
        let prefix = child_prefix(key);
        Ok(self
            .events
            .iter()
            .filter(|event| event.index() >= since && !event.refresh)
            .find(|event| {
                event.node.key == key
                    || (recursive && event.node.key.starts_with(&prefix))
                    || (event.removed_dir() && under_or_at(key, &event.node.key))
            }))
    }
}

/// Whether `key` is `dir` or lies under it.
pub(crate) fn under_or_at(key: &str, dir: &str) -> bool {
    key == dir || key.starts_with(&child_prefix(dir))
}
