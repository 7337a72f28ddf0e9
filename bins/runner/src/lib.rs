//! sinew-run: rkt's promises on OCI images. Images are fetched into a content-addressed
//! store, verified against OpenPGP keys trusted per image-name prefix, rendered once, and run
//! in their own namespaces under cgroup limits.

pub mod cgroup;
pub mod container;
pub mod net;
pub mod sandbox;
