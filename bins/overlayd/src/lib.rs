//! overlayd: flannel's VXLAN overlay, in Rust. Every host leases a subnet of the cluster
//! network in the KV store (etcd's v3 API, served by kvd or etcd), and for every other
//! host's lease keeps a route, a permanent neighbour and an FDB entry on its VXLAN device,
//! so that containers on any host reach containers on any other.
//!
//! The binary is a thin command line over [`daemon::run`]; the kernel is reached through
//! the [`dataplane::Dataplane`] trait, implemented with rtnetlink by
//! [`dataplane::Netlink`].

#![warn(missing_docs)]

pub mod alloc;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod duration;
pub mod fastpath;
pub mod ipv4net;
pub mod lease;
pub mod mac;
pub mod subnet_env;
pub mod sync;

/// An error and its causes on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the unit tests of several modules share.
#[cfg(test)]
mod test_support {
    /// Runs `future` to completion on a fresh single-threaded runtime.
    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }
}
