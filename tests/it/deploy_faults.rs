//! sum-deploy under faults: each one fails with a message that says what to
//! fix, leaves the live release serving, and the next deploy succeeds.
//! Real PostgreSQL, Redis, gunicorn and the example app
//! (tests/it/common/deployfx.rs).

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::deployfx::{git, App, Fixture};
use common::Node;
use sum::deploy::Options;

fn opts(r: &str) -> Options {
    Options {
        git_ref: Some(r.to_string()),
        no_restart: false,
    }
}

/// Everything under the site's home that a deploy could change, without
/// the history and the lock (a failed deploy records itself there).
fn site_state(fx: &Fixture) -> BTreeMap<PathBuf, Node> {
    let mut snap = common::snapshot(&fx.home());
    snap.retain(|p, _| {
        let s = p.to_string_lossy();
        !(s == "state/history.jsonl"
            || s == "state/lock"
            || s == ".env"
            || s.starts_with("repo.git")
            || s == "gunicorn.log")
    });
    snap
}

/// Fails naming the paths that differ, not dumping both trees.
fn assert_same(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>, what: &str) {
    let mut diff: Vec<String> = Vec::new();
    for (p, n) in before {
        match after.get(p) {
            None => diff.push(format!("removed {}", p.display())),
            Some(m) if m != n => diff.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("added {}", p.display()));
    }
    assert!(diff.is_empty(), "{what} changed the site's files: {diff:?}");
}

/// A fixture with `r` deployed and serving, or None where the tests cannot
/// run (see `Fixture::new`).
fn deployed(r: &str) -> Option<(Fixture, common::deployfx::Gunicorn)> {
    let fx = Fixture::new("")?;
    let mut gunicorn = fx.gunicorn();
    let (o, log) = fx.deploy(&mut gunicorn, &opts(r));
    assert_eq!(o.code, 0, "{log}");
    Some((fx, gunicorn))
}

fn sum_deploy(fx: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sum-deploy"));
    cmd.arg("acme").args(args).env("SUM_ROOT", fx.root.path());
    cmd
}

#[test]
fn preflight_failures_touch_nothing_and_say_what_to_fix() {
    let Some(mut fx) = Fixture::new("") else {
        return;
    };
    let mut gunicorn = fx.gunicorn();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    assert_eq!(o.code, 0, "{log}");
    let before = site_state(&fx);

    let check = |fx: &Fixture, what: &str, expect: &[&str]| {
        let out = sum_deploy(fx, &["--ref", "v2"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        for e in expect {
            assert!(err.contains(e), "{what}: no `{e}` in:\n{err}");
        }
        assert_same(&before, &site_state(fx), what);
    };

    // Redis down: stopped, then started again on its port.
    let port = fx.redis.port;
    drop(std::mem::replace(
        &mut fx.redis,
        common::redis::Redis::start(None),
    ));
    check(
        &fx,
        "Redis down",
        &[
            &format!("Redis at 127.0.0.1:{port} does not answer"),
            "systemctl status redis-server",
        ],
    );
    fx.redis = common::redis::Redis::start_on(port, None);
    assert_eq!(fx.serving_version(), "v1");

    // PostgreSQL down.
    fx.pg.stop();
    check(
        &fx,
        "PostgreSQL down",
        &["PostgreSQL is not reachable", "systemctl status postgresql"],
    );
    fx.pg.start_server();
    assert_eq!(fx.serving_version(), "v1");

    // .env missing, world-readable, group-writable.
    let env_file = fx.home().join(".env");
    std::fs::rename(&env_file, fx.root.path().join("env.away")).unwrap();
    check(&fx, ".env missing", &[".env is missing", "sumctl new"]);
    std::fs::rename(fx.root.path().join("env.away"), &env_file).unwrap();
    for (mode, what) in [(0o644, "world-readable"), (0o660, "writable")] {
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = sum_deploy(&fx, &["--ref", "v2"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(".env") && err.contains(what) && err.contains("chmod 0640"),
            "mode {mode:o}: {err}"
        );
        assert_same(&before, &site_state(&fx), what);
    }
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o640)).unwrap();

    // An invalid site file: exit 2, nothing touched.
    let site_file = fx.root.path().join("etc/sum/sites/acme.toml");
    let good = std::fs::read_to_string(&site_file).unwrap();
    std::fs::write(&site_file, format!("{good}\n[deploy]\nkeep_releasez = 3\n")).unwrap();
    let out = sum_deploy(&fx, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("acme.toml:") && err.contains("keep_releasez"),
        "{err}"
    );
    std::fs::write(&site_file, good).unwrap();
    assert_same(&before, &site_state(&fx), "an invalid site file");

    // Each failure is in the history; the site still serves v1; the next
    // deploy succeeds.
    assert_eq!(fx.serving_version(), "v1");
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v2"));
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(fx.serving_version(), "v2");
    let hist = sum::site_state::history(&fx.home().join("state")).unwrap();
    let failed = hist.iter().filter(|r| r.outcome == "failed").count();
    assert_eq!(failed, 5, "{hist:?}");
    assert!(hist
        .iter()
        .filter(|r| r.outcome == "failed")
        .all(|r| r.failed_step.as_deref() == Some("preflight")));
}

/// Starts sum-deploy and returns it once a line of its output matches.
fn start_until(fx: &Fixture, args: &[&str], line_starts: &str) -> (Child, Vec<String>) {
    let mut child = sum_deploy(fx, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.starts_with(line_starts);
                seen.push(line);
                if hit {
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return (child, seen);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "sum-deploy never printed `{line_starts}`; it printed:\n{}\n{}",
                    seen.join("\n"),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn kill9(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn two_deploys_at_once_the_second_exits_3_naming_the_holder() {
    let Some(fx) = Fixture::new("") else {
        return;
    };
    let (first, _) = start_until(&fx, &["--ref", "v1"], "==> fetch");
    let out = sum_deploy(&fx, &["--ref", "v1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("sum-deploy acme")
            && err.contains("holds")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the first deploy is unaffected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fx.live().is_some());
}

fn leftovers(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(fx.home().join("releases"))
        .unwrap()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') {
            found.push(format!("releases/{n}"));
        }
    }
    for e in std::fs::read_dir(fx.home().join("venvs"))
        .unwrap()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with('.') && !e.path().join(".sum-ready").exists() {
            found.push(format!("venvs/{n}"));
        }
    }
    found
}

/// A branch whose requirements differ from v2's only by a comment: a
/// new venv key, the same packages.
fn branch_with_new_requirements(repo: &Path, name: &str) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("w");
    git(
        Path::new("/"),
        &[
            "clone",
            "-q",
            &repo.display().to_string(),
            &w.display().to_string(),
        ],
    );
    git(&w, &["checkout", "-q", "-b", name, "v2"]);
    let req = w.join("requirements.txt");
    let mut text = std::fs::read_to_string(&req).unwrap();
    text.push_str(&format!("# {name}\n"));
    std::fs::write(&req, text).unwrap();
    git(
        &w,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qam",
            name,
        ],
    );
    git(&w, &["push", "-q", "origin", name]);
}

#[test]
fn kill_9_at_any_point_leaves_the_site_serving_and_the_next_deploy_works() {
    let Some((fx, mut gunicorn)) = deployed("v1") else {
        return;
    };
    let v1 = fx.live().unwrap();
    branch_with_new_requirements(&fx.repo, "newreqs");

    // After the fetch, mid pip install, after migrate, right after the swap.
    for (args, at, pause) in [
        (["--ref", "v2"], "    fetch:", 0),
        (["--ref", "newreqs"], "==> venv", 1500),
        (["--ref", "v2"], "    migrate:", 0),
        (["--ref", "v2"], "    swap:", 0),
    ] {
        let (child, seen) = start_until(&fx, &args, at);
        std::thread::sleep(Duration::from_millis(pause));
        kill9(child);
        // The running site is the one from before: gunicorn was never
        // restarted by the killed deploy.
        assert_eq!(fx.serving_version(), "v1", "after kill at `{at}`: {seen:?}");
        // The lock died with the process.
        let probe =
            sum::site_state::lock::acquire(&fx.home().join("state/lock"), "probe", "now").unwrap();
        drop(probe);
        match at {
            "    swap:" => assert_ne!(fx.live().unwrap(), v1, "the swap happened before the kill"),
            // The swap follows the migration within a millisecond: the kill
            // may land on either side of it. Either way the database is
            // migrated and the old code serves.
            "    migrate:" => assert_eq!(
                fx.sql("SELECT count(*) FROM django_migrations WHERE name = '0002_note_pinned'"),
                "1"
            ),
            _ => assert_eq!(fx.live().unwrap(), v1, "after kill at `{at}`"),
        }
    }
    let unfinished = leftovers(&fx);
    assert!(
        unfinished.iter().any(|l| l.starts_with("venvs/")),
        "the venv killed mid-install is unfinished: {unfinished:?}"
    );

    // The next deploys clean up and succeed.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("newreqs"));
    assert_eq!(o.code, 0, "{log}");
    assert!(
        log.contains("interrupted after the swap")
            && log.contains(&format!("{v1} counts as the previous release")),
        "{log}"
    );
    assert!(
        log.contains("built venvs/"),
        "the unfinished venv is rebuilt: {log}"
    );
    assert_eq!(fx.serving_version(), "v2");
    assert_eq!(leftovers(&fx), Vec::<String>::new());
    assert!(!fx.home().join("state/deploy-in-progress.json").exists());
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_disk_filling_up_during_the_venv_build_fails_cleanly() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("note: mounting a small tmpfs needs root; skipping");
        return;
    }
    let Some((fx, mut gunicorn)) = deployed("v1") else {
        return;
    };
    branch_with_new_requirements(&fx.repo, "bigger");

    // Where the new venv will go: its key from the same inputs the deploy hashes.
    let tree = tempfile::tempdir().unwrap();
    let req = git(&fx.repo, &["show", "bigger:requirements.txt"]) + "\n";
    std::fs::write(tree.path().join("r"), &req).unwrap();
    let runner = sum::deploy::app::Runner {
        run_as: None,
        env: vec![],
    };
    let identity = sum::deploy::app::interpreter_identity(&runner, "python3", tree.path()).unwrap();
    let key = sum::deploy::app::venv_key(&identity, req.as_bytes(), &[]);
    let target = fx.home().join("venvs").join(&key);
    assert!(mount_tmpfs(&target, "40m"), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let mount = Unmount(target.clone());

    let before = fx.live();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("bigger"));
    assert_eq!(o.code, 1, "{log}");
    assert_eq!(o.record.failed_step.as_deref(), Some("venv"));
    let err = o.record.error.unwrap();
    assert!(
        err.contains("No space left on device") || err.contains("left on the file system"),
        "{err}"
    );
    assert!(err.contains("free some space"), "{err}");
    assert_eq!(fx.live(), before);
    assert_eq!(fx.serving_version(), "v1");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "the half-built venv is removed"
    );

    drop(mount);
    let (o, log) = fx.deploy(&mut gunicorn, &opts("bigger"));
    assert_eq!(o.code, 0, "{log}");
    assert!(log.contains(&format!("built venvs/{key}")), "{log}");
    assert_eq!(fx.serving_version(), "v2");
}

#[test]
fn a_first_deploy_failing_after_the_swap_leaves_nothing_live() {
    let Some(fx) = Fixture::new("") else {
        return;
    };
    let mut gunicorn = fx.gunicorn();
    // v4 answers 503 once live; there is no earlier release to go back to.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v4"));
    println!("{log}");
    assert_eq!(o.code, 4, "{log}");
    assert_eq!(o.record.outcome, "rolled-back");
    assert!(
        log.contains("no previous release: the site answers \"not deployed yet\" again"),
        "{log}"
    );
    for link in ["app", "venv"] {
        assert!(
            std::fs::symlink_metadata(fx.home().join(link)).is_err(),
            "{link} is still there after the failed first deploy"
        );
    }
    assert_eq!(fx.live(), None);
    // The next deploy of a good ref goes live.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(fx.serving_version(), "v1");
}

/// The bakery example reads DJANGO_ALLOWED_HOSTS; when it lacks the
/// domain, Django answers 400 and the deploy says which setting and which
/// variable of the .env to fix, rolls back (nothing was live: exit 4), and
/// the media the first attempt seeded are kept.
#[test]
fn a_host_django_rejects_is_named_with_the_variable_to_fix() {
    let Some(mut fx) = Fixture::with_app(App::Bakery, "") else {
        return;
    };
    let good = fx.env.clone();
    for (k, v) in fx.env.iter_mut() {
        if k == "DJANGO_ALLOWED_HOSTS" {
            *v = "other.example".into();
        }
    }
    fx.write_env(&fx.env);
    let mut gunicorn = fx.gunicorn();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    println!("{log}");
    assert_eq!(o.code, 4, "{log}");
    assert!(
        log.contains(
            "answered 400 Bad Request: Django's ALLOWED_HOSTS probably lacks acme.localhost"
        ) && log.contains(
            "the site's .env has DJANGO_ALLOWED_HOSTS=other.example, which does not list \
                 acme.localhost"
        ),
        "{log}"
    );
    assert_eq!(fx.live(), None);
    assert!(fx
        .home()
        .join("media/original_images/welcome.txt")
        .is_file());

    drop(gunicorn);
    fx.env = good;
    fx.write_env(&fx.env);
    let mut gunicorn = fx.gunicorn();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(fx.get("/").status, 200);
}

/// v6's /health/ answers 503 with "x" and 300 `é`: quoting it once cut the
/// body inside a character, and the panic (after the swap) left v6 live.
/// Now the deploy rolls back and quotes the body cut between characters.
#[test]
fn a_long_non_ascii_health_body_is_quoted_and_rolled_back() {
    let Some((fx, mut gunicorn)) = deployed("v2") else {
        return;
    };
    let v2 = fx.live().unwrap();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v6"));
    println!("{log}");
    assert_eq!(o.code, 4, "{log}");
    assert_eq!(o.record.outcome, "rolled-back");
    let quoted = format!("/health/ answered 503: x{}…", "é".repeat(199));
    assert!(log.contains(&quoted), "{log}");
    assert_eq!(fx.live().unwrap(), v2);
    assert_eq!(fx.serving_version(), "v2");
}

/// A control whose first restart panics, as a bug in our code after the
/// swap would: the deploy must still end in the rollback.
struct PanicsOnFirstRestart<'a> {
    inner: &'a mut common::deployfx::Gunicorn,
    armed: bool,
}

impl sum::system::control::Control for PanicsOnFirstRestart<'_> {
    fn manages_services(&self) -> bool {
        self.inner.manages_services()
    }
    fn restart(&mut self, site: &sum::config::site::Site) -> Result<(), String> {
        if std::mem::take(&mut self.armed) {
            panic!("injected panic after the swap");
        }
        self.inner.restart(site)
    }
    fn stop(&mut self, site: &sum::config::site::Site) -> Result<(), String> {
        self.inner.stop(site)
    }
    fn socket(&self, site: &sum::config::site::Site) -> PathBuf {
        self.inner.socket(site)
    }
    fn journal_tail(&mut self, site: &sum::config::site::Site) -> String {
        self.inner.journal_tail(site)
    }
    fn reload_caddy(&mut self) -> Result<(), String> {
        self.inner.reload_caddy()
    }
    fn public_url_reachable(&self) -> bool {
        self.inner.public_url_reachable()
    }
}

#[test]
fn a_panic_after_the_swap_ends_in_the_rollback() {
    let Some((fx, mut gunicorn)) = deployed("v1") else {
        return;
    };
    let v1 = fx.live().unwrap();
    let mut control = PanicsOnFirstRestart {
        inner: &mut gunicorn,
        armed: true,
    };
    let (o, log) = fx.deploy(&mut control, &opts("v2"));
    println!("{log}");
    assert!(!control.armed, "the injected panic did not fire");
    assert_eq!(o.code, 4, "{log}");
    assert_eq!(o.record.outcome, "rolled-back");
    let error = o.record.error.as_deref().unwrap_or("");
    assert!(
        error.contains("failed unexpectedly after the swap")
            && error.contains("injected panic after the swap"),
        "{error}"
    );
    assert!(
        log.contains(&format!("releases/{v1} serves again")),
        "{log}"
    );
    assert_eq!(fx.live().unwrap(), v1);
    assert_eq!(fx.serving_version(), "v1");
    assert!(!fx.home().join("state/deploy-in-progress.json").exists());
    // The next deploy goes live as usual.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v2"));
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(fx.serving_version(), "v2");
}

/// v7's /health/ needs a row no migration creates: the code is fine, the
/// database state is not, and Django (DEBUG off) answers only "Server
/// Error (500)". The deploy rolls back and names the exception Django
/// raises for that request, with where it was raised.
#[test]
fn a_500_from_the_database_state_is_explained_by_django() {
    let Some((fx, mut gunicorn)) = deployed("v2") else {
        return;
    };
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v7"));
    println!("{log}");
    assert_eq!(o.code, 4, "{log}");
    let error = o.record.error.as_deref().unwrap_or("");
    assert!(
        error.contains("/health/ answered 500")
            && error.contains("Django raises, for the same request: ")
            && error.contains("DoesNotExist: Note matching query does not exist.")
            && error.contains("notes/views.py:"),
        "{error}"
    );
    assert_eq!(fx.serving_version(), "v2");
    // Once the row exists, the same release deploys.
    fx.sql("INSERT INTO notes_note (title, body, created, pinned) VALUES ('site settings', '', now(), false)");
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v7"));
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(fx.serving_version(), "v7");
}

/// The trial's outage: a DATABASE_URL written for backups beside an app
/// whose own settings name another database. The deploy asks Django and
/// stops at the import step, before anything is touched.
#[test]
fn a_database_url_that_is_not_the_apps_database_stops_the_deploy() {
    let Some((fx, mut gunicorn)) = deployed("v1") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("w");
    let (repo, wd) = (fx.repo.display().to_string(), w.display().to_string());
    git(Path::new("/"), &["clone", "-q", &repo, &wd]);
    git(&w, &["checkout", "-q", "-b", "typo-db", "v2"]);
    let settings = w.join("acme/settings/production.py");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str("\n# Settings of its own: another database than DATABASE_URL's.\n");
    text.push_str("DATABASES[\"default\"][\"NAME\"] = \"acme_typo\"\n");
    std::fs::write(&settings, text).unwrap();
    git(
        &w,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qam",
            "typo",
        ],
    );
    git(&w, &["push", "-q", "origin", "typo-db"]);

    let before = fx.live();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("typo-db"));
    assert_eq!(o.code, 1, "{log}");
    assert_eq!(o.record.failed_step.as_deref(), Some("import"), "{log}");
    let err = o.record.error.unwrap();
    assert!(
        err.contains("Django's own settings use database `acme_typo`"),
        "{err}"
    );
    assert!(
        err.contains("DATABASE_URL in the .env names database `acme`"),
        "{err}"
    );
    assert!(!err.contains("pw-"), "a password in the message: {err}");
    assert_eq!(fx.live(), before);
    assert_eq!(fx.serving_version(), "v1");
    assert_eq!(
        fx.sql("SELECT count(*) FROM django_migrations WHERE name = '0002_note_pinned'"),
        "0",
        "a migration ran"
    );
}
