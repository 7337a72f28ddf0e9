//! Keys trusted per image-name prefix, in the spirit of rkt's `trustedkeys/` directory.

mod keystore;
mod prefix;

pub use keystore::{KeyStore, TrustError, TrustScope, TrustedKey};
pub use prefix::{ImageName, Prefix, PrefixError};
