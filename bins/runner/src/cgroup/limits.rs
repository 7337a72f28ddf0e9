//! `--memory`, `--cpus` and `--pids`, parsed once and rendered as v1 or v2 control files.

use super::Mode;

/// A limit flag that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// `--memory` is not a number with an optional K/M/G suffix.
    #[error("--memory {0:?}: expected bytes with an optional K, M or G suffix, e.g. 64M")]
    Memory(String),
    /// `--cpus` is not a positive decimal.
    #[error("--cpus {0:?}: expected a positive number of CPUs, e.g. 0.5")]
    Cpus(String),
    /// `--pids` is zero.
    #[error("--pids must be at least 1")]
    Pids,
}

/// CFS period the CPU quota is expressed in, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Requested limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in microseconds per [`CPU_PERIOD_US`].
    pub cpu_quota_us: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
}

impl Limits {
    /// Parses the flag values.
    pub fn parse(
        memory: Option<&str>,
        cpus: Option<&str>,
        pids: Option<u64>,
    ) -> Result<Limits, LimitsError> {
        Ok(Limits {
            memory: memory.map(parse_bytes).transpose()?,
            cpu_quota_us: cpus.map(parse_cpus).transpose()?,
            pids: match pids {
                Some(0) => return Err(LimitsError::Pids),
                other => other,
            },
        })
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Whether a limit needs the given v1 controller.
    pub fn needs(&self, controller: &str) -> bool {
        match controller {
            "memory" => self.memory.is_some(),
            "pids" => self.pids.is_some(),
            "cpu" => self.cpu_quota_us.is_some(),
            _ => false,
        }
    }

    /// Control files and values to write for `controller` ("unified" for v2), in order.
    pub fn files(&self, mode: &Mode, controller: &str) -> Vec<(&'static str, String)> {
        let mut files = Vec::new();
        let v2 = matches!(mode, Mode::Unified { .. });
        if let Some(bytes) = self.memory.filter(|_| controller == "memory" || v2) {
            if v2 {
                files.push(("memory.max", bytes.to_string()));
                files.push(("memory.swap.max", "0".to_string()));
            } else {
                files.push(("memory.limit_in_bytes", bytes.to_string()));
                files.push(("memory.memsw.limit_in_bytes", bytes.to_string()));
            }
        }
        if let Some(pids) = self.pids.filter(|_| controller == "pids" || v2) {
            files.push(("pids.max", pids.to_string()));
        }
        if let Some(quota) = self.cpu_quota_us.filter(|_| controller == "cpu" || v2) {
            if v2 {
                files.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
            } else {
                files.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
                files.push(("cpu.cfs_quota_us", quota.to_string()));
            }
        }
        files
    }
}

fn parse_bytes(text: &str) -> Result<u64, LimitsError> {
    let err = || LimitsError::Memory(text.to_string());
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&lower[..i], c),
        _ => (lower, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        _ => return Err(err()),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    n.checked_mul(1 << shift).filter(|b| *b > 0).ok_or_else(err)
}

fn parse_cpus(text: &str) -> Result<u64, LimitsError> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| LimitsError::Cpus(text.to_string()))?;
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(LimitsError::Cpus(text.to_string()));
    }
    // Positive and finite (checked above), and `as` saturates a quota past u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
    // The kernel's minimum quota is 1 ms.
    Ok(quota.max(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_cpus_and_pids() {
        let l = Limits::parse(Some("64M"), Some("1.5"), Some(10)).unwrap();
        assert_eq!(
            l,
            Limits {
                memory: Some(64 << 20),
                cpu_quota_us: Some(150_000),
                pids: Some(10)
            }
        );
        assert_eq!(
            Limits::parse(Some("512k"), None, None).unwrap().memory,
            Some(512 << 10)
        );
        assert_eq!(
            Limits::parse(Some("2GB"), None, None).unwrap().memory,
            Some(2 << 30)
        );
        assert_eq!(
            Limits::parse(Some("4096"), None, None).unwrap().memory,
            Some(4096)
        );
        assert_eq!(
            Limits::parse(None, Some("0.0001"), None)
                .unwrap()
                .cpu_quota_us,
            Some(1000)
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_flag() {
        for bad in ["", "12X", "M", "-1M", "0"] {
            let err = Limits::parse(Some(bad), None, None).unwrap_err();
            assert!(err.to_string().starts_with("--memory"), "{bad}: {err}");
        }
        for bad in ["0", "-1", "half", "inf"] {
            assert!(
                matches!(
                    Limits::parse(None, Some(bad), None),
                    Err(LimitsError::Cpus(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Limits::parse(None, None, Some(0)),
            Err(LimitsError::Pids)
        ));
    }
}
