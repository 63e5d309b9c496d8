//! The `sum-backup` command: lock, take a verified backup, apply retention,
//! or list. Exit codes as in SPEC §7: 0 ok, 1 failed (nothing published),
//! 2 bad usage or invalid site file, 3 site busy.

use std::io::Write;
use std::time::SystemTime;

use crate::backup::dump::{self, DumpSource};
use crate::backup::retention::{self, Keep};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::site_state::lock::{self, LockError};
use crate::system::timefmt;

pub struct Args<'a> {
    pub site: &'a str,
    pub list: bool,
    pub json: bool,
    /// Show what retention would keep (and why) and delete; take no
    /// backup, delete nothing.
    pub dry_run: bool,
}

pub fn run(root: &Root, args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let site = match crate::config::sites::load_site(root, args.site) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return 2;
        }
    };
    let dir = dump::backups_dir(root, &site.name);
    if args.list {
        return list(&site, &dir, args.json, out, err);
    }
    let layout = SiteLayout::new(&site.name);
    let state = root.path(&layout.state);
    if let Err(e) = fs_err::create_dir_all(&state) {
        let _ = writeln!(err, "{e}");
        return 1;
    }
    let started = timefmt::iso_utc(timefmt::now_unix());
    let _lock = match lock::acquire(
        &state.join("lock"),
        &format!("sum-backup {}", site.name),
        &started,
    ) {
        Ok(l) => l,
        Err(e @ LockError::Busy { .. }) => {
            let _ = writeln!(err, "sum-backup {}: {e}", site.name);
            return 3;
        }
        Err(e) => {
            let _ = writeln!(err, "sum-backup {}: {e}", site.name);
            return 1;
        }
    };
    let keep = Keep {
        daily: site.backup.keep_daily,
        weekly: site.backup.keep_weekly,
        monthly: site.backup.keep_monthly,
    };
    if args.dry_run {
        return prune(root, &site, &dir, keep, true, out, err);
    }
    if let Err(e) = create_private_dir(&dir) {
        let _ = writeln!(err, "sum-backup {}: {e}", site.name);
        return 1;
    }
    match dump::clean_partials(&site.name, &dir) {
        Ok(removed) => {
            for p in removed {
                let _ = writeln!(
                    out,
                    "removed the leftover of an interrupted run: {}",
                    p.display()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(err, "sum-backup {}: {e}", site.name);
            return 1;
        }
    }
    let account = crate::system::accounts::site_account(root, &site.name);
    let gid = account.map(|(_, g)| g);
    let url = match dump::database_url(root, &site.name, gid) {
        Ok(u) => u,
        Err(e) => {
            let _ = writeln!(err, "sum-backup {}: {e}", site.name);
            return 1;
        }
    };
    // The persistent media directory wherever the live release's settings
    // put it (a linked in-release MEDIA_ROOT is recorded as media/).
    let media_dir = root.path(
        crate::site_state::live_paths(root, &site.name)
            .media_dir
            .unwrap_or_else(|| layout.media_dir.clone()),
    );
    let release = crate::system::fsutil::link_name(&root.path(&layout.app));
    let src = DumpSource {
        release: release.as_deref(),
        database_url: &url,
        run_as: account,
        media_dir: (site.backup.media && media_dir.is_dir()).then_some(media_dir.as_path()),
    };
    let ping = |event, body: &str, err: &mut dyn Write| {
        if let Some(base) = &site.backup.ping_url {
            if let Err(w) = crate::backup::ping::send(base, event, body) {
                let _ = writeln!(err, "sum-backup {}: warning: {w}", site.name);
            }
        }
    };
    ping(crate::backup::ping::Event::Start, "", err);
    match dump::take(&site, &dir, &src, SystemTime::now()) {
        Ok(m) => {
            let summary = format!(
                "verified backup {} ({} bytes, {} uncompressed, sha256 {}) of database {} (server {})",
                dir.join(&m.file).display(),
                m.size,
                m.uncompressed_size,
                m.sha256,
                m.database,
                m.server_version
            );
            let _ = writeln!(out, "{summary}");
            ping(crate::backup::ping::Event::Success, &summary, err);
        }
        Err(e) => {
            let msg = format!("backup failed, nothing was published: {e}");
            let _ = writeln!(err, "sum-backup {}: {msg}", site.name);
            ping(crate::backup::ping::Event::Fail, &msg, err);
            return 1;
        }
    }
    prune(root, &site, &dir, keep, false, out, err)
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::create_dir_all(dir)?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Applies retention (or, for a dry run, says what it would do): every
/// backup gets a line saying whether it is kept and why, or deleted.
fn prune(
    root: &Root,
    site: &Site,
    dir: &std::path::Path,
    keep: Keep,
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let listed = match dump::list(&site.name, dir) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "failed to list {}: {e}", dir.display());
            return 1;
        }
    };
    let layout = SiteLayout::new(&site.name);
    let pinned = match crate::site_state::pre_migrate_backups(
        &root.path(&layout.state),
        &root.path(&layout.releases),
    ) {
        Ok(p) => p,
        Err(e) => {
            // Without the history a deploy's way back could go: keep all.
            let _ = writeln!(
                err,
                "sum-backup {}: warning: retention skipped, nothing deleted: cannot tell which \
                 backups deploys still need (reading {} and {}: {e})",
                site.name,
                root.path(&layout.state).display(),
                root.path(&layout.releases).display()
            );
            return 0;
        }
    };
    let decisions = retention::plan(&listed, keep, &pinned);
    let (verb_keep, verb_delete) = if dry_run {
        ("would keep", "would delete")
    } else {
        ("retention: kept", "retention: deleted")
    };
    for d in &decisions {
        let path = dir.join(&d.file);
        if !d.deleted() {
            let _ = writeln!(out, "{verb_keep} {} ({})", path.display(), d.why());
            continue;
        }
        if !dry_run {
            let media = dir.join(crate::backup::media::media_name(&d.file));
            for p in [path.clone(), dir.join(format!("{}.json", d.file)), media] {
                match fs_err::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        let _ = writeln!(err, "{e}");
                        return 1;
                    }
                    _ => {}
                }
            }
        }
        let _ = writeln!(out, "{verb_delete} {}", path.display());
    }
    if dry_run && !decisions.iter().any(retention::Decision::deleted) {
        let _ = writeln!(out, "retention would delete nothing");
    }
    0
}

pub(crate) fn list(
    site: &Site,
    dir: &std::path::Path,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let listed = match dump::list(&site.name, dir) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "failed to list {}: {e}", dir.display());
            return 1;
        }
    };
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&listed).expect("serializes")
        );
        return 0;
    }
    if listed.is_empty() {
        let _ = writeln!(out, "no backups of {} in {}", site.name, dir.display());
        return 0;
    }
    let now = timefmt::now_unix();
    let _ = writeln!(out, "{:<36} {:>10} {:>12}  STATE", "BACKUP", "AGE", "SIZE");
    for b in listed {
        let _ = writeln!(
            out,
            "{:<36} {:>10} {:>12}  {}",
            b.file,
            age(now.saturating_sub(b.unix)),
            b.size,
            if b.verified { "verified" } else { "UNVERIFIED" }
        );
    }
    0
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
