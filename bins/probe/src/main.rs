//! `sinew-probe`: the small static program playbooks cross-compile and ship to check that
//! the build, the shipping, the guest and the network all did their job.
//!
//! - `sinew-probe` reports, as one JSON line, what machine and kernel it runs on.
//! - `sinew-probe echo-server PORT` answers every TCP connection on PORT with one JSON line
//!   naming this machine, followed by the line the client sent.
//! - `sinew-probe echo-client ADDR:PORT MESSAGE` sends MESSAGE and prints the answer.
//! - `sinew-probe http-server PORT` serves HTTP/1.1 on PORT: `/healthz`, and for anything
//!   else this machine, `PROBE_VERSION` and `SINEW_INSTANCE` as JSON.

mod echo;
mod http;

use std::process::ExitCode;

const USAGE: &str = "usage: sinew-probe | sinew-probe echo-server PORT | \
    sinew-probe echo-client ADDR:PORT MESSAGE | sinew-probe http-server PORT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => report().map(|report| println!("{report}")),
        ["echo-server", port] => port
            .parse()
            .map_err(|_| format!("echo-server: {port:?} is not a TCP port (1-65535)"))
            .and_then(echo::serve),
        ["http-server", port] => port
            .parse()
            .map_err(|_| format!("http-server: {port:?} is not a TCP port (1-65535)"))
            .and_then(http::serve),
        ["echo-client", address, message] => {
            echo::ask(address, message).map(|answer| println!("{answer}"))
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sinew-probe: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What machine and kernel this is, as JSON.
pub(crate) fn report() -> Result<serde_json::Value, String> {
    let uts = nix::sys::utsname::uname().map_err(|err| format!("uname failed: {err}"))?;
    Ok(serde_json::json!({
        "machine": uts.machine().to_string_lossy(),
        "kernel": uts.release().to_string_lossy(),
        "os": uts.sysname().to_string_lossy(),
        "hostname": uts.nodename().to_string_lossy(),
        "compiled_for": std::env::consts::ARCH,
    }))
}
