//! Starting, stopping and restarting in-process members on loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sinew_kvd::node::{ClusterState, InitialMember, Node, NodeConfig};
use sinew_kvd::v3::{Command, PutRequest, RangeRequest};

use crate::support::free_addr;

/// A member's settings, kept so it can be restarted on the same directory and ports.
#[derive(Clone)]
pub struct Seat {
    pub config: NodeConfig,
}

pub struct Cluster {
    pub seats: Vec<Seat>,
    pub nodes: Vec<Option<Node>>,
    _dir: tempfile::TempDir,
}

pub fn config(
    name: &str,
    data_dir: PathBuf,
    peer: SocketAddr,
    initial_cluster: Vec<InitialMember>,
    state: ClusterState,
) -> NodeConfig {
    // The client listener is bound only by tests that start a `ClientApi`.
    let client = free_addr();
    NodeConfig {
        name: name.to_owned(),
        data_dir,
        listen_client: vec![client],
        advertise_client_urls: vec![format!("http://{client}")],
        listen_peer: vec![peer],
        advertise_peer_urls: vec![format!("http://{peer}")],
        initial_cluster,
        initial_cluster_state: state,
        initial_cluster_token: "test-cluster".to_owned(),
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(500),
        snapshot_count: 50,
        max_request_bytes: 1536 * 1024,
        quota_backend_bytes: None,
    }
}

impl Cluster {
    pub async fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let peers: Vec<SocketAddr> = (0..size).map(|_| free_addr()).collect();
        let initial: Vec<InitialMember> = peers
            .iter()
            .enumerate()
            .map(|(index, peer)| InitialMember {
                name: format!("n{index}"),
                peer_urls: vec![format!("http://{peer}")],
            })
            .collect();
        let seats: Vec<Seat> = peers
            .iter()
            .enumerate()
            .map(|(index, peer)| Seat {
                config: config(
                    &format!("n{index}"),
                    dir.path().join(format!("n{index}")),
                    *peer,
                    initial.clone(),
                    ClusterState::New,
                ),
            })
            .collect();
        let mut cluster = Self {
            nodes: vec![None; size],
            seats,
            _dir: dir,
        };
        let started = futures::future::join_all(
            cluster
                .seats
                .iter()
                .map(|seat| Node::start(seat.config.clone())),
        )
        .await;
        cluster.nodes = started
            .into_iter()
            .map(|node| Some(node.expect("member starts")))
            .collect();
        cluster.leader().await;
        // As etcd's members serve clients only once published, a test that stops members
        // right after the start must not leave a survivor that never published.
        for node in cluster.nodes.iter().flatten() {
            tokio::time::timeout(Duration::from_secs(20), node.published())
                .await
                .expect("every member publishes itself within 20 s");
        }
        cluster
    }

    pub fn node(&self, index: usize) -> &Node {
        self.nodes[index].as_ref().expect("node is running")
    }

    /// The index of the leader every running node agrees on, waiting up to 10 s.
    pub async fn leader(&self) -> usize {
        for _ in 0..200 {
            let running: Vec<&Node> = self.nodes.iter().flatten().collect();
            let leaders: Vec<Option<u64>> = running.iter().map(|node| node.leader()).collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|other| *other == Some(*leader)) {
                    if let Some(index) = self
                        .nodes
                        .iter()
                        .position(|node| node.as_ref().is_some_and(|node| node.id() == *leader))
                    {
                        return index;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader agreed on within 10 s");
    }

    pub fn follower(&self, leader: usize) -> usize {
        (0..self.nodes.len())
            .find(|index| *index != leader && self.nodes[*index].is_some())
            .expect("a running follower")
    }

    pub async fn stop(&mut self, index: usize) {
        let node = self.nodes[index].take().expect("node is running");
        node.shutdown().await;
    }

    pub async fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none());
        let node = Node::start(self.seats[index].config.clone())
            .await
            .expect("member restarts");
        self.nodes[index] = Some(node);
    }
}

pub fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    })
}

pub async fn get(node: &Node, key: &str, serializable: bool) -> Option<String> {
    let response = node
        .range(
            &RangeRequest {
                key: key.as_bytes().to_vec(),
                ..RangeRequest::default()
            },
            serializable,
        )
        .await
        .expect("range");
    response
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}
