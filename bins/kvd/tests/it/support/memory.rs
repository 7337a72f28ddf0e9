//! A single-node backend over a bare `Store`: commands apply at once, batches go out on a
//! broadcast channel, lease deadlines run on the test's clock, members live in a list, alarms
//! refuse writes as the state machine's do.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sinew_kvd::alarm::{Alarm, AlarmRequest, Alarms};
use sinew_kvd::gateway::{
    Backend, BackendError, LeaseKeepAlive, LeaseList, LeaseTimeToLive, Member, MemberAdded,
    NodeIdentity, StateSnapshot, StatusResponse, WatchHistory,
};
use sinew_kvd::v3::{
    Applied, Command, KvHash, RangeRequest, RangeResponse, Response, ResponseHeader, Store,
    WatchBatch,
};
use tokio::sync::broadcast;

pub const CLUSTER_ID: u64 = 0x1234_5678_9abc_def0;
pub const MEMBER_ID: u64 = 0x0fed_cba9_8765_4321;
pub const RAFT_TERM: u64 = 3;

#[derive(Debug)]
struct State {
    store: Store,
    alarms: Alarms,
    /// When each lease runs out.
    deadlines: BTreeMap<i64, Instant>,
    members: Vec<Member>,
    next_member_id: u64,
    applied_index: u64,
}

/// The in-memory backend.
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
    batches: broadcast::Sender<WatchBatch>,
}

impl State {
    /// The member with `id`.
    fn member(&mut self, id: u64) -> Result<&mut Member, BackendError> {
        self.members
            .iter_mut()
            .find(|member| member.id == id)
            .ok_or(BackendError::MemberNotFound)
    }
}

impl MemoryBackend {
    /// A backend whose watch subscriptions hold up to 1024 batches.
    pub fn new() -> Self {
        Self::with_watch_capacity(1024)
    }

    /// A backend whose watch subscriptions hold up to `capacity` batches before lagging.
    pub fn with_watch_capacity(capacity: usize) -> Self {
        let member = Member {
            id: MEMBER_ID,
            name: "solo".to_owned(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".to_owned()],
            client_ur_ls: vec!["http://127.0.0.1:2379".to_owned()],
            is_learner: false,
        };
        Self {
            state: Mutex::new(State {
                store: Store::new(),
                alarms: Alarms::default(),
                deadlines: BTreeMap::new(),
                members: vec![member],
                next_member_id: 100,
                applied_index: 0,
            }),
            batches: broadcast::channel(capacity).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("backend state")
    }

    /// Applies commands one after the other without yielding, as a burst of commits does.
    pub fn apply_burst(&self, commands: &[Command]) {
        for command in commands {
            self.apply(command.clone()).expect("burst command");
        }
    }

    fn apply(&self, command: Command) -> Result<Applied, BackendError> {
        let mut state = self.state();
        if let Some(refusal) = state.alarms.refusal(&command) {
            return Err(refusal.into());
        }
        let applied = state.store.apply_with_events(&command)?;
        state.applied_index += 1;
        match &applied.response {
            Response::LeaseGrant(grant) => {
                let deadline =
                    Instant::now() + Duration::from_secs(grant.ttl.max(0).cast_unsigned());
                state.deadlines.insert(grant.id, deadline);
            }
            Response::LeaseRevoke(_) => {
                if let Command::LeaseRevoke(revoke) = &command {
                    state.deadlines.remove(&revoke.id);
                }
            }
            _ => {}
        }
        if !applied.events.is_empty() {
            // No subscriber is fine: nobody is watching.
            let _ = self.batches.send(WatchBatch {
                revision: state.store.revision(),
                events: applied.events.clone(),
            });
        }
        Ok(applied)
    }

    fn remaining(deadline: Instant) -> i64 {
        i64::try_from(deadline.saturating_duration_since(Instant::now()).as_secs())
            .unwrap_or(i64::MAX)
    }
}

impl Backend for MemoryBackend {
    fn has_leader(&self) -> bool {
        true
    }

    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            raft_term: RAFT_TERM,
        }
    }

    async fn propose(&self, command: Command) -> Result<Applied, BackendError> {
        self.apply(command)
    }

    async fn range(
        &self,
        request: RangeRequest,
        _serializable: bool,
    ) -> Result<RangeResponse, BackendError> {
        Ok(self.state().store.range(&request)?)
    }

    fn subscribe(&self) -> broadcast::Receiver<WatchBatch> {
        self.batches.subscribe()
    }

    async fn watch_history(
        &self,
        start: i64,
        key: Vec<u8>,
        range_end: Vec<u8>,
    ) -> Result<WatchHistory, BackendError> {
        Ok(WatchHistory::from_store(
            &self.state().store,
            start,
            &key,
            &range_end,
        ))
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAlive, BackendError> {
        let mut state = self.state();
        let revision = state.store.revision();
        let Some(info) = state.store.lease_info(id) else {
            return Ok(LeaseKeepAlive { revision, ttl: 0 });
        };
        let deadline =
            Instant::now() + Duration::from_secs(info.granted_ttl.max(0).cast_unsigned());
        state.deadlines.insert(id, deadline);
        Ok(LeaseKeepAlive {
            revision,
            ttl: info.granted_ttl,
        })
    }

    async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLive, BackendError> {
        let state = self.state();
        let revision = state.store.revision();
        let Some(info) = state.store.lease_info(id) else {
            return Ok(LeaseTimeToLive {
                revision,
                ttl: -1,
                ..LeaseTimeToLive::default()
            });
        };
        let ttl = state.deadlines.get(&id).copied().map_or(0, Self::remaining);
        Ok(LeaseTimeToLive {
            revision,
            ttl,
            granted_ttl: info.granted_ttl,
            keys: if keys { info.keys } else { Vec::new() },
        })
    }

    async fn leases(&self) -> Result<LeaseList, BackendError> {
        let state = self.state();
        Ok(LeaseList {
            revision: state.store.revision(),
            ids: state.store.leases().iter().map(|lease| lease.id).collect(),
        })
    }

    async fn member_list(&self) -> Result<Vec<Member>, BackendError> {
        Ok(self.state().members.clone())
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAdded, BackendError> {
        let mut state = self.state();
        let taken = state
            .members
            .iter()
            .any(|member| member.peer_ur_ls.iter().any(|url| peer_urls.contains(url)));
        if taken {
            return Err(BackendError::PeerUrlExists);
        }
        let member = Member {
            id: state.next_member_id,
            peer_ur_ls: peer_urls,
            is_learner,
            ..Member::default()
        };
        state.next_member_id += 1;
        state.members.push(member.clone());
        Ok(MemberAdded {
            member,
            members: state.members.clone(),
        })
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<Member>, BackendError> {
        let mut state = self.state();
        let before = state.members.len();
        state.members.retain(|member| member.id != id);
        if state.members.len() == before {
            return Err(BackendError::MemberNotFound);
        }
        Ok(state.members.clone())
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, BackendError> {
        let mut state = self.state();
        state.member(id)?.peer_ur_ls = peer_urls;
        Ok(state.members.clone())
    }

    async fn hash_kv(&self, revision: i64) -> Result<KvHash, BackendError> {
        Ok(self.state().store.hash_kv(revision)?)
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<Member>, BackendError> {
        let mut state = self.state();
        let member = state.member(id)?;
        if !member.is_learner {
            return Err(BackendError::MemberNotLearner);
        }
        member.is_learner = false;
        Ok(state.members.clone())
    }

    async fn status(&self) -> Result<StatusResponse, BackendError> {
        let state = self.state();
        Ok(StatusResponse {
            header: Some(ResponseHeader {
                revision: state.store.revision(),
                ..ResponseHeader::default()
            }),
            version: "3.4.23".to_owned(),
            db_size: 4096,
            db_size_in_use: 2048,
            leader: MEMBER_ID,
            raft_index: state.applied_index,
            raft_term: RAFT_TERM,
            raft_applied_index: state.applied_index,
            errors: Vec::new(),
            is_learner: false,
            ..StatusResponse::default()
        })
    }

    async fn alarm(&self, request: AlarmRequest) -> Result<Vec<Alarm>, BackendError> {
        Ok(self.state().alarms.apply(request))
    }

    /// The only member leads already.
    async fn move_leader(&self, target: u64) -> Result<i64, BackendError> {
        if target == MEMBER_ID {
            Ok(self.state().store.revision())
        } else {
            Err(BackendError::BadLeaderTransferee)
        }
    }

    async fn snapshot(&self) -> Result<StateSnapshot, BackendError> {
        let store = self.state().store.clone();
        Ok(StateSnapshot {
            revision: store.revision(),
            data: store.into_snapshot(),
        })
    }
}
