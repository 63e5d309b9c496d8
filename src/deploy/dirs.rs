//! The first-deploy bootstrap of a site's directories (SPEC §7 step 2):
//! idempotent, run on every deploy, so a wrong mode is repaired; the
//! half-exported releases of killed deploys are removed.
//!
//! Code and history are root's; the app user may write only what the app
//! writes at run time (static files at collectstatic, media, shared paths,
//! its virtualenvs, celery beat's schedule). Caddy, another user, needs to
//! traverse the site directory and read static and media.
//!
//! The home itself is closed (root:root 0750 and an ACL, see
//! [`crate::system::acl`]): the site's user reads it, Caddy only passes
//! through it, and the other sites' users cannot reach anything below it,
//! though most directories there are 0755 for Caddy's sake.
//!
//! Media is written by gunicorn, whose units run with `UMask=0027`: the
//! directories Django creates there at run time (`original_images/`, ...)
//! would be closed to Caddy. So `media/` belongs to the site's user and to
//! the `caddy` group, with the set-group-ID bit (2750): everything created
//! below it inherits the group, Caddy can read uploads, and the other
//! sites' users still cannot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{chown, Gid, Uid};

use crate::config::layout::{Root, SiteLayout};
use crate::system::acl;

/// Who owns what: `Root` (root:root), `App` (the site's user and group) or
/// `Media` (the site's user and the `caddy` group, set-group-ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Root,
    App,
    Media,
}

// The `caddy` user and group live with the accounts, where the restore of
// media (a lower layer) finds them too.
pub use crate::system::accounts::{caddy_gid, caddy_uid, CADDY_GROUP, CADDY_USER};

/// Every directory of a site with its owner and mode.
pub fn directories(l: &SiteLayout) -> Vec<(&str, Owner, u32)> {
    vec![
        (l.home.as_str(), Owner::Root, acl::HOME_MODE),
        (l.releases.as_str(), Owner::Root, 0o755),
        (l.venvs.as_str(), Owner::App, 0o755),
        (l.static_dir.as_str(), Owner::App, 0o755),
        (l.media_dir.as_str(), Owner::Media, 0o2750),
        (l.shared_dir.as_str(), Owner::App, 0o755),
        (l.backups.as_str(), Owner::Root, 0o700),
        (l.state.as_str(), Owner::Root, 0o755),
        (l.beat_dir.as_str(), Owner::App, 0o750),
    ]
}

/// Creates the site's directories and sets their owners and modes, then
/// closes the home ([`close_home`]). `app` is the site account's (uid,
/// gid); None under a test root, where owners and the ACL are left out.
pub fn ensure(root: &Root, site: &str, app: Option<(u32, u32)>) -> std::io::Result<()> {
    let l = SiteLayout::new(site);
    for (dir, owner, mode) in directories(&l) {
        let path = root.path(dir);
        fs_err::create_dir_all(&path)?;
        if let Some((uid, gid)) = app {
            let (u, g) = match owner {
                Owner::Root => (0, 0),
                Owner::App => (uid, gid),
                Owner::Media => match caddy_gid() {
                    Some(caddy) => (uid, caddy),
                    // No Caddy on this machine: nobody else needs to read.
                    None => (uid, gid),
                },
            };
            set_owner(&path, u, g)?;
        }
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    // After the chmod above, which would otherwise narrow the ACL's mask.
    match app {
        Some((uid, _)) => close_home(root, site, uid),
        None => Ok(()),
    }
}

/// Closes the site's home to every other local user: root:root 0750, the
/// site's user (`uid`) may read it, the `caddy` user (when it exists) may
/// only pass through it (crate::system::acl). Run by every deploy; fails
/// with the mount and the fix on a file system without POSIX ACLs.
pub fn close_home(root: &Root, site: &str, uid: u32) -> std::io::Result<()> {
    let home = root.path(SiteLayout::new(site).home);
    acl::close_home(&home, uid, caddy_uid())
}

/// Makes a media directory outside `media/` (an effective MEDIA_ROOT in a
/// shared path) readable by Caddy the same way: the site's user, the
/// `caddy` group, 2750. Nothing happens without a `caddy` group.
pub fn open_to_caddy(path: &Path, uid: u32) -> std::io::Result<()> {
    let Some(caddy) = caddy_gid() else {
        return Ok(());
    };
    set_owner(path, uid, caddy)?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o2750))
}

fn set_owner(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| std::io::Error::other(format!("failed to chown {}: {e}", path.display())))
}

/// Removes half-exported releases (`.<name>.tmp`) of killed deploys.
pub fn clean_leftovers(releases: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs_err::read_dir(releases) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && fs_err::remove_dir_all(e.path()).is_ok()
            {
                n += 1;
            }
        }
    }
    n
}
