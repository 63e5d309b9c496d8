//! Release commands (`[deploy] release`): the app's own build steps, such
//! as `python manage.py compress` for an app with `COMPRESS_OFFLINE`, run
//! in the new release after `collectstatic` and before the migrations,
//! each as a step of its own with its duration.
//!
//! Why there: after `collectstatic`, because such commands read the
//! collected static files and write next to them; before the migrations,
//! so that a failing release command fails the deploy with exit 1 and
//! nothing touched, the database included (SPEC §7: a failure before the
//! swap changes nothing). A command that needs the new schema belongs
//! after the deploy (`sumctl manage`), or in a migration.
//!
//! How: `/bin/sh -c COMMAND` in the release directory, as the site's user,
//! with the same environment as the deploy's `manage.py` steps (the
//! `.env`, the units' variables) and the release's virtualenv first on
//! `PATH`, so `python` is the venv's. Its output is captured; a failure
//! shows its last lines, marked as the app's (relay.rs).

use std::path::Path;

use super::app::Runner;
use super::steplog::StepFailure;
use super::steps::{Deploy, NewRelease};

/// The `PATH` of a release command: the venv's `bin` first.
pub fn path_with_venv(venv: &Path) -> String {
    format!("{}/bin:/usr/local/bin:/usr/bin:/bin", venv.display())
}

/// Runs one release command to its end; the detail for the log, or why it
/// failed.
pub fn run_one(
    runner: &Runner,
    venv: &Path,
    release: &Path,
    command: &str,
) -> Result<String, String> {
    let mut cmd = runner.command("/bin/sh", release);
    cmd.arg("-c")
        .arg(command)
        .env("PATH", path_with_venv(venv))
        .env("VIRTUAL_ENV", venv);
    let ran = runner.run(cmd)?;
    if !ran.ok {
        return Err(format!(
            "release command `{command}` failed ({}); nothing is live yet and the \
             database was not touched:\n{}",
            ran.status,
            ran.tail(12)
        ));
    }
    // The command's own last word, e.g. compress's "Compressed 3 block(s)…".
    let last = ran
        .stdout
        .lines()
        .chain(ran.stderr.lines())
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("done");
    Ok(crate::system::text::excerpt(last, 200))
}

impl Deploy<'_> {
    /// Each `[deploy] release` command, as its own step `release: CMD`.
    pub(super) fn release_commands(&mut self, new: &mut NewRelease) -> Result<(), StepFailure> {
        let commands = self.ctx.site.deploy.release.clone();
        for command in &commands {
            let (runner, venv, dir) = (&self.runner, &new.venv_dir, &new.dir);
            self.log
                .step(&format!("release: {command}"), |_| {
                    run_one(runner, venv, dir, command).map(|detail| ((), detail))
                })
                .map_err(|f| self.failed(new, f))?;
        }
        Ok(())
    }
}
