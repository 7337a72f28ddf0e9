//! Which gateway endpoint a request path names, with etcd 3.4's paths: `/v3/...`, and the
//! same under `/v3beta/`; lease calls are also served under `kv/lease/...` as etcd does.

/// A gateway endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A call with one request and one answer.
    Unary(Unary),
    /// `watch` (streaming both ways).
    Watch,
    /// `lease/keepalive` (streaming both ways).
    LeaseKeepAlive,
    /// `maintenance/snapshot` (a streamed answer).
    Snapshot,
}

/// A call with one request and one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    /// `kv/range`.
    Range,
    /// `kv/put`.
    Put,
    /// `kv/deleterange`.
    DeleteRange,
    /// `kv/txn`.
    Txn,
    /// `kv/compaction`.
    Compaction,
    /// `lease/grant`.
    LeaseGrant,
    /// `lease/revoke`, `kv/lease/revoke`.
    LeaseRevoke,
    /// `lease/timetolive`, `kv/lease/timetolive`.
    LeaseTimeToLive,
    /// `lease/leases`, `kv/lease/leases`.
    LeaseLeases,
    /// `cluster/member/list`.
    MemberList,
    /// `cluster/member/add`.
    MemberAdd,
    /// `cluster/member/remove`.
    MemberRemove,
    /// `cluster/member/promote`.
    MemberPromote,
    /// `maintenance/status`.
    Status,
    /// `maintenance/alarm`.
    Alarm,
    /// `maintenance/transfer-leadership`.
    MoveLeader,
}

/// Where a request path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A gateway endpoint.
    Endpoint(Endpoint),
    /// Under the gateway's prefixes but no endpoint: the gateway answers 404.
    Unknown,
    /// Not the gateway's (`/v2/...`, `/version`, `/health`, ...).
    NotMine,
}

/// The route for `path`.
pub fn route(path: &str) -> Route {
    let Some(rest) = path
        .strip_prefix("/v3/")
        .or_else(|| path.strip_prefix("/v3beta/"))
    else {
        return Route::NotMine;
    };
    let unary = match rest {
        "watch" => return Route::Endpoint(Endpoint::Watch),
        "lease/keepalive" => return Route::Endpoint(Endpoint::LeaseKeepAlive),
        "maintenance/snapshot" => return Route::Endpoint(Endpoint::Snapshot),
        "kv/range" => Unary::Range,
        "kv/put" => Unary::Put,
        "kv/deleterange" => Unary::DeleteRange,
        "kv/txn" => Unary::Txn,
        "kv/compaction" => Unary::Compaction,
        "lease/grant" => Unary::LeaseGrant,
        "lease/revoke" | "kv/lease/revoke" => Unary::LeaseRevoke,
        "lease/timetolive" | "kv/lease/timetolive" => Unary::LeaseTimeToLive,
        "lease/leases" | "kv/lease/leases" => Unary::LeaseLeases,
        "cluster/member/list" => Unary::MemberList,
        "cluster/member/add" => Unary::MemberAdd,
        "cluster/member/remove" => Unary::MemberRemove,
        "cluster/member/promote" => Unary::MemberPromote,
        "maintenance/status" => Unary::Status,
        "maintenance/alarm" => Unary::Alarm,
        "maintenance/transfer-leadership" => Unary::MoveLeader,
        _ => return Route::Unknown,
    };
    Route::Endpoint(Endpoint::Unary(unary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_prefixes_and_lease_aliases_route_to_endpoints() {
        assert_eq!(
            route("/v3/kv/range"),
            Route::Endpoint(Endpoint::Unary(Unary::Range))
        );
        assert_eq!(
            route("/v3beta/kv/range"),
            Route::Endpoint(Endpoint::Unary(Unary::Range))
        );
        assert_eq!(
            route("/v3/kv/lease/revoke"),
            Route::Endpoint(Endpoint::Unary(Unary::LeaseRevoke))
        );
        assert_eq!(route("/v3/watch"), Route::Endpoint(Endpoint::Watch));
        assert_eq!(route("/v3/kv/bogus"), Route::Unknown);
        assert_eq!(route("/v3alpha/kv/range"), Route::NotMine);
        assert_eq!(route("/v2/keys/a"), Route::NotMine);
        assert_eq!(route("/version"), Route::NotMine);
    }
}
