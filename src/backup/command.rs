//! What the `sum-backup` and `sum-restore` commands share: loading the site
//! and taking its lock, each failure with its exit code of SPEC §7.

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::site_state::lock::{self, LockError, SiteLock};
use crate::system::failure::Failure;
use crate::system::timefmt;

/// The site named on the command line (exit 2 when it is unknown or its
/// file is invalid).
pub(crate) fn load_site(root: &Root, name: &str) -> Result<Site, Failure> {
    crate::config::sites::load_site(root, name).map_err(Failure::usage)
}

/// Takes the site's lock for `command` (`sum-backup`, `sum-restore`),
/// creating the state directory first: exit 3 when another deploy, backup
/// or restore holds it, 1 when it cannot be taken at all.
pub(crate) fn lock_site(root: &Root, site: &Site, command: &str) -> Result<SiteLock, Failure> {
    let state = root.path(SiteLayout::new(&site.name).state);
    fs_err::create_dir_all(&state).map_err(|e| Failure::failed(e.to_string()))?;
    let what = format!("{command} {}", site.name);
    let started = timefmt::iso_utc(timefmt::now_unix());
    lock::acquire(&state.join("lock"), &what, &started).map_err(|e| {
        let failure = match e {
            LockError::Busy { .. } => Failure::busy(e.to_string()),
            LockError::Io(_) => Failure::failed(e.to_string()),
        };
        failure.context(&what)
    })
}
