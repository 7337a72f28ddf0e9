//! The store revision an answer was made at, from its header.

/// An answer whose header names the store revision it was made at.
pub trait AtRevision {
    /// The store revision in the answer's header; 0 if it has none.
    fn revision(&self) -> i64;
}

macro_rules! at_revision {
    ($($answer:ident),* $(,)?) => {$(
        impl AtRevision for crate::etcdserverpb::$answer {
            fn revision(&self) -> i64 {
                self.header.as_ref().map_or(0, |header| header.revision)
            }
        }
    )*};
}

at_revision!(
    RangeResponse,
    PutResponse,
    DeleteRangeResponse,
    TxnResponse,
    CompactionResponse,
    LeaseGrantResponse,
    LeaseRevokeResponse,
    LeaseKeepAliveResponse,
    LeaseTimeToLiveResponse,
    LeaseLeasesResponse,
    WatchResponse,
    StatusResponse,
);
