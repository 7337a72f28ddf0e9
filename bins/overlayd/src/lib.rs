//! overlayd: flannel's VXLAN overlay, in Rust. Every host leases a subnet of the cluster
//! network in the KV store (etcd's v3 API, served by kvd or etcd), and for every other
//! host's lease keeps a route, a permanent neighbour and an FDB entry on its VXLAN device,
//! so that containers on any host reach containers on any other.
//!
//! The binary is a thin command line over [`process::run`], which runs [`daemon::run`] on
//! the real kernel until SIGTERM; the kernel is reached through
//! the [`dataplane::Dataplane`] trait, implemented with rtnetlink by
//! [`dataplane::Netlink`].

#![warn(missing_docs)]

pub mod alloc;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod fastpath;
pub mod ipv4net;
pub mod lease;
pub mod process;
pub mod sync;

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
