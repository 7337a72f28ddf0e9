//! What a run tells the slide, in order: the server sends each event to the browser as it
//! happens (a server-sent event each), and keeps them all as the
//! block's captured output for `--export`.

use serde::{Deserialize, Serialize};

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunEvent {
    /// A step began: `compiling`, `running`.
    Phase {
        /// What the run is doing now.
        text: String,
    },
    /// Output of the build (cargo's or go's own lines), shown dimmed.
    Build {
        /// As printed, maybe several lines.
        text: String,
    },
    /// A compiler diagnostic about the block's code.
    Diagnostic {
        /// `error` or `warning`.
        level: String,
        /// The line of the block it names, from 1, when it names one.
        line: Option<usize>,
        /// The message as the compiler renders it.
        rendered: String,
    },
    /// Program output on stdout, as it came (ANSI colours kept).
    Stdout {
        /// The bytes, as UTF-8.
        text: String,
    },
    /// Program output on stderr.
    Stderr {
        /// The bytes, as UTF-8.
        text: String,
    },
    /// Output the page missed because it could not keep up; the run went on.
    Dropped {
        /// How many bytes of output were not sent.
        bytes: usize,
    },
    /// The run ended.
    Exit {
        /// The exit code; `None` when a signal ended it.
        code: Option<i32>,
        /// Whether Stop (or a new run, or leaving) ended it.
        stopped: bool,
        /// Seconds from Run to the end.
        seconds: f64,
    },
    /// The run could not go on: the build failed, or the program could not start.
    Failed {
        /// Why, for the audience.
        message: String,
    },
}

impl RunEvent {
    /// The bytes of program or build output the event carries (0 for the others).
    pub fn output_len(&self) -> usize {
        match self {
            RunEvent::Stdout { text } | RunEvent::Stderr { text } | RunEvent::Build { text } => {
                text.len()
            }
            _ => 0,
        }
    }

    /// The event as a server-sent event whose `data` is its JSON form.
    pub fn to_sse(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        format!("data: {json}\n\n")
    }
}
