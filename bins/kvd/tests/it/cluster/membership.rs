use std::time::Duration;

use sinew_kvd::node::{ClusterState, MemberChange, Node, NodeError};

use crate::cluster::harness::{config, get, put, Cluster};
use crate::support::free_addr;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_added_at_runtime_catches_up_votes_and_can_be_removed() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    for index in 0..80 {
        cluster
            .node(leader)
            .propose(put(&format!("k{index}"), "v"))
            .await
            .unwrap();
    }
    let peer = free_addr();
    let url = format!("http://{peer}");

    let added = cluster
        .node(cluster.follower(leader))
        .change_members(MemberChange::Add {
            peer_urls: vec![url.clone()],
            is_learner: false,
        })
        .await
        .unwrap();
    let id = added.member.unwrap().id;
    assert_eq!(
        cluster
            .node(leader)
            .change_members(MemberChange::Add {
                peer_urls: vec![url.clone()],
                is_learner: true,
            })
            .await
            .unwrap_err(),
        NodeError::PeerUrlExists
    );

    let mut initial = cluster.seats[0].config.initial_cluster.clone();
    initial.push(sinew_kvd::node::InitialMember {
        name: "n3".to_owned(),
        peer_urls: vec![url],
    });
    let dir = tempfile::tempdir().unwrap();
    let joined = Node::start(config(
        "n3",
        dir.path().join("n3"),
        peer,
        initial,
        ClusterState::Existing,
    ))
    .await
    .unwrap();
    assert_eq!(joined.id(), id);

    let mut voting = false;
    for _ in 0..100 {
        let members = cluster.node(leader).members();
        let me = members.iter().find(|member| member.id == id).unwrap();
        if !me.is_learner && me.name == "n3" {
            voting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(voting, "the new member became a named voter");
    assert_eq!(get(&joined, "k79", false).await.as_deref(), Some("v"));
    assert_eq!(joined.cluster_id(), cluster.node(0).cluster_id());

    let removed = cluster
        .node(leader)
        .change_members(MemberChange::Remove { id })
        .await
        .unwrap();
    assert_eq!(removed.members.len(), 3);
    assert!(removed.members.iter().all(|member| member.id != id));
    joined.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promotion_refuses_voters_and_unknown_members() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let voter = cluster.node(0).id();

    let not_learner = cluster
        .node(leader)
        .change_members(MemberChange::Promote { id: voter })
        .await
        .unwrap_err();
    let unknown = cluster
        .node(leader)
        .change_members(MemberChange::Remove { id: 42 })
        .await
        .unwrap_err();

    assert_eq!(not_learner, NodeError::NotLearner);
    assert_eq!(unknown, NodeError::MemberNotFound);
}
