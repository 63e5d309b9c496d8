//! The first-deploy bootstrap of a site's directories (SPEC §7 step 2):
//! idempotent, run on every deploy, so a wrong mode is repaired.
//!
//! Code and history are root's; the app user may write only what the app
//! writes at run time (static files at collectstatic, media, shared paths,
//! its virtualenvs, celery beat's schedule). Caddy, another user, needs to
//! traverse the site directory and read static and media.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{chown, Gid, Uid};

use crate::layout::{Root, SiteLayout};

/// Who owns what: `Root` (root:root) or `App` (the site's user and group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Root,
    App,
}

/// Every directory of a site with its owner and mode.
pub fn directories(l: &SiteLayout) -> Vec<(&str, Owner, u32)> {
    vec![
        (l.home.as_str(), Owner::Root, 0o755),
        (l.releases.as_str(), Owner::Root, 0o755),
        (l.venvs.as_str(), Owner::App, 0o755),
        (l.static_dir.as_str(), Owner::App, 0o755),
        (l.media_dir.as_str(), Owner::App, 0o755),
        (l.shared_dir.as_str(), Owner::App, 0o755),
        (l.backups.as_str(), Owner::Root, 0o700),
        (l.state.as_str(), Owner::Root, 0o755),
        (l.beat_dir.as_str(), Owner::App, 0o750),
    ]
}

/// Creates the site's directories and sets their owners and modes.
/// `app` is the site account's (uid, gid); None under a test root, where
/// owners are left as they are.
pub fn ensure(root: &Root, site: &str, app: Option<(u32, u32)>) -> std::io::Result<()> {
    let l = SiteLayout::new(site);
    for (dir, owner, mode) in directories(&l) {
        let path = root.path(dir);
        fs_err::create_dir_all(&path)?;
        if let Some((uid, gid)) = app {
            let (u, g) = match owner {
                Owner::Root => (0, 0),
                Owner::App => (uid, gid),
            };
            set_owner(&path, u, g)?;
        }
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn set_owner(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| std::io::Error::other(format!("failed to chown {}: {e}", path.display())))
}
