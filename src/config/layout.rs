//! Where everything lives: the canonical paths of SPEC §4, and the one root
//! every path the programs read or write hangs off.
//!
//! Generated files always name the canonical paths (`/srv/sum/acme/...`);
//! the programs touch `root.path(canonical)`, which is the same path on a real
//! system and a path inside a temporary tree in tests (`SUM_ROOT`).

use std::path::{Path, PathBuf};

/// The variable every generated service carries: a digest of its own unit
/// file. A running process keeps the value it started with, so comparing it
/// with the unit systemd has loaded tells whether the process still runs on
/// an older definition (after a package upgrade or a changed site file;
/// `sumctl status` says so, docs/packaging.md "Upgrades").
pub const UNIT_DIGEST_VAR: &str = "SUM_UNIT_DIGEST";

/// Where every site's directory lives (SPEC §4).
pub const SITES_HOME: &str = "/srv/sum";

/// The first line `sum-restore` writes into the maintenance flag it sets,
/// so `sumctl maintenance off` knows a restore's flag from an operator's.
pub const RESTORE_FLAG_TEXT: &str = "sum-restore";

/// Environment variable that points every program at another root (tests).
pub const ROOT_ENV: &str = "SUM_ROOT";

/// Directory of the Caddy snippets written by the render step.
pub const CADDY_RUN_DIR: &str = "/run/sum/caddy";
/// The Caddy root file shipped by the package.
pub const CADDY_ROOT_FILE: &str = "/usr/share/sum-golden-path/caddy/Caddyfile";
/// The root-only rclone configuration that names the off-host remotes.
pub const RCLONE_CONF: &str = "/etc/sum/rclone.conf";

/// gunicorn settings shared by every site (units/gunicorn.conf.py).
pub const GUNICORN_CONF: &str = "/usr/share/sum-golden-path/gunicorn.conf.py";

/// The file-system root the programs work under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root(path.into())
    }

    /// `/`, or `$SUM_ROOT` when set.
    pub fn from_env() -> Root {
        match std::env::var_os(ROOT_ENV) {
            Some(p) if !p.is_empty() => Root(PathBuf::from(p)),
            _ => Root(PathBuf::from("/")),
        }
    }

    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// Maps a canonical absolute path to where it lives under this root.
    pub fn path(&self, canonical: impl AsRef<Path>) -> PathBuf {
        let c = canonical.as_ref();
        self.0.join(c.strip_prefix("/").unwrap_or(c))
    }

    pub fn sites_dir(&self) -> PathBuf {
        self.path(crate::config::site::SITES_DIR)
    }
}

/// Canonical paths of one site (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLayout {
    pub user: String,
    pub home: String,
    pub env_file: String,
    pub app: String,
    pub venv: String,
    pub releases: String,
    pub venvs: String,
    pub static_dir: String,
    pub media_dir: String,
    pub shared_dir: String,
    pub backups: String,
    pub state: String,
    pub beat_dir: String,
    pub maintenance_flag: String,
    pub run_dir: String,
    pub socket: String,
}

impl SiteLayout {
    pub fn new(site: &str) -> SiteLayout {
        let home = format!("{SITES_HOME}/{site}");
        let run_dir = format!("/run/sum/{site}");
        SiteLayout {
            user: format!("sum-{site}"),
            env_file: format!("{home}/.env"),
            app: format!("{home}/app"),
            venv: format!("{home}/venv"),
            releases: format!("{home}/releases"),
            venvs: format!("{home}/venvs"),
            static_dir: format!("{home}/static"),
            media_dir: format!("{home}/media"),
            shared_dir: format!("{home}/shared"),
            backups: format!("{home}/backups"),
            state: format!("{home}/state"),
            beat_dir: format!("{home}/state/beat"),
            maintenance_flag: format!("{home}/maintenance"),
            socket: format!("{run_dir}/gunicorn.sock"),
            run_dir,
            home,
        }
    }
}
