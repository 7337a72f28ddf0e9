//! The signals that ask a process to stop, SIGTERM and SIGINT, watched from the moment it
//! starts.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, handled: once installed they no longer end the process but wait for
/// [`StopSignals::recv`], so a daemon can stop its work cleanly and say why.
#[derive(Debug)]
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Installs the handlers; call it before the work starts, so that a signal during
    /// start-up is not lost. Needs a tokio runtime.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or SIGINT and says which came.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.terminate.recv() => StopSignal::Terminate,
            _ = self.interrupt.recv() => StopSignal::Interrupt,
        }
    }
}

/// Which of the stop signals came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: a supervisor or `kill` asks the process to stop.
    Terminate,
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
}

impl StopSignal {
    /// `"SIGTERM"` or `"SIGINT"`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }

    /// The exit status a shell gives a process this signal ended: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Terminate => 143,
            Self::Interrupt => 130,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StopSignal, StopSignals};
    use nix::sys::signal::{raise, Signal};

    #[tokio::test]
    async fn a_raised_signal_is_named_and_does_not_end_the_process() {
        let mut stop = StopSignals::install().unwrap();
        raise(Signal::SIGTERM).unwrap();
        assert_eq!(stop.recv().await, StopSignal::Terminate);
        raise(Signal::SIGINT).unwrap();
        assert_eq!(stop.recv().await, StopSignal::Interrupt);
    }
}
