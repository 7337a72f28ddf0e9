//! A seeded random walk of puts, deletes, transactions and compactions, each command sent
//! through JSON as Raft will, checked against a naive model that keeps a full copy of the
//! key space for every revision.

use std::collections::BTreeMap;

use sinew_etcd_api::txn as ops;
use sinew_kvd::v3::{
    Command, CompactionRequest, CompareResult, DeleteRangeRequest, EventType, KeyValue, KvError,
    PutRequest, RangeRequest, Store, TargetUnion, TxnRequest,
};

use crate::store::common::{compare, put_request};

type Space = BTreeMap<Vec<u8>, KeyValue>;

/// splitmix64: small, seeded, good enough to explore.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// A revision in `low..=high`.
    fn revision_in(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low + 1).expect("a non-empty range");
        low + i64::try_from(self.below(span)).expect("below an i64 span")
    }

    fn key(&mut self) -> String {
        let index = usize::try_from(self.below(6)).expect("below 6");
        ["a", "b", "c", "d", "e", "f"][index].to_string()
    }
}

enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>, Vec<u8>),
}

/// Every revision's key space; index = revision.
struct Model {
    states: Vec<Space>,
}

impl Model {
    fn revision(&self) -> i64 {
        i64::try_from(self.states.len()).expect("a few thousand states") - 1
    }

    /// The key space at `revision`.
    fn at(&self, revision: i64) -> &Space {
        &self.states[usize::try_from(revision).expect("revisions are positive")]
    }

    fn current(&self) -> &Space {
        self.states.last().expect("state")
    }

    fn write(&mut self, changes: &[Change]) {
        let revision = self.revision() + 1;
        let mut next = self.current().clone();
        let mut changed = false;
        for change in changes {
            match change {
                Change::Put(key, value) => {
                    let prev = next.get(key);
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.map_or(revision, |kv| kv.create_revision),
                        mod_revision: revision,
                        version: prev.map_or(1, |kv| kv.version + 1),
                        value: value.clone(),
                        lease: 0,
                    };
                    next.insert(key.clone(), kv);
                    changed = true;
                }
                Change::Delete(key, end) => {
                    let doomed: Vec<Vec<u8>> = next
                        .keys()
                        .filter(|candidate| {
                            if end.is_empty() {
                                *candidate == key
                            } else {
                                *candidate >= key && *candidate < end
                            }
                        })
                        .cloned()
                        .collect();
                    for doomed in doomed {
                        next.remove(&doomed);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.states.push(next);
        }
    }
}

/// A command, the changes the model expects from it, and the error it must end with.
type Step = (Command, Vec<Change>, Option<KvError>);

fn random_command(rng: &mut Rng, model: &Model, store: &Store) -> Step {
    let value = format!("v{}", rng.below(1000));
    match rng.below(10) {
        0..=3 => {
            let key = rng.key();
            let change = Change::Put(key.clone().into(), value.clone().into());
            (Command::Put(put_request(&key, &value)), vec![change], None)
        }
        4 | 5 => {
            let (start, end) = (
                rng.key(),
                if rng.below(2) == 0 {
                    String::new()
                } else {
                    rng.key()
                },
            );
            let command = Command::DeleteRange(DeleteRangeRequest {
                key: start.clone().into(),
                range_end: end.clone().into(),
                prev_kv: rng.below(2) == 0,
            });
            (
                command,
                vec![Change::Delete(start.into(), end.into())],
                None,
            )
        }
        6..=8 => {
            let probe = rng.key();
            let actual = model
                .current()
                .get(probe.as_bytes())
                .map_or(0, |kv| kv.version);
            let guess = if rng.below(2) == 0 {
                actual
            } else {
                actual + 1
            };
            let (first, second) = (rng.key(), rng.key());
            let mut success = vec![ops::put(put_request(&first, &value))];
            let mut changes = vec![Change::Put(first.clone().into(), value.clone().into())];
            if second != first {
                success.push(ops::put(put_request(&second, "t")));
                changes.push(Change::Put(second.into(), b"t".to_vec()));
            }
            success.push(ops::range(RangeRequest {
                key: b"a".to_vec(),
                range_end: b"\0".to_vec(),
                ..RangeRequest::default()
            }));
            let command = Command::Txn(TxnRequest {
                compare: vec![compare(
                    &probe,
                    TargetUnion::Version(guess),
                    CompareResult::Equal,
                )],
                success,
                failure: vec![ops::delete(DeleteRangeRequest {
                    key: probe.clone().into(),
                    ..DeleteRangeRequest::default()
                })],
            });
            if guess == actual {
                (command, changes, None)
            } else {
                (
                    command,
                    vec![Change::Delete(probe.into(), Vec::new())],
                    None,
                )
            }
        }
        _ if store.compacted_revision() == store.revision() => {
            let revision = rng.revision_in(store.revision(), store.revision() + 1);
            let error = if revision > store.revision() {
                KvError::FutureRevision
            } else {
                KvError::Compacted
            };
            (
                Command::Compact(CompactionRequest {
                    revision,
                    ..CompactionRequest::default()
                }),
                Vec::new(),
                Some(error),
            )
        }
        _ => {
            let low = store.compacted_revision() + 1;
            let revision = rng.revision_in(low, store.revision());
            (
                Command::Compact(CompactionRequest {
                    revision,
                    ..CompactionRequest::default()
                }),
                Vec::new(),
                None,
            )
        }
    }
}

fn space_at(store: &Store, revision: i64) -> Space {
    let request = RangeRequest {
        key: b"\0".to_vec(),
        range_end: b"\0".to_vec(),
        revision,
        ..RangeRequest::default()
    };
    let response = store.range(&request).expect("range");
    response
        .kvs
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect()
}

fn replay(mut space: Space, store: &Store, start: i64, model: &Model) -> Space {
    for event in store.events_since(start, b"\0", b"\0").expect("events") {
        let kind = event.r#type();
        let kv = event.kv.expect("an event's key-value");
        let revision = kv.mod_revision;
        if let Some(prev) = &event.prev_kv {
            assert_eq!(model.at(revision - 1).get(&kv.key), Some(prev));
        }
        match kind {
            EventType::Put => {
                assert_eq!(model.at(revision).get(&kv.key), Some(&kv));
                space.insert(kv.key.clone(), kv);
            }
            EventType::Delete => {
                space.remove(&kv.key);
            }
        }
    }
    space
}

fn walk(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut store = Store::new();
    let mut model = Model {
        states: vec![Space::new(), Space::new()],
    };
    let mut emitted = Vec::new();
    for step in 0..steps {
        let (command, changes, error) = random_command(&mut rng, &model, &store);
        let wire: Command = serde_json::from_str(&serde_json::to_string(&command).expect("encode"))
            .expect("decode");
        match store.apply_with_events(&wire) {
            Ok(applied) => {
                assert_eq!(error, None, "seed {seed} step {step}");
                emitted.extend(applied.events);
            }
            Err(refused) => assert_eq!(Some(refused), error, "seed {seed} step {step}"),
        }
        model.write(&changes);
        assert_eq!(
            store.revision(),
            model.revision(),
            "seed {seed} step {step}"
        );
        let low = store.compacted_revision().max(1);
        let probe = rng.revision_in(low, store.revision());
        assert_eq!(
            space_at(&store, probe),
            *model.at(probe),
            "seed {seed} step {step} rev {probe}"
        );
    }
    let compacted = store.compacted_revision();
    for revision in compacted.max(1)..=store.revision() {
        assert_eq!(
            space_at(&store, revision),
            *model.at(revision),
            "seed {seed} rev {revision}"
        );
    }
    let start = compacted.max(1);
    let before = model.at(start - 1).clone();
    assert_eq!(
        &replay(before, &store, start, &model),
        model.current(),
        "seed {seed} replay"
    );
    let kept = store.events_since(start, b"\0", b"\0").expect("events");
    emitted.retain(|event| event.kv.as_ref().is_some_and(|kv| kv.mod_revision >= start));
    if compacted == 0 {
        assert_eq!(emitted, kept, "seed {seed} emitted events");
    }
    let changes = |events: &[sinew_kvd::v3::Event]| -> Vec<(EventType, Option<KeyValue>)> {
        events
            .iter()
            .map(|event| (event.r#type(), event.kv.clone()))
            .collect()
    };
    assert_eq!(
        changes(&emitted),
        changes(&kept),
        "seed {seed} emitted changes"
    );
    let restored = Store::restore(&store.clone().into_snapshot()).expect("restore");
    assert_eq!(restored, store, "seed {seed} snapshot");
    let mut probe_store = store.clone();
    let mut probe_restored = restored;
    let command = Command::Put(PutRequest {
        prev_kv: true,
        ..put_request("a", "after")
    });
    assert_eq!(probe_store.apply(&command), probe_restored.apply(&command));
}

#[test]
fn random_histories_match_a_full_copy_model() {
    for seed in 0..40 {
        walk(seed, 200);
    }
}
