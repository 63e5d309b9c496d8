//! `sumctl releases <site> [--json]`: the releases a deploy left on disk,
//! newest first, with the live one, the one `sumctl rollback` goes to and
//! any good release newer than the live one (rolled back from); read-only
//! and without the site lock. (`sumctl rollback` is [`crate::deploy::rollback::run`].)
//!
//! Human output is a table; `--json` prints stable keys for scripts.

use std::io::Write;

use serde::Serialize;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::ctl::common::{header, json_out, load_site, table};
use crate::deploy::app::READY_MARKER;
use crate::site_state::{self, ReleaseStatus};
use crate::system::failure::{exit_code, Failure};

/// One release on disk, as `sumctl releases --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    /// The directory name under `releases/` (`<UTC>-<sha7>`).
    pub release: String,
    /// Whether `app` points at it.
    pub live: bool,
    /// Whether it is the newest release that passed its smoke check while
    /// live (pruning always keeps it). After a rollback that is the release
    /// rolled back from, so the table does not call it "last good".
    pub last_good: bool,
    /// Whether `sumctl rollback` without `--to` goes to it: the newest good
    /// release older than the live one.
    pub rollback_target: bool,
    /// A good release newer than the live one: a rollback went back from it.
    pub rolled_back_from: bool,
    /// `good`, `failed`, `built` (never went live, or went live without
    /// being verified) or `unknown` (no state file: an unfinished deploy).
    pub status: String,
    pub git_ref: Option<String>,
    /// The full commit id.
    pub sha: Option<String>,
    /// Its virtualenv, `venvs/<venv>`.
    pub venv: Option<String>,
    /// Whether that virtualenv is complete (a rollback needs it).
    pub venv_ready: bool,
    pub created_utc: Option<String>,
    /// The migrations applied when it was deployed.
    pub migrations: Vec<String>,
    /// Django's effective STATIC_ROOT and MEDIA_ROOT for it.
    pub static_root: Option<String>,
    pub media_root: Option<String>,
}

fn status_word(s: ReleaseStatus) -> &'static str {
    match s {
        ReleaseStatus::Built => "built",
        ReleaseStatus::Good => "good",
        ReleaseStatus::Failed => "failed",
    }
}

/// Every release of `site` on disk, newest first.
pub fn release_rows(root: &Root, site: &Site) -> std::io::Result<Vec<ReleaseRow>> {
    let l = SiteLayout::new(&site.name);
    let state_dir = root.path(&l.state);
    let releases = root.path(&l.releases);
    let venvs = root.path(&l.venvs);
    let live = crate::system::fsutil::link_name(&root.path(&l.app));
    let last_good = site_state::last_good(&state_dir, &releases);
    let names = site_state::release_names(&releases)?;
    let status = |r: &str| site_state::load_release(&state_dir, r).map(|i| i.status);
    let target = crate::deploy::rollback::pick_target(&names, status, live.as_deref(), None).ok();
    Ok(names
        .into_iter()
        .map(|name| {
            let info = site_state::load_release(&state_dir, &name);
            let venv = info
                .as_ref()
                .map(|i| i.venv.clone())
                .filter(|v| !v.is_empty());
            let venv_ready = venv
                .as_ref()
                .is_some_and(|v| venvs.join(v).join(READY_MARKER).is_file());
            ReleaseRow {
                live: live.as_deref() == Some(name.as_str()),
                last_good: last_good.as_deref() == Some(name.as_str()),
                rollback_target: target.as_deref() == Some(name.as_str()),
                rolled_back_from: live.as_deref().is_some_and(|l| name.as_str() > l)
                    && info
                        .as_ref()
                        .is_some_and(|i| i.status == ReleaseStatus::Good),
                status: info
                    .as_ref()
                    .map_or("unknown", |i| status_word(i.status))
                    .to_string(),
                git_ref: info.as_ref().map(|i| i.git_ref.clone()),
                sha: info.as_ref().map(|i| i.sha.clone()),
                venv,
                venv_ready,
                created_utc: info.as_ref().map(|i| i.created_utc.clone()),
                migrations: info
                    .as_ref()
                    .map(|i| i.migrations.clone())
                    .unwrap_or_default(),
                static_root: info.as_ref().and_then(|i| i.static_root.clone()),
                media_root: info.and_then(|i| i.media_root),
                release: name,
            }
        })
        .collect())
}

/// `sumctl releases <site> [--json]`.
pub fn releases(
    root: &Root,
    name: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = list_releases(root, name, json, out);
    exit_code(result, err)
}

fn list_releases(root: &Root, name: &str, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let site = load_site(root, name)?;
    let l = SiteLayout::new(&site.name);
    let rows = release_rows(root, &site).map_err(|e| Failure::failed(e.to_string()))?;
    if json {
        json_out(&rows, out);
        return Ok(());
    }
    let live = crate::system::fsutil::link_name(&root.path(&l.app));
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "no releases yet for {}: nothing has been deployed (`systemctl start sum-deploy@{}`)",
            site.name, site.name
        );
        if let Some(live) = &live {
            let _ = writeln!(
                out,
                "warning: app points at releases/{live}, which is not on disk"
            );
        }
        return Ok(());
    }
    release_table(&rows, out);
    let _ = writeln!(out);
    live_line(&rows, live.as_deref(), out);
    let _ = writeln!(
        out,
        "`sumctl rollback {n}` goes to the newest good release older than the live one; \
         `--to RELEASE` picks another",
        n = site.name
    );
    Ok(())
}

/// One line per release, `*` marking the live one.
fn release_table(rows: &[ReleaseRow], out: &mut dyn Write) {
    let mut lines = vec![header(&["  RELEASE", "REF", "SHA", "STATUS", "VENV", ""])];
    for r in rows {
        let mut notes = Vec::new();
        if r.rollback_target {
            notes.push("rollback target");
        }
        if r.rolled_back_from {
            notes.push("rolled back from");
        }
        if r.venv.is_some() && !r.venv_ready {
            notes.push("venv gone");
        }
        let status = if r.status == "unknown" {
            "unknown (unfinished deploy)".to_string()
        } else {
            r.status.clone()
        };
        lines.push(vec![
            format!("{} {}", if r.live { "*" } else { " " }, r.release),
            r.git_ref.clone().unwrap_or_else(|| "-".into()),
            r.sha
                .as_deref()
                .map_or("-", crate::system::text::short_sha)
                .to_string(),
            status,
            r.venv.clone().unwrap_or_else(|| "-".into()),
            notes.join(", "),
        ]);
    }
    table(&lines, out);
}

/// What `app` points at, and whether that release is on disk.
fn live_line(rows: &[ReleaseRow], live: Option<&str>, out: &mut dyn Write) {
    match live {
        Some(live) if rows.iter().any(|r| r.release == live) => {
            let _ = writeln!(out, "* live: app -> releases/{live}");
        }
        Some(live) => {
            let _ = writeln!(
                out,
                "warning: app points at releases/{live}, which is not on disk"
            );
        }
        None => {
            let _ = writeln!(out, "nothing is live: the site has no app link yet");
        }
    }
}
