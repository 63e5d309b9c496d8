//! `sumctl rollback <site> [--to RELEASE]` (SPEC §7): no rebuild; an
//! instant swap to a release still on disk, a restart and the smoke check.
//! The database is left as it is: Django does not unapply migrations, so
//! the rollback warns when its target predates migrations applied since.

use std::io::Write;
use std::time::Duration;

use super::command::{site_and_lock, with_control};
use super::ctx::{Ctx, Options};
use super::record;
use super::steplog::{fail, guarded, Log, StepFailure};
use super::swap;
use crate::config::layout::Root;
use crate::site_state::{self, Record, ReleaseInfo, ReleaseStatus};
use crate::system::control::Control;
use crate::system::failure::{self, Exit, Failure};
use crate::system::fsutil::link_name;

/// Picks the release a rollback goes to: `to` (a release name, or a unique
/// part of one such as a short sha), else the newest good release older
/// than the live one.
pub fn pick_target(
    names: &[String],
    status: impl Fn(&str) -> Option<ReleaseStatus>,
    live: Option<&str>,
    to: Option<&str>,
) -> Result<String, String> {
    if let Some(to) = to {
        if names.iter().any(|n| n == to) {
            return Ok(to.to_string());
        }
        let hits: Vec<&String> = names.iter().filter(|n| n.contains(to)).collect();
        return match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!(
                "no release matches `{to}`; `sumctl releases <site>` lists them"
            )),
            many => Err(format!(
                "`{to}` matches {} releases ({}); give the full name",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    names
        .iter()
        .filter(|n| live.is_none_or_older(n))
        .find(|n| status(n) == Some(ReleaseStatus::Good))
        .cloned()
        .ok_or_else(|| {
            "no earlier release that passed its smoke check is left to roll back to; \
             `sumctl releases <site>` lists what there is, `--to` picks one"
                .to_string()
        })
}

trait OlderThan {
    fn is_none_or_older(&self, name: &str) -> bool;
}

impl OlderThan for Option<&str> {
    fn is_none_or_older(&self, name: &str) -> bool {
        match self {
            Some(live) => name < *live,
            None => true,
        }
    }
}

/// Rolls back; the caller holds the site lock. Exit codes: 0 the target
/// serves; 1 nothing changed; 4 the target failed its check and the
/// release that was live serves again; 5 that failed too.
pub fn rollback(
    ctx: &Ctx,
    to: Option<&str>,
    control: &mut dyn Control,
    out: &mut (dyn Write + Send),
) -> (u8, Record) {
    let (rec, _) = roll_back_and_record(ctx, to, control, out);
    (rec.exit_code, rec)
}

/// The release and venv live when the rollback started.
struct Live {
    release: Option<String>,
    venv: Option<String>,
}

/// The steps, the record in the history and the closing line.
fn roll_back_and_record(
    ctx: &Ctx,
    to: Option<&str>,
    control: &mut dyn Control,
    out: &mut (dyn Write + Send),
) -> (Record, Result<(), StepFailure>) {
    let l = ctx.l();
    let live = Live {
        release: link_name(&ctx.p(&l.app)),
        venv: link_name(&ctx.p(&l.venv)),
    };
    let mut log = Log::new(out);
    let mut rec = record::rollback(live.release.clone());
    let result = steps(ctx, to, control, &mut log, &mut rec, &live);
    record::close(ctx, &mut log, &mut rec, &result);
    match &result {
        Ok(()) => log.line(&format!(
            "rolled back {} to {}",
            ctx.site.name,
            rec.release.as_deref().unwrap_or("?")
        )),
        Err(f) => log.line(&format!(
            "rollback failed (exit {}): {}",
            f.failure.exit.code(),
            f.failure.message
        )),
    }
    (rec, result)
}

/// The target, the swap, the restart and the smoke check; when the target
/// fails its check, the way back to the release that was live.
fn steps(
    ctx: &Ctx,
    to: Option<&str>,
    control: &mut dyn Control,
    log: &mut Log,
    rec: &mut Record,
    live: &Live,
) -> Result<(), StepFailure> {
    let (target, info) = log.step("target", |log| target(ctx, to, live, log))?;
    rec.release = Some(target.clone());
    rec.git_ref = Some(info.git_ref.clone());
    rec.sha = Some(info.sha.clone());
    rec.venv = Some(info.venv.clone());
    swap::swap_step(ctx, log, &target, &info.venv)?;
    let checked = guarded("after the swap", || restart_and_smoke(ctx, control, log));
    match checked {
        Ok(()) => Ok(()),
        Err(f) => Err(undo(ctx, control, log, f, live)),
    }
}

/// The release to go back to (see [`pick_target`]) and its record, when
/// its venv is there to run it; warns when it failed its own deploy or
/// predates migrations applied since.
fn target(
    ctx: &Ctx,
    to: Option<&str>,
    live: &Live,
    log: &mut Log,
) -> Result<((String, ReleaseInfo), String), String> {
    let l = ctx.l();
    let state_dir = ctx.p(&l.state);
    let names = site_state::release_names(&ctx.p(&l.releases)).map_err(|e| e.to_string())?;
    let target = pick_target(
        &names,
        |n| site_state::load_release(&state_dir, n).map(|i| i.status),
        live.release.as_deref(),
        to,
    )?;
    if live.release.as_deref() == Some(target.as_str()) {
        return Err(format!("{target} is already live"));
    }
    let info = site_state::load_release(&state_dir, &target).ok_or_else(|| {
        format!("{target} has no record (its deploy never finished); pick another")
    })?;
    let venv_ready = ctx
        .p(&l.venvs)
        .join(&info.venv)
        .join(super::app::READY_MARKER)
        .is_file();
    if info.venv.is_empty() || !venv_ready {
        return Err(format!(
            "the virtualenv of {target} (venvs/{}) is gone or unfinished; deploy its ref \
             ({} = {}) instead",
            info.venv, info.git_ref, info.sha
        ));
    }
    if info.status == ReleaseStatus::Failed {
        log.line(&format!(
            "    warning: {target} failed its own deploy; rolling back to it anyway (--to)"
        ));
    }
    if let Some(newer) = newer_migrations(ctx, live, &info) {
        log.line(&format!(
            "    warning: {target} predates migrations applied since: {newer}. The database \
             keeps them (nothing is unapplied); code that does not know them usually \
             still runs, but check the site, and restore a backup if it does not"
        ));
    }
    let detail = format!(
        "{target} ({} = {})",
        info.git_ref,
        crate::system::text::short_sha(&info.sha)
    );
    Ok(((target, info), detail))
}

/// The migrations the live release had applied that `target` does not
/// know, comma-separated; None when there are none.
fn newer_migrations(ctx: &Ctx, live: &Live, target: &ReleaseInfo) -> Option<String> {
    let live_info = site_state::load_release(&ctx.p(&ctx.l().state), live.release.as_deref()?)?;
    let newer: Vec<&str> = live_info
        .migrations
        .iter()
        .filter(|m| !target.migrations.contains(m))
        .map(|s| s.as_str())
        .collect();
    (!newer.is_empty()).then(|| newer.join(", "))
}

/// Caddy reloaded if the snippet changed, the restart, and the smoke check
/// over the socket.
fn restart_and_smoke(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
) -> Result<(), StepFailure> {
    swap::caddy_if_changed(ctx, control, log)?;
    if !control.manages_services() {
        log.line(swap::NO_SERVICE_MANAGER);
        return Ok(());
    }
    swap::restart_step(ctx, control, log)?;
    let site = ctx.site;
    log.step("smoke", |_| {
        let passes = crate::probe::wait::poll_paths(
            &control.socket(site),
            &site.domain,
            site.health.paths(),
            site.health.timeout,
        )
        .map_err(|f| f.to_string())?;
        Ok((
            (),
            crate::probe::wait::describe_passes(&passes, "the socket"),
        ))
    })
}

/// The target failed its check: back to the release that was live. Exit 4
/// when it serves again, 5 when it does not.
fn undo(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
    cause: StepFailure,
    live: &Live,
) -> StepFailure {
    let site = ctx.site;
    let tail = control.journal_tail(site);
    let back = match (live.release.as_deref(), live.venv.as_deref()) {
        (Some(p), Some(v)) => log.step("undo", |_| {
            let timeout = site.health.timeout.max(Duration::from_secs(5));
            swap::swap_back(ctx, control, p, v, timeout).map(|done| ((), done))
        }),
        _ => Err(fail("undo", "nothing was live before")),
    };
    let _ = swap::caddy_if_changed(ctx, control, log);
    let mut message = format!("{} failed: {}", cause.step, cause.failure.message);
    if !tail.is_empty() {
        message.push_str(&format!(
            "\nlast lines of sum-gunicorn@{}.service:\n{tail}",
            site.name
        ));
    }
    let failure = match back {
        Ok(()) => Failure::new(
            Exit::RolledBack,
            format!(
                "{message}\n{} serves again",
                live.release.as_deref().unwrap_or("?")
            ),
        ),
        Err(b) => Failure::new(
            Exit::RollbackFailed,
            format!(
                "{message}\ngoing back failed too: {}; the site may be down",
                b.failure.message
            ),
        ),
    };
    StepFailure {
        step: cause.step,
        failure,
    }
}

/// `sumctl rollback <site> [--to RELEASE]`: lock, roll back, exit code.
pub fn run(
    root: &Root,
    site_name: &str,
    to: Option<&str>,
    control: Option<&mut dyn Control>,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> u8 {
    failure::exit_code(command(root, site_name, to, control, out), err)
}

/// Takes the lock and rolls back; the failure is the one `run` prints.
fn command(
    root: &Root,
    site_name: &str,
    to: Option<&str>,
    control: Option<&mut dyn Control>,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    let (site, _lock) = site_and_lock(root, site_name, "sumctl rollback")?;
    let opts = Options::default();
    let ctx = Ctx {
        root,
        site: &site,
        opts: &opts,
        account: crate::system::accounts::site_account(root, &site.name),
        // Run by hand: systemd passed no socket, so no bridge.
        listener: None,
    };
    let (_, result) = with_control(root, control, |c| roll_back_and_record(&ctx, to, c, out));
    result.map_err(|f| f.failure.context(&format!("sumctl rollback {}", site.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::{rel, text, Fixture};
    use crate::system::control::NoControl;

    /// r1 and r2 good, r2 live with one migration more.
    fn live_r2(fx: &Fixture) -> Live {
        fx.dirs();
        fx.release("r1", "v1", ReleaseStatus::Good, &["blog.0001"]);
        fx.release("r2", "v2", ReleaseStatus::Good, &["blog.0001", "blog.0002"]);
        swap::swap(&fx.p(&fx.l.app), &fx.p(&fx.l.venv), "r2", "v2").unwrap();
        Live {
            release: Some("r2".into()),
            venv: Some("v2".into()),
        }
    }

    #[test]
    fn the_target_needs_its_venv_and_warns_of_migrations_applied_since() {
        let fx = Fixture::new();
        let live = live_r2(&fx);
        let mut out = Vec::new();
        let ((name, info), detail) =
            target(&fx.ctx(), None, &live, &mut Log::new(&mut out)).unwrap();
        assert_eq!((name.as_str(), info.venv.as_str()), ("r1", "v1"));
        assert_eq!(detail, "r1 (main = 0123456789ab)");
        assert!(text(&out).contains("warning: r1 predates migrations applied since: blog.0002."));
        let e = target(&fx.ctx(), Some("r2"), &live, &mut Log::new(&mut out)).unwrap_err();
        assert_eq!(e, "r2 is already live");
        fs_err::remove_file(
            fx.p(&fx.l.venvs)
                .join("v1")
                .join(super::super::app::READY_MARKER),
        )
        .unwrap();
        let e = target(&fx.ctx(), None, &live, &mut Log::new(&mut out)).unwrap_err();
        assert!(
            e.starts_with("the virtualenv of r1 (venvs/v1) is gone or unfinished"),
            "{e}"
        );
    }

    #[test]
    fn a_rollback_swaps_to_the_target_and_is_recorded() {
        let fx = Fixture::new();
        live_r2(&fx);
        let mut control = NoControl {
            root: fx.root.clone(),
        };
        let mut out = Vec::new();
        let (code, rec) = rollback(&fx.ctx(), None, &mut control, &mut out);
        assert_eq!((code, rec.outcome.as_str()), (0, "ok"));
        assert_eq!(
            (rec.previous.as_deref(), rec.release.as_deref()),
            (Some("r2"), Some("r1"))
        );
        assert_eq!(fx.link(&fx.l.app), Some(rel("releases/r1")));
        assert_eq!(fx.link(&fx.l.venv), Some(rel("venvs/v1")));
        let history = site_state::history(&fx.p(&fx.l.state)).unwrap();
        assert_eq!(history, [rec]);
        assert!(text(&out).ends_with("rolled back acme to r1\n"));
    }

    #[test]
    fn a_target_that_fails_its_check_is_undone() {
        let fx = Fixture::new();
        let live = live_r2(&fx);
        let mut control = crate::deploy::testkit::Recorder::new(&fx);
        control.restart_fails = Some("failed to restart".into());
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let f = undo(
            &fx.ctx(),
            &mut control,
            &mut log,
            fail("smoke", "GET / answered 500"),
            &live,
        );
        assert_eq!(f.failure.exit, Exit::RollbackFailed);
        assert_eq!(
            f.failure.message,
            "smoke failed: GET / answered 500\ngoing back failed too: failed to restart; the site may be down"
        );
        let nothing_before = Live {
            release: None,
            venv: None,
        };
        let f = undo(
            &fx.ctx(),
            &mut control,
            &mut log,
            fail("smoke", "500"),
            &nothing_before,
        );
        assert!(f
            .failure
            .message
            .ends_with("going back failed too: nothing was live before; the site may be down"));
    }

    #[test]
    fn picks_the_newest_good_release_older_than_the_live_one() {
        let names: Vec<String> = ["r5", "r4", "r3", "r2", "r1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let status = |n: &str| match n {
            "r4" => Some(ReleaseStatus::Failed),
            "r1" => None,
            _ => Some(ReleaseStatus::Good),
        };
        assert_eq!(pick_target(&names, status, Some("r5"), None).unwrap(), "r3");
        assert_eq!(pick_target(&names, status, Some("r3"), None).unwrap(), "r2");
        assert!(pick_target(&names, status, Some("r2"), None).is_err());
        assert_eq!(
            pick_target(&names, status, Some("r5"), Some("r1")).unwrap(),
            "r1"
        );
        assert_eq!(
            pick_target(&names, status, Some("r5"), Some("4")).unwrap(),
            "r4"
        );
        let e = pick_target(&names, status, Some("r5"), Some("r")).unwrap_err();
        assert!(e.contains("matches 5 releases"), "{e}");
        assert!(pick_target(&names, status, Some("r5"), Some("x"))
            .unwrap_err()
            .contains("no release matches"));
    }
}
