//! `[deploy] release` commands in a real deploy: the example app, a real
//! PostgreSQL and gunicorn (tests/it/common/deployfx.rs).

use crate::common;

use common::deployfx::Fixture;
use sum::deploy::Options;

fn opts(r: &str) -> Options {
    Options {
        git_ref: Some(r.to_string()),
        no_restart: false,
    }
}

/// Each command is a step of its own, runs in the new release as the site
/// runs (the venv's python, the .env, STATIC_ROOT), after collectstatic and
/// before the migrations.
const RELEASE: &str = r#"[deploy]
release = [
    "python manage.py check --tag models",
    "printf '%s %s' \"$(command -v python)\" \"$PWD\" > \"$STATIC_ROOT/release-stamp.txt\"; ls \"$STATIC_ROOT/notes/site.css\"",
]
"#;

#[test]
fn release_commands_run_in_the_new_release_between_collectstatic_and_migrations() {
    let Some(fx) = Fixture::new(RELEASE) else {
        return;
    };
    let mut gunicorn = fx.gunicorn();
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    // The position of the line `==> NAME…`.
    let step = |name: &str| {
        log.find(&format!("==> {name}"))
            .unwrap_or_else(|| panic!("no step {name}:\n{log}"))
    };
    let check = step("release: python manage.py check --tag models");
    let stamp = step("release: printf");
    assert!(step("collectstatic\n") < check && check < stamp, "{log}");
    assert!(stamp < step("migrations\n"), "{log}");
    assert!(log.contains("System check identified no issues"), "{log}");
    // The venv's python, in the new release, with STATIC_ROOT as the units set it.
    let live = fx.live().unwrap();
    let written = std::fs::read_to_string(fx.home().join("static/release-stamp.txt")).unwrap();
    let release_dir = fx.home().join("releases").join(&live);
    assert!(written.contains("/bin/python "), "{written}");
    assert!(written.contains("venvs/"), "{written}");
    assert!(
        written
            .trim_end()
            .ends_with(&release_dir.display().to_string()),
        "{written} is not in {}",
        release_dir.display()
    );
    // Their durations are in the history with the other steps.
    let history = std::fs::read_to_string(fx.home().join("state/history.jsonl")).unwrap();
    assert!(
        history.contains("release: python manage.py check --tag models"),
        "{history}"
    );
}

#[test]
fn a_failing_release_command_fails_before_the_migrations_and_touches_nothing() {
    let Some(fx) = Fixture::new(
        "[deploy]\nrelease = [\"python -c 'import sys; print(\\\"compress: no template\\\", file=sys.stderr); sys.exit(3)'\"]\n",
    ) else {
        return;
    };
    let mut gunicorn = fx.gunicorn();
    // v1 goes live without release commands failing? It fails too: the
    // command fails for every release, before anything is live.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v2"));
    println!("{log}");
    assert_eq!(o.code, 1, "{log}");
    assert!(log.contains("release command `python -c"), "{log}");
    assert!(log.contains("failed (exit status: 3)"), "{log}");
    assert!(log.contains("app| compress: no template"), "{log}");
    assert!(
        !log.contains("==> migrate\n"),
        "migrate ran after a failed release command:\n{log}"
    );
    assert_eq!(fx.live(), None, "a release went live");
    // No migration was applied: the database is as it was.
    assert_eq!(
        fx.sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'django_migrations'"
        ),
        "0"
    );
}
