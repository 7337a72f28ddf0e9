//! The v2 store: a tree of directories and keys with one global index, TTLs, and the event
//! history watches read (etcd's `v2store`). Kept apart from the v3 store, as etcd 3.4 does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::v2::command::{
    Command, CompareAndDelete, CompareAndSwap, Create, Delete, Op, Set, Ttl, Update,
};
use crate::v2::error::{Code, Error};
use crate::v2::history::History;
use crate::v2::node::{Action, Event, Node};
use crate::v2::path::{self, ancestors, child_prefix, clean, is_hidden, MAX_DEPTH};
use crate::v2::stats::{Stats, StatsCounter};

/// One key or directory. The root is implicit: it is always a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The value; `None` for a directory.
    pub(crate) value: Option<String>,
    pub(crate) created_index: u64,
    pub(crate) modified_index: u64,
    /// Unix ms after which the next expiry command removes the node.
    pub(crate) expires_at: Option<u64>,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.value.is_none()
    }
}

/// etcd's v2 state machine, in memory. Applying is deterministic: it reads nothing but the
/// store and the command (whose `now` stands in for a clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    /// The index of the last change (etcd's `X-Etcd-Index`); 0 for a new store.
    pub(crate) index: u64,
    /// Every node but the root, by cleaned path.
    pub(crate) nodes: BTreeMap<String, Entry>,
    pub(crate) history: History,
    pub(crate) stats: Stats,
}

/// What a read or watch start sees of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStart {
    /// A kept event already matches: answer it at once.
    Found(Box<Event>),
    /// Nothing yet: wait for the first applied event at or after `since` that
    /// [`crate::v2::watch_matches`] accepts. `etcd_index` is the store index now.
    Pending {
        /// The first index that may answer the watch.
        since: u64,
        /// The store index when the watch started.
        etcd_index: u64,
    },
}

impl Store {
    /// An empty store at index 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the last change.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The soonest time (unix ms) a node expires, if any has a TTL: the leader proposes
    /// [`Op::Expire`] once its clock reaches it.
    pub fn next_expiry(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter_map(|entry| entry.expires_at)
            .min()
    }

    /// Counts of applied writes by kind and outcome, and of expired nodes.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Applies one committed command, returning the events it made: one for a key
    /// operation, one per removed node for [`Op::Expire`]. A refused command changes
    /// nothing but the failure counters.
    pub fn apply(&mut self, command: &Command) -> Result<Vec<Event>, Error> {
        let now = command.now;
        let (counter, result) = match &command.op {
            Op::Set(set) => (StatsCounter::Set, self.set(set, now)),
            Op::Create(create) => (StatsCounter::Create, self.create(create, now)),
            Op::Update(update) => (StatsCounter::Update, self.update(update, now)),
            Op::CompareAndSwap(cas) => (StatsCounter::CompareAndSwap, self.cas(cas, now)),
            Op::Delete(delete) => (StatsCounter::Delete, self.delete(delete, now)),
            Op::CompareAndDelete(cad) => (StatsCounter::CompareAndDelete, self.cad(cad, now)),
            Op::Expire => return Ok(self.expire(now)),
        };
        self.stats.count(counter, result.is_ok());
        let event = result?;
        self.history.push(event.clone());
        Ok(vec![event])
    }

    /// Reads a key or directory as `GET` does: a directory lists its visible children,
    /// and their children too when `recursive`; children are sorted by key. `now` (unix
    /// ms, the reader's clock) only computes the `ttl` shown.
    pub fn get(&self, key: &str, recursive: bool, now: u64) -> Result<Event, Error> {
        let path = clean(key);
        self.check_depth(&path)?;
        let mut node = match self.lookup(&path)? {
            None => Node {
                dir: true,
                ..Node::default()
            },
            Some(entry) => self.repr(&path, entry, false, now),
        };
        if node.dir {
            let children = self.children(&path, recursive, now);
            node.nodes = (!children.is_empty()).then_some(children);
        }
        Ok(Event {
            action: Action::Get,
            node,
            prev_node: None,
            etcd_index: self.index,
            refresh: false,
        })
    }

    /// Starts a watch on `key` from `wait_index` (0: the next change), as etcd does: the
    /// first kept event at or after it that concerns the key, or where to wait from.
    pub fn watch_start(
        &self,
        key: &str,
        recursive: bool,
        wait_index: u64,
    ) -> Result<WatchStart, Error> {
        let path = clean(key);
        let since = if wait_index == 0 {
            self.index + 1
        } else {
            wait_index
        };
        match self.history.scan(&path, recursive, since, self.index)? {
            Some(event) => Ok(WatchStart::Found(Box::new(Event {
                etcd_index: self.index,
                ..event.clone()
            }))),
            None => Ok(WatchStart::Pending {
                since,
                etcd_index: self.index,
            }),
        }
    }

    fn set(&mut self, set: &Set, now: u64) -> Result<Event, Error> {
        let path = self.writable(&set.key)?;
        // A refresh keeps the value, so the key must exist; a plain set makes it.
        let value = if set.ttl.refresh {
            let entry = self.lookup(&path)?;
            entry
                .and_then(|entry| entry.value.clone())
                .unwrap_or_default()
        } else {
            set.value.clone()
        };
        let mut event = self.create_node(
            &path,
            set.dir,
            value,
            expiry(set.ttl, now),
            true,
            Action::Set,
            now,
        )?;
        event.refresh = set.ttl.refresh;
        Ok(event)
    }

    fn create(&mut self, create: &Create, now: u64) -> Result<Event, Error> {
        // An in-order key may go under the root itself: only the final path must be writable.
        let key = if create.in_order {
            format!("{}/{:020}", clean(&create.key), self.index + 1)
        } else {
            create.key.clone()
        };
        let path = self.writable(&key)?;
        let ttl = Ttl {
            seconds: create.ttl,
            refresh: false,
        };
        let (dir, value) = (create.dir, create.value.clone());
        self.create_node(
            &path,
            dir,
            value,
            expiry(ttl, now),
            false,
            Action::Create,
            now,
        )
    }

    fn update(&mut self, update: &Update, now: u64) -> Result<Event, Error> {
        let path = self.writable(&update.key)?;
        let entry = self.existing(&path)?;
        if entry.is_dir() && !update.value.is_empty() {
            return Err(Error::new(Code::NotFile, path, self.index));
        }
        let value = match (&entry.value, update.ttl.refresh) {
            (Some(old), true) => Some(old.clone()),
            (Some(_), false) => Some(update.value.clone()),
            (None, _) => None,
        };
        let prev = self.repr(&path, &entry, false, now);
        // etcd's node write fails silently on a directory, so an updated directory keeps
        // its modified index while the event carries the new one.
        let modified_index = if entry.is_dir() {
            entry.modified_index
        } else {
            self.index + 1
        };
        let updated = Entry {
            value,
            modified_index,
            expires_at: expiry(update.ttl, now),
            ..entry
        };
        Ok(self.commit(
            Action::Update,
            &path,
            updated,
            prev,
            update.ttl.refresh,
            now,
        ))
    }

    fn cas(&mut self, cas: &CompareAndSwap, now: u64) -> Result<Event, Error> {
        let path = self.writable(&cas.key)?;
        let entry = self.existing(&path)?;
        let current = self.compare(&path, &entry, &cas.prev_value, cas.prev_index)?;
        let value = if cas.ttl.refresh {
            current
        } else {
            cas.value.clone()
        };
        let prev = self.repr(&path, &entry, false, now);
        let updated = Entry {
            value: Some(value),
            modified_index: self.index + 1,
            expires_at: expiry(cas.ttl, now),
            ..entry
        };
        let action = Action::CompareAndSwap;
        Ok(self.commit(action, &path, updated, prev, cas.ttl.refresh, now))
    }

    fn delete(&mut self, delete: &Delete, now: u64) -> Result<Event, Error> {
        let path = self.writable(&delete.key)?;
        let entry = self.existing(&path)?;
        if entry.is_dir() {
            if !(delete.dir || delete.recursive) {
                return Err(Error::new(Code::NotFile, path, self.index));
            }
            if !delete.recursive && self.has_children(&path) {
                return Err(Error::new(Code::DirNotEmpty, path, self.index));
            }
        }
        Ok(self.remove(Action::Delete, &path, &entry, now))
    }

    fn cad(&mut self, cad: &CompareAndDelete, now: u64) -> Result<Event, Error> {
        let path = clean(&cad.key);
        self.check_depth(&path)?;
        let entry = match self.lookup(&path)? {
            Some(entry) => entry.clone(),
            // etcd names the root by its internal path, which its API trims to nothing.
            None => return Err(Error::new(Code::NotFile, "", self.index)),
        };
        self.compare(&path, &entry, &cad.prev_value, cad.prev_index)?;
        Ok(self.remove(Action::CompareAndDelete, &path, &entry, now))
    }

    /// Removes nodes whose TTL ran out by `now`, soonest first (ties by path), each with
    /// its own index and `expire` event.
    fn expire(&mut self, now: u64) -> Vec<Event> {
        let mut due: Vec<(u64, String)> = self
            .nodes
            .iter()
            .filter_map(|(path, entry)| match entry.expires_at {
                Some(at) if at <= now => Some((at, path.clone())),
                _ => None,
            })
            .collect();
        due.sort();
        let mut events = Vec::new();
        for (_, path) in due {
            // An expired directory already took its expired children with it.
            if let Some(entry) = self.nodes.get(&path).cloned() {
                let event = self.remove(Action::Expire, &path, &entry, now);
                self.history.push(event.clone());
                self.stats.expired += 1;
                events.push(event);
            }
        }
        events
    }

    /// Creates or replaces the node at `path` (etcd's `internalCreate`), making missing
    /// parent directories.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        dir: bool,
        value: String,
        expires_at: Option<u64>,
        replace: bool,
        action: Action,
        now: u64,
    ) -> Result<Event, Error> {
        self.check_depth(path)?;
        self.make_parents(path)?;
        let next = self.index + 1;
        let prev = match self.nodes.get(path) {
            Some(_) if !replace => return Err(Error::new(Code::NodeExist, path, self.index)),
            Some(entry) if entry.is_dir() => {
                return Err(Error::new(Code::NotFile, path, self.index));
            }
            Some(entry) => Some(self.repr(path, entry, false, now)),
            None => None,
        };
        let entry = Entry {
            value: (!dir).then_some(value),
            created_index: next,
            modified_index: next,
            expires_at,
        };
        let node = self.repr(path, &entry, false, now);
        self.nodes.insert(path.to_owned(), entry);
        self.index = next;
        Ok(Event {
            action,
            node,
            prev_node: prev,
            etcd_index: next,
            refresh: false,
        })
    }

    /// Stores an updated node with the next index and returns its event.
    fn commit(
        &mut self,
        action: Action,
        path: &str,
        entry: Entry,
        prev: Node,
        refresh: bool,
        now: u64,
    ) -> Event {
        self.index += 1;
        let node = Node {
            modified_index: self.index,
            ..self.repr(path, &entry, false, now)
        };
        self.nodes.insert(path.to_owned(), entry);
        Event {
            action,
            node,
            prev_node: Some(prev),
            etcd_index: self.index,
            refresh,
        }
    }

    /// Removes a node and everything under it with the next index.
    fn remove(&mut self, action: Action, path: &str, entry: &Entry, now: u64) -> Event {
        let next = self.index + 1;
        let prev = self.repr(path, entry, false, now);
        let prefix = child_prefix(path);
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
        self.nodes.remove(path);
        self.index = next;
        Event {
            action,
            node: Node {
                key: path.to_owned(),
                dir: entry.is_dir(),
                modified_index: next,
                created_index: entry.created_index,
                ..Node::default()
            },
            prev_node: Some(prev),
            etcd_index: next,
            refresh: false,
        }
    }

    /// A cleaned path that a write may change: not the root, not too deep.
    fn writable(&self, key: &str) -> Result<String, Error> {
        let path = clean(key);
        if path == "/" {
            return Err(Error::new(Code::RootReadOnly, "/", self.index));
        }
        self.check_depth(&path)?;
        Ok(path)
    }

    fn check_depth(&self, path: &str) -> Result<(), Error> {
        if path::depth(path) > MAX_DEPTH {
            return Err(Error::new(
                Code::InvalidField,
                format!("key has more than {MAX_DEPTH} levels"),
                self.index,
            ));
        }
        Ok(())
    }

    /// The node at a cleaned path (`None` for the root), walking from the root as etcd
    /// does: the first missing node is not found, a key on the way is not a directory.
    fn lookup(&self, path: &str) -> Result<Option<&Entry>, Error> {
        if path == "/" {
            return Ok(None);
        }
        for ancestor in ancestors(path).chain(std::iter::once(path)) {
            let entry = self
                .nodes
                .get(ancestor)
                .ok_or_else(|| self.not_found(ancestor))?;
            if ancestor == path {
                return Ok(Some(entry));
            }
            if !entry.is_dir() {
                return Err(Error::new(Code::NotDir, ancestor, self.index));
            }
        }
        Err(self.not_found(path))
    }

    /// The node at a cleaned path that is not the root, which must exist.
    fn existing(&self, path: &str) -> Result<Entry, Error> {
        self.lookup(path)?
            .cloned()
            .ok_or_else(|| Error::new(Code::RootReadOnly, "/", self.index))
    }

    /// Checks a compare-and-swap or -delete condition on a key, returning its value.
    fn compare(
        &self,
        path: &str,
        entry: &Entry,
        prev_value: &str,
        prev_index: u64,
    ) -> Result<String, Error> {
        let Some(value) = &entry.value else {
            return Err(Error::new(Code::NotFile, path, self.index));
        };
        let index_ok = prev_index == 0 || entry.modified_index == prev_index;
        let value_ok = prev_value.is_empty() || value == prev_value;
        let modified = entry.modified_index;
        let cause = match (value_ok, index_ok) {
            (true, true) => return Ok(value.clone()),
            (false, true) => format!("[{prev_value} != {value}]"),
            (true, false) => format!("[{prev_index} != {modified}]"),
            (false, false) => {
                format!("[{prev_value} != {value}] [{prev_index} != {modified}]")
            }
        };
        Err(Error::new(Code::TestFailed, cause, self.index))
    }

    /// Makes the missing directories above a cleaned path, as a write does.
    fn make_parents(&mut self, path: &str) -> Result<(), Error> {
        for ancestor in ancestors(path) {
            match self.nodes.get(ancestor) {
                Some(entry) if entry.is_dir() => {}
                Some(_) => return Err(Error::new(Code::NotDir, ancestor, self.index)),
                None => {
                    let dir = Entry {
                        value: None,
                        created_index: self.index + 1,
                        modified_index: self.index + 1,
                        expires_at: None,
                    };
                    self.nodes.insert(ancestor.to_owned(), dir);
                }
            }
        }
        Ok(())
    }

    fn not_found(&self, path: &str) -> Error {
        Error::new(Code::KeyNotFound, path, self.index)
    }

    fn has_children(&self, path: &str) -> bool {
        let prefix = child_prefix(path);
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&prefix))
    }

    /// A directory's visible children, sorted by key; each with its own children when
    /// `recursive`.
    fn children(&self, path: &str, recursive: bool, now: u64) -> Vec<Node> {
        let prefix = child_prefix(path);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(key, _)| !key[prefix.len()..].contains('/') && !is_hidden(key))
            .map(|(key, entry)| self.repr(key, entry, recursive, now))
            .collect()
    }

    /// A node as the API shows it (etcd's `Repr`): a directory lists its children only
    /// when `recursive`.
    fn repr(&self, path: &str, entry: &Entry, recursive: bool, now: u64) -> Node {
        let nodes = (entry.is_dir() && recursive)
            .then(|| self.children(path, true, now))
            .filter(|nodes| !nodes.is_empty());
        Node {
            key: path.to_owned(),
            value: entry.value.clone(),
            dir: entry.is_dir(),
            nodes,
            modified_index: entry.modified_index,
            created_index: entry.created_index,
            ..Node::default()
        }
        .with_expiry(entry.expires_at, now)
    }
}

/// When a node written at `now` with these TTL options expires.
fn expiry(ttl: Ttl, now: u64) -> Option<u64> {
    ttl.seconds
        .map(|seconds| now.saturating_add(seconds.saturating_mul(1000)))
}
