//! What each kvctl command does.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sinew_proto::kv::{
    prefix_end, response_op::Response, AlarmAction, AlarmRequest, AlarmResponse,
    DeleteRangeRequest, KvClient, PutRequest, RangeRequest, SortOrder, SortTarget,
    WatchCreateRequest,
};

use crate::cli::{
    AlarmCommand, Cli, Command, DelArgs, EndpointCommand, Format, GetArgs, LeaseCommand,
    MemberCommand, PutArgs, SnapshotCommand, WatchArgs,
};
use crate::print;

/// Runs the command line's command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let client = KvClient::with_timeout(
        cli.endpoints.clone(),
        Duration::from_secs(cli.command_timeout),
    )
    .context("--endpoints")?;
    let format = cli.write_out;
    match cli.command {
        Command::Get(args) => get(&client, args, format).await?,
        Command::Put(args) => put(&client, args, format).await?,
        Command::Del(args) => del(&client, args, format).await?,
        Command::Watch(args) => watch(&client, args, format).await?,
        Command::Txn => txn(&client, format).await?,
        Command::Compaction { revision } => {
            let answer = client.compact(revision).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => println!("compacted revision {revision}"),
            }
        }
        Command::Lease(command) => lease(&client, command, format).await?,
        Command::Member(command) => member(&client, command, format).await?,
        Command::Endpoint(EndpointCommand::Status) => status(&client, format).await?,
        Command::Endpoint(EndpointCommand::Health) => return health(&client, format).await,
        Command::Alarm(command) => alarm(&client, command, format).await?,
        Command::MoveLeader { target } => return move_leader(&client, &target, format).await,
        Command::Snapshot(SnapshotCommand::Save { file }) => {
            let blob = client.snapshot().await?;
            let partial = file.with_extension("part");
            std::fs::write(&partial, &blob)
                .and_then(|()| std::fs::rename(&partial, &file))
                .with_context(|| format!("writing {}", file.display()))?;
            println!("Snapshot saved at {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn range_of(key: &str, range_end: Option<&str>, prefix: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = key.as_bytes().to_vec();
    match (range_end, prefix) {
        (Some(_), true) => bail!("give either a range end or --prefix, not both"),
        (Some(end), false) => Ok((key, end.as_bytes().to_vec())),
        (None, true) => {
            let end = prefix_end(&key);
            Ok((key, end))
        }
        (None, false) => Ok((key, Vec::new())),
    }
}

async fn get(client: &KvClient, args: GetArgs, format: Format) -> Result<()> {
    let (key, range_end) = range_of(&args.key, args.range_end.as_deref(), args.prefix)?;
    let serializable = match args.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => bail!("--consistency {other:?}: expected l or s"),
    };
    let sort_order = match args.order.as_deref() {
        None => SortOrder::None,
        Some("ASCEND") => SortOrder::Ascend,
        Some("DESCEND") => SortOrder::Descend,
        Some(other) => bail!("--order {other:?}: expected ASCEND or DESCEND"),
    };
    let sort_target = match args.sort_by.as_deref() {
        None | Some("KEY") => SortTarget::Key,
        Some("CREATE") => SortTarget::Create,
        Some("MODIFY") => SortTarget::Mod,
        Some("VALUE") => SortTarget::Value,
        Some("VERSION") => SortTarget::Version,
        Some(other) => bail!("--sort-by {other:?}: expected CREATE, KEY, MODIFY, VALUE or VERSION"),
    };
    let answer = client
        .range(&RangeRequest {
            key,
            range_end,
            limit: args.limit,
            revision: args.rev,
            sort_order: sort_order.into(),
            sort_target: sort_target.into(),
            serializable,
            keys_only: args.keys_only,
            count_only: args.count_only,
            ..RangeRequest::default()
        })
        .await?;
    match format {
        Format::Json => print::json(&answer)?,
        Format::Simple if args.count_only => println!("{}", answer.count),
        Format::Simple => {
            for pair in &answer.kvs {
                print::kv(pair, args.keys_only, args.print_value_only)?;
            }
        }
    }
    Ok(())
}

async fn put(client: &KvClient, args: PutArgs, format: Format) -> Result<()> {
    let value = match args.value {
        Some(value) => value.into_bytes(),
        None if args.ignore_value => Vec::new(),
        None => {
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .context("reading the value from stdin")?;
            value
        }
    };
    let lease = match &args.lease {
        Some(id) => parse_lease(id)?,
        None => 0,
    };
    let answer = client
        .put_request(&PutRequest {
            key: args.key.into_bytes(),
            value,
            lease,
            prev_kv: args.prev_kv,
            ignore_value: args.ignore_value,
            ignore_lease: args.ignore_lease,
        })
        .await?;
    match format {
        Format::Json => print::json(&answer)?,
        Format::Simple => {
            println!("OK");
            if let Some(previous) = &answer.prev_kv {
                print::kv(previous, false, false)?;
            }
        }
    }
    Ok(())
}

async fn del(client: &KvClient, args: DelArgs, format: Format) -> Result<()> {
    let (key, range_end) = range_of(&args.key, args.range_end.as_deref(), args.prefix)?;
    let answer = client
        .delete(&DeleteRangeRequest {
            key,
            range_end,
            prev_kv: args.prev_kv,
        })
        .await?;
    match format {
        Format::Json => print::json(&answer)?,
        Format::Simple => {
            println!("{}", answer.deleted);
            for previous in &answer.prev_kvs {
                print::kv(previous, false, false)?;
            }
        }
    }
    Ok(())
}

async fn watch(client: &KvClient, args: WatchArgs, format: Format) -> Result<()> {
    let (key, range_end) = range_of(&args.key, args.range_end.as_deref(), args.prefix)?;
    let mut watch = client.watch(WatchCreateRequest {
        key,
        range_end,
        start_revision: args.rev,
        prev_kv: args.prev_kv,
        ..WatchCreateRequest::default()
    });
    while let Some(batch) = watch.next().await {
        for event in batch?.events {
            print::event(&event, format)?;
        }
    }
    Ok(())
}

async fn txn(client: &KvClient, format: Format) -> Result<()> {
    let mut script = String::new();
    std::io::stdin()
        .read_to_string(&mut script)
        .context("reading the transaction from stdin")?;
    let request = crate::txn_script::parse(&script)?;
    let answer = client.txn(&request).await?;
    if format == Format::Json {
        return Ok(print::json(&answer)?);
    }
    println!(
        "{}",
        if answer.succeeded {
            "SUCCESS"
        } else {
            "FAILURE"
        }
    );
    for response in &answer.responses {
        println!();
        match &response.response {
            Some(Response::ResponsePut(_)) => println!("OK"),
            Some(Response::ResponseDeleteRange(deleted)) => println!("{}", deleted.deleted),
            Some(Response::ResponseRange(range)) => {
                for pair in &range.kvs {
                    print::kv(pair, false, false)?;
                }
            }
            Some(Response::ResponseTxn(nested)) => print::json(nested)?,
            None => {}
        }
    }
    Ok(())
}

fn parse_lease(id: &str) -> Result<i64> {
    u64::from_str_radix(id, 16)
        .map(u64::cast_signed)
        .with_context(|| format!("lease id {id:?}: expected a hexadecimal number"))
}

fn parse_member(id: &str) -> Result<u64> {
    u64::from_str_radix(id, 16)
        .with_context(|| format!("member id {id:?}: expected a hexadecimal number"))
}

async fn lease(client: &KvClient, command: LeaseCommand, format: Format) -> Result<()> {
    match command {
        LeaseCommand::Grant { ttl } => {
            let answer = client.lease_grant(ttl).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => println!(
                    "lease {} granted with TTL({}s)",
                    print::lease_hex(answer.id),
                    answer.ttl
                ),
            }
        }
        LeaseCommand::Revoke { id } => {
            let id = parse_lease(&id)?;
            let answer = client.lease_revoke(id).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => println!("lease {} revoked", print::lease_hex(id)),
            }
        }
        LeaseCommand::KeepAlive { id, once } => {
            let id = parse_lease(&id)?;
            loop {
                let answer = client.lease_keepalive_once(id).await?;
                if answer.ttl <= 0 {
                    bail!("lease {} expired or revoked", print::lease_hex(id));
                }
                match format {
                    Format::Json => print::json(&answer)?,
                    Format::Simple => println!(
                        "lease {} keepalived with TTL({})",
                        print::lease_hex(id),
                        answer.ttl
                    ),
                }
                if once {
                    break;
                }
                let ttl = u64::try_from(answer.ttl).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(ttl) / 3).await;
            }
        }
        LeaseCommand::Timetolive { id, keys } => {
            let id = parse_lease(&id)?;
            let answer = client.lease_time_to_live(id, keys).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple if answer.ttl == -1 => {
                    println!("lease {} already expired", print::lease_hex(id));
                }
                Format::Simple => {
                    let mut line = format!(
                        "lease {} granted with TTL({}s), remaining({}s)",
                        print::lease_hex(id),
                        answer.granted_ttl,
                        answer.ttl
                    );
                    if keys {
                        let names: Vec<String> = answer
                            .keys
                            .iter()
                            .map(|key| String::from_utf8_lossy(key).into_owned())
                            .collect();
                        line.push_str(&format!(", attached keys([{}])", names.join(" ")));
                    }
                    println!("{line}");
                }
            }
        }
        LeaseCommand::List => {
            let answer = client.leases().await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => {
                    println!("found {} leases", answer.leases.len());
                    for lease in &answer.leases {
                        println!("{}", print::lease_hex(lease.id));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn member(client: &KvClient, command: MemberCommand, format: Format) -> Result<()> {
    match command {
        MemberCommand::List => {
            let answer = client.member_list().await?;
            if format == Format::Json {
                return Ok(print::json(&answer)?);
            }
            for member in &answer.members {
                let started = if member.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                };
                println!(
                    "{}, {started}, {}, {}, {}, {}",
                    print::hex(member.id),
                    member.name,
                    member.peer_ur_ls.join(","),
                    member.client_ur_ls.join(","),
                    member.is_learner
                );
            }
        }
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let answer = client.member_add(peer_urls.clone(), learner).await?;
            if format == Format::Json {
                return Ok(print::json(&answer)?);
            }
            let id = answer.member.as_ref().map_or(0, |member| member.id);
            println!(
                "Member {} added to cluster {}",
                print::hex(id),
                print::hex(answer.header.unwrap_or_default().cluster_id)
            );
            let mut cluster: Vec<String> = Vec::new();
            for member in &answer.members {
                let member_name = if member.id == id { &name } else { &member.name };
                for url in &member.peer_ur_ls {
                    cluster.push(format!("{member_name}={url}"));
                }
            }
            println!();
            println!("ETCD_NAME=\"{name}\"");
            println!("ETCD_INITIAL_CLUSTER=\"{}\"", cluster.join(","));
            println!(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"",
                peer_urls.join(",")
            );
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCommand::Remove { id } => {
            let id = parse_member(&id)?;
            let answer = client.member_remove(id).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => println!(
                    "Member {} removed from cluster {}",
                    print::hex(id),
                    print::hex(answer.header.unwrap_or_default().cluster_id)
                ),
            }
        }
        MemberCommand::Promote { id } => {
            let id = parse_member(&id)?;
            let answer = client.member_promote(id).await?;
            match format {
                Format::Json => print::json(&answer)?,
                Format::Simple => println!(
                    "Member {} promoted in cluster {}",
                    print::hex(id),
                    print::hex(answer.header.unwrap_or_default().cluster_id)
                ),
            }
        }
    }
    Ok(())
}

async fn status(client: &KvClient, format: Format) -> Result<()> {
    for endpoint in client.endpoints() {
        let answer = client.status(endpoint).await?;
        match format {
            Format::Json => print::json(&serde_json::json!({
                "Endpoint": endpoint,
                "Status": answer,
            }))?,
            Format::Simple => println!(
                "{endpoint}, {}, {}, {} B, {}, {}, {}, {}, {}, {}",
                print::hex(answer.header.unwrap_or_default().member_id),
                answer.version,
                answer.db_size,
                answer.leader == answer.header.unwrap_or_default().member_id,
                answer.is_learner,
                answer.raft_term,
                answer.raft_index,
                answer.raft_applied_index,
                answer.errors.join(", ")
            ),
        }
    }
    Ok(())
}

/// Lists or clears alarms; prints the alarms listed or cleared as etcdctl does.
async fn alarm(client: &KvClient, command: AlarmCommand, format: Format) -> Result<()> {
    let listed = client
        .alarm(&AlarmRequest {
            action: AlarmAction::Get.into(),
            ..AlarmRequest::default()
        })
        .await?;
    let answer = match command {
        AlarmCommand::List => listed,
        // etcd's client clears an unnamed alarm by clearing each one raised.
        AlarmCommand::Disarm => {
            let mut cleared = AlarmResponse::default();
            for raised in listed.alarms {
                let answer = client
                    .alarm(&AlarmRequest {
                        action: AlarmAction::Deactivate.into(),
                        member_id: raised.member_id,
                        alarm: raised.alarm,
                    })
                    .await?;
                cleared.alarms.extend(answer.alarms);
            }
            cleared
        }
    };
    match format {
        Format::Json => print::json(&answer)?,
        Format::Simple => {
            for alarm in &answer.alarms {
                println!(
                    "memberID:{} alarm:{} ",
                    alarm.member_id,
                    alarm.alarm().as_str_name()
                );
            }
        }
    }
    Ok(())
}

/// Finds the leader among the endpoints (by their status) and has it hand the lead to
/// `target`; exits 2, as etcdctl, when no endpoint is the leader.
async fn move_leader(client: &KvClient, target: &str, format: Format) -> Result<ExitCode> {
    let target = u64::from_str_radix(target, 16)
        .with_context(|| format!("{target:?} is not a member id in hex"))?;
    let mut leader = None;
    for endpoint in client.endpoints() {
        let status = client.status(endpoint).await?;
        let member = status.header.unwrap_or_default().member_id;
        if member != 0 && member == status.leader {
            leader = Some((endpoint.clone(), member));
            break;
        }
    }
    let Some((endpoint, from)) = leader else {
        eprintln!(
            "Error: no leader endpoint given at {:?}",
            client.endpoints()
        );
        return Ok(ExitCode::from(2));
    };
    let answer = client.move_leader(&endpoint, target).await?;
    match format {
        Format::Json => print::json(&answer)?,
        Format::Simple => println!(
            "Leadership transferred from {} to {}",
            print::hex(from),
            print::hex(target)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks every endpoint with a linearizable read of one key through it alone.
async fn health(client: &KvClient, format: Format) -> Result<ExitCode> {
    let mut healthy = true;
    for endpoint in client.endpoints() {
        let single = KvClient::with_timeout([endpoint.clone()], Duration::from_secs(5))?;
        let started = Instant::now();
        let answer = single.get("health").await;
        let took = started.elapsed();
        let ok = answer.is_ok();
        healthy &= ok;
        let line = match &answer {
            Ok(_) => {
                format!("{endpoint} is healthy: successfully committed proposal: took = {took:?}")
            }
            Err(error) => format!("{endpoint} is unhealthy: failed to commit proposal: {error}"),
        };
        match format {
            Format::Json => print::json(&serde_json::json!({
                "endpoint": endpoint,
                "health": answer.is_ok(),
                "took": format!("{took:?}"),
                "error": answer.err().map(|error| error.to_string()),
            }))?,
            Format::Simple if ok => println!("{line}"),
            Format::Simple => eprintln!("{line}"),
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
