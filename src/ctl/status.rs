//! `sumctl status [<site>] [--json]`: what an operator checks first: is it
//! deployed, are its units up, when was the last verified backup and when
//! is the next.

use std::io::Write;

use serde::Serialize;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::config::sites::{self, Loaded};
use crate::ctl::common::json_out;
use crate::ctl::status_check::{self, Limits, Problem, Severity};
use crate::system::failure::{exit_code, Failure};

pub use crate::ctl::status_check::{LastDeploy, LastGoodConfig, SiteStatus};

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
    let mut backup_period_seconds = None;
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
        let timer = format!("sum-backup@{n}.timer");
        next_backup = crate::system::systemd::property(&timer, "NextElapseUSecRealtime");
        backup_period_seconds = timer_period(&timer);
    }
    let mut domains = vec![site.domain.as_str()];
    domains.extend(site.aliases.iter().map(String::as_str));
    let (certificates, _) = crate::probe::certs::certificates(root, &domains);
    let flag = root.path(&l.maintenance_flag);
    let maintenance_since_unix = fs_err::metadata(&flag)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
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
        maintenance_since_unix,
        last_deploy: last_deploy(&root.path(&l.state)),
        backup_period_seconds,
        certificates,
        problems: Vec::new(),
    }
}

/// The last deploy or rollback that ran, from the site's history.
fn last_deploy(state: &std::path::Path) -> Option<LastDeploy> {
    let history = crate::site_state::history(state).ok()?;
    history
        .iter()
        .rev()
        .find(|r| r.outcome != "busy")
        .map(|r| LastDeploy {
            action: r.action.clone(),
            outcome: r.outcome.clone(),
            finished_utc: r.finished_utc.clone(),
            release: r.release.clone(),
        })
}

/// The time between the timer's last and next elapse: its schedule's
/// period, as systemd computes it.
fn timer_period(timer: &str) -> Option<u64> {
    let last = crate::system::systemd::property_unix_time(timer, "LastTriggerUSec")?;
    let next = crate::system::systemd::property_unix_time(timer, "NextElapseUSecRealtime")?;
    next.checked_sub(last).filter(|p| *p > 0)
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// How `sumctl status` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub json: bool,
    /// `--check`: one line per problem and the monitoring-plugins exit codes.
    pub check: bool,
    /// Added to the backup schedule's period before a backup is stale.
    pub backup_grace: u64,
}

/// `sumctl status`: one site, or every valid site.
pub fn status(
    root: &Root,
    only: Option<&str>,
    opts: Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    if opts.check {
        return check_status(root, only, opts, out);
    }
    let result = show_status(root, only, opts, out, err);
    exit_code(result, err)
}

fn show_status(
    root: &Root,
    only: Option<&str>,
    opts: Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let loaded = sites::load_all(root).map_err(|e| Failure::failed(e.to_string()))?;
    let statuses = chosen_statuses(root, &loaded, only, opts)?;
    if opts.json {
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

/// What `--check --json` prints.
#[derive(Debug, Serialize)]
struct CheckReport<'a> {
    status: Severity,
    exit_code: u8,
    sites: usize,
    problems: &'a [Problem],
}

/// `sumctl status --check`: every problem, one line each; the exit code is
/// the worst one's, and 3 (UNKNOWN) when the status cannot be read.
fn check_status(root: &Root, only: Option<&str>, opts: Options, out: &mut dyn Write) -> u8 {
    let statuses = sites::load_all(root)
        .map_err(|e| Failure::failed(e.to_string()))
        .and_then(|loaded| {
            let mut problems = rejected_files(&loaded, only);
            let statuses = chosen_statuses(root, &loaded, only, opts)?;
            problems.extend(statuses.iter().flat_map(|s| s.problems.clone()));
            Ok((statuses.len(), problems))
        });
    let (sites, problems) = match statuses {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(out, "UNKNOWN: {}", e.message);
            return Severity::Unknown.code();
        }
    };
    let worst = status_check::worst(&problems);
    if opts.json {
        json_out(
            &CheckReport {
                status: worst,
                exit_code: worst.code(),
                sites,
                problems: &problems,
            },
            out,
        );
    } else {
        for line in status_check::lines(&problems, sites) {
            let _ = writeln!(out, "{line}");
        }
    }
    worst.code()
}

/// Rejected site files with no last good copy: those sites do not run.
fn rejected_files(loaded: &Loaded, only: Option<&str>) -> Vec<Problem> {
    if only.is_some() {
        return Vec::new();
    }
    loaded
        .errors
        .iter()
        .filter_map(|e| e.0.first())
        .filter_map(|first| {
            let site = first.file.file_stem()?.to_string_lossy().into_owned();
            (loaded.fallback(&site).is_none()).then(|| Problem {
                message: format!(
                    "the site file {} is rejected and the site does not run; `sumctl check` \
                     says what to fix",
                    first.file.display()
                ),
                site,
                severity: Severity::Warning,
                check: "site-file",
            })
        })
        .collect()
}

/// The status of `only`, or of every valid site (exit 2 when `only` is not
/// a valid site).
fn chosen_statuses(
    root: &Root,
    loaded: &Loaded,
    only: Option<&str>,
    opts: Options,
) -> Result<Vec<SiteStatus>, Failure> {
    let limits = Limits {
        now: crate::system::timefmt::now_unix(),
        backup_grace: opts.backup_grace,
    };
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
            st.problems = status_check::problems(&st, limits);
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
    print_deploy_and_certificates(s, out);
    for p in &s.problems {
        let _ = writeln!(out, "  {}: {}", p.severity.word(), p.message);
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

/// The last deploy and the certificates, for a person.
fn print_deploy_and_certificates(s: &SiteStatus, out: &mut dyn Write) {
    if let Some(d) = &s.last_deploy {
        let _ = writeln!(
            out,
            "  last deploy:   {} {} ({})",
            d.action, d.outcome, d.finished_utc
        );
    }
    for c in &s.certificates {
        let _ = writeln!(
            out,
            "  certificate:   {} until {}{}",
            c.domain,
            c.expires,
            if c.internal {
                " (Caddy's internal CA, renewed by Caddy)"
            } else {
                ""
            }
        );
    }
}
