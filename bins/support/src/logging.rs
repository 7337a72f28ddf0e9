//! Logging to stderr, filtered by an environment variable, as every sinew program does.

use std::io::IsTerminal;

use tracing_subscriber::fmt::time::uptime;
use tracing_subscriber::EnvFilter;

/// How a program logs: to stderr, through the filter in an environment variable (tracing's
/// syntax) or else a default, in colour only when stderr is a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Logging<'a> {
    env: &'a str,
    default: &'a str,
    console: bool,
}

impl<'a> Logging<'a> {
    /// Filtered by the variable `env` when it holds a valid filter, else by `default`.
    pub fn new(env: &'a str, default: &'a str) -> Self {
        Self {
            env,
            default,
            console: false,
        }
    }

    /// For a guest's console: timestamps count from the start of logging (boot times read
    /// off the console), no targets, and never colour, since the host captures the console
    /// to a file even though the guest sees a terminal.
    pub fn for_console(self) -> Self {
        Self {
            console: true,
            ..self
        }
    }

    /// Installs the subscriber. A process logs one way: a second call leaves the first
    /// subscriber in place.
    pub fn init(self) {
        let filter =
            EnvFilter::try_from_env(self.env).unwrap_or_else(|_| EnvFilter::new(self.default));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(!self.console && std::io::stderr().is_terminal());
        let _ = if self.console {
            builder.with_timer(uptime()).with_target(false).try_init()
        } else {
            builder.try_init()
        };
    }
}
