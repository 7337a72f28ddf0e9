//! sinew-run: rkt's promises on OCI images. Images are fetched into a content-addressed
//! store, verified against OpenPGP keys trusted per image-name prefix, rendered once, and run
//! in their own namespaces under cgroup limits.
//!
//! State lives under one directory (`--dir`, default `/var/lib/sinew-run`):
//! `trustedkeys/` (the keystore), `blobs/sha256/` (content-addressed blobs), `rootfs/`
//! (one rendered root filesystem per image manifest), `images/` (one small record per image
//! name), `tmp/` (staging for fetches in progress), `containers/<id>/` (one directory per
//! container: `state.json`, `log`, `lock`, its overlay `upper/` and `work/`) and `net/`
//! (overlay address leases). There is no daemon: concurrent processes coordinate with
//! `flock` and publish with rename; a running container is held by its supervisor's lock.

#![warn(missing_docs)]

pub mod cgroup;
pub mod container;
pub mod image;
pub mod net;
pub mod sandbox;
pub mod signing;
pub mod trust;
