//! `sinew-init agent` on the host, driven through the real client over loopback TCP.

// The harness is test code too: panicking is how it reports a broken setup.

mod auth;
mod exec;
mod facts;
mod files;
mod harness;
mod lifecycle;
mod services;
