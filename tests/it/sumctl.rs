//! `sumctl` as the operator runs it: check, render, new and caddy-render,
//! against a temporary root (`SUM_ROOT`).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sumctl");

fn sumctl(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SUM_ROOT", root)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BROKEN: &str =
    "domain = \"b.example.com\"\n[git]\nurl = \"https://x.example/b.git\"\n[gunicorn]\nworkers = 0\n";

#[test]
fn check_all_sites_names_file_line_and_column() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL), ("broken.toml", BROKEN)]);
    let out = sumctl(root.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("ok: "), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("acme.toml (site acme, acme.example.com)"));
    let err = text(&out.stderr);
    assert!(err.contains("etc/sum/sites/broken.toml:5:11: gunicorn.workers: 0 is out of range; expected a whole number from 1 to 64"), "{err}");
    assert!(err.contains("1 of 2 site files have errors"), "{err}");
}

#[test]
fn check_given_files_and_no_files() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL), ("broken.toml", BROKEN)]);
    let acme = root.path().join("etc/sum/sites/acme.toml");
    let out = sumctl(root.path(), &["check", &acme.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let empty = tempfile::tempdir().unwrap();
    let out = sumctl(empty.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("no site files"));

    let out = sumctl(root.path(), &["check", "/nonexistent/x.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/x.toml:1:1: (file): cannot be read"));
}

#[test]
fn check_changes_nothing() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL), ("broken.toml", BROKEN)]);
    let before = common::snapshot(root.path());
    sumctl(root.path(), &["check"]);
    assert_eq!(common::snapshot(root.path()), before);
}

#[test]
fn render_prints_units_and_snippet() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let out = sumctl(root.path(), &["render", "acme"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    for needle in [
        "# /run/systemd/generator/sum-gunicorn@acme.socket",
        "# /run/systemd/generator/sum-gunicorn@acme.service",
        "# /run/systemd/generator/sum-backup@acme.timer",
        "# /run/systemd/generator/sockets.target.wants/sum-gunicorn@acme.socket -> ../sum-gunicorn@acme.socket",
        "# /run/sum/caddy/acme.caddy",
        "acme.example.com {",
        "has not been deployed yet",
    ] {
        assert!(s.contains(needle), "missing {needle}:\n{s}");
    }
    let out = sumctl(root.path(), &["render", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("sumctl new nosuch"));
    let out = sumctl(root.path(), &["render", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn new_rejects_bad_input_before_writing() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "new",
            "Acme",
            "--domain",
            "a.example.com",
            "--git",
            "https://x.example/a.git",
        ],
        vec![
            "new",
            "acme",
            "--domain",
            "not a host",
            "--git",
            "https://x.example/a.git",
        ],
        vec![
            "new",
            "acme",
            "--domain",
            "a.example.com",
            "--git",
            "http://x.example/a.git",
        ],
        vec!["new", "acme", "--domain", "a.example.com"],
    ] {
        let out = sumctl(root.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty());
    }
    assert!(common::snapshot(root.path()).is_empty());
}

#[test]
fn caddy_render_writes_removes_and_keeps_last_good() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let snippets = root.path().join("run/sum/caddy");
    let out = sumctl(root.path(), &["caddy-render"]);
    assert_eq!(out.status.code(), Some(0));
    let acme = std::fs::read_to_string(snippets.join("acme.caddy")).unwrap();
    assert!(acme.contains("has not been deployed yet"));

    // After a first deploy (the app symlink exists) the site is proxied.
    std::fs::create_dir_all(root.path().join("srv/sum/acme/releases/r1")).unwrap();
    std::os::unix::fs::symlink("releases/r1", root.path().join("srv/sum/acme/app")).unwrap();
    sumctl(root.path(), &["caddy-render"]);
    let acme = std::fs::read_to_string(snippets.join("acme.caddy")).unwrap();
    assert!(acme.contains("reverse_proxy unix//run/sum/acme/gunicorn.sock"));

    // A typo keeps the last good snippet and says so.
    std::fs::write(root.path().join("etc/sum/sites/acme.toml"), BROKEN).unwrap();
    let out = sumctl(root.path(), &["caddy-render"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("keeps serving its last good snippet"));
    assert_eq!(
        std::fs::read_to_string(snippets.join("acme.caddy")).unwrap(),
        acme
    );

    // A deleted site loses its snippet; foreign files are left alone.
    std::fs::write(snippets.join("README"), "mine").unwrap();
    std::fs::remove_file(root.path().join("etc/sum/sites/acme.toml")).unwrap();
    sumctl(root.path(), &["caddy-render"]);
    assert!(!snippets.join("acme.caddy").exists());
    assert!(snippets.join("README").exists());
}

#[test]
fn a_new_site_cannot_take_a_host_from_a_serving_site() {
    let zed = "domain = \"zed.example.com\"\n[git]\nurl = \"https://x.example/z.git\"\n";
    let root = common::root_with_sites(&[("zed.toml", zed)]);
    let snippets = root.path().join("run/sum/caddy");
    sumctl(root.path(), &["caddy-render"]);
    let served = std::fs::read_to_string(snippets.join("zed.caddy")).unwrap();
    assert!(served.contains("# hosts: zed.example.com"));

    // `sumctl new` refuses the host outright.
    let out = sumctl(
        root.path(),
        &[
            "new",
            "aaa",
            "--domain",
            "zed.example.com",
            "--git",
            "https://x.example/a.git",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already belongs to site `zed`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!root.path().join("etc/sum/sites/aaa.toml").exists());

    // A file dropped by hand: both sites are reported, zed keeps its snippet
    // and the newcomer gets none, so Caddy's configuration stays loadable.
    std::fs::write(
        root.path().join("etc/sum/sites/aaa.toml"),
        "domain = \"zed.example.com\"\n[git]\nurl = \"https://x.example/a.git\"\n",
    )
    .unwrap();
    let out = sumctl(root.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("aaa.toml:1:10: domain: host `zed.example.com` is also claimed by site `zed`"),
        "{err}"
    );
    assert!(
        err.contains("zed.toml:1:10: domain: host `zed.example.com` is also claimed by site `aaa`"),
        "{err}"
    );
    sumctl(root.path(), &["caddy-render"]);
    assert_eq!(
        std::fs::read_to_string(snippets.join("zed.caddy")).unwrap(),
        served
    );
    assert!(!snippets.join("aaa.caddy").exists());

    // zed's file gets a typo: its last good snippet stays, and a valid site
    // claiming its host is not rendered while that snippet serves it.
    std::fs::write(root.path().join("etc/sum/sites/zed.toml"), "domain = \n").unwrap();
    let out = sumctl(root.path(), &["caddy-render"]);
    assert!(
        text(&out.stderr)
            .contains("site aaa: not rendered: host `zed.example.com` is still served"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(snippets.join("zed.caddy")).unwrap(),
        served
    );
    assert!(!snippets.join("aaa.caddy").exists());
}

#[test]
fn status_and_backups_show_release_and_last_verified_backup() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let out = sumctl(root.path(), &["status", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("none (not deployed yet)") && s.contains("last backup:   none"),
        "{s}"
    );

    // A verified backup (its manifest names its size) and an unverified one.
    let dir = root.path().join("srv/sum/acme/backups");
    std::fs::create_dir_all(&dir).unwrap();
    let name = "acme-20261101T020000Z.sql.gz";
    std::fs::write(dir.join(name), b"12345").unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        format!("{{\"site\":\"acme\",\"file\":\"{name}\",\"size\":5,\"sha256\":\"x\",\"uncompressed_size\":1,\"database\":\"acme\",\"server_version\":\"15\",\"client_version\":\"15\",\"started_utc\":\"\",\"finished_utc\":\"\",\"release\":null,\"verified\":true}}"),
    )
    .unwrap();
    std::fs::write(dir.join("acme-20261102T020000Z.sql.gz"), b"no manifest").unwrap();
    std::fs::create_dir_all(
        root.path()
            .join("srv/sum/acme/releases/20261101T000000Z-abc1234"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "releases/20261101T000000Z-abc1234",
        root.path().join("srv/sum/acme/app"),
    )
    .unwrap();

    let out = sumctl(root.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["live_release"], "20261101T000000Z-abc1234");
    assert_eq!(v[0]["last_verified_backup"], name);
    assert_eq!(v[0]["backups"], 2);

    let out = sumctl(root.path(), &["backups", "acme"]);
    let s = text(&out.stdout);
    assert!(
        s.lines()
            .nth(1)
            .unwrap()
            .contains("acme-20261102T020000Z.sql.gz")
            && s.contains("UNVERIFIED"),
        "{s}"
    );
    let out = sumctl(root.path(), &["backups", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1]["file"], name);
    assert_eq!(v[1]["verified"], true);
    assert_eq!(v[0]["verified"], false);

    assert_eq!(
        sumctl(root.path(), &["status", "nosuch"]).status.code(),
        Some(2)
    );
}

/// A site whose file is rejected but that has a last good copy: `check`
/// still fails and names the error, and both `check` and `status` say the
/// site runs on that copy and what to do.
#[test]
fn check_and_status_say_a_site_runs_on_its_last_good_copy() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    sum::site_state::last_good::save(&sum::config::layout::Root::new(root.path()), "acme").unwrap();
    std::fs::write(
        root.path().join("etc/sum/sites/acme.toml"),
        common::MINIMAL.replace("\"acme.example.com\"", "acme.example.com"),
    )
    .unwrap();
    let out = sumctl(root.path(), &["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("etc/sum/sites/acme.toml:1:"), "{err}");
    assert!(
        err.contains("site acme runs on its last good configuration")
            && err.contains("etc/sum/last-good/acme.toml"),
        "{err}"
    );
    let out = sumctl(root.path(), &["status", "acme"]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        shown.contains("configuration: LAST GOOD COPY") && shown.contains("acme.toml:1:"),
        "{shown}"
    );
    let out = sumctl(root.path(), &["status", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v[0]["last_good_config"]["copy"]
            .as_str()
            .is_some_and(|c| c.ends_with("etc/sum/last-good/acme.toml")),
        "{v}"
    );
}

#[test]
fn maintenance_on_shows_in_status_and_off_clears_it() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    std::fs::create_dir_all(root.path().join("srv/sum/acme/state")).unwrap();
    let out = sumctl(root.path(), &["maintenance", "acme", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(root.path().join("srv/sum/acme/maintenance").is_file());

    let s = text(&sumctl(root.path(), &["status", "acme"]).stdout);
    assert!(s.contains("  maintenance:   ON (on since "), "{s}");
    assert!(s.contains("`sumctl maintenance acme off` ends it"), "{s}");
    let out = sumctl(root.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v[0]["maintenance"]
            .as_str()
            .unwrap()
            .starts_with("on since "),
        "{v}"
    );

    let out = sumctl(root.path(), &["maintenance", "acme", "off"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&sumctl(root.path(), &["status", "acme"]).stdout);
    assert!(!s.contains("maintenance"), "{s}");
    let out = sumctl(root.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["maintenance"].is_null(), "{v}");

    // A switch clap does not know is bad usage; nothing is written.
    let out = sumctl(root.path(), &["maintenance", "acme", "maybe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!root.path().join("srv/sum/acme/maintenance").exists());
}

/// A verified backup of `acme` taken at `unix`, with its manifest.
fn verified_backup(root: &Path, unix: u64) {
    let dir = root.join("srv/sum/acme/backups");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("acme-{}.sql.gz", sum::system::timefmt::compact_utc(unix));
    std::fs::write(dir.join(&name), b"12345").unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        format!("{{\"site\":\"acme\",\"file\":\"{name}\",\"size\":5,\"sha256\":\"x\",\"uncompressed_size\":1,\"database\":\"acme\",\"server_version\":\"15\",\"client_version\":\"15\",\"started_utc\":\"\",\"finished_utc\":\"\",\"release\":null,\"verified\":true}}"),
    )
    .unwrap();
}

/// `status --check`: CRITICAL (2) for a stale backup, OK (0) once a fresh
/// one is there, WARNING (1) for a rolled-back deploy and an old
/// maintenance flag, UNKNOWN (3) when it cannot tell; `--json` says the same.
#[test]
fn status_check_uses_the_monitoring_plugins_exit_codes() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let now = sum::system::timefmt::now_unix();
    std::fs::create_dir_all(root.path().join("srv/sum/acme/releases/r1")).unwrap();
    std::os::unix::fs::symlink("releases/r1", root.path().join("srv/sum/acme/app")).unwrap();

    // Deployed, never backed up: a warning.
    let out = sumctl(root.path(), &["status", "--check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.starts_with("WARNING acme: no verified backup yet"), "{s}");

    // The newest verified backup is 30 hours old: stale (24 h + 2 h grace).
    verified_backup(root.path(), now - 30 * 3600);
    let out = sumctl(root.path(), &["status", "--check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert_eq!(s.lines().count(), 1, "{s}");
    assert!(
        s.starts_with("CRITICAL acme: the newest verified backup is 30h old"),
        "{s}"
    );
    let out = sumctl(root.path(), &["status", "--check", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "CRITICAL");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["problems"][0]["check"], "backup-stale");
    assert_eq!(v["problems"][0]["site"], "acme");
    // A longer grace accepts it; the plain --json carries the problem too.
    let out = sumctl(root.path(), &["status", "--check", "--backup-grace", "8h"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = sumctl(root.path(), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["problems"][0]["check"], "backup-stale");

    // A fresh backup: all is well.
    verified_backup(root.path(), now - 3600);
    let out = sumctl(root.path(), &["status", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "OK: 1 site checked, no problems\n");

    // A deploy that rolled back, and maintenance on for two days.
    let state = root.path().join("srv/sum/acme/state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("history.jsonl"),
        "{\"action\":\"deploy\",\"started_utc\":\"2026-12-01T00:00:00Z\",\"finished_utc\":\"2026-12-01T00:01:00Z\",\"who\":\"root\",\"outcome\":\"rolled-back\",\"exit_code\":4}\n",
    )
    .unwrap();
    let flag = root.path().join("srv/sum/acme/maintenance");
    std::fs::write(&flag, "set by ops\n").unwrap();
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&flag)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let out = sumctl(root.path(), &["status", "--check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("WARNING acme: the last deploy (2026-12-01T00:01:00Z) failed after the switch and was rolled back"), "{s}");
    assert!(
        s.contains("WARNING acme: maintenance has been on for 2d"),
        "{s}"
    );

    // Cannot tell: UNKNOWN.
    let out = sumctl(root.path(), &["status", "--check", "nosuch"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("UNKNOWN: no valid site `nosuch`"));
}
