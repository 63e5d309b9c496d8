//! `sumctl status --check`: the facts of `sumctl status` judged the way
//! monitoring wants them, one line per problem, with the monitoring-plugins
//! exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). `--json` carries
//! the same problems.
//!
//! What counts as a problem, and how bad (docs/monitoring.md, "sumctl
//! status --check"):
//! - CRITICAL: no verified backup newer than the backup schedule's period
//!   plus the grace; a unit failed; the socket or the backup timer not
//!   active; the last rollback failed too; a certificate that ends within
//!   3 days.
//! - WARNING: no verified backup yet on a deployed site; the newest backup
//!   shrank; the last deploy failed or rolled back; a certificate that
//!   ends within 14 days; maintenance on for more than a day; the site file
//!   rejected (the site runs on its last good copy).

use serde::Serialize;

/// What `sumctl status` knows of a site; `problems` is this module's
/// judgement of the rest.
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
    /// When the maintenance flag was set (its file's time).
    pub maintenance_since_unix: Option<u64>,
    /// The last deploy or rollback that ran (refused busy ones left out).
    pub last_deploy: Option<LastDeploy>,
    /// The backup timer's period, from its last and next elapse (systemd).
    pub backup_period_seconds: Option<u64>,
    /// The certificates Caddy holds for the domain and aliases.
    pub certificates: Vec<crate::probe::certs::Certificate>,
    /// What `sumctl status --check` reports for this site.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastDeploy {
    pub action: String,
    pub outcome: String,
    pub finished_utc: String,
    pub release: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LastGoodConfig {
    pub copy: String,
    pub why: String,
}

/// Monitoring-plugins states, in rising order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    pub fn code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }
}

/// One thing to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub site: String,
    pub severity: Severity,
    /// A stable name: backup-stale, backup-none, backup-shrunk, deploy,
    /// unit, certificate, maintenance, site-file.
    pub check: &'static str,
    pub message: String,
}

/// What the judgement needs besides the status.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub now: u64,
    /// Added to the backup schedule's period before a backup is stale.
    pub backup_grace: u64,
}

pub const DAY: u64 = 86_400;
/// The period assumed when systemd cannot say (the default schedule).
const DEFAULT_PERIOD: u64 = DAY;

fn hours(secs: u64) -> String {
    if secs >= 2 * DAY {
        format!("{}d", secs / DAY)
    } else {
        format!("{}h", secs / 3600)
    }
}

/// The problems of one site.
pub fn problems(s: &SiteStatus, l: Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |severity, check, message: String| {
        out.push(Problem {
            site: s.site.clone(),
            severity,
            check,
            message,
        })
    };
    backup_problems(s, l, &mut add);
    deploy_problem(s, &mut add);
    for (unit, state) in &s.units {
        let must_run = unit.ends_with(".socket") || unit.ends_with(".timer");
        if state == "failed" || (must_run && state != "active") {
            add(
                Severity::Critical,
                "unit",
                format!("{unit} is {state}; `systemctl status {unit}` says why"),
            );
        }
    }
    certificate_problems(s, l, &mut add);
    if let (Some(how), Some(since)) = (&s.maintenance, s.maintenance_since_unix) {
        let on_for = l.now.saturating_sub(since);
        if on_for > DAY {
            add(
                Severity::Warning,
                "maintenance",
                format!(
                    "maintenance has been on for {} ({how}); `sumctl maintenance {} off` ends it",
                    hours(on_for),
                    s.site
                ),
            );
        }
    }
    if let Some(c) = &s.last_good_config {
        add(
            Severity::Warning,
            "site-file",
            format!(
                "the site file is rejected and the site runs on its last good copy ({}); \
                 `sumctl check` says what to fix",
                crate::system::text::excerpt(&c.why, 200)
            ),
        );
    }
    out
}

fn deploy_problem(s: &SiteStatus, add: &mut dyn FnMut(Severity, &'static str, String)) {
    if let Some(d) = &s.last_deploy {
        let (sev, what) = match d.outcome.as_str() {
            "rollback-failed" => (
                Severity::Critical,
                "failed and its rollback failed too: the site may be down",
            ),
            "rolled-back" => (
                Severity::Warning,
                "failed after the switch and was rolled back: the previous release serves",
            ),
            "failed" => (
                Severity::Warning,
                "failed before the switch: nothing changed",
            ),
            _ => (Severity::Ok, ""),
        };
        if sev != Severity::Ok {
            add(
                sev,
                "deploy",
                format!(
                    "the last {} ({}) {what}; `sumctl history {}` says why",
                    d.action, d.finished_utc, s.site
                ),
            );
        }
    }
}

fn certificate_problems(
    s: &SiteStatus,
    l: Limits,
    add: &mut dyn FnMut(Severity, &'static str, String),
) {
    for c in &s.certificates {
        let left = c.expires_unix.saturating_sub(l.now);
        let sev = match left {
            _ if c.internal => Severity::Ok,
            x if x < 3 * DAY => Severity::Critical,
            x if x < 14 * DAY => Severity::Warning,
            _ => Severity::Ok,
        };
        if sev != Severity::Ok {
            let when = if left == 0 {
                "has EXPIRED".to_string()
            } else {
                format!("ends in {}", hours(left))
            };
            add(
                sev,
                "certificate",
                format!(
                    "the certificate of {} {when} ({}); Caddy renews 30 days ahead, so \
                     `journalctl -u caddy` says why it did not",
                    c.domain, c.expires
                ),
            );
        }
    }
}

fn backup_problems(s: &SiteStatus, l: Limits, add: &mut dyn FnMut(Severity, &'static str, String)) {
    let period = s.backup_period_seconds.unwrap_or(DEFAULT_PERIOD);
    match s.last_backup_age_seconds {
        Some(age) if age > period + l.backup_grace => add(
            Severity::Critical,
            "backup-stale",
            format!(
                "the newest verified backup is {} old, more than the schedule's {} plus {} of \
                 grace; `journalctl -u sum-backup@{}` says why",
                hours(age),
                hours(period),
                hours(l.backup_grace),
                s.site
            ),
        ),
        Some(_) if s.last_backup_shrunk => add(
            Severity::Warning,
            "backup-shrunk",
            format!(
                "the newest verified backup shrank; `sumctl backups {}` says more",
                s.site
            ),
        ),
        None if s.live_release.is_some() => add(
            Severity::Warning,
            "backup-none",
            format!(
                "no verified backup yet; `systemctl start sum-backup@{}` takes one",
                s.site
            ),
        ),
        _ => {}
    }
}

/// The worst severity among the problems (OK when none).
pub fn worst(problems: &[Problem]) -> Severity {
    problems
        .iter()
        .map(|p| p.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// One line per problem, the worst first; one OK line when there is none.
pub fn lines(problems: &[Problem], sites: usize) -> Vec<String> {
    if problems.is_empty() {
        return vec![format!(
            "OK: {sites} site{} checked, no problems",
            if sites == 1 { "" } else { "s" }
        )];
    }
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.site.cmp(&b.site)));
    sorted
        .iter()
        .map(|p| format!("{} {}: {}", p.severity.word(), p.site, p.message))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::certs::Certificate;

    const NOW: u64 = 1_800_000_000;

    fn healthy() -> SiteStatus {
        SiteStatus {
            site: "acme".into(),
            domain: "acme.example.com".into(),
            live_release: Some("20261101T000000Z-abc1234".into()),
            last_verified_backup: Some("acme-x.sql.gz".into()),
            last_backup_age_seconds: Some(3 * 3600),
            last_backup_shrunk: false,
            backups: 3,
            next_backup: None,
            units: vec![
                ("sum-gunicorn@acme.socket".into(), "active".into()),
                ("sum-gunicorn@acme.service".into(), "inactive".into()),
                ("sum-backup@acme.timer".into(), "active".into()),
            ],
            units_on_older_definition: vec![],
            last_good_config: None,
            maintenance: None,
            maintenance_since_unix: None,
            last_deploy: Some(LastDeploy {
                action: "deploy".into(),
                outcome: "ok".into(),
                finished_utc: "2026-11-01T00:00:00Z".into(),
                release: None,
            }),
            backup_period_seconds: Some(DAY),
            certificates: vec![cert("acme.example.com", 60 * DAY, false)],
            problems: vec![],
        }
    }

    fn cert(domain: &str, left: u64, internal: bool) -> Certificate {
        Certificate {
            domain: domain.into(),
            issuer: if internal { "local" } else { "acme-v02" }.into(),
            expires_unix: NOW + left,
            expires: String::new(),
            internal,
        }
    }

    fn judge(s: &SiteStatus) -> Vec<(Severity, &'static str)> {
        let l = Limits {
            now: NOW,
            backup_grace: 2 * 3600,
        };
        problems(s, l)
            .iter()
            .map(|p| (p.severity, p.check))
            .collect()
    }

    #[test]
    fn a_healthy_site_has_no_problem_and_exits_0() {
        let s = healthy();
        assert_eq!(judge(&s), []);
        assert_eq!(
            worst(&problems(
                &s,
                Limits {
                    now: NOW,
                    backup_grace: 7200
                }
            ))
            .code(),
            0
        );
        assert_eq!(lines(&[], 2), ["OK: 2 sites checked, no problems"]);
    }

    #[test]
    fn a_backup_is_stale_only_past_its_period_and_the_grace() {
        let mut s = healthy();
        s.last_backup_age_seconds = Some(DAY + 2 * 3600);
        assert_eq!(judge(&s), []);
        s.last_backup_age_seconds = Some(DAY + 2 * 3600 + 1);
        assert_eq!(judge(&s), [(Severity::Critical, "backup-stale")]);
        // A weekly schedule allows a week.
        s.backup_period_seconds = Some(7 * DAY);
        assert_eq!(judge(&s), []);
        s.last_backup_age_seconds = None;
        assert_eq!(judge(&s), [(Severity::Warning, "backup-none")]);
        // Not deployed yet: no backup is expected.
        s.live_release = None;
        assert_eq!(judge(&s), []);
    }

    #[test]
    fn deploys_units_certificates_and_maintenance_are_judged() {
        let mut s = healthy();
        for (outcome, want) in [
            ("failed", Some(Severity::Warning)),
            ("rolled-back", Some(Severity::Warning)),
            ("rollback-failed", Some(Severity::Critical)),
            ("prepared", None),
        ] {
            s.last_deploy.as_mut().unwrap().outcome = outcome.into();
            let got = judge(&s);
            assert_eq!(
                got,
                want.map(|w| (w, "deploy")).into_iter().collect::<Vec<_>>(),
                "{outcome}"
            );
        }
        let mut s = healthy();
        s.units[1].1 = "failed".into();
        s.units[2].1 = "inactive".into();
        assert_eq!(
            judge(&s),
            [(Severity::Critical, "unit"), (Severity::Critical, "unit")]
        );

        let mut s = healthy();
        s.certificates = vec![
            cert("acme.example.com", 10 * DAY, false),
            cert("www.acme.example.com", 2 * DAY, false),
            cert("acme.localhost", 3600, true),
        ];
        assert_eq!(
            judge(&s),
            [
                (Severity::Warning, "certificate"),
                (Severity::Critical, "certificate")
            ]
        );
        s.certificates = vec![Certificate {
            expires_unix: NOW - 10,
            ..cert("acme.example.com", 0, false)
        }];
        let p = problems(
            &s,
            Limits {
                now: NOW,
                backup_grace: 0,
            },
        );
        assert!(p[0].message.contains("has EXPIRED"), "{}", p[0].message);

        let mut s = healthy();
        s.maintenance = Some("set by ops".into());
        s.maintenance_since_unix = Some(NOW - DAY + 60);
        assert_eq!(judge(&s), []);
        s.maintenance_since_unix = Some(NOW - DAY - 60);
        assert_eq!(judge(&s), [(Severity::Warning, "maintenance")]);
    }

    #[test]
    fn lines_put_the_worst_first_and_the_exit_code_is_the_worst() {
        let p = |site: &str, severity| Problem {
            site: site.into(),
            severity,
            check: "unit",
            message: "m".into(),
        };
        let all = [
            p("b", Severity::Warning),
            p("a", Severity::Critical),
            p("c", Severity::Warning),
        ];
        assert_eq!(
            lines(&all, 3),
            ["CRITICAL a: m", "WARNING b: m", "WARNING c: m"]
        );
        assert_eq!(worst(&all).code(), 2);
        assert_eq!(worst(&all[..1]).code(), 1);
    }
}
