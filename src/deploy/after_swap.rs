//! The deploy from its swap on (SPEC §7 steps 6 to 8): the in-progress
//! marker and the swap; Caddy's reload, the restart and the bridge's stop;
//! the smoke check and the sitemap; and on any failure, a panic included,
//! the roll back to the release that served before (exit 4, or 5 when that
//! fails too). The bridge that covers the restart starts here too, before
//! the checks.

use std::time::{Duration, Instant};

use super::bridge::{Bridge, Relayed};
use super::ctx::Ctx;
use super::relay::Relay;
use super::steplog::{fail, guarded, Log, StepFailure};
use super::steps::{Deploy, InProgress, NewRelease, IN_PROGRESS};
use super::swap;
use crate::probe::public::PublicError;
use crate::probe::{smoke, wait};
use crate::site_state::ReleaseStatus;
use crate::system::control::Control;
use crate::system::failure::{Exit, Failure};
use crate::system::fsutil::write_atomic;

impl<'a> Deploy<'a> {
    /// The bridge (see bridge.rs): the live release also serves from the
    /// socket while the unit restarts. Started before the checks, so that
    /// its boot overlaps them; dropped (stopped gracefully) on any failure.
    /// Its output goes into the log, marked as the app's, through a relay
    /// thread of `scope`.
    pub(super) fn start_bridge<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> Option<Relayed<'scope>>
    where
        'a: 'scope,
    {
        let ctx = self.ctx;
        let (Some(fd), Some(p), Some(v)) = (ctx.listener, &self.previous, &self.previous_venv)
        else {
            return None;
        };
        if self.interrupted || ctx.opts.no_restart || !self.control.manages_services() {
            return None;
        }
        let release = ctx.p(&self.l.releases).join(p);
        let venv = ctx.p(&self.l.venvs).join(v);
        let conf = ctx.p(crate::config::layout::GUNICORN_CONF);
        let started = Relay::start(scope, self.log.sink())
            .map_err(|e| format!("cannot relay its output: {e}"))
            .and_then(|(relay, output)| {
                let b = Bridge::start(&self.runner, ctx.site, fd, &release, &venv, &conf, output)?;
                Ok(Relayed::new(b, relay))
            });
        match started {
            Ok(b) => {
                self.log.line(&format!(
                    "    bridge: a gunicorn of releases/{p} (pid {}) also serves the socket \
                     while the unit restarts",
                    b.pid()
                ));
                Some(b)
            }
            Err(e) => {
                self.log.line(&format!(
                    "    bridge: warning: {e}; requests wait in the socket's backlog while \
                     the unit restarts"
                ));
                None
            }
        }
    }

    /// Step 6: the in-progress marker written (a deploy killed from here on
    /// is known to the next one), then `app` and `venv` swapped.
    pub(super) fn swap(&mut self, new: &mut NewRelease) -> Result<(), StepFailure> {
        let marker = InProgress {
            release: new.info.release.clone(),
            previous: self.previous.clone(),
            previous_venv: self.previous_venv.clone(),
        };
        write_atomic(
            &self.ctx.p(&self.l.state).join(IN_PROGRESS),
            serde_json::to_string(&marker)
                .unwrap_or_default()
                .as_bytes(),
            0o644,
        )
        .map_err(|e| fail("swap", e.to_string()))?;
        swap::swap_step(self.ctx, &mut self.log, &new.info.release, &new.info.venv)
            .map_err(|f| self.failed(new, f))
    }

    /// Steps 6 to 8 after the swap: restart and smoke check; the release is
    /// good when they pass, and rolled back when they do not. A panic is
    /// caught (the release profile unwinds, see docs/deploy.md) and treated
    /// as the failure of the step it happened in. The bridge serves until
    /// the unit is up, or through the rollback.
    pub(super) fn go_live(
        &mut self,
        new: &mut NewRelease,
        mut bridge: Option<Relayed<'_>>,
    ) -> Result<(), StepFailure> {
        let after_swap = guarded("after the swap", || {
            self.restart_and_smoke(new, &mut bridge)
        });
        match after_swap {
            Ok(()) => {
                new.info.status = ReleaseStatus::Good;
                self.save(new, "record")?;
                if self.ctx.site.health.sitemap && self.control.manages_services() {
                    sitemap(self.ctx, self.control, &mut self.log);
                }
                Ok(())
            }
            Err(f) => {
                new.info.status = ReleaseStatus::Failed;
                let _ = self.save(new, "record");
                Err(self.roll_back(f))
            }
        }
    }

    /// Step 6: Caddy reloaded if the snippet changed, the app restarted,
    /// the bridge stopped; step 7: the smoke check of the new release.
    fn restart_and_smoke(
        &mut self,
        new: &NewRelease,
        bridge: &mut Option<Relayed<'_>>,
    ) -> Result<(), StepFailure> {
        swap::caddy_if_changed(self.ctx, self.control, &mut self.log)?;
        if !self.control.manages_services() {
            self.log.line(swap::NO_SERVICE_MANAGER);
            return Ok(());
        }
        swap::restart_step(self.ctx, self.control, &mut self.log)?;
        // Before the smoke check, which must reach the new release only;
        // the bridge's last lines are in the log before the line saying so.
        if let Some(b) = bridge.take() {
            let pid = b.pid();
            let t = Instant::now();
            let how = b.stop();
            let secs = t.elapsed().as_secs_f64();
            self.log
                .line(&format!("    bridge: pid {pid} {how} in {secs:.2}s"));
        }
        self.smoke(new)
    }

    /// Step 7: the smoke check; a failure says what Django raises for the
    /// same request (the path that failed).
    fn smoke(&mut self, new: &NewRelease) -> Result<(), StepFailure> {
        let (ctx, runner, env) = (self.ctx, &self.runner, &self.env);
        let control = &mut *self.control;
        self.log.step("smoke", |_| {
            smoke_check(ctx, control, env).map_err(|e| {
                match super::explain::exception(
                    runner,
                    &new.venv_dir,
                    &new.dir,
                    &ctx.site.domain,
                    &e.path,
                ) {
                    Some(x) => format!("{}\nDjango raises, for the same request: {x}", e.message),
                    None => e.message,
                }
            })
        })
    }

    /// Step 8: swaps back to the previous release, restarts and re-checks
    /// it (a first deploy goes back to "not deployed yet"). Exit 4 when the
    /// previous release serves again, 5 when it does not.
    fn roll_back(&mut self, cause: StepFailure) -> StepFailure {
        let (ctx, site) = (self.ctx, self.ctx.site);
        let tail = self.control.journal_tail(site);
        let mut message = if cause.step == "panic" {
            cause.failure.message.clone()
        } else {
            format!(
                "{} failed after the swap: {}",
                cause.step, cause.failure.message
            )
        };
        if !tail.is_empty() {
            message.push_str(&format!(
                "\nlast lines of sum-gunicorn@{}.service:\n{tail}",
                site.name
            ));
        }
        let (previous, previous_venv) = (self.previous.as_deref(), self.previous_venv.as_deref());
        let control = &mut *self.control;
        let back = self.log.step("rollback", |_| {
            guarded("during the rollback", || {
                match (previous, previous_venv) {
                    (Some(p), Some(v)) => swap::swap_back(ctx, control, p, v, site.health.timeout),
                    _ => swap::not_deployed(ctx, control),
                }
                .map(|done| ((), done))
                .map_err(|m| fail("rollback", m))
            })
            .map_err(|f| f.failure.message)
        });
        // The snippet may differ again (a first deploy going back to none).
        let _ = guarded("reloading Caddy", || {
            swap::caddy_if_changed(ctx, self.control, &mut self.log)
        });
        let failure = match back {
            Ok(()) => Failure::new(
                Exit::RolledBack,
                format!(
                    "{message}\nrolled back to {}",
                    previous.unwrap_or("no release")
                ),
            ),
            Err(f) => Failure::new(
                Exit::RollbackFailed,
                format!(
                    "{message}\nTHE ROLLBACK FAILED TOO: {}\nthe site may be down: check \
                     `systemctl status sum-gunicorn@{}` and `sumctl releases {}` now",
                    f.failure.message, site.name, site.name
                ),
            ),
        };
        StepFailure {
            step: cause.step,
            failure,
        }
    }
}

/// A failed smoke check: the message, and the path whose answer failed
/// (the first path when there was no answer at all).
struct SmokeFailed {
    message: String,
    path: String,
}

/// Every health path over the socket, then through Caddy over HTTPS. A
/// 400 gets what the site's `.env` says about ALLOWED_HOSTS.
fn smoke_check(
    ctx: &Ctx,
    control: &mut dyn Control,
    env: &[(String, String)],
) -> Result<((), String), SmokeFailed> {
    let site = ctx.site;
    let socket = control.socket(site);
    let failed = |f: &smoke::Failed, message: String| SmokeFailed {
        path: f.path().unwrap_or(&site.health.path).to_string(),
        message,
    };
    let hint = |f: &smoke::Failed| smoke::with_hosts_hint(f, env, &site.domain);
    let passes = wait::poll_paths(
        &socket,
        &site.domain,
        site.health.paths(),
        site.health.timeout,
    )
    .map_err(|f| failed(&f, hint(&f)))?;
    let mut detail = wait::describe_passes(&passes, "the socket");
    if control.public_url_reachable() {
        match crate::probe::public::check(site) {
            Ok(d) => detail.push_str(&format!("; {d}")),
            Err(PublicError::Failed { url, failed: f }) => {
                return Err(failed(&f, format!("{url}: {}", hint(&f))))
            }
            Err(PublicError::Unreachable(e)) => detail.push_str(&format!(
                "; warning: the public check could not connect ({e})"
            )),
        }
    }
    Ok(((), detail))
}

/// GET /sitemap.xml over the socket: logged, never failing the deploy.
fn sitemap(ctx: &Ctx, control: &mut dyn Control, log: &mut Log) {
    let socket = control.socket(ctx.site);
    let line = match smoke::get(
        &socket,
        &ctx.site.domain,
        "/sitemap.xml",
        Duration::from_secs(10),
    ) {
        Ok(r) if r.status == 200 => {
            let urls = r.body.matches("<loc>").count();
            format!("    sitemap: /sitemap.xml answered 200 with {urls} URL(s)")
        }
        Ok(r) => format!(
            "    sitemap: warning: /sitemap.xml answered {} (not blocking)",
            r.status
        ),
        Err(e) => format!("    sitemap: warning: /sitemap.xml: {e} (not blocking)"),
    };
    log.line(&line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::{rel, text, Fixture, Recorder};

    /// `r1` (v1) live and good, `r2` (v2) built: the deploy's new release.
    fn two_releases(fx: &Fixture) -> NewRelease {
        fx.dirs();
        fx.release("r1", "v1", ReleaseStatus::Good, &[]);
        swap::swap(&fx.p(&fx.l.app), &fx.p(&fx.l.venv), "r1", "v1").unwrap();
        let info = fx.release("r2", "v2", ReleaseStatus::Built, &[]);
        NewRelease {
            dir: fx.p(&fx.l.releases).join("r2"),
            venv_dir: fx.p(&fx.l.venvs).join("v2"),
            info,
        }
    }

    #[test]
    fn swap_leaves_its_marker_then_points_the_links_at_the_new_release() {
        let fx = Fixture::new();
        let mut new = two_releases(&fx);
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.bootstrap().unwrap();
        d.swap(&mut new).unwrap();
        drop(d);
        assert_eq!(fx.link(&fx.l.app), Some(rel("releases/r2")));
        assert_eq!(fx.link(&fx.l.venv), Some(rel("venvs/v2")));
        let marker: InProgress =
            serde_json::from_slice(&fs_err::read(fx.p(&fx.l.state).join(IN_PROGRESS)).unwrap())
                .unwrap();
        assert_eq!(
            (
                marker.release.as_str(),
                marker.previous.as_deref(),
                marker.previous_venv.as_deref()
            ),
            ("r2", Some("r1"), Some("v1"))
        );
        assert!(text(&out).contains("    swap: app -> releases/r2, venv -> venvs/v2 ("));
    }

    #[test]
    fn without_a_service_manager_the_swapped_release_is_good() {
        let fx = Fixture::new();
        let mut new = two_releases(&fx);
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.bootstrap().unwrap();
        d.swap(&mut new).unwrap();
        d.go_live(&mut new, None).unwrap();
        drop(d);
        assert_eq!(fx.recorded("r2").status, ReleaseStatus::Good);
        assert!(text(&out).contains(swap::NO_SERVICE_MANAGER));
    }

    #[test]
    fn a_failed_restart_swaps_back_and_a_failed_rollback_is_exit_5() {
        let fx = Fixture::new();
        let mut new = two_releases(&fx);
        let ctx = fx.ctx();
        let (mut control, mut out) = (Recorder::new(&fx), Vec::new());
        control.restart_fails = Some("sum-gunicorn@acme.service failed".into());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.bootstrap().unwrap();
        d.swap(&mut new).unwrap();
        let f = d.go_live(&mut new, None).unwrap_err();
        drop(d);
        assert_eq!(
            (f.step.as_str(), f.failure.exit),
            ("restart", Exit::RollbackFailed)
        );
        assert!(
            f.failure.message.starts_with(
                "restart failed after the swap: sum-gunicorn@acme.service failed\n\
             THE ROLLBACK FAILED TOO: sum-gunicorn@acme.service failed\n"
            ),
            "{}",
            f.failure.message
        );
        // Swapped back before the restart that failed.
        assert_eq!(fx.link(&fx.l.app), Some(rel("releases/r1")));
        assert_eq!(fx.link(&fx.l.venv), Some(rel("venvs/v1")));
        assert_eq!(control.calls, ["restart", "restart"]);
        assert_eq!(fx.recorded("r2").status, ReleaseStatus::Failed);
        assert!(text(&out).contains("==> rollback\n    rollback: FAILED after"));
    }

    #[test]
    fn a_first_deploy_that_fails_after_the_swap_goes_back_to_not_deployed() {
        let fx = Fixture::new();
        fx.dirs();
        let info = fx.release("r1", "v1", ReleaseStatus::Built, &[]);
        let mut new = NewRelease {
            dir: fx.p(&fx.l.releases).join("r1"),
            venv_dir: fx.p(&fx.l.venvs).join("v1"),
            info,
        };
        let ctx = fx.ctx();
        let (mut control, mut out) = (Recorder::new(&fx), Vec::new());
        control.restart_fails = Some("no such unit".into());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.bootstrap().unwrap();
        d.swap(&mut new).unwrap();
        let f = d.go_live(&mut new, None).unwrap_err();
        drop(d);
        assert_eq!(f.failure.exit, Exit::RolledBack);
        assert_eq!(
            f.failure.message,
            "restart failed after the swap: no such unit\nrolled back to no release"
        );
        assert_eq!((fx.link(&fx.l.app), fx.link(&fx.l.venv)), (None, None));
        assert_eq!(control.calls, ["restart", "stop"]);
        assert!(text(&out).contains("rollback: no previous release: the site answers"));
    }
}
