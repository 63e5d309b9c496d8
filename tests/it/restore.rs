//! sum-restore against a real PostgreSQL: nothing of a newer schema
//! survives, a failed load changes nothing, bad files are refused before the
//! database is touched, and rehearsals leave the live database alone.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::pg::Pg;

struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn backups(&self) -> PathBuf {
        self.root.path().join("srv/sum/acme/backups")
    }
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("SUM_ROOT", self.root.path())
            .output()
            .unwrap()
    }
    fn backup(&self) -> String {
        let out = self.run(env!("CARGO_BIN_EXE_sum-backup"), &["acme"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Vec<String> = std::fs::read_dir(self.backups())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql.gz"))
            .collect();
        v.sort();
        v.pop().unwrap()
    }
    fn restore(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_sum-restore"), args)
    }
    /// sum-restore with libpq's environment for a superuser: under a test
    /// root, how it reaches "this host's PostgreSQL".
    fn restore_with_admin(&self, args: &[&str], admin: &[(&str, String)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sum-restore"))
            .args(args)
            .env("SUM_ROOT", self.root.path())
            .envs(admin.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }
    fn count_files(&self) -> usize {
        std::fs::read_dir(self.backups()).unwrap().count()
    }
}

fn setup(pg: &Pg) -> Site {
    let url = pg.create_site_db("acme", "pw-acme", "acme");
    pg.sql(
        "acme",
        "SET ROLE acme;
         CREATE TABLE notes (id serial PRIMARY KEY, title text NOT NULL, body bytea);
         INSERT INTO notes (title, body) SELECT 'n' || i || ' ✓', decode(md5(i::text), 'hex') FROM generate_series(1, 3000) i;",
    );
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let env = root.path().join("srv/sum/acme/.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    std::fs::write(&env, format!("DATABASE_URL={url}\n")).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).unwrap();
    Site { root }
}

fn state(pg: &Pg, db: &str) -> String {
    pg.sql(
        db,
        "SELECT (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public')
             || ' ' || count(*) || ' ' || md5(string_agg(id || title || encode(body, 'hex'), ',' ORDER BY id))
         FROM notes",
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn refuses_without_the_flag() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let metrics = root.path().join("var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sum-restore"))
        .args(["acme", "latest"])
        .env("SUM_ROOT", root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Refused before it began: no restore to report.
    assert_eq!(std::fs::read_dir(&metrics).unwrap().count(), 0);
    assert!(
        text(&out.stderr).contains("--i-know-this-will-overwrite"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn nothing_of_a_newer_schema_survives_and_deleted_rows_come_back() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    let before = state(&pg, "acme");
    let backup = site.backup();
    pg.sql(
        "acme",
        "SET ROLE acme; CREATE TABLE newer (x int); ALTER TABLE notes ADD COLUMN extra int;
         DELETE FROM notes WHERE id % 2 = 0; CREATE SEQUENCE newer_seq; CREATE VIEW v AS SELECT 1;",
    );
    assert_ne!(state(&pg, "acme"), before);

    let out = site.restore(&["acme", "latest", "--i-know-this-will-overwrite"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!(
            "restored {}",
            site.backups().join(&backup).display()
        )),
        "{report}"
    );
    assert!(
        report.contains("the database as it was before is in"),
        "{report}"
    );
    assert_eq!(state(&pg, "acme"), before);
    assert_eq!(
        pg.sql(
            "acme",
            "SELECT count(*) FROM pg_class WHERE relname IN ('newer', 'newer_seq', 'v')"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        pg.sql(
            "acme",
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'extra'"
        )
        .trim(),
        "0"
    );
    // The sequence continues after the restored rows.
    assert_eq!(
        pg.sql("acme", "SELECT nextval('notes_id_seq')").trim(),
        "3001"
    );
    // The safety backup holds the newer state and is verified.
    let listed = site.run(env!("CARGO_BIN_EXE_sum-backup"), &["acme", "--list"]);
    assert_eq!(
        text(&listed.stdout).matches("verified").count(),
        2,
        "{}",
        text(&listed.stdout)
    );
    assert!(
        !site.root.path().join("srv/sum/acme/maintenance").exists(),
        "the maintenance flag was left behind"
    );
}

#[test]
fn a_load_that_fails_halfway_leaves_the_database_as_it_was() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    let backup = site.backup();
    pg.sql(
        "acme",
        "SET ROLE acme; CREATE TABLE newer (x int); DELETE FROM notes WHERE id > 100;",
    );
    let live = state(&pg, "acme");

    // The same dump with a failing statement after the table was created.
    let src = site.backups().join(&backup);
    let bad = site.backups().join("acme-20240101T000000Z.sql.gz");
    let sh = format!(
        "gunzip -c {} | awk '{{print}} /^COPY public.notes/ && !done {{getline; print; print \"\\\\.\"; print \"SELECT 1/0;\"; done=1}}' | gzip > {}",
        src.display(),
        bad.display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&sh)
        .status()
        .unwrap()
        .success());
    let out = site.restore(&[
        "acme",
        &bad.to_string_lossy(),
        "--i-know-this-will-overwrite",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("rolled back") && err.contains("database is as it was"),
        "{err}"
    );
    assert_eq!(
        state(&pg, "acme"),
        live,
        "the failed load changed the database"
    );
}

#[test]
fn damaged_files_are_refused_before_anything_is_touched() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    let backup = site.backup();
    let live = state(&pg, "acme");
    let files = site.count_files();
    let src = std::fs::read(site.backups().join(&backup)).unwrap();
    // Truncated, and a flipped byte under the real name (its manifest then disagrees).
    let truncated = site.backups().join("truncated.sql.gz");
    std::fs::write(&truncated, &src[..src.len() * 2 / 3]).unwrap();
    let mut flipped = src.clone();
    let n = flipped.len() - 20;
    flipped[n] ^= 0x55;
    std::fs::write(site.backups().join(&backup), &flipped).unwrap();
    for arg in [truncated.to_string_lossy().into_owned(), backup.clone()] {
        let out = site.restore(&["acme", &arg, "--i-know-this-will-overwrite"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("refusing to restore"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        site.count_files(),
        files + 1,
        "a safety backup was taken although the file was refused"
    );
    assert_eq!(state(&pg, "acme"), live);
}

#[test]
fn a_rehearsal_restores_into_another_database_only() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    let backup_state = state(&pg, "acme");
    site.backup();
    pg.sql("acme", "SET ROLE acme; DELETE FROM notes WHERE id < 10;");
    let live = state(&pg, "acme");

    // No superuser answers (a server elsewhere) and the site's user has no
    // CREATEDB: the message says what to create.
    let metrics = site.root.path().join("var/lib/prometheus/node-exporter");
    std::fs::create_dir_all(&metrics).unwrap();
    let rehearsal = metrics.join("sum-acme-rehearsal.prom");
    let nobody = [("PGHOST", "/nonexistent".to_string())];
    let out = site.restore_with_admin(&["acme", "latest", "--into", "rehearsal"], &nobody);
    assert_eq!(out.status.code(), Some(1));
    let m = std::fs::read_to_string(&rehearsal).unwrap();
    assert!(
        m.contains("sum_rehearsal_last_success{site=\"acme\"} 0\n"),
        "{m}"
    );
    assert!(
        text(&out.stderr).contains("create rehearsal on the database server, owned by that user"),
        "{}",
        text(&out.stderr)
    );

    // This host's PostgreSQL creates the scratch database itself, owned by
    // the site's role and closed to every other role.
    let files = site.count_files();
    // A rehearsal overwrites nothing live: no --i-know-this-will-overwrite.
    let out = site.restore_with_admin(&["acme", "latest", "--into", "rehearsal"], &pg.admin_env());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("created database rehearsal owned by acme"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT pg_get_userbyid(datdba), has_database_privilege('public', 'rehearsal', 'CONNECT') \
             FROM pg_database WHERE datname = 'rehearsal'"
        )
        .trim(),
        "acme|f"
    );
    assert_eq!(state(&pg, "rehearsal"), backup_state);
    assert_eq!(state(&pg, "acme"), live, "the live database was touched");
    let m = std::fs::read_to_string(&rehearsal).unwrap();
    assert!(
        m.contains("sum_rehearsal_last_success{site=\"acme\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("sum_rehearsal_last_duration_seconds{site=\"acme\"} "),
        "{m}"
    );
    common::promtool_check_metrics(&rehearsal);
    assert!(!metrics.join("sum-acme-restore.prom").exists());
    assert_eq!(
        site.count_files(),
        files,
        "a rehearsal takes no safety backup"
    );
}

/// Rows up to id 120000, so that a backup spans several 1 MiB parts (hex
/// digests compress to little better than half).
fn fill_several_parts(pg: &Pg) {
    pg.sql(
        "acme",
        "SET ROLE acme; INSERT INTO notes (title, body) \
         SELECT md5(i::text) || md5((i * 7)::text), decode(md5(i::text), 'hex') \
         FROM generate_series(3001, 120000) i;",
    );
}

#[test]
fn a_file_damaged_past_the_quick_check_is_rolled_back_where_it_stopped_matching() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    fill_several_parts(&pg);
    let backup = site.backup();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.backups().join(format!("{backup}.json"))).unwrap(),
    )
    .unwrap();
    let src = std::fs::read(site.backups().join(&backup)).unwrap();
    let parts = &manifest["parts"];
    assert_eq!(parts["size"], 1 << 20, "{manifest}");
    assert_eq!(parts["file_sha256"], manifest["sha256"], "{manifest}");
    let count = parts["sha256"].as_array().unwrap().len();
    assert_eq!(count, src.len().div_ceil(1 << 20), "{manifest}");
    assert!(count >= 4, "the dump spans only {count} parts");

    pg.sql(
        "acme",
        "SET ROLE acme; CREATE TABLE newer (x int); DELETE FROM notes WHERE id > 100;",
    );
    let live = state(&pg, "acme");
    // A byte near the end of the last part but one, and one in the second
    // part: neither is in the parts the quick check reads.
    for part in [count - 1, 2] {
        let mut damaged = src.clone();
        let at = part * (1 << 20) - 100;
        damaged[at] ^= 0x55;
        std::fs::write(site.backups().join(&backup), &damaged).unwrap();
        let out = site.restore(&["acme", &backup, "--i-know-this-will-overwrite"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        let start = (part - 1) << 20;
        let end = part << 20;
        assert!(
            err.contains(&format!("bytes {start} to {end} (part {part} of {count})"))
                && err.contains("rolled back")
                && err.contains("the database is as it was"),
            "{err}"
        );
        assert_eq!(
            state(&pg, "acme"),
            live,
            "the damaged load changed the database"
        );
    }

    // The same file undamaged loads, to the backup's state.
    std::fs::write(site.backups().join(&backup), &src).unwrap();
    let out = site.restore(&["acme", &backup, "--i-know-this-will-overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_ne!(state(&pg, "acme"), live);
    assert_eq!(
        pg.sql("acme", "SELECT count(*) FROM notes").trim(),
        "120000"
    );
}

/// Polls until `count_sql` (as the superuser) gives a count that is not 0.
fn wait_until(pg: &Pg, what: &str, count_sql: &str) {
    let t = std::time::Instant::now();
    while pg.sql("postgres", count_sql).trim() == "0" {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{what} never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_restore_killed_while_it_loads_commits_nothing() {
    let Some(pg) = Pg::start() else { return };
    let site = setup(&pg);
    // More than the pipe into psql holds, so that the restore is still
    // writing the dump when it is killed.
    fill_several_parts(&pg);
    site.backup();
    pg.sql("postgres", "CREATE DATABASE rehearsal OWNER acme");
    pg.sql(
        "rehearsal",
        "SET ROLE acme; CREATE TABLE old (id int); INSERT INTO old VALUES (1);",
    );
    // The load's `DROP OWNED BY CURRENT_USER` waits for this lock.
    let mut blocker = Command::new("psql")
        .args(["-X", "-q", "-d", "rehearsal", "-c"])
        .arg("BEGIN; LOCK TABLE old IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);")
        .envs(pg.admin_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        &pg,
        "the blocking lock",
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE d.datname = 'rehearsal' AND l.mode = 'AccessExclusiveLock' AND l.granted
           AND l.locktype = 'relation'",
    );
    let mut run = Command::new(env!("CARGO_BIN_EXE_sum-restore"))
        .args(["acme", "latest", "--into", "rehearsal"])
        .env("SUM_ROOT", site.root.path())
        .envs(pg.admin_env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let loading = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'acme'
                     AND datname = 'rehearsal' AND wait_event_type = 'Lock'";
    wait_until(&pg, "the load waiting on the lock", loading);

    // Killed half-way (SIGKILL: nothing of it runs after), then the lock
    // goes: psql reads what was sent up to the kill and finds no COMMIT.
    run.kill().unwrap();
    run.wait().unwrap();
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'BEGIN; LOCK TABLE%'",
    );
    let _ = blocker.wait();
    wait_until(
        &pg,
        "the load's session to end",
        "SELECT (count(*) = 0)::int FROM pg_stat_activity \
         WHERE usename = 'acme' AND datname = 'rehearsal'",
    );
    assert_eq!(
        pg.sql(
            "rehearsal",
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
             WHERE schemaname = 'public'"
        )
        .trim(),
        "old",
        "the killed load committed"
    );
    assert_eq!(pg.sql("rehearsal", "SELECT count(*) FROM old").trim(), "1");
}
