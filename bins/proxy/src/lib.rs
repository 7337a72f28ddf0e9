//! sinew-proxy: TCP and HTTP/1.1 proxying to the healthy instances of named services, as
//! the KV store's discovery keys ([`sinew_proto::discovery`]) say they are.
//!
//! Each service's keys are followed by one watch ([`registry`]), resynced by a fresh read
//! when the watch breaks, and applied to the service's [`backends::Pool`] in process: no
//! reload, no dropped connection. Instances whose version the service's routing record does
//! not admit get no traffic, so a blue-green switch is one write in the store. A backend
//! that leaves the pool drains: no new connections, and its open ones may finish within the
//! grace period before they are closed.
//!
//! Connections ([`tcp`]) and requests ([`http`]) go to the next backend by round robin or to
//! the one with the fewest open connections; a backend that refuses the connection is
//! skipped and the next one tried before the client sees an error. With none left, HTTP
//! answers 503 and TCP closes the connection, and both log it. [`status`] serves each
//! backend's state and counters as JSON.
//!
//! Connections are accepted on the daemon's thread and each is handed to the worker with
//! the fewest open connections ([`accept`]); a worker is a thread with a runtime of its own
//! ([`daemon`]), and a client connection and the backend connections its requests use stay
//! on it.

#![warn(missing_docs)]

pub mod accept;
pub mod backends;
pub mod config;
pub mod daemon;
pub mod http;
pub mod registry;
pub mod status;
pub mod tcp;
pub mod upstream;
