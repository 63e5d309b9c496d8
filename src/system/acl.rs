//! The site's home closed to the other local users with a POSIX ACL.
//!
//! Everything below `/srv/sum/<site>` keeps its plain modes (docs/deploy.md):
//! `releases/`, `state/`, `venvs/` and `shared/` are 0755 because Caddy
//! serves static files from them. What keeps another site's user out is the
//! home itself: root:root 0750, with the site's user allowed to read it and
//! Caddy only to pass through it. A process of another site (a deploy's
//! `pip install` or `manage.py migrate` runs as `sum-<other>` outside any
//! sandbox) cannot even reach the directories below. Caddy is given its own
//! entry rather than the site's group, which reads the `.env`.
//!
//! `setfacl --set` replaces the whole access ACL and `-k` drops a default
//! ACL, so applying it again repairs any drift.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{chown, Gid, Uid};

/// The mode the home ends with: the ACL's owner, mask and other entries.
pub const HOME_MODE: u32 = 0o750;

/// The ACL of a site's home, in `setfacl --set` syntax: the site's user
/// reads and lists it, Caddy (when there is one) only traverses it, the
/// group and everyone else get nothing.
pub fn home_acl(site_uid: u32, caddy_uid: Option<u32>) -> String {
    let mut entries = vec!["u::rwx".to_string(), format!("u:{site_uid}:r-x")];
    entries.extend(caddy_uid.map(|c| format!("u:{c}:--x")));
    entries.extend(["g::---", "m::r-x", "o::---"].map(String::from));
    entries.join(",")
}

/// Makes `home` root:root, mode 0750, with the ACL of [`home_acl`]: the
/// site's user (`site_uid`) reads it, Caddy (`caddy_uid`, None when the
/// machine has no `caddy` user) passes through it to `static/`, `media/`,
/// a release's static files and the maintenance flag, and nobody else
/// gets in. Idempotent.
///
/// A file system without POSIX ACLs fails with [`std::io::ErrorKind::Unsupported`]
/// and a message naming the mount and the fix: the home is not left open
/// without a word.
pub fn close_home(home: &Path, site_uid: u32, caddy_uid: Option<u32>) -> std::io::Result<()> {
    require_acl_support(home)?;
    chown(home, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
        .map_err(|e| std::io::Error::other(format!("failed to chown {}: {e}", home.display())))?;
    fs_err::set_permissions(home, std::fs::Permissions::from_mode(HOME_MODE))?;
    let out = Command::new("setfacl")
        .arg("-k")
        .arg("--set")
        .arg(home_acl(site_uid, caddy_uid))
        .arg("--")
        .arg(home)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "failed to run setfacl on {} (it comes with the package acl): {e}",
                    home.display()
                ),
            )
        })?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "setfacl failed on {} ({}): {}",
            home.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Fails when the file system of `path` has no POSIX ACLs: reading the
/// access ACL then answers EOPNOTSUPP, where a file system with ACLs
/// answers with the ACL or with "no such attribute".
fn require_acl_support(path: &Path) -> std::io::Result<()> {
    match xattr::get(path, "system.posix_acl_access") {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            no_acl_message(path),
        )),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("failed to read the ACL of {}: {e}", path.display()),
        )),
    }
}

fn no_acl_message(path: &Path) -> String {
    let (at, mount) = match mount_of(path) {
        Some((target, fstype)) => (format!(" ({fstype} mounted at {target})"), target),
        None => (String::new(), "that file system".to_string()),
    };
    format!(
        "{} is on a file system without POSIX ACLs{at}: the site's home is closed to the \
         other sites' users with an ACL (docs/hardening.md). Mount {mount} with ACLs \
         (ext4, XFS and Btrfs have them unless mounted with `noacl`; see /etc/fstab) \
         or put /srv/sum on a file system that has them",
        path.display()
    )
}

/// The mount point and file-system type under `path`, from findmnt
/// (util-linux, essential in Debian); None when it cannot tell.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let out = Command::new("findmnt")
        .args([
            "--noheadings",
            "--raw",
            "--output",
            "FSTYPE,TARGET",
            "--target",
        ])
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (fstype, target) = text.lines().next()?.split_once(' ')?;
    Some((target.to_string(), fstype.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_gives_the_site_user_read_and_caddy_traverse_only() {
        assert_eq!(
            home_acl(1001, Some(999)),
            "u::rwx,u:1001:r-x,u:999:--x,g::---,m::r-x,o::---"
        );
        assert_eq!(
            home_acl(1001, None),
            "u::rwx,u:1001:r-x,g::---,m::r-x,o::---"
        );
    }
}
