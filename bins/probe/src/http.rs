//! `sinew-probe http-server PORT`: a small HTTP/1.1 service to deploy, proxy and switch.
//! `GET /healthz` answers `ok` (or 503 when `PROBE_UNHEALTHY` is set, a broken version);
//! every other request answers one JSON line naming the machine, the version
//! (`PROBE_VERSION`) and the instance (`SINEW_INSTANCE`). Connections are kept alive, a
//! thread each.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

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
fn answer(writer: &mut impl Write, status: &str, body: &str, close: bool) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(answer.as_bytes())
}
