//! `sum-deploy <site> [--ref REF] [--no-restart]`: every step of SPEC §7, in
//! order, each logged with its duration (the steps are `Deploy`'s methods,
//! in steps.rs and after_swap.rs).
//!
//! Before the swap nothing the live site uses is touched, so any failure
//! there exits 1 with production as it was. After the swap a failure swaps
//! back, restarts and re-checks the previous release, and exits 4 (5 when
//! that fails too).

use std::io::Write;
use std::os::fd::AsFd;

use super::bridge;
use super::command::{site_and_lock, with_control};
use super::prune::prune;
use super::record;
use super::steplog::{guarded, Log, StepFailure};
use super::steps::{Deploy, IN_PROGRESS};
use crate::config::layout::{Root, SiteLayout};
use crate::site_state::Record;
use crate::system::control::Control;
use crate::system::failure::{self, Exit, Failure};

pub use super::ctx::{Ctx, Options};

/// What a finished deploy reports.
#[derive(Debug)]
pub struct Outcome {
    pub code: u8,
    pub record: Record,
}

/// Runs the deploy (the lock is the caller's) and records it.
pub fn deploy(ctx: &Ctx, control: &mut dyn Control, out: &mut (dyn Write + Send)) -> Outcome {
    let (record, _) = deploy_and_record(ctx, control, out);
    Outcome {
        code: record.exit_code,
        record,
    }
}

/// The steps, then step 9: the record in the history, the pruning, and the
/// closing summary.
fn deploy_and_record(
    ctx: &Ctx,
    control: &mut dyn Control,
    out: &mut (dyn Write + Send),
) -> (Record, Result<(), StepFailure>) {
    let mut d = Deploy::new(ctx, control, out);
    let result = guarded("while deploying", || steps(&mut d));
    let Deploy {
        mut log, mut rec, ..
    } = d;
    record::close(ctx, &mut log, &mut rec, &result);
    // Recorded: a later deploy needs no reminder of this one.
    let _ = fs_err::remove_file(ctx.p(&ctx.l().state).join(IN_PROGRESS));
    if let Err(e) = prune(ctx, &mut log) {
        log.line(&format!("warning: pruning old releases failed: {e}"));
    }
    summary(ctx, &rec, &result, &mut log);
    (rec, result)
}

/// The steps of SPEC §7 in order, up to the deploy's record. The bridge and
/// the release checks' process end when the steps do, whatever the result;
/// so does the thread that relays the bridge's output into the log, which
/// belongs to the scope here.
fn steps(d: &mut Deploy) -> Result<(), StepFailure> {
    d.preflight()?;
    d.bootstrap()?;
    let sha = d.fetch()?;
    let mut new = d.release(&sha)?;
    d.venv(&mut new)?;
    std::thread::scope(|scope| {
        let bridge = d.start_bridge(scope);
        let mut checks = d.check(&mut new)?;
        if let Some(effective) = d.import(&mut new, &mut checks)? {
            d.paths(&mut new, &effective)?;
        }
        d.collectstatic(&mut new, &mut checks)?;
        d.release_commands(&mut new)?;
        let plan = d.migrations(&mut new, &mut checks)?;
        checks.finish();
        d.migrate(&mut new, &plan)?;
        if d.ctx.opts.no_restart {
            d.stop_before_swap(&new);
            return Ok(());
        }
        d.swap(&mut new)?;
        d.go_live(&mut new, bridge)
    })
}

/// What is live (or which step failed and why), and where to look next.
fn summary(ctx: &Ctx, rec: &Record, result: &Result<(), StepFailure>, log: &mut Log) {
    let n = &ctx.site.name;
    let total: f64 = rec.steps.iter().map(|s| s.seconds).sum();
    log.line("");
    match result {
        Ok(()) if ctx.opts.no_restart => log.line(&format!(
            "prepared {} ({}) in {total:.1}s without going live (--no-restart)",
            rec.release.as_deref().unwrap_or("?"),
            rec.sha
                .as_deref()
                .map_or("?", crate::system::text::short_sha),
        )),
        Ok(()) => {
            log.line(&format!(
                "deployed {} ({} = {}) in {total:.1}s: https://{}{}",
                rec.release.as_deref().unwrap_or("?"),
                rec.git_ref.as_deref().unwrap_or("?"),
                rec.sha
                    .as_deref()
                    .map_or("?", crate::system::text::short_sha),
                ctx.site.domain,
                ctx.site.health.path
            ));
        }
        Err(f) => {
            let what = match f.failure.exit {
                Exit::Failed => "the deploy failed before going live; the site is as it was",
                Exit::Usage => "the deploy was refused",
                Exit::RolledBack => {
                    "the deploy failed after going live and was rolled back; the previous release serves"
                }
                Exit::RollbackFailed => "THE DEPLOY AND ITS ROLLBACK FAILED: the site may be down",
                _ => "the deploy failed",
            };
            log.line(&format!("{what} (exit {}).", f.failure.exit.code()));
            log.line(&format!("step `{}`: {}", f.step, f.failure.message));
        }
    }
    log.line("where to look next:");
    log.line(&format!(
        "  sumctl status {n}        live release, units, backups"
    ));
    log.line(&format!(
        "  sumctl history {n}       this and earlier deploys"
    ));
    log.line(&format!(
        "  sumctl releases {n}      releases on disk; sumctl rollback {n}"
    ));
    log.line(&format!(
        "  journalctl -u sum-gunicorn@{n} -u sum-deploy@{n}"
    ));
}

/// The `sum-deploy` command: lock, deploy, exit code.
pub fn run(
    root: &Root,
    site_name: &str,
    opts: &Options,
    control: Option<&mut dyn Control>,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> u8 {
    failure::exit_code(command(root, site_name, opts, control, out), err)
}

/// Takes the lock and deploys; the failure is the one `run` prints.
fn command(
    root: &Root,
    site_name: &str,
    opts: &Options,
    control: Option<&mut dyn Control>,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    // Before any child is started: none may inherit the socket.
    let listener = bridge::inherited_socket(&root.path(&SiteLayout::new(site_name).socket));
    let (site, _lock) = site_and_lock(root, site_name, "sum-deploy")?;
    let ctx = Ctx {
        root,
        site: &site,
        opts,
        account: crate::system::accounts::site_account(root, &site.name),
        listener: listener.as_ref().map(|fd| fd.as_fd()),
    };
    let (_, result) = with_control(root, control, |c| deploy_and_record(&ctx, c, out));
    result.map_err(|f| f.failure.context(&format!("sum-deploy {}", site.name)))
}
