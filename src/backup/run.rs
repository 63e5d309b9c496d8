//! The `sum-backup` command: lock, take a verified backup, apply retention,
//! or list. Exit codes as in SPEC §7: 0 ok, 1 failed (nothing published),
//! 2 bad usage or invalid site file, 3 site busy. A backup that shrank is
//! still published and verified, so it exits 0; it is reported by
//! `warning:` lines, a failure ping and its manifest (docs/backups.md,
//! "Shrunken backups").

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::backup::catalog::{self, Manifest};
use crate::backup::command;
use crate::backup::dump::{self, DumpSource};
use crate::backup::ping::Event;
use crate::backup::retention::{self, Keep};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::system::failure::{exit_code, Failure};
use crate::system::timefmt;

pub struct Args<'a> {
    pub site: &'a str,
    pub list: bool,
    pub json: bool,
    /// Show what retention would keep (and why) and delete; take no
    /// backup, delete nothing.
    pub dry_run: bool,
    /// The database really is much smaller now: a backup that shrank is
    /// recorded as accepted, counts, and later ones are compared with it.
    pub accept_shrink: bool,
    /// Take no backup: only the off-host copy of what is there.
    pub offsite_only: bool,
}

pub fn run(root: &Root, args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = backup(root, args, out, err);
    exit_code(result, err)
}

/// `sum-backup`: lists, plans retention (a dry run), or takes a verified
/// backup and applies retention, under the site's lock.
fn backup(
    root: &Root,
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let site = command::load_site(root, args.site)?;
    let dir = dump::backups_dir(root, &site.name);
    if args.list {
        return list_backups(root, &site, &dir, args.json, out);
    }
    let _lock = command::lock_site(root, &site, "sum-backup")?;
    let keep = Keep {
        daily: site.backup.keep_daily,
        weekly: site.backup.keep_weekly,
        monthly: site.backup.keep_monthly,
    };
    if args.dry_run {
        return apply_retention(root, &site, &dir, keep, true, out, err);
    }
    if args.offsite_only {
        if crate::backup::offsite::target(&site).is_none() {
            return Err(Failure::usage(format!(
                "--offsite-only: site {} has no [backup] offsite in {}",
                site.name,
                site.source.display()
            )));
        }
        return copy_offsite(root, &site, &dir, keep, out);
    }
    let context = format!("sum-backup {}", site.name);
    prepare_dir(&site, &dir, out).map_err(|f| f.context(&context))?;
    let started = SystemTime::now();
    let taken = take_backup(root, &site, &dir, args.accept_shrink, out, err);
    // Off-host first, so that local retention never removes a backup
    // before the copy had its chance; then retention, whatever the copy did.
    let mut offsite_seconds = None;
    let (offsite, retention) = match &taken {
        Ok(()) => {
            let copying = SystemTime::now();
            let copied = copy_offsite(root, &site, &dir, keep, out);
            offsite_seconds = copying.elapsed().ok().map(|d| d.as_secs_f64());
            (
                Some(copied),
                apply_retention(root, &site, &dir, keep, false, out, err),
            )
        }
        Err(_) => (None, Ok(())),
    };
    // The run's figures for Prometheus (docs/monitoring.md); a failure to
    // write them is a warning.
    let run = crate::backup::metrics::Run {
        started,
        ok: taken.is_ok(),
        offsite_ok: (offsite.as_ref().map(Result::is_ok))
            .filter(|_| crate::backup::offsite::target(&site).is_some()),
        offsite_seconds,
    };
    if let Err(e) = crate::backup::metrics::write(root, &site, &dir, &run) {
        let _ = writeln!(err, "{}", warning(&site, &e));
    }
    taken?;
    retention?;
    offsite.unwrap_or(Ok(()))
}

/// The persistent media directory wherever the live release's settings
/// put it (a linked in-release MEDIA_ROOT is recorded as media/), when
/// `[backup] media` is on and it exists.
fn media_dir(root: &Root, site: &Site) -> Option<std::path::PathBuf> {
    let dir = crate::backup::media::site_media_dir(root, &site.name);
    (site.backup.media && dir.is_dir()).then_some(dir)
}

/// The off-host copy (`[backup] offsite`, see `offsite`). A failure fails
/// the run and pings `/fail`, but the local backup stays published.
fn copy_offsite(
    root: &Root,
    site: &Site,
    dir: &Path,
    keep: Keep,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let Some(target) = crate::backup::offsite::target(site) else {
        return Ok(());
    };
    let media = media_dir(root, site);
    // The same backups pinned as locally (pre-migrate backups of releases
    // on disk); none read, no remote retention (local retention warns).
    let pinned = pinned_backups(root, site, &mut std::io::sink());
    let retain = pinned.as_ref().map(|p| (keep, p));
    match crate::backup::offsite::sync(root, site, dir, media.as_deref(), retain) {
        Ok(report) => {
            if !report.copied.is_empty() {
                let _ = writeln!(
                    out,
                    "off-host: copied {} file(s) to {}",
                    report.copied.len(),
                    target.dir
                );
            }
            for (name, check) in &report.verified {
                let _ = writeln!(out, "off-host: verified {name} on {} ({check})", target.dir);
            }
            if let Some(m) = &report.media {
                let _ = writeln!(out, "off-host: {m}");
            }
            for name in &report.deleted {
                let _ = writeln!(
                    out,
                    "off-host: retention deleted {name} from {}",
                    target.dir
                );
            }
            Ok(())
        }
        Err(e) => {
            let msg = format!(
                "the off-host copy to {} failed; the local backup is verified and kept, and \
                 the next run copies what is missing:\n{e}",
                target.dir
            );
            let mut failure =
                Failure::failed(msg.as_str()).context(&format!("sum-backup {}", site.name));
            if let Some(w) = ping(site, Event::Fail, &msg) {
                failure.message.push('\n');
                failure.message.push_str(&warning(site, &w));
            }
            Err(failure)
        }
    }
}

/// The backups directory, private, without the leftovers of an
/// interrupted run.
fn prepare_dir(site: &Site, dir: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::failed(e.to_string());
    create_private_dir(dir).map_err(failed)?;
    for p in dump::clean_partials(&site.name, dir).map_err(failed)? {
        let _ = writeln!(
            out,
            "removed the leftover of an interrupted run: {}",
            p.display()
        );
    }
    Ok(())
}

/// Takes one verified backup into `dir`, pinging the site's `ping_url`
/// at the start and with the outcome.
fn take_backup(
    root: &Root,
    site: &Site,
    dir: &Path,
    accept_shrink: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let context = format!("sum-backup {}", site.name);
    let account = crate::system::accounts::site_account(root, &site.name);
    let layout = SiteLayout::new(&site.name);
    let media_dir = crate::backup::media::site_media_dir(root, &site.name);
    let release = crate::system::fsutil::link_name(&root.path(&layout.app));
    warn(site, ping(site, Event::Start, ""), err);
    // A failure, pinged: nothing was published.
    let failed = |why: String| {
        let msg = format!("backup failed, nothing was published: {why}");
        let mut failure = Failure::failed(msg.as_str()).context(&context);
        // A failed ping is reported under the failure it announces.
        if let Some(w) = ping(site, Event::Fail, &msg) {
            failure.message.push('\n');
            failure.message.push_str(&warning(site, &w));
        }
        failure
    };
    let db = crate::backup::appdb::resolve(root, site, account).map_err(failed)?;
    let _ = writeln!(out, "the site's database: {}", db.source);
    for w in &db.warnings {
        let _ = writeln!(err, "{}", warning(site, w));
    }
    let src = DumpSource {
        release: release.as_deref(),
        conn: &db.conn,
        run_as: account,
        media_dir: (site.backup.media && media_dir.is_dir()).then_some(media_dir.as_path()),
        accept_shrink,
    };
    let m = dump::take(site, dir, &src, SystemTime::now()).map_err(|e| failed(e.to_string()))?;
    let media_dir = site.backup.media.then_some(media_dir.as_path());
    let summary = describe_taken(dir, &m, media_dir);
    report_taken(root, site, &summary, &m, accept_shrink, out, err);
    Ok(())
}

/// What a run took: the dump, and the media archive beside it or why there
/// is none (`media_dir` is None when `[backup] media = false`).
fn describe_taken(dir: &Path, m: &Manifest, media_dir: Option<&Path>) -> String {
    let mut summary = format!(
        "verified backup {} ({} bytes, {} uncompressed, sha256 {}) of database {} (server {}){}",
        dir.join(&m.file).display(),
        m.size,
        m.uncompressed_size,
        m.sha256,
        m.database,
        m.server_version,
        m.contents.map(|c| format!(": {c}")).unwrap_or_default()
    );
    match (&m.media, media_dir) {
        (Some(media), Some(from)) => summary.push_str(&format!(
            "\nverified media archive {} beside it ({} bytes, {} entries, sha256 {}) of {}",
            dir.join(&media.file).display(),
            media.size,
            media.entries,
            media.sha256,
            from.display()
        )),
        (None, Some(from)) => summary.push_str(&format!(
            "\nno media archive: {} is not a directory",
            from.display()
        )),
        _ => {}
    }
    summary
}

/// Says what was taken. A backup that shrank is verified and published, but
/// gets `warning:` lines (priority warning in the journal) and a failure
/// ping: the dead-man's switch is how an operator hears of it.
fn report_taken(
    root: &Root,
    site: &Site,
    summary: &str,
    m: &Manifest,
    accept_shrink: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) {
    let _ = writeln!(out, "{summary}");
    let Some(what) = m.unaccepted_shrink() else {
        if let Some(s) = &m.shrunk {
            let what = s.describe(&m.database, m.contents.unwrap_or_default());
            let _ = writeln!(
                out,
                "it shrank ({what}); accepted (--accept-shrink): it counts, and later backups are compared with it"
            );
        } else if accept_shrink {
            let _ = writeln!(out, "--accept-shrink: it did not shrink; nothing to accept");
        }
        warn(site, ping(site, Event::Success, summary), err);
        return;
    };
    let env = root.path(SiteLayout::new(&site.name).env_file);
    let lines = [
        format!("this backup SHRANK: {what}"),
        format!(
            "is DATABASE_URL in {} right? Retention keeps this backup without counting it, so \
             the older ones keep their places. If the database really is this small now, run \
             `sum-backup {} --accept-shrink` (sum-backup(8), SHRUNKEN BACKUPS)",
            env.display(),
            site.name
        ),
    ];
    for l in &lines {
        let _ = writeln!(err, "{}", warning(site, l));
    }
    let body = format!("{summary}\n{}", lines.join("\n"));
    warn(site, ping(site, Event::Fail, &body), err);
}

/// Tells the site's `ping_url`, if any: what went wrong if the ping failed.
fn ping(site: &Site, event: Event, body: &str) -> Option<String> {
    let base = site.backup.ping_url.as_ref()?;
    crate::backup::ping::send(base, event, body)
        .err()
        .map(|w| w.to_string())
}

fn warning(site: &Site, what: &str) -> String {
    format!("sum-backup {}: warning: {what}", site.name)
}

/// A failed ping is only a warning.
fn warn(site: &Site, failed_ping: Option<String>, err: &mut dyn Write) {
    if let Some(w) = failed_ping {
        let _ = writeln!(err, "{}", warning(site, &w));
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::create_dir_all(dir)?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Applies retention (or, for a dry run, says what it would do): every
/// backup gets a line saying whether it is kept and why, or deleted.
fn apply_retention(
    root: &Root,
    site: &Site,
    dir: &Path,
    keep: Keep,
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let listed = list_dir(site, dir)?;
    let Some(pinned) = pinned_backups(root, site, err) else {
        return Ok(());
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
            delete_backup(dir, &d.file)?;
        }
        let _ = writeln!(out, "{verb_delete} {}", path.display());
    }
    if dry_run && !decisions.iter().any(retention::Decision::deleted) {
        let _ = writeln!(out, "retention would delete nothing");
    }
    Ok(())
}

/// The backups deploys still need to go back (taken before a migration);
/// None, with a warning, when the history cannot be read: then retention
/// deletes nothing.
fn pinned_backups(
    root: &Root,
    site: &Site,
    err: &mut dyn Write,
) -> Option<std::collections::BTreeMap<String, String>> {
    let layout = SiteLayout::new(&site.name);
    match crate::site_state::pre_migrate_backups(
        &root.path(&layout.state),
        &root.path(&layout.releases),
    ) {
        Ok(p) => Some(p),
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
            None
        }
    }
}

/// Deletes a backup with its manifest and media archive.
fn delete_backup(dir: &Path, file: &str) -> Result<(), Failure> {
    let media = dir.join(crate::backup::media::media_name(file));
    for p in [dir.join(file), dir.join(format!("{file}.json")), media] {
        match fs_err::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Failure::failed(e.to_string()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn list_dir(site: &Site, dir: &Path) -> Result<Vec<catalog::Listed>, Failure> {
    catalog::list(&site.name, dir).map_err(|e| Failure::failed(e.to_string()))
}

/// `sum-backup --list` and `sumctl backups`: the site's backups, newest
/// first, as a table or JSON; a backup that shrank is marked SHRUNK and
/// explained under the table.
pub(crate) fn list_backups(
    root: &Root,
    site: &Site,
    dir: &Path,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let listed = list_dir(site, dir)?;
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&with_offsite(root, site, &listed)).expect("serializes")
        );
        return Ok(());
    }
    if listed.is_empty() {
        let _ = writeln!(out, "no backups of {} in {}", site.name, dir.display());
        list_offsite(root, site, &listed, out);
        return Ok(());
    }
    let now = timefmt::now_unix();
    let _ = writeln!(
        out,
        "{:<36} {:>6} {:>12} {:>7} {:>12} {:>12} {:>7}  STATE",
        "BACKUP", "AGE", "SIZE", "TABLES", "ROWS", "MEDIA", "ENTRIES"
    );
    for b in &listed {
        let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
        let media = match (&b.media, b.media_missing) {
            (_, true) => "MISSING".to_string(),
            (m, false) => count(m.as_ref().map(|m| m.size)),
        };
        let _ = writeln!(
            out,
            "{:<36} {:>6} {:>12} {:>7} {:>12} {:>12} {:>7}  {}",
            b.file,
            age(now.saturating_sub(b.unix)),
            b.size,
            count(b.contents.map(|c| c.tables)),
            count(b.contents.map(|c| c.rows)),
            media,
            count(b.media.as_ref().map(|m| m.entries)),
            state(b)
        );
    }
    explain_media(&listed, dir, out);
    list_offsite(root, site, &listed, out);
    for b in listed.iter().filter(|b| b.is_shrunk()) {
        let what = b.shrunk.as_ref().map(|s| {
            s.describe(
                b.database.as_deref().unwrap_or(""),
                b.contents.unwrap_or_default(),
            )
        });
        let _ = writeln!(
            out,
            "SHRUNK {}: {}; retention keeps it without counting it (sum-backup(8), SHRUNKEN BACKUPS)",
            b.file,
            what.unwrap_or_default()
        );
    }
    Ok(())
}

/// The JSON listing: each backup with `"offsite"`, its recorded off-host
/// copy (`target`, `check`, `verified_utc`), or null when it has none or
/// the site copies nowhere.
fn with_offsite(root: &Root, site: &Site, listed: &[catalog::Listed]) -> serde_json::Value {
    let record = crate::backup::offsite::target(site)
        .map(|t| crate::backup::offsite::load_record(root, &site.name, &t));
    let items = listed.iter().map(|b| {
        let mut v = serde_json::to_value(b).expect("serializes");
        let copy = record.as_ref().and_then(|r| {
            r.copies.get(&b.file).map(|c| {
                serde_json::json!({
                    "target": r.target,
                    "check": c.check,
                    "verified_utc": c.verified_utc,
                })
            })
        });
        if let Some(obj) = v.as_object_mut() {
            obj.insert("offsite".into(), copy.unwrap_or(serde_json::Value::Null));
        }
        v
    });
    serde_json::Value::Array(items.collect())
}

/// Under the table, for a site with `[backup] offsite`: each backup's
/// off-host copy as the runs recorded it (`state/offsite.json`, no call to
/// the remote), local and off-host side by side.
fn list_offsite(root: &Root, site: &Site, listed: &[catalog::Listed], out: &mut dyn Write) {
    let Some(target) = crate::backup::offsite::target(site) else {
        return;
    };
    let record = crate::backup::offsite::load_record(root, &site.name, &target);
    let _ = writeln!(
        out,
        "OFF-HOST {} (as the last runs recorded it):",
        target.dir
    );
    let mut names: BTreeSet<&str> = record.copies.keys().map(String::as_str).collect();
    names.extend(
        listed
            .iter()
            .filter(|b| b.verified)
            .map(|b| b.file.as_str()),
    );
    for name in names.iter().rev() {
        let here = listed.iter().any(|b| b.file == *name && b.verified);
        let there = match record.copies.get(*name) {
            Some(c) => format!("verified ({}) {}", c.check, c.verified_utc),
            None => "NOT OFF-HOST YET".to_string(),
        };
        let place = if here {
            "here and off-host"
        } else {
            "off-host only"
        };
        let place = if record.copies.contains_key(*name) {
            place
        } else {
            "here only"
        };
        let _ = writeln!(out, "  {name:<36} {there:<44} {place}");
    }
    if let Some(m) = &record.media_utc {
        let _ = writeln!(out, "  media mirrored to {}/media at {m}", target.dir);
    }
}

/// Under the table: where the media archives are, and which are missing.
fn explain_media(listed: &[catalog::Listed], dir: &Path, out: &mut dyn Write) {
    if let Some(m) = listed.iter().find_map(|b| b.media.as_ref()) {
        let _ = writeln!(
            out,
            "MEDIA, ENTRIES: the size in bytes and the entries (files, directories, links) of \
             the media archive beside each dump in {}, such as {}",
            dir.display(),
            m.file
        );
    }
    for b in listed.iter().filter(|b| b.media_missing) {
        let _ = writeln!(
            out,
            "MISSING {}: its manifest records a media archive that is not there, or not with \
             the size recorded; sum-restore --media refuses it",
            crate::backup::media::media_name(&b.file)
        );
    }
}

fn state(b: &catalog::Listed) -> &'static str {
    match (&b.shrunk, b.verified) {
        (_, false) => "UNVERIFIED",
        (None, true) => "verified",
        (Some(s), true) if s.accepted => "verified, shrank (accepted)",
        (Some(_), true) => "verified, SHRUNK",
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
