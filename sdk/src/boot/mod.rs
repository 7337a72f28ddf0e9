//! Network boot: a boot server in matchbox's model (profiles, groups with selectors,
//! iPXE scripts, metadata, generic templates, assets served by content), usable from a
//! playbook and as `sinew boot-server`.
//!
//! A configuration is read from matchbox's directory layout or built in code, and checked
//! whole before it is served ([`ConfigSource::check`]): a server never starts, and a reload
//! never replaces a good configuration, with a bad file.

mod assets;
mod config;
mod labels;
mod render;
mod server;

pub use assets::{AssetError, Assets, Digest};
pub use config::{Config, ConfigError, ConfigSource, Group, NetBoot, Part, Profile, BOOT_LABELS};
pub use labels::{Labels, Mac};
pub use render::BOOTSTRAP;
pub use server::{BootEvent, BootServer, Fetched, WaitError};

#[cfg(test)]
mod tests;
