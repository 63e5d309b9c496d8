//! The site file, `/etc/sum/sites/<site>.toml`: parsed in two stages.
//!
//! Raw serde structs (`deny_unknown_fields`, every value `Spanned`) catch
//! syntax, type and unknown-key errors; `Site::parse` then validates every
//! value and fills in the spec's defaults. Everything generated later (units,
//! Caddy snippets) is rendered from a `Site` only, so validation here is the
//! one gate that keeps newlines, `%` specifiers, quotes and braces out of
//! generated files. Every error carries file:line:col, the key, what was wrong
//! and what is allowed.
//!
//! Here: the validated `Site` and its errors. `raw` holds the serde structs,
//! `validate` turns them into a `Site`, `rules` says what each value may be,
//! and `checker` collects the errors with their positions.

mod checker;
mod raw;
mod rules;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use checker::Checker;
use raw::RawSite;

pub use rules::{check_host, check_rel_path, check_site_name, parse_duration, probe_every};

/// Where site files live on a real system (tests point a root at a temp tree).
pub const SITES_DIR: &str = "/etc/sum/sites";

/// A fully validated site with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    /// Canonical path of the site file (`/etc/sum/sites/<name>.toml`), used in
    /// generated output regardless of the root the file was read from.
    pub source: PathBuf,
    pub domain: String,
    pub aliases: Vec<String>,
    pub git: Git,
    pub django: Django,
    pub python: Python,
    pub gunicorn: Gunicorn,
    pub celery: Celery,
    pub health: Health,
    pub backup: Backup,
    pub deploy: Deploy,
    pub sandbox: Sandbox,
    /// `[processes]`, sorted by name: each runs as `sum-app-<name>@<site>`.
    pub processes: Vec<Process>,
}

/// A long-running process of the app (Procfile-style, `[processes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    pub command: String,
}

impl Process {
    /// Its unit: `sum-app-<name>@<site>.service`. The site is the whole
    /// instance, so a `-` in either name stays unambiguous.
    pub fn unit(&self, site: &str) -> String {
        format!("sum-app-{}@{site}.service", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    pub url: String,
    pub git_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Django {
    pub project: String,
    pub settings: String,
    pub wsgi: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    pub interpreter: String,
    pub requirements: String,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gunicorn {
    pub workers: u32,
    pub threads: u32,
    /// Worker timeout in seconds (also used as the graceful timeout).
    pub timeout: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Celery {
    pub worker: bool,
    pub beat: bool,
    pub app: String,
    pub concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The first path checked: `path`, or the first of `paths`.
    pub path: String,
    /// The rest of `paths`, checked after `path`, in order.
    pub more_paths: Vec<String>,
    pub timeout: Duration,
    pub sitemap: bool,
    /// How often `sum-probe@<site>.timer` probes the site; None: never.
    pub probe_every: Option<Duration>,
    /// Consecutive failed probes before an alert.
    pub probe_alert_after: u32,
}

impl Health {
    /// Every path the smoke check asks, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.path.as_str()).chain(self.more_paths.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub schedule: String,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub media: bool,
    pub ping_url: Option<String>,
    /// `<remote>:<path>`: an rclone remote of /etc/sum/rclone.conf and a
    /// path on it; each verified backup is copied and verified there
    /// (src/backup/offsite.rs).
    pub offsite: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub keep_releases: u32,
    pub backup_before_migrate: bool,
    pub shared: Vec<String>,
    /// Release commands: shell command lines run in the new release after
    /// collectstatic and before the migrations (src/deploy/release_cmds.rs).
    pub release: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub memory_deny_write_execute: bool,
}

/// One problem in one site file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub problem: String,
    pub allowed: String,
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.key,
            self.problem
        )?;
        if !self.allowed.is_empty() {
            write!(f, "; {}", self.allowed)?;
        }
        Ok(())
    }
}

/// Every problem found in one site file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteErrors(pub Vec<SiteError>);

impl fmt::Display for SiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SiteErrors {}

impl Site {
    /// Parses and validates the text of a site file. `file` is the path shown
    /// in errors; `name` is the site name (the file stem).
    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Site, SiteErrors> {
        let mut c = Checker {
            file,
            text,
            errors: Vec::new(),
        };
        if let Err(problem) = check_site_name(name) {
            c.push(0..0, "(file name)", problem, "rename the file");
            return Err(SiteErrors(c.errors));
        }
        let raw: RawSite = match serde_path_to_error::deserialize(toml::Deserializer::new(text)) {
            Ok(raw) => raw,
            Err(e) => {
                c.push_toml_error(e);
                return Err(SiteErrors(c.errors));
            }
        };
        let site = validate::from_raw(&mut c, name, raw);
        if c.errors.is_empty() {
            Ok(site)
        } else {
            Err(SiteErrors(c.errors))
        }
    }

    /// Every host name this site answers for: the domain, then the aliases.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.domain.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site, SiteErrors> {
        Site::parse("acme", Path::new("/etc/sum/sites/acme.toml"), text)
    }

    const MINIMAL: &str =
        "domain = \"acme.example.com\"\n[git]\nurl = \"https://git.example.com/acme.git\"\n";

    #[test]
    fn defaults_follow_the_spec() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.django.project, "acme");
        assert_eq!(s.django.settings, "acme.settings.production");
        assert_eq!(s.django.wsgi, "acme.wsgi:application");
        assert_eq!(s.git.git_ref, "main");
        assert_eq!(
            (s.gunicorn.workers, s.gunicorn.threads, s.gunicorn.timeout),
            (4, 2, 30)
        );
        assert_eq!(s.celery.app, "acme");
        assert!(!s.celery.worker && !s.celery.beat);
        assert_eq!(s.health.timeout, Duration::from_secs(60));
        assert_eq!(s.backup.schedule, "*-*-* 02:00:00 UTC");
        assert_eq!(
            (
                s.backup.keep_daily,
                s.backup.keep_weekly,
                s.backup.keep_monthly
            ),
            (7, 13, 12)
        );
        assert_eq!(s.deploy.keep_releases, 5);
        assert!(s.sandbox.memory_deny_write_execute);
        assert_eq!(s.source, Path::new("/etc/sum/sites/acme.toml"));
    }

    #[test]
    fn dashes_in_the_site_name_become_underscores_in_the_project() {
        let s = Site::parse("acme-blog", Path::new("x.toml"), MINIMAL).unwrap();
        assert_eq!(s.django.project, "acme_blog");
        assert_eq!(s.django.wsgi, "acme_blog.wsgi:application");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn offsite_names_an_rclone_remote_and_a_path() {
        let with = |v: &str| {
            Site::parse(
                "acme",
                Path::new("acme.toml"),
                &format!("{MINIMAL}[backup]\noffsite = \"{v}\"\n"),
            )
        };
        let s = with("b2:acme-backups/nightly").unwrap();
        assert_eq!(s.backup.offsite.as_deref(), Some("b2:acme-backups/nightly"));
        assert_eq!(
            Site::parse("acme", Path::new("a.toml"), MINIMAL)
                .unwrap()
                .backup
                .offsite,
            None
        );
        for (bad, why) in [
            ("acme-backups", "names no rclone remote"),
            (":path", "is not an rclone remote name"),
            ("-x:path", "is not an rclone remote name"),
            ("b 2:path", "is not an rclone remote name"),
            ("b2:", "is not a path on the remote"),
            ("b2:/", "is not a path on the remote"),
            ("b2:a/../b", "is not a path on the remote"),
        ] {
            let errors = with(bad).unwrap_err();
            let text = format!("{errors:?}");
            assert!(
                text.contains("backup.offsite") && text.contains(why),
                "{bad}: {text}"
            );
        }
    }
}
