//! OpenPGP with sequoia: key generation and export, detached signing, and verification of a
//! detached signature against trusted certificates with one refusal per failure kind.

mod keys;
mod sign;
mod verify;

pub use keys::{export_public, generate_key, load_cert, KeyError};
pub use sign::{sign_detached, SignError};
pub use verify::{verify_detached, VerifyError};
