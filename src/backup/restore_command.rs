//! The `sum-restore` command (SPEC §8, docs/backups.md "Restore"): the
//! arguments checked, the site loaded and locked, the restore run (the
//! database, the database and media, or the media only) and its report.
//! Exit codes as in SPEC §7.

use std::io::Write;
use std::path::Path;

use crate::backup::command;
use crate::backup::restore::{restore, restore_media_only, Media, Request};
use crate::backup::restore_media::Swapped;
use crate::config::layout::Root;
use crate::system::failure::{exit_code, Exit, Failure};

/// The `sum-restore` command. Exit codes as in SPEC §7.
pub fn run(
    root: &Root,
    site_name: &str,
    req: &Request,
    confirmed: bool,
    out: &mut dyn Write,
    errw: &mut dyn Write,
) -> u8 {
    let started = std::time::SystemTime::now();
    let result = restore_command(root, site_name, req, confirmed, out);
    // A refused command (bad usage, the site busy) restored nothing and
    // rehearsed nothing: only a run that started counts.
    let ran = match &result {
        Ok(()) => Some(true),
        Err(f) if matches!(f.exit, Exit::Usage | Exit::Busy) => None,
        Err(_) => Some(false),
    };
    if let Some(ok) = ran {
        let kind = if req.into.is_some() {
            "rehearsal"
        } else {
            "restore"
        };
        if let Err(e) = write_metrics(root, site_name, kind, ok, started) {
            let _ = writeln!(errw, "sum-restore {site_name}: warning: {e}");
        }
    }
    exit_code(result, errw)
}

/// `sum-<site>-restore.prom` or `sum-<site>-rehearsal.prom` (a restore
/// `--into` a scratch database): when the last one ended, whether it
/// succeeded, how long it took (docs/monitoring.md).
fn write_metrics(
    root: &Root,
    site: &str,
    kind: &str,
    ok: bool,
    started: std::time::SystemTime,
) -> Result<(), String> {
    use crate::system::metrics::{self, Family};
    let s = [("site", site)];
    let now = crate::system::timefmt::now_unix();
    let took = started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let families = [
        Family::gauge(
            &format!("sum_{kind}_last_timestamp_seconds"),
            "When the last one ended (Unix time).",
        )
        .sample(&s, now as f64),
        Family::gauge(
            &format!("sum_{kind}_last_success"),
            "1 if the last one succeeded, 0 if it failed.",
        )
        .sample(&s, if ok { 1.0 } else { 0.0 }),
        Family::gauge(
            &format!("sum_{kind}_last_duration_seconds"),
            "How long the last one took.",
        )
        .sample(&s, took),
    ];
    let dir = root.path(metrics::dir());
    metrics::write(&dir, &metrics::file_name(site, kind), &families)
        .map(|_| ())
        .map_err(|e| format!("metrics not written: {e}"))
}

fn restore_command(
    root: &Root,
    site_name: &str,
    req: &Request,
    confirmed: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if let (Some(db), Media::Only) = (req.into, req.media) {
        return Err(Failure::usage(format!(
            "--media-only restores no database, so there is nothing to rehearse into {db}.\n\
             To rehearse a restore with its media, use --into {db} --media: the dump is loaded\n\
             into {db} and the media archive is checked completely, but not unpacked."
        )));
    }
    // A rehearsal (--into) overwrites nothing live: it needs no confirmation.
    if !confirmed && req.into.is_none() {
        return Err(Failure::usage(confirmation(site_name, req.media)));
    }
    let site = command::load_site(root, site_name)?;
    let _lock = command::lock_site(root, &site, "sum-restore")?;
    let context = format!("sum-restore {}", site.name);
    let failed = |e: &dyn std::fmt::Display| Failure::failed(e.to_string()).context(&context);
    let account = crate::system::accounts::site_account(root, &site.name);
    let mut control = crate::system::control::for_root(root);
    let report = if req.media == Media::Only {
        restore_media_only(root, &site, req, account, control.as_mut(), out)
    } else {
        let db = crate::backup::appdb::resolve(root, &site, account).map_err(|e| failed(&e))?;
        let _ = writeln!(out, "the site's database: {}", db.source);
        for w in &db.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        restore(root, &site, req, &db.conn, account, control.as_mut(), out)
    };
    let report = report.map_err(|e| failed(&e))?;
    if req.media != Media::Only {
        let _ = writeln!(
            out,
            "restored {} into database {}",
            report.restored.display(),
            report.database
        );
    }
    if let Some(s) = report.safety_backup {
        let _ = writeln!(out, "the database as it was before is in {}", s.display());
    }
    if let Some((archive, swapped)) = report.media {
        report_media(&archive, &swapped, out);
    }
    Ok(())
}

/// The closing lines of a media restore: what went where, and what to do
/// with the media as they were.
fn report_media(archive: &Path, swapped: &Swapped, out: &mut dyn Write) {
    // An archive, or the off-host mirror (`remote:path/site/media`).
    let kind = if archive.to_string_lossy().ends_with(".media.tar.gz") {
        "the media archive"
    } else {
        "the off-host media"
    };
    let _ = writeln!(
        out,
        "restored {kind} {} into {}",
        archive.display(),
        swapped.media.display()
    );
    let _ = match &swapped.aside {
        Some(a) => writeln!(
            out,
            "the media as they were before are in {a}; once the site is right, remove them \
             with `rm -rf {a}`",
            a = a.display()
        ),
        None => writeln!(out, "there was no media directory before"),
    };
}

/// What a restore without --i-know-this-will-overwrite says it would do.
fn confirmation(site: &str, media: Media) -> String {
    let replaces = match media {
        Media::No => format!("the contents of {site}'s database"),
        Media::Also => format!("the contents of {site}'s database and its media directory"),
        Media::Only => format!("{site}'s media directory"),
    };
    let kept = match media {
        Media::No => {
            "A safety backup of the current database is taken first, but the site is\n\
                      stopped while the dump loads."
        }
        Media::Also => {
            "A safety backup of the current database is taken first and the current\n\
                        media are kept beside the restored ones, but the site is stopped while\n\
                        the dump loads."
        }
        Media::Only => {
            "The current media are kept beside the restored ones; the site is stopped\n\
                        while they are swapped."
        }
    };
    let rehearse = match media {
        Media::Only => ".",
        _ => ";\nto rehearse without touching the live database, add --into SCRATCH_DB.",
    };
    format!(
        "sum-restore replaces {replaces} with the backup.\n{kept} To go ahead, add \
         --i-know-this-will-overwrite{rehearse}"
    )
}
