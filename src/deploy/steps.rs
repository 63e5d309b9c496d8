//! The deploy as its steps (SPEC §7). A [`Deploy`] holds what the steps
//! share: the context, the service-manager control, the step log, the
//! history record in progress and what is live; a [`NewRelease`] is the
//! release being built. Each step up to the migrations is one method here;
//! the swap and what follows it are in `after_swap.rs`, and `run.rs` calls
//! them in order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::app::{self, Checks, Effective, Migrations, Runner, VenvSpec};
use super::ctx::Ctx;
use super::steplog::{fail, shown, Log, StepFailure};
use super::{dirs, fetch, preflight, record};
use crate::backup::dump::{self, DumpSource};
use crate::config::envfile;
use crate::config::layout::SiteLayout;
use crate::probe::pgconn::PgConn;
use crate::site_state::{self, Record, ReleaseInfo, ReleaseStatus};
use crate::system::control::Control;
use crate::system::fsutil::link_name;
use crate::system::timefmt;

/// Written before the swap, removed once the deploy is recorded: a deploy
/// killed after the swap leaves it, and the next one knows the live release
/// was never verified and which one was.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct InProgress {
    pub(super) release: String,
    pub(super) previous: Option<String>,
    pub(super) previous_venv: Option<String>,
}

/// The marker's file name in the site's `state/`.
pub(super) const IN_PROGRESS: &str = "deploy-in-progress.json";

/// One deploy in progress.
pub(super) struct Deploy<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) control: &'a mut dyn Control,
    pub(super) log: Log<'a>,
    /// The history record, filled in as the steps go.
    pub(super) rec: Record,
    pub(super) l: SiteLayout,
    git_ref: String,
    /// The site's `.env`, as the preflight read it.
    pub(super) env: Vec<(String, String)>,
    /// Runs the app's code as the site's user (set by the bootstrap).
    pub(super) runner: Runner,
    /// The release and venv a rollback goes back to.
    pub(super) previous: Option<String>,
    pub(super) previous_venv: Option<String>,
    /// A deploy was killed after its swap: the live release is unverified.
    pub(super) interrupted: bool,
    /// The new release's database, as its Django names it (the import).
    pub(super) database: Option<PgConn>,
}

/// The release being built, and its record under `state/releases/`.
pub(super) struct NewRelease {
    pub(super) dir: PathBuf,
    pub(super) venv_dir: PathBuf,
    pub(super) info: ReleaseInfo,
}

impl<'a> Deploy<'a> {
    pub(super) fn new(
        ctx: &'a Ctx<'a>,
        control: &'a mut dyn Control,
        out: &'a mut (dyn Write + Send),
    ) -> Deploy<'a> {
        let git_ref = ctx
            .opts
            .git_ref
            .clone()
            .unwrap_or_else(|| ctx.site.git.git_ref.clone());
        Deploy {
            ctx,
            control,
            log: Log::new(out),
            rec: record::deploy(&git_ref),
            l: ctx.l(),
            git_ref,
            env: Vec::new(),
            runner: Runner {
                run_as: ctx.account,
                env: Vec::new(),
            },
            previous: None,
            previous_venv: None,
            interrupted: false,
            database: None,
        }
    }

    /// Step 1, after the caller took the lock: the preflight, before
    /// anything is touched; then the socket unit, repaired when it does not
    /// listen (the next gunicorn would have nothing to serve), or the
    /// deploy stops with what to run.
    pub(super) fn preflight(&mut self) -> Result<(), StepFailure> {
        let ctx = self.ctx;
        self.env = self.log.step("preflight", |_| preflight::check(ctx))?;
        if self.control.manages_services() {
            match self.control.ensure_socket(ctx.site) {
                Ok(None) => {}
                Ok(Some(done)) => self.log.line(&format!("    socket: {done}")),
                Err(message) => return Err(fail("preflight", message)),
            }
        }
        Ok(())
    }

    /// Step 2: the site's account and directories (idempotent), leftovers
    /// of killed deploys removed; then what is live now, and the runner of
    /// the app's code.
    pub(super) fn bootstrap(&mut self) -> Result<(), StepFailure> {
        let (ctx, l) = (self.ctx, &self.l);
        let account = self.log.step("bootstrap", |_| {
            let account = if ctx.root.is_system() {
                crate::system::accounts::ensure_site_account(&ctx.site.name, l)
                    .map_err(|e| e.to_string())?;
                crate::system::accounts::site_account(ctx.root, &ctx.site.name)
            } else {
                ctx.account
            };
            dirs::ensure(ctx.root, &ctx.site.name, account).map_err(|e| e.to_string())?;
            let cleaned = dirs::clean_leftovers(&ctx.p(&l.releases));
            let detail = match (account, cleaned) {
                (Some(_), 0) => format!("user {} and directories in place", l.user),
                (None, 0) => "directories in place".to_string(),
                (_, n) => {
                    format!("directories in place; removed {n} leftover(s) of interrupted deploys")
                }
            };
            Ok((account, detail))
        })?;
        self.find_previous();
        self.runner = Runner {
            run_as: account,
            env: preflight::app_env(ctx, &self.env),
        };
        Ok(())
    }

    /// What is live now and what a rollback would go back to: the links,
    /// unless a deploy was interrupted after its swap (its marker names
    /// what was live before it).
    fn find_previous(&mut self) {
        self.previous = link_name(&self.ctx.p(&self.l.app));
        self.previous_venv = link_name(&self.ctx.p(&self.l.venv));
        let marker = self.ctx.p(&self.l.state).join(IN_PROGRESS);
        if let Ok(bytes) = fs_err::read(marker) {
            if let Ok(ip) = serde_json::from_slice::<InProgress>(&bytes) {
                self.interrupted = true;
                self.log.line(&format!(
                    "warning: the deploy of {} was interrupted after the swap and never verified; \
                     {} counts as the previous release",
                    ip.release,
                    ip.previous.as_deref().unwrap_or("nothing")
                ));
                self.previous = ip.previous;
                self.previous_venv = ip.previous_venv;
            }
        }
        self.rec.previous = self.previous.clone();
    }

    fn repo(&self) -> PathBuf {
        self.ctx.p(&self.l.home).join("repo.git")
    }

    /// Step 3: the bare mirror fetched and the ref resolved to a commit.
    pub(super) fn fetch(&mut self) -> Result<String, StepFailure> {
        let (url, git_ref, repo) = (&self.ctx.site.git.url, &self.git_ref, self.repo());
        let sha = self.log.step("fetch", |_| {
            fetch::update_mirror(url, &repo)?;
            let sha = fetch::resolve(&repo, git_ref)?;
            let detail = format!("{git_ref} is {}", crate::system::text::short_sha(&sha));
            Ok((sha, detail))
        })?;
        self.rec.sha = Some(sha.clone());
        Ok(sha)
    }

    /// Step 3: the immutable `releases/<UTC>-<sha7>` of commit `sha`, with
    /// its `[deploy] shared` links made before anything runs from it;
    /// recorded as built.
    pub(super) fn release(&mut self, sha: &str) -> Result<NewRelease, StepFailure> {
        let ctx = self.ctx;
        let (releases, shared, repo) = (
            ctx.p(&self.l.releases),
            ctx.p(&self.l.shared_dir),
            self.repo(),
        );
        let account = self.runner.run_as;
        let (dir, name) = self.log.step("release", |log| {
            let dir = fetch::build_release(&repo, &releases, sha, &release_stamp(&releases, sha))?;
            let linked = super::shared::link(&dir, &shared, &ctx.site.deploy.shared, account)
                .inspect_err(|_| {
                    let _ = fs_err::remove_dir_all(&dir);
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
        self.rec.release = Some(name.clone());
        let new = NewRelease {
            dir,
            venv_dir: PathBuf::new(),
            info: ReleaseInfo {
                release: name,
                git_ref: self.git_ref.clone(),
                sha: sha.to_string(),
                venv: String::new(),
                created_utc: self.rec.started_utc.clone(),
                status: ReleaseStatus::Built,
                migrations: Vec::new(),
                static_root: None,
                media_root: None,
                database: None,
            },
        };
        self.save(&new, "release")?;
        Ok(new)
    }

    /// Step 3: the venv whose hash matches, reused, or a new one built.
    pub(super) fn venv(&mut self, new: &mut NewRelease) -> Result<(), StepFailure> {
        let (site, runner, release_dir) = (self.ctx.site, &self.runner, &new.dir);
        let venvs = self.ctx.p(&self.l.venvs);
        let (key, reused) = self
            .log
            .step("venv", |log| {
                let req_path = release_dir.join(&site.python.requirements);
                let req = fs_err::read(&req_path).map_err(|e| {
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
                    app::interpreter_identity(runner, &site.python.interpreter, release_dir)?;
                let key = app::venv_key(&identity, &req, &extra);
                let spec = VenvSpec {
                    interpreter: &site.python.interpreter,
                    requirements: &req_path,
                    extra: &extra,
                };
                let reused =
                    app::ensure_venv(runner, &app::venv_dir(&venvs, &key), &spec, release_dir)?;
                let detail = if reused {
                    format!("reused venvs/{key} (requirements unchanged)")
                } else {
                    format!("built venvs/{key}")
                };
                Ok(((key, reused), detail))
            })
            .map_err(|f| self.failed(new, f))?;
        new.venv_dir = app::venv_dir(&venvs, &key);
        new.info.venv = key.clone();
        self.rec.venv = Some(key);
        self.rec.venv_reused = Some(reused);
        self.save(new, "venv")
    }

    /// Step 4: `manage.py check --deploy` from the new release, warnings
    /// logged. It starts the release checks' one Python process: each
    /// Django start-up costs a few tenths of a second, and a code-only
    /// deploy is mostly start-ups. `check`, the WSGI import and the
    /// migration plan run one after the other without waiting;
    /// collectstatic is sent once the paths step has prepared STATIC_ROOT.
    /// A failing step kills the process.
    pub(super) fn check(&mut self, new: &mut NewRelease) -> Result<Checks, StepFailure> {
        let (runner, wsgi) = (&self.runner, &self.ctx.site.django.wsgi);
        let (venv_dir, release_dir) = (&new.venv_dir, &new.dir);
        self.log
            .step("check", |log| {
                let mut checks = runner.start_checks(venv_dir, release_dir, wsgi)?;
                let ran = checks.phase("check")?.ran;
                let warnings: Vec<&str> = ran
                    .stderr
                    .lines()
                    .chain(ran.stdout.lines())
                    .filter(|l| l.trim_start().starts_with("?:") || l.contains("(security."))
                    .map(str::trim)
                    .collect();
                if !warnings.is_empty() {
                    // Ours at warning; Django's own lines are the app's.
                    log.line(&format!(
                        "    warning: `manage.py check --deploy` reported {} warning(s):",
                        warnings.len()
                    ));
                    log.app(&warnings.join("\n"));
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
            .map_err(|f| self.failed(new, f))
    }

    /// Step 4: the WSGI application imported once (failing before
    /// production is touched); Django's effective STATIC_ROOT and MEDIA_ROOT.
    pub(super) fn import(
        &mut self,
        new: &mut NewRelease,
        checks: &mut Checks,
    ) -> Result<Option<Effective>, StepFailure> {
        let wsgi = &self.ctx.site.django.wsgi;
        let account = self.runner.run_as;
        let url = envfile::get(&self.env, "DATABASE_URL", Path::new(""))
            .ok()
            .map(str::to_string);
        let (eff, answer) = self
            .log
            .step("import", |_| {
                let phase = checks.phase("import")?;
                let ran = phase.ran;
                if !ran.ok {
                    return Err(format!(
                        "importing {wsgi} failed, so the release cannot start; production is untouched:\n{}",
                        ran.tail(12)
                    ));
                }
                let answer = super::database::from_import(&phase.value, url.as_deref())?;
                let mut detail = format!("{wsgi} imports");
                if let Some(a) = &answer {
                    // Without a DATABASE_URL the preflight could not check it.
                    if url.is_none() {
                        preflight::postgres_reachable(&a.conn, account, "Django's DATABASES")
                            .map_err(|e| format!("{e}; production is untouched"))?;
                    }
                    detail.push_str(&format!("; Django's {}", a.database.describe()));
                }
                let eff: Option<Effective> = serde_json::from_value(phase.value).ok();
                if let Some(e) = &eff {
                    detail.push_str(&format!(
                        "; STATIC_ROOT={} MEDIA_ROOT={}",
                        shown(&e.static_root),
                        shown(&e.media_root)
                    ));
                }
                Ok(((eff, answer), detail))
            })
            .map_err(|f| self.failed(new, f))?;
        if let Some(a) = answer {
            new.info.database = Some(a.database);
            self.database = Some(a.conn);
        }
        Ok(eff)
    }

    /// Step 4: the effective STATIC_ROOT and MEDIA_ROOT made to work (see
    /// paths.rs) and recorded with the release.
    pub(super) fn paths(
        &mut self,
        new: &mut NewRelease,
        eff: &Effective,
    ) -> Result<(), StepFailure> {
        let (home, media) = (self.ctx.p(&self.l.home), self.ctx.p(&self.l.media_dir));
        let (account, release_dir) = (self.runner.run_as, &new.dir);
        let placed = self
            .log
            .step("paths", |log| {
                let placed = super::paths::place(release_dir, &home, &media, eff, account)?;
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
            .map_err(|f| self.failed(new, f))?;
        new.info.static_root = Some(placed.static_root);
        new.info.media_root = Some(placed.media_root);
        self.save(new, "paths")
    }

    /// Step 4: `collectstatic --noinput` in the release checks' process.
    pub(super) fn collectstatic(
        &mut self,
        new: &mut NewRelease,
        checks: &mut Checks,
    ) -> Result<(), StepFailure> {
        self.log
            .step("collectstatic", |_| {
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
            .map_err(|f| self.failed(new, f))
    }

    /// Step 5: the migration plan, from the release checks' process.
    pub(super) fn migrations(
        &mut self,
        new: &mut NewRelease,
        checks: &mut Checks,
    ) -> Result<Migrations, StepFailure> {
        self.log
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
                    format!(
                        "pending: {}",
                        crate::system::text::summary(&plan.pending, 3)
                    )
                };
                Ok((plan, detail))
            })
            .map_err(|f| self.failed(new, f))
    }

    /// Step 5: when migrations are pending, a verified backup first (unless
    /// `backup_before_migrate` is false), then `migrate --noinput`; the
    /// release records every migration applied when it goes live.
    pub(super) fn migrate(
        &mut self,
        new: &mut NewRelease,
        plan: &Migrations,
    ) -> Result<(), StepFailure> {
        if !plan.pending.is_empty() {
            if self.ctx.site.deploy.backup_before_migrate {
                self.backup(new)?;
            } else {
                self.log
                    .line("    no pre-migrate backup: [deploy] backup_before_migrate is false");
            }
            let (runner, venv_dir, release_dir) = (&self.runner, &new.venv_dir, &new.dir);
            self.log
                .step("migrate", |_| {
                    let ran = runner.manage(venv_dir, release_dir, &["migrate", "--noinput"])?;
                    if !ran.ok {
                        return Err(format!(
                            "`manage.py migrate --noinput` failed ({}); PostgreSQL rolled back the failing \
                             migration and the live release still serves:\n{}",
                            ran.status,
                            ran.tail(12)
                        ));
                    }
                    let applied = crate::system::text::summary(&plan.pending, 3);
                    Ok(((), format!("applied {applied} (all in the release's record)")))
                })
                .map_err(|f| self.failed(new, f))?;
            self.rec.migrations_applied = plan.pending.clone();
        }
        new.info.migrations = plan.applied.iter().chain(&plan.pending).cloned().collect();
        self.save(new, "migrate")
    }

    /// Step 5: the verified pre-migrate backup (the same as `sum-backup`'s),
    /// its path recorded in the history.
    fn backup(&mut self, new: &mut NewRelease) -> Result<(), StepFailure> {
        let (ctx, account, previous) = (self.ctx, self.runner.run_as, self.previous.as_deref());
        // What the new release's Django will migrate; DATABASE_URL only
        // when the import reported no database.
        let conn = match &self.database {
            Some(c) => c.clone(),
            None => envfile::get(&self.env, "DATABASE_URL", &ctx.p(&self.l.env_file))
                .map_err(|e| e.0)
                .and_then(|u| PgConn::parse(u).map_err(|e| e.to_string()))
                .map_err(|e| fail("backup", e))?,
        };
        let taken = self
            .log
            .step("backup", |_| {
                let dir = dump::backups_dir(ctx.root, &ctx.site.name);
                let source = DumpSource {
                    conn: &conn,
                    run_as: account,
                    media_dir: None,
                    release: previous,
                    accept_shrink: false,
                };
                let m = dump::take(ctx.site, &dir, &source, std::time::SystemTime::now()).map_err(
                    |e| format!("the pre-migrate backup failed, so nothing was migrated: {e}"),
                )?;
                let path = dir.join(&m.file);
                let detail = format!("verified {} ({} bytes)", path.display(), m.size);
                Ok(((path, m.unaccepted_shrink()), detail))
            })
            .map_err(|f| self.failed(new, f))?;
        if let Some(what) = taken.1 {
            // The migration goes on: this is the way back for the database
            // it migrates, whichever that is.
            self.log.line(&format!(
                "    warning: the pre-migrate backup shrank: {what}; is the app's database right? \
                 Retention keeps it without counting it (docs/backups.md)"
            ));
        }
        self.rec.backup = Some(taken.0.display().to_string());
        Ok(())
    }

    /// `--no-restart`: the release is ready and migrated, but not live.
    pub(super) fn stop_before_swap(&mut self, new: &NewRelease) {
        self.log.line(&format!(
            "--no-restart: releases/{} is ready and migrated, but not live; \
             {} still serves",
            new.info.release,
            self.previous.as_deref().unwrap_or("nothing")
        ));
    }

    /// Records the new release's state; a failure to is `step`'s.
    pub(super) fn save(&self, new: &NewRelease, step: &str) -> Result<(), StepFailure> {
        site_state::save_release(&self.ctx.p(&self.l.state), &new.info)
            .map_err(|e| fail(step, format!("failed to record the release: {e}")))
    }

    /// `f`, with the new release recorded as failed.
    pub(super) fn failed(&self, new: &mut NewRelease, f: StepFailure) -> StepFailure {
        new.info.status = ReleaseStatus::Failed;
        let _ = site_state::save_release(&self.ctx.p(&self.l.state), &new.info);
        f
    }
}

/// The UTC time stamp of a new release of `sha`: now, or a later second
/// when a release of that second and commit exists already.
fn release_stamp(releases: &Path, sha: &str) -> String {
    let mut now = timefmt::now_unix();
    let short = &sha[..7];
    while releases
        .join(format!("{}-{short}", timefmt::compact_utc(now)))
        .exists()
    {
        std::thread::sleep(Duration::from_millis(250));
        now = timefmt::now_unix().max(now + 1);
    }
    timefmt::compact_utc(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::{text, Fixture};
    use crate::system::failure::Exit;
    use std::process::Command;

    /// A new release `r1` of the fixture, not built by git.
    fn new_release(fx: &Fixture) -> NewRelease {
        let info = fx.release("r1", "v1", ReleaseStatus::Built, &[]);
        NewRelease {
            dir: fx.p(&fx.l.releases).join("r1"),
            venv_dir: fx.p(&fx.l.venvs).join("v1"),
            info,
        }
    }

    #[test]
    fn preflight_stops_at_an_unreachable_database_url() {
        let fx = Fixture::new();
        // Port 1 on this host: nothing listens, the refusal is at once.
        fx.env_file("SECRET_KEY=x\nDATABASE_URL=postgres://acme:pw@127.0.0.1:1/acme\n");
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let f = Deploy::new(&ctx, &mut control, &mut out)
            .preflight()
            .unwrap_err();
        assert_eq!(
            (f.step.as_str(), f.failure.exit),
            ("preflight", Exit::Failed)
        );
        assert!(
            f.failure.message.contains(
                "PostgreSQL is not reachable with the DATABASE_URL of the site's .env (acme)"
            ),
            "{}",
            f.failure.message
        );
        assert!(!f.failure.message.contains("pw@"), "{}", f.failure.message);
        let log = text(&out);
        assert!(
            log.starts_with("==> preflight\n    preflight: FAILED after"),
            "{log}"
        );
        assert!(!fx.p(&fx.l.releases).exists(), "nothing touched");
    }

    #[test]
    fn preflight_without_database_url_leaves_the_database_to_django() {
        let fx = Fixture::new();
        fx.env_file("SECRET_KEY=x\nDB_NAME=acme\n");
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        Deploy::new(&ctx, &mut control, &mut out)
            .preflight()
            .unwrap();
        let log = text(&out);
        assert!(
            log.contains("(no DATABASE_URL: PostgreSQL checked once Django names it)"),
            "{log}"
        );
    }

    #[test]
    fn bootstrap_lays_out_the_site_removes_leftovers_and_finds_an_interrupted_deploy() {
        let fx = Fixture::new();
        fs_err::create_dir_all(fx.p(&fx.l.releases).join(".r3.tmp/acme")).unwrap();
        fs_err::create_dir_all(fx.p(&fx.l.state)).unwrap();
        let marker = r#"{"release":"r2","previous":"r1","previous_venv":"v1"}"#;
        fs_err::write(fx.p(&fx.l.state).join(IN_PROGRESS), marker).unwrap();
        std::os::unix::fs::symlink("releases/r2", fx.p(&fx.l.app)).unwrap();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.bootstrap().unwrap();
        assert_eq!(
            (d.previous.as_deref(), d.previous_venv.as_deref()),
            (Some("r1"), Some("v1"))
        );
        assert!(d.interrupted);
        assert_eq!(d.rec.previous.as_deref(), Some("r1"));
        assert!(d.runner.env.contains(&("SUM_SITE".into(), "acme".into())));
        drop(d);
        for dir in [
            &fx.l.static_dir,
            &fx.l.media_dir,
            &fx.l.beat_dir,
            &fx.l.backups,
        ] {
            assert!(fx.p(dir).is_dir(), "{dir}");
        }
        assert!(!fx.p(&fx.l.releases).join(".r3.tmp").exists());
        let log = text(&out);
        assert!(
            log.contains("removed 1 leftover(s) of interrupted deploys"),
            "{log}"
        );
        assert!(
            log.contains("the deploy of r2 was interrupted after the swap"),
            "{log}"
        );
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn fetch_and_release_build_the_commit_of_the_ref_as_a_recorded_release() {
        let mut fx = Fixture::new();
        let src = fx.p("/src/acme");
        fs_err::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        fs_err::write(src.join("requirements.txt"), "django\n").unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-q", "-m", "one"]);
        let head = git(&src, &["rev-parse", "HEAD"]);
        fx.site.git.url = src.display().to_string();
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        let sha = d.fetch().unwrap();
        assert_eq!(sha, head);
        let new = d.release(&sha).unwrap();
        assert!(
            new.info.release.ends_with(&format!("-{}", &head[..7])),
            "{}",
            new.info.release
        );
        assert_eq!(new.dir, fx.p(&fx.l.releases).join(&new.info.release));
        assert_eq!(
            fs_err::read_to_string(new.dir.join("requirements.txt")).unwrap(),
            "django\n"
        );
        assert_eq!(d.rec.release.as_deref(), Some(new.info.release.as_str()));
        assert_eq!(d.rec.sha.as_deref(), Some(head.as_str()));
        let recorded = fx.recorded(&new.info.release);
        assert_eq!(
            (recorded.status, recorded.sha),
            (ReleaseStatus::Built, head)
        );
    }

    #[test]
    fn a_release_without_its_requirements_fails_the_venv_step_and_is_recorded_failed() {
        let fx = Fixture::new();
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        let mut new = new_release(&fx);
        let f = d.venv(&mut new).unwrap_err();
        assert_eq!(f.step, "venv");
        assert!(
            f.failure
                .message
                .starts_with("cannot read requirements.txt from the release")
                && f.failure
                    .message
                    .ends_with("set [python] requirements in the site file"),
            "{}",
            f.failure.message
        );
        assert_eq!(fx.recorded("r1").status, ReleaseStatus::Failed);
    }

    #[test]
    fn paths_prepare_a_static_root_inside_the_release_and_record_it() {
        let fx = Fixture::new();
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        let mut new = new_release(&fx);
        let eff = Effective {
            static_root: "collect_static".into(),
            media_root: String::new(),
        };
        d.paths(&mut new, &eff).unwrap();
        drop(d);
        assert!(new.dir.join("collect_static").is_dir());
        let recorded = fx.recorded("r1");
        assert!(recorded
            .static_root
            .unwrap()
            .ends_with("releases/r1/collect_static"));
        assert_eq!(recorded.media_root.as_deref(), Some(""));
        let log = text(&out);
        assert!(
            log.contains("    STATIC_ROOT collect_static lies inside the release"),
            "{log}"
        );
        assert!(log.contains("    paths: static from "), "{log}");
    }

    #[test]
    fn with_nothing_pending_migrate_only_records_the_applied_migrations() {
        let fx = Fixture::new();
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        let mut new = new_release(&fx);
        let plan = Migrations {
            applied: vec!["blog.0001_initial".into()],
            pending: Vec::new(),
        };
        d.migrate(&mut new, &plan).unwrap();
        assert!(d.rec.migrations_applied.is_empty() && d.rec.backup.is_none());
        drop(d);
        assert_eq!(fx.recorded("r1").migrations, ["blog.0001_initial"]);
        assert_eq!(text(&out), "", "no step ran");
    }

    #[test]
    fn pending_migrations_need_their_backup_first() {
        let fx = Fixture::new();
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        d.env = vec![(
            "DATABASE_URL".into(),
            "postgresql://nobody@127.0.0.1:9/none".into(),
        )];
        let mut new = new_release(&fx);
        let plan = Migrations {
            applied: Vec::new(),
            pending: vec!["blog.0002_more".into()],
        };
        let f = d.migrate(&mut new, &plan).unwrap_err();
        assert_eq!(f.step, "backup");
        assert!(
            f.failure
                .message
                .starts_with("the pre-migrate backup failed, so nothing was migrated"),
            "{}",
            f.failure.message
        );
        assert!(d.rec.migrations_applied.is_empty());
        drop(d);
        assert!(!text(&out).contains("==> migrate"));
        assert_eq!(fx.recorded("r1").status, ReleaseStatus::Failed);
    }

    #[test]
    fn without_a_backup_before_migrate_migrate_runs_and_its_failure_fails_the_release() {
        let fx = Fixture::with("[deploy]\nbackup_before_migrate = false\n");
        fx.dirs();
        let (ctx, mut control, mut out) = (fx.ctx(), fx.no_control(), Vec::new());
        let mut d = Deploy::new(&ctx, &mut control, &mut out);
        let mut new = new_release(&fx);
        let plan = Migrations {
            applied: Vec::new(),
            pending: vec!["blog.0002_more".into()],
        };
        // venvs/v1 has no python: migrate cannot start.
        let f = d.migrate(&mut new, &plan).unwrap_err();
        assert_eq!(f.step, "migrate");
        drop(d);
        let log = text(&out);
        assert!(
            log.starts_with(
                "    no pre-migrate backup: [deploy] backup_before_migrate is false\n==> migrate\n"
            ),
            "{log}"
        );
        assert_eq!(fx.recorded("r1").status, ReleaseStatus::Failed);
    }

    #[test]
    fn a_new_release_of_the_same_second_and_commit_gets_a_later_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "abcdef0123456789";
        let first = release_stamp(dir.path(), sha);
        fs_err::create_dir(dir.path().join(format!("{first}-abcdef0"))).unwrap();
        let second = release_stamp(dir.path(), sha);
        assert!(second > first, "{second} after {first}");
    }
}
