//! sum-backup's figures for Prometheus, in `sum-<site>-backup.prom`
//! (`system::metrics`, docs/monitoring.md): when the run started, whether
//! it succeeded, how long it took, and the newest verified backup (its time
//! and size; an alert computes its age from the time).

use std::path::Path;
use std::time::SystemTime;

use crate::config::layout::Root;
use crate::system::metrics::{self, Family};

/// What one run did.
pub struct Run {
    pub started: SystemTime,
    /// A verified backup was published.
    pub ok: bool,
    /// The off-host copy's outcome, when the site has one configured and
    /// the run got that far.
    pub offsite_ok: Option<bool>,
    /// How long the off-host copy took, when it ran.
    pub offsite_seconds: Option<f64>,
}

/// The backups verified on the off-host target: when each was taken, and
/// when the last was verified there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offsite {
    pub taken: Vec<u64>,
    pub last_verified: Option<u64>,
}

/// What the off-host record of `site` says, when it has a target.
pub fn offsite(root: &Root, site: &crate::config::site::Site) -> Option<Offsite> {
    let target = crate::backup::offsite::target(site)?;
    let record = crate::backup::offsite::load_record(root, &site.name, &target);
    let taken = record
        .copies
        .keys()
        .filter_map(|dump| crate::backup::catalog::parse_backup_name(&site.name, dump))
        .collect();
    let last_verified = record
        .copies
        .values()
        .filter_map(|c| {
            crate::system::timefmt::parse_compact_utc(&c.verified_utc.replace(['-', ':'], ""))
        })
        .max();
    Some(Offsite {
        taken,
        last_verified,
    })
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The families of one run of `site`, whose backups are in `dir`; with
/// `off`, what its off-host target holds.
pub fn families(site: &str, dir: &Path, run: &Run, off: Option<&Offsite>) -> Vec<Family> {
    let s = [("site", site)];
    let listed = crate::backup::catalog::list(site, dir).unwrap_or_default();
    let verified: Vec<_> = listed.iter().filter(|b| b.verified).collect();
    let elapsed = run
        .started
        .elapsed()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut families = vec![
        Family::gauge(
            "sum_backup_last_attempt_timestamp_seconds",
            "When the last sum-backup run started (Unix time).",
        )
        .sample(&s, unix(run.started).floor()),
        Family::gauge(
            "sum_backup_last_success",
            "1 if the last sum-backup run published a verified backup, 0 if it failed.",
        )
        .sample(&s, flag(run.ok)),
        Family::gauge(
            "sum_backup_last_duration_seconds",
            "How long the last sum-backup run took, off-host copy and retention included.",
        )
        .sample(&s, elapsed),
        Family::gauge(
            "sum_backup_verified_backups",
            "How many verified backups of the site are on the host.",
        )
        .sample(&s, verified.len() as f64),
    ];
    if let Some(newest) = verified.first() {
        families.push(
            Family::gauge(
                "sum_backup_newest_verified_timestamp_seconds",
                "When the newest verified backup was taken (Unix time); its age is time() minus this.",
            )
            .sample(&s, newest.unix as f64),
        );
        families.push(
            Family::gauge(
                "sum_backup_newest_verified_size_bytes",
                "The size of the newest verified backup's compressed dump.",
            )
            .sample(&s, newest.size as f64),
        );
    }
    if let Some(copied) = run.offsite_ok {
        families.push(
            Family::gauge(
                "sum_backup_offsite_last_success",
                "1 if the last run's off-host copy was verified, 0 if it failed.",
            )
            .sample(&s, flag(copied)),
        );
    }
    if let Some(secs) = run.offsite_seconds.filter(|_| run.offsite_ok.is_some()) {
        families.push(
            Family::gauge(
                "sum_backup_offsite_last_duration_seconds",
                "How long the last run's off-host copy took, its check and retention included.",
            )
            .sample(&s, secs),
        );
    }
    if let Some(off) = off {
        families.extend(offsite_families(&s, off));
    }
    families
}

fn offsite_families(s: &[(&str, &str); 1], off: &Offsite) -> Vec<Family> {
    let mut families = vec![Family::gauge(
        "sum_backup_offsite_verified_backups",
        "How many backups are verified on the off-host target.",
    )
    .sample(s, off.taken.len() as f64)];
    if let Some(newest) = off.taken.iter().max() {
        families.push(
            Family::gauge(
                "sum_backup_offsite_newest_verified_timestamp_seconds",
                "When the newest backup verified off-host was taken (Unix time).",
            )
            .sample(s, *newest as f64),
        );
    }
    if let Some(t) = off.last_verified {
        families.push(
            Family::gauge(
                "sum_backup_offsite_last_verified_timestamp_seconds",
                "When a copy was last verified on the off-host target (Unix time).",
            )
            .sample(s, t as f64),
        );
    }
    families
}

/// Writes the run's file; an error says which file.
pub fn write(
    root: &Root,
    site: &crate::config::site::Site,
    dir: &Path,
    run: &Run,
) -> Result<(), String> {
    let metrics_dir = root.path(metrics::dir());
    let name = metrics::file_name(&site.name, "backup");
    let off = offsite(root, site);
    metrics::write(
        &metrics_dir,
        &name,
        &families(&site.name, dir, run, off.as_ref()),
    )
    .map(|_| ())
    .map_err(|e| {
        format!(
            "could not write the metrics file {}: {e}",
            metrics_dir.join(&name).display()
        )
    })
}
