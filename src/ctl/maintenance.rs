//! `sumctl maintenance <site> on|off|status`: the maintenance flag
//! `/srv/sum/<site>/maintenance`. Caddy looks for the file on every request
//! (docs/caddy.md), so switching needs no reload: while it exists every
//! request gets 503 with `Retry-After: 120`.
//!
//! The flag says who set it and when. `sum-restore` sets it for the length
//! of a restore; `off` refuses to lift a running restore's flag (exit 3) and
//! lifts the flag of a restore that no longer runs.

use std::io::Write;
use std::path::Path;

use crate::config::layout::{Root, SiteLayout, RESTORE_FLAG_TEXT};
use crate::config::site::Site;
use crate::config::sites::load_site;
use crate::site_state::lock::{self, LockError};
use crate::system::failure::{exit_code, Failure};
use crate::system::fsutil::write_atomic;
use crate::system::timefmt;

/// What `sumctl maintenance` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
    Status,
}

/// Runs `sumctl maintenance`; the exit code of SPEC §7.
pub fn maintenance(
    root: &Root,
    name: &str,
    switch: Switch,
    who: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    exit_code(switch_flag(root, name, switch, who, out), err)
}

fn switch_flag(
    root: &Root,
    name: &str,
    switch: Switch,
    who: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let site = load_site(root, name).map_err(Failure::usage)?;
    let layout = SiteLayout::new(&site.name);
    let flag = root.path(&layout.maintenance_flag);
    let said = match switch {
        Switch::Status => status_line(&site, &flag),
        Switch::On => switch_on(&site, &flag, who)?,
        Switch::Off => switch_off(root, &site, &layout, &flag)?,
    };
    let _ = writeln!(out, "{said}");
    Ok(())
}

/// Whether maintenance is on for a site, and the flag's own words.
pub fn flag_text(root: &Root, site: &str) -> Option<String> {
    let flag = root.path(SiteLayout::new(site).maintenance_flag);
    read_flag(&flag)
}

fn read_flag(flag: &Path) -> Option<String> {
    if !flag.exists() {
        return None;
    }
    let text = fs_err::read_to_string(flag).unwrap_or_default();
    let first = text.lines().next().unwrap_or("").trim();
    Some(if first.is_empty() {
        "set by hand".to_string()
    } else {
        crate::system::text::prefix(first, 200).to_string()
    })
}

fn status_line(site: &Site, flag: &Path) -> String {
    match read_flag(flag) {
        Some(how) => format!(
            "maintenance is on for {}: {how}; https://{}/ answers 503",
            site.name, site.domain
        ),
        None => format!("maintenance is off for {}", site.name),
    }
}

fn switch_on(site: &Site, flag: &Path, who: &str) -> Result<String, Failure> {
    if let Some(how) = read_flag(flag) {
        return Ok(format!(
            "maintenance is already on for {}: {how}",
            site.name
        ));
    }
    let home = flag.parent().unwrap_or(Path::new("/"));
    if !home.is_dir() {
        return Err(Failure::failed(format!(
            "sumctl maintenance {}: {} does not exist; a site that was never \
             deployed already answers 503 \"not deployed yet\"",
            site.name,
            home.display()
        )));
    }
    let since = timefmt::iso_utc(timefmt::now_unix());
    let text = format!("on since {since} by {who}\n");
    write_atomic(flag, text.as_bytes(), 0o644)
        .map_err(|e| Failure::failed(format!("sumctl maintenance {} on: {e}", site.name)))?;
    Ok(format!(
        "maintenance is on for {}: https://{}/ answers 503 with Retry-After: 120 \
         (no reload needed); `sumctl maintenance {} off` ends it",
        site.name, site.domain, site.name
    ))
}

fn switch_off(
    root: &Root,
    site: &Site,
    layout: &SiteLayout,
    flag: &Path,
) -> Result<String, Failure> {
    let Some(how) = read_flag(flag) else {
        return Ok(format!("maintenance is already off for {}", site.name));
    };
    if how.starts_with(RESTORE_FLAG_TEXT) {
        refuse_while_restoring(root, site, layout)?;
    }
    fs_err::remove_file(flag)
        .map_err(|e| Failure::failed(format!("sumctl maintenance {} off: {e}", site.name)))?;
    Ok(format!(
        "maintenance is off for {}: https://{}/ serves again (it was {how})",
        site.name, site.domain
    ))
}

/// A restore sets the flag and lifts it when it ends; while it runs it
/// holds the site's lock, and its flag stays.
fn refuse_while_restoring(root: &Root, site: &Site, layout: &SiteLayout) -> Result<(), Failure> {
    let lock_path = root.path(&layout.state).join("lock");
    if !lock_path.exists() {
        return Ok(());
    }
    let now = timefmt::iso_utc(timefmt::now_unix());
    let what = format!("sumctl maintenance {} off", site.name);
    match lock::acquire(&lock_path, &what, &now) {
        Ok(_released_at_once) => Ok(()),
        Err(e @ LockError::Busy { .. }) => Err(Failure::busy(format!(
            "{what}: a restore set this flag and it still runs ({e})"
        ))),
        Err(LockError::Io(e)) => Err(Failure::failed(format!("{what}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs_err::create_dir_all(root.sites_dir()).unwrap();
        fs_err::write(
            root.sites_dir().join("acme.toml"),
            "domain = \"acme.example.com\"\n[git]\nurl = \"https://example.com/acme.git\"\n",
        )
        .unwrap();
        fs_err::create_dir_all(root.path(SiteLayout::new("acme").state)).unwrap();
        (dir, root)
    }

    fn run(root: &Root, switch: Switch) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = maintenance(root, "acme", switch, "alice (sudo)", &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn on_status_off_round_trip_writes_and_removes_the_flag() {
        let (_dir, root) = site_root();
        let flag = root.path(SiteLayout::new("acme").maintenance_flag);
        let (code, out, _) = run(&root, Switch::Status);
        assert_eq!((code, out.as_str()), (0, "maintenance is off for acme\n"));

        let (code, out, _) = run(&root, Switch::On);
        assert_eq!(code, 0);
        assert!(out.contains("answers 503 with Retry-After: 120"), "{out}");
        let text = fs_err::read_to_string(&flag).unwrap();
        assert!(
            text.starts_with("on since ") && text.ends_with(" by alice (sudo)\n"),
            "{text}"
        );
        let mode = fs_err::metadata(&flag).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644
        );

        let (code, out, _) = run(&root, Switch::On);
        assert_eq!(code, 0);
        assert!(
            out.starts_with("maintenance is already on for acme: on since "),
            "{out}"
        );
        let (_, out, _) = run(&root, Switch::Status);
        assert!(
            out.contains("by alice (sudo); https://acme.example.com/ answers 503"),
            "{out}"
        );

        let (code, out, _) = run(&root, Switch::Off);
        assert_eq!(code, 0);
        assert!(
            out.starts_with("maintenance is off for acme: https://acme.example.com/ serves again"),
            "{out}"
        );
        assert!(!flag.exists());
        let (code, out, _) = run(&root, Switch::Off);
        assert_eq!(
            (code, out.as_str()),
            (0, "maintenance is already off for acme\n")
        );
    }

    #[test]
    fn a_running_restores_flag_stays_and_a_dead_ones_is_lifted() {
        let (_dir, root) = site_root();
        let layout = SiteLayout::new("acme");
        let flag = root.path(&layout.maintenance_flag);
        fs_err::write(&flag, "sum-restore\n").unwrap();
        let held = lock::acquire(
            &root.path(&layout.state).join("lock"),
            "sum-restore acme",
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let (code, out, err) = run(&root, Switch::Off);
        assert_eq!(code, 3, "{out}{err}");
        assert!(
            err.contains("a restore set this flag and it still runs"),
            "{err}"
        );
        assert!(err.contains("sum-restore acme (pid "), "{err}");
        assert!(flag.exists());
        drop(held);
        let (code, out, _) = run(&root, Switch::Off);
        assert_eq!(code, 0);
        assert!(out.contains("(it was sum-restore)"), "{out}");
        assert!(!flag.exists());
    }

    #[test]
    fn an_unknown_site_is_a_usage_error_and_a_never_deployed_one_is_refused() {
        let (_dir, root) = site_root();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = maintenance(&root, "nope", Switch::On, "x", &mut out, &mut err);
        assert_eq!(code, 2);
        assert!(String::from_utf8_lossy(&err).contains("no site `nope`"));
        fs_err::remove_dir_all(root.path(SiteLayout::new("acme").home)).unwrap();
        let (code, _, err) = run(&root, Switch::On);
        assert_eq!(code, 1);
        assert!(err.contains("does not exist"), "{err}");
        assert!(!root.path(SiteLayout::new("acme").maintenance_flag).exists());
    }
}
