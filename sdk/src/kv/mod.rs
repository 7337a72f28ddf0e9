//! The KV cluster from a playbook: the client ([`KvClient`], with endpoint failover,
//! resuming watches and lease keep-alive), a [`Lock`] and an [`Election`] built on leases
//! (read what they promise in [`sinew_proto::kv`]), and `deploy` ([`crate::Run::deploy_kv`]).

pub mod deploy;

pub use deploy::{DeployError, KvDeployment};
pub use sinew_proto::kv::*;
