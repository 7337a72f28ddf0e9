//! kvctl's command line, in etcdctl's (v3) shape: the same command names, flags and
//! `ETCDCTL_*` environment variables for the common cases.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kvctl: a command-line client for kvd (and etcd) clusters.
#[derive(Debug, Parser)]
#[command(name = "kvctl", version, about)]
pub struct Cli {
    /// Comma-separated client URLs; calls fail over to the next one.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Output format.
    #[arg(short = 'w', long, global = true, value_enum, default_value = "simple")]
    pub write_out: Format,
    /// How long one call may take on one endpoint, in seconds.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_COMMAND_TIMEOUT",
        default_value_t = 5
    )]
    pub command_timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines, as etcdctl prints them.
    Simple,
    /// The server's JSON answer, one object per line.
    Json,
}

/// kvctl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gets a key or a range of keys.
    Get(GetArgs),
    /// Puts a key (the value is read from stdin when not given).
    Put(PutArgs),
    /// Deletes a key or a range of keys.
    Del(DelArgs),
    /// Watches a key or a range of keys and prints every change.
    Watch(WatchArgs),
    /// Runs a transaction read from stdin: compares, a blank line, success requests, a blank
    /// line, failure requests (etcdctl's non-interactive format).
    Txn,
    /// Drops history below a revision.
    Compaction {
        /// The revision.
        revision: i64,
    },
    /// Lease commands.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Membership commands.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Endpoint commands.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Snapshot commands.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Alarm commands.
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Hands the lead to another voting member (found through the endpoints' status).
    MoveLeader {
        /// The member's id, in hex as `member list` prints it.
        target: String,
    },
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    pub key: String,
    /// The end of the range (exclusive).
    pub range_end: Option<String>,
    /// Every key that starts with KEY.
    #[arg(long)]
    pub prefix: bool,
    /// At most this many keys.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Read at this revision.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Print keys only.
    #[arg(long)]
    pub keys_only: bool,
    /// Print only the count.
    #[arg(long)]
    pub count_only: bool,
    /// Print values only.
    #[arg(long)]
    pub print_value_only: bool,
    /// Consistency: l (linearizable) or s (serializable).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Sort order: ASCEND or DESCEND.
    #[arg(long)]
    pub order: Option<String>,
    /// Sort target: CREATE, KEY, MODIFY, VALUE or VERSION.
    #[arg(long)]
    pub sort_by: Option<String>,
}

/// `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value; read from stdin when absent.
    pub value: Option<String>,
    /// Attach the key to this lease (hexadecimal id).
    #[arg(long)]
    pub lease: Option<String>,
    /// Print the previous pair.
    #[arg(long)]
    pub prev_kv: bool,
    /// Keep the current value.
    #[arg(long)]
    pub ignore_value: bool,
    /// Keep the current lease.
    #[arg(long)]
    pub ignore_lease: bool,
}

/// `del`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key.
    pub key: String,
    /// The end of the range (exclusive).
    pub range_end: Option<String>,
    /// Every key that starts with KEY.
    #[arg(long)]
    pub prefix: bool,
    /// Print the deleted pairs.
    #[arg(long)]
    pub prev_kv: bool,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The key.
    pub key: String,
    /// The end of the range (exclusive).
    pub range_end: Option<String>,
    /// Every key that starts with KEY.
    #[arg(long)]
    pub prefix: bool,
    /// Start from this revision.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Print the previous pair of each change.
    #[arg(long)]
    pub prev_kv: bool,
}

/// `lease ...`.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grants a lease of TTL seconds.
    Grant {
        /// Seconds.
        ttl: i64,
    },
    /// Revokes a lease and deletes its keys.
    Revoke {
        /// The lease (hexadecimal).
        id: String,
    },
    /// Keeps a lease alive until interrupted.
    KeepAlive {
        /// The lease (hexadecimal).
        id: String,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Shows a lease's remaining TTL.
    Timetolive {
        /// The lease (hexadecimal).
        id: String,
        /// List its keys too.
        #[arg(long)]
        keys: bool,
    },
    /// Lists every lease.
    List,
}

/// `member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Lists the members.
    List,
    /// Adds a member.
    Add {
        /// Its name (for the `ETCD_*` lines printed to start it with).
        name: String,
        /// Its peer URLs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
        /// Add it as a learner.
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member.
    Remove {
        /// Its id (hexadecimal).
        id: String,
    },
    /// Makes a learner a voter.
    Promote {
        /// Its id (hexadecimal).
        id: String,
    },
}

/// `endpoint ...`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Shows each endpoint's status.
    Status,
    /// Checks each endpoint's health (a linearizable read through it).
    Health,
}

/// `alarm ...`.
#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Lists every raised alarm.
    List,
    /// Clears every raised alarm.
    Disarm,
}

/// `snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Saves the store of the first endpoint that answers to FILE.
    Save {
        /// Where to write it.
        file: std::path::PathBuf,
    },
}
