//! `sum-restore <site> FILE|latest --i-know-this-will-overwrite [--into DB]`
//! (SPEC §8): a restore that cannot half-happen.
//!
//! The file is verified completely before anything is touched; the live
//! database gets a safety backup first; the site's app units are stopped and
//! Caddy answers "maintenance" meanwhile; and the load runs as the site's
//! database user in one transaction that first drops everything that user
//! owns, so nothing of a newer schema survives and a failed load rolls back
//! to exactly what was there.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use crate::backup::catalog::{self, Manifest};
use crate::backup::command;
use crate::backup::dump::{self, DumpSource};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::probe::pgconn::PgConn;
use crate::system::control::Control;
use crate::system::failure::{exit_code, Failure};

/// What to restore and where.
pub struct Request<'a> {
    /// A backup file (a path, or a name in the site's backups directory) or `latest`.
    pub what: &'a str,
    /// Restore into this database instead of the live one (a rehearsal).
    pub into: Option<&'a str>,
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

/// Resolves `latest` or a file argument to a backup path.
pub fn resolve(site: &str, dir: &Path, what: &str) -> Result<PathBuf, RestoreError> {
    if what == "latest" {
        let listed = catalog::list(site, dir).map_err(|e| err(e.to_string()))?;
        return listed
            .into_iter()
            .find(|b| b.verified)
            .map(|b| dir.join(b.file))
            .ok_or_else(|| err(format!("no verified backup of {site} in {}", dir.display())));
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

/// Verifies the file completely and, when it has a manifest, against it.
pub fn verify(path: &Path) -> Result<Option<Manifest>, RestoreError> {
    let check = dump::verify_file(path).map_err(|e| err(format!("refusing to restore: {e}")))?;
    let manifest_path = PathBuf::from(format!("{}.json", path.display()));
    let Ok(bytes) = fs_err::read(&manifest_path) else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        err(format!(
            "refusing to restore: {} is not a manifest: {e}",
            manifest_path.display()
        ))
    })?;
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
    Ok(Some(m))
}

/// Loads a dump into the database of `conn` in one transaction, after
/// dropping everything the connecting user owns there.
pub fn load(path: &Path, conn: &PgConn, run_as: Option<(u32, u32)>) -> Result<(), RestoreError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-q",
        "--no-password",
        "--single-transaction",
        "-v",
        "ON_ERROR_STOP=1",
    ]);
    // The password goes into psql's environment, not its command line.
    conn.apply(&mut cmd)
        .args(["-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid).current_dir("/");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("failed to run psql: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Lossily: psql quotes the dump's text, which need not be UTF-8.
    let errors = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    });
    let feed = (|| -> std::io::Result<()> {
        // Inside the transaction psql opens: the newer schema goes first.
        stdin.write_all(b"DROP OWNED BY CURRENT_USER;\n")?;
        let file = fs_err::File::open(path)?;
        let mut gz = MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file));
        std::io::copy(&mut gz, &mut stdin)?;
        Ok(())
    })();
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| err(format!("failed to wait for psql: {e}")))?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() || feed.is_err() {
        let why = errors
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("error"))
            .map_or_else(
                || crate::system::text::last_lines(&errors, 5, 500),
                |l| crate::system::text::excerpt(l, 500),
            );
        let why = if why.is_empty() {
            feed.err()
                .map_or_else(|| status.to_string(), |e| e.to_string())
        } else {
            why
        };
        return Err(err(format!(
            "the load failed and was rolled back; the database is as it was: {why}"
        )));
    }
    Ok(())
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
}

/// Restores `req` for `site` into the site's database `conn` (see
/// `appdb`).
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
    let path = resolve(&site.name, &dir, req.what)?;
    let manifest = verify(&path)?;
    let _ = writeln!(
        log,
        "verified {} ({})",
        path.display(),
        if manifest.is_some() {
            "gzip, trailer and manifest"
        } else {
            "gzip and trailer; it has no manifest"
        }
    );
    if let Some(db) = req.into {
        return rehearse(&path, conn, db, run_as, log);
    }
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
    behind_maintenance_flag(&flag, || {
        let loaded = Loaded {
            path: &path,
            conn,
            run_as,
            safety_path: &safety_path,
        };
        replace_database(root, site, &loaded, control, log)
    })?;
    Ok(Report {
        restored: path,
        database: conn.dbname().unwrap_or("").to_string(),
        safety_backup: Some(safety_path),
    })
}

/// `--into DB`: loads the dump into another database, leaving the live one
/// and the site alone.
fn rehearse(
    path: &Path,
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
    load(path, &conn.with_dbname(db), run_as)?;
    let _ = writeln!(log, "restored into {db}; the live database was not touched");
    Ok(Report {
        restored: path.to_path_buf(),
        database: db.to_string(),
        safety_backup: None,
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
    conn: &'a PgConn,
    run_as: Option<(u32, u32)>,
    safety_path: &'a Path,
}

/// Stops the site's app units, loads the dump, starts them again and
/// smoke-checks the site.
fn replace_database(
    root: &Root,
    site: &Site,
    l: &Loaded,
    control: &mut dyn Control,
    log: &mut dyn Write,
) -> Result<(), RestoreError> {
    let stopped = control
        .stop_running(site)
        .map_err(|e| err(format!("failed to stop the site's app units: {e}")))?;
    let _ = writeln!(log, "stopped the site's app units");
    let loaded = load(l.path, l.conn, l.run_as);
    let started = control.start_again(site, &stopped);
    loaded?;
    started.map_err(|e| {
        err(format!(
            "restored, but starting the site's units failed: {e}"
        ))
    })?;
    let _ = writeln!(
        log,
        "loaded the dump in one transaction and started the site's units"
    );
    // Still behind the maintenance flag: the check goes over the socket.
    let checked = smoke_check(root, site, control).map_err(|e| {
        err(format!(
            "restored, but the site fails its smoke check: {e}; the database as it was \
             before is in {}",
            l.safety_path.display()
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

/// The `sum-restore` command. Exit codes as in SPEC §7.
pub fn run(
    root: &Root,
    site_name: &str,
    req: &Request,
    confirmed: bool,
    out: &mut dyn Write,
    errw: &mut dyn Write,
) -> u8 {
    let result = restore_command(root, site_name, req, confirmed, out);
    exit_code(result, errw)
}

fn restore_command(
    root: &Root,
    site_name: &str,
    req: &Request,
    confirmed: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    // A rehearsal (--into) overwrites nothing live: it needs no confirmation.
    if !confirmed && req.into.is_none() {
        return Err(Failure::usage(format!(
            "sum-restore replaces the contents of {site_name}'s database with the backup.\n\
             A safety backup of the current database is taken first, but the site is\n\
             stopped while the dump loads. To go ahead, add --i-know-this-will-overwrite;\n\
             to rehearse without touching the live database, add --into SCRATCH_DB."
        )));
    }
    let site = command::load_site(root, site_name)?;
    let _lock = command::lock_site(root, &site, "sum-restore")?;
    let context = format!("sum-restore {}", site.name);
    let failed = |e: &dyn std::fmt::Display| Failure::failed(e.to_string()).context(&context);
    let account = crate::system::accounts::site_account(root, &site.name);
    let db = crate::backup::appdb::resolve(root, &site, account).map_err(|e| failed(&e))?;
    let _ = writeln!(out, "the site's database: {}", db.source);
    for w in &db.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let mut control = crate::system::control::for_root(root);
    let report = restore(root, &site, req, &db.conn, account, control.as_mut(), out)
        .map_err(|e| failed(&e))?;
    let _ = writeln!(
        out,
        "restored {} into database {}",
        report.restored.display(),
        report.database
    );
    if let Some(s) = report.safety_backup {
        let _ = writeln!(out, "the database as it was before is in {}", s.display());
    }
    Ok(())
}
