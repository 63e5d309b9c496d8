//! `sumctl new` provisioning against a real PostgreSQL (an initdb cluster of
//! the tests' own, reached as its superuser through libpq's PG* variables,
//! which is what `sumctl new` uses under a test root instead of
//! `runuser -u postgres -- psql`) and a real redis-server started with the
//! configuration `sumctl new` wrote.

use crate::common::{self, pg::Pg, redis::free_port};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sumctl");

const ARGS: [&str; 8] = [
    "new",
    "acme-shop",
    "--domain",
    "acme.example.com",
    "--git",
    "https://git.example.com/acme.git",
    "--alias",
    "www.acme.example.com",
];

fn sumctl(root: &Path, pg: &Pg, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SUM_ROOT", root)
        .envs(pg.admin_env())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn env_value(root: &Path, site: &str, key: &str) -> Option<String> {
    let env = std::fs::read_to_string(root.join(format!("srv/sum/{site}/.env"))).ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// psql with a site's URL, the password in the environment.
fn psql_url(url: &str, sql: &str) -> Output {
    let conn = sum::probe::pgconn::PgConn::parse(url).unwrap();
    conn.apply(Command::new("psql").args(["-X", "-A", "-t", "-c", sql]))
        .output()
        .unwrap()
}

#[test]
fn new_creates_the_role_and_database_and_a_rerun_changes_nothing() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    let out = sumctl(root.path(), &pg, &ARGS);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("created PostgreSQL role `acme_shop`"),
        "{said}"
    );
    let site_file = root.path().join("etc/sum/sites/acme-shop.toml");
    let env_file = root.path().join("srv/sum/acme-shop/.env");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site_file), 0o644);
    assert_eq!(mode(&env_file), 0o640);
    let secret = env_value(root.path(), "acme-shop", "SECRET_KEY").unwrap();
    assert_eq!(secret.len(), 50);
    assert_eq!(
        env_value(root.path(), "acme-shop", "ALLOWED_HOSTS").as_deref(),
        Some("acme.example.com,www.acme.example.com")
    );

    // The URL in the .env logs in over TCP (SCRAM) as the site's role, into
    // its own database, and the role is nothing more.
    let url = env_value(root.path(), "acme-shop", "DATABASE_URL").unwrap();
    assert!(url.starts_with("postgres://acme_shop:"), "{url}");
    let who = psql_url(&url, "SELECT current_user || ' ' || current_database()");
    assert_eq!(
        text(&who.stdout).trim(),
        "acme_shop acme_shop",
        "{}",
        text(&who.stderr)
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolpassword LIKE 'SCRAM-SHA-256$%' \
             FROM pg_authid WHERE rolname = 'acme_shop'"
        )
        .trim(),
        "f|f|f|t"
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'acme_shop'"
        )
        .trim(),
        "acme_shop"
    );
    // No Redis template under this root: said so, and no REDIS_URL.
    assert!(said.contains("no Redis on this host"), "{said}");
    assert_eq!(env_value(root.path(), "acme-shop", "REDIS_URL"), None);

    // The next steps are the actual commands.
    let next: Vec<&str> = said
        .split("Next:\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(
        next,
        [
            format!("$EDITOR {}", site_file.display()).as_str(),
            "sumctl check",
            "systemctl daemon-reload",
            "systemctl start sum-deploy@acme-shop",
            "sumctl manage acme-shop createsuperuser",
            "sumctl status acme-shop"
        ],
        "{said}"
    );
    let check = Command::new(BIN)
        .arg("check")
        .env("SUM_ROOT", root.path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));

    // Again, with or without the arguments: nothing changes, it says so,
    // and the password is the same (the old URL still logs in).
    let before = common::snapshot(root.path());
    for args in [&ARGS[..], &ARGS[..2]] {
        let out = sumctl(root.path(), &pg, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(said.contains("nothing to do"), "{said}");
        assert!(said.contains("never changes a password"), "{said}");
        assert_eq!(common::snapshot(root.path()), before);
    }
    let who = psql_url(&url, "SELECT 1");
    assert!(who.status.success(), "{}", text(&who.stderr));
}

#[test]
fn another_sites_role_cannot_connect_to_the_database() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    for (site, host) in [("aa", "aa.example.com"), ("bb", "bb.example.com")] {
        let out = sumctl(
            root.path(),
            &pg,
            &[
                "new",
                site,
                "--domain",
                host,
                "--git",
                "https://x.example/a.git",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let aa = env_value(root.path(), "aa", "DATABASE_URL").unwrap();
    let into_bb = format!("{}/bb", aa.strip_suffix("/aa").unwrap());
    let out = psql_url(&into_bb, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("permission denied for database \"bb\""),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(aa, env_value(root.path(), "bb", "DATABASE_URL").unwrap());
}

/// Each refusal: exit 1, a message that says what to do, nothing written
/// and nothing created in PostgreSQL.
fn refused(root: &Path, pg: &Pg, args: &[&str], says: &[&str]) {
    let roles = |pg: &Pg| {
        pg.sql("postgres", "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname !~ '^pg_'")
    };
    let dbs = |pg: &Pg| {
        pg.sql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        )
    };
    let (roles_before, dbs_before) = (roles(pg), dbs(pg));
    let before = common::snapshot(root);
    let out = sumctl(root, pg, args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for s in says {
        assert!(err.contains(s), "missing {s:?} in:\n{err}");
    }
    assert!(!err.contains("pw-"), "a password in the message: {err}");
    assert_eq!(common::snapshot(root), before, "{args:?} wrote files");
    assert_eq!(roles(pg), roles_before, "{args:?} changed roles");
    assert_eq!(dbs(pg), dbs_before, "{args:?} changed databases");
}

#[test]
fn new_refuses_clearly_and_creates_nothing() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();

    // A role of the site's name that the .env does not name.
    pg.sql("postgres", "CREATE ROLE acme_shop LOGIN");
    refused(
        root.path(),
        &pg,
        &ARGS,
        &[
            "role `acme_shop` exists already",
            "belongs to someone else",
            "--database-url",
        ],
    );
    pg.sql("postgres", "DROP ROLE acme_shop");

    // A database of the site's name owned by another role.
    pg.sql("postgres", "CREATE ROLE other LOGIN");
    pg.sql("postgres", "CREATE DATABASE acme_shop OWNER other");
    refused(
        root.path(),
        &pg,
        &ARGS,
        &["database `acme_shop` exists already and belongs to role `other`"],
    );
    pg.sql("postgres", "DROP DATABASE acme_shop");

    // An unreachable --database-url: nothing is created either.
    let dead = format!("postgres://x:pw-secret@127.0.0.1:{}/x", free_port());
    let mut args = ARGS.to_vec();
    args.extend(["--database-url", &dead]);
    refused(
        root.path(),
        &pg,
        &args,
        &[
            "--database-url (database `x` on 127.0.0.1",
            "cannot connect",
        ],
    );

    // PostgreSQL not running.
    pg.stop();
    let out = sumctl(root.path(), &pg, &ARGS);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PostgreSQL does not answer on this host"),
        "{err}"
    );
    assert!(err.contains("systemctl start postgresql"), "{err}");
    assert!(err.contains("--database-url"), "{err}");
    assert!(
        common::snapshot(root.path()).is_empty(),
        "files were written"
    );
}

#[test]
fn database_url_uses_an_existing_database_and_creates_nothing() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.create_site_db("managed", "pw-managed", "managed");
    let root = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--database-url", &url]);
    let out = sumctl(root.path(), &pg, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        env_value(root.path(), "acme-shop", "DATABASE_URL"),
        Some(url.clone())
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'acme_shop'"
        )
        .trim(),
        "0"
    );
    // Another URL later is refused: sumctl new never changes it.
    let other = pg.create_site_db("other", "pw-other", "other");
    let mut args = ARGS[..2].to_vec();
    args.extend(["--database-url", &other]);
    let out = sumctl(root.path(), &pg, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already has a different DATABASE_URL"));
    assert_eq!(
        env_value(root.path(), "acme-shop", "DATABASE_URL"),
        Some(url)
    );
}

#[test]
fn a_failure_after_the_database_was_created_removes_it_again() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    // Redis is installed, but its configuration cannot be written (its
    // directory is a file): the step after the database fails.
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("redis-server@.service"), "").unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/redis"), "not a directory").unwrap();
    let out = sumctl(root.path(), &pg, &ARGS);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("redis-sum-acme-shop.conf"), "{err}");
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'acme_shop') + \
             (SELECT count(*) FROM pg_database WHERE datname = 'acme_shop')"
        )
        .trim(),
        "0",
        "the role or database was left behind"
    );
    assert!(!root.path().join("etc/sum/sites/acme-shop.toml").exists());
    assert!(!root.path().join("srv/sum/acme-shop/.env").exists());
}

#[test]
fn the_sites_redis_answers_its_url_only_with_its_password() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("redis-server@.service"), "").unwrap();
    let out = sumctl(root.path(), &pg, &ARGS);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("created Redis redis-server@sum-acme-shop.service"),
        "{said}"
    );
    let conf = root.path().join("etc/redis/redis-sum-acme-shop.conf");
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "conf readable by others"
    );
    let url = env_value(root.path(), "acme-shop", "REDIS_URL").unwrap();

    // The real redis-server with that configuration; only what a test
    // cannot use is overridden (data and pid file paths, supervision).
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new("redis-server")
        .arg(&conf)
        .args(["--dir", &data.path().display().to_string()])
        .args(["--pidfile", &data.path().join("pid").display().to_string()])
        .args(["--daemonize", "no", "--supervised", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ping = |u: &str| sum::probe::redis::ping(u, std::time::Duration::from_secs(2));
    let result = (
        ping(&url),
        ping(&format!("{url}/0")),
        ping(&format!("redis://127.0.0.1:{port}/0")),
        ping(&format!("redis://:wrong@127.0.0.1:{port}")),
    );
    let maxmemory = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a"])
        .arg(url.split(['@', ':']).nth(2).unwrap())
        .args(["config", "get", "maxmemory"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result.0, Ok(()), "{url}");
    assert_eq!(result.1, Ok(()), "with /0 appended");
    assert!(result.2.is_err(), "answered without a password");
    assert!(result.3.is_err(), "answered a wrong password");
    assert!(
        text(&maxmemory.stdout).contains(&(128u64 << 20).to_string()),
        "{}",
        text(&maxmemory.stdout)
    );

    // A rerun keeps it; a .env that lost its REDIS_URL gets the same one back.
    let env_file = root.path().join("srv/sum/acme-shop/.env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    std::fs::write(&env_file, env.replace(&format!("REDIS_URL={url}\n"), "")).unwrap();
    let out = sumctl(root.path(), &pg, &ARGS[..2]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(env_value(root.path(), "acme-shop", "REDIS_URL"), Some(url));
}

#[test]
fn remove_keeps_the_data_and_purge_deletes_what_new_made() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("redis-server@.service"), "").unwrap();
    let out = sumctl(root.path(), &pg, &ARGS);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A rehearsal database the site's role owns (sum-restore --into).
    pg.sql("postgres", "CREATE DATABASE rehearsal OWNER acme_shop");
    let home = root.path().join("srv/sum/acme-shop");
    let conf = root.path().join("etc/redis/redis-sum-acme-shop.conf");
    let count = |pg: &Pg| {
        pg.sql(
            "postgres",
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'acme_shop') + \
             (SELECT count(*) FROM pg_database WHERE datname IN ('acme_shop', 'rehearsal'))",
        )
        .trim()
        .to_string()
    };

    // Busy: a deploy holds the lock; nothing is removed.
    std::fs::create_dir_all(home.join("state")).unwrap();
    let held =
        sum::site_state::lock::acquire(&home.join("state/lock"), "sum-deploy acme-shop", "now")
            .unwrap();
    let before = common::snapshot(root.path());
    let out = sumctl(root.path(), &pg, &["remove", "acme-shop"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("sum-deploy acme-shop"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(common::snapshot(root.path()), before);
    drop(held);

    // node_exporter's files: the site's go with it, another site's stay.
    let metrics = root.path().join("var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    for f in ["sum-acme-shop-backup.prom", "sum-acme-backup.prom"] {
        std::fs::write(metrics.join(f), "sum_backup_last_success{site=\"x\"} 1\n").unwrap();
    }

    // Without --purge: the site file goes, everything else stays and is named.
    let out = sumctl(root.path(), &pg, &["remove", "acme-shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("sum-acme-shop-backup.prom"), "{said}");
    assert!(!metrics.join("sum-acme-shop-backup.prom").exists());
    assert!(metrics.join("sum-acme-backup.prom").exists());
    assert!(
        said.contains("Kept (nothing of the data was deleted)"),
        "{said}"
    );
    assert!(
        said.contains("sumctl remove acme-shop --purge --i-know-this-deletes-data"),
        "{said}"
    );
    assert!(!root.path().join("etc/sum/sites/acme-shop.toml").exists());
    assert!(home.join(".env").exists() && conf.exists());
    assert_eq!(count(&pg), "3");

    // --purge needs its confirmation.
    let before = common::snapshot(root.path());
    let out = sumctl(root.path(), &pg, &["remove", "acme-shop", "--purge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--i-know-this-deletes-data"));
    assert_eq!(common::snapshot(root.path()), before);
    assert_eq!(count(&pg), "3");

    let out = sumctl(
        root.path(),
        &pg,
        &[
            "remove",
            "acme-shop",
            "--purge",
            "--i-know-this-deletes-data",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rehearsal"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(count(&pg), "0", "the role or a database is left");
    assert!(!home.exists() && !conf.exists());
    let out = sumctl(root.path(), &pg, &["remove", "acme-shop"]);
    assert_eq!(out.status.code(), Some(2), "an unknown site");
}

#[test]
fn purge_never_drops_a_database_it_did_not_make() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.create_site_db("managed", "pw-managed", "managed");
    let root = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--database-url", &url]);
    let out = sumctl(root.path(), &pg, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = sumctl(
        root.path(),
        &pg,
        &[
            "remove",
            "acme-shop",
            "--purge",
            "--i-know-this-deletes-data",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("kept the database"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'managed'"
        )
        .trim(),
        "1"
    );
}

/// A new server with the site's saved `.env` (the disaster case): `sumctl
/// new` makes the role, database and Redis the `.env` names, with its
/// passwords, and leaves the `.env` as it is.
#[test]
fn on_a_new_server_new_makes_what_the_saved_env_names_with_its_passwords() {
    let Some(pg) = Pg::start() else { return };
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("redis-server@.service"), "").unwrap();
    let out = sumctl(root.path(), &pg, &ARGS);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let env_path = root.path().join("srv/sum/acme-shop/.env");
    let saved = std::fs::read(&env_path).unwrap();
    let url = env_value(root.path(), "acme-shop", "DATABASE_URL").unwrap();
    let redis_url = env_value(root.path(), "acme-shop", "REDIS_URL").unwrap();
    let conf = root.path().join("etc/redis/redis-sum-acme-shop.conf");
    let saved_conf = std::fs::read_to_string(&conf).unwrap();
    // The server is lost: no role, no database, no Redis configuration.
    pg.sql("postgres", "DROP DATABASE acme_shop");
    pg.sql("postgres", "DROP ROLE acme_shop");
    std::fs::remove_file(&conf).unwrap();
    assert!(!psql_url(&url, "SELECT 1").status.success());

    let out = sumctl(root.path(), &pg, &["new", "acme-shop"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(
        said.contains("created PostgreSQL role `acme_shop` and database `acme_shop` as the .env's DATABASE_URL names them, with its password")
            && said.contains("created Redis redis-server@sum-acme-shop.service on 127.0.0.1:")
            && !said.contains("nothing to do"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&env_path).unwrap(),
        saved,
        "the .env is as it was"
    );
    let who = psql_url(&url, "SELECT current_user || ' ' || current_database()");
    assert_eq!(
        text(&who.stdout).trim(),
        "acme_shop acme_shop",
        "{}",
        text(&who.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        saved_conf,
        "the Redis configuration names the same port and password"
    );
    assert!(redis_url.starts_with("redis://:"));
    // And a rerun has nothing to do.
    let out = sumctl(root.path(), &pg, &["new", "acme-shop"]);
    assert!(
        text(&out.stdout).contains("nothing to do"),
        "{}",
        text(&out.stdout)
    );
}
