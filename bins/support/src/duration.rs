//! Durations on the command line: `365d`, `24h`, `60m`, `5s`, `1500ms`, or a plain number in
//! a unit the flag chooses (flannel's `--subnet-lease-renew-margin` counts minutes).

use std::time::Duration;

use thiserror::Error;

/// A duration flag could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?}: expected a duration such as 365d, 24h, 60m, 5s or 1500ms, or a plain number")]
pub struct DurationError(pub String);

/// Parses `text`; a plain number counts `unit`s.
pub fn parse(text: &str, unit: Duration) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u32 = number.parse().map_err(|_| bad())?;
    let unit = match suffix {
        "" => unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return Err(bad()),
    };
    unit.checked_mul(number).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn units_and_plain_numbers() {
        assert_eq!(parse("365d", MINUTE), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse("24h", MINUTE), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("60m", MINUTE), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("5s", MINUTE), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1500ms", MINUTE), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("60", MINUTE), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse("30", Duration::from_secs(1)),
            Ok(Duration::from_secs(30))
        );
    }

    #[test]
    fn rejects_other_text() {
        for bad in ["", "m", "5w", "-5s", "5.5s", "s5"] {
            assert_eq!(
                parse(bad, MINUTE),
                Err(DurationError(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
