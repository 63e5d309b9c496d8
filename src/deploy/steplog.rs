//! The step log of a deploy and a rollback: each step's start (`==> step`),
//! its result or failure and its duration, kept for the history, with the
//! app's own lines marked inside their step (see relay.rs); and what a
//! failed step reports (the step's name and a [`Failure`] with its exit
//! code).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::relay::{self, Sink};
use crate::site_state::StepTime;
use crate::system::failure::Failure;

/// A failed step: its name and the failure (exit code, what to do about it).
#[derive(Debug)]
pub(super) struct StepFailure {
    pub(super) step: String,
    pub(super) failure: Failure,
}

/// The failure of `step`, nothing changed (exit 1).
pub(super) fn fail(step: &str, message: impl Into<String>) -> StepFailure {
    StepFailure {
        step: step.to_string(),
        failure: Failure::failed(message),
    }
}

/// Where the steps are logged, and how long each took.
pub(super) struct Log<'a> {
    /// Shared with the relay of the bridge's output, which writes into the
    /// log while a step runs.
    out: Sink<'a>,
    pub(super) times: Vec<StepTime>,
}

impl<'a> Log<'a> {
    pub(super) fn new(out: &'a mut (dyn Write + Send)) -> Log<'a> {
        Log {
            out: Arc::new(Mutex::new(out)),
            times: Vec::new(),
        }
    }

    pub(super) fn line(&mut self, text: &str) {
        relay::write_lines(&self.out, &[text]);
    }

    /// Lines the app printed (what a command captured), marked as the app's.
    pub(super) fn app(&mut self, text: &str) {
        relay::write_lines(&self.out, &relay::marked(text.as_bytes()));
    }

    /// The log, for a relay that writes into it.
    pub(super) fn sink(&self) -> Sink<'a> {
        Arc::clone(&self.out)
    }

    /// Runs one step, logging its start, its result and its duration.
    pub(super) fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<(T, String), String>,
    ) -> Result<T, StepFailure> {
        self.line(&format!("==> {name}"));
        let t = Instant::now();
        let r = f(self);
        let secs = t.elapsed().as_secs_f64();
        self.times.push(StepTime {
            step: name.to_string(),
            seconds: (secs * 1000.0).round() / 1000.0,
        });
        match r {
            Ok((v, detail)) => {
                if detail.is_empty() {
                    self.line(&format!("    {name}: done in {secs:.2}s"));
                } else {
                    self.line(&format!("    {name}: {detail} ({secs:.2}s)"));
                }
                Ok(v)
            }
            Err(message) => {
                self.line(&format!("    {name}: FAILED after {secs:.2}s"));
                Err(fail(name, message))
            }
        }
    }
}

/// Runs `f`, turning a panic into the failure of a step named after
/// `where_`: the caller then handles it like any other failure (after the
/// swap, by rolling back). The panic's own message and location are on
/// stderr already (the default hook), so the journal has them too.
pub(super) fn guarded<T>(
    where_: &str,
    f: impl FnOnce() -> Result<T, StepFailure>,
) -> Result<T, StepFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(fail(
                "panic",
                format!(
                    "sum-deploy failed unexpectedly {where_} (a bug: please report it): {}",
                    crate::system::text::excerpt(&what, 300)
                ),
            ))
        }
    }
}

/// A setting's value for the log; Django's default for both is "".
pub(super) fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(unset)"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::failure::Exit;

    #[test]
    fn a_step_logs_its_result_and_is_timed() {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        assert_eq!(
            log.step("fetch", |_| Ok((7, "main is abc".into())))
                .unwrap(),
            7
        );
        log.step("swap", |_| Ok(((), String::new()))).unwrap();
        let f = log
            .step::<()>("venv", |_| Err("pip failed".into()))
            .unwrap_err();
        assert_eq!((f.step.as_str(), f.failure.exit), ("venv", Exit::Failed));
        let steps: Vec<&str> = log.times.iter().map(|t| t.step.as_str()).collect();
        assert_eq!(steps, ["fetch", "swap", "venv"]);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "==> fetch");
        assert!(lines[1].starts_with("    fetch: main is abc (0.") && lines[1].ends_with("s)"));
        assert!(lines[3].starts_with("    swap: done in 0."));
        assert!(lines[5].starts_with("    venv: FAILED after 0."));
    }

    #[test]
    fn the_apps_lines_are_marked_inside_the_step() {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        log.step("check", |log| {
            log.app("?: (security.W018) DEBUG\r\n\tHINT: off");
            Ok(((), "passed".into()))
        })
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "==> check",
                "    app| ?: (security.W018) DEBUG",
                "    app| \tHINT: off"
            ]
        );
        assert!(lines[3].starts_with("    check: passed ("), "{text}");
    }

    #[test]
    fn a_panic_becomes_the_failure_of_a_step_named_panic() {
        let f = guarded::<()>("after the swap", || panic!("index out of bounds")).unwrap_err();
        assert_eq!((f.step.as_str(), f.failure.exit), ("panic", Exit::Failed));
        assert_eq!(
            f.failure.message,
            "sum-deploy failed unexpectedly after the swap (a bug: please report it): index out of bounds"
        );
        assert_eq!(guarded("x", || Ok::<_, StepFailure>(3)).unwrap(), 3);
    }
}
