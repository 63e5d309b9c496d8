//! `sum-restore <site> FILE|latest --i-know-this-will-overwrite [--into DB]`
//! (SPEC §8): a restore that cannot half-happen.
//!
//! The file is checked before anything is touched (a backup whose manifest
//! hashes it in parts: its size, gzip header and end, first and last parts;
//! any other file: completely); the live database gets a safety backup
//! first; the site's app units are stopped and Caddy answers "maintenance"
//! meanwhile; and the load (`load`) runs as the site's database user in one
//! transaction that first drops everything that user owns and commits only
//! when every byte of the file matched, so nothing of a newer schema
//! survives and a failed load rolls back to exactly what was there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::backup::catalog::{self, Manifest};
use crate::backup::dump::{self, DumpSource};
use crate::backup::offsite_fetch::stage_restore_media;
use crate::backup::restore_media::{self, MediaError, Staged, Swapped};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::probe::pgconn::PgConn;
use crate::system::control::Control;

/// What to restore and where.
pub struct Request<'a> {
    /// A backup file (a path, or a name in the site's backups directory) or `latest`.
    pub what: &'a str,
    /// Restore into this database instead of the live one (a rehearsal).
    pub into: Option<&'a str>,
    /// Whether the backup's media archive is restored too, or only it.
    pub media: Media,
}

/// Which parts of a backup a restore brings back (docs/backups.md,
/// "Restore").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    /// The database only.
    #[default]
    No,
    /// The database, then the media archive of the same backup (`--media`).
    Also,
    /// The media archive only (`--media-only`); the database is not touched.
    Only,
}

#[derive(Debug)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> RestoreError {
    RestoreError(msg.into())
}

fn merr(e: MediaError) -> RestoreError {
    RestoreError(e.message)
}

/// Resolves `latest` or a file argument to a backup path. With `media`,
/// `latest` is the newest verified backup that has a media archive (the
/// safety backups restores take have none); a newer one passed over is
/// named in `log`.
pub fn resolve(
    site: &str,
    dir: &Path,
    what: &str,
    media: bool,
    log: &mut dyn Write,
) -> Result<PathBuf, RestoreError> {
    if what == "latest" {
        let listed = catalog::list(site, dir).map_err(|e| err(e.to_string()))?;
        let mut verified = listed.iter().filter(|b| b.verified);
        let newest = verified.clone().next();
        let found = if media {
            verified.find(|b| b.media.is_some())
        } else {
            newest
        };
        let Some(b) = found else {
            let with = if media { " with a media archive" } else { "" };
            return Err(err(format!(
                "no verified backup of {site}{with} in {}",
                dir.display()
            )));
        };
        if let Some(newer) = newest.filter(|n| n.file != b.file) {
            let _ = writeln!(
                log,
                "latest: {} has no media archive; the newest backup with one is {}",
                newer.file, b.file
            );
        }
        return Ok(dir.join(&b.file));
    }
    let p = Path::new(what);
    let path = if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    if !path.is_file() {
        return Err(err(format!("{} does not exist", path.display())));
    }
    Ok(path)
}

/// Checks the file before anything is touched: against its manifest's
/// part hashes where it has them (the rest is checked as it loads), or
/// completely, and against its manifest when it has one. The manifest, and
/// what was checked, for the log.
pub fn verify(path: &Path) -> Result<(Option<Manifest>, String), RestoreError> {
    let refuse = |e: String| err(format!("refusing to restore: {e}"));
    let manifest = read_manifest(path)?;
    if let Some((m, parts)) = manifest.as_ref().and_then(|m| Some((m, m.parts()?))) {
        crate::backup::load::precheck(path, m, parts).map_err(|e| refuse(e.0))?;
        let what = format!(
            "size, gzip header and end, and the first and last of {} parts against its \
             manifest; every part is checked again as it loads, before the COMMIT",
            parts.sha256.len()
        );
        return Ok((manifest, what));
    }
    let check = dump::verify_file(path).map_err(|e| refuse(e.to_string()))?;
    let Some(m) = manifest else {
        return Ok((None, "gzip and trailer; it has no manifest".to_string()));
    };
    if m.size != check.size || m.sha256 != check.sha256 {
        return Err(err(format!(
            "refusing to restore: {} does not match its manifest (size {} vs {}, sha256 {} vs {})",
            path.display(),
            check.size,
            m.size,
            check.sha256,
            m.sha256
        )));
    }
    Ok((Some(m), "gzip, trailer and manifest".to_string()))
}

/// The manifest beside a backup, if it has one.
fn read_manifest(path: &Path) -> Result<Option<Manifest>, RestoreError> {
    let manifest_path = PathBuf::from(format!("{}.json", path.display()));
    let Ok(bytes) = fs_err::read(&manifest_path) else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        err(format!(
            "refusing to restore: {} is not a manifest: {e}",
            manifest_path.display()
        ))
    })
}

/// Loads a dump into the database of `conn` in one transaction, after
/// dropping everything the connecting user owns there (`load`).
pub fn load(
    path: &Path,
    manifest: Option<&Manifest>,
    conn: &PgConn,
    run_as: Option<(u32, u32)>,
) -> Result<(), RestoreError> {
    use crate::backup::load::LoadError;
    crate::backup::load::load(path, manifest, conn, run_as).map_err(|e| match e {
        LoadError::Failed(why) => err(format!(
            "the load failed and was rolled back; the database is as it was: {why}"
        )),
        LoadError::Mismatch(why) => err(format!(
            "the backup stopped matching as it loaded, so the load was rolled back and the \
             database is as it was: {why}"
        )),
    })
}

/// Checks that the site answers again over its socket (every health path)
/// when it has a live release; what was checked, or None when there is
/// nothing to check (no service manager, or nothing deployed).
fn smoke_check(root: &Root, site: &Site, control: &dyn Control) -> Result<Option<String>, String> {
    let l = SiteLayout::new(&site.name);
    if !control.manages_services() || !root.path(&l.app).exists() {
        return Ok(None);
    }
    let socket = control.socket(site);
    let paths = site.health.paths();
    crate::probe::wait::poll_paths(&socket, &site.domain, paths, site.health.timeout)
        .map(|passes| {
            let over = socket.display().to_string();
            Some(crate::probe::wait::describe_passes(&passes, &over))
        })
        .map_err(|f| f.to_string())
}

/// What a restore did, for the closing report.
#[derive(Debug, Default)]
pub struct Report {
    pub restored: PathBuf,
    pub database: String,
    pub safety_backup: Option<PathBuf>,
    /// The media archive restored, and where the media are now and were.
    pub media: Option<(PathBuf, Swapped)>,
}

/// The backup file `req` names: a local one, or an off-host copy fetched
/// and verified into `dir` first (`offsite_fetch`).
fn source(
    root: &Root,
    site: &Site,
    dir: &Path,
    req: &Request,
    log: &mut dyn Write,
) -> Result<PathBuf, RestoreError> {
    if req.what.starts_with("offsite:") {
        let name = crate::backup::offsite_fetch::fetch(root, site, dir, req.what).map_err(err)?;
        let _ = writeln!(log, "fetched {name} from off-host into {}", dir.display());
        return Ok(dir.join(name));
    }
    resolve(&site.name, dir, req.what, req.media != Media::No, log)
}

/// Restores `req` for `site` into the site's database `conn` (see
/// `appdb`), and with [`Media::Also`] the backup's media archive into the
/// site's media directory.
pub fn restore(
    root: &Root,
    site: &Site,
    req: &Request,
    conn: &PgConn,
    run_as: Option<(u32, u32)>,
    control: &mut dyn Control,
    log: &mut dyn Write,
) -> Result<Report, RestoreError> {
    let dir = dump::backups_dir(root, &site.name);
    let path = source(root, site, &dir, req, log)?;
    let (manifest, checked) = verify(&path)?;
    let _ = writeln!(log, "verified {} ({checked})", path.display());
    // From off-host, the media come from the mirror, not an archive.
    let mirror = req.media != Media::No && req.what.starts_with("offsite:");
    let archive = match req.media {
        Media::No => None,
        _ if mirror => None,
        _ => Some(restore_media::checked_archive(&path, manifest.as_ref(), log).map_err(merr)?),
    };
    if let Some(db) = req.into {
        let report = rehearse(&path, manifest.as_ref(), conn, db, run_as, log)?;
        if archive.is_some() {
            let _ = writeln!(
                log,
                "--into: the media archive was checked but not unpacked; the media directory \
                 was not touched"
            );
        } else if mirror {
            let _ = writeln!(
                log,
                "--into: the off-host media mirror was not copied; the media directory was not \
                 touched"
            );
        }
        return Ok(report);
    }
    // Unpacked before the site stops, so it stops only for the load and
    // two renames; removed again if anything below fails.
    let (staged, from) =
        stage_restore_media(root, site, archive.as_ref(), mirror, run_as, log).map_err(err)?;
    let safety = safety_backup(site, &dir, conn, run_as)?;
    let safety_path = dir.join(&safety.file);
    let _ = writeln!(
        log,
        "safety backup of the current database: {}",
        safety_path.display()
    );
    if let Some(what) = safety.unaccepted_shrink() {
        let _ = writeln!(
            log,
            "warning: the safety backup shrank: {what}; retention keeps it without counting it"
        );
    }
    let flag = root.path(SiteLayout::new(&site.name).maintenance_flag);
    let swapped = behind_maintenance_flag(&flag, || {
        let loaded = Loaded {
            path: &path,
            manifest: manifest.as_ref(),
            conn,
            run_as,
            safety_path: &safety_path,
        };
        replace(root, site, Some(&loaded), staged, control, log)
    })?;
    Ok(Report {
        restored: path,
        database: conn.dbname().unwrap_or("").to_string(),
        safety_backup: Some(safety_path),
        media: from.zip(swapped),
    })
}

/// `--media-only`: restores the media archive of a backup into the site's
/// media directory and leaves the database alone.
pub fn restore_media_only(
    root: &Root,
    site: &Site,
    req: &Request,
    run_as: Option<(u32, u32)>,
    control: &mut dyn Control,
    log: &mut dyn Write,
) -> Result<Report, RestoreError> {
    let dir = dump::backups_dir(root, &site.name);
    let (path, staged, from) = if req.what.starts_with("offsite:") {
        let (s, m) =
            crate::backup::offsite_fetch::stage_mirror(root, site, run_as, log).map_err(err)?;
        (PathBuf::from(&m), s, PathBuf::from(m))
    } else {
        let path = resolve(&site.name, &dir, req.what, true, log)?;
        // The dump is not loaded, so it is not read; the manifest names
        // the archive and what it must be.
        let archive = restore_media::checked_archive(&path, read_manifest(&path)?.as_ref(), log)
            .map_err(merr)?;
        let staged = restore_media::stage_site_media(root, &site.name, &archive, run_as, log)
            .map_err(merr)?;
        (path, staged, archive.path)
    };
    let flag = root.path(SiteLayout::new(&site.name).maintenance_flag);
    let swapped = behind_maintenance_flag(&flag, || {
        replace(root, site, None, Some(staged), control, log)
    })?;
    Ok(Report {
        restored: path,
        media: swapped.map(|s| (from, s)),
        ..Report::default()
    })
}

/// `--into DB`: loads the dump into another database, leaving the live one
/// and the site alone.
fn rehearse(
    path: &Path,
    manifest: Option<&Manifest>,
    conn: &PgConn,
    db: &str,
    run_as: Option<(u32, u32)>,
    log: &mut dyn Write,
) -> Result<Report, RestoreError> {
    if conn.dbname() == Some(db) {
        return Err(err(format!(
            "--into {db} names the live database; leave --into out to restore it"
        )));
    }
    if let Some(created) = crate::backup::scratch::ensure_database(conn, db, run_as).map_err(err)? {
        let _ = writeln!(log, "{created}");
    }
    load(path, manifest, &conn.with_dbname(db), run_as)?;
    let _ = writeln!(log, "restored into {db}; the live database was not touched");
    Ok(Report {
        restored: path.to_path_buf(),
        database: db.to_string(),
        ..Report::default()
    })
}

/// A verified backup of the database as it is now, before it is replaced.
fn safety_backup(
    site: &Site,
    dir: &Path,
    conn: &PgConn,
    run_as: Option<(u32, u32)>,
) -> Result<Manifest, RestoreError> {
    dump::take(
        site,
        dir,
        &DumpSource {
            conn,
            run_as,
            // The restore replaces the database only; media stay as they are.
            media_dir: None,
            release: None,
            accept_shrink: false,
        },
        SystemTime::now(),
    )
    .map_err(|e| {
        err(format!(
            "the safety backup of the current database failed, so nothing was changed: {e}"
        ))
    })
}

/// Runs `f` with Caddy answering "maintenance" (the flag file), unless an
/// operator had already set the flag: then it stays as it was.
fn behind_maintenance_flag<T>(flag: &Path, f: impl FnOnce() -> T) -> T {
    let flag_was_set = flag.exists();
    if !flag_was_set {
        let _ = fs_err::write(
            flag,
            format!("{}\n", crate::config::layout::RESTORE_FLAG_TEXT),
        );
    }
    let result = f();
    if !flag_was_set {
        let _ = fs_err::remove_file(flag);
    }
    result
}

/// The dump to load into the live database, and where the safety backup is.
struct Loaded<'a> {
    path: &'a Path,
    manifest: Option<&'a Manifest>,
    conn: &'a PgConn,
    run_as: Option<(u32, u32)>,
    safety_path: &'a Path,
}

/// Stops the site's app units, loads the dump and puts the restored media
/// in place (either may be left out), starts the units again and
/// smoke-checks the site. The media go in only after the load succeeded,
/// so a failed load leaves both as they were.
fn replace(
    root: &Root,
    site: &Site,
    db: Option<&Loaded>,
    media: Option<Staged>,
    control: &mut dyn Control,
    log: &mut dyn Write,
) -> Result<Option<Swapped>, RestoreError> {
    let media_dir = media.as_ref().map(|s| s.media.clone());
    let as_it_was = |what: String| match &media_dir {
        Some(m) => err(format!(
            "{what}; the media directory {} is as it was",
            m.display()
        )),
        None => err(what),
    };
    let stopped = control
        .stop_running(site)
        .map_err(|e| as_it_was(format!("failed to stop the site's app units: {e}")))?;
    let _ = writeln!(log, "stopped the site's app units");
    let loaded = db.map_or(Ok(()), |l| load(l.path, l.manifest, l.conn, l.run_as));
    let swapped = match media {
        Some(staged) if loaded.is_ok() => Some(staged.swap()),
        _ => None,
    };
    let started = control.start_again(site, &stopped);
    loaded.map_err(|e| as_it_was(e.0))?;
    let swapped = swapped
        .transpose()
        .map_err(|e| media_not_restored(&e, db, media_dir.as_deref()))?;
    started.map_err(|e| {
        err(format!(
            "restored, but starting the site's units failed: {e}{}",
            where_before(db, swapped.as_ref())
        ))
    })?;
    if db.is_some() {
        let _ = writeln!(
            log,
            "loaded the dump in one transaction and started the site's units"
        );
    }
    if let Some(s) = &swapped {
        let before = s.aside.as_ref().map_or_else(
            || "there was no media directory before".to_string(),
            |a| format!("the media as they were are in {}", a.display()),
        );
        let _ = writeln!(
            log,
            "the restored media are in {}; {before}",
            s.media.display()
        );
    }
    if db.is_none() {
        let _ = writeln!(log, "started the site's units");
    }
    check_after(root, site, db, swapped.as_ref(), control, log)?;
    Ok(swapped)
}

/// Where the database and the media as they were before a restore are,
/// for a failure after it.
fn where_before(db: Option<&Loaded>, swapped: Option<&Swapped>) -> String {
    let mut text = String::new();
    if let Some(l) = db {
        text.push_str(&format!(
            "; the database as it was before is in {}",
            l.safety_path.display()
        ));
    }
    if let Some(a) = swapped.and_then(|s| s.aside.as_ref()) {
        text.push_str(&format!(
            "; the media as they were before are in {}",
            a.display()
        ));
    }
    text
}

/// What a failed swap means: the database may have been restored already.
fn media_not_restored(
    e: &MediaError,
    db: Option<&Loaded>,
    media_dir: Option<&Path>,
) -> RestoreError {
    let mut msg = match db {
        Some(_) => format!("the database was restored, but not the media: {e}"),
        None => e.to_string(),
    };
    if let (true, Some(m)) = (e.untouched, media_dir) {
        msg.push_str(&format!(
            "; the media directory {} is as it was",
            m.display()
        ));
    }
    if let Some(l) = db {
        msg.push_str(&format!(
            "; the database as it was before is in {}",
            l.safety_path.display()
        ));
    }
    err(msg)
}

/// Smoke-checks the site after a restore (still behind the maintenance
/// flag: the check goes over the socket); a failure names where the
/// database and the media as they were before are.
fn check_after(
    root: &Root,
    site: &Site,
    db: Option<&Loaded>,
    swapped: Option<&Swapped>,
    control: &dyn Control,
    log: &mut dyn Write,
) -> Result<(), RestoreError> {
    let checked = smoke_check(root, site, control).map_err(|e| {
        err(format!(
            "restored, but the site fails its smoke check: {e}{}",
            where_before(db, swapped)
        ))
    })?;
    let _ = match checked {
        Some(what) => writeln!(log, "smoke check passed: {what}"),
        None => writeln!(
            log,
            "no release is live, so there is nothing to smoke-check"
        ),
    };
    Ok(())
}
