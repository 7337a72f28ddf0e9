//! A TCP echo that says who answered: enough to show that two containers on different
//! machines reach each other, and which machine each one is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

/// Longest line read from a peer.
const MAX_LINE: u64 = 4096;
/// How long a client waits to connect and for the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers connections on `port` forever, one at a time.
pub fn serve(port: u16) -> Result<(), String> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|err| format!("cannot listen on TCP port {port}: {err}"))?;
    let me = crate::report()?;
    for stream in listener.incoming() {
        // One bad client must not stop the server: report and go on.
        if let Err(err) = stream.and_then(|stream| answer(stream, &me)) {
            eprintln!("sinew-probe: echo-server: {err}");
        }
    }
    Ok(())
}

fn answer(stream: TcpStream, me: &serde_json::Value) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_LINE)).read_line(&mut line)?;
    let reply = serde_json::json!({
        "echo": line.trim_end(),
        "from": peer.ip().to_string(),
        "server": me,
    });
    (&stream).write_all(format!("{reply}\n").as_bytes())
}

/// Sends `message` to the echo server at `address` and returns its answer line.
pub fn ask(address: &str, message: &str) -> Result<String, String> {
    let target: std::net::SocketAddr = address
        .parse()
        .map_err(|_| format!("echo-client: {address:?} is not ADDR:PORT"))?;
    let stream = TcpStream::connect_timeout(&target, CLIENT_TIMEOUT)
        .map_err(|err| format!("cannot connect to {target}: {err}"))?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|err| format!("{target}: {err}"))?;
    (&stream)
        .write_all(format!("{message}\n").as_bytes())
        .map_err(|err| format!("sending to {target}: {err}"))?;
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(|err| format!("reading the answer from {target}: {err}"))?;
    if answer.is_empty() {
        return Err(format!("{target} closed the connection without answering"));
    }
    Ok(answer.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_gets_its_message_back_with_the_servers_identity() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let me = crate::report().expect("uname works");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("a client");
            answer(stream, &me).expect("answered");
        });
        let reply = ask(&format!("127.0.0.1:{port}"), "hello over there").expect("an answer");
        server.join().expect("the server thread");
        let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
        assert_eq!(reply["echo"], "hello over there");
        assert_eq!(reply["from"], "127.0.0.1");
        assert_eq!(reply["server"]["compiled_for"], std::env::consts::ARCH);
    }

    #[test]
    fn client_names_a_bad_address_and_a_refused_connection() {
        assert!(ask("not-an-address", "x")
            .expect_err("a bad address")
            .contains("not ADDR:PORT"));
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
        let port = closed.local_addr().expect("its address").port();
        drop(closed);
        let err = ask(&format!("127.0.0.1:{port}"), "x").expect_err("refused");
        assert!(err.contains("cannot connect"), "{err}");
    }
}
