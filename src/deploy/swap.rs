//! The live links (`app` -> `releases/…`, `venv` -> `venvs/…`) and what a
//! deploy and a rollback alike do around their swap: the swap step, Caddy's
//! reload when the site's snippet changed, the restart, and the way back to
//! the release that served before (or to "not deployed yet").

use std::path::Path;
use std::time::Duration;

use super::ctx::Ctx;
use super::steplog::{Log, StepFailure};
use crate::config::layout::CADDY_RUN_DIR;
use crate::render::caddy::{self, Served};
use crate::system::control::{self, Control};
use crate::system::fsutil::symlink_atomic;

/// Logged after the swap where nothing runs the app (a test root).
pub(super) const NO_SERVICE_MANAGER: &str =
    "    no service manager here (a test root): nothing restarted, nothing smoke-checked";

/// Points `venv` at `venvs/<venv>`, then `app` at `releases/<release>`,
/// each by an atomic rename.
pub(super) fn swap(
    app_link: &Path,
    venv_link: &Path,
    release: &str,
    venv: &str,
) -> std::io::Result<()> {
    symlink_atomic(Path::new(&format!("venvs/{venv}")), venv_link)?;
    symlink_atomic(Path::new(&format!("releases/{release}")), app_link)
}

/// The `swap` step: `release` and `venv` go live.
pub(super) fn swap_step(
    ctx: &Ctx,
    log: &mut Log,
    release: &str,
    venv: &str,
) -> Result<(), StepFailure> {
    let l = ctx.l();
    log.step("swap", |_| {
        swap(&ctx.p(&l.app), &ctx.p(&l.venv), release, venv).map_err(|e| e.to_string())?;
        Ok((
            (),
            format!("app -> releases/{release}, venv -> venvs/{venv}"),
        ))
    })
}

/// Re-renders this site's Caddy snippet in memory; when it differs from the
/// one Caddy has, reloads Caddy (whose reload renders it).
pub(super) fn caddy_if_changed(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
) -> Result<(), StepFailure> {
    let served = Served::from_disk(ctx.root, ctx.site);
    let Ok(text) = caddy::snippet(ctx.site, &served) else {
        return Ok(());
    };
    let dir = ctx.root.path(CADDY_RUN_DIR);
    if !dir.is_dir() {
        // Caddy never rendered here: it renders when it starts.
        return Ok(());
    }
    let path = dir.join(format!("{}.caddy", ctx.site.name));
    if fs_err::read(&path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    log.step("caddy", |_| {
        control.reload_caddy()?;
        Ok(((), "the site's snippet changed: Caddy reloaded".to_string()))
    })
}

/// The `restart` step: the app's units, never a SIGHUP.
pub(super) fn restart_step(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
) -> Result<(), StepFailure> {
    log.step("restart", |_| {
        control.restart(ctx.site)?;
        Ok(((), control::app_units(ctx.site).join(", ")))
    })
}

/// Swaps back to `release` and `venv`, restarts, and polls the health
/// paths over the socket for up to `timeout`; says what serves again.
pub(super) fn swap_back(
    ctx: &Ctx,
    control: &mut dyn Control,
    release: &str,
    venv: &str,
    timeout: Duration,
) -> Result<String, String> {
    let site = ctx.site;
    let l = ctx.l();
    swap(&ctx.p(&l.app), &ctx.p(&l.venv), release, venv).map_err(|e| e.to_string())?;
    control.restart(site)?;
    crate::probe::wait::poll_paths(
        &control.socket(site),
        &site.domain,
        site.health.paths(),
        timeout,
    )
    .map_err(|f| f.to_string())?;
    Ok(format!("releases/{release} serves again"))
}

/// A first deploy that failed after its swap has nothing to go back to:
/// the links go and the app stops, so Caddy answers "not deployed yet".
pub(super) fn not_deployed(ctx: &Ctx, control: &mut dyn Control) -> Result<String, String> {
    let l = ctx.l();
    let _ = fs_err::remove_file(ctx.p(&l.app));
    let _ = fs_err::remove_file(ctx.p(&l.venv));
    control.stop(ctx.site)?;
    Ok("no previous release: the site answers \"not deployed yet\" again".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::{rel, text, Fixture, Recorder};

    #[test]
    fn caddy_reloads_only_when_the_sites_snippet_changed() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let mut control = Recorder::new(&fx);
        let mut out = Vec::new();
        // Caddy never rendered here: nothing to reload.
        caddy_if_changed(&ctx, &mut control, &mut Log::new(&mut out)).unwrap();
        assert!(control.calls.is_empty());
        let dir = fx.p(CADDY_RUN_DIR);
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("acme.caddy"), "an older snippet").unwrap();
        caddy_if_changed(&ctx, &mut control, &mut Log::new(&mut out)).unwrap();
        assert_eq!(control.calls, ["reload caddy"]);
        assert!(text(&out).contains("    caddy: the site's snippet changed: Caddy reloaded"));
        let now = caddy::snippet(&fx.site, &Served::from_disk(&fx.root, &fx.site)).unwrap();
        fs_err::write(dir.join("acme.caddy"), now).unwrap();
        caddy_if_changed(&ctx, &mut control, &mut Log::new(&mut out)).unwrap();
        assert_eq!(control.calls, ["reload caddy"], "unchanged: no reload");
    }

    #[test]
    fn the_swap_step_points_both_links_and_the_way_back_needs_the_restart() {
        let fx = Fixture::new();
        fx.dirs();
        let ctx = fx.ctx();
        let mut out = Vec::new();
        swap_step(&ctx, &mut Log::new(&mut out), "r2", "v2").unwrap();
        assert_eq!(fx.link(&fx.l.app), Some(rel("releases/r2")));
        assert_eq!(fx.link(&fx.l.venv), Some(rel("venvs/v2")));
        let mut control = Recorder::new(&fx);
        control.restart_fails = Some("failed to restart".into());
        let e = swap_back(&ctx, &mut control, "r1", "v1", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e, "failed to restart");
        assert_eq!(fx.link(&fx.l.app), Some(rel("releases/r1")));
        assert_eq!(fx.link(&fx.l.venv), Some(rel("venvs/v1")));
    }
}
