//! `sum-deploy <site> [--ref REF] [--no-restart]`: every step of SPEC §7, in
//! order, each logged with its duration.
//!
//! Before the swap nothing the live site uses is touched, so any failure
//! there exits 1 with production as it was. After the swap a failure swaps
//! back, restarts and re-checks the previous release, and exits 4 (5 when
//! that fails too).

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::app::{self, Runner, VenvSpec};
use super::bridge::{self, Bridge};
use super::{dirs, fetch};
use crate::backup::dump::{self, DumpSource};
use crate::config::envfile;
use crate::config::layout::{Root, SiteLayout, CADDY_RUN_DIR};
use crate::config::site::Site;
use crate::render::caddy::{self, Served};
use crate::site_state::lock::{self, LockError};
use crate::site_state::{self, Record, ReleaseInfo, ReleaseStatus, StepTime};
use crate::system::control::{self, Control};
use crate::system::fsutil::{link_name, symlink_atomic, write_atomic};
use crate::system::timefmt;

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Deploy this ref instead of the site file's `[git] ref`.
    pub git_ref: Option<String>,
    /// Stop after migrating: no swap, no restart (for debugging).
    pub no_restart: bool,
}

/// A failed step: its exit code and what to do about it.
#[derive(Debug)]
pub struct Failure {
    pub step: String,
    pub code: u8,
    pub message: String,
}

/// What a finished deploy reports.
#[derive(Debug)]
pub struct Outcome {
    pub code: u8,
    pub record: Record,
}

/// Written before the swap, removed once the deploy is recorded: a deploy
/// killed after the swap leaves it, and the next one knows the live release
/// was never verified and which one was.
#[derive(Debug, Serialize, Deserialize)]
struct InProgress {
    release: String,
    previous: Option<String>,
    previous_venv: Option<String>,
}

const IN_PROGRESS: &str = "deploy-in-progress.json";

pub(super) struct Log<'a> {
    out: &'a mut dyn Write,
    pub(super) times: Vec<StepTime>,
}

impl Log<'_> {
    pub(super) fn new(out: &mut dyn Write) -> Log<'_> {
        Log {
            out,
            times: Vec::new(),
        }
    }

    pub(super) fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Runs one step, logging its start, its result and its duration.
    pub(super) fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<(T, String), String>,
    ) -> Result<T, Failure> {
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
                Err(Failure {
                    step: name.to_string(),
                    code: 1,
                    message,
                })
            }
        }
    }
}

/// Who started the deploy, for the history.
pub fn who() -> String {
    if let Ok(u) = std::env::var("SUDO_USER") {
        return format!("{u} (sudo)");
    }
    if std::env::var_os("INVOCATION_ID").is_some() {
        return "systemd".to_string();
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()))
}

/// Everything a deploy works with.
pub struct Ctx<'a> {
    pub root: &'a Root,
    pub site: &'a Site,
    pub opts: &'a Options,
    /// The site account (uid, gid); None under a test root.
    pub account: Option<(u32, u32)>,
    /// The site's listening socket, when systemd passed it
    /// (`sum-deploy@.service` has `Sockets=`): the bridge serves from it.
    pub listener: Option<BorrowedFd<'a>>,
}

impl Ctx<'_> {
    fn l(&self) -> SiteLayout {
        SiteLayout::new(&self.site.name)
    }
    fn p(&self, canonical: &str) -> PathBuf {
        self.root.path(canonical)
    }
}

/// Runs the deploy (the lock is the caller's) and records it.
pub fn deploy(ctx: &Ctx, control: &mut dyn Control, out: &mut dyn Write) -> Outcome {
    let started = timefmt::iso_utc(crate::system::timefmt::now_unix());
    let mut log = Log {
        out,
        times: Vec::new(),
    };
    let git_ref = ctx
        .opts
        .git_ref
        .clone()
        .unwrap_or_else(|| ctx.site.git.git_ref.clone());
    let mut rec = Record {
        action: "deploy".into(),
        started_utc: started,
        who: who(),
        git_ref: Some(git_ref.clone()),
        ..Record::default()
    };
    let result = guarded("while deploying", || {
        steps(ctx, control, &mut log, &git_ref, &mut rec)
    });
    let code = match &result {
        Ok(()) => 0,
        Err(f) => f.code,
    };
    if (code == 0 && !ctx.opts.no_restart) || code == 4 {
        // The site serves on this site file: keep it as the last good copy
        // (crate::config::sites), which a later typo falls back to.
        if let Err(e) = crate::site_state::last_good::save(ctx.root, &ctx.site.name) {
            log.line(&format!(
                "warning: could not keep the site file as its last good copy: {e}"
            ));
        }
    }
    rec.exit_code = code;
    rec.outcome = match code {
        0 if ctx.opts.no_restart => "prepared",
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
    let state_dir = ctx.p(&ctx.l().state);
    if let Err(e) = site_state::append(&state_dir, &rec) {
        log.line(&format!(
            "warning: could not record the deploy in the history: {e}"
        ));
    }
    // Recorded: a later deploy needs no reminder of this one.
    let _ = std::fs::remove_file(state_dir.join(IN_PROGRESS));
    if let Err(e) = prune(ctx, &mut log) {
        log.line(&format!("warning: pruning old releases failed: {e}"));
    }
    summary(ctx, &rec, &result, &mut log);
    Outcome { code, record: rec }
}

fn steps(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
    git_ref: &str,
    rec: &mut Record,
) -> Result<(), Failure> {
    let site = ctx.site;
    let l = ctx.l();
    let state_dir = ctx.p(&l.state);
    let home = ctx.p(&l.home);
    let app_link = ctx.p(&l.app);
    let venv_link = ctx.p(&l.venv);

    // 1. Preflight: fail early, before anything is touched.
    let env = log.step("preflight", |_| preflight(ctx))?;
    // A socket unit that does not listen would leave the next gunicorn with
    // nothing to serve: repair it now, or stop with what to run.
    if control.manages_services() {
        match control.ensure_socket(site) {
            Ok(None) => {}
            Ok(Some(done)) => log.line(&format!("    socket: {done}")),
            Err(message) => return Err(fail("preflight", message)),
        }
    }

    // 2. Bootstrap (idempotent).
    let account = log.step("bootstrap", |_| {
        let account = if ctx.root.is_system() {
            crate::system::accounts::ensure_site_account(&site.name, &l)
                .map_err(|e| e.to_string())?;
            crate::system::accounts::site_account(ctx.root, &site.name)
        } else {
            ctx.account
        };
        dirs::ensure(ctx.root, &site.name, account).map_err(|e| e.to_string())?;
        let cleaned = clean_leftovers(&ctx.p(&l.releases));
        let detail = match (account, cleaned) {
            (Some(_), 0) => format!("user {} and directories in place", l.user),
            (None, 0) => "directories in place".to_string(),
            (_, n) => {
                format!("directories in place; removed {n} leftover(s) of interrupted deploys")
            }
        };
        Ok((account, detail))
    })?;

    // What is live now, and what a rollback would go back to.
    let mut previous = link_name(&app_link);
    let mut previous_venv = link_name(&venv_link);
    let mut interrupted = false;
    if let Ok(bytes) = std::fs::read(state_dir.join(IN_PROGRESS)) {
        if let Ok(ip) = serde_json::from_slice::<InProgress>(&bytes) {
            interrupted = true;
            log.line(&format!(
                "warning: the deploy of {} was interrupted after the swap and never verified; \
                 {} counts as the previous release",
                ip.release,
                ip.previous.as_deref().unwrap_or("nothing")
            ));
            previous = ip.previous;
            previous_venv = ip.previous_venv;
        }
    }
    rec.previous = previous.clone();

    let runner = Runner {
        run_as: account,
        env: app_env(ctx, &env),
    };

    // 3. Fetch and resolve; an immutable release directory.
    let repo = home.join("repo.git");
    let sha = log.step("fetch", |_| {
        fetch::update_mirror(&site.git.url, &repo)?;
        let sha = fetch::resolve(&repo, git_ref)?;
        let detail = format!("{git_ref} is {}", crate::system::text::short_sha(&sha));
        Ok((sha, detail))
    })?;
    rec.sha = Some(sha.clone());
    let releases = ctx.p(&l.releases);
    let (release_dir, release) = log.step("release", |log| {
        let mut now = crate::system::timefmt::now_unix();
        let short = &sha[..7];
        while releases
            .join(format!("{}-{short}", timefmt::compact_utc(now)))
            .exists()
        {
            std::thread::sleep(Duration::from_millis(250));
            now = crate::system::timefmt::now_unix().max(now + 1);
        }
        let dir = fetch::build_release(&repo, &releases, &sha, &timefmt::compact_utc(now))?;
        // [deploy] shared: before anything runs from the release.
        let linked = super::shared::link(&dir, &ctx.p(&l.shared_dir), &site.deploy.shared, account)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&dir);
            })?;
        for x in &linked {
            log.line(&format!("    shared: {x}"));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let detail = format!("releases/{name}");
        Ok(((dir, name), detail))
    })?;
    rec.release = Some(release.clone());
    let mut info = ReleaseInfo {
        release: release.clone(),
        git_ref: git_ref.to_string(),
        sha: sha.clone(),
        venv: String::new(),
        created_utc: rec.started_utc.clone(),
        status: ReleaseStatus::Built,
        migrations: Vec::new(),
        static_root: None,
        media_root: None,
    };
    let save = |info: &ReleaseInfo| {
        site_state::save_release(&state_dir, info)
            .map_err(|e| format!("failed to record the release: {e}"))
    };
    save(&info).map_err(|m| fail("release", m))?;
    let failed = |info: &mut ReleaseInfo, f: Failure| {
        info.status = ReleaseStatus::Failed;
        let _ = site_state::save_release(&state_dir, info);
        f
    };

    // 3b. The venv, reused by hash or built.
    let venvs = ctx.p(&l.venvs);
    let venv = log
        .step("venv", |log| {
            let req_path = release_dir.join(&site.python.requirements);
            let req = std::fs::read(&req_path).map_err(|e| {
                format!(
                    "cannot read {} from the release ({e}); set [python] requirements in the site file",
                    site.python.requirements
                )
            })?;
            let mut extra = site.python.extra.clone();
            if !app::requires_gunicorn(&String::from_utf8_lossy(&req)) {
                log.line(&format!(
                    "    {} does not name gunicorn: adding it to the venv ({}, the tested range)",
                    site.python.requirements,
                    app::GUNICORN
                ));
                extra.push(app::GUNICORN.to_string());
            }
            let identity =
                app::interpreter_identity(&runner, &site.python.interpreter, &release_dir)?;
            let key = app::venv_key(&identity, &req, &extra);
            let dir = app::venv_dir(&venvs, &key);
            let reused = app::ensure_venv(
                &runner,
                &dir,
                &VenvSpec {
                    interpreter: &site.python.interpreter,
                    requirements: &req_path,
                    extra: &extra,
                },
                &release_dir,
            )?;
            let detail = if reused {
                format!("reused venvs/{key} (requirements unchanged)")
            } else {
                format!("built venvs/{key}")
            };
            Ok(((key, reused), detail))
        })
        .map_err(|f| failed(&mut info, f))?;
    let (venv_key, reused) = venv;
    let venv_dir = app::venv_dir(&venvs, &venv_key);
    info.venv = venv_key.clone();
    rec.venv = Some(venv_key.clone());
    rec.venv_reused = Some(reused);
    save(&info).map_err(|m| fail("venv", m))?;

    // The bridge (see bridge.rs): the live release also serves from the
    // socket while the unit restarts. Started now, so that its boot
    // overlaps the checks; dropped (stopped gracefully) on any failure.
    let mut bridge = match (ctx.listener, &previous, &previous_venv) {
        (Some(fd), Some(p), Some(v))
            if !interrupted && !ctx.opts.no_restart && control.manages_services() =>
        {
            let conf = ctx.p(crate::config::layout::GUNICORN_CONF);
            match Bridge::start(&runner, site, fd, &releases.join(p), &venvs.join(v), &conf) {
                Ok(b) => {
                    log.line(&format!(
                        "    bridge: a gunicorn of releases/{p} (pid {}) also serves the socket \
                         while the unit restarts",
                        b.pid()
                    ));
                    Some(b)
                }
                Err(e) => {
                    log.line(&format!(
                        "    bridge: warning: {e}; requests wait in the socket's backlog while \
                         the unit restarts"
                    ));
                    None
                }
            }
        }
        _ => None,
    };

    // 4. Checks from the new release, in one Python process: each Django
    // start-up costs a few tenths of a second, and a code-only deploy is
    // mostly start-ups. `check --deploy`, the WSGI import and the migration
    // plan run one after the other without waiting; collectstatic is sent once the
    // paths step has prepared STATIC_ROOT. A failing step kills the process.
    let mut checks = log
        .step("check", |log| {
            let mut checks = runner.start_checks(&venv_dir, &release_dir, &site.django.wsgi)?;
            let ran = checks.phase("check")?.ran;
            let warnings: Vec<&str> = ran
                .stderr
                .lines()
                .chain(ran.stdout.lines())
                .filter(|l| l.trim_start().starts_with("?:") || l.contains("(security."))
                .collect();
            for w in &warnings {
                log.line(&format!("    warning: {}", w.trim()));
            }
            if !ran.ok {
                return Err(format!(
                    "`manage.py check --deploy` failed ({}):\n{}",
                    ran.status,
                    ran.tail(15)
                ));
            }
            Ok((checks, format!("passed, {} warning(s)", warnings.len())))
        })
        .map_err(|f| failed(&mut info, f))?;

    let effective = log
        .step("import", |_| {
            let phase = checks.phase("import")?;
            let ran = phase.ran;
            if !ran.ok {
                return Err(format!(
                    "importing {} failed, so the release cannot start; production is untouched:\n{}",
                    site.django.wsgi,
                    ran.tail(12)
                ));
            }
            let eff: Option<app::Effective> = serde_json::from_value(phase.value).ok();
            let detail = match &eff {
                Some(e) => format!(
                    "{} imports; Django's STATIC_ROOT={} MEDIA_ROOT={}",
                    site.django.wsgi,
                    shown(&e.static_root),
                    shown(&e.media_root)
                ),
                None => format!("{} imports", site.django.wsgi),
            };
            Ok((eff, detail))
        })
        .map_err(|f| failed(&mut info, f))?;
    if let Some(e) = &effective {
        let placed = log
            .step("paths", |log| {
                let home = ctx.p(&l.home);
                let placed =
                    super::paths::place(&release_dir, &home, &ctx.p(&l.media_dir), e, account)?;
                for n in &placed.notes {
                    log.line(&format!("    {n}"));
                }
                let detail = format!(
                    "static from {}, media in {}",
                    shown(&placed.static_root),
                    shown(&placed.media_root)
                );
                Ok((placed, detail))
            })
            .map_err(|f| failed(&mut info, f))?;
        info.static_root = Some(placed.static_root);
        info.media_root = Some(placed.media_root);
        save(&info).map_err(|m| fail("paths", m))?;
    }

    log.step("collectstatic", |_| {
        let ran = checks.manage(&["collectstatic", "--noinput"])?.ran;
        if !ran.ok {
            return Err(format!(
                "`manage.py collectstatic --noinput` failed ({}):\n{}",
                ran.status,
                ran.tail(12)
            ));
        }
        let summary = ran
            .stdout
            .lines()
            .rev()
            .find(|l| l.contains("static file"))
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(((), summary))
    })
    .map_err(|f| failed(&mut info, f))?;

    // 5. Migrations: a verified backup first when some are pending.
    let plan = log
        .step("migrations", |_| {
            let ran = checks.phase("plan")?.ran;
            if !ran.ok {
                return Err(format!(
                    "`manage.py showmigrations --plan` failed ({}):\n{}",
                    ran.status,
                    ran.tail(12)
                ));
            }
            let plan = app::parse_plan(&ran.stdout);
            let detail = if plan.pending.is_empty() {
                "none pending".to_string()
            } else {
                format!("pending: {}", plan.pending.join(", "))
            };
            Ok((plan, detail))
        })
        .map_err(|f| failed(&mut info, f))?;
    checks.finish();
    if !plan.pending.is_empty() {
        if site.deploy.backup_before_migrate {
            let url = envfile::get(&env, "DATABASE_URL", &ctx.p(&l.env_file))
                .map_err(|e| fail("backup", e.0))?
                .to_string();
            let taken = log
                .step("backup", |_| {
                    let dir = dump::backups_dir(ctx.root, &site.name);
                    let m = dump::take(
                        site,
                        &dir,
                        &DumpSource {
                            database_url: &url,
                            run_as: account,
                            media_dir: None,
                            release: previous.as_deref(),
                        },
                        std::time::SystemTime::now(),
                    )
                    .map_err(|e| {
                        format!("the pre-migrate backup failed, so nothing was migrated: {e}")
                    })?;
                    let path = dir.join(&m.file);
                    let detail = format!("verified {} ({} bytes)", path.display(), m.size);
                    Ok((path, detail))
                })
                .map_err(|f| failed(&mut info, f))?;
            rec.backup = Some(taken.display().to_string());
        } else {
            log.line("    no pre-migrate backup: [deploy] backup_before_migrate is false");
        }
        log.step("migrate", |_| {
            let ran = runner.manage(&venv_dir, &release_dir, &["migrate", "--noinput"])?;
            if !ran.ok {
                return Err(format!(
                    "`manage.py migrate --noinput` failed ({}); PostgreSQL rolled back the failing \
                     migration and the live release still serves:\n{}",
                    ran.status,
                    ran.tail(12)
                ));
            }
            Ok(((), format!("applied {}", plan.pending.join(", "))))
        })
        .map_err(|f| failed(&mut info, f))?;
        rec.migrations_applied = plan.pending.clone();
    }
    info.migrations = plan.applied.iter().chain(&plan.pending).cloned().collect();
    save(&info).map_err(|m| fail("migrate", m))?;

    if ctx.opts.no_restart {
        log.line(&format!(
            "--no-restart: releases/{release} is ready and migrated, but not live; \
             {} still serves",
            previous.as_deref().unwrap_or("nothing")
        ));
        return Ok(());
    }

    // 6. Swap, restart, reload Caddy if the snippet changed.
    let marker = InProgress {
        release: release.clone(),
        previous: previous.clone(),
        previous_venv: previous_venv.clone(),
    };
    write_atomic(
        &state_dir.join(IN_PROGRESS),
        serde_json::to_string(&marker)
            .unwrap_or_default()
            .as_bytes(),
        0o644,
    )
    .map_err(|e| fail("swap", e.to_string()))?;
    log.step("swap", |_| {
        swap(&app_link, &venv_link, &release, &venv_key).map_err(|e| e.to_string())?;
        Ok((
            (),
            format!("app -> releases/{release}, venv -> venvs/{venv_key}"),
        ))
    })
    .map_err(|f| failed(&mut info, f))?;

    // From here on every failure ends in the rollback, a panic included: it
    // is caught (the release profile unwinds, see docs/deploy.md) and
    // treated as the failure of the step it happened in.
    let after_swap = guarded("after the swap", || -> Result<(), Failure> {
        caddy_if_changed(ctx, control, log)?;
        if !control.manages_services() {
            log.line(
                "    no service manager here (a test root): nothing restarted, nothing smoke-checked",
            );
            return Ok(());
        }
        log.step("restart", |_| {
            control.restart(site)?;
            Ok(((), control::app_units(site).join(", ")))
        })?;
        // Before the smoke check, which must reach the new release only.
        if let Some(b) = bridge.take() {
            let pid = b.pid();
            let t = Instant::now();
            let how = b.stop();
            let secs = t.elapsed().as_secs_f64();
            log.line(&format!("    bridge: pid {pid} {how} in {secs:.2}s"));
        }
        log.step("smoke", |_| {
            smoke(ctx, control, &env).map_err(|e| {
                // Point at the cause: what Django raises for that request.
                match super::explain::exception(
                    &runner,
                    &venv_dir,
                    &release_dir,
                    &site.domain,
                    &site.health.path,
                ) {
                    Some(x) => format!("{e}\nDjango raises, for the same request: {x}"),
                    None => e,
                }
            })
        })?;
        Ok(())
    });
    match after_swap {
        Ok(()) => {
            info.status = ReleaseStatus::Good;
            save(&info).map_err(|m| fail("record", m))?;
            if site.health.sitemap && control.manages_services() {
                sitemap(ctx, control, log);
            }
            Ok(())
        }
        Err(f) => {
            info.status = ReleaseStatus::Failed;
            let _ = save(&info);
            Err(roll_back(
                ctx,
                control,
                log,
                f,
                previous.as_deref(),
                previous_venv.as_deref(),
            ))
        }
    }
}

/// Runs `f`, turning a panic into the failure of a step named after
/// `where_`: the caller then handles it like any other failure (after the
/// swap, by rolling back). The panic's own message and location are on
/// stderr already (the default hook), so the journal has them too.
pub(super) fn guarded<T>(
    where_: &str,
    f: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
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
fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(unset)"
    } else {
        value
    }
}

pub(super) fn fail(step: &str, message: impl Into<String>) -> Failure {
    Failure {
        step: step.to_string(),
        code: 1,
        message: message.into(),
    }
}

/// Site file, `.env`, PostgreSQL, Redis and (on a real system) the units.
fn preflight(ctx: &Ctx) -> Result<(Vec<(String, String)>, String), String> {
    let l = ctx.l();
    let env_path = ctx.p(&l.env_file);
    let gid = ctx.account.map(|(_, g)| g);
    let env = envfile::read(&env_path, gid).map_err(|e| e.0)?;
    let url = envfile::get(&env, "DATABASE_URL", &env_path).map_err(|e| e.0)?;
    postgres_reachable(url, ctx.account)?;
    let mut checked = vec!["site file", ".env", "PostgreSQL"];
    match envfile::get(&env, "REDIS_URL", &env_path) {
        Ok(redis) => {
            crate::probe::redis::ping(redis, Duration::from_secs(5))?;
            checked.push("Redis");
        }
        Err(_) => checked.push("(no REDIS_URL: Redis not checked)"),
    }
    if ctx.root.is_system() {
        let unit = format!("sum-gunicorn@{}.service", ctx.site.name);
        if !crate::system::systemd::is_loaded(&unit) {
            return Err(format!(
                "{unit} is not loaded: the generator has not seen {}; run `sumctl check` and \
                 `systemctl daemon-reload`",
                ctx.site.source.display()
            ));
        }
        checked.push("units");
    }
    Ok((env, format!("{} ok", checked.join(", "))))
}

/// `SELECT 1` over the site's DATABASE_URL, as the site's user.
fn postgres_reachable(url: &str, account: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let conn = crate::probe::pgconn::PgConn::parse(url).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-q", "-A", "-t", "--no-password", "-c", "SELECT 1"]);
    // The password goes into psql's environment, not its command line.
    conn.apply(&mut cmd)
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir("/");
    if let Some((u, g)) = account {
        cmd.uid(u).gid(g);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("failed to run psql (apt install postgresql-client): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = crate::system::text::excerpt(&String::from_utf8_lossy(&out.stderr), 300);
    Err(format!(
        "PostgreSQL is not reachable with the DATABASE_URL of the site's .env ({}): {why}; \
         is it running (`systemctl status postgresql`) and are the user, password and database right?",
        conn.dbname().unwrap_or("no database named: the user's")
    ))
}

/// The environment app code sees, as the units give it.
fn app_env(ctx: &Ctx, env: &[(String, String)]) -> Vec<(String, String)> {
    let l = ctx.l();
    let mut v: Vec<(String, String)> = env.to_vec();
    v.push(("SUM_SITE".into(), ctx.site.name.clone()));
    v.push((
        "DJANGO_SETTINGS_MODULE".into(),
        ctx.site.django.settings.clone(),
    ));
    v.push((
        "STATIC_ROOT".into(),
        ctx.p(&l.static_dir).display().to_string(),
    ));
    v.push((
        "MEDIA_ROOT".into(),
        ctx.p(&l.media_dir).display().to_string(),
    ));
    // pip's cache in a directory the site user owns.
    v.push((
        "PIP_CACHE_DIR".into(),
        ctx.p(&l.venvs).join(".cache").display().to_string(),
    ));
    v.push(("HOME".into(), ctx.p(&l.home).display().to_string()));
    v
}

/// Removes half-exported releases (`.<name>.tmp`) of killed deploys.
fn clean_leftovers(releases: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(releases) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                n += 1;
            }
        }
    }
    n
}

pub(super) fn swap(
    app_link: &Path,
    venv_link: &Path,
    release: &str,
    venv: &str,
) -> std::io::Result<()> {
    symlink_atomic(Path::new(&format!("venvs/{venv}")), venv_link)?;
    symlink_atomic(Path::new(&format!("releases/{release}")), app_link)
}

/// Re-renders this site's Caddy snippet in memory; when it differs from the
/// one Caddy has, reloads Caddy (whose reload renders it).
pub(super) fn caddy_if_changed(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
) -> Result<(), Failure> {
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
    if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    log.step("caddy", |_| {
        control.reload_caddy()?;
        Ok(((), "the site's snippet changed: Caddy reloaded".to_string()))
    })
    .map(|_| ())
}

/// Over the socket, then through Caddy over HTTPS. A 400 gets what the
/// site's `.env` says about ALLOWED_HOSTS.
fn smoke(
    ctx: &Ctx,
    control: &mut dyn Control,
    env: &[(String, String)],
) -> Result<((), String), String> {
    let site = ctx.site;
    let socket = control.socket(site);
    let hint = |f: &crate::probe::smoke::Failed| {
        crate::probe::smoke::with_hosts_hint(f, env, &site.domain)
    };
    let r = crate::probe::smoke::poll(
        &socket,
        &site.domain,
        &site.health.path,
        site.health.timeout,
    )
    .map_err(|f| hint(&f))?;
    let mut detail = format!(
        "GET {} over the socket answered {}",
        site.health.path, r.status
    );
    if control.public_url_reachable() {
        match crate::probe::public::check(site) {
            Ok(d) => detail.push_str(&format!("; {d}")),
            Err(crate::probe::public::PublicError::Failed { url, failed }) => {
                return Err(format!("{url}: {}", hint(&failed)))
            }
            Err(crate::probe::public::PublicError::Unreachable(e)) => detail.push_str(&format!(
                "; warning: the public check could not connect ({e})"
            )),
        }
    }
    Ok(((), detail))
}

/// GET /sitemap.xml over the socket: logged, never failing the deploy.
fn sitemap(ctx: &Ctx, control: &mut dyn Control, log: &mut Log) {
    let socket = control.socket(ctx.site);
    let line = match crate::probe::smoke::get(
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

/// Swaps back to `previous`, restarts and re-checks. Exit 4 when the
/// previous release serves again, 5 when it does not.
fn roll_back(
    ctx: &Ctx,
    control: &mut dyn Control,
    log: &mut Log,
    cause: Failure,
    previous: Option<&str>,
    previous_venv: Option<&str>,
) -> Failure {
    let site = ctx.site;
    let tail = control.journal_tail(site);
    let mut message = if cause.step == "panic" {
        cause.message.clone()
    } else {
        format!("{} failed after the swap: {}", cause.step, cause.message)
    };
    if !tail.is_empty() {
        message.push_str(&format!(
            "\nlast lines of sum-gunicorn@{}.service:\n{tail}",
            site.name
        ));
    }
    let back = log.step("rollback", |_| {
        guarded("during the rollback", || {
            rollback_steps(ctx, control, previous, previous_venv)
        })
        .map_err(|f| f.message)
    });
    // The snippet may differ again (a first deploy going back to none).
    let _ = guarded("reloading Caddy", || caddy_if_changed(ctx, control, log));
    match back {
        Ok(()) => Failure {
            step: cause.step,
            code: 4,
            message: format!(
                "{message}\nrolled back to {}",
                previous.unwrap_or("no release")
            ),
        },
        Err(f) => Failure {
            step: cause.step,
            code: 5,
            message: format!(
                "{message}\nTHE ROLLBACK FAILED TOO: {}\nthe site may be down: check \
                 `systemctl status sum-gunicorn@{}` and `sumctl releases {}` now",
                f.message, site.name, site.name
            ),
        },
    }
}

/// Swaps back to `previous` and checks it serves; with no previous release
/// (a first deploy), takes the site back to "not deployed yet".
fn rollback_steps(
    ctx: &Ctx,
    control: &mut dyn Control,
    previous: Option<&str>,
    previous_venv: Option<&str>,
) -> Result<((), String), Failure> {
    let site = ctx.site;
    let l = ctx.l();
    let failed = |m: String| fail("rollback", m);
    match (previous, previous_venv) {
        (Some(p), Some(v)) => {
            swap(&ctx.p(&l.app), &ctx.p(&l.venv), p, v).map_err(|e| failed(e.to_string()))?;
            control.restart(site).map_err(failed)?;
            let socket = control.socket(site);
            crate::probe::smoke::poll(
                &socket,
                &site.domain,
                &site.health.path,
                site.health.timeout,
            )
            .map_err(|f| failed(f.to_string()))?;
            Ok(((), format!("releases/{p} serves again")))
        }
        _ => {
            // A first deploy: nothing to go back to.
            let _ = std::fs::remove_file(ctx.p(&l.app));
            let _ = std::fs::remove_file(ctx.p(&l.venv));
            control.stop(site).map_err(failed)?;
            Ok((
                (),
                "no previous release: the site answers \"not deployed yet\" again".to_string(),
            ))
        }
    }
}

/// Deletes releases and venvs beyond `keep_releases` (see `site_state::plan_prune`).
fn prune(ctx: &Ctx, log: &mut Log) -> std::io::Result<()> {
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
    let venvs: Vec<String> = match std::fs::read_dir(&venvs_dir) {
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
        let _ = std::fs::remove_file(state_dir.join("releases").join(format!("{r}.json")));
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

fn summary(ctx: &Ctx, rec: &Record, result: &Result<(), Failure>, log: &mut Log) {
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
            let what = match f.code {
                1 => "the deploy failed before going live; the site is as it was",
                2 => "the deploy was refused",
                4 => "the deploy failed after going live and was rolled back; the previous release serves",
                5 => "THE DEPLOY AND ITS ROLLBACK FAILED: the site may be down",
                _ => "the deploy failed",
            };
            log.line(&format!("{what} (exit {}).", f.code));
            log.line(&format!("step `{}`: {}", f.step, f.message));
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

/// Loads the site and takes its lock for `what` ("sum-deploy", "sumctl
/// rollback"); on failure, the exit code (2 invalid site, 3 busy, 1 other).
pub(super) fn site_and_lock(
    root: &Root,
    site_name: &str,
    what: &str,
    err: &mut dyn Write,
) -> Result<(Site, lock::SiteLock), u8> {
    let site = match crate::config::sites::load_site(root, site_name) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{what}: {e}");
            return Err(2);
        }
    };
    let state_dir = root.path(SiteLayout::new(&site.name).state);
    if let Err(e) = fs_err::create_dir_all(&state_dir) {
        let _ = writeln!(err, "{what} {}: {e}", site.name);
        return Err(1);
    }
    let started = timefmt::iso_utc(crate::system::timefmt::now_unix());
    match lock::acquire(
        &state_dir.join("lock"),
        &format!("{what} {}", site.name),
        &started,
    ) {
        Ok(l) => Ok((site, l)),
        Err(e @ LockError::Busy { .. }) => {
            let _ = writeln!(err, "{what} {}: {e}", site.name);
            Err(3)
        }
        Err(e) => {
            let _ = writeln!(err, "{what} {}: {e}", site.name);
            Err(1)
        }
    }
}

/// The `sum-deploy` command: lock, deploy, exit code.
pub fn run(
    root: &Root,
    site_name: &str,
    opts: &Options,
    control: Option<&mut dyn Control>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    // Before any child is started: none may inherit the socket.
    let listener = bridge::inherited_socket(&root.path(&SiteLayout::new(site_name).socket));
    let (site, _lock) = match site_and_lock(root, site_name, "sum-deploy", err) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let ctx = Ctx {
        root,
        site: &site,
        opts,
        account: crate::system::accounts::site_account(root, &site.name),
        listener: listener.as_ref().map(|fd| fd.as_fd()),
    };
    let mut default;
    let control: &mut dyn Control = match control {
        Some(c) => c,
        None => {
            default = control::for_root(root);
            default.as_mut()
        }
    };
    let outcome = deploy(&ctx, control, out);
    if outcome.code != 0 {
        let _ = writeln!(
            err,
            "sum-deploy {}: {}",
            site.name,
            outcome.record.error.as_deref().unwrap_or("failed")
        );
    }
    outcome.code
}
