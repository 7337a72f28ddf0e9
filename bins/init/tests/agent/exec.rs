use std::time::{Duration, Instant};

use sinew_proto::{ErrorKind, ExecRequest, OutputStream, Termination};

use crate::harness::{assert_still_serves, write_executable, TestAgent};

#[tokio::test]
async fn exec_returns_output_exit_code_and_reads_stdin() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let request =
        ExecRequest::new(["sh", "-c", "cat; echo oops >&2; exit 3"]).stdin(b"hello\n".to_vec());
    let output = client.exec_output(&request).await.unwrap();
    assert_eq!(output.stdout, b"hello\n");
    assert_eq!(output.stderr, b"oops\n");
    assert_eq!(output.status.code(), Some(3));
    assert!(!output.status.timed_out);

    let output = client
        .exec_output(&ExecRequest::new(["true"]))
        .await
        .unwrap();
    assert!(output.status.success());
}

#[tokio::test]
async fn exec_streams_output_as_it_is_produced() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let started = Instant::now();
    let mut chunks = Vec::new();
    let request = ExecRequest::new(["sh", "-c", "echo first; sleep 1; echo second >&2"]);
    let status = client
        .exec(&request, |stream, chunk| {
            chunks.push((stream, chunk.to_vec(), started.elapsed()))
        })
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(
        (chunks[0].0, chunks[0].1.as_slice()),
        (OutputStream::Stdout, &b"first\n"[..])
    );
    assert_eq!(
        (chunks[1].0, chunks[1].1.as_slice()),
        (OutputStream::Stderr, &b"second\n"[..])
    );
    assert!(
        chunks[0].2 < Duration::from_millis(800),
        "first chunk arrived late: {:?}",
        chunks[0].2
    );
    assert!(status.duration >= Duration::from_secs(1));
}

#[tokio::test]
async fn exec_uses_env_and_cwd() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let request = ExecRequest::new(["sh", "-c", "echo $GREETING; pwd"])
        .env("GREETING", "hi there")
        .cwd(agent.path_str(""));
    let output = client.exec_output(&request).await.unwrap();
    let expected = format!(
        "hi there\n{}\n",
        agent.dir.path().canonicalize().unwrap().display()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);

    let missing = ExecRequest::new(["true"]).cwd("/no/such/dir");
    let error = client.exec_output(&missing).await.unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::NotFound));
    assert!(error.to_string().contains("/no/such/dir"), "{error}");
}

#[tokio::test]
async fn exec_timeout_kills_the_process_group() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let pid_file = agent.path_str("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {pid_file}; wait");
    let request =
        ExecRequest::new(["sh", "-c", script.as_str()]).timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.exec_output(&request).await.unwrap().status;
    assert!(status.timed_out);
    assert_eq!(status.termination, Termination::Signaled { signal: 9 });
    assert!(started.elapsed() < Duration::from_secs(5));
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = crate::harness::eventually(Duration::from_secs(5), || async move {
        !crate::harness::alive(grandchild)
    })
    .await;
    assert!(gone, "background process of a timed-out command survived");
}

#[tokio::test]
async fn exec_failures_name_the_program() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;

    let error = client
        .exec_output(&ExecRequest::new(["no-such-program-xyz"]))
        .await
        .unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::ExecFailed));
    assert!(
        error
            .to_string()
            .contains("program not found: no-such-program-xyz"),
        "{error}"
    );

    let garbage = agent.path("garbage");
    write_executable(&garbage, b"\x7fELF but not really an executable", 0o755);
    let error = client
        .exec_output(&ExecRequest::new([garbage.to_str().unwrap()]))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("garbage") && message.contains("not an executable for this machine"),
        "{message}"
    );
    assert!(message.contains(std::env::consts::ARCH), "{message}");

    let not_executable = agent.path("not-executable");
    write_executable(&not_executable, b"#!/bin/sh\n", 0o644);
    let error = client
        .exec_output(&ExecRequest::new([not_executable.to_str().unwrap()]))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("permission denied")
            && error.to_string().contains("not-executable"),
        "{error}"
    );

    let no_interpreter = agent.path("no-interpreter");
    write_executable(&no_interpreter, b"#!/no/such/interpreter\n", 0o755);
    let error = client
        .exec_output(&ExecRequest::new([no_interpreter.to_str().unwrap()]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("interpreter"), "{error}");

    let error = client
        .exec_output(&ExecRequest::new(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::BadRequest));

    // The connection survived all of that.
    assert_still_serves(&mut client).await;
}

#[tokio::test]
async fn large_output_arrives_complete() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let request = ExecRequest::new([
        "sh",
        "-c",
        "head -c 5000000 /dev/zero; head -c 1000000 /dev/zero >&2",
    ]);
    let output = client.exec_output(&request).await.unwrap();
    assert_eq!(output.stdout.len(), 5_000_000);
    assert_eq!(output.stderr.len(), 1_000_000);
}
