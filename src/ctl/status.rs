//! `sumctl status [<site>] [--json]`: what an operator checks first: is it
//! deployed, are its units up, when was the last verified backup and when
//! is the next.

use std::io::Write;

use serde::Serialize;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::config::sites::{self, Loaded};
use crate::ctl::common::json_out;
use crate::system::failure::{exit_code, Failure};

#[derive(Debug, Serialize)]
pub struct SiteStatus {
    pub site: String,
    pub domain: String,
    /// The live release (the `app` symlink's target), if deployed.
    pub live_release: Option<String>,
    pub last_verified_backup: Option<String>,
    pub last_backup_age_seconds: Option<u64>,
    /// The last verified backup shrank and nobody accepted it
    /// (docs/backups.md, "Shrunken backups").
    pub last_backup_shrunk: bool,
    pub backups: usize,
    pub next_backup: Option<String>,
    /// Unit name → ActiveState (only on a real system).
    pub units: Vec<(String, String)>,
    /// Running app units whose process started from an older definition
    /// than the one systemd has loaded (after a package upgrade or a changed
    /// site file): the next deploy or rollback restarts them on it.
    pub units_on_older_definition: Vec<String>,
    /// Set when the site file is rejected and the site runs on its last
    /// good copy: that copy and the file's first error.
    pub last_good_config: Option<LastGoodConfig>,
    /// Set while the maintenance page is on: who set it and since when.
    pub maintenance: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LastGoodConfig {
    pub copy: String,
    pub why: String,
}

pub fn site_status(root: &Root, site: &Site) -> SiteStatus {
    let l = SiteLayout::new(&site.name);
    let live_release = crate::system::fsutil::link_name(&root.path(&l.app));
    let listed =
        crate::backup::catalog::list(&site.name, &root.path(&l.backups)).unwrap_or_default();
    let last = listed.iter().find(|b| b.verified);
    let now = crate::system::timefmt::now_unix();
    let mut units = Vec::new();
    let mut units_on_older_definition = Vec::new();
    let mut next_backup = None;
    if root.is_system() {
        let n = &site.name;
        let mut names = vec![
            format!("sum-gunicorn@{n}.socket"),
            format!("sum-gunicorn@{n}.service"),
            format!("sum-backup@{n}.timer"),
        ];
        if site.celery.worker {
            names.push(format!("sum-celery@{n}.service"));
        }
        if site.celery.beat {
            names.push(format!("sum-celerybeat@{n}.service"));
        }
        names.extend(site.processes.iter().map(|p| p.unit(n)));
        for u in names {
            let state = crate::system::systemd::property(&u, "ActiveState")
                .unwrap_or_else(|| "unknown".into());
            if u.ends_with(".service")
                && crate::system::systemd::runs_older_definition(&u) == Some(true)
            {
                units_on_older_definition.push(u.clone());
            }
            units.push((u, state));
        }
        next_backup = crate::system::systemd::property(
            &format!("sum-backup@{n}.timer"),
            "NextElapseUSecRealtime",
        );
    }
    SiteStatus {
        site: site.name.clone(),
        domain: site.domain.clone(),
        live_release,
        last_verified_backup: last.map(|b| b.file.clone()),
        last_backup_age_seconds: last.map(|b| now.saturating_sub(b.unix)),
        last_backup_shrunk: last.is_some_and(|b| b.is_shrunk()),
        backups: listed.len(),
        next_backup,
        units,
        units_on_older_definition,
        last_good_config: None,
        maintenance: crate::ctl::maintenance::flag_text(root, &site.name),
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `sumctl status`: one site, or every valid site.
pub fn status(
    root: &Root,
    only: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = show_status(root, only, json, out, err);
    exit_code(result, err)
}

fn show_status(
    root: &Root,
    only: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let loaded = sites::load_all(root).map_err(|e| Failure::failed(e.to_string()))?;
    let statuses = chosen_statuses(root, &loaded, only)?;
    if json {
        json_out(&statuses, out);
    } else {
        for s in &statuses {
            print_status(s, out);
        }
        if statuses.is_empty() {
            let _ = writeln!(out, "no sites in {}", root.sites_dir().display());
        }
    }
    if !loaded.errors.is_empty() && only.is_none() {
        let _ = writeln!(
            err,
            "{} site file(s) have errors: run `sumctl check`",
            loaded.errors.len()
        );
    }
    Ok(())
}

/// The status of `only`, or of every valid site (exit 2 when `only` is not
/// a valid site).
fn chosen_statuses(
    root: &Root,
    loaded: &Loaded,
    only: Option<&str>,
) -> Result<Vec<SiteStatus>, Failure> {
    let chosen: Vec<&Site> = loaded
        .sites
        .iter()
        .filter(|s| only.map_or(true, |o| s.name == o))
        .collect();
    if let Some(o) = only {
        if chosen.is_empty() {
            return Err(Failure::usage(format!(
                "no valid site `{o}`; `sumctl check` shows why"
            )));
        }
    }
    Ok(chosen
        .iter()
        .map(|s| {
            let mut st = site_status(root, s);
            st.last_good_config = loaded.fallback(&s.name).map(|f| LastGoodConfig {
                copy: f.copy.display().to_string(),
                why: f.why.clone(),
            });
            st
        })
        .collect())
}

/// One site's status for a person.
fn print_status(s: &SiteStatus, out: &mut dyn Write) {
    let _ = writeln!(out, "{} ({})", s.site, s.domain);
    let _ = writeln!(
        out,
        "  live release:  {}",
        s.live_release
            .as_deref()
            .unwrap_or("none (not deployed yet)")
    );
    let backup = match (&s.last_verified_backup, s.last_backup_age_seconds) {
        (Some(f), Some(a)) if s.last_backup_shrunk => format!(
            "{f} ({}), SHRUNK: far fewer tables or rows than before; `sumctl backups {}` says more",
            age(a),
            s.site
        ),
        (Some(f), Some(a)) => format!("{f} ({})", age(a)),
        _ => "none".into(),
    };
    let _ = writeln!(out, "  last backup:   {backup}");
    if let Some(how) = &s.maintenance {
        let _ = writeln!(
            out,
            "  maintenance:   ON ({how}); `sumctl maintenance {} off` ends it",
            s.site
        );
    }
    if let Some(c) = &s.last_good_config {
        let _ = writeln!(
            out,
            "  configuration: LAST GOOD COPY {} (the site file is rejected: {}); fix \
             it and run `systemctl daemon-reload`",
            c.copy,
            crate::system::text::excerpt(&c.why, 300)
        );
    }
    if let Some(n) = &s.next_backup {
        let _ = writeln!(out, "  next backup:   {n}");
    }
    for (u, st) in &s.units {
        let older = if s.units_on_older_definition.contains(u) {
            " (runs on its OLDER unit)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {u:<36} {st}{older}");
    }
    if !s.units_on_older_definition.is_empty() {
        let _ = writeln!(
            out,
            "  older units:   {} started before the package or the site file changed \
             {}; it keeps serving, and the next deploy or rollback restarts it on the \
             new one (`systemctl start sum-deploy@{}`)",
            s.units_on_older_definition.join(", "),
            if s.units_on_older_definition.len() == 1 {
                "its unit"
            } else {
                "their units"
            },
            s.site
        );
    }
}
