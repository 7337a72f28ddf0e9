//! rtnetlink requests and listings whose errors say what was being done.

use futures::{TryStream, TryStreamExt};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
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

/// Lists a neighbour table: ARP entries for [`AddressFamily::Inet`], the bridges' FDB for
/// [`AddressFamily::Bridge`].
pub async fn neighbours(
    handle: &Handle,
    family: AddressFamily,
    what: &str,
) -> Result<Vec<NeighbourMessage>, NetlinkError> {
    dump(
        handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute(),
        what,
    )
    .await
}
