//! The trial's `hc_typo`: a `DATABASE_URL` that names a wrong, empty
//! database. Its backup is flagged as shrunk in the log, the manifest, the
//! failure ping, `sum-backup --list` and `sumctl backups`/`status`, and
//! retention keeps the real backup it would have pushed out; until the
//! operator accepts the smaller database.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::backup::{ping_server, site_with_data, take_pings, text, Site};
use crate::common::pg::Pg;

const SUMCTL: &str = env!("CARGO_BIN_EXE_sumctl");

fn sumctl(site: &Site, args: &[&str]) -> Output {
    Command::new(SUMCTL)
        .args(args)
        .env("SUM_ROOT", site.root.path())
        .output()
        .unwrap()
}

fn manifest(site: &Site, dump: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(site.backups().join(format!("{dump}.json"))).unwrap())
        .unwrap()
}

/// The site's dumps, newest first.
fn dumps(site: &Site) -> Vec<String> {
    let mut d: Vec<String> = site
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".sql.gz"))
        .collect();
    d.reverse();
    d
}

/// Points the site's `.env` at another database of the same server.
fn point_at(site: &Site, db: &str) {
    let url = format!("{}/{db}", site.url.rsplit_once('/').unwrap().0);
    let env = site.root.path().join("srv/sum/acme/.env");
    std::fs::write(&env, format!("DATABASE_URL={url}\nSECRET_KEY=x\n")).unwrap();
}

/// A run that exits 0; its stdout and stderr.
fn backup(site: &Site, args: &[&str]) -> (String, String) {
    let out = site.run(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    (stdout, stderr)
}

/// The line of `log` that starts with `prefix` and names `path`.
fn line_of(log: &str, prefix: &str, path: &Path) -> String {
    let p = path.display().to_string();
    log.lines()
        .find(|l| l.starts_with(prefix) && (l.contains(&format!("{p} ")) || l.ends_with(&p)))
        .unwrap_or_else(|| panic!("no `{prefix} {p}` line:\n{log}"))
        .to_string()
}

#[test]
fn a_backup_of_an_empty_database_is_flagged_and_pushes_out_no_real_backup() {
    let Some(pg) = Pg::start() else { return };
    let (ping_url, pings) = ping_server();
    let site = site_with_data(
        &pg,
        &format!("keep_daily = 1\nkeep_weekly = 0\nkeep_monthly = 0\nping_url = \"{ping_url}\""),
    );
    // Rows that look like the dump's own lines and a function whose body
    // creates a table: the counts stay exact.
    pg.sql(
        "acme",
        "SET ROLE acme;
         CREATE TABLE tricky (t text);
         INSERT INTO tricky VALUES (E'a\\nb'), ('\\.'), ('-- Name: x; Type: TABLE; Schema: public; Owner: -'),
                                   ('COPY public.notes (id) FROM stdin;');
         CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
CREATE TABLE IF NOT EXISTS t2 (x int);
END $$;",
    );
    let dir = site.backups();

    // The real backup: notes, tags and tricky; 20000 + 5000 + 4 rows.
    let (log, _) = backup(&site, &["acme"]);
    assert!(log.contains(": 3 tables, 25004 rows\n"), "{log}");
    let real = dumps(&site)[0].clone();
    let m = manifest(&site, &real);
    assert_eq!(m["contents"], json!({"tables": 3, "rows": 25004}), "{m}");
    assert_eq!(m["shrunk"], json!(null));
    assert!(take_pings(&pings, 2)[1].starts_with("POST /ping/abc-123 verified backup"));

    // The typo: an empty database of the same owner.
    pg.sql("postgres", "CREATE DATABASE hc_typo OWNER acme");
    point_at(&site, "hc_typo");
    let (log, err) = backup(&site, &["acme"]);
    let typo = dumps(&site)[0].clone();
    assert_ne!(typo, real);
    assert!(
        err.contains(&format!(
            "sum-backup acme: warning: this backup SHRANK: database hc_typo holds 0 tables, 0 rows; \
             the previous backup {real} (database acme) held 3 tables, 25004 rows\n"
        )) && err.contains("--accept-shrink"),
        "{err}"
    );
    // Every line is a warning (the journal's priority warning), no error.
    assert!(err.lines().all(|l| l.contains("warning:")), "{err}");
    assert!(log.contains("of database hc_typo") && log.contains(": 0 tables, 0 rows\n"));
    let kept_real = line_of(&log, "retention: kept", &dir.join(&real));
    assert!(
        kept_real.contains(&format!(
            "holds its place: the newer {typo} shrank and is not counted"
        )),
        "{log}"
    );
    let kept_typo = line_of(&log, "retention: kept", &dir.join(&typo));
    assert!(
        kept_typo.contains(&format!("(SHRUNK against {real}")),
        "{log}"
    );
    let fail = &take_pings(&pings, 2)[1];
    assert!(
        fail.starts_with("POST /ping/abc-123/fail verified backup") && fail.contains("SHRANK"),
        "{fail}"
    );

    let m = manifest(&site, &typo);
    assert_eq!(m["verified"], true);
    assert_eq!(m["database"], "hc_typo");
    assert_eq!(m["contents"], json!({"tables": 0, "rows": 0}));
    assert_eq!(
        m["shrunk"],
        json!({"previous": real, "previous_database": "acme", "previous_tables": 3,
               "previous_rows": 25004, "accepted": false})
    );

    // The listings.
    for out in [
        sumctl(&site, &["backups", "acme"]),
        site.run(&["acme", "--list"]),
    ] {
        let s = text(&out.stdout);
        let row = |file: &str| s.lines().find(|l| l.starts_with(file)).unwrap().to_string();
        assert!(row(&typo).ends_with("  verified, SHRUNK"), "{s}");
        assert!(row(&real).ends_with("  verified") && row(&real).contains(" 25004 "));
        assert!(
            s.contains(&format!(
                "SHRUNK {typo}: database hc_typo holds 0 tables, 0 rows; the previous backup {real}"
            )),
            "{s}"
        );
    }
    let out = sumctl(&site, &["backups", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["file"], typo.as_str());
    assert_eq!(v[0]["shrunk"]["previous"], real.as_str());
    assert_eq!(v[0]["contents"]["tables"], 0);
    assert_eq!(v[0]["database"], "hc_typo");
    assert_eq!(v[1]["shrunk"], json!(null));
    assert_eq!(v[1]["contents"]["rows"], 25004);
    let s = text(&sumctl(&site, &["status", "acme"]).stdout);
    assert!(
        s.contains(&format!("{typo} (")) && s.contains("SHRUNK"),
        "{s}"
    );
    let out = sumctl(&site, &["status", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["last_backup_shrunk"], true);

    // The next night, still wrong: compared with the real backup, not with
    // the first shrunken one, and nothing is deleted.
    let (_, err) = backup(&site, &["acme"]);
    assert!(
        err.contains(&format!("the previous backup {real} (database acme)")),
        "{err}"
    );
    take_pings(&pings, 2);
    let nights = dumps(&site);
    assert_eq!(nights.len(), 3, "{nights:?}");

    // The database really is this small now: the accepted backup counts,
    // so keep_daily = 1 lets the real one go; the shrunken ones stay.
    let (log, err) = backup(&site, &["acme", "--accept-shrink"]);
    assert!(!err.contains("SHRANK"), "{err}");
    assert!(log.contains("accepted (--accept-shrink)"), "{log}");
    assert!(take_pings(&pings, 2)[1].starts_with("POST /ping/abc-123 verified backup"));
    let accepted = dumps(&site)[0].clone();
    assert_eq!(manifest(&site, &accepted)["shrunk"]["accepted"], true);
    line_of(&log, "retention: deleted", &dir.join(&real));
    let left = dumps(&site);
    assert_eq!(
        left,
        [accepted.clone(), nights[0].clone(), nights[1].clone()]
    );
    let s = text(&sumctl(&site, &["backups", "acme"]).stdout);
    assert!(s.contains("verified, shrank (accepted)"), "{s}");

    // Later backups of the small database are compared with it: no warning.
    let (_, err) = backup(&site, &["acme"]);
    assert!(!err.contains("SHRANK"), "{err}");
    assert!(manifest(&site, &dumps(&site)[0])["shrunk"].is_null());
}
