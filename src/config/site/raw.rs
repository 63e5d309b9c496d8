//! The raw stage of the site file: serde structs that mirror its tables
//! (`deny_unknown_fields`, every value `Spanned` so an error can point at
//! its line and column). Nothing here is validated yet.

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) domain: S<String>,
    pub(super) aliases: S<Vec<Spanned<String>>>,
    pub(super) git: S<RawGit>,
    #[serde(default)]
    pub(super) django: RawDjango,
    #[serde(default)]
    pub(super) python: RawPython,
    #[serde(default)]
    pub(super) gunicorn: RawGunicorn,
    #[serde(default)]
    pub(super) celery: RawCelery,
    #[serde(default)]
    pub(super) health: RawHealth,
    #[serde(default)]
    pub(super) backup: RawBackup,
    #[serde(default)]
    pub(super) deploy: RawDeploy,
    #[serde(default)]
    pub(super) sandbox: RawSandbox,
    /// `name = "command"`.
    pub(super) processes: S<std::collections::BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGit {
    pub(super) url: S<String>,
    #[serde(rename = "ref")]
    pub(super) git_ref: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDjango {
    pub(super) project: S<String>,
    pub(super) settings: S<String>,
    pub(super) wsgi: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPython {
    pub(super) interpreter: S<String>,
    pub(super) requirements: S<String>,
    pub(super) extra: S<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGunicorn {
    pub(super) workers: S<i64>,
    pub(super) threads: S<i64>,
    pub(super) timeout: S<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCelery {
    pub(super) worker: S<bool>,
    pub(super) beat: S<bool>,
    pub(super) app: S<String>,
    pub(super) concurrency: S<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) path: S<String>,
    pub(super) paths: S<Vec<Spanned<String>>>,
    pub(super) timeout: S<String>,
    pub(super) sitemap: S<bool>,
    pub(super) probe_every: S<String>,
    pub(super) probe_alert_after: S<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    pub(super) schedule: S<String>,
    pub(super) keep_daily: S<i64>,
    pub(super) keep_weekly: S<i64>,
    pub(super) keep_monthly: S<i64>,
    pub(super) media: S<bool>,
    pub(super) ping_url: S<String>,
    pub(super) offsite: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    pub(super) keep_releases: S<i64>,
    pub(super) backup_before_migrate: S<bool>,
    pub(super) shared: S<Vec<Spanned<String>>>,
    pub(super) release: S<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSandbox {
    pub(super) memory_deny_write_execute: S<bool>,
}
