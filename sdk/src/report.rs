//! What a run shows a person: one line per task while it runs (a spinner on a terminal),
//! its status and duration when it ends, and a summary at the end.
//!
//! Task lines go to stderr so that a playbook's own results on stdout stay pipeable.
//! Without a terminal (CI, a pipe) there are no spinners, only the finished lines.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console::{style, Style, Term};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outcome::Status;

/// Width of the task-name column, so statuses and durations line up.
const NAME_WIDTH: usize = 44;

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
        let bar = if self.interactive {
            let bar = self.progress.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner:.cyan} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(name.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            None
        };
        TaskLine {
            reporter: self,
            bar,
            name,
            started: Instant::now(),
        }
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
            style(t.ok).green(),
            style(t.changed).yellow(),
            if t.failed > 0 {
                style(t.failed).red().bold()
            } else {
                style(t.failed)
            }
        );
        if t.planned > 0 {
            let _ = write!(s, ", {} planned (dry run)", style(t.planned).cyan());
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
    bar: Option<ProgressBar>,
    name: String,
    started: Instant,
}

impl TaskLine<'_> {
    /// Ends the line with `status` and an optional detail shown beneath it.
    pub(crate) fn finish(self, status: Status, detail: Option<&str>) {
        let took = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            self.reporter.progress.remove(bar);
        }
        self.reporter.record(status);
        let mut text = format_line(status, &self.name, took);
        if let Some(detail) = detail.filter(|d| !d.is_empty()) {
            for line in detail.lines() {
                let _ = write!(text, "\n           {}", style(line).dim());
            }
        }
        self.reporter.line(&text);
    }
}

fn status_style(status: Status) -> Style {
    match status {
        Status::Ok => Style::new().green(),
        Status::Changed => Style::new().yellow(),
        Status::Planned => Style::new().cyan(),
        Status::Failed => Style::new().red().bold(),
    }
}

fn format_line(status: Status, name: &str, took: Duration) -> String {
    let label = status_style(status).apply_to(format!("{:<8}", status.label()));
    format!(
        "  {label} {name:<NAME_WIDTH$} {}",
        style(seconds(took)).dim()
    )
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_status_name_and_duration() {
        console::set_colors_enabled(false);
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
        console::set_colors_enabled(false);
        assert!(reporter
            .summary("run")
            .starts_with("run: 2 ok, 1 changed, 1 failed in "));
    }
}
