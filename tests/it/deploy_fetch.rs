//! The deploy's fetch, ref resolution and release export against real git
//! repositories built from the example site; and the site layout bootstrap.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sum::deploy::{dirs, fetch};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with the example site at tag v1 on main, then v2.
fn upstream() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "v1"]);
    git(dir.path(), &["tag", "v1"]);
    std::fs::write(dir.path().join("CHANGES"), "v2\n").unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "v2"]);
    git(dir.path(), &["tag", "v2"]);
    dir
}

#[test]
fn refs_resolve_as_branch_tag_or_commit_and_fetch_sees_new_commits() {
    let up = upstream();
    let site = tempfile::tempdir().unwrap();
    let repo = site.path().join("repo.git");
    let url = up.path().to_string_lossy().into_owned();
    fetch::update_mirror(&url, &repo).unwrap();
    let v1 = git(up.path(), &["rev-parse", "v1^{commit}"]);
    let v2 = git(up.path(), &["rev-parse", "v2^{commit}"]);
    assert_eq!(fetch::resolve(&repo, "main").unwrap(), v2);
    assert_eq!(fetch::resolve(&repo, "v1").unwrap(), v1);
    assert_eq!(fetch::resolve(&repo, &v1[..10]).unwrap(), v1);
    assert_eq!(fetch::resolve(&repo, &v1).unwrap(), v1);
    let e = fetch::resolve(&repo, "nosuch").unwrap_err();
    assert!(e.contains("`nosuch` is not a branch, tag or commit"), "{e}");

    std::fs::write(up.path().join("CHANGES"), "v3\n").unwrap();
    git(up.path(), &["commit", "-qam", "v3"]);
    let v3 = git(up.path(), &["rev-parse", "HEAD"]);
    assert_eq!(
        fetch::resolve(&repo, "main").unwrap(),
        v2,
        "not fetched yet"
    );
    fetch::update_mirror(&url, &repo).unwrap();
    assert_eq!(fetch::resolve(&repo, "main").unwrap(), v3);
}

#[test]
fn a_release_is_complete_or_absent() {
    let up = upstream();
    let site = tempfile::tempdir().unwrap();
    let repo = site.path().join("repo.git");
    let releases = site.path().join("releases");
    std::fs::create_dir(&releases).unwrap();
    fetch::update_mirror(&up.path().to_string_lossy(), &repo).unwrap();
    let sha = fetch::resolve(&repo, "v1").unwrap();
    let rel = fetch::build_release(&repo, &releases, &sha, "20261122T101010Z").unwrap();
    assert_eq!(
        rel.file_name().unwrap().to_string_lossy(),
        format!("20261122T101010Z-{}", &sha[..7])
    );
    assert!(
        rel.join("manage.py").is_file() && rel.join("notes/migrations/0001_initial.py").is_file()
    );
    assert!(!rel.join(".git").exists() && !rel.join("CHANGES").exists());
    let e = fetch::build_release(&repo, &releases, &sha, "20261122T101010Z").unwrap_err();
    assert!(e.contains("already exists"));
    let e =
        fetch::build_release(&repo, &releases, &"0".repeat(40), "20261122T111111Z").unwrap_err();
    assert!(e.contains("exporting"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "a failed export left something: {left:?}");
}

#[test]
fn an_unreachable_repository_is_named_in_the_error() {
    let site = tempfile::tempdir().unwrap();
    let e =
        fetch::update_mirror("/nonexistent/repo.git", &site.path().join("repo.git")).unwrap_err();
    assert!(
        e.contains("git clone of /nonexistent/repo.git failed"),
        "{e}"
    );
    assert!(!site.path().join("repo.git").exists());
}

#[test]
fn the_layout_has_the_documented_modes_and_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let r = sum::config::layout::Root::new(root.path());
    dirs::ensure(&r, "acme", None).unwrap();
    std::fs::set_permissions(
        root.path().join("srv/sum/acme/backups"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    dirs::ensure(&r, "acme", None).unwrap();
    let l = sum::config::layout::SiteLayout::new("acme");
    for (dir, _, mode) in dirs::directories(&l) {
        let m = std::fs::metadata(r.path(dir)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, mode, "{dir}");
    }
}
