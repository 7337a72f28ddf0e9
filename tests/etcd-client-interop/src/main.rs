//! One scripted session through the `etcd-client` crate against the endpoint given as the
//! only argument, printing what a server answered in a form that is the same for etcd and
//! kvd when they behave the same (no member or lease ids, no timings).

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseTimeToLiveOptions, LockOptions,
    PutOptions, ResignOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .ok_or("usage: sinew-etcd-client-interop HOST:PORT")?;
    let mut client = Client::connect([endpoint], None).await?;

    let put = client.put("a", "1", None).await?;
    println!("put a: revision {}", revision(put.header()));
    let put = client
        .put("b", "2", Some(PutOptions::new().with_prev_key()))
        .await?;
    println!(
        "put b: revision {}, prev {:?}",
        revision(put.header()),
        put.prev_key().is_some()
    );
    client.put("b", "3", None).await?;
    let all = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_from_key()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await?;
    for kv in all.kvs() {
        println!(
            "kv {}={} create {} mod {} version {}",
            kv.key_str()?,
            kv.value_str()?,
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        );
    }
    println!("count {} more {}", all.count(), all.more());

    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("a", "10", None), TxnOp::get("a", None)])
        .or_else([TxnOp::put("a", "never", None)]);
    let answered = client.txn(txn).await?;
    println!(
        "txn succeeded {} at revision {}, {} answers",
        answered.succeeded(),
        revision(answered.header()),
        answered.op_responses().len()
    );

    let mut watch = client
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(1)
                    .with_prev_key(),
            ),
        )
        .await?;
    let mut events = 0;
    while events < 4 {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await??
            .ok_or("the watch ended")?;
        for event in message.events() {
            let kv = event.kv().ok_or("an event without its key")?;
            let kind = match event.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            println!(
                "event {kind} {}={} at {} prev {:?}",
                kv.key_str()?,
                kv.value_str()?,
                kv.mod_revision(),
                event
                    .prev_kv()
                    .map(|prev| prev.value_str().map(str::to_owned))
            );
            events += 1;
        }
    }

    let lease = client.lease_grant(60, None).await?;
    println!("lease ttl {}", lease.ttl());
    client
        .put(
            "leased",
            "x",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await?;
    let alive = client
        .lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    println!(
        "lease granted {} keys {:?}",
        alive.granted_ttl(),
        alive.keys()
    );
    let (mut keeper, mut renewals) = client.lease_keep_alive(lease.id()).await?;
    keeper.keep_alive().await?;
    let renewed = renewals.message().await?.ok_or("no keep-alive answer")?;
    println!("lease renewed to {}", renewed.ttl());

    let lock = client
        .lock("door", Some(LockOptions::new().with_lease(lease.id())))
        .await?;
    let key = String::from_utf8(lock.key().to_vec())?;
    println!("lock key starts door/: {}", key.starts_with("door/"));
    client.unlock(lock.key()).await?;
    // Without a lease, etcd's server grants one for the lock (60 s, not kept alive).
    let unleased = client.lock("gate", None).await?;
    let held = client.get(unleased.key(), None).await?;
    println!(
        "a lock without a lease holds one: {}",
        held.kvs().first().is_some_and(|kv| kv.lease() != 0)
    );
    client.unlock(unleased.key()).await?;

    let campaign = client.campaign("chair", "me", lease.id()).await?;
    let leader = campaign.leader().ok_or("no leader key")?.clone();
    let current = client.leader("chair").await?;
    println!(
        "leader value {}",
        current
            .kv()
            .map(|kv| kv.value_str().unwrap_or("?"))
            .unwrap_or("none")
    );
    client
        .resign(Some(ResignOptions::new().with_leader(leader)))
        .await?;
    match client.leader("chair").await {
        Ok(_) => println!("a leader after resigning"),
        Err(error) => println!("after resigning: {error}"),
    }

    client.lease_revoke(lease.id()).await?;
    let gone = client.get("leased", None).await?;
    println!("leased key after revoke: {}", gone.count());

    let compacted = client.compact(3, None).await?;
    println!("compacted at revision {}", revision(compacted.header()));
    match client
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
    {
        Ok(_) => println!("read below the compaction"),
        Err(error) => println!("read below the compaction: {error}"),
    }
    match client.put("", "x", None).await {
        Ok(_) => println!("put an empty key"),
        Err(error) => println!("empty key: {error}"),
    }
    let status = client.status().await?;
    println!(
        "server version 3.4: {}",
        status.version().starts_with("3.4.")
    );
    println!("members {}", client.member_list().await?.members().len());
    Ok(())
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision())
}
