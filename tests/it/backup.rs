//! sum-backup against a real PostgreSQL (an initdb cluster started by the
//! test): round trip, faults, locking, retention.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::Pg;

const BIN: &str = env!("CARGO_BIN_EXE_sum-backup");

pub(crate) struct Site {
    pub(crate) root: tempfile::TempDir,
    pub(crate) url: String,
}

impl Site {
    pub(crate) fn backups(&self) -> PathBuf {
        self.root.path().join("srv/sum/acme/backups")
    }
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SUM_ROOT", self.root.path())
            .output()
            .unwrap()
    }
    pub(crate) fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.backups())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// A site `acme` whose database holds a few MB of varied rows.
pub(crate) fn site_with_data(pg: &Pg, keep: &str) -> Site {
    let url = pg.create_site_db("acme", "s3cret-pw", "acme");
    pg.sql(
        "acme",
        "SET ROLE acme;
         CREATE TABLE notes (id serial PRIMARY KEY, title text NOT NULL CHECK (length(title) > 0),
                             body text, data bytea, created timestamptz DEFAULT now());
         INSERT INTO notes (title, body, data)
           SELECT 'note ' || i || ' ünïcødé ✓ 日本語', repeat(md5(i::text), 20),
                  decode(repeat(md5((i*7)::text), 4), 'hex')
           FROM generate_series(1, 20000) i;
         CREATE TABLE tags (note_id int REFERENCES notes(id), tag text);
         INSERT INTO tags SELECT i, 't' || (i % 13) FROM generate_series(1, 5000) i;",
    );
    let root = common::root_with_sites(&[(
        "acme.toml",
        &format!("domain = \"acme.example.com\"\n[git]\nurl = \"https://x.example/a.git\"\n[backup]\n{keep}\n"),
    )]);
    let env = root.path().join("srv/sum/acme/.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    std::fs::write(&env, format!("DATABASE_URL={url}\nSECRET_KEY=x\n")).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).unwrap();
    Site { root, url }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fingerprint(pg: &Pg, db: &str) -> String {
    pg.sql(
        db,
        "SELECT count(*) || ':' || md5(string_agg(id || title || coalesce(body, '') || encode(data, 'hex'), ',' ORDER BY id))
         FROM notes;",
    )
}

#[test]
fn a_backup_is_verified_private_and_restorable() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    let out = site.run(&["acme"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("verified backup"),
        "{}",
        text(&out.stdout)
    );

    let files = site.files();
    assert_eq!(files.len(), 2, "{files:?}");
    let dump = site.backups().join(&files[0]);
    assert!(files[0].starts_with("acme-") && files[0].ends_with(".sql.gz"));
    assert_eq!(files[1], format!("{}.json", files[0]));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dump), 0o600);
    assert_eq!(mode(&site.backups()), 0o700);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.backups().join(&files[1])).unwrap()).unwrap();
    assert_eq!(manifest["verified"], true);
    assert_eq!(manifest["database"], "acme");
    assert_eq!(manifest["size"], std::fs::metadata(&dump).unwrap().len());
    assert!(
        manifest["server_version"]
            .as_str()
            .unwrap()
            .starts_with("15"),
        "{manifest}"
    );
    let sha = sum::backup::dump::verify_file(&dump).unwrap().sha256;
    assert_eq!(manifest["sha256"], sha);

    // The dump has no owner or ACL statements and loads into a scratch
    // database as the site's user: same rows, sequences and constraints.
    let plain = Command::new("sh")
        .arg("-c")
        .arg(format!("gunzip -c {}", dump.display()))
        .output()
        .unwrap();
    let sql = text(&plain.stdout);
    assert!(
        !sql.contains("OWNER TO") && !sql.contains("GRANT "),
        "owner or ACL statements in the dump"
    );
    pg.sql("postgres", "CREATE DATABASE scratch OWNER acme");
    let scratch_url = format!("{}/scratch", site.url.rsplit_once('/').unwrap().0);
    let load = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gunzip -c {} | psql -X -q -v ON_ERROR_STOP=1 --single-transaction '{scratch_url}'",
            dump.display()
        ))
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", text(&load.stderr));
    assert_eq!(fingerprint(&pg, "acme"), fingerprint(&pg, "scratch"));
    assert!(fingerprint(&pg, "acme").starts_with("20000:"));
    assert_eq!(
        pg.sql("acme", "SELECT nextval('notes_id_seq')"),
        pg.sql("scratch", "SELECT nextval('notes_id_seq')")
    );
    let bad = pg.psql("scratch", "INSERT INTO notes (title) VALUES ('')");
    assert!(!bad.status.success(), "the CHECK constraint was lost");
    let bad = pg.psql("scratch", "INSERT INTO tags VALUES (999999, 'x')");
    assert!(!bad.status.success(), "the foreign key was lost");

    // --list and --json.
    let out = site.run(&["acme", "--list"]);
    assert!(text(&out.stdout).contains(&files[0]) && text(&out.stdout).contains("verified"));
    let out = site.run(&["acme", "--list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["file"], files[0].as_str());
    assert_eq!(listed[0]["verified"], true);
}

#[test]
fn postgres_down_publishes_nothing() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    pg.stop();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("backup failed, nothing was published") && err.contains("pg_dump failed"),
        "{err}"
    );
    // libpq's two lines, the failed connection and its hint, on one line.
    let line = err
        .lines()
        .find(|l| l.contains("pg_dump failed"))
        .unwrap_or("");
    assert!(
        line.contains("connection to server") && line.contains("Is the server running"),
        "{err}"
    );
    assert!(site.files().is_empty(), "{:?}", site.files());
}

#[test]
fn corrupted_or_truncated_files_fail_verification() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    assert!(site.run(&["acme"]).status.success());
    let dump = site.backups().join(&site.files()[0]);
    let bytes = std::fs::read(&dump).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let truncated = dir.path().join("t.sql.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = sum::backup::dump::verify_file(&truncated)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a complete gzip stream"), "{e}");

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let corrupt = dir.path().join("c.sql.gz");
    std::fs::write(&corrupt, &flipped).unwrap();
    assert!(sum::backup::dump::verify_file(&corrupt).is_err());

    // A complete gzip of a dump cut short (no trailer) is refused too.
    let cut = dir.path().join("cut.sql.gz");
    let sh = format!(
        "gunzip -c {} | head -c 100000 | gzip > {}",
        dump.display(),
        cut.display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(sh)
        .status()
        .unwrap()
        .success());
    let e = sum::backup::dump::verify_file(&cut)
        .unwrap_err()
        .to_string();
    assert!(e.contains("trailer"), "{e}");
}

#[test]
fn a_second_run_while_the_lock_is_held_exits_3_naming_the_holder() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    let state = site.root.path().join("srv/sum/acme/state");
    std::fs::create_dir_all(&state).unwrap();
    let held = sum::site_state::lock::acquire(
        &state.join("lock"),
        "sum-deploy acme",
        "2026-11-22T10:00:00Z",
    )
    .unwrap();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("sum-deploy acme (pid ") && err.contains("since 2026-11-22T10:00:00Z"),
        "{err}"
    );
    assert!(site.files().is_empty());
    drop(held);
    assert!(site.run(&["acme"]).status.success());
}

/// Holds an ACCESS EXCLUSIVE lock on `notes` so pg_dump blocks mid-way until
/// [`unblock_dumps`].
fn block_dumps(pg: &Pg, site: &Site) -> std::process::Child {
    let child = Command::new("psql")
        .args(["-X", "-q", &site.url, "-c"])
        .arg("BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while pg.sql("acme", "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'notes'::regclass").trim() != "1" {
        assert!(t.elapsed() < Duration::from_secs(10), "the blocking lock was not taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn unblock_dumps(pg: &Pg, mut blocker: std::process::Child) {
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'BEGIN; LOCK TABLE notes%'",
    );
    let _ = blocker.wait();
}

fn wait_for_partial(site: &Site) {
    let t = Instant::now();
    while !site.files().iter().any(|f| f.ends_with(".partial")) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no .partial appeared: {:?}",
            site.files()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn child_pg_dump(parent: u32) -> Option<i32> {
    let out = Command::new("pgrep")
        .args(["-P", &parent.to_string(), "-x", "pg_dump"])
        .output()
        .ok()?;
    text(&out.stdout).trim().lines().next()?.parse().ok()
}

#[test]
fn killed_runs_leave_nothing_that_looks_like_a_backup() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");

    // pg_dump killed mid-stream: the run fails and removes its partial.
    let blocker = block_dumps(&pg, &site);
    let run = Command::new(BIN)
        .arg("acme")
        .env("SUM_ROOT", site.root.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_partial(&site);
    let t = Instant::now();
    let dump_pid = loop {
        if let Some(p) = child_pg_dump(run.id()) {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "pg_dump did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pg_dump failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(site.files().is_empty(), "{:?}", site.files());

    // sum-backup itself killed with SIGKILL: only a .partial is left, and
    // the next run removes it and succeeds.
    let mut run = Command::new(BIN)
        .arg("acme")
        .env("SUM_ROOT", site.root.path())
        .spawn()
        .unwrap();
    wait_for_partial(&site);
    run.kill().unwrap();
    run.wait().unwrap();
    let left = site.files();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(".sql.gz.partial"), "{left:?}");
    unblock_dumps(&pg, blocker);
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed the leftover of an interrupted run"));
    let files = site.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".partial")));
}

#[test]
fn a_full_disk_fails_cleanly() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("note: mounting a small tmpfs needs root; skipping");
        return;
    }
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    let dir = site.backups();
    std::fs::create_dir_all(&dir).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mount.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(dir.clone());
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(site.files().is_empty(), "{:?}", site.files());
}

#[test]
fn retention_touches_only_verified_backups_of_ours() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0");
    assert!(site.run(&["acme"]).status.success());
    let real = site.files()[0].clone();
    let dir = site.backups();
    // Older verified copies, an unverified one and foreign files.
    for (i, stamp) in ["20240101T020000Z", "20240102T020000Z", "20240103T020000Z"]
        .iter()
        .enumerate()
    {
        let name = format!("acme-{stamp}.sql.gz");
        std::fs::copy(dir.join(&real), dir.join(&name)).unwrap();
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{real}.json"))).unwrap())
                .unwrap();
        m["file"] = name.clone().into();
        if i == 0 {
            // Its manifest names another size: not verified.
            m["size"] = 1.into();
        }
        std::fs::write(dir.join(format!("{name}.json")), m.to_string()).unwrap();
    }
    std::fs::write(dir.join("acme-20230101T020000Z.sql.gz"), "no manifest").unwrap();
    std::fs::write(dir.join("other-20230101T020000Z.sql.gz"), "another site").unwrap();
    std::fs::write(dir.join("notes.txt"), "the operator's").unwrap();

    let out = site.run(&["acme", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let dry = text(&out.stdout);
    assert!(
        dry.contains("would delete")
            && dry.contains("acme-20240102T020000Z.sql.gz")
            && dry.contains("acme-20240103T020000Z.sql.gz"),
        "{dry}"
    );
    assert_eq!(site.files().len(), 11, "the dry run deleted something");

    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let files = site.files();
    for kept in [
        "acme-20240101T020000Z.sql.gz",
        "acme-20230101T020000Z.sql.gz",
        "other-20230101T020000Z.sql.gz",
        "notes.txt",
    ] {
        assert!(
            files.iter().any(|f| f == kept),
            "{kept} was deleted: {files:?}"
        );
    }
    for gone in [
        "acme-20240102T020000Z.sql.gz",
        "acme-20240103T020000Z.sql.gz",
    ] {
        assert!(
            !files.iter().any(|f| f.starts_with(gone)),
            "{gone} survived: {files:?}"
        );
    }
    // keep_daily = 1 with two real backups today: only the newest stays.
    let verified: Vec<_> = files
        .iter()
        .filter(|f| f.ends_with(".sql.gz") && f.starts_with("acme-2026"))
        .collect();
    assert_eq!(verified.len(), 1, "{files:?}");
}

/// Copies the verified backup `real` to `name` with a manifest that says so.
pub(crate) fn verified_copy(dir: &Path, real: &str, name: &str) {
    std::fs::copy(dir.join(real), dir.join(name)).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{real}.json"))).unwrap()).unwrap();
    m["file"] = name.into();
    std::fs::write(dir.join(format!("{name}.json")), m.to_string()).unwrap();
}

/// Issue 11, part 7: the pre-migrate backup a deploy recorded was deleted by
/// the next nightly run while `sumctl history` still pointed at it.
#[test]
fn retention_keeps_the_pre_migrate_backup_of_a_release_on_disk() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0");
    assert!(site.run(&["acme"]).status.success());
    let real = site.files()[0].clone();
    let dir = site.backups();
    let pre_migrate = "acme-20240102T010000Z.sql.gz";
    let older = "acme-20240101T020000Z.sql.gz";
    verified_copy(&dir, &real, pre_migrate);
    verified_copy(&dir, &real, older);
    std::fs::write(dir.join("other-20230101T020000Z.sql.gz"), "another site").unwrap();
    std::fs::write(dir.join("notes.txt"), "the operator's").unwrap();

    // What a deploy records: the release and the backup's full path.
    let home = site.root.path().join("srv/sum/acme");
    let release = "20240102T005900Z-abc1234";
    std::fs::create_dir_all(home.join("releases").join(release)).unwrap();
    std::fs::create_dir_all(home.join("state")).unwrap();
    let record = serde_json::json!({
        "action": "deploy", "started_utc": "2024-01-02T00:59:00Z",
        "finished_utc": "2024-01-02T01:02:00Z", "who": "root", "git_ref": "v2",
        "release": release, "previous": "20231220T120000Z-0000000", "outcome": "ok",
        "exit_code": 0, "migrations_applied": ["notes.0002_tags"],
        "backup": dir.join(pre_migrate).display().to_string(),
    });
    std::fs::write(home.join("state/history.jsonl"), format!("{record}\n")).unwrap();

    let out = site.run(&["acme", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dry = text(&out.stdout);
    let line = |prefix: &str, file: &str| {
        dry.lines()
            .find(|l| l.starts_with(prefix) && l.contains(file))
            .unwrap_or_else(|| panic!("no `{prefix} …{file}` line:\n{dry}"))
            .to_string()
    };
    assert!(
        line("would keep", pre_migrate)
            .ends_with(&format!("(pre-migrate backup of release {release})")),
        "{dry}"
    );
    line("would delete", older);
    assert!(
        line("would keep", &real).contains("the newest verified backup"),
        "{dry}"
    );

    // The nightly run: without the pin keep_daily = 1 would delete it.
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(
        log.contains(&format!(
            "retention: kept {} (pre-migrate backup of release {release})",
            dir.join(pre_migrate).display()
        )),
        "{log}"
    );
    let files = site.files();
    assert!(files.iter().any(|f| f == pre_migrate), "{files:?}");
    assert!(files.iter().any(|f| *f == format!("{pre_migrate}.json")));
    assert!(!files.iter().any(|f| f.starts_with(older)), "{files:?}");

    // Pruning removed the release: the backup goes by the normal rules.
    std::fs::remove_dir(home.join("releases").join(release)).unwrap();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(
        log.contains(&format!(
            "retention: deleted {}",
            dir.join(pre_migrate).display()
        )),
        "{log}"
    );
    let files = site.files();
    assert!(
        !files.iter().any(|f| f.starts_with(pre_migrate)),
        "{files:?}"
    );
    for foreign in ["other-20230101T020000Z.sql.gz", "notes.txt"] {
        assert!(files.iter().any(|f| f == foreign), "{foreign}: {files:?}");
    }
    let ours: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with("acme-") && f.ends_with(".sql.gz"))
        .collect();
    assert_eq!(ours.len(), 1, "keep_daily = 1 on one day: {files:?}");
}

/// A tiny HTTP server on loopback that records each request's method, path
/// and body and answers 200.
pub(crate) fn ping_server() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping/abc-123", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK");
            let line = request
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let _ = tx.send(format!("{line} {}", String::from_utf8_lossy(&body)));
        }
    });
    (url, rx)
}

/// The next `n` pings (the server records each just after answering it).
pub(crate) fn take_pings(rx: &std::sync::mpsc::Receiver<String>, n: usize) -> Vec<String> {
    let got: Vec<String> = (0..n)
        .map_while(|_| rx.recv_timeout(Duration::from_secs(5)).ok())
        .collect();
    assert_eq!(got.len(), n, "{got:?}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "more pings than expected"
    );
    got
}

#[test]
fn pings_start_success_and_fail_and_never_fail_the_backup() {
    let Some(pg) = Pg::start() else { return };
    let (url, pings) = ping_server();
    let site = site_with_data(&pg, &format!("ping_url = \"{url}\""));
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = take_pings(&pings, 2);
    assert!(got[0].starts_with("POST /ping/abc-123/start"), "{got:?}");
    assert!(
        got[1].starts_with("POST /ping/abc-123 verified backup"),
        "{got:?}"
    );

    pg.stop();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(1));
    let got = take_pings(&pings, 2);
    assert!(
        got[1].starts_with("POST /ping/abc-123/fail backup failed"),
        "{got:?}"
    );
    assert!(got[1].contains("pg_dump failed"), "{got:?}");
}

#[test]
fn an_unreachable_ping_url_only_warns() {
    let Some(pg) = Pg::start() else { return };
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = site_with_data(
        &pg,
        &format!("ping_url = \"http://127.0.0.1:{port}/ping/x\""),
    );
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: ping http://127.0.0.1:")
            && err.contains("the backup is not affected"),
        "{err}"
    );
    assert_eq!(site.files().len(), 2);
}

#[test]
fn media_are_archived_beside_the_dump_with_the_same_guarantees() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    std::fs::create_dir_all(
        site.root
            .path()
            .join("srv/sum/acme/releases/20261101T000000Z-abc1234"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "releases/20261101T000000Z-abc1234",
        site.root.path().join("srv/sum/acme/app"),
    )
    .unwrap();
    let media = site.root.path().join("srv/sum/acme/media");
    std::fs::create_dir_all(media.join("uploads/2026/ünï")).unwrap();
    std::fs::write(
        media.join("uploads/2026/ünï/photo.bin"),
        (0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(media.join("readme.txt"), "hello").unwrap();
    std::os::unix::fs::symlink("readme.txt", media.join("link.txt")).unwrap();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A release without a venv nor a recorded database (made by hand):
    // DATABASE_URL, with a warning that says why.
    assert!(
        text(&out.stderr)
            .contains("warning: could not ask the live release 20261101T000000Z-abc1234's Django")
            && text(&out.stderr).contains("recorded no database to compare with"),
        "{}",
        text(&out.stderr)
    );
    let files = site.files();
    assert_eq!(files.len(), 3, "{files:?}");
    let dump = files.iter().find(|f| f.ends_with(".sql.gz")).unwrap();
    let archive = site.backups().join(sum::backup::media::media_name(dump));
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.backups().join(format!("{dump}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["media"]["size"],
        std::fs::metadata(&archive).unwrap().len()
    );
    assert_eq!(
        manifest["media"]["sha256"],
        sum::backup::media::verify(&archive).unwrap().sha256
    );
    media_is_reported_and_listed(&site, &text(&out.stdout), dump, &media);

    // It unpacks to the same tree, the link still a link.
    let out_dir = tempfile::tempdir().unwrap();
    assert!(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(out_dir.path())
        .status()
        .unwrap()
        .success());
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&media)
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(diff.status.success(), "{}", text(&diff.stdout));

    // A damaged archive fails verification.
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    let damaged = out_dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(sum::backup::media::verify(&damaged).is_err());

    // A media archive whose dump never got published is a leftover.
    let orphan = site.backups().join("acme-20240101T000000Z.media.tar.gz");
    std::fs::copy(&archive, &orphan).unwrap();
    let out = site.run(&["acme"]);
    assert!(
        text(&out.stdout).contains("removed the leftover"),
        "{}",
        text(&out.stdout)
    );
    assert!(!orphan.exists());
}

/// The run's log names the media archive beside the dump; `sumctl backups`
/// and `sum-backup --list` show its size and entries, and say when it is
/// missing.
fn media_is_reported_and_listed(site: &Site, log: &str, dump: &str, media: &Path) {
    let name = sum::backup::media::media_name(dump);
    let archive = site.backups().join(&name);
    let info = sum::backup::media::verify(&archive).unwrap();
    // ".", readme.txt, link.txt, uploads, uploads/2026, uploads/2026/ünï, photo.bin
    assert_eq!(info.entries, 7);
    let line = format!(
        "verified media archive {} beside it ({} bytes, 7 entries, sha256 {}) of {}",
        archive.display(),
        info.size,
        info.sha256,
        media.display()
    );
    assert!(log.lines().any(|l| l == line), "no `{line}` in:\n{log}");
    let sumctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sumctl"))
            .args(args)
            .env("SUM_ROOT", site.root.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let legend = format!(
        "MEDIA, ENTRIES: the size in bytes and the entries (files, directories, links) of \
         the media archive beside each dump in {}, such as {name}",
        site.backups().display()
    );
    for listing in [
        sumctl(&["backups", "acme"]),
        text(&site.run(&["acme", "--list"]).stdout),
    ] {
        let mut lines = listing.lines();
        let header = lines.next().unwrap();
        assert!(header.ends_with("   MEDIA ENTRIES  STATE"), "{listing}");
        let row = lines.next().unwrap();
        assert!(row.starts_with(dump), "{listing}");
        let tail = format!(" {:>12} {:>7}  verified", info.size, 7);
        assert!(row.ends_with(&tail), "{listing}");
        assert_eq!(lines.next(), Some(legend.as_str()), "{listing}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&sumctl(&["backups", "acme", "--json"])).unwrap();
    assert_eq!(json[0]["media"]["file"], name.as_str());
    assert_eq!(json[0]["media"]["entries"], 7);
    assert_eq!(json[0]["media"]["size"], info.size);
    assert_eq!(json[0]["media_missing"], false);

    // Gone: the listing says so, and sum-restore --media would refuse it.
    let away = site.backups().join("away");
    std::fs::rename(&archive, &away).unwrap();
    let listing = sumctl(&["backups", "acme"]);
    let row = listing.lines().nth(1).unwrap();
    assert!(
        row.ends_with("      MISSING       -  verified"),
        "{listing}"
    );
    let missing = format!(
        "MISSING {name}: its manifest records a media archive that is not there, or not with \
         the size recorded; sum-restore --media refuses it"
    );
    assert!(listing.lines().any(|l| l == missing), "{listing}");
    let json: serde_json::Value =
        serde_json::from_str(&sumctl(&["backups", "acme", "--json"])).unwrap();
    assert_eq!(json[0]["media"], serde_json::Value::Null);
    assert_eq!(json[0]["media_missing"], true);
    std::fs::rename(&away, &archive).unwrap();
}

/// The database a release recorded at its deploy: the site's.
pub(crate) fn recorded_database(site: &Site) -> sum::site_state::database::DjangoDatabase {
    let conn = sum::probe::pgconn::PgConn::parse(&site.url).unwrap();
    sum::backup::appdb::described(&conn, "django.db.backends.postgresql")
}

/// The media archive follows the live release's effective MEDIA_ROOT (here
/// a `[deploy] shared` directory, as the deploy recorded it), not the
/// default `media/`; a MEDIA_ROOT outside the site's home is not followed.
#[test]
fn media_are_archived_from_where_the_live_release_keeps_them() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "media = true");
    let home = site.root.path().join("srv/sum/acme");
    let release = "20261101T000000Z-abc1234";
    std::fs::create_dir_all(home.join("releases").join(release)).unwrap();
    std::os::unix::fs::symlink(format!("releases/{release}"), home.join("app")).unwrap();
    // The default media/ has a file the app no longer uses.
    std::fs::create_dir_all(home.join("media")).unwrap();
    std::fs::write(home.join("media/stale.txt"), "not this").unwrap();
    let shared_media = home.join("shared/bakery/media");
    std::fs::create_dir_all(shared_media.join("original_images")).unwrap();
    std::fs::write(shared_media.join("original_images/cake.jpg"), "cake").unwrap();
    let record = |media_root: &str| {
        sum::site_state::save_release(
            &home.join("state"),
            &sum::site_state::ReleaseInfo {
                release: release.into(),
                git_ref: "main".into(),
                sha: "abc1234".repeat(5) + "ab",
                venv: "v".into(),
                created_utc: "2026-11-01T00:00:00Z".into(),
                status: sum::site_state::ReleaseStatus::Good,
                migrations: vec![],
                static_root: None,
                media_root: Some(media_root.into()),
                database: Some(recorded_database(&site)),
            },
        )
        .unwrap();
    };
    let listing = |dump: &str| {
        let archive = site.backups().join(sum::backup::media::media_name(dump));
        let out = Command::new("tar")
            .arg("-tzf")
            .arg(&archive)
            .output()
            .unwrap();
        text(&out.stdout)
    };

    record(&shared_media.display().to_string());
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let files = site.files();
    let dump = files
        .iter()
        .find(|f| f.ends_with(".sql.gz"))
        .unwrap()
        .clone();
    let names = listing(&dump);
    assert!(names.contains("original_images/cake.jpg"), "{names}");
    assert!(!names.contains("stale.txt"), "{names}");

    // Outside the site's home: the default media/ is archived instead.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    record("/etc");
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let newest = site
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".sql.gz") && *f != dump)
        .max()
        .unwrap();
    let names = listing(&newest);
    assert!(
        names.contains("stale.txt") && !names.contains("passwd"),
        "{names}"
    );
}

/// The value of one sample line `NAME{site="acme"} VALUE` in a metrics file.
fn metric(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{site=\"acme\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

#[test]
fn each_run_writes_its_metrics_for_node_exporter_and_none_without_its_directory() {
    let Some(pg) = Pg::start() else { return };
    let site = site_with_data(&pg, "");
    let dir = site.root.path().join("var/lib/prometheus/node-exporter");
    // Without node_exporter's directory: a backup, and no metrics anywhere.
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!dir.exists());

    std::fs::create_dir_all(&dir).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = dir.join("sum-acme-backup.prom");
    let ok = std::fs::read_to_string(&file).unwrap();
    assert_eq!(metric(&ok, "sum_backup_last_success"), Some(1.0), "{ok}");
    let attempt = metric(&ok, "sum_backup_last_attempt_timestamp_seconds").unwrap();
    assert!(
        attempt >= before.floor() && attempt <= before + 60.0,
        "{ok}"
    );
    let newest = metric(&ok, "sum_backup_newest_verified_timestamp_seconds").unwrap();
    assert!(newest >= before.floor() - 1.0, "{ok}");
    let dumps: Vec<String> = site
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".sql.gz"))
        .collect();
    // Retention keeps one a day: the count is what is on disk.
    assert_eq!(
        metric(&ok, "sum_backup_verified_backups"),
        Some(dumps.len() as f64),
        "{ok}"
    );
    let newest_file = site.backups().join(dumps.last().unwrap());
    assert_eq!(
        metric(&ok, "sum_backup_newest_verified_size_bytes"),
        Some(std::fs::metadata(&newest_file).unwrap().len() as f64),
        "{ok}"
    );
    assert!(metric(&ok, "sum_backup_last_duration_seconds").unwrap() > 0.0);
    // No off-host copy is configured: no off-host series.
    assert!(!ok.contains("sum_backup_offsite"), "{ok}");
    common::promtool_check_metrics(&file);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // A failed run: last_success 0, the newest verified backup still named.
    pg.stop();
    let out = site.run(&["acme"]);
    assert_eq!(out.status.code(), Some(1));
    let failed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        metric(&failed, "sum_backup_last_success"),
        Some(0.0),
        "{failed}"
    );
    assert_eq!(
        metric(&failed, "sum_backup_newest_verified_timestamp_seconds"),
        Some(newest),
        "{failed}"
    );
    common::promtool_check_metrics(&file);
    // Only the one file, no temporary left beside it.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sum-acme-backup.prom"]);
}
