//! One failure type for every command: the exit code of SPEC §7 (shared by
//! all our binaries) and the one message that says what failed and where.
//!
//! A command returns `Result<_, Failure>`; its entry point prints the
//! failure once, on the error stream, and returns its code. Nothing else
//! writes an error and picks an exit code by hand.

use std::fmt;
use std::io::Write;

/// The exit codes of SPEC §7, shared by all our binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    /// Failed; nothing changed.
    Failed = 1,
    /// Bad usage or an invalid site file.
    Usage = 2,
    /// The site is busy: another deploy, backup or restore holds its lock.
    Busy = 3,
    /// Failed after the switch and rolled back: the previous release serves.
    RolledBack = 4,
    /// The rollback failed too: urgent.
    RollbackFailed = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What went wrong and the exit code it ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// Failed, nothing changed (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Failed, message)
    }

    /// Bad usage or an invalid site file (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }

    /// The site's lock is held (exit 3).
    pub fn busy(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Busy, message)
    }

    /// The same failure with `prefix: ` before its message, e.g. the verb
    /// and the site (`sum-backup acme: …`).
    pub fn context(self, prefix: &str) -> Failure {
        Failure {
            exit: self.exit,
            message: format!("{prefix}: {}", self.message),
        }
    }

    /// Prints the message once on `err` and gives the exit code.
    pub fn report(&self, err: &mut dyn Write) -> u8 {
        let _ = writeln!(err, "{}", self.message);
        self.exit.code()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code of a command's result, with the failure printed once.
pub fn exit_code(result: Result<(), Failure>, err: &mut dyn Write) -> u8 {
    match result {
        Ok(()) => Exit::Ok.code(),
        Err(f) => f.report(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_those_of_the_spec() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Failed,
            Exit::Usage,
            Exit::Busy,
            Exit::RolledBack,
            Exit::RollbackFailed,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_failure_is_printed_once_with_its_context_and_gives_its_code() {
        let mut err = Vec::new();
        let f = Failure::busy("held by sum-deploy acme since 12:00").context("sum-backup acme");
        assert_eq!(exit_code(Err(f), &mut err), 3);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "sum-backup acme: held by sum-deploy acme since 12:00\n"
        );
        let mut err = Vec::new();
        assert_eq!(exit_code(Ok(()), &mut err), 0);
        assert!(err.is_empty());
    }
}
