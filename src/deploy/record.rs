//! The history record of a deploy and a rollback: how one starts (action,
//! time, who), and how it is closed once the steps are done (outcome, exit
//! code, failed step, durations; the site file kept as its last good copy
//! when the site serves on it; the line appended to the history).

use super::ctx::Ctx;
use super::steplog::{Log, StepFailure};
use crate::site_state::{self, Record};
use crate::system::failure::Exit;
use crate::system::timefmt;

/// A record of `action` starting now.
fn started(action: &str) -> Record {
    Record {
        action: action.into(),
        started_utc: timefmt::iso_utc(timefmt::now_unix()),
        who: crate::system::accounts::operator(),
        ..Record::default()
    }
}

/// The record of a deploy of `git_ref` starting now.
pub(super) fn deploy(git_ref: &str) -> Record {
    Record {
        git_ref: Some(git_ref.to_string()),
        ..started("deploy")
    }
}

/// The record of a rollback starting now, away from `live`. A rollback
/// builds no venv: it reuses the target's.
pub(super) fn rollback(live: Option<String>) -> Record {
    Record {
        previous: live,
        venv_reused: Some(true),
        ..started("rollback")
    }
}

/// The exit code of the steps' result.
pub(super) fn exit(result: &Result<(), StepFailure>) -> Exit {
    match result {
        Ok(()) => Exit::Ok,
        Err(f) => f.failure.exit,
    }
}

/// The history's word for how it ended.
fn outcome(exit: Exit, no_restart: bool) -> &'static str {
    match exit {
        Exit::Ok if no_restart => "prepared",
        Exit::Ok => "ok",
        Exit::RolledBack => "rolled-back",
        Exit::RollbackFailed => "rollback-failed",
        _ => "failed",
    }
}

/// Closes `rec` with the steps' result and their durations, keeps the site
/// file as its last good copy when the site serves on it, and appends the
/// record to the history (a failure to do either is a warning).
pub(super) fn close(ctx: &Ctx, log: &mut Log, rec: &mut Record, result: &Result<(), StepFailure>) {
    let exit = exit(result);
    if (exit == Exit::Ok && !ctx.opts.no_restart) || exit == Exit::RolledBack {
        // The site serves on this site file: keep it as the last good copy
        // (crate::config::sites), which a later typo falls back to.
        if let Err(e) = site_state::last_good::save(ctx.root, &ctx.site.name) {
            log.line(&format!(
                "warning: could not keep the site file as its last good copy: {e}"
            ));
        }
    }
    rec.exit_code = exit.code();
    rec.outcome = outcome(exit, ctx.opts.no_restart).to_string();
    if let Err(f) = result {
        rec.failed_step = Some(f.step.clone());
        rec.error = Some(f.failure.message.clone());
    }
    rec.finished_utc = timefmt::iso_utc(timefmt::now_unix());
    rec.steps = std::mem::take(&mut log.times);
    if let Err(e) = site_state::append(&ctx.p(&ctx.l().state), rec) {
        log.line(&format!(
            "warning: could not record the {} in the history: {e}",
            rec.action
        ));
    }
    write_metrics(ctx, log, rec);
}

/// The deploy's figures for Prometheus (`system::metrics`), in
/// `sum-<site>-deploy.prom`, from the history: deploys and rollbacks by
/// outcome (counters: the history is never trimmed), the last one's time,
/// success and duration, and the release that serves as an info metric.
/// A failure to write is a warning.
fn write_metrics(ctx: &Ctx, log: &mut Log, last: &Record) {
    use crate::system::metrics::{self, Family};
    let dir = ctx.root.path(metrics::dir());
    if !dir.is_dir() {
        return;
    }
    let site = ctx.site.name.as_str();
    let history = site_state::history(&ctx.p(&ctx.l().state)).unwrap_or_default();
    let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for r in &history {
        *counts
            .entry((r.action.as_str(), r.outcome.as_str()))
            .or_default() += 1;
    }
    let mut total = Family::counter(
        "sum_deploys_total",
        "Deploys and rollbacks of the site, by action and outcome (ok, rolled-back, failed, prepared).",
    );
    for ((action, outcome), n) in &counts {
        total = total.sample(
            &[("site", site), ("action", action), ("outcome", outcome)],
            *n as f64,
        );
    }
    let s = [("site", site)];
    let mut families = vec![
        total,
        Family::gauge(
            "sum_deploy_last_timestamp_seconds",
            "When the last deploy or rollback ended (Unix time).",
        )
        .sample(&s, timefmt::now_unix() as f64),
        Family::gauge(
            "sum_deploy_last_success",
            "1 if the last deploy or rollback succeeded (a prepared --no-restart deploy too), 0 if it failed or rolled back.",
        )
        .sample(
            &s,
            if matches!(last.outcome.as_str(), "ok" | "prepared") {
                1.0
            } else {
                0.0
            },
        ),
        Family::gauge(
            "sum_deploy_last_duration_seconds",
            "How long the last deploy or rollback took (the sum of its steps).",
        )
        .sample(&s, last.steps.iter().map(|t| t.seconds).sum()),
    ];
    let live = crate::system::fsutil::link_name(&ctx.p(&ctx.l().app));
    if let Some(release) = live {
        let sha = site_state::load_release(&ctx.p(&ctx.l().state), &release)
            .map(|r| r.sha)
            .unwrap_or_default();
        families.push(
            Family::gauge(
                "sum_release_info",
                "The release that serves: always 1, the release and its git sha as labels.",
            )
            .sample(&[("site", site), ("release", &release), ("sha", &sha)], 1.0),
        );
    }
    if let Err(e) = metrics::write(&dir, &metrics::file_name(site, "deploy"), &families) {
        log.line(&format!(
            "warning: could not write the metrics file in {}: {e}",
            dir.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sites::LAST_GOOD_DIR;
    use crate::deploy::steplog::fail;
    use crate::deploy::testkit::Fixture;
    use crate::system::failure::Failure;

    fn closed(fx: &Fixture, result: Result<(), StepFailure>) -> Record {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out);
        let _ = log.step("fetch", |_| Ok(((), String::new())));
        let mut rec = deploy("v2");
        close(&fx.ctx(), &mut log, &mut rec, &result);
        rec
    }

    #[test]
    fn a_closed_record_is_in_the_history_with_its_outcome() {
        let fx = Fixture::new();
        fx.dirs();
        let rolled_back = StepFailure {
            step: "smoke".into(),
            failure: Failure::new(Exit::RolledBack, "smoke failed after the swap: 500"),
        };
        let rec = closed(&fx, Err(rolled_back));
        assert_eq!((rec.outcome.as_str(), rec.exit_code), ("rolled-back", 4));
        assert_eq!(rec.failed_step.as_deref(), Some("smoke"));
        assert_eq!(
            rec.steps
                .iter()
                .map(|s| s.step.as_str())
                .collect::<Vec<_>>(),
            ["fetch"]
        );
        let history = site_state::history(&fx.p(&fx.l.state)).unwrap();
        assert_eq!(history, [rec]);
        assert_eq!(history[0].git_ref.as_deref(), Some("v2"));
        // The previous release serves on this site file: its last good copy.
        assert!(fx.p(LAST_GOOD_DIR).join("acme.toml").is_file());
    }

    #[test]
    fn with_node_exporter_s_directory_each_record_writes_the_deploy_metrics() {
        let fx = Fixture::new();
        fx.dirs();
        // Without the directory: nothing.
        let _ = closed(&fx, Ok(()));
        let dir = fx.p("/var/lib/prometheus/node-exporter");
        assert!(!dir.exists());
        fs_err::create_dir_all(&dir).unwrap();
        let _ = closed(&fx, Ok(()));
        let rolled_back = StepFailure {
            step: "smoke".into(),
            failure: Failure::new(Exit::RolledBack, "smoke failed after the swap: 500"),
        };
        let _ = closed(&fx, Err(rolled_back));
        let text = fs_err::read_to_string(dir.join("sum-acme-deploy.prom")).unwrap();
        // Counted from the whole history, the run without metrics included.
        assert!(
            text.contains("sum_deploys_total{site=\"acme\",action=\"deploy\",outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sum_deploys_total{site=\"acme\",action=\"deploy\",outcome=\"rolled-back\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sum_deploy_last_success{site=\"acme\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sum_deploys_total counter\n"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_before_the_swap_keeps_no_last_good_copy_and_a_prepared_deploy_says_so() {
        let fx = Fixture::new();
        fx.dirs();
        let rec = closed(&fx, Err(fail("venv", "pip failed")));
        assert_eq!((rec.outcome.as_str(), rec.exit_code), ("failed", 1));
        assert_eq!(rec.error.as_deref(), Some("pip failed"));
        assert!(!fx.p(LAST_GOOD_DIR).join("acme.toml").exists());
        let mut fx = fx;
        fx.opts.no_restart = true;
        let rec = closed(&fx, Ok(()));
        assert_eq!((rec.outcome.as_str(), rec.exit_code), ("prepared", 0));
        assert!(!fx.p(LAST_GOOD_DIR).join("acme.toml").exists());
        assert_eq!(site_state::history(&fx.p(&fx.l.state)).unwrap().len(), 2);
    }

    #[test]
    fn a_rollback_record_starts_from_the_live_release() {
        let rec = rollback(Some("r2".into()));
        assert_eq!(rec.action, "rollback");
        assert_eq!(rec.previous.as_deref(), Some("r2"));
        assert_eq!(rec.venv_reused, Some(true));
        assert!(rec.started_utc.ends_with('Z') && !rec.who.is_empty());
    }
}
