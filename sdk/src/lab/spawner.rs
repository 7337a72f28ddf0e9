//! QEMU started from one long-lived thread, whose end is the guests' end.

use std::sync::mpsc;
use std::thread;

use sinew_vm::machine::{Vm, VmError};
use sinew_vm::qemu;

use super::LabError;

/// Spawns QEMU from one long-lived thread. QEMU gets `PR_SET_PDEATHSIG`, which fires when
/// the *thread* that forked it ends; boot tasks run on short-lived threads, so they ask
/// this thread to spawn. It lives as long as the lab.
type SpawnRequest = (qemu::MachineSpec, mpsc::Sender<Result<Vm, VmError>>);

#[derive(Debug)]
pub(super) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Spawner {
    pub(super) fn start() -> Self {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = thread::Builder::new()
            .name("sinew-spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(Vm::spawn(spec));
                }
            })
            .ok();
        Self {
            requests: Some(tx),
            thread,
        }
    }

    pub(super) fn spawn(&self, spec: qemu::MachineSpec) -> Result<Vm, LabError> {
        let name = spec.name.clone();
        let (tx, rx) = mpsc::channel();
        let gone = || LabError::Spec {
            lab: name.clone(),
            problem: "the spawner thread is gone".into(),
        };
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send((spec, tx))
            .map_err(|_| gone())?;
        Ok(rx.recv().map_err(|_| gone())??)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
