//! `sinew-probe`: reports, as one JSON line, what machine and kernel it runs on.
//!
//! It is the small static program the `two-arch` playbook cross-compiles and ships to
//! each guest: if it prints the guest's machine name, the build, the shipping and the
//! guest all did their job.

use std::process::ExitCode;

fn main() -> ExitCode {
    let uts = nix::sys::utsname::uname();
    let uts = match uts {
        Ok(uts) => uts,
        Err(err) => {
            eprintln!("sinew-probe: uname failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = serde_json::json!({
        "machine": uts.machine().to_string_lossy(),
        "kernel": uts.release().to_string_lossy(),
        "os": uts.sysname().to_string_lossy(),
        "hostname": uts.nodename().to_string_lossy(),
        "compiled_for": std::env::consts::ARCH,
    });
    println!("{report}");
    ExitCode::SUCCESS
}
