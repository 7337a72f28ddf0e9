use std::time::Duration;

use sinew_proto::{handshake, AgentClient, ClientError, ErrorKind, FrameKind, Response, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestAgent;

async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut received))
        .await
        .expect("agent did not close the connection")
        .ok();
    received
}

#[tokio::test]
async fn wrong_secret_is_refused_and_the_agent_keeps_serving() {
    let agent = TestAgent::start();
    let wrong = Secret::generate().unwrap();
    let error = AgentClient::connect(agent.addr, &wrong, Duration::from_secs(5))
        .await
        .unwrap_err();
    match &error {
        ClientError::Refused(refusal) => assert_eq!(refusal.kind, ErrorKind::Unauthorized),
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(agent.client().await.facts().await.is_ok());
}

#[tokio::test]
async fn unauthenticated_requests_get_nothing() {
    let agent = TestAgent::start();
    // A request sent in place of the handshake answer.
    let mut stream = TcpStream::connect(agent.addr).await.unwrap();
    let request = br#"{"op":"exec","argv":["touch","/tmp/sinew-should-not-exist"]}"#;
    let mut frame = u32::try_from(request.len() + 1)
        .expect("the frame length fits in u32")
        .to_be_bytes()
        .to_vec();
    frame.push(FrameKind::Control as u8);
    frame.extend_from_slice(request);
    stream.write_all(&frame).await.unwrap();
    let received = String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned();
    assert!(
        received.contains("hello") && received.contains("refused"),
        "{received}"
    );
    assert!(!received.contains("exited"));

    // A peer that connects and says nothing, and one that hangs up at once.
    let _silent = TcpStream::connect(agent.addr).await.unwrap();
    drop(TcpStream::connect(agent.addr).await.unwrap());

    assert!(agent.client().await.facts().await.is_ok());
}

#[tokio::test]
async fn oversize_and_garbage_frames_do_not_hurt_the_agent() {
    let agent = TestAgent::start();

    // Before authentication: a 4 GiB frame announcement, then garbage.
    let mut stream = TcpStream::connect(agent.addr).await.unwrap();
    stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    stream.write_all(b"garbage").await.unwrap();
    read_to_close(&mut stream).await;

    let mut stream = TcpStream::connect(agent.addr).await.unwrap();
    stream.write_all(&[0, 0, 0, 0]).await.unwrap();
    read_to_close(&mut stream).await;

    // After authentication: malformed JSON and stray data get an error; the connection lives.
    let stream = TcpStream::connect(agent.addr).await.unwrap();
    let (mut channel, _) = handshake::connect(stream, &agent.secret).await.unwrap();
    for (kind, payload) in [
        (FrameKind::Control, &b"{not json"[..]),
        (FrameKind::Control, br#"{"op":"launch_missiles"}"#),
        (FrameKind::Control, br#"{"op":"get"}"#),
        (FrameKind::Data, b"stray data"),
    ] {
        channel.send(kind, payload).await.unwrap();
        let reply: Response =
            serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
        assert!(
            matches!(reply, Response::Error(ref error) if error.kind == ErrorKind::BadRequest),
            "{reply:?}"
        );
    }
    channel
        .send_control(&sinew_proto::Request::Facts)
        .await
        .unwrap();
    let reply: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    assert!(matches!(reply, Response::Facts(_)));

    // After authentication: an oversize announcement ends that connection only, with a reason.
    let stream = TcpStream::connect(agent.addr).await.unwrap();
    let (mut channel, _) = handshake::connect(stream, &agent.secret).await.unwrap();
    let raw = channel.get_ref();
    raw.writable().await.unwrap();
    raw.try_write(&(17u32 * 1024 * 1024).to_be_bytes()).unwrap();
    let reply: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    assert!(
        matches!(reply, Response::Error(ref error) if error.message.contains("over the limit")),
        "{reply:?}"
    );
    assert!(channel.recv().await.is_err());

    assert!(agent.client().await.facts().await.is_ok());
    assert!(!agent.stderr().contains("panicked"), "{}", agent.stderr());
}
