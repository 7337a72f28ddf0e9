//! `sinew present`: serve a deck, check its blocks, or export it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sinew::paths::Paths;
use sinew::present::run::{Job, RunEvent, Runner};
use sinew::present::serve::{self, Guard, Presenter};
use sinew::present::{self as deck, Deck};
use sinew_support::stop::StopSignals;

/// Serve a slide deck whose code blocks run live.
///
/// The deck is Markdown (slides separated by `---`) or Go's `.slide` format. Run compiles
/// and runs a block, its output streaming into the slide: a fenced block marked `playbook`
/// is a complete playbook; `playbook name=NAME` runs the workspace's playbook NAME;
/// `sh guest=MACHINE` runs a shell command on a guest of the deck's lab (a title block line
/// `Lab: amd=x86_64 arm=aarch64`); Go `.play` blocks run with `go`. `editable` blocks can be
/// edited in the browser. Keys: arrows, space and page keys move, Home/End jump, `f` is
/// full screen, `p` opens the presenter view with the speaker notes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deck: a Markdown file, or a Go `.slide` file.
    deck: PathBuf,
    /// Where to listen. A non-loopback address needs a token, which the printed URL
    /// carries.
    #[arg(long, env = "SINEW_PRESENT_LISTEN", default_value = "127.0.0.1:3999")]
    listen: SocketAddr,
    /// The token a non-loopback listener requires (default: a random one).
    #[arg(long, env = "SINEW_PRESENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Let every runnable block be edited in the browser, not only those marked `editable`.
    #[arg(long)]
    edit: bool,
    /// Build every block and exit: non-zero, naming the slide and block, on the first
    /// error.
    #[arg(long, conflicts_with = "export")]
    check: bool,
    /// Write a static copy of the deck to DIR (index.html and the deck's pictures), with
    /// each block's output from its last run, and exit.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let deck = deck::read(&args.deck)?;
    let paths = Paths::from_env();
    let runner = Arc::new(Runner::new(&paths, &args.deck));
    if let Some(dir) = &args.export {
        let index = deck::export::write(&deck, &args.deck, &runner.captured(), dir)?;
        println!("{}", index.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if args.check {
        return runtime.block_on(check(&deck, &args.deck, &runner));
    }
    runtime.block_on(serve(args, runner))?;
    Ok(ExitCode::SUCCESS)
}

/// Serves until SIGINT or SIGTERM, then stops every run.
async fn serve(args: Args, runner: Arc<Runner>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    let local = address.ip().is_loopback();
    let token = match (local, args.token) {
        (true, _) => None,
        (false, Some(token)) => Some(token),
        (false, None) => Some(random_token()?),
    };
    let hosts = local.then(|| {
        let port = address.port();
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            address.to_string(),
        ]
    });
    let url = match &token {
        Some(token) => format!("http://{address}/?token={token}"),
        None => format!("http://{address}/"),
    };
    let presenter = Arc::new(Presenter {
        deck: args.deck.clone(),
        edit_all: args.edit,
        guard: Guard { hosts, token },
        runner,
    });
    println!("{url}");
    tracing::info!(deck = %args.deck.display(), %url, "serving; Ctrl-C stops every run and quits");
    let mut stop = StopSignals::install().context("watching SIGTERM and SIGINT")?;
    let shutdown = async move {
        let signal = stop.recv().await;
        tracing::info!(signal = signal.name(), "quitting: stopping every run");
    };
    serve::serve(listener, presenter, shutdown).await;
    Ok(())
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Builds every runnable block in deck order; stops at the first failure, naming it.
async fn check(deck: &Deck, file: &Path, runner: &Runner) -> Result<ExitCode> {
    let mut checked = 0;
    for slide in &deck.slides {
        for (index, block) in slide.code_blocks().enumerate() {
            let Some(job) = Job::of(deck::block_id(slide.number, index), block, &deck.lab) else {
                continue;
            };
            let place = format!(
                "slide {} ({}:{}), block {index}",
                slide.number,
                file.display(),
                block.line
            );
            eprintln!("checking {place}");
            let built = runner
                .build_only(&job, &mut |event| {
                    if let RunEvent::Diagnostic { rendered, .. } = event {
                        eprint!("{rendered}");
                    }
                })
                .await;
            if let Err(message) = built {
                bail!("{place}: {message}");
            }
            checked += 1;
        }
    }
    println!("{checked} blocks checked");
    Ok(ExitCode::SUCCESS)
}
