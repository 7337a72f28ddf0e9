//! kvd's command line: etcd's member and cluster flags with etcd's names, defaults and
//! `ETCD_*` environment variables, so a script that starts etcd can start kvd.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sinew_kvd::node::{parse_initial_cluster, parse_url, ClusterState, NodeConfig};

/// etcd's space quota when `--quota-backend-bytes` is 0: 2 GiB.
const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// kvd: an etcd-compatible key-value store on Raft.
#[derive(Debug, Parser)]
// Go's flags take the last of repeated values; scripts and test harnesses repeat flags.
#[command(name = "kvd", version, about, args_override_self = true)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: NAME.etcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// This member's client URLs to advertise to the cluster.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise to the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster state: `new` founds the cluster, `existing` joins a running one.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, which keeps clusters that share hosts apart.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Raise alarms when the store's size exceeds this many bytes (0: 2 GiB, etcd's default;
    /// negative: no quota).
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Accepted for compatibility: kvd always serves the v2 API beside v3.
    #[arg(long, env = "ETCD_ENABLE_V2", num_args = 0..=1, default_missing_value = "true")]
    pub enable_v2: Option<bool>,
    /// Log level: debug, info, warn, error (or a tracing filter).
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Accepted for compatibility; kvd always logs events to stderr.
    #[arg(long, env = "ETCD_LOGGER")]
    pub logger: Option<String>,
}

/// etcd's flags are Go flags, which take `-name` as well as `--name`: turn the single-dash
/// long forms into double-dash ones before clap sees them.
pub fn normalise_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(index, arg)| {
            let single_dash_long = index > 0
                && arg.starts_with('-')
                && !arg.starts_with("--")
                && arg.split('=').next().is_some_and(|flag| flag.len() > 2);
            if single_dash_long {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

/// A comma-separated URL list, sorted as etcd's `types.NewURLs` sorts it (members report
/// their URLs in that order).
fn urls(value: &str) -> Vec<String> {
    let mut urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    urls.sort();
    urls
}

impl Flags {
    /// The node settings these flags describe.
    pub fn node_config(&self) -> Result<NodeConfig> {
        let listen = |flag: &'static str, value: &str| {
            urls(value)
                .iter()
                .map(|url| parse_url(flag, url))
                .collect::<Result<Vec<_>, _>>()
        };
        let advertise_peer_urls = urls(&self.initial_advertise_peer_urls);
        for url in &advertise_peer_urls {
            parse_url("--initial-advertise-peer-urls", url)?;
        }
        Ok(NodeConfig {
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name))),
            listen_client: listen("--listen-client-urls", &self.listen_client_urls)?,
            advertise_client_urls: urls(&self.advertise_client_urls),
            listen_peer: listen("--listen-peer-urls", &self.listen_peer_urls)?,
            advertise_peer_urls,
            initial_cluster: parse_initial_cluster(&self.initial_cluster)?,
            initial_cluster_state: self
                .initial_cluster_state
                .parse::<ClusterState>()
                .context("reading --initial-cluster-state")?,
            initial_cluster_token: self.initial_cluster_token.clone(),
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count,
            max_request_bytes: self.max_request_bytes,
            quota_backend_bytes: match self.quota_backend_bytes {
                0 => Some(DEFAULT_QUOTA_BYTES),
                quota => u64::try_from(quota).ok(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            normalise_args(args(&[
                "kvd",
                "-name",
                "a",
                "-data-dir=/d",
                "--name",
                "-h",
                "-"
            ])),
            args(&["kvd", "--name", "a", "--data-dir=/d", "--name", "-h", "-"])
        );
    }

    #[test]
    fn flags_make_a_node_config_with_etcd_defaults() {
        let flags = Flags::parse_from(normalise_args(args(&[
            "kvd",
            "-name",
            "infra1",
            "--initial-cluster",
            "infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:2480",
        ])));
        let config = flags.node_config().unwrap();

        assert_eq!(config.data_dir, PathBuf::from("infra1.etcd"));
        assert_eq!(config.listen_client[0].to_string(), "127.0.0.1:2379");
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.initial_cluster_state, ClusterState::New);
        assert_eq!(config.election_timeout, Duration::from_millis(1000));
        assert_eq!(config.snapshot_count, 100_000);
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value_as_go_flags_do() {
        let flags = Flags::parse_from(normalise_args(args(&[
            "kvd",
            "--name",
            "first",
            "-name",
            "second",
            "-heartbeat-interval=50",
            "--heartbeat-interval",
            "70",
            "--enable-v2=false",
            "--enable-v2",
        ])));
        assert_eq!(flags.name, "second");
        assert_eq!(flags.heartbeat_interval, 70);
        assert_eq!(flags.enable_v2, Some(true));
    }

    #[test]
    fn a_bad_url_names_its_flag() {
        let flags = Flags::parse_from(args(&["kvd", "--listen-client-urls", "unix:///x"]));
        let error = format!("{:#}", flags.node_config().unwrap_err());
        assert!(error.contains("--listen-client-urls"), "{error}");
    }
}
