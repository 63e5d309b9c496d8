//! Validation of systemd OnCalendar= expressions (placeholder, being written).

/// Checks that `expr` is an OnCalendar= expression systemd accepts.
pub fn validate(expr: &str) -> Result<(), String> {
    if expr.trim().is_empty() {
        return Err("empty calendar expression".into());
    }
    Ok(())
}
