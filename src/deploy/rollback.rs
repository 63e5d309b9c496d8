//! `sumctl rollback <site> [--to RELEASE]` (SPEC §7): no rebuild; an
//! instant swap to a release still on disk, a restart and the smoke check.
//! The database is left as it is: Django does not unapply migrations, so
//! the rollback warns when its target predates migrations applied since.

use std::io::Write;
use std::time::Duration;

use super::run::{
    caddy_if_changed, fail, guarded, site_and_lock, swap, who, Ctx, Failure, Log, Options,
};
use crate::config::layout::Root;
use crate::config::layout::SiteLayout;
use crate::site_state::{self, Record, ReleaseStatus};
use crate::system::control::{self, Control};
use crate::system::fsutil::link_name;
use crate::system::timefmt;

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
    out: &mut dyn Write,
) -> (u8, Record) {
    let site = ctx.site;
    let l = SiteLayout::new(&site.name);
    let state_dir = ctx.root.path(&l.state);
    let releases = ctx.root.path(&l.releases);
    let app_link = ctx.root.path(&l.app);
    let venv_link = ctx.root.path(&l.venv);
    let live = link_name(&app_link);
    let live_venv = link_name(&venv_link);
    let mut log = Log::new(out);
    let mut rec = Record {
        action: "rollback".into(),
        started_utc: timefmt::iso_utc(crate::system::timefmt::now_unix()),
        who: who(),
        previous: live.clone(),
        venv_reused: Some(true),
        ..Record::default()
    };

    let result = (|| -> Result<(), Failure> {
        let (target, venv) = log.step("target", |log| {
            let names = site_state::release_names(&releases).map_err(|e| e.to_string())?;
            let target = pick_target(
                &names,
                |n| site_state::load_release(&state_dir, n).map(|i| i.status),
                live.as_deref(),
                to,
            )?;
            if live.as_deref() == Some(target.as_str()) {
                return Err(format!("{target} is already live"));
            }
            let info = site_state::load_release(&state_dir, &target).ok_or_else(|| {
                format!("{target} has no record (its deploy never finished); pick another")
            })?;
            let venv_ready = ctx
                .root
                .path(&l.venvs)
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
            if let Some(live_info) = live
                .as_deref()
                .and_then(|n| site_state::load_release(&state_dir, n))
            {
                let newer: Vec<&String> = live_info
                    .migrations
                    .iter()
                    .filter(|m| !info.migrations.contains(m))
                    .collect();
                if !newer.is_empty() {
                    log.line(&format!(
                        "    warning: {target} predates migrations applied since: {}. The database \
                         keeps them (nothing is unapplied); code that does not know them usually \
                         still runs, but check the site, and restore a backup if it does not",
                        newer.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let detail = format!(
                "{target} ({} = {})",
                info.git_ref,
                crate::system::text::short_sha(&info.sha)
            );
            Ok(((target, info), detail))
        })?;
        rec.release = Some(target.clone());
        rec.git_ref = Some(venv.git_ref.clone());
        rec.sha = Some(venv.sha.clone());
        rec.venv = Some(venv.venv.clone());
        log.step("swap", |_| {
            swap(&app_link, &venv_link, &target, &venv.venv).map_err(|e| e.to_string())?;
            Ok((
                (),
                format!("app -> releases/{target}, venv -> venvs/{}", venv.venv),
            ))
        })?;
        let checked = guarded("after the swap", || -> Result<(), Failure> {
            caddy_if_changed(ctx, control, &mut log)?;
            if !control.manages_services() {
                log.line("    no service manager here (a test root): nothing restarted, nothing smoke-checked");
                return Ok(());
            }
            log.step("restart", |_| {
                control.restart(site)?;
                Ok(((), control::app_units(site).join(", ")))
            })?;
            log.step("smoke", |_| {
                let r = crate::probe::smoke::poll(
                    &control.socket(site),
                    &site.domain,
                    &site.health.path,
                    site.health.timeout,
                )
                .map_err(|f| f.to_string())?;
                Ok((
                    (),
                    format!(
                        "GET {} over the socket answered {}",
                        site.health.path, r.status
                    ),
                ))
            })?;
            Ok(())
        });
        if let Err(f) = checked {
            let tail = control.journal_tail(site);
            let back = match (live.as_deref(), live_venv.as_deref()) {
                (Some(p), Some(v)) => log.step("undo", |_| {
                    swap(&app_link, &venv_link, p, v).map_err(|e| e.to_string())?;
                    control.restart(site)?;
                    crate::probe::smoke::poll(
                        &control.socket(site),
                        &site.domain,
                        &site.health.path,
                        site.health.timeout.max(Duration::from_secs(5)),
                    )
                    .map_err(|f| f.to_string())?;
                    Ok(((), format!("releases/{p} serves again")))
                }),
                _ => Err(fail("undo", "nothing was live before")),
            };
            let _ = caddy_if_changed(ctx, control, &mut log);
            let mut message = format!("{} failed: {}", f.step, f.message);
            if !tail.is_empty() {
                message.push_str(&format!(
                    "\nlast lines of sum-gunicorn@{}.service:\n{tail}",
                    site.name
                ));
            }
            return Err(match back {
                Ok(()) => Failure {
                    step: f.step,
                    code: 4,
                    message: format!("{message}\n{} serves again", live.as_deref().unwrap_or("?")),
                },
                Err(b) => Failure {
                    step: f.step,
                    code: 5,
                    message: format!(
                        "{message}\ngoing back failed too: {}; the site may be down",
                        b.message
                    ),
                },
            });
        }
        Ok(())
    })();

    let code = match &result {
        Ok(()) => 0,
        Err(f) => f.code,
    };
    if code == 0 || code == 4 {
        // The site serves on this site file: keep it as the last good copy.
        if let Err(e) = crate::site_state::last_good::save(ctx.root, &site.name) {
            log.line(&format!(
                "warning: could not keep the site file as its last good copy: {e}"
            ));
        }
    }
    rec.exit_code = code;
    rec.outcome = match code {
        0 => "ok",
        4 => "rolled-back",
        5 => "rollback-failed",
        _ => "failed",
    }
    .to_string();
    if let Err(f) = &result {
        rec.failed_step = Some(f.step.clone());
        rec.error = Some(f.message.clone());
    }
    rec.finished_utc = timefmt::iso_utc(crate::system::timefmt::now_unix());
    rec.steps = std::mem::take(&mut log.times);
    if let Err(e) = site_state::append(&state_dir, &rec) {
        log.line(&format!(
            "warning: could not record the rollback in the history: {e}"
        ));
    }
    match &result {
        Ok(()) => log.line(&format!(
            "rolled back {} to {}",
            site.name,
            rec.release.as_deref().unwrap_or("?")
        )),
        Err(f) => log.line(&format!("rollback failed (exit {}): {}", f.code, f.message)),
    }
    (code, rec)
}

/// `sumctl rollback <site> [--to RELEASE]`: lock, roll back, exit code.
pub fn run(
    root: &Root,
    site_name: &str,
    to: Option<&str>,
    control: Option<&mut dyn Control>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let (site, _lock) = match site_and_lock(root, site_name, "sumctl rollback", err) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = Options::default();
    let ctx = Ctx {
        root,
        site: &site,
        opts: &opts,
        account: crate::system::accounts::site_account(root, &site.name),
        // Run by hand: systemd passed no socket, so no bridge.
        listener: None,
    };
    let mut default;
    let control: &mut dyn Control = match control {
        Some(c) => c,
        None => {
            default = control::for_root(root);
            default.as_mut()
        }
    };
    let (code, rec) = rollback(&ctx, to, control, out);
    if code != 0 {
        let _ = writeln!(
            err,
            "sumctl rollback {}: {}",
            site.name,
            rec.error.as_deref().unwrap_or("failed")
        );
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

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
