//! What `sum-deploy` and `sumctl rollback` do around their work: load the
//! site file and take the site's lock (exit 2 for an invalid site file, 3
//! when the lock is held), and pick the service-manager control.

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::site_state::lock::{self, LockError, SiteLock};
use crate::system::control::{self, Control};
use crate::system::failure::Failure;
use crate::system::timefmt;

/// Loads the site and takes its lock for `what` ("sum-deploy", "sumctl
/// rollback"); the lock is held until the returned guard drops.
pub(super) fn site_and_lock(
    root: &Root,
    site_name: &str,
    what: &str,
) -> Result<(Site, SiteLock), Failure> {
    let site = crate::config::sites::load_site(root, site_name)
        .map_err(|e| Failure::usage(format!("{what}: {e}")))?;
    let holder = format!("{what} {}", site.name);
    let state_dir = root.path(SiteLayout::new(&site.name).state);
    fs_err::create_dir_all(&state_dir).map_err(|e| Failure::failed(format!("{holder}: {e}")))?;
    let started = timefmt::iso_utc(timefmt::now_unix());
    match lock::acquire(&state_dir.join("lock"), &holder, &started) {
        Ok(l) => Ok((site, l)),
        Err(e @ LockError::Busy { .. }) => Err(Failure::busy(format!("{holder}: {e}"))),
        Err(e) => Err(Failure::failed(format!("{holder}: {e}"))),
    }
}

/// Runs `f` with `control`, or with the root's own (systemd on a real
/// system, nothing under a test root) when the caller gave none.
pub(super) fn with_control<T>(
    root: &Root,
    control: Option<&mut dyn Control>,
    f: impl FnOnce(&mut dyn Control) -> T,
) -> T {
    match control {
        Some(c) => f(c),
        None => f(control::for_root(root).as_mut()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testkit::Fixture;
    use crate::system::failure::Exit;

    #[test]
    fn a_held_lock_is_busy_and_an_unknown_site_is_bad_usage() {
        let fx = Fixture::new();
        let (site, _held) = site_and_lock(&fx.root, "acme", "sum-deploy").unwrap();
        assert_eq!(site.name, "acme");
        let Err(busy) = site_and_lock(&fx.root, "acme", "sumctl rollback") else {
            panic!("a second lock was taken");
        };
        assert_eq!(busy.exit, Exit::Busy);
        assert!(
            busy.message.starts_with("sumctl rollback acme: ")
                && busy.message.contains("sum-deploy acme"),
            "{}",
            busy.message
        );
        let Err(unknown) = site_and_lock(&fx.root, "other", "sum-deploy") else {
            panic!("a site without a file was loaded");
        };
        assert_eq!(unknown.exit, Exit::Usage);
        assert!(
            unknown.message.starts_with("sum-deploy: "),
            "{}",
            unknown.message
        );
    }
}
