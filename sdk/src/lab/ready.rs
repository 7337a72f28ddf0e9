//! Waiting for a booted guest's agent: its ready line on the console, then an
//! authenticated handshake, unless the guest's QEMU exits or its boot server refuses it
//! something first.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use sinew_proto::{AgentClient, Secret};
use sinew_vm::console::ConsoleError;

use super::{lock, nic_mac, BootFrom, GuestPlan, LabError, Slot, READY_LINE};
use crate::boot::BootServer;
use crate::run::Ctx;

/// What waiting for any guest of a lab needs.
pub(super) struct Waiter<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) secret: &'a Secret,
    pub(super) timeout: Duration,
    pub(super) boot_server: Option<&'a BootServer>,
}

impl Waiter<'_> {
    /// Waits for the agent's ready line on the console, then for an authenticated
    /// handshake. Watching the console first matters: until the guest's NIC is up, QEMU's
    /// user networking accepts a connection and holds it, so a handshake attempt would sit
    /// in its timeout instead of failing fast.
    pub(super) fn wait_ready(
        &self,
        plan: &GuestPlan,
        slot: &Slot,
        agent: SocketAddr,
        started: Instant,
        console_log: &Path,
    ) -> Result<AgentClient, LabError> {
        let timeout = self.timeout;
        let console = lock(slot).as_ref().map(|r| r.vm.console().clone());
        let not_ready = |why: String| LabError::NotReady {
            guest: plan.machine.name.clone(),
            waited: timeout,
            why,
            log: console_log.into(),
            tail: console
                .as_ref()
                .map(|c| c.last_lines(20).join("\n"))
                .unwrap_or_default(),
        };
        let Some(watch) = console.as_ref() else {
            return Err(not_ready("the guest is gone".into()));
        };
        let remaining = timeout.saturating_sub(started.elapsed());
        let ready = self.ctx.runtime.block_on(async {
            tokio::select! {
                ready = watch.wait_for_line(READY_LINE, remaining) => Ok(ready),
                refused = self.refused(plan, remaining) => Err(refused),
            }
        });
        let ready = match ready {
            Ok(ready) => ready,
            Err(refused) => return Err(not_ready(refused)),
        };
        match ready {
            Ok(_) => {}
            Err(ConsoleError::Exited {
                status,
                qemu_output,
                ..
            }) => {
                return Err(not_ready(format!(
                    "QEMU exited ({status}): {}",
                    qemu_output.trim()
                )))
            }
            Err(ConsoleError::Timeout { .. }) => {
                return Err(not_ready(format!("no {READY_LINE:?} line")))
            }
            Err(err) => return Err(not_ready(err.to_string())),
        }
        loop {
            let attempt = AgentClient::connect(agent, self.secret, Duration::from_secs(1));
            match self.ctx.runtime.block_on(attempt) {
                Ok(client) => return Ok(client),
                Err(err) if err.is_refused_by_auth() => {
                    return Err(not_ready(format!("agent refused the lab's secret: {err}")))
                }
                Err(err) if started.elapsed() >= timeout => {
                    return Err(not_ready(format!("last attempt: {err}")))
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Resolves when the boot server refuses `plan`'s guest a script or an asset (it will
    /// not boot then), saying what; never for a guest booted directly.
    async fn refused(&self, plan: &GuestPlan, within: Duration) -> String {
        let (Some(server), BootFrom::Network) = (self.boot_server, plan.machine.boot) else {
            return std::future::pending().await;
        };
        let mac = nic_mac(plan, 0).to_string();
        let refusal = server
            .wait_for(
                |e| e.status >= 400 && e.labels.get("mac") == Some(mac.as_str()),
                within,
            )
            .await;
        match refusal {
            Ok(event) => {
                let why = match event.status {
                    403 => ": its digest is not the one the image names",
                    _ => "",
                };
                format!(
                    "the boot server answered {} to its request for {}{why}",
                    event.status, event.fetched
                )
            }
            Err(_) => std::future::pending().await,
        }
    }
}
