//! The site's home is closed to other local users (src/system/acl.rs),
//! proved with real processes of real users: `nobody` stands in for the
//! site's user, `daemon` for Caddy and `bin` for another site's user.
//! Needs root (chown, runuser); skipped with a note otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sum::config::layout::Root;
use sum::deploy::dirs;
use sum::system::acl;

use crate::common;

const SITE: &str = "nobody";
const CADDY: &str = "daemon";
const OTHER: &str = "bin";

/// Root, setfacl, getfacl and runuser, or a note and false (a missing tool
/// fails under CI).
fn ready() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: not root; skipping this test (it needs chown and runuser)");
        return false;
    }
    ["setfacl", "getfacl", "runuser"]
        .iter()
        .all(|t| common::require_tool(t))
}

fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user} on this machine"))
        .uid
        .as_raw()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `<tmp>/srv/sum/acme` with a release, `static/` and the maintenance
/// flag, every directory 0755 and every file 0644, reachable by anyone up
/// to the home.
fn site_tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("srv/sum/acme");
    for dir in ["releases/r1", "static"] {
        std::fs::create_dir_all(home.join(dir)).unwrap();
    }
    for (file, text) in [
        ("releases/r1/settings.py", "SECRET = 'code'\n"),
        ("static/app.css", "body {}\n"),
        ("maintenance", "on\n"),
    ] {
        std::fs::write(home.join(file), text).unwrap();
        chmod(&home.join(file), 0o644);
    }
    for dir in [
        tmp.path(),
        &tmp.path().join("srv"),
        &tmp.path().join("srv/sum"),
        &home,
        &home.join("releases"),
        &home.join("releases/r1"),
        &home.join("static"),
    ] {
        chmod(dir, 0o755);
    }
    (tmp, home)
}

fn as_user(user: &str, args: &[&str], path: &Path) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .args(args)
        .arg(path)
        .output()
        .unwrap()
}

fn allowed(user: &str, args: &[&str], path: &Path) -> String {
    let out = as_user(user, args, path);
    assert!(
        out.status.success(),
        "{user}: {args:?} {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn denied(user: &str, args: &[&str], path: &Path) {
    let out = as_user(user, args, path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{user}: {args:?} {} succeeded",
        path.display()
    );
    // `test` fails without a word; the others must say why.
    assert!(
        args[0] == "test" || err.contains("Permission denied"),
        "{user}: {args:?} {}: {err}",
        path.display()
    );
}

fn getfacl(path: &Path) -> String {
    let out = Command::new("getfacl")
        .args(["--numeric", "--absolute-names"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn setfacl(args: &[&str], path: &Path) {
    let status = Command::new("setfacl")
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_site_user_reads_the_home_caddy_passes_through_another_site_gets_nothing() {
    if !ready() {
        return;
    }
    let (_tmp, home) = site_tree();
    acl::close_home(&home, uid(SITE), Some(uid(CADDY))).unwrap();

    let meta = std::fs::metadata(&home).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o750)
    );

    let listing = allowed(SITE, &["ls", "-a"], &home);
    assert!(listing.contains("releases"), "{listing}");
    allowed(SITE, &["test", "-r"], &home);
    let code = allowed(SITE, &["cat"], &home.join("releases/r1/settings.py"));
    assert_eq!(code, "SECRET = 'code'\n");

    denied(CADDY, &["ls"], &home);
    assert_eq!(
        allowed(CADDY, &["cat"], &home.join("static/app.css")),
        "body {}\n"
    );
    allowed(CADDY, &["cat"], &home.join("releases/r1/settings.py"));
    allowed(CADDY, &["test", "-e"], &home.join("maintenance"));

    denied(OTHER, &["ls"], &home);
    denied(OTHER, &["cat"], &home.join("static/app.css"));
    denied(OTHER, &["cat"], &home.join("releases/r1/settings.py"));
    denied(OTHER, &["test", "-e"], &home.join("maintenance"));
}

#[test]
fn without_a_caddy_user_only_the_site_user_gets_in() {
    if !ready() {
        return;
    }
    let (_tmp, home) = site_tree();
    acl::close_home(&home, uid(SITE), None).unwrap();
    allowed(SITE, &["cat"], &home.join("static/app.css"));
    denied(CADDY, &["cat"], &home.join("static/app.css"));
    assert!(!getfacl(&home).contains(&format!("user:{}:", uid(CADDY))));
}

#[test]
fn closing_again_repairs_a_chmod_and_a_changed_acl() {
    if !ready() {
        return;
    }
    let (_tmp, home) = site_tree();
    let close = || acl::close_home(&home, uid(SITE), Some(uid(CADDY))).unwrap();
    close();
    let closed = getfacl(&home);
    let expected = format!(
        "# file: {}\n# owner: 0\n# group: 0\nuser::rwx\nuser:{}:--x\nuser:{}:r-x\n\
         group::---\nmask::r-x\nother::---\n\n",
        home.display(),
        uid(CADDY),
        uid(SITE)
    );
    assert_eq!(closed, expected);
    close();
    assert_eq!(getfacl(&home), closed);

    chmod(&home, 0o755);
    assert_ne!(getfacl(&home), closed);
    close();
    assert_eq!(getfacl(&home), closed);

    let other = format!("u:{}:rwx", uid(OTHER));
    setfacl(&["-m", &format!("{other},d:{other}")], &home);
    assert_ne!(getfacl(&home), closed);
    close();
    assert_eq!(getfacl(&home), closed);
}

#[test]
fn every_deploy_closes_the_home_after_setting_the_modes() {
    if !ready() {
        return;
    }
    let (tmp, home) = site_tree();
    let root = Root::new(tmp.path());
    let account = Some((uid(SITE), uid(SITE)));
    dirs::ensure(&root, "acme", account).unwrap();
    let closed = getfacl(&home);
    assert!(
        closed.contains(&format!("user:{}:r-x\n", uid(SITE))),
        "{closed}"
    );
    assert!(closed.contains("mask::r-x\nother::---\n"), "{closed}");
    match dirs::caddy_uid() {
        Some(caddy) => assert!(closed.contains(&format!("user:{caddy}:--x\n")), "{closed}"),
        None => assert_eq!(closed.matches("user:").count(), 2, "{closed}"),
    }
    allowed(SITE, &["ls"], &home);
    denied(OTHER, &["ls"], &home);

    chmod(&home, 0o755);
    dirs::ensure(&root, "acme", account).unwrap();
    assert_eq!(getfacl(&home), closed);
}

/// Runs `f` on a thread of its own in a private mount namespace (a mount
/// namespace belongs to a thread, and the processes it starts), with
/// `ramfs`, which has no ACLs, mounted on `dir`; None, with a note, where
/// the namespace or the mount is not allowed.
fn on_ramfs<T: Send>(dir: &Path, f: impl FnOnce() -> T + Send) -> Option<T> {
    use nix::mount::{mount, MsFlags};
    std::thread::scope(|s| {
        s.spawn(|| {
            let none = None::<&str>;
            let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
            let made = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .and_then(|()| mount(none, "/", none, private, none))
                .and_then(|()| mount(Some("ramfs"), dir, Some("ramfs"), MsFlags::empty(), none));
            match made {
                Ok(()) => Some(f()),
                Err(e) => {
                    eprintln!("note: cannot mount a ramfs in a private namespace ({e}); skipping");
                    None
                }
            }
        })
        .join()
        .unwrap()
    })
}

#[test]
fn a_file_system_without_acls_fails_naming_the_mount_and_the_fix() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    let root = Root::new(tmp.path());
    let errors = on_ramfs(&srv, || {
        let home = srv.join("sum/acme");
        std::fs::create_dir_all(&home).unwrap();
        let direct = acl::close_home(&home, uid(SITE), None).unwrap_err();
        let deploy = dirs::ensure(&root, "acme", Some((uid(SITE), uid(SITE)))).unwrap_err();
        (direct, deploy)
    });
    let Some((direct, deploy)) = errors else {
        return;
    };
    for e in [direct, deploy] {
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
        let text = e.to_string();
        let home = srv.join("sum/acme");
        for part in [
            format!("{} is on a file system without POSIX ACLs", home.display()),
            format!("(ramfs mounted at {})", srv.display()),
            format!("Mount {} with ACLs", srv.display()),
            "noacl".to_string(),
        ] {
            assert!(text.contains(&part), "{part:?} not in: {text}");
        }
    }
}
