//! sum-deploy against a temporary root with a real PostgreSQL and Redis,
//! the example Django app in eight versions, pip from a wheelhouse and real
//! gunicorn on the site's socket (tests/it/common/deployfx.rs).

use crate::common;

use common::deployfx::{git, App, Fixture};
use sum::deploy::Options;
use sum::site_state::{self, ReleaseStatus};

fn opts(r: &str) -> Options {
    Options {
        git_ref: Some(r.to_string()),
        no_restart: false,
    }
}

fn releases(fx: &Fixture) -> Vec<String> {
    site_state::release_names(&fx.home().join("releases")).unwrap()
}

fn status_of(fx: &Fixture, release: &str) -> Option<ReleaseStatus> {
    site_state::load_release(&fx.home().join("state"), release).map(|i| i.status)
}

#[test]
fn a_site_through_five_versions_rollbacks_and_pruning() {
    // var/uploads is not in the release (created empty on first use);
    // README.md is (seeded from the first release).
    let Some(fx) =
        Fixture::new("[deploy]\nkeep_releases = 3\nshared = [\"var/uploads\", \"README.md\"]\n")
    else {
        return;
    };
    let mut gunicorn = fx.gunicorn();

    // First deploy of v1: builds the venv, migrates, serves.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    println!("{log}");
    assert_eq!(o.code, 0, "first deploy failed:\n{log}");
    for step in [
        "preflight",
        "bootstrap",
        "fetch",
        "release",
        "venv",
        "check",
        "import",
        "paths",
        "collectstatic",
        "migrations",
        "backup",
        "migrate",
        "swap",
        "restart",
        "smoke",
    ] {
        assert!(
            log.contains(&format!("==> {step}\n")),
            "step {step} not logged:\n{log}"
        );
    }
    assert!(log.contains("built venvs/"), "{log}");
    assert_eq!(fx.serving_version(), "v1");
    let v1 = fx.live().unwrap();
    assert_eq!(status_of(&fx, &v1), Some(ReleaseStatus::Good));
    assert!(
        fx.home().join("static/notes/site.css").is_file(),
        "collectstatic put nothing in static/"
    );
    assert!(log.contains("sitemap: /sitemap.xml answered 200"), "{log}");
    // [deploy] shared: links into shared/, created or seeded on first use.
    assert!(
        log.contains("shared: var/uploads -> shared/var/uploads (created empty)")
            && log.contains("shared: README.md -> shared/README.md (seeded from this release)"),
        "{log}"
    );
    let release_dir = fx.home().join("releases").join(&v1);
    assert_eq!(
        std::fs::read_link(release_dir.join("var/uploads")).unwrap(),
        fx.home().join("shared/var/uploads")
    );
    std::fs::write(release_dir.join("var/uploads/photo.jpg"), b"uploaded").unwrap();
    let readme = std::fs::read(fx.home().join("shared/README.md")).unwrap();
    assert!(!readme.is_empty());
    let first = o.record;
    assert_eq!(first.outcome, "ok");
    assert_eq!(first.venv_reused, Some(false));

    // The same ref again: a new release, the venv reused.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    println!("{log}");
    assert_eq!(o.code, 0, "redeploy failed:\n{log}");
    assert_eq!(o.record.venv_reused, Some(true), "{log}");
    assert!(log.contains("reused venvs/"), "{log}");
    assert_ne!(fx.live().unwrap(), v1, "a redeploy makes a new release");
    assert_eq!(fx.serving_version(), "v1");

    // v2 by branch name: its migration is applied after a verified backup.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("main"));
    println!("{log}");
    assert_eq!(o.code, 0, "v2 failed:\n{log}");
    assert_eq!(o.record.migrations_applied, vec!["notes.0002_note_pinned"]);
    let backup = o.record.backup.clone().expect("a pre-migrate backup");
    assert!(
        std::path::Path::new(&backup).is_file()
            && std::path::Path::new(&format!("{backup}.json")).is_file(),
        "{backup} and its manifest"
    );
    assert_eq!(fx.serving_version(), "v2");
    assert_eq!(
        fx.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes_note' AND column_name = 'pinned'"),
        "1"
    );
    let v2 = fx.live().unwrap();
    fx.sql(
        "INSERT INTO notes_note (title, body, created, pinned) VALUES ('kept', '', now(), true)",
    );

    // v3 fails to import: exit 1 before the swap, v2 untouched.
    let before = common::snapshot(&fx.home().join("static"));
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v3"));
    println!("{log}");
    assert_eq!(o.code, 1, "v3 must fail before the swap:\n{log}");
    assert_eq!(o.record.failed_step.as_deref(), Some("import"));
    let err = o.record.error.unwrap();
    assert!(
        err.contains("no_such_module") && err.contains("production is untouched"),
        "{err}"
    );
    // The traceback is the app's: marked, in the summary as in the error.
    let said = "\n    app| ModuleNotFoundError: No module named 'acme.no_such_module'";
    assert!(err.contains(said) && log.contains(said), "{log}");
    assert_eq!(fx.live().unwrap(), v2);
    assert_eq!(fx.serving_version(), "v2");
    assert_eq!(before, common::snapshot(&fx.home().join("static")));
    let v3 = releases(&fx)[0].clone();
    assert_eq!(status_of(&fx, &v3), Some(ReleaseStatus::Failed));

    // v4 answers 503 after the swap: rolled back, exit 4, v2 serving.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v4"));
    println!("{log}");
    assert_eq!(o.code, 4, "v4 must roll back:\n{log}");
    assert_eq!(o.record.outcome, "rolled-back");
    let err = o.record.error.unwrap();
    assert!(
        err.contains("503") && err.contains(&format!("rolled back to {v2}")),
        "{err}"
    );
    assert!(log.contains("==> rollback"), "{log}");
    assert_eq!(fx.live().unwrap(), v2);
    assert_eq!(fx.serving_version(), "v2");

    // v5's migration fails halfway: exit 1, the database unchanged.
    let tables = fx.sql("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'");
    let applied = fx.sql("SELECT count(*) FROM django_migrations");
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v5"));
    println!("{log}");
    assert_eq!(o.code, 1, "v5 must fail:\n{log}");
    assert_eq!(o.record.failed_step.as_deref(), Some("migrate"));
    assert!(o.record.error.unwrap().contains("division by zero"));
    assert!(
        log.contains("\n    app| django.db.utils.DataError: division by zero\n"),
        "{log}"
    );
    assert_eq!(tables, fx.sql("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'"));
    assert_eq!(applied, fx.sql("SELECT count(*) FROM django_migrations"));
    assert_eq!(fx.live().unwrap(), v2);
    assert_eq!(fx.serving_version(), "v2");
    assert_eq!(fx.sql("SELECT title FROM notes_note WHERE pinned"), "kept");

    // --no-restart: built and checked, not live.
    let (o, log) = fx.deploy(
        &mut gunicorn,
        &Options {
            git_ref: Some("v1".into()),
            no_restart: true,
        },
    );
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(o.record.outcome, "prepared");
    assert!(!log.contains("==> swap"), "{log}");
    assert_eq!(fx.live().unwrap(), v2);

    // A full sha works as a ref.
    let sha = git(&fx.repo, &["rev-parse", "v2^{commit}"]);
    let (o, log) = fx.deploy(&mut gunicorn, &opts(&sha));
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    assert_eq!(o.record.sha.as_deref(), Some(sha.as_str()));
    assert_eq!(fx.serving_version(), "v2");

    // Pruning: keep_releases = 3 good ones plus the newest failed one; the
    // live release always stays; venvs of pruned releases go.
    let left = releases(&fx);
    let live = fx.live().unwrap();
    assert!(left.contains(&live));
    let good: Vec<_> = left
        .iter()
        .filter(|r| status_of(&fx, r) == Some(ReleaseStatus::Good))
        .collect();
    assert_eq!(good.len(), 3, "{left:?}");
    let bad: Vec<_> = left
        .iter()
        .filter(|r| status_of(&fx, r) != Some(ReleaseStatus::Good))
        .collect();
    assert_eq!(
        bad.len(),
        1,
        "one failed or unfinished release is kept: {left:?}"
    );
    assert!(
        !left.contains(&v1),
        "the oldest release is pruned: {left:?}"
    );

    // Rollback --to the v1 release: no rebuild, a warning about the
    // migration applied since, v1 serving.
    let v1_again = left
        .iter()
        .find(|r| {
            site_state::load_release(&fx.home().join("state"), r)
                .unwrap()
                .git_ref
                == "v1"
                && status_of(&fx, r) == Some(ReleaseStatus::Good)
        })
        .expect("the v1 redeploy is kept")
        .clone();
    let (code, log) = fx.rollback(&mut gunicorn, Some(&v1_again[..22]));
    println!("{log}");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("predates migrations applied since: notes.0002_note_pinned"),
        "{log}"
    );
    assert_eq!(fx.live().unwrap(), v1_again);
    assert_eq!(fx.serving_version(), "v1");
    // Without --to there is no older good release left than this one.
    let (code, log) = fx.rollback(&mut gunicorn, None);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("no earlier release"), "{log}");
    assert_eq!(fx.serving_version(), "v1");
    // Forward again with --to.
    let (code, log) = fx.rollback(&mut gunicorn, Some(&live));
    assert_eq!(code, 0, "{log}");
    assert_eq!(fx.serving_version(), "v2");

    // Every deploy and rollback is in the history, with its outcome.
    let hist = site_state::history(&fx.home().join("state")).unwrap();
    let outcomes: Vec<String> = hist
        .iter()
        .map(|r| format!("{} {}", r.action, r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "deploy ok",
            "deploy ok",
            "deploy ok",
            "deploy failed",
            "deploy rolled-back",
            "deploy failed",
            "deploy prepared",
            "deploy ok",
            "rollback ok",
            "rollback failed",
            "rollback ok"
        ]
    );
    assert!(hist.iter().all(|r| !r.steps.is_empty()));

    // Shared content survived every deploy, rollback and pruning, and the
    // live release reads it through its link.
    let live = fx.home().join("releases").join(fx.live().unwrap());
    assert_eq!(
        std::fs::read(live.join("var/uploads/photo.jpg")).unwrap(),
        b"uploaded"
    );
    assert_eq!(std::fs::read(live.join("README.md")).unwrap(), readme);
}

/// examples/bakery, shaped like a Wagtail project: STATIC_ROOT and
/// MEDIA_ROOT hard-coded inside the project (so inside the release),
/// DJANGO_-prefixed variables, no gunicorn in its requirements, no health
/// view. Static files are per release and follow a rollback; an upload
/// made through the app survives a new release and a rollback.
#[test]
fn an_app_with_hard_coded_static_and_media_paths() {
    let Some(fx) = Fixture::with_app(App::Bakery, "") else {
        return;
    };
    let mut gunicorn = fx.gunicorn();
    let home = fx.home();
    let served = || sum::render::caddy::Served::from_disk(&fx.sum_root(), &fx.site());
    let css = |release: &str| {
        std::fs::read_to_string(
            home.join("releases")
                .join(release)
                .join("collect_static/css/site.css"),
        )
        .unwrap()
    };

    let (o, log) = fx.deploy(&mut gunicorn, &opts("v1"));
    println!("{log}");
    assert_eq!(o.code, 0, "bakery v1 failed:\n{log}");
    assert!(
        log.contains("requirements.txt does not name gunicorn: adding it to the venv"),
        "{log}"
    );
    assert!(
        log.contains("STATIC_ROOT collect_static lies inside the release")
            && log.contains(&format!(
                "MEDIA_ROOT media lies inside the release: linked to {}",
                home.join("media").display()
            ))
            && log.contains("media/ was empty: seeded with the 1 entry of the release's media"),
        "{log}"
    );
    let v1 = fx.live().unwrap();
    let info = site_state::load_release(&home.join("state"), &v1).unwrap();
    let v1_static = home.join("releases").join(&v1).join("collect_static");
    assert_eq!(info.static_root, Some(v1_static.display().to_string()));
    assert_eq!(
        info.media_root,
        Some(home.join("media").display().to_string())
    );
    assert!(css(&v1).starts_with("/* bakery v1 */"), "{}", css(&v1));
    // collectstatic wrote into the release, not into the default static/.
    assert!(!home.join("static/css").exists());
    assert_eq!(
        std::fs::read_link(home.join("releases").join(&v1).join("media")).unwrap(),
        home.join("media")
    );
    let s = served();
    assert_eq!(
        s.static_dir,
        format!("/srv/sum/acme/releases/{v1}/collect_static")
    );
    assert_eq!(s.media_dir, "/srv/sum/acme/media");
    let page = fx.get("/");
    assert!(
        page.status == 200 && page.body.contains("v1"),
        "{}",
        page.body
    );

    // An upload through the running app lands in the persistent media/.
    let (status, body) = fx.upload("/upload/", "cake.txt", b"a cake\n");
    assert_eq!(status, 201, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = answer["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("original_images/cake"), "{name}");
    assert_eq!(answer["url"].as_str().unwrap(), format!("/media/{name}"));
    let uploaded = home.join("media").join(&name);
    assert_eq!(std::fs::read(&uploaded).unwrap(), b"a cake\n");

    // v2: a new release with its own static; the upload is still there.
    let (o, log) = fx.deploy(&mut gunicorn, &opts("main"));
    println!("{log}");
    assert_eq!(o.code, 0, "bakery v2 failed:\n{log}");
    assert!(
        log.contains("the release's own media (1 entry) is not copied: media/ already has files"),
        "{log}"
    );
    let v2 = fx.live().unwrap();
    assert_ne!(v1, v2);
    assert!(css(&v2).starts_with("/* bakery v2 */"), "{}", css(&v2));
    assert!(
        css(&v1).starts_with("/* bakery v1 */"),
        "v2 changed v1's static"
    );
    assert_eq!(
        served().static_dir,
        format!("/srv/sum/acme/releases/{v2}/collect_static")
    );
    assert!(fx.get("/").body.contains("v2"));
    assert_eq!(
        std::fs::read(home.join("releases").join(&v2).join("media").join(&name)).unwrap(),
        b"a cake\n"
    );

    // A rollback serves v1's static again; the upload is still there.
    let (code, log) = fx.rollback(&mut gunicorn, None);
    println!("{log}");
    assert_eq!(code, 0, "{log}");
    assert_eq!(fx.live().unwrap(), v1);
    assert_eq!(
        served().static_dir,
        format!("/srv/sum/acme/releases/{v1}/collect_static")
    );
    assert_eq!(served().media_dir, "/srv/sum/acme/media");
    assert!(fx.get("/").body.contains("v1"));
    assert_eq!(std::fs::read(&uploaded).unwrap(), b"a cake\n");
    assert_eq!(
        std::fs::read_to_string(home.join("media/original_images/welcome.txt")).unwrap(),
        "welcome to the bakery\n"
    );
}
