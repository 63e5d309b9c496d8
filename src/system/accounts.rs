//! The per-site system user and group `sum-<site>`: app code never runs as root.

use std::process::Command;

use nix::unistd::{Gid, Group, User};

use crate::config::layout::{Root, SiteLayout};

/// Creates the site's system user and group if they do not exist yet
/// (idempotent) and returns the group id.
pub fn ensure_site_account(site: &str, layout: &SiteLayout) -> std::io::Result<Gid> {
    let name = &layout.user;
    let lookup = |e: nix::Error| std::io::Error::other(format!("failed to look up {name}: {e}"));
    if User::from_name(name).map_err(lookup)?.is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", &layout.home, "--shell", "/usr/sbin/nologin"])
            .args(["--comment", &format!("sum-golden-path site {site}")])
            .arg(name)
            .status()
            .map_err(|e| std::io::Error::other(format!("failed to run useradd: {e}")))?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "useradd {name} failed ({status})"
            )));
        }
    }
    match Group::from_name(name).map_err(lookup)? {
        Some(g) => Ok(g.gid),
        None => Err(std::io::Error::other(format!(
            "user {name} exists but group {name} does not; create it with `groupadd --system {name}`"
        ))),
    }
}

/// The site account's uid and gid on a real system; None under a test root
/// or before the account exists.
pub fn site_account(root: &Root, site: &str) -> Option<(u32, u32)> {
    if !root.is_system() {
        return None;
    }
    let user = nix::unistd::User::from_name(&SiteLayout::new(site).user).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// The group Caddy runs as, whose members read static and media files.
pub const CADDY_GROUP: &str = "caddy";

/// The user Caddy runs as, who may pass through a site's home.
pub const CADDY_USER: &str = "caddy";

/// The gid of the `caddy` group, when it exists.
pub fn caddy_gid() -> Option<u32> {
    Group::from_name(CADDY_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The uid of the `caddy` user, when it exists.
pub fn caddy_uid() -> Option<u32> {
    User::from_name(CADDY_USER)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// Who runs the command, for the history and the maintenance flag: the
/// sudo user; the user who logged in (the kernel's login uid, kept across
/// `su` and `sudo -i`); `systemd` under a unit; else the login name or the
/// name of the uid.
pub fn operator() -> String {
    if let Ok(u) = std::env::var("SUDO_USER") {
        return format!("{u} (sudo)");
    }
    if let Some(name) = login_user().filter(|n| n != "root") {
        return name;
    }
    if std::env::var_os("INVOCATION_ID").is_some() {
        return "systemd".to_string();
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(|| name_of(nix::unistd::getuid().as_raw()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// The name of the user who logged in, from `/proc/self/loginuid`; None
/// when no login is recorded (services, containers without audit).
fn login_user() -> Option<String> {
    let text = fs_err::read_to_string("/proc/self/loginuid").ok()?;
    let uid: u32 = text.trim().parse().ok()?;
    if uid == u32::MAX {
        return None;
    }
    name_of(uid)
}

fn name_of(uid: u32) -> Option<String> {
    Some(User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_has_a_name_and_a_missing_one_none() {
        assert_eq!(name_of(0).as_deref(), Some("root"));
        assert_eq!(name_of(u32::MAX - 1), None);
        // Whoever runs the tests is named, never a bare uid.
        assert!(!operator().starts_with("uid "), "{}", operator());
    }
}
