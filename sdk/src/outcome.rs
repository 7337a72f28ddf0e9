//! Typed task outcomes: what a task reports when it ends, and how a failure reads.

use std::error::Error as StdError;
use std::fmt;

use sinew_support::error_chain;

/// A boxed error as tasks may return it: any `std::error::Error`, or an `anyhow::Error`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// How a task ended, in Ansible's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Everything was already as asked; nothing was touched.
    Ok,
    /// Something was changed (a file written, a command run, a guest booted).
    Changed,
    /// Dry run: the task only said what it would do.
    Planned,
    /// The task failed.
    Failed,
}

impl Status {
    /// `Changed` when `changed`, else `Ok`: most outcomes are one or the other.
    pub fn changed_if(changed: bool) -> Status {
        if changed {
            Status::Changed
        } else {
            Status::Ok
        }
    }

    /// The word shown in a task line.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Planned => "plan",
            Status::Failed => "failed",
        }
    }
}

/// A value a task can return: it knows whether it changed anything.
pub trait Outcome {
    /// The status shown for the task.
    fn status(&self) -> Status;
    /// An optional line shown beneath the task (a digest, a plan, a short result).
    fn detail(&self) -> Option<String> {
        None
    }
}

impl Outcome for () {
    fn status(&self) -> Status {
        Status::Ok
    }
}

/// Several outcomes as one: `plan` if any planned, else `changed` if any changed, else `ok`.
impl<T: Outcome> Outcome for Vec<T> {
    fn status(&self) -> Status {
        let has = |wanted| self.iter().any(|o| o.status() == wanted);
        if has(Status::Planned) {
            Status::Planned
        } else if has(Status::Changed) {
            Status::Changed
        } else {
            Status::Ok
        }
    }
}

/// A task that failed, with the task's name, the host it ran on, and the error's chain.
#[derive(Debug)]
pub struct TaskFailed {
    task: String,
    message: String,
}

impl TaskFailed {
    pub(crate) fn new(task: &str, error: &(dyn StdError + 'static)) -> Self {
        Self {
            task: task.to_string(),
            message: error_chain(error),
        }
    }

    /// The failed task's name as shown in its line.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The error, with its causes joined by `: `.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` failed: {}", self.task, self.message)
    }
}

impl StdError for TaskFailed {}

/// `: ` and the last five lines of a command's stderr, for an error message; nothing when
/// it wrote nothing.
pub(crate) fn stderr_tail(stderr: &str) -> String {
    let stderr = stderr.trim_end();
    if stderr.trim().is_empty() {
        return String::new();
    }
    format!(": {}", last_lines(stderr, 5, " | "))
}

/// The last `n` lines of `text`, joined with `separator`: what an error quotes of a
/// command's output.
pub(crate) fn last_lines(text: &str, n: usize, separator: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Changed(bool);
    impl Outcome for Changed {
        fn status(&self) -> Status {
            if self.0 {
                Status::Changed
            } else {
                Status::Ok
            }
        }
    }

    #[test]
    fn a_list_is_changed_if_any_item_changed() {
        assert_eq!(
            vec![Changed(false), Changed(true)].status(),
            Status::Changed
        );
        assert_eq!(vec![Changed(false), Changed(false)].status(), Status::Ok);
    }

    #[test]
    fn failure_message_carries_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err: BoxError = format!("reading /etc/x: {io}").into();
        let failed = TaskFailed::new("read config", err.as_ref());
        assert_eq!(
            failed.to_string(),
            "task `read config` failed: reading /etc/x: no such file"
        );
    }
}
