//! What brings the machine down, and bringing it down in order.

use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::reaper::ProcessTable;
use crate::services::Services;

/// How long other processes get to exit after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;
const KEY_PRESSED: i32 = 1;

/// Why the machine is going down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A client sent `Poweroff`.
    Requested,
    /// SIGTERM, or SIGINT (which the kernel sends PID 1 on Ctrl-Alt-Del).
    Signal(&'static str),
    /// The (ACPI) power button was pressed.
    PowerButton,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested => f.write_str("poweroff requested by a client"),
            Reason::Signal(name) => write!(f, "received {name}"),
            Reason::PowerButton => f.write_str("power button pressed"),
        }
    }
}

/// Why a shutdown trigger could not be watched.
#[derive(Debug, Error)]
pub enum ShutdownError {
    /// A signal handler could not be installed.
    #[error("cannot watch {name}: {source}")]
    Signal {
        /// The signal.
        name: &'static str,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Sends a [`Reason`] when SIGTERM or SIGINT arrives.
pub fn watch_signals(trigger: mpsc::Sender<Reason>) -> Result<(), ShutdownError> {
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut stream = signal(kind).map_err(|source| ShutdownError::Signal { name, source })?;
        let trigger = trigger.clone();
        tokio::spawn(async move {
            if stream.recv().await.is_some() {
                // A full channel means a shutdown is already under way.
                let _ = trigger.try_send(Reason::Signal(name));
            }
        });
    }
    Ok(())
}

/// Watches every `/dev/input/event*` device for a KEY_POWER press and sends
/// [`Reason::PowerButton`]. Devices that cannot be opened are skipped.
pub fn watch_power_button(trigger: mpsc::Sender<Reason>) {
    let Ok(entries) = std::fs::read_dir("/dev/input") else {
        tracing::debug!("no /dev/input: power button not watched");
        return;
    };
    let devices = entries.flatten().map(|entry| entry.path()).filter(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("event"))
    });
    for path in devices {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|file| {
                // SAFETY: the `File` owns its descriptor, which stays open and unchanged for
                // as long as the `AsyncFd` owns the `File`.
                unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
                    .map_err(|error| error.into_parts().1)
            });
        match opened {
            Ok(device) => {
                tracing::debug!(device = %path.display(), "watching for the power button");
                tokio::spawn(watch_device(path, device, trigger.clone()));
            }
            Err(error) => {
                tracing::debug!(device = %path.display(), %error, "cannot watch input device")
            }
        }
    }
}

async fn watch_device(path: PathBuf, device: AsyncFd<File>, trigger: mpsc::Sender<Reason>) {
    let event_len = std::mem::size_of::<libc::input_event>();
    let mut buffer = vec![0u8; event_len * 64];
    loop {
        let mut ready = match device.readable().await {
            Ok(ready) => ready,
            Err(error) => {
                tracing::debug!(device = %path.display(), %error, "input device failed");
                return;
            }
        };
        let read = ready.try_io(|device| {
            let mut file = device.get_ref();
            file.read(&mut buffer)
        });
        match read {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                if buffer[..n].chunks_exact(event_len).any(is_power_press) {
                    let _ = trigger.try_send(Reason::PowerButton);
                    return;
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(device = %path.display(), %error, "input device failed");
                return;
            }
            Err(_would_block) => continue,
        }
    }
}

/// Whether a raw `struct input_event` is a power key press. The struct ends with
/// `u16 type, u16 code, i32 value` after a `struct timeval` whose size depends on the
/// architecture, so the fields are found from the end.
fn is_power_press(event: &[u8]) -> bool {
    let Some(tail) = event
        .len()
        .checked_sub(8)
        .and_then(|start| event.get(start..))
    else {
        return false;
    };
    let kind = u16::from_ne_bytes([tail[0], tail[1]]);
    let code = u16::from_ne_bytes([tail[2], tail[3]]);
    let value = i32::from_ne_bytes([tail[4], tail[5], tail[6], tail[7]]);
    kind == EV_KEY && code == KEY_POWER && value == KEY_PRESSED
}

/// PID 1's way down: stop services gracefully, ask every other process to exit, kill what
/// remains, sync, power off. Never returns.
pub async fn power_off(services: &Services, processes: &ProcessTable) -> Infallible {
    services.shut_down().await;
    // kill(-1) reaches every process but PID 1 itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    if !processes.wait_for_no_children(KILL_GRACE).await {
        tracing::warn!("processes left after SIGTERM; killing them");
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        processes.wait_for_no_children(KILL_GRACE).await;
    }
    power_off_now()
}

/// Syncs and powers off immediately. If even that fails, PID 1 must not exit (the kernel
/// would panic), so it waits forever.
pub fn power_off_now() -> ! {
    tracing::info!("powering off");
    nix::unistd::sync();
    let Err(error) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("sinew-init: cannot power off: {error}");
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut bytes = vec![0u8; std::mem::size_of::<libc::input_event>() - 8];
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.extend_from_slice(&value.to_ne_bytes());
        bytes
    }

    #[test]
    fn recognises_power_key_presses_only() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(EV_KEY, 30, 1)));
        assert!(!is_power_press(&event(0, 0, 0)));
        assert!(!is_power_press(&[1, 2, 3]));
    }
}
