//! `sumctl releases`, `sumctl history` and `sumctl rollback` as the operator
//! runs them, against a temporary root (`SUM_ROOT`) whose state is written
//! through the library, as sum-deploy writes it.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sum::site_state::{self, Record, ReleaseInfo, ReleaseStatus, StepTime};

const BIN: &str = env!("CARGO_BIN_EXE_sumctl");

fn sumctl(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SUM_ROOT", root)
        .env_remove("SUDO_USER")
        .env_remove("INVOCATION_ID")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn home(root: &Path) -> PathBuf {
    root.join("srv/sum/acme")
}

fn state_dir(root: &Path) -> PathBuf {
    home(root).join("state")
}

const SHA_A: &str = "aaaaaaa111112222233333444445555566666777";
const SHA_B: &str = "bbbbbbb111112222233333444445555566666777";
const SHA_C: &str = "ccccccc111112222233333444445555566666777";
const SHA_D: &str = "ddddddd111112222233333444445555566666777";
const SHA_E: &str = "eeeeeee111112222233333444445555566666777";

const R_A: &str = "20261101T020000Z-aaaaaaa";
const R_B: &str = "20261102T020000Z-bbbbbbb";
const R_C: &str = "20261103T020000Z-ccccccc";
const R_D: &str = "20261104T020000Z-ddddddd";
const R_E: &str = "20261105T020000Z-eeeeeee";
const R_F: &str = "20261106T020000Z-fffffff";

#[allow(clippy::too_many_arguments)]
/// A release directory, its state file (unless `status` is None) and its
/// venv (complete when `ready`).
fn release(
    root: &Path,
    name: &str,
    sha: &str,
    git_ref: &str,
    status: Option<ReleaseStatus>,
    venv: &str,
    ready: bool,
    migrations: &[&str],
) {
    std::fs::create_dir_all(home(root).join("releases").join(name)).unwrap();
    let venv_dir = home(root).join("venvs").join(venv);
    std::fs::create_dir_all(venv_dir.join("bin")).unwrap();
    if ready {
        std::fs::write(venv_dir.join(".sum-ready"), b"").unwrap();
    }
    if let Some(status) = status {
        site_state::save_release(
            &state_dir(root),
            &ReleaseInfo {
                release: name.to_string(),
                git_ref: git_ref.to_string(),
                sha: sha.to_string(),
                venv: venv.to_string(),
                created_utc: "2026-11-01T02:00:00Z".to_string(),
                status,
                migrations: migrations.iter().map(|s| s.to_string()).collect(),
                static_root: Some("/srv/sum/acme/static".to_string()),
                media_root: Some("/srv/sum/acme/media".to_string()),
                database: None,
            },
        )
        .unwrap();
    }
}

/// Points `app` and `venv` at a release and a venv, as a swap does.
fn make_live(root: &Path, release: &str, venv: &str) {
    let h = home(root);
    let _ = std::fs::remove_file(h.join("app"));
    let _ = std::fs::remove_file(h.join("venv"));
    symlink(format!("releases/{release}"), h.join("app")).unwrap();
    symlink(format!("venvs/{venv}"), h.join("venv")).unwrap();
}

fn link(root: &Path, name: &str) -> String {
    std::fs::read_link(home(root).join(name))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Six releases: a good, b good and live (rolled back to), c good (the
/// last good), d failed, e built, f without a state file (killed deploy),
/// plus a half-exported `.NAME.tmp` that is not a release.
fn six_releases() -> tempfile::TempDir {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let r = root.path();
    use ReleaseStatus::*;
    release(
        r,
        R_A,
        SHA_A,
        "v1",
        Some(Good),
        "venv1",
        true,
        &["notes.0001"],
    );
    release(
        r,
        R_B,
        SHA_B,
        "v2",
        Some(Good),
        "venv2",
        true,
        &["notes.0001"],
    );
    release(
        r,
        R_C,
        SHA_C,
        "main",
        Some(Good),
        "venv3",
        true,
        &["notes.0001", "notes.0002"],
    );
    release(r, R_D, SHA_D, "main", Some(Failed), "venv3", true, &[]);
    release(r, R_E, SHA_E, "feature", Some(Built), "venv4", false, &[]);
    std::fs::create_dir_all(home(r).join("releases").join(R_F)).unwrap();
    std::fs::create_dir_all(home(r).join("releases/.20261107T020000Z-1234567.tmp")).unwrap();
    make_live(r, R_B, "venv2");
    root
}

/// The table row of a release.
fn row<'a>(out: &'a str, release: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(release))
        .unwrap_or_else(|| panic!("no row for {release}:\n{out}"))
}

#[test]
fn releases_table_marks_live_last_good_and_statuses() {
    let root = six_releases();
    let out = sumctl(root.path(), &["releases", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let header = s.lines().next().unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["RELEASE", "REF", "SHA", "STATUS", "VENV"], "{s}");

    // Newest first; the temporary export is not a release.
    let order: Vec<usize> = [R_F, R_E, R_D, R_C, R_B, R_A]
        .iter()
        .map(|r| s.find(r).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{s}");
    assert!(!s.contains(".tmp"), "{s}");

    let b = row(&s, R_B);
    assert!(b.starts_with(&format!("* {R_B}")), "{b}");
    let words: Vec<&str> = b.split_whitespace().collect();
    assert_eq!(
        words,
        ["*", R_B, "v2", &SHA_B[..12], "good", "venv2"],
        "{b}"
    );

    let c = row(&s, R_C);
    assert!(c.starts_with(&format!("  {R_C}")), "{c}");
    assert_eq!(
        c.split_whitespace().collect::<Vec<_>>(),
        [
            R_C,
            "main",
            &SHA_C[..12],
            "good",
            "venv3",
            "rolled",
            "back",
            "from"
        ],
        "{c}"
    );
    // Where `sumctl rollback` goes: the newest good release older than the live one.
    assert!(row(&s, R_A).ends_with(" venv1  rollback target"), "{s}");
    assert!(row(&s, R_D).contains(" failed "), "{s}");
    let e = row(&s, R_E);
    assert!(e.contains(" built "), "{e}");
    assert!(e.ends_with("venv gone"), "{e}");
    let f = row(&s, R_F);
    assert!(f.contains("unknown (unfinished deploy)"), "{f}");
    assert_eq!(
        f.split_whitespace().collect::<Vec<_>>(),
        [R_F, "-", "-", "unknown", "(unfinished", "deploy)", "-"],
        "{f}"
    );
    // Exactly one live and one last good.
    assert_eq!(
        s.lines().filter(|l| l.starts_with("* 2026")).count(),
        1,
        "{s}"
    );
    assert_eq!(s.matches("rollback target").count(), 1, "{s}");
    assert_eq!(s.matches("rolled back from").count(), 1, "{s}");
    assert!(!s.contains("last good"), "{s}");
    assert!(s.contains(&format!("* live: app -> releases/{R_B}")), "{s}");
}

#[test]
fn releases_json_has_stable_keys() {
    let root = six_releases();
    let out = sumctl(root.path(), &["releases", "acme", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 6);
    let keys: Vec<&str> = arr[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "release",
        "live",
        "last_good",
        "rollback_target",
        "rolled_back_from",
        "status",
        "git_ref",
        "sha",
        "venv",
        "venv_ready",
        "created_utc",
        "migrations",
        "static_root",
        "media_root",
    ];
    let mut keys = keys;
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let by = |name: &str| arr.iter().find(|o| o["release"] == name).unwrap().clone();
    assert_eq!(arr[0]["release"], R_F);
    assert_eq!(by(R_F)["status"], "unknown");
    assert!(by(R_F)["sha"].is_null());
    assert_eq!(by(R_B)["live"], true);
    assert_eq!(by(R_B)["last_good"], false);
    assert_eq!(by(R_B)["sha"], SHA_B);
    assert_eq!(by(R_C)["last_good"], true);
    assert_eq!(by(R_C)["rolled_back_from"], true);
    assert_eq!(by(R_C)["rollback_target"], false);
    assert_eq!(by(R_A)["rollback_target"], true);
    assert_eq!(by(R_A)["rolled_back_from"], false);
    assert_eq!(by(R_C)["live"], false);
    assert_eq!(
        by(R_C)["migrations"],
        serde_json::json!(["notes.0001", "notes.0002"])
    );
    assert_eq!(by(R_D)["status"], "failed");
    assert_eq!(by(R_E)["status"], "built");
    assert_eq!(by(R_E)["venv_ready"], false);
    assert_eq!(by(R_A)["venv_ready"], true);
    assert_eq!(by(R_A)["git_ref"], "v1");
}

fn record(action: &str, started: &str, outcome: &str, code: u8, release: Option<&str>) -> Record {
    Record {
        action: action.to_string(),
        started_utc: started.to_string(),
        finished_utc: started.to_string(),
        who: "alice (sudo)".to_string(),
        git_ref: Some("main".to_string()),
        sha: Some(SHA_C.to_string()),
        release: release.map(str::to_string),
        outcome: outcome.to_string(),
        exit_code: code,
        venv: Some("venv3".to_string()),
        venv_reused: Some(false),
        steps: vec![
            StepTime {
                step: "preflight".to_string(),
                seconds: 0.25,
            },
            StepTime {
                step: "venv".to_string(),
                seconds: 12.0,
            },
        ],
        ..Record::default()
    }
}

fn three_records(root: &Path) {
    let st = state_dir(root);
    std::fs::create_dir_all(&st).unwrap();
    let mut migrated = record("deploy", "2026-11-03T02:00:00Z", "ok", 0, Some(R_C));
    migrated.migrations_applied = vec!["notes.0002".to_string()];
    migrated.backup = Some("/srv/sum/acme/backups/acme-20261103T020005Z.sql.gz".to_string());
    site_state::append(&st, &migrated).unwrap();
    let mut failed = record("deploy", "2026-11-04T02:00:00Z", "failed", 1, Some(R_D));
    failed.failed_step = Some("venv".to_string());
    failed.error = Some(
        "pip install -r requirements.txt failed (exit status: 1):\nERROR: No matching distribution found for djangoo"
            .to_string(),
    );
    failed.who = "systemd".to_string();
    site_state::append(&st, &failed).unwrap();
    let mut rb = record("rollback", "2026-11-05T02:00:00Z", "ok", 0, Some(R_B));
    rb.git_ref = Some("v2".to_string());
    rb.sha = Some(SHA_B.to_string());
    rb.steps = vec![StepTime {
        step: "swap".to_string(),
        seconds: 0.01,
    }];
    site_state::append(&st, &rb).unwrap();
}

#[test]
fn history_newest_first_with_failures_and_limit() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    three_records(root.path());
    let out = sumctl(root.path(), &["history", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0]
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        [
            "STARTED (UTC)",
            "ACTION",
            "REF",
            "SHA",
            "RELEASE",
            "OUTCOME",
            "TIME",
            "WHO"
        ],
        "{s}"
    );
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(lines[1]),
        [
            "2026-11-05",
            "02:00:00",
            "rollback",
            "v2",
            &SHA_B[..12],
            R_B,
            "ok",
            "0.0s",
            "alice",
            "(sudo)"
        ],
        "{s}"
    );
    assert_eq!(
        words(lines[2]),
        [
            "2026-11-04",
            "02:00:00",
            "deploy",
            "main",
            &SHA_C[..12],
            R_D,
            "failed",
            "12.2s",
            "systemd"
        ],
        "{s}"
    );
    assert_eq!(
        lines[3], "    failed at venv: pip install -r requirements.txt failed (exit status: 1):",
        "{s}"
    );
    assert_eq!(
        lines[4], "      ERROR: No matching distribution found for djangoo",
        "the line that says why: {s}"
    );
    assert_eq!(
        words(lines[5]),
        [
            "2026-11-03",
            "02:00:00",
            "deploy",
            "main",
            &SHA_C[..12],
            R_C,
            "ok",
            "12.2s",
            "alice",
            "(sudo)"
        ],
        "{s}"
    );
    assert_eq!(
        lines[6],
        "    backup before its migrations: /srv/sum/acme/backups/acme-20261103T020005Z.sql.gz",
        "the pre-migrate backup under its deploy: {s}"
    );
    assert_eq!(lines.len(), 7, "{s}");

    let out = sumctl(root.path(), &["history", "acme", "-n", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.contains("rollback"), "{s}");
    assert!(!s.contains(R_D) && !s.contains(R_C), "{s}");
    assert!(s.contains("the last 1 of 3"), "{s}");

    let out = sumctl(root.path(), &["history", "acme", "--limit", "0"]);
    assert_eq!(text(&out.stdout).matches("2026-11-0").count(), 3);
}

#[test]
fn history_json_is_the_records_newest_first() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    three_records(root.path());
    let out = sumctl(root.path(), &["history", "acme", "--json", "-n", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["action"], "rollback");
    assert_eq!(arr[1]["outcome"], "failed");
    assert_eq!(arr[1]["failed_step"], "venv");
    assert_eq!(arr[1]["exit_code"], 1);
    assert_eq!(arr[1]["steps"][1]["step"], "venv");
    // The records as sum-deploy wrote them: they read back as records.
    let back: Vec<Record> = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back[1].release.as_deref(), Some(R_D));
    for key in [
        "action",
        "started_utc",
        "finished_utc",
        "who",
        "git_ref",
        "sha",
        "release",
        "previous",
        "outcome",
        "exit_code",
        "failed_step",
        "error",
        "migrations_applied",
        "backup",
        "venv",
        "venv_reused",
        "steps",
    ] {
        assert!(arr[0].get(key).is_some(), "no key {key}: {}", arr[0]);
    }
}

#[test]
fn empty_site_says_so_and_exits_0() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let out = sumctl(root.path(), &["releases", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("no releases yet for acme"),
        "{}",
        text(&out.stdout)
    );
    let out = sumctl(root.path(), &["history", "acme"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("no deploys yet for acme"),
        "{}",
        text(&out.stdout)
    );
    for cmd in ["releases", "history"] {
        let out = sumctl(root.path(), &[cmd, "acme", "--json"]);
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, serde_json::json!([]), "{cmd}");
    }
}

#[test]
fn unknown_or_invalid_site_exits_2() {
    let root = common::root_with_sites(&[
        ("acme.toml", common::MINIMAL),
        ("broken.toml", "domain = \"b.example.com\"\n"),
    ]);
    for args in [
        &["releases", "nosuch"][..],
        &["history", "nosuch"],
        &["rollback", "nosuch"],
        &["releases", "Bad_Name"],
        &["history", "broken", "--json"],
        &["rollback", "broken"],
    ] {
        let out = sumctl(root.path(), args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let out = sumctl(root.path(), &["releases", "nosuch"]);
    assert!(
        text(&out.stderr).contains("no site `nosuch`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rollback_switches_app_and_venv_and_is_recorded() {
    let root = six_releases();
    let r = root.path();
    // Live: c (after a deploy that applied notes.0002).
    make_live(r, R_C, "venv3");
    let out = sumctl(r, &["rollback", "acme"]);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    // The newest good release older than the live one.
    assert_eq!(link(r, "app"), format!("releases/{R_B}"));
    assert_eq!(link(r, "venv"), "venvs/venv2");
    assert!(
        o.contains("predates migrations applied since: notes.0002"),
        "{o}"
    );
    assert!(o.contains(&format!("rolled back acme to {R_B}")), "{o}");

    // --to by a unique part of the name.
    let out = sumctl(r, &["rollback", "acme", "--to", "aaaaaaa"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(link(r, "app"), format!("releases/{R_A}"));
    assert_eq!(link(r, "venv"), "venvs/venv1");

    // Both are in the history, newest first, and the table shows it live.
    let out = sumctl(r, &["history", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["action"], "rollback");
    assert_eq!(v[0]["release"], R_A);
    assert_eq!(v[0]["previous"], R_B);
    assert_eq!(v[1]["release"], R_B);
    assert_eq!(v[1]["previous"], R_C);
    let out = sumctl(r, &["releases", "acme"]);
    assert!(row(&text(&out.stdout), R_A).starts_with("* "));
}

#[test]
fn rollback_to_nothing_matching_exits_1_and_changes_nothing() {
    let root = six_releases();
    let r = root.path();
    let out = sumctl(r, &["rollback", "acme", "--to", "nosuchrelease"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no release matches"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(link(r, "app"), format!("releases/{R_B}"));
    assert_eq!(link(r, "venv"), "venvs/venv2");

    // A release whose venv is gone is refused too.
    let out = sumctl(r, &["rollback", "acme", "--to", R_E]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("gone or unfinished"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(link(r, "app"), format!("releases/{R_B}"));
}

#[test]
fn rollback_while_the_site_is_locked_exits_3_naming_the_holder() {
    let root = six_releases();
    let r = root.path();
    let _held = sum::site_state::lock::acquire(
        &state_dir(r).join("lock"),
        "sum-deploy acme",
        "2026-11-23T01:00:00Z",
    )
    .unwrap();
    let out = sumctl(r, &["rollback", "acme"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("sum-deploy acme"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(link(r, "app"), format!("releases/{R_B}"));
}
