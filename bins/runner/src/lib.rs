//! sinew-run: rkt's promises on OCI images. Images are fetched into a content-addressed
//! store, verified against OpenPGP keys trusted per image-name prefix, rendered once, and run
//! in their own namespaces under cgroup limits.
//!
//! State lives under one directory (`--dir`, default `/var/lib/sinew-run`):
//! `trustedkeys/` (the keystore), `blobs/sha256/` (content-addressed blobs), `rootfs/`
//! (one rendered root filesystem per image manifest), `images/` (one small record per image
//! name) and `tmp/` (staging for fetches in progress). There is no daemon: concurrent
//! processes coordinate with `flock` on `<dir>/lock` and publish with rename.

#![warn(missing_docs)]

pub mod image;
pub mod signing;
pub mod trust;
