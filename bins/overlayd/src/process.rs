//! overlayd as a process: the daemon on the real kernel (rtnetlink, and the fast path when
//! asked for), until SIGTERM or SIGINT.
//!
//! It lives in the library, not in the binary, so that the async code it drives is compiled
//! once, here: a binary that awaited the daemon itself would compile its whole call tree
//! again.

use anyhow::{Context, Result};
use sinew_support::stop::StopSignals;
use tokio::sync::watch;

use crate::daemon::{self, Settings};
use crate::dataplane::Netlink;
use crate::fastpath::{FastPath, Mode};

/// Runs the daemon until SIGTERM or SIGINT; the data plane and the lease stay in place,
/// only the fast path is detached (the kernel's path needs no daemon to keep it right).
pub fn run(settings: &Settings, fast_path: Mode) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, fast_path))
}

async fn serve(settings: &Settings, fast_path: Mode) -> Result<()> {
    let mut stop = StopSignals::install().context("handling SIGTERM and SIGINT")?;
    let mut kernel = Netlink::open().context("opening netlink")?;
    let mut fast_path = FastPath::open(fast_path).context("--fast-path")?;
    let (targets, watching) = watch::channel(None);
    let fast = async {
        match &mut fast_path {
            Some(fast_path) => fast_path.run(watching).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = daemon::run(settings, &mut kernel, &targets) => {
            outcome.context("overlayd cannot run").map(drop)
        }
        outcome = fast => outcome.context("--fast-path on").map(drop),
        signal = stop.recv() => {
            tracing::info!(signal = signal.name(), "stopping, leaving the VXLAN device, its entries and the lease in place");
            Ok(())
        }
    };
    if let Some(fast_path) = &mut fast_path {
        fast_path.stop().await;
    }
    outcome
}
