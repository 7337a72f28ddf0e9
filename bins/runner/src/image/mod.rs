//! OCI images: fetching, verification, the content-addressed store, layer rendering and
//! image building.

mod blobs;
mod build;
mod digest;
mod fetch;
mod http;
mod lock;
pub mod oci;
mod platform;
mod source;
mod store;
mod tls;
mod unpack;

pub use blobs::{BlobError, BlobStore};
pub use build::{build, sign_layout, BuildError, BuildSpec, Built, ExtraFile};
pub use digest::{Digest, DigestError};
pub use fetch::{fetch, FetchError, FetchOptions};
pub use http::HttpError;
pub use platform::{host_arch, oci_arch, ArchError};
pub use source::SourceError;
pub use store::{GcReport, ImageRecord, Rendered, RuntimeConfig, Store, StoreError};
pub use tls::{Roots, TlsError, TlsFailure};
pub use unpack::{apply_layer, UnpackError};
