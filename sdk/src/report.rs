//! What a run shows a person: one line per task while it runs (a spinner on a terminal),
//! its status and duration when it ends, and a summary at the end.
//!
//! Task lines go to stderr so that a playbook's own results on stdout stay pipeable.
//! A long task says how far it has got through its [`Progress`]: beside its spinner on a
//! terminal; without one (CI, a pipe) there are no spinners or escape codes, and a task
//! still running repeats its line every few seconds with its elapsed time and progress.

use std::fmt::Write as _;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use console::{style, Style, Term};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outcome::Status;

/// Width of the task-name column, so statuses and durations line up.
const NAME_WIDTH: usize = 44;

/// How often a running task's line is repeated without a terminal: often enough that a
/// CI log shows life, seldom enough that a four-minute build stays a screenful.
const TICK_EVERY: Duration = Duration::from_secs(5);

/// Counts of finished tasks by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Tasks that found everything as it should be.
    pub ok: usize,
    /// Tasks that changed something.
    pub changed: usize,
    /// Tasks that only planned (dry run).
    pub planned: usize,
    /// Tasks that failed.
    pub failed: usize,
}

impl Tally {
    fn add(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Planned => self.planned += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

/// Draws task lines; shared by every thread of a run.
#[derive(Debug)]
pub(crate) struct Reporter {
    progress: MultiProgress,
    interactive: bool,
    tally: Mutex<Tally>,
    started: Instant,
}

impl Reporter {
    pub(crate) fn new() -> Self {
        let interactive = Term::stderr().is_term() && std::env::var_os("CI").is_none();
        let target = if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            progress: MultiProgress::with_draw_target(target),
            interactive,
            tally: Mutex::new(Tally::default()),
            started: Instant::now(),
        }
    }

    /// Shows `name` as running and returns the handle that finishes its line.
    pub(crate) fn start(&self, name: String) -> TaskLine<'_> {
        let started = Instant::now();
        let bar = self.interactive.then(|| self.spinner(&name));
        let progress = Progress {
            shown: Some(Arc::new(Shown {
                name: name.clone(),
                bar,
                latest: Mutex::default(),
            })),
        };
        let ticker = if self.interactive {
            None
        } else {
            Ticker::spawn(&progress, started, TICK_EVERY, |line| eprintln!("{line}"))
        };
        TaskLine {
            reporter: self,
            progress,
            ticker,
            name,
            started,
        }
    }

    fn spinner(&self, name: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner:.cyan} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    /// Prints a line to stderr above any running spinners.
    pub(crate) fn line(&self, text: &str) {
        if self.interactive {
            self.progress.suspend(|| eprintln!("{text}"));
        } else {
            eprintln!("{text}");
        }
    }

    /// Prints a line to stdout without tearing a spinner.
    pub(crate) fn out(&self, text: &str) {
        self.progress.suspend(|| println!("{text}"));
    }

    pub(crate) fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The closing line of a run.
    pub(crate) fn summary(&self, run: &str) -> String {
        let t = self.tally();
        let mut s = format!("{run}: ");
        let _ = write!(
            s,
            "{} ok, {} changed, {} failed",
            style(t.ok).green().for_stderr(),
            style(t.changed).yellow().for_stderr(),
            if t.failed > 0 {
                style(t.failed).red().bold().for_stderr()
            } else {
                style(t.failed).for_stderr()
            }
        );
        if t.planned > 0 {
            let _ = write!(
                s,
                ", {} planned (dry run)",
                style(t.planned).cyan().for_stderr()
            );
        }
        let _ = write!(s, " in {}", seconds(self.started.elapsed()));
        s
    }

    fn record(&self, status: Status) {
        self.tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(status);
    }
}

/// A running task's line; finish it with its status.
#[derive(Debug)]
pub(crate) struct TaskLine<'r> {
    reporter: &'r Reporter,
    progress: Progress,
    ticker: Option<Ticker>,
    name: String,
    started: Instant,
}

impl TaskLine<'_> {
    /// The handle through which the task reports how far it has got.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Ends the line with `status` and an optional detail shown beneath it.
    pub(crate) fn finish(mut self, status: Status, detail: Option<&str>) {
        let took = self.started.elapsed();
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
        if let Some(bar) = self.progress.shown.as_ref().and_then(|s| s.bar.as_ref()) {
            bar.finish_and_clear();
            self.reporter.progress.remove(bar);
        }
        self.reporter.record(status);
        let mut text = format_line(status, &self.name, took);
        if let Some(detail) = detail.filter(|d| !d.is_empty()) {
            for line in detail.lines() {
                let _ = write!(text, "\n           {}", style(line).dim().for_stderr());
            }
        }
        self.reporter.line(&text);
    }
}

/// What a long task says about how far it has got (`12/230 crates compiled, latest ring`,
/// `21.0 MiB of 68.9 MiB`), shown on its line while it runs. Clones share the line; the
/// default handle shows nothing, for steps called outside a task.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    shown: Option<Arc<Shown>>,
}

/// The running line a [`Progress`] writes to.
#[derive(Debug)]
struct Shown {
    name: String,
    bar: Option<ProgressBar>,
    latest: Mutex<String>,
}

impl Progress {
    /// Replaces the task's progress text with `text`.
    pub fn set_message(&self, text: impl Into<String>) {
        let Some(shown) = &self.shown else {
            return;
        };
        let text = text.into();
        if let Some(bar) = &shown.bar {
            bar.set_message(format!(
                "{} {}",
                shown.name,
                style(&text).dim().for_stderr()
            ));
        }
        *shown.latest.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }
}

/// When a task's line is repeated without a terminal: every interval from the task's start;
/// ticks missed while the printer was late are skipped, not caught up in a burst.
#[derive(Debug)]
struct Schedule {
    next: Instant,
    every: Duration,
}

impl Schedule {
    fn new(started: Instant, every: Duration) -> Self {
        Self {
            next: started + every,
            every,
        }
    }

    /// How long to wait from `now` for the next line.
    fn wait(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// True when a line is due at `now`; the next one is then due an interval later.
    fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.every;
        }
        true
    }
}

/// The thread that repeats a running task's line on schedule until the task ends.
#[derive(Debug)]
struct Ticker {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
}

impl Ticker {
    /// Starts repeating `progress`'s line through `print`; `None` when no thread can be
    /// started (the task then runs without the repeated lines).
    fn spawn(
        progress: &Progress,
        started: Instant,
        every: Duration,
        print: impl Fn(&str) + Send + 'static,
    ) -> Option<Self> {
        let shown = Arc::clone(progress.shown.as_ref()?);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("sinew-ticker".into())
            .spawn(move || {
                let mut schedule = Schedule::new(started, every);
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(schedule.wait(Instant::now()))
                {
                    let now = Instant::now();
                    if schedule.due(now) {
                        let latest = shown.latest.lock().unwrap_or_else(|e| e.into_inner());
                        print(&format_running(&shown.name, now - started, &latest));
                    }
                }
            })
            .ok()?;
        Some(Self { stop, thread })
    }

    /// Stops the thread and waits for it, so that no repeat follows the task's last line.
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn status_style(status: Status) -> Style {
    let style = Style::new().for_stderr();
    match status {
        Status::Ok => style.green(),
        Status::Changed => style.yellow(),
        Status::Planned => style.cyan(),
        Status::Failed => style.red().bold(),
    }
}

fn format_line(status: Status, name: &str, took: Duration) -> String {
    let label = status_style(status).apply_to(format!("{:<8}", status.label()));
    format!(
        "  {label} {name:<NAME_WIDTH$} {}",
        style(seconds(took)).dim().for_stderr()
    )
}

/// A still-running task's repeated line: elapsed time and latest progress.
fn format_running(name: &str, elapsed: Duration, latest: &str) -> String {
    let line = format!(
        "  {:<8} {name:<NAME_WIDTH$} {}",
        "running",
        seconds(elapsed)
    );
    if latest.is_empty() {
        line
    } else {
        format!("{line}  {latest}")
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_colors() {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }

    #[test]
    fn line_shows_status_name_and_duration() {
        no_colors();
        let line = format_line(
            Status::Changed,
            "put probe [x86]",
            Duration::from_millis(1234),
        );
        assert!(line.starts_with("  changed  put probe [x86]"), "{line:?}");
        assert!(line.ends_with("1.23s"), "{line:?}");
    }

    #[test]
    fn tally_counts_each_status() {
        let reporter = Reporter::new();
        for status in [Status::Ok, Status::Ok, Status::Changed, Status::Failed] {
            reporter.start("t".into()).finish(status, None);
        }
        let t = reporter.tally();
        assert_eq!((t.ok, t.changed, t.planned, t.failed), (2, 1, 0, 1));
        no_colors();
        assert!(reporter
            .summary("run")
            .starts_with("run: 2 ok, 1 changed, 1 failed in "));
    }

    #[test]
    fn a_running_line_shows_elapsed_time_and_latest_progress() {
        let line = format_running("build probe", Duration::from_secs(35), "3/7 crates");
        assert!(line.starts_with("  running  build probe "), "{line:?}");
        assert!(line.ends_with(" 35.00s  3/7 crates"), "{line:?}");
        assert!(format_running("boot", Duration::ZERO, "").ends_with("0.00s"));
    }

    #[test]
    fn the_schedule_is_due_once_per_interval_and_skips_missed_ticks() {
        let start = Instant::now();
        let every = Duration::from_secs(5);
        let mut schedule = Schedule::new(start, every);
        assert_eq!(schedule.wait(start), every);
        assert!(!schedule.due(start + Duration::from_secs(4)));
        assert!(schedule.due(start + Duration::from_secs(5)));
        assert!(!schedule.due(start + Duration::from_secs(6)));
        assert!(schedule.due(start + Duration::from_secs(23)));
        assert_eq!(
            schedule.wait(start + Duration::from_secs(23)),
            Duration::from_secs(2),
            "late by three ticks, the next line is still on the grid"
        );
        assert!(!schedule.due(start + Duration::from_secs(24)));
    }

    #[test]
    fn the_ticker_repeats_the_latest_progress_until_stopped() {
        let reporter = Reporter::new();
        let line = reporter.start("build probe".into());
        line.progress().set_message("3/7 crates");
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&printed);
        let ticker = Ticker::spawn(
            line.progress(),
            Instant::now(),
            Duration::from_millis(10),
            move |l| sink.lock().expect("sink").push(l.to_string()),
        )
        .expect("ticker thread");
        thread::sleep(Duration::from_millis(60));
        ticker.stop();
        let lines = printed.lock().expect("lines").clone();
        assert!(!lines.is_empty(), "no running line in 60 ms");
        assert!(
            lines.len() <= 6,
            "more than one line per interval: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.contains("build probe") && l.ends_with("3/7 crates")),
            "{lines:?}"
        );
        thread::sleep(Duration::from_millis(30));
        assert_eq!(printed.lock().expect("lines").len(), lines.len());
        line.finish(Status::Ok, None);
    }
}
