use std::os::unix::fs::PermissionsExt;

use sinew_proto::{handshake, ErrorKind, FrameKind, PutRequest, Request, Response, Sha256Digest};
use tokio::net::TcpStream;

use crate::harness::TestAgent;

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 31 % 251).expect("a value below 251 fits in u8"))
        .collect()
}

#[tokio::test]
async fn put_get_round_trip_with_digest_and_mode() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let path = agent.path_str("deep/new/dir/blob.bin");
    let data = sample(3 * 1024 * 1024 + 17);

    let outcome = client.put(&path, 0o640, &data).await.unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.sha256, Sha256Digest::of(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o640
    );

    let file = client.get(&path).await.unwrap();
    assert_eq!(file.data, data);
    assert_eq!(file.info.size, data.len() as u64);
    assert_eq!(file.info.mode, 0o640);
    assert_eq!(file.info.sha256, outcome.sha256);

    let stat = client.stat(&path).await.unwrap().unwrap();
    assert!(stat.is_file);
    assert_eq!(
        (stat.size, stat.mode, stat.sha256),
        (data.len() as u64, 0o640, Some(outcome.sha256))
    );
    let dir = client.stat(&agent.path_str("deep")).await.unwrap().unwrap();
    assert!(!dir.is_file && dir.sha256.is_none());
    assert_eq!(client.stat(&agent.path_str("absent")).await.unwrap(), None);

    let local = agent.path("copy.bin");
    let info = client.get_to_file(&path, &local).await.unwrap();
    assert_eq!(info.sha256, outcome.sha256);
    assert_eq!(std::fs::read(&local).unwrap(), data);
}

#[tokio::test]
async fn identical_put_is_unchanged_but_a_new_mode_is_a_change() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let path = agent.path_str("etc/app.conf");
    assert!(
        client
            .put(&path, 0o644, b"key = 1\n")
            .await
            .unwrap()
            .changed
    );
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert!(
        !client
            .put(&path, 0o644, b"key = 1\n")
            .await
            .unwrap()
            .changed
    );
    // Unchanged means untouched: same inode, no rename happened.
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
        inode
    );
    assert!(
        client
            .put(&path, 0o600, b"key = 1\n")
            .await
            .unwrap()
            .changed
    );
    assert!(
        client
            .put(&path, 0o600, b"key = 2\n")
            .await
            .unwrap()
            .changed
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"key = 2\n");

    let local = agent.path("local.bin");
    std::fs::write(&local, sample(700_000)).unwrap();
    let remote = agent.path_str("from-file.bin");
    assert!(
        client
            .put_file(&remote, 0o755, &local)
            .await
            .unwrap()
            .changed
    );
    assert!(
        !client
            .put_file(&remote, 0o755, &local)
            .await
            .unwrap()
            .changed
    );
    assert_eq!(std::fs::read(&remote).unwrap(), sample(700_000));
    assert!(
        client
            .put(&agent.path_str("empty"), 0o644, b"")
            .await
            .unwrap()
            .changed
    );
    assert_eq!(std::fs::read(agent.path("empty")).unwrap(), b"");
}

#[tokio::test]
async fn put_with_wrong_digest_is_rejected_and_leaves_nothing() {
    let agent = TestAgent::start();
    let stream = TcpStream::connect(agent.addr).await.unwrap();
    let (mut channel, _) = handshake::connect(stream, &agent.secret).await.unwrap();
    let dir = agent.path("target-dir");
    let path = dir.join("file");
    let request = Request::Put(PutRequest {
        path: path.to_str().unwrap().to_owned(),
        mode: 0o644,
        size: 5,
        sha256: Sha256Digest::of(b"other"),
    });
    channel.send_control(&request).await.unwrap();
    let ready: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    assert_eq!(ready, Response::Ready);
    channel.send(FrameKind::Data, b"hello").await.unwrap();
    let reply: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    let Response::Error(error) = reply else {
        panic!("expected an error, got {reply:?}");
    };
    assert_eq!(error.kind, ErrorKind::DigestMismatch);
    assert!(error.message.contains("file"), "{}", error.message);
    assert!(!path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );

    // The connection stays usable.
    channel
        .send_control(&Request::Stat {
            path: path.to_str().unwrap().to_owned(),
        })
        .await
        .unwrap();
    let reply: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    assert_eq!(reply, Response::Stat { stat: None });
}

#[tokio::test]
async fn put_with_too_much_data_closes_the_connection_and_leaves_nothing() {
    let agent = TestAgent::start();
    let stream = TcpStream::connect(agent.addr).await.unwrap();
    let (mut channel, _) = handshake::connect(stream, &agent.secret).await.unwrap();
    let path = agent.path("overflow");
    let request = Request::Put(PutRequest {
        path: path.to_str().unwrap().to_owned(),
        mode: 0o644,
        size: 2,
        sha256: Sha256Digest::of(b"ab"),
    });
    channel.send_control(&request).await.unwrap();
    channel.recv().await.unwrap();
    channel.send(FrameKind::Data, b"abc").await.unwrap();
    let reply: Response = serde_json::from_slice(&channel.recv().await.unwrap().payload).unwrap();
    assert!(
        matches!(reply, Response::Error(ref error) if error.kind == ErrorKind::BadRequest),
        "{reply:?}"
    );
    assert!(channel.recv().await.is_err());
    assert!(!path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(agent.dir.path())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains("sinew-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn file_errors_are_typed() {
    let agent = TestAgent::start();
    let mut client = agent.client().await;
    let error = client.get(&agent.path_str("missing")).await.unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::NotFound));
    assert!(error.to_string().contains("missing"), "{error}");
    let error = client.get(&agent.path_str("")).await.unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::BadRequest));
    let error = client.put("relative/path", 0o644, b"x").await.unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::BadRequest));
    let error = client
        .put(&agent.path_str("x"), 0o100644, b"x")
        .await
        .unwrap_err();
    assert_eq!(error.remote_kind(), Some(ErrorKind::BadRequest));
    std::fs::write(agent.path("a-file"), b"").unwrap();
    let error = client
        .put(&agent.path_str("a-file/below"), 0o644, b"x")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("a-file"), "{error}");
    assert!(client.facts().await.is_ok());
}
