use std::time::Duration;

use nix::sys::signal::Signal;
use sinew_proto::{ExecRequest, RestartPolicy, ServiceSpec, ServiceState};

use crate::harness::{alive, assert_still_serves, eventually, zombie_children, TestAgent};

#[tokio::test]
async fn poweroff_in_host_mode_stops_services_and_exits() {
    let mut agent = TestAgent::start();
    let mut client = agent.client().await;
    let spec = ServiceSpec::new("daemon", ["sleep", "1000"]).restart(RestartPolicy::Always);
    let ServiceState::Running { pid, .. } = client.service_start(&spec).await.unwrap().status.state
    else {
        panic!("not running");
    };
    client.poweroff().await.unwrap();
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(matches!(
        client.facts().await,
        Err(sinew_proto::ClientError::Closed)
    ));
    assert!(!alive(pid), "service survived poweroff");
}

#[tokio::test]
async fn sigterm_stops_services_and_exits() {
    let mut agent = TestAgent::start();
    let mut client = agent.client().await;
    let ServiceState::Running { pid, .. } = client
        .service_start(&ServiceSpec::new("daemon", ["sleep", "1000"]))
        .await
        .unwrap()
        .status
        .state
    else {
        panic!("not running");
    };
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!alive(pid));
}

#[tokio::test]
async fn orphans_are_reaped() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    // Each background sleep outlives its shell, is re-parented to the agent and exits.
    let request = ExecRequest::new([
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do sleep 0.2 & done; exit 0",
    ]);
    assert!(client.exec_output(&request).await.unwrap().status.success());
    let agent_pid = agent.pid();
    let clean = eventually(Duration::from_secs(5), || async move {
        zombie_children(agent_pid).is_empty()
    })
    .await;
    assert!(clean, "zombies left: {:?}", zombie_children(agent_pid));
    // Let the orphans exit, then check again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clean = eventually(Duration::from_secs(5), || async move {
        zombie_children(agent_pid).is_empty()
    })
    .await;
    assert!(clean, "zombies left: {:?}", zombie_children(agent_pid));
    assert_still_serves(&mut client).await;
}

#[tokio::test]
async fn connections_are_served_concurrently() {
    let agent = TestAgent::start();
    let mut slow = agent.client().await;
    let mut fast = agent.client().await;
    let long =
        tokio::spawn(async move { slow.exec_output(&ExecRequest::new(["sleep", "1"])).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    fast.facts().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(long.await.unwrap().unwrap().status.success());
}
