//! rtnetlink requests and listings whose errors say what was being done.

use futures::{TryStream, TryStreamExt};
use thiserror::Error;

/// The kernel refused a request or a listing.
#[derive(Debug, Error)]
#[error("{what}")]
pub struct NetlinkError {
    what: String,
    #[source]
    source: rtnetlink::Error,
}

/// Wraps a failed request's error with `what` was being done:
/// `.map_err(request("deleting vxlan0"))`.
pub fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

/// Collects a listing (a netlink dump), its error saying `what` was being listed.
pub async fn dump<S>(listing: S, what: impl Into<String>) -> Result<Vec<S::Ok>, NetlinkError>
where
    S: TryStream<Error = rtnetlink::Error>,
{
    listing.try_collect().await.map_err(request(what))
}
