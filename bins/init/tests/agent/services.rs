use std::time::Duration;

use sinew_proto::{ErrorKind, RestartPolicy, ServiceSpec, ServiceState};

use crate::harness::{alive, TestAgent};

#[tokio::test]
async fn service_start_status_logs_stop() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let spec = ServiceSpec::new(
        "web",
        [
            "sh",
            "-c",
            "echo listening on $PORT; echo warming up >&2; exec sleep 1000",
        ],
    )
    .env("PORT", "8080")
    .restart(RestartPolicy::Never);

    let change = client.service_start(&spec).await.unwrap();
    assert!(change.changed);
    let ServiceState::Running { pid, .. } = change.status.state else {
        panic!("not running: {:?}", change.status.state);
    };
    assert!(alive(pid));

    let again = client.service_start(&spec).await.unwrap();
    assert!(!again.changed, "same spec must be unchanged");
    assert!(matches!(again.status.state, ServiceState::Running { pid: same, .. } if same == pid));

    assert!(
        agent
            .wait_for_logs("web", Duration::from_secs(5), |lines| lines.len() == 2)
            .await
    );
    let mut lines = client.service_logs("web", 10).await.unwrap();
    lines.sort();
    assert_eq!(lines, ["listening on 8080", "warming up"]);
    assert_eq!(client.service_logs("web", 1).await.unwrap().len(), 1);
    let file = std::fs::read_to_string(agent.path("state/log/web.log")).unwrap();
    assert!(file.contains("listening on 8080\n"), "{file}");

    let list = client.service_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].spec, spec);

    let stopped = client.service_stop("web").await.unwrap();
    assert!(stopped.changed);
    assert_eq!(stopped.status.state, ServiceState::Stopped);
    assert!(!alive(pid));
    assert!(!client.service_stop("web").await.unwrap().changed);
    assert_eq!(
        client.service_status("web").await.unwrap().state,
        ServiceState::Stopped
    );

    // Starting a stopped service starts it again.
    assert!(client.service_start(&spec).await.unwrap().changed);
    assert!(client.service_stop("web").await.unwrap().changed);
}

#[tokio::test]
async fn changed_spec_replaces_the_running_service() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let first = ServiceSpec::new("db", ["sleep", "1000"]);
    let ServiceState::Running { pid: old, .. } =
        client.service_start(&first).await.unwrap().status.state
    else {
        panic!("not running");
    };
    let second = first.clone().env("MODE", "replica");
    let change = client.service_start(&second).await.unwrap();
    assert!(change.changed);
    let ServiceState::Running { pid: new, .. } = change.status.state else {
        panic!("not running");
    };
    assert_ne!(old, new);
    assert!(!alive(old));
    assert_eq!(client.service_status("db").await.unwrap().spec, second);
}

#[tokio::test]
async fn failing_service_restarts_with_back_off() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let spec = ServiceSpec::new("flaky", ["sh", "-c", "echo attempt; exit 3"])
        .restart(RestartPolicy::OnFailure);
    client.service_start(&spec).await.unwrap();
    // Restarts come after 100, 200, 400, 800 ms...: about 3 by 1 s, 4 by 2 s, 5 by 3.5 s.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = client.service_status("flaky").await.unwrap();
    assert!(
        (1..=4).contains(&status.restarts),
        "restarts after 1 s: {}",
        status.restarts
    );
    assert!(
        agent
            .wait_for_status("flaky", Duration::from_secs(10), |status| status.restarts
                >= 5)
            .await
    );
    let status = client.service_status("flaky").await.unwrap();
    assert!(
        status.restarts <= 6,
        "back-off not applied: {} restarts",
        status.restarts
    );
    match status.state {
        ServiceState::Restarting { last, retry_in } => {
            assert_eq!(last.to_string(), "exited with code 3");
            assert!(retry_in <= Duration::from_secs(30));
        }
        ServiceState::Running { .. } => {}
        other => panic!("unexpected state {other:?}"),
    }
    assert!(
        client
            .service_logs("flaky", 100)
            .await
            .unwrap()
            .iter()
            .filter(|line| *line == "attempt")
            .count()
            >= 5
    );
    let stopped = client.service_stop("flaky").await.unwrap();
    assert!(stopped.changed);
    assert_eq!(stopped.status.state, ServiceState::Stopped);
}

#[tokio::test]
async fn restart_policies_decide_after_a_clean_exit() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    client
        .service_start(&ServiceSpec::new("once", ["true"]).restart(RestartPolicy::OnFailure))
        .await
        .unwrap();
    client
        .service_start(&ServiceSpec::new("again", ["true"]).restart(RestartPolicy::Always))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let once = client.service_status("once").await.unwrap();
    assert_eq!(
        once.state.clone(),
        ServiceState::Exited {
            termination: sinew_proto::Termination::Exited { code: 0 }
        }
    );
    assert_eq!(once.restarts, 0);
    assert!(client.service_status("again").await.unwrap().restarts >= 2);
    // Stopping an exited service changes nothing.
    assert!(!client.service_stop("once").await.unwrap().changed);
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let spec = ServiceSpec::new(
        "stubborn",
        [
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    let ServiceState::Running { pid, .. } = client.service_start(&spec).await.unwrap().status.state
    else {
        panic!("not running");
    };
    // SIGTERM before the trap is set would end it at once.
    assert!(
        agent
            .wait_for_logs("stubborn", Duration::from_secs(5), |lines| lines
                == ["ready"])
            .await
    );
    let started = std::time::Instant::now();
    assert!(client.service_stop("stubborn").await.unwrap().changed);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "grace period skipped"
    );
    assert!(!alive(pid));
}

#[tokio::test]
async fn unknown_and_unstartable_services_are_errors() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    for error in [
        client.service_status("nope").await.unwrap_err(),
        client.service_stop("nope").await.unwrap_err(),
        client.service_logs("nope", 5).await.unwrap_err(),
    ] {
        assert_eq!(error.remote_kind(), Some(ErrorKind::UnknownService));
        assert!(error.to_string().contains("nope"), "{error}");
    }
    let error = client
        .service_start(&ServiceSpec::new("ghost", ["/no/such/daemon"]))
        .await
        .unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::ExecFailed));
    assert!(error.to_string().contains("/no/such/daemon"), "{error}");
    assert!(matches!(
        client.service_status("ghost").await.unwrap().state,
        ServiceState::Failed { .. }
    ));
    let error = client
        .service_start(&ServiceSpec::new("../escape", ["true"]))
        .await
        .unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::BadRequest));
}
