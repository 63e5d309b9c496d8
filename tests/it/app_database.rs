//! The app's own database settings: bakery v4 names its database in
//! `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `DB_HOST` and `DB_PORT`, and the
//! site's `.env` has no `DATABASE_URL`. The deploy, its pre-migrate
//! backup, `sum-backup` and `sum-restore` ask Django; the password stays
//! off disk; and when Django cannot be asked, `DATABASE_URL` stands in only
//! for the database the live release recorded. Real PostgreSQL, gunicorn
//! and Django (tests/it/common/deployfx.rs).

use std::path::Path;
use std::process::{Command, Output};

use crate::common;

use common::deployfx::{App, Fixture};
use sum::deploy::Options;

const SUM_BACKUP: &str = env!("CARGO_BIN_EXE_sum-backup");
const SUM_RESTORE: &str = env!("CARGO_BIN_EXE_sum-restore");

/// v3 and later compress their pages offline.
const BAKERY: &str = "[deploy]\nrelease = [\"python manage.py compress\"]\n";

fn run(bin: &str, fx: &Fixture, args: &[&str]) -> (Option<i32>, String) {
    let out: Output = Command::new(bin)
        .args(args)
        .env("SUM_ROOT", fx.root.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The fixture's `.env` with the database in the app's own variables
/// (and `extra` lines), without DATABASE_URL.
fn write_env(fx: &Fixture, extra: &[(&str, &str)], drop: &[&str]) {
    let mut env: Vec<(String, String)> = fx
        .env
        .iter()
        .filter(|(k, _)| k != "DATABASE_URL")
        .cloned()
        .collect();
    for (k, v) in [
        ("DB_NAME", "acme".to_string()),
        ("DB_USER", "acme".to_string()),
        ("DB_PASSWORD", "acme-pw".to_string()),
        ("DB_HOST", "127.0.0.1".to_string()),
        ("DB_PORT", fx.pg.port.to_string()),
    ] {
        env.push((k.into(), v));
    }
    env.retain(|(k, _)| !drop.contains(&k.as_str()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    fx.write_env(&env);
}

/// Every file under `dir` but the `.env` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let (p, t) = (e.path(), e.file_type().unwrap());
            if t.is_dir() && !p.ends_with("venvs") {
                stack.push(p);
            } else if t.is_file() && p.file_name().unwrap() != ".env" {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn a_site_without_database_url_is_deployed_backed_up_and_restored_through_djangos_settings() {
    let Some(fx) = Fixture::with_app(App::Bakery, "") else {
        return;
    };
    write_env(&fx, &[], &[]);
    let port = fx.pg.port;

    // Nothing is live to ask, and nothing else names the database.
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no release is live to ask Django which database the app uses")
            && out.contains("has no DATABASE_URL: deploy the site first"),
        "{out}"
    );

    // v2 reads DATABASE_URL; v4, deployed over it with the database in
    // DB_* only, adds a migration, so its pre-migrate backup is taken of
    // the database its own settings name. v4 compresses its pages offline.
    fx.write_env(&fx.env);
    let mut gunicorn = fx.gunicorn();
    let opts = |r: &str| Options {
        git_ref: Some(r.to_string()),
        no_restart: false,
    };
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v2"));
    assert_eq!(o.code, 0, "{log}");
    let toml = fx.root.path().join("etc/sum/sites/acme.toml");
    let mut site = std::fs::read_to_string(&toml).unwrap();
    site.push_str(BAKERY);
    std::fs::write(&toml, site).unwrap();
    write_env(&fx, &[], &[]);
    let (o, log) = fx.deploy(&mut gunicorn, &opts("v4"));
    println!("{log}");
    assert_eq!(o.code, 0, "{log}");
    let backup_step = log
        .lines()
        .find(|l| l.starts_with("    backup: "))
        .unwrap_or_else(|| panic!("no pre-migrate backup:\n{log}"));
    assert!(backup_step.contains("verified"), "{log}");
    assert!(
        log.contains("(no DATABASE_URL: PostgreSQL checked once Django names it)"),
        "{log}"
    );
    let named = format!("Django's database `acme` on 127.0.0.1:{port} as `acme`");
    assert!(log.contains(&named), "{log}");
    let live = fx.live().unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fx.home().join(format!("state/releases/{live}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["database"]["name"], "acme", "{record}");
    assert_eq!(
        record["database"]["options"]["sslmode"], "prefer",
        "{record}"
    );

    // sum-backup asks the live Django.
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "the site's database: Django's settings of release {live}: database `acme` on \
             127.0.0.1:{port} as `acme`"
        )),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");

    // A row written after the backup is gone after the restore.
    fx.sql(
        "INSERT INTO gallery_image (title, file, created) VALUES ('after-backup', 'x.txt', now())",
    );
    let (code, out) = run(
        SUM_RESTORE,
        &fx,
        &["acme", "latest", "--i-know-this-will-overwrite"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the site's database: Django's settings of release"),
        "{out}"
    );
    assert_eq!(
        fx.sql("SELECT count(*) FROM gallery_image WHERE title = 'after-backup'"),
        "0"
    );

    // The password is in the .env only: no record, log or manifest holds it.
    assert_eq!(
        files_holding(fx.root.path(), b"acme-pw"),
        Vec::<String>::new()
    );

    // A DATABASE_URL beside the app's settings that names another database:
    // the app's own is copied, and the operator is told.
    fx.pg.sql("postgres", "CREATE DATABASE hc_typo OWNER acme");
    let typo = format!("postgres://acme:acme-pw@127.0.0.1:{port}/hc_typo");
    write_env(&fx, &[("DATABASE_URL", &typo)], &[]);
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: DATABASE_URL in the .env names database `hc_typo`")
            && out.contains("this copies the app's"),
        "{out}"
    );
    assert!(
        !out.contains("SHRANK"),
        "the app's database was copied:\n{out}"
    );

    // Settings that no longer load (DB_PASSWORD removed): nothing is
    // copied unless DATABASE_URL names the database the release recorded.
    let dumps = || {
        std::fs::read_dir(fx.home().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql.gz"))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = dumps();
    write_env(&fx, &[], &["DB_PASSWORD"]);
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "could not ask the live release {live}'s Django which database the app uses"
        )) && out.contains("KeyError: 'DB_PASSWORD'")
            && out.contains("The .env has no DATABASE_URL either, so nothing was copied"),
        "{out}"
    );
    write_env(&fx, &[("DATABASE_URL", &typo)], &["DB_PASSWORD"]);
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("DATABASE_URL names another database than the database `acme`"),
        "{out}"
    );
    assert_eq!(dumps(), before, "nothing was published");
    let right = format!("postgres://acme:acme-pw@127.0.0.1:{port}/acme");
    write_env(&fx, &[("DATABASE_URL", &right)], &["DB_PASSWORD"]);
    let (code, out) = run(SUM_BACKUP, &fx, &["acme"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the site's database: DATABASE_URL in the .env, the database `acme`")
            && out.contains("warning: could not ask the live release"),
        "{out}"
    );
    // Retention may prune an older one: a new name is what counts.
    assert!(dumps().difference(&before).count() == 1, "{out}");
}
