//! The release checks (src/deploy/release_checks.py) with real Python and
//! Django on a small project with SQLite: each phase in the one process says
//! what its own `manage.py` command says in a process of its own; what the
//! app prints, at the Python level, at the file-descriptor level or through
//! logging, stays in the phase that printed it; a failing phase reports its
//! error without this file's frames while the others still run; and a
//! process that dies is reported with its status and stderr.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sum::deploy::app::{Checks, Effective, Ran, Runner};

const MANAGE: &str = r#"import os, sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mini.settings")
    if os.environ.get("DIE_ON") in sys.argv:
        print("dying in", sys.argv[1], file=sys.stderr, flush=True)
        os._exit(7)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"#;

const SETTINGS: &str = r#"import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if os.environ.get("NOISY"):
    print("settings: imported")
    os.write(2, b"settings: written to fd 2\n")
SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = True
ALLOWED_HOSTS = ["mini.localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.staticfiles", "notes"]
ROOT_URLCONF = "mini.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DB_PATH"]}}
STATIC_URL = "/static/"
STATIC_ROOT = os.environ["STATIC_ROOT"]
MEDIA_ROOT = str(BASE_DIR / "media")
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
"#;

const URLS: &str = r#"import logging, os

if os.environ.get("NOISY"):
    logging.getLogger("mini").warning("urls: loaded")
urlpatterns = []
"#;

const WSGI: &str = r#"from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
"#;

const MIGRATION: &str = r#"from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[("id", models.AutoField(primary_key=True)), ("text", models.TextField())],
        ),
    ]
"#;

const MODELS: &str = r#"from django.db import models


class Note(models.Model):
    text = models.TextField()
"#;

static VENV: Mutex<()> = Mutex::new(());

/// A virtualenv with Django from the wheelhouse, built once under target/.
fn venv() -> Option<PathBuf> {
    if !common::require_tool("python3") {
        return None;
    }
    let _guard = VENV.lock().unwrap_or_else(|p| p.into_inner());
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release-checks-venv");
    let ready = venv.join(".ready");
    if ready.is_file() {
        return Some(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    common::deployfx::venv_with(&venv, &["Django"]);
    std::fs::write(&ready, b"").unwrap();
    Some(venv)
}

/// The project in a temporary directory, and how to run it.
struct Project {
    dir: tempfile::TempDir,
    venv: PathBuf,
}

impl Project {
    fn new() -> Option<Project> {
        let venv = venv()?;
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("manage.py", MANAGE),
            ("mini/__init__.py", ""),
            ("mini/settings.py", SETTINGS),
            ("mini/urls.py", URLS),
            ("mini/wsgi.py", WSGI),
            ("notes/__init__.py", ""),
            ("notes/models.py", MODELS),
            ("notes/migrations/__init__.py", ""),
            ("notes/migrations/0001_initial.py", MIGRATION),
            ("notes/static/notes/site.css", "body { color: teal }\n"),
        ];
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Some(Project { dir, venv })
    }

    fn release(&self) -> &Path {
        self.dir.path()
    }

    /// A runner whose collectstatic writes to `static_dir`, with extra
    /// variables.
    fn runner(&self, static_dir: &str, extra: &[(&str, &str)]) -> Runner {
        let mut env = vec![
            (
                "SECRET_KEY",
                "a-test-key-that-is-long-enough-for-django-0123456789",
            ),
            ("DJANGO_SETTINGS_MODULE", "mini.settings"),
        ];
        env.extend_from_slice(extra);
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        env.push(("DB_PATH".into(), p("db.sqlite3")));
        env.push(("STATIC_ROOT".into(), p(static_dir)));
        Runner { run_as: None, env }
    }

    fn checks(&self, runner: &Runner, wsgi: &str) -> Checks {
        runner
            .start_checks(&self.venv, self.release(), wsgi)
            .unwrap()
    }

    /// `python manage.py ARGS` in a process of its own.
    fn manage(&self, runner: &Runner, args: &[&str]) -> Ran {
        runner.manage(&self.venv, self.release(), args).unwrap()
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

#[test]
fn each_phase_says_what_its_own_command_says() {
    let Some(p) = Project::new() else {
        return;
    };
    let alone = p.runner("static-alone", &[]);
    let shared = p.runner("static-shared", &[]);

    let mut checks = p.checks(&shared, "mini.wsgi");
    let check = checks.phase("check").unwrap().ran;
    let own = p.manage(&alone, &["check", "--deploy"]);
    assert!(check.ok, "{check:?}");
    // DEBUG = True: `check --deploy` warns, and says so on stderr.
    assert!(check.stderr.contains("security.W018"), "{check:?}");
    assert_eq!(
        (&check.status, &check.stdout, &check.stderr),
        (&own.status, &own.stdout, &own.stderr)
    );

    let import = checks.phase("import").unwrap();
    assert!(import.ran.ok, "{:?}", import.ran);
    let effective: Effective = serde_json::from_value(import.value).unwrap();
    assert_eq!(
        effective,
        Effective {
            static_root: p.release().join("static-shared").display().to_string(),
            media_root: p.release().join("media").display().to_string(),
        }
    );

    let plan = checks.phase("plan").unwrap().ran;
    let own = p.manage(&alone, &["showmigrations", "--plan"]);
    assert!(plan.stdout.contains("[ ]  notes.0001_initial"), "{plan:?}");
    assert_eq!((&plan.status, &plan.stdout), (&own.status, &own.stdout));

    let collect = checks.manage(&["collectstatic", "--noinput"]).unwrap().ran;
    let own = p.manage(&alone, &["collectstatic", "--noinput"]);
    assert!(collect.ok, "{collect:?}");
    assert!(
        collect.stdout.contains("1 static file copied"),
        "{collect:?}"
    );
    assert_eq!(
        collect.stdout,
        own.stdout.replace("static-alone", "static-shared")
    );
    checks.finish();
    let copied = p.release().join("static-shared/notes/site.css");
    assert_eq!(
        std::fs::read_to_string(copied).unwrap(),
        "body { color: teal }\n"
    );
}

#[test]
fn what_the_app_prints_stays_in_the_phase_that_printed_it() {
    let Some(p) = Project::new() else {
        return;
    };
    let runner = p.runner("static", &[("NOISY", "1")]);
    let mut checks = p.checks(&runner, "mini.wsgi:application");
    // Settings and URLs are imported once, by `check`: their output is
    // check's, whether printed, written to fd 2 or logged.
    let check = checks.phase("check").unwrap().ran;
    assert!(check.ok, "{check:?}");
    assert!(check.stdout.contains("settings: imported"), "{check:?}");
    assert!(
        check.stderr.contains("settings: written to fd 2"),
        "{check:?}"
    );
    assert!(check.stderr.contains("urls: loaded"), "{check:?}");
    let import = checks.phase("import").unwrap().ran;
    let plan = checks.phase("plan").unwrap().ran;
    for ran in [&import, &plan] {
        assert!(ran.ok, "{ran:?}");
        assert!(!ran.stdout.contains("settings:"), "{ran:?}");
        assert!(!ran.stderr.contains("settings:"), "{ran:?}");
        assert!(!ran.stderr.contains("urls:"), "{ran:?}");
    }
    assert_eq!(last_line(&plan.stdout), "[ ]  notes.0001_initial");
    checks.finish();
}

#[test]
fn a_failing_phase_reports_its_error_and_the_others_still_run() {
    let Some(p) = Project::new() else {
        return;
    };
    let runner = p.runner("static", &[]);
    let mut checks = p.checks(&runner, "mini.nowhere");
    assert!(checks.phase("check").unwrap().ran.ok);
    let import = checks.phase("import").unwrap().ran;
    assert!(!import.ok);
    assert_eq!(import.status, "exit status: 1");
    assert_eq!(
        last_line(&import.stderr),
        "ModuleNotFoundError: No module named 'mini.nowhere'"
    );
    assert!(!import.stderr.contains("<string>"), "{}", import.stderr);
    assert!(checks.phase("plan").unwrap().ran.ok);
    checks.finish();

    // Settings that cannot load: every phase fails as `manage.py` does.
    let mut runner = p.runner("static", &[]);
    runner.env.retain(|(k, _)| k != "SECRET_KEY");
    let mut checks = p.checks(&runner, "mini.wsgi");
    let check = checks.phase("check").unwrap().ran;
    let own = p.manage(&runner, &["check", "--deploy"]);
    assert!(!check.ok);
    assert_eq!(check.status, own.status);
    assert_eq!(last_line(&check.stderr), "KeyError: 'SECRET_KEY'");
    assert_eq!(last_line(&check.stderr), last_line(&own.stderr));
    assert!(
        check.stderr.contains("mini/settings.py\", line 8"),
        "{}",
        check.stderr
    );
    assert!(!checks.phase("import").unwrap().ran.ok);
    assert!(!checks.phase("plan").unwrap().ran.ok);
}

#[test]
fn a_process_that_dies_is_reported_with_its_status_and_stderr() {
    let Some(p) = Project::new() else {
        return;
    };
    let runner = p.runner("static", &[("DIE_ON", "showmigrations")]);
    let mut checks = p.checks(&runner, "mini.wsgi");
    assert!(checks.phase("check").unwrap().ran.ok);
    assert!(checks.phase("import").unwrap().ran.ok);
    let err = checks.phase("plan").unwrap_err();
    assert!(err.contains("ended before `plan`"), "{err}");
    assert!(err.contains("exit status: 7"), "{err}");
    assert!(err.contains("dying in showmigrations"), "{err}");
    let err = checks.manage(&["collectstatic", "--noinput"]).unwrap_err();
    assert!(err.contains("ended before `collectstatic`"), "{err}");
    assert!(!p.release().join("static").exists());
}
