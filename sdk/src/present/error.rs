//! Why a deck could not be read: every error names the deck file, the line (from 1) and what
//! was expected there.

use std::path::PathBuf;

use super::address::AddressError;

/// The `.` commands a `.slide` deck may use.
const COMMANDS: &str =
    ".code, .play, .image, .video, .background, .caption, .link, .iframe or .html";

/// Why a deck could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum DeckError {
    /// The deck file itself could not be read.
    #[error("cannot read deck {}: {source}", file.display())]
    Read {
        /// The deck.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `.slide` deck without a title line.
    #[error("{}:{line}: the deck is empty: expected a title line", file.display())]
    MissingTitle {
        /// The deck.
        file: PathBuf,
        /// Where the title was expected.
        line: usize,
    },
    /// A line of the title block that is neither subtitle, date, tags nor blank.
    #[error(
        "{}:{line}: unexpected title block line {text:?}: expected a subtitle, a date \
         (`2 Jan 2006` or `15:04 2 Jan 2006`), `Tags:`, `Summary:`, `OldURL:`, or a blank line \
         before the authors",
        file.display()
    )]
    BadHeader {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// Its text.
        text: String,
    },
    /// A `Lab:` line that does not name machines.
    #[error("{}:{line}: `{text}`: {expected}", file.display())]
    BadLab {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The line's text.
        text: String,
        /// What is wrong and what was expected.
        expected: String,
    },
    /// A `guest=` block naming a machine the deck's lab does not have.
    #[error(
        "{}:{line}: the block runs on guest {guest:?}, which the deck's lab does not have: \
         expected one of {known} (a `Lab:` line in the title block names them)",
        file.display()
    )]
    UnknownGuest {
        /// The deck.
        file: PathBuf,
        /// The block's first line.
        line: usize,
        /// The name the block gives.
        guest: String,
        /// The lab's machines, or "none".
        known: String,
    },
    /// A line where a section heading was expected, or a heading nested too deep.
    #[error("{}:{line}: unexpected line {text:?}: expected {expected}", file.display())]
    UnexpectedLine {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// Its text.
        text: String,
        /// What may stand there.
        expected: String,
    },
    /// A `.` command `.slide` does not have.
    #[error("{}:{line}: unknown command `{command}`: expected {}", file.display(), COMMANDS)]
    UnknownCommand {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The command as written.
        command: String,
    },
    /// A known command with the wrong arguments.
    #[error("{}:{line}: `{text}`: expected {expected}", file.display())]
    BadCommand {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The whole command line.
        text: String,
        /// The command's syntax.
        expected: &'static str,
    },
    /// A `.code`/`.play` address that is malformed or selects nothing.
    #[error(
        "{}:{line}: address {address:?} in {}: {source}",
        file.display(),
        code_file.display()
    )]
    Address {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The address as written.
        address: String,
        /// The file the address applies to.
        code_file: PathBuf,
        /// What is wrong with the address.
        source: AddressError,
    },
    /// A file a command or an image names, missing or unreadable.
    #[error("{}:{line}: cannot read {}: {source}", file.display(), path.display())]
    MissingFile {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The file, resolved against the deck's directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A runnable code block with nothing to run.
    #[error("{}:{line}: the {kind} block is empty: expected {expected}", file.display())]
    EmptyRunnable {
        /// The deck.
        file: PathBuf,
        /// The block's first line.
        line: usize,
        /// `playbook` or `guest`.
        kind: &'static str,
        /// What the block must hold.
        expected: &'static str,
    },
    /// An image, video or iframe size that is not a number of pixels.
    #[error("{}:{line}: bad size {size:?}: expected {expected}", file.display())]
    BadImageSize {
        /// The deck.
        file: PathBuf,
        /// The line.
        line: usize,
        /// The size as written.
        size: String,
        /// The syntax that applies there.
        expected: &'static str,
    },
    /// A fenced code block with no closing fence.
    #[error(
        "{}:{line}: code block opened with {fence} is never closed: expected a line of at \
         least {fence}",
        file.display()
    )]
    UnterminatedFence {
        /// The deck.
        file: PathBuf,
        /// The opening fence's line.
        line: usize,
        /// The opening fence.
        fence: String,
    },
    /// A code block info string word sinew does not know, or words that do not go together.
    #[error("{}:{line}: code block info {info:?}: {problem}", file.display())]
    BadCodeInfo {
        /// The deck.
        file: PathBuf,
        /// The block's first line.
        line: usize,
        /// The info string after the fence.
        info: String,
        /// What is wrong and what was expected.
        problem: String,
    },
}
