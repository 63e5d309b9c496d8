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
//!
//! On a real system it also runs under the gunicorn unit's sandbox, the
//! same path as `sumctl run`: a transient service started with
//! `systemd-run --wait --pipe` and the unit's own properties
//! (`render::units::sandbox_properties`), so a release command sees what
//! the app sees (its own site only, the home read-only). Two places are
//! writable besides `media/`: the new release, and Django's `STATIC_ROOT`
//! when it lies outside the release, since commands such as `compress`
//! write there. Under a test root (no systemd) it runs directly.

use std::path::Path;
use std::process::{Command, Stdio};

use super::app::Runner;
use super::steplog::StepFailure;
use super::steps::{Deploy, NewRelease};
use crate::config::layout::SiteLayout;
use crate::config::site::Site;
use crate::render::units;

/// The `PATH` of a release command: the venv's `bin` first.
pub fn path_with_venv(venv: &Path) -> String {
    format!("{}/bin:/usr/local/bin:/usr/bin:/bin", venv.display())
}

/// Where a release command runs.
pub struct Place<'a> {
    pub venv: &'a Path,
    pub release: &'a Path,
    /// Under the gunicorn unit's sandbox (a real system): the site, and
    /// Django's effective STATIC_ROOT.
    pub sandbox: Option<(&'a Site, Option<&'a Path>)>,
}

/// Runs one release command to its end; the detail for the log, or why it
/// failed.
pub fn run_one(runner: &Runner, at: &Place, command: &str) -> Result<String, String> {
    let cmd = match at.sandbox {
        Some((site, static_root)) => sandboxed(site, at, static_root, command),
        None => {
            let mut cmd = runner.command("/bin/sh", at.release);
            cmd.arg("-c")
                .arg(command)
                .env("PATH", path_with_venv(at.venv))
                .env("VIRTUAL_ENV", at.venv);
            cmd
        }
    };
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

/// `systemd-run` running `command` as a transient service with the
/// gunicorn unit's identity, environment file and sandbox, the new release
/// (and a STATIC_ROOT outside it) writable.
fn sandboxed(site: &Site, at: &Place, static_root: Option<&Path>, command: &str) -> Command {
    let mut cmd = Command::new("systemd-run");
    cmd.args([
        "--quiet",
        "--wait",
        "--collect",
        "--service-type=exec",
        "--pipe",
    ])
    .arg(format!(
        "--unit=sum-release-{}-{}",
        site.name,
        std::process::id()
    ))
    .arg(format!("--working-directory={}", at.release.display()))
    .stdin(Stdio::null())
    .current_dir("/");
    // All of the unit's properties but its umask: what a release command
    // writes under STATIC_ROOT is served by Caddy, so it gets the 022 of
    // collectstatic (app.rs), not the app's 027.
    for (key, value) in units::sandbox_properties(site) {
        if key != "UMask" {
            cmd.arg(format!("--property={key}={value}"));
        }
    }
    cmd.arg("--property=UMask=0022");
    cmd.arg(format!("--property=BindPaths={}", at.release.display()));
    if let Some(s) = static_root.filter(|s| !s.starts_with(at.release)) {
        cmd.arg(format!("--property=BindPaths={}", s.display()));
    }
    let l = SiteLayout::new(&site.name);
    for (key, value) in units::app_environment_pairs(site, &l) {
        cmd.arg(format!("--setenv={key}={value}"));
    }
    cmd.arg(format!("--setenv=VIRTUAL_ENV={}", at.venv.display()))
        .arg(format!("--setenv=PATH={}", path_with_venv(at.venv)))
        .args(["/bin/sh", "-c", command]);
    cmd
}

impl Deploy<'_> {
    /// Each `[deploy] release` command, as its own step `release: CMD`.
    pub(super) fn release_commands(&mut self, new: &mut NewRelease) -> Result<(), StepFailure> {
        let (ctx, commands) = (self.ctx, self.ctx.site.deploy.release.clone());
        let real = ctx.root.is_system() && self.control.manages_services();
        for command in &commands {
            let static_root = new.info.static_root.as_deref().map(Path::new);
            let at = Place {
                venv: &new.venv_dir,
                release: &new.dir,
                sandbox: real.then_some((ctx.site, static_root)),
            };
            let runner = &self.runner;
            self.log
                .step(&format!("release: {command}"), |_| {
                    run_one(runner, &at, command).map(|detail| ((), detail))
                })
                .map_err(|f| self.failed(new, f))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(static_root: &str) -> Vec<String> {
        let site = Site::parse(
            "acme",
            Path::new("/etc/sum/sites/acme.toml"),
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://example.com/acme.git\"\n",
        )
        .unwrap();
        let at = Place {
            venv: Path::new("/srv/sum/acme/venvs/v1"),
            release: Path::new("/srv/sum/acme/releases/r1"),
            sandbox: None,
        };
        let cmd = sandboxed(
            &site,
            &at,
            Some(Path::new(static_root)),
            "python manage.py compress",
        );
        assert_eq!(cmd.get_program(), "systemd-run");
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_sandboxed_release_command_runs_as_the_app_with_only_its_release_writable() {
        let a = args("/srv/sum/acme/static");
        for want in [
            "--wait",
            "--pipe",
            "--working-directory=/srv/sum/acme/releases/r1",
            "--property=User=sum-acme",
            "--property=EnvironmentFile=/srv/sum/acme/.env",
            "--property=ProtectSystem=strict",
            "--property=TemporaryFileSystem=/srv/sum:ro",
            "--property=BindReadOnlyPaths=/srv/sum/acme",
            "--property=BindPaths=/srv/sum/acme/releases/r1",
            "--property=BindPaths=/srv/sum/acme/static",
            "--property=UMask=0022",
            "--setenv=STATIC_ROOT=/srv/sum/acme/static",
            "--setenv=VIRTUAL_ENV=/srv/sum/acme/venvs/v1",
            "--setenv=PATH=/srv/sum/acme/venvs/v1/bin:/usr/local/bin:/usr/bin:/bin",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        assert_eq!(
            a[a.len() - 3..],
            ["/bin/sh", "-c", "python manage.py compress"]
        );
        assert!(!a
            .iter()
            .any(|x| x.contains("ExecStart") || x.contains("Restart")));
        assert!(!a.iter().any(|x| x == "--property=UMask=0027"), "{a:?}");
    }

    #[test]
    fn a_static_root_inside_the_release_needs_no_bind_of_its_own() {
        let a = args("/srv/sum/acme/releases/r1/collect_static");
        let binds: Vec<&String> = a
            .iter()
            .filter(|x| x.starts_with("--property=BindPaths="))
            .collect();
        assert_eq!(binds, ["--property=BindPaths=/srv/sum/acme/releases/r1"]);
    }
}
