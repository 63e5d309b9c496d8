//! The generator binary as systemd runs it: arguments, exit codes, the
//! initrd, and a sandbox test proving it writes only into its output
//! directory and spawns nothing (systemd.generator(7)).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sum-generator");

fn run(root: &Path, args: &[&Path]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SUM_ROOT", root)
        .env_remove("SYSTEMD_SCOPE")
        .env_remove("SYSTEMD_IN_INITRD")
        .output()
        .unwrap()
}

#[test]
fn one_or_three_directories_only() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let d = tempfile::tempdir().unwrap();
    let (a, b, c, e) = (
        d.path().join("a"),
        d.path().join("b"),
        d.path().join("c"),
        d.path().join("e"),
    );
    for dir in [&a, &b, &c, &e] {
        std::fs::create_dir(dir).unwrap();
    }
    for args in [vec![], vec![&a, &b], vec![&a, &b, &c, &e]] {
        let out = run(
            root.path(),
            &args.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        );
        assert_eq!(out.status.code(), Some(2), "{} arguments", args.len());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected 1 or 3 output directories"), "{err}");
        assert!(common::snapshot(&a).is_empty(), "wrote with bad arguments");
    }
    let out = run(root.path(), &[&a]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(a.join("sum-gunicorn@acme.service").is_file());

    let out = run(root.path(), &[&b, &c, &e]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(b.join("sum-gunicorn@acme.service").is_file());
    assert!(common::snapshot(&c).is_empty() && common::snapshot(&e).is_empty());
}

#[test]
fn no_sites_and_no_directory_exit_zero_with_nothing_written() {
    let root = tempfile::tempdir().unwrap(); // no etc/sum/sites at all
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[out_dir.path()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty());
    assert!(common::snapshot(out_dir.path()).is_empty());
}

#[test]
fn initrd_does_nothing() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    std::fs::write(root.path().join("etc/initrd-release"), "").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[out_dir.path()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(common::snapshot(out_dir.path()).is_empty());

    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let out = Command::new(BIN)
        .arg(out_dir.path())
        .env("SUM_ROOT", root.path())
        .env("SYSTEMD_IN_INITRD", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(common::snapshot(out_dir.path()).is_empty());
}

#[test]
fn a_bad_site_exits_one_names_the_place_and_keeps_the_good_ones() {
    let root = common::root_with_sites(&[
        ("acme.toml", common::MINIMAL),
        (
            "broken.toml",
            "domain = \"b.example.com\"\n[git]\nurl = \"https://x.example/b.git\"\n[gunicorn]\nworkers = 0\n",
        ),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[out_dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.toml:5:11: gunicorn.workers"), "{err}");
    assert!(out_dir.path().join("sum-gunicorn@acme.socket").is_file());
    assert!(!out_dir.path().join("sum-gunicorn@broken.socket").exists());
}

#[test]
fn kmsg_is_used_only_when_it_is_a_character_device() {
    // Under systemd (SYSTEMD_SCOPE set) but without a usable /dev/kmsg, as in
    // a container, the error must still reach stderr rather than vanish.
    let is_char = std::fs::metadata("/dev/kmsg")
        .map(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()))
        .unwrap_or(false);
    let writable = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .is_ok();
    let root = common::root_with_sites(&[("bad.toml", "domain = 1\n")]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg(out_dir.path())
        .env("SUM_ROOT", root.path())
        .env("SYSTEMD_SCOPE", "system")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    if is_char && writable {
        assert!(err.is_empty(), "went to stderr although kmsg works: {err}");
    } else {
        assert!(err.contains("bad.toml:1:10: domain"), "{err}");
    }
}

/// Runs the generator under strace with three output directories and checks
/// every file-system call that could write, and that nothing was spawned.
#[test]
fn writes_only_into_the_normal_directory_and_spawns_nothing() {
    if !common::require_tool("strace") {
        return;
    }
    let root = common::root_with_sites(&[
        ("acme.toml", common::MINIMAL),
        (
            "shop.toml",
            "domain = \"shop.example.com\"\n[git]\nurl = \"https://x.example/s.git\"\n[celery]\nworker = true\nbeat = true\n",
        ),
        ("broken.toml", "domain = 1\n"),
    ]);
    let dirs = tempfile::tempdir().unwrap();
    let (normal, early, late) = (
        dirs.path().join("normal"),
        dirs.path().join("early"),
        dirs.path().join("late"),
    );
    for d in [&normal, &early, &late] {
        std::fs::create_dir(d).unwrap();
    }
    let before_root = common::snapshot(root.path());
    let trace = dirs.path().join("trace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file,%process,write", "-o"])
        .arg(&trace)
        .arg(BIN)
        .args([&normal, &early, &late])
        .env("SUM_ROOT", root.path())
        .env_remove("SYSTEMD_SCOPE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    assert_eq!(
        common::snapshot(root.path()),
        before_root,
        "the root changed"
    );
    assert!(
        common::snapshot(&early).is_empty(),
        "wrote into the early dir"
    );
    assert!(
        common::snapshot(&late).is_empty(),
        "wrote into the late dir"
    );
    assert!(normal.join("sum-celerybeat@shop.service").is_file());

    let trace = std::fs::read_to_string(&trace).unwrap();
    let normal_s = normal.to_string_lossy().into_owned();
    let mut checked = 0;
    let mut execs = 0;
    for line in trace.lines() {
        let call = line.split_once(' ').map_or(line, |(_, c)| c).trim_start();
        if call.starts_with("execve(") {
            execs += 1;
        }
        for forbidden in ["fork(", "vfork(", "clone(", "clone3("] {
            assert!(!call.starts_with(forbidden), "spawned something: {line}");
        }
        let writes = call.contains("O_WRONLY")
            || call.contains("O_RDWR")
            || call.contains("O_CREAT")
            || [
                "mkdir", "symlink", "rename", "unlink", "link(", "linkat(", "chmod", "chown",
                "truncate", "rmdir",
            ]
            .iter()
            .any(|p| call.starts_with(p));
        if !writes || call.contains("= -1") {
            continue;
        }
        checked += 1;
        let mut paths: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
        if call.starts_with("symlink") {
            // The first string is the link's content, not a path written to.
            paths.drain(..paths.len().saturating_sub(1));
        }
        assert!(!paths.is_empty(), "a write without a path: {line}");
        for p in paths {
            let inside = p.starts_with(&normal_s) || p == "/dev/null";
            assert!(inside, "wrote outside the normal directory: {line}");
        }
    }
    assert_eq!(
        execs, 1,
        "the generator must not execute anything:\n{trace}"
    );
    assert!(
        checked >= 10,
        "too few write calls traced ({checked}); is strace working?\n{trace}"
    );
}

/// The reproduction: a deployed site's file gets a typo (quotes dropped
/// around `domain`) and systemd reloads. The generator must keep emitting
/// the same units, made from the last good copy the deploy kept, and say
/// so loudly; fixing the file goes back to the file; deleting it removes
/// the site.
#[test]
fn a_typo_reloaded_keeps_the_last_good_units_and_a_deleted_file_removes_them() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    let sum_root = sum::config::layout::Root::new(root.path());
    let before = tempfile::tempdir().unwrap();
    assert_eq!(run(root.path(), &[before.path()]).status.code(), Some(0));
    // What a successful deploy does.
    sum::site_state::last_good::save(&sum_root, "acme").unwrap();
    let copy = root.path().join("etc/sum/last-good/acme.toml");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), common::MINIMAL);

    let file = root.path().join("etc/sum/sites/acme.toml");
    std::fs::write(
        &file,
        common::MINIMAL.replace("\"acme.example.com\"", "acme.example.com"),
    )
    .unwrap();
    let kept = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[kept.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("site acme: its site file is rejected; KEEPING ITS LAST GOOD UNITS")
            && err.contains("last-good/acme.toml")
            && err.contains("acme.toml:1:"),
        "{err}"
    );
    assert_eq!(
        common::snapshot(before.path()),
        common::snapshot(kept.path()),
        "the units made from the last good copy differ from the good ones"
    );
    // A deploy refuses the invalid file, so it cannot overwrite the copy.
    sum::site_state::last_good::save(&sum_root, "acme").unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), common::MINIMAL);

    // Fixed: the file itself again, with its new value.
    std::fs::write(
        &file,
        common::MINIMAL.replace("acme.example.com", "acme.example.org"),
    )
    .unwrap();
    let fixed = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[fixed.path()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert!(fixed.path().join("sum-gunicorn@acme.socket").is_file());

    // Deleted on purpose: the site goes, its copy notwithstanding.
    std::fs::remove_file(&file).unwrap();
    let gone = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[gone.path()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(common::snapshot(gone.path()).is_empty());
}

/// A new site claiming a serving site's host: neither file is used, the
/// serving site runs on its last good copy, the newcomer does not run.
#[test]
fn a_new_site_claiming_a_serving_sites_host_takes_nothing_away() {
    let root = common::root_with_sites(&[("acme.toml", common::MINIMAL)]);
    sum::site_state::last_good::save(&sum::config::layout::Root::new(root.path()), "acme").unwrap();
    let thief = common::MINIMAL.replace("acme.git", "thief.git");
    std::fs::write(root.path().join("etc/sum/sites/thief.toml"), thief).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[out_dir.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out_dir.path().join("sum-gunicorn@acme.socket").is_file(),
        "{err}"
    );
    assert!(
        !out_dir.path().join("sum-gunicorn@thief.socket").exists(),
        "{err}"
    );
    assert!(
        err.contains("host `acme.example.com` is also claimed")
            && err.contains("skipping site")
            && err.contains("site acme: its site file is rejected; KEEPING"),
        "{err}"
    );
    // Without a last good copy (never deployed), both are skipped as before.
    std::fs::remove_file(root.path().join("etc/sum/last-good/acme.toml")).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(root.path(), &[out_dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::snapshot(out_dir.path()).is_empty());
}
