//! A run of a playbook: its flags, its task lines, its summary and exit code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use clap::{ArgAction, Parser};
use sinew_support::logging::Logging;
use sinew_support::stop::{StopSignal, StopSignals};
use tokio::runtime::Runtime;

use crate::janitor;
use crate::outcome::{BoxError, Outcome, Status, TaskFailed};
use crate::paths::Paths;
use crate::report::{Progress, Reporter, Tally};

/// How a run behaves; `Run::from_args` fills it from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plan only: print what each task would do and touch nothing.
    pub dry_run: bool,
    /// 0: task lines only; 1 (`-v`): also stream guest command output; 2 (`-vv`): debug logs.
    pub verbose: u8,
    /// At most this many items of one [`Run::each`] at a time (Ansible's forks); 0: all.
    pub forks: usize,
    /// The inventory file of existing machines (`-i`), for [`Run::inventory`].
    pub inventory: Option<PathBuf>,
    /// Sudo's password on remote hosts, for [`crate::Host::sudo`]: from
    /// `SINEW_BECOME_PASSWORD` or asked for at the start with `--ask-become-pass` (`-K`).
    pub become_password: Option<Password>,
}

/// A password: never printed, not even by `Debug`.
#[derive(Clone, Default)]
pub struct Password(String);

impl Password {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The standard flags every playbook accepts.
#[derive(Debug, Parser)]
struct Flags {
    /// Print the plan and touch nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stream command output from guests (-v); add debug logs (-vv).
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
    /// Run a parallel task on at most N hosts at a time (default: all at once).
    #[arg(long, value_name = "N", env = "SINEW_FORKS", default_value_t = 0)]
    forks: usize,
    /// The inventory of existing machines, for playbooks that drive them over SSH.
    #[arg(short, long, value_name = "FILE", env = "SINEW_INVENTORY")]
    inventory: Option<PathBuf>,
    /// Ask for sudo's password on remote hosts before starting (else SINEW_BECOME_PASSWORD).
    #[arg(short = 'K', long)]
    ask_become_pass: bool,
}

/// Errors starting a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command line did not parse; the message is clap's, with usage. It is kept as
    /// text: the parser is the SDK's own business, not part of its API.
    #[error("{0}")]
    Flags(String),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `--ask-become-pass` could not read a password from the terminal.
    #[error("reading the sudo password from the terminal: {0}")]
    Password(#[source] std::io::Error),
}

/// The run failed: at least one task failed.
#[derive(Debug, thiserror::Error)]
#[error("{failed} task(s) failed")]
pub struct RunFailed {
    /// How many tasks failed.
    pub failed: usize,
}

/// What every part of a run shares: options, reporter, runtime, directories.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) name: String,
    pub(crate) options: Options,
    pub(crate) reporter: Reporter,
    pub(crate) runtime: Runtime,
    pub(crate) paths: Paths,
}

impl Ctx {
    pub(crate) fn dry_run(&self) -> bool {
        self.options.dry_run
    }
}

/// A playbook run: create one at the top of `main`, run tasks on it, `finish` it.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// let run = sinew::Run::from_args("hello")?;
/// run.task("say hello", || Ok::<_, std::io::Error>(()))?;
/// run.finish()?;
/// # Ok(()) }
/// ```
///
/// # Methods by topic
///
/// Each domain keeps its methods in its own `impl Run` block, in the file named here:
///
/// - Starting, tasks and output (`run.rs`): [`Run::from_args`], [`Run::with_options`],
///   [`Run::is_dry_run`], [`Run::paths`], [`Run::task`], [`Run::task_with_progress`],
///   [`Run::each`], [`Run::each_result`], [`Run::each_or_drop`], [`Run::say`], [`Run::tally`],
///   [`Run::finish`].
/// - Build (`build.rs`): [`Run::build`].
/// - Prepare the machine (`setup.rs`): [`Run::prepare`].
/// - Lab boot and shutdown (`lab.rs`): [`Run::boot`], [`Run::crash`], [`Run::shutdown`].
/// - Images (`image.rs`): [`Run::signing_key`], [`Run::build_image`], [`Run::install_image`].
/// - KV cluster (`kv/deploy.rs`): [`Run::deploy_kv`].
/// - Overlay (`overlay.rs`): [`Run::deploy_overlay`].
/// - Scheduler (`sched.rs`): [`Run::deploy_scheduler`].
/// - Existing machines over SSH (`ssh/mod.rs`): [`Run::inventory`], [`Run::connect`],
///   [`Run::connect_each`].
#[derive(Debug)]
pub struct Run {
    ctx: Arc<Ctx>,
    finished: AtomicBool,
}

impl Run {
    /// Starts a run named `name` with the standard flags parsed from the command line
    /// (`--dry-run`, `-v`, `--help`). On `--help` it prints usage and exits.
    pub fn from_args(name: &str) -> Result<Self, RunError> {
        let flags = match Flags::try_parse() {
            Ok(flags) => flags,
            Err(err) if !err.use_stderr() => err.exit(),
            Err(err) => return Err(RunError::Flags(err.to_string())),
        };
        let become_password = if flags.ask_become_pass {
            let prompt = format!("{name}: sudo password on remote hosts: ");
            let text = rpassword::prompt_password(prompt).map_err(RunError::Password)?;
            Some(Password(text))
        } else {
            std::env::var("SINEW_BECOME_PASSWORD").ok().map(Password)
        };
        Self::with_options(
            name,
            Options {
                dry_run: flags.dry_run,
                verbose: flags.verbose,
                forks: flags.forks,
                inventory: flags.inventory,
                become_password,
            },
        )
    }

    /// Starts a run with explicit options (tests, embedding).
    pub fn with_options(name: &str, options: Options) -> Result<Self, RunError> {
        init_logging(options.verbose);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(RunError::Runtime)?;
        let ctx = Arc::new(Ctx {
            name: name.to_string(),
            options,
            reporter: Reporter::new(),
            runtime,
            paths: Paths::from_env(),
        });
        watch_signals(&ctx);
        if ctx.dry_run() {
            ctx.reporter
                .line(&format!("{name}: dry run, nothing will be touched"));
        }
        Ok(Self {
            ctx,
            finished: AtomicBool::new(false),
        })
    }

    /// True when `--dry-run` was given.
    pub fn is_dry_run(&self) -> bool {
        self.ctx.dry_run()
    }

    /// The directories this run uses.
    pub fn paths(&self) -> &Paths {
        &self.ctx.paths
    }

    /// Runs `f` as a task called `name`: shows it while it runs, then its status and
    /// duration. An error fails the task and comes back as [`TaskFailed`].
    pub fn task<T, E>(&self, name: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, TaskFailed>
    where
        T: Outcome,
        E: Into<BoxError>,
    {
        run_task(&self.ctx.reporter, name.to_string(), |_| f())
    }

    /// Like [`Run::task`], for a long step: `f` reports how far it has got through the
    /// [`Progress`] it is given, which its line shows while it runs.
    pub fn task_with_progress<T, E>(
        &self,
        name: &str,
        f: impl FnOnce(&Progress) -> Result<T, E>,
    ) -> Result<T, TaskFailed>
    where
        T: Outcome,
        E: Into<BoxError>,
    {
        run_task(&self.ctx.reporter, name.to_string(), f)
    }

    /// Runs `f` for every item at once (at most `--forks` at a time), one task line each
    /// (`name [item]`). Waits for all, then returns the results in input order, or the
    /// first failure.
    pub fn each<I, T, E>(
        &self,
        items: &[I],
        name: &str,
        f: impl Fn(&I) -> Result<T, E> + Sync,
    ) -> Result<Vec<T>, TaskFailed>
    where
        I: std::fmt::Display + Sync,
        T: Outcome + Send,
        E: Into<BoxError>,
    {
        self.each_result(items, name, f).into_iter().collect()
    }

    /// Like [`Run::each`], returning every item's result: for work where the items that
    /// succeeded are of use even when others failed (their lines say so).
    pub fn each_result<I, T, E>(
        &self,
        items: &[I],
        name: &str,
        f: impl Fn(&I) -> Result<T, E> + Sync,
    ) -> Vec<Result<T, TaskFailed>>
    where
        I: std::fmt::Display + Sync,
        T: Outcome + Send,
        E: Into<BoxError>,
    {
        let reporter = &self.ctx.reporter;
        let forks = match self.ctx.options.forks {
            0 => items.len(),
            forks => forks.min(items.len()),
        };
        // Each fork takes the next item until none is left.
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<T, TaskFailed>)> = thread::scope(|scope| {
            let forks: Vec<_> = (0..forks)
                .map(|_| {
                    let (f, next) = (&f, &next);
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(item) = items.get(index) else {
                                return done;
                            };
                            let name = format!("{name} [{item}]");
                            done.push((index, run_task(reporter, name, |_| f(item))));
                        }
                    })
                })
                .collect();
            forks
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        results.sort_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }

    /// Like [`Run::each`], as Ansible treats hosts: an item whose task fails (its line
    /// says why) is removed from `items`, and the others carry on. Returns the remaining
    /// items' results, in their order.
    pub fn each_or_drop<I, T, E>(
        &self,
        items: &mut Vec<I>,
        name: &str,
        f: impl Fn(&I) -> Result<T, E> + Sync,
    ) -> Vec<T>
    where
        I: std::fmt::Display + Sync,
        T: Outcome + Send,
        E: Into<BoxError>,
    {
        let results = self.each_result(items, name, f);
        let mut ok = results.iter().map(Result::is_ok);
        items.retain(|_| ok.next().unwrap_or(false));
        results.into_iter().filter_map(Result::ok).collect()
    }

    /// Prints a line of the playbook's own output to stdout, without tearing spinners.
    pub fn say(&self, text: impl AsRef<str>) {
        self.ctx.reporter.out(text.as_ref());
    }

    /// Counts of finished tasks so far.
    pub fn tally(&self) -> Tally {
        self.ctx.reporter.tally()
    }

    /// Ends the run: prints the summary, and fails if any task failed.
    pub fn finish(self) -> Result<Tally, RunFailed> {
        self.print_summary();
        let tally = self.tally();
        if tally.failed > 0 {
            Err(RunFailed {
                failed: tally.failed,
            })
        } else {
            Ok(tally)
        }
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    fn print_summary(&self) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            let summary = self.ctx.reporter.summary(&self.ctx.name);
            self.ctx.reporter.line(&summary);
        }
    }
}

impl Drop for Run {
    /// A run left early (a `?` on a failed task, a panic) still prints its summary.
    fn drop(&mut self) {
        self.print_summary();
    }
}

pub(crate) fn run_task<T, E>(
    reporter: &Reporter,
    name: String,
    f: impl FnOnce(&Progress) -> Result<T, E>,
) -> Result<T, TaskFailed>
where
    T: Outcome,
    E: Into<BoxError>,
{
    let line = reporter.start(name.clone());
    match f(line.progress()) {
        Ok(value) => {
            line.finish(value.status(), value.detail().as_deref());
            Ok(value)
        }
        Err(err) => {
            let err: BoxError = err.into();
            let failed = TaskFailed::new(&name, err.as_ref());
            line.finish(Status::Failed, Some(failed.message()));
            Err(failed)
        }
    }
}

/// Ctrl-C and SIGTERM: kill the run's guests, remove its private directories, exit.
fn watch_signals(ctx: &Arc<Ctx>) {
    let weak = Arc::downgrade(ctx);
    ctx.runtime.spawn(async move {
        let Ok(mut stop) = StopSignals::install() else {
            tracing::warn!("cannot watch SIGINT/SIGTERM; an interrupted run relies on PDEATHSIG");
            return;
        };
        let signal = stop.recv().await;
        let name = match signal {
            StopSignal::Interrupt => "interrupted",
            StopSignal::Terminate => "terminated",
        };
        let killed = janitor::sweep();
        if let Some(ctx) = weak.upgrade() {
            ctx.reporter
                .line(&format!("{}: {name}, stopped {killed} guest(s)", ctx.name));
        }
        std::process::exit(i32::from(signal.exit_code()));
    });
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 | 1 => "warn,openraft=warn",
        _ => "debug,openraft=warn",
    };
    Logging::new("SINEW_LOG", default).init();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_runs_at_most_forks_items_at_once_and_keeps_their_order() {
        let options = Options {
            forks: 2,
            ..Options::default()
        };
        let run = Run::with_options("forks", options).expect("a run");
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<u32> = (0..7).collect();
        let results = run.each_result(&items, "item", |item| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            running.fetch_sub(1, Ordering::SeqCst);
            if *item == 3 {
                Err("three fails")
            } else {
                Ok(ItemDone(*item))
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let done: Vec<Option<u32>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|d| d.0))
            .collect();
        assert_eq!(
            done,
            [Some(0), Some(1), Some(2), None, Some(4), Some(5), Some(6)]
        );
        assert_eq!(run.tally().failed, 1);
    }

    struct ItemDone(u32);

    impl Outcome for ItemDone {
        fn status(&self) -> Status {
            Status::Ok
        }
    }
}
