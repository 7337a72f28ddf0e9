//! Names of things in the KV store (units, machines, services): short, and safe in a key
//! and a file name.

/// The longest name: it is part of KV keys and of log lines.
pub const MAX_NAME: usize = 64;

/// Whether `name` can name a unit, a machine or a service: 1 to [`MAX_NAME`] letters,
/// digits, `-`, `_` or `.`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("{name:?} must have 1 to {MAX_NAME} characters"));
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{name:?} may hold only letters, digits, '-', '_' and '.', and not start with '.'"
        ));
    }
    Ok(())
}
