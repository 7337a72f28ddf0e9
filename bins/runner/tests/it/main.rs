//! sinew-run's integration tests, one binary:
//!
//! - `image_*`, `trust_keystore`: images built, fetched, stored, rendered and refused, and
//!   the trust store, through the CLI (helpers in `image_support`);
//! - `run_*`: containers run from signed images, their identity, signals, limits and
//!   networking (helpers in `run_support`).

mod image_build;
mod image_interop;
mod image_refusals;
mod image_render;
mod image_store;
mod image_support;
mod run_image;
mod run_lifecycle;
mod run_limits;
mod run_net;
mod run_process;
mod run_support;
mod trust_keystore;
