//! A cluster member as Raft's membership records it: etcd's name, peer URLs and client URLs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One member of the cluster. Raft replicates the membership with these, so every node knows
/// where to send Raft messages (`peer_urls`) and where clients reach each member
/// (`client_urls`, which a member learns of itself once it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's human-readable name (etcd's `--name`).
    pub name: String,
    /// Where other members reach it (etcd's `--initial-advertise-peer-urls`).
    pub peer_urls: Vec<String>,
    /// Where clients reach it (etcd's `--advertise-client-urls`).
    pub client_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.peer_urls.join(","))
    }
}
