//! Pruning after a deploy (SPEC §7 step 9): releases and venvs beyond
//! `keep_releases`, never the live one or the last good one (the plan is
//! `site_state::plan_prune`).

use super::ctx::Ctx;
use super::steplog::Log;
use crate::site_state;
use crate::system::fsutil::link_name;

/// Deletes releases and venvs beyond `keep_releases` (see `site_state::plan_prune`).
pub(super) fn prune(ctx: &Ctx, log: &mut Log) -> std::io::Result<()> {
    let l = ctx.l();
    let state_dir = ctx.p(&l.state);
    let releases = ctx.p(&l.releases);
    let venvs_dir = ctx.p(&l.venvs);
    let names = site_state::release_names(&releases)?;
    let rels: Vec<_> = names
        .iter()
        .map(|n| {
            let info = site_state::load_release(&state_dir, n);
            (
                n.clone(),
                info.as_ref().map(|i| i.status),
                info.map(|i| i.venv).filter(|v| !v.is_empty()),
            )
        })
        .collect();
    let venvs: Vec<String> = match fs_err::read_dir(&venvs_dir) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    let live = link_name(&ctx.p(&l.app));
    let live_venv = link_name(&ctx.p(&l.venv));
    let last_good = site_state::last_good(&state_dir, &releases);
    let plan = site_state::plan_prune(
        &rels,
        live.as_deref(),
        live_venv.as_deref(),
        last_good.as_deref(),
        ctx.site.deploy.keep_releases.max(1) as usize,
        &venvs,
    );
    for r in &plan.remove_releases {
        fs_err::remove_dir_all(releases.join(r))?;
        let _ = fs_err::remove_file(state_dir.join("releases").join(format!("{r}.json")));
    }
    for v in &plan.remove_venvs {
        fs_err::remove_dir_all(venvs_dir.join(v))?;
    }
    if !plan.remove_releases.is_empty() || !plan.remove_venvs.is_empty() {
        log.line(&format!(
            "pruned {} release(s) and {} venv(s) beyond keep_releases = {}",
            plan.remove_releases.len(),
            plan.remove_venvs.len(),
            ctx.site.deploy.keep_releases
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::{text, Fixture};
    use crate::site_state::ReleaseStatus;

    #[test]
    fn pruning_keeps_the_live_and_newest_good_releases_and_their_venvs() {
        let fx = Fixture::with("[deploy]\nkeep_releases = 2\n");
        fx.dirs();
        fx.release("r1", "v1", ReleaseStatus::Good, &[]);
        fx.release("r2", "v1", ReleaseStatus::Good, &[]);
        fx.release("r3", "v3", ReleaseStatus::Good, &[]);
        fx.release("r4", "v4", ReleaseStatus::Failed, &[]);
        fx.release("r5", "v5", ReleaseStatus::Good, &[]);
        crate::deploy::swap::swap(&fx.p(&fx.l.app), &fx.p(&fx.l.venv), "r5", "v5").unwrap();
        let mut out = Vec::new();
        prune(&fx.ctx(), &mut Log::new(&mut out)).unwrap();
        let left = site_state::release_names(&fx.p(&fx.l.releases)).unwrap();
        assert_eq!(left, ["r5", "r4", "r3"]);
        let state = fx.p(&fx.l.state);
        assert!(site_state::load_release(&state, "r1").is_none());
        assert!(site_state::load_release(&state, "r3").is_some());
        assert!(!fx.p(&fx.l.venvs).join("v1").exists());
        assert!(fx.p(&fx.l.venvs).join("v3").exists());
        assert_eq!(
            text(&out),
            "pruned 2 release(s) and 1 venv(s) beyond keep_releases = 2\n"
        );
    }
}
