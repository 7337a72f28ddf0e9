//! `sinew-probe http-server PORT`: a small HTTP/1.1 service to deploy, proxy and switch.
//! `GET /healthz` answers `ok` (or 503 when `PROBE_UNHEALTHY` is set, a broken version);
//! every other request answers one JSON line naming the machine, the version
//! (`PROBE_VERSION`) and the instance (`SINEW_INSTANCE`). Connections are kept alive, a
//! thread each.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::SystemTime;

/// The longest request head read; a longer one is refused.
const MAX_HEAD: usize = 16 << 10;

/// Serves on `port` (all addresses) until killed.
pub fn serve(port: u16) -> Result<(), String> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .map_err(|error| format!("http-server: cannot listen on port {port}: {error}"))?;
    let identity = identity()?;
    let unhealthy = std::env::var_os("PROBE_UNHEALTHY").is_some();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let identity = identity.clone();
        std::thread::spawn(move || {
            let _ = converse(stream, &identity, unhealthy);
        });
    }
    Ok(())
}

/// The body of every answer but `/healthz`'s.
fn identity() -> Result<String, String> {
    let mut report = crate::report()?;
    report["version"] = std::env::var("PROBE_VERSION").unwrap_or_default().into();
    report["instance"] = std::env::var("SINEW_INSTANCE").unwrap_or_default().into();
    Ok(format!("{report}\n"))
}

/// Answers requests on one connection until the client closes it or asks to.
fn converse(stream: TcpStream, identity: &str, unhealthy: bool) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_head(&mut reader)? else {
            return Ok(());
        };
        let Some(request) = request else {
            return answer(&mut writer, "400 Bad Request", "bad request\n", true);
        };
        if request.body_len > 0 {
            std::io::copy(
                &mut (&mut reader).take(request.body_len),
                &mut std::io::sink(),
            )?;
        }
        let (status, body) = match request.path.as_str() {
            "/healthz" if unhealthy => ("503 Service Unavailable", "unhealthy\n"),
            "/healthz" => ("200 OK", "ok\n"),
            _ => ("200 OK", identity),
        };
        answer(&mut writer, status, body, request.close)?;
        if request.close {
            return Ok(());
        }
    }
}

struct Head {
    path: String,
    body_len: u64,
    close: bool,
}

/// Reads a request head: `None` at a clean end of the connection, `Some(None)` for a head
/// that is not HTTP/1.x.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Option<Head>>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(_method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(Some(None));
    };
    let path = path.to_owned();
    let mut close = version == "HTTP/1.0";
    let mut body_len = 0;
    let mut read = line.len();
    loop {
        line.clear();
        read += reader.read_line(&mut line)?;
        if line.is_empty() || read > MAX_HEAD {
            return Ok(Some(None));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Ok(Some(None));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let Ok(len) = value.parse() else {
                return Ok(Some(None));
            };
            body_len = len;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(Some(Head {
        path,
        body_len,
        close,
    })))
}

/// Writes the answer in one call: written piece by piece, it went out as eight segments.
/// It carries a Date, as an origin server with a clock must (RFC 9110, 6.6.1); without one,
/// a proxy that follows the RFC adds it and one that does not passes the answer on as is.
fn answer(writer: &mut impl Write, status: &str, body: &str, close: bool) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    let answer = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        httpdate::fmt_http_date(SystemTime::now()),
        body.len()
    );
    writer.write_all(answer.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One conversation over loopback: `requests` written at once, and all that comes back
    /// before the probe closes the connection.
    fn converse_over_loopback(requests: &str, unhealthy: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("a client");
            converse(stream, "{\"version\":\"v1\"}\n", unhealthy).expect("answered");
        });
        let mut client = TcpStream::connect(address).expect("connected");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        client.write_all(requests.as_bytes()).expect("sent");
        let mut answers = String::new();
        client.read_to_string(&mut answers).expect("the answers");
        server.join().expect("the server thread");
        answers
    }

    #[test]
    fn answers_kept_alive_requests_in_turn_each_dated_and_closes_when_asked() {
        let answers = converse_over_loopback(
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody\
             GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        );
        let (first, second) = answers
            .split_once("HTTP/1.1 200 OK\r\n")
            .and_then(|(_, rest)| rest.split_once("HTTP/1.1 200 OK\r\n"))
            .unwrap_or_else(|| panic!("two answers: {answers:?}"));
        assert!(
            first.ends_with("\r\n\r\n{\"version\":\"v1\"}\n"),
            "{first:?}"
        );
        assert!(first.contains("Connection: keep-alive\r\n"), "{first:?}");
        assert!(second.ends_with("\r\n\r\nok\n"), "{second:?}");
        assert!(second.contains("Connection: close\r\n"), "{second:?}");
        for answer in [first, second] {
            let date = answer
                .lines()
                .find_map(|line| line.strip_prefix("Date: "))
                .unwrap_or_else(|| panic!("a Date header: {answer:?}"));
            let date = httpdate::parse_http_date(date).expect("an HTTP date");
            let skew = SystemTime::now()
                .duration_since(date)
                .expect("not in the future");
            assert!(skew < Duration::from_secs(5), "{skew:?}");
        }
    }

    #[test]
    fn an_unhealthy_probe_fails_its_health_check_and_a_bad_head_is_refused() {
        let answers = converse_over_loopback(
            "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nnot http\r\n\r\n",
            true,
        );
        assert!(
            answers.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answers:?}"
        );
        assert!(
            answers.contains("HTTP/1.1 400 Bad Request\r\n"),
            "{answers:?}"
        );
        assert!(answers.ends_with("bad request\n"), "{answers:?}");
    }
}
