//! An error and its causes on one line, for logs and failure messages.

use std::error::Error;

/// `error: cause: cause`, skipping a cause whose text the line already carries (many
/// errors quote their cause in their own message).
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Failure(String, Option<Box<Failure>>);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Failure {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    /// An error whose message is `texts[0]`, caused by one whose message is `texts[1]`, ...
    fn failure(texts: &[&str]) -> Failure {
        let (text, causes) = texts.split_first().expect("a message");
        let cause = (!causes.is_empty()).then(|| Box::new(failure(causes)));
        Failure((*text).to_owned(), cause)
    }

    #[test]
    fn joins_the_causes_in_order() {
        let error = failure(&["starting", "reading /etc/x", "no such file"]);
        assert_eq!(
            error_chain(&error),
            "starting: reading /etc/x: no such file"
        );
    }

    #[test]
    fn skips_a_cause_the_line_already_carries() {
        let error = failure(&[
            "loading the secret",
            "cannot read /etc/key: No such file",
            "No such file",
        ]);
        assert_eq!(
            error_chain(&error),
            "loading the secret: cannot read /etc/key: No such file"
        );
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        assert_eq!(error_chain(&failure(&["refused"])), "refused");
    }
}
