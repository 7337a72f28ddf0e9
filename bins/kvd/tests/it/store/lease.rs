//! Leases: grant, attach, revoke, listing.

use sinew_kvd::v3::{
    AtRevision as _, Command, KvError, Lease, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    Response, Store, MAX_LEASE_TTL,
};

use crate::store::common::*;

fn put_with_lease(store: &mut Store, key: &str, lease: i64) -> i64 {
    apply_put(
        store,
        PutRequest {
            lease,
            ..put_request(key, "v")
        },
    )
}

fn revoke(store: &mut Store, id: i64) -> Result<i64, KvError> {
    match store.apply(&Command::LeaseRevoke(LeaseRevokeRequest { id }))? {
        Response::LeaseRevoke(response) => Ok(response.revision()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn grant_with_id_zero_allocates_a_free_id_and_keeps_the_ttl() {
    let mut store = Store::new();
    assert_eq!(grant(&mut store, 2, 10), 2);
    assert_eq!(grant(&mut store, 0, 30), 1);
    assert_eq!(grant(&mut store, 0, 40), 3, "allocation skips ids in use");
    assert_eq!(
        store.leases(),
        vec![
            Lease { id: 1, ttl: 30 },
            Lease { id: 2, ttl: 10 },
            Lease { id: 3, ttl: 40 }
        ]
    );
    assert_eq!(store.revision(), 1, "grants do not change the revision");
}

#[test]
fn grant_of_an_existing_id_is_lease_exists() {
    let mut store = Store::new();
    grant(&mut store, 5, 10);
    let error = store
        .apply(&Command::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 }))
        .expect_err("exists");
    assert_eq!(error.to_string(), "etcdserver: lease already exists");
}

#[test]
fn grant_above_the_maximum_ttl_is_refused() {
    let mut store = Store::new();
    let request = LeaseGrantRequest {
        id: 0,
        ttl: MAX_LEASE_TTL + 1,
    };
    assert_eq!(
        store.apply(&Command::LeaseGrant(request)),
        Err(KvError::LeaseTtlTooLarge)
    );
}

#[test]
fn put_attaches_and_time_to_live_lists_attached_keys() {
    let mut store = Store::new();
    let lease = grant(&mut store, 9, 60);
    put_with_lease(&mut store, "b", lease);
    put_with_lease(&mut store, "a", lease);
    put(&mut store, "c", "no lease");
    let info = store.lease_info(lease).expect("lease");
    assert_eq!((info.id, info.granted_ttl), (9, 60));
    assert_eq!(info.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(get(&store, "a").expect("a").lease, 9);
    assert_eq!(store.lease_info(10), None);
}

#[test]
fn put_without_a_lease_detaches_the_key() {
    let mut store = Store::new();
    let lease = grant(&mut store, 9, 60);
    put_with_lease(&mut store, "a", lease);
    put(&mut store, "a", "plain");
    assert!(store.lease_info(lease).expect("lease").keys.is_empty());
    revoke(&mut store, lease).expect("revoke");
    assert!(
        get(&store, "a").is_some(),
        "a detached key survives the revocation"
    );
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision() {
    let mut store = Store::new();
    let lease = grant(&mut store, 1, 60);
    for key in ["a", "b", "c"] {
        put_with_lease(&mut store, key, lease);
    }
    put(&mut store, "z", "stays");
    assert_eq!(store.revision(), 5);
    assert_eq!(revoke(&mut store, lease), Ok(6));
    assert_eq!(keys(&range(&store, &range_request("\0", "\0"))), ["z"]);
    let deletes = store.events_since(6, b"\0", b"\0").expect("events");
    assert_eq!(deletes.len(), 3);
    assert!(deletes
        .iter()
        .all(|event| event.kv.as_ref().is_some_and(|kv| kv.mod_revision == 6)));
    assert!(store.leases().is_empty());
}

#[test]
fn revoke_of_a_lease_without_keys_does_not_bump_the_revision() {
    let mut store = Store::new();
    let lease = grant(&mut store, 1, 60);
    assert_eq!(revoke(&mut store, lease), Ok(1));
    assert_eq!(store.lease_info(lease), None);
}

#[test]
fn revoke_of_an_unknown_lease_is_lease_not_found() {
    let mut store = Store::new();
    assert_eq!(revoke(&mut store, 3), Err(KvError::LeaseNotFound));
}

#[test]
fn revoked_lease_cannot_be_used_by_a_put() {
    let mut store = Store::new();
    let lease = grant(&mut store, 1, 60);
    revoke(&mut store, lease).expect("revoke");
    let request = PutRequest {
        lease,
        ..put_request("a", "v")
    };
    assert_eq!(
        store.apply(&Command::Put(request)),
        Err(KvError::LeaseNotFound)
    );
}
