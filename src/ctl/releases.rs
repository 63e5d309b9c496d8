//! `sumctl releases <site>` and `sumctl history <site>`: what a deploy left
//! on disk and in the site's history, read-only and without the site lock.
//! (`sumctl rollback` is [`crate::deploy::rollback::run`].)
//!
//! Human output is a table; `--json` prints stable keys for scripts.

use std::io::Write;

use serde::Serialize;

use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::deploy::app::READY_MARKER;
use crate::site_state::{self, Record, ReleaseStatus};

/// One release on disk, as `sumctl releases --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    /// The directory name under `releases/` (`<UTC>-<sha7>`).
    pub release: String,
    /// Whether `app` points at it.
    pub live: bool,
    /// Whether it is the newest release that passed its smoke check.
    pub last_good: bool,
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

/// Left-aligned columns; the last column is not padded.
fn table(rows: &[Vec<String>], out: &mut dyn Write) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat(' ').take(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn load(root: &Root, name: &str, err: &mut dyn Write) -> Result<Site, u8> {
    crate::config::sites::load_site(root, name).map_err(|e| {
        let _ = writeln!(err, "{e}");
        2
    })
}

fn json_out<T: Serialize>(value: &T, out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).expect("serializes")
    );
}

/// `sumctl releases <site> [--json]`.
pub fn releases(
    root: &Root,
    name: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let site = match load(root, name, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let l = SiteLayout::new(&site.name);
    let rows = match release_rows(root, &site) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "cannot read {}: {e}", root.path(&l.releases).display());
            return 1;
        }
    };
    if json {
        json_out(&rows, out);
        return 0;
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
        return 0;
    }
    let mut lines = vec![["  RELEASE", "REF", "SHA", "STATUS", "VENV", ""]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for r in &rows {
        let mut notes = Vec::new();
        if r.last_good {
            notes.push("last good");
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
    let _ = writeln!(out);
    match &live {
        Some(live) if rows.iter().any(|r| &r.release == live) => {
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
    let _ = writeln!(
        out,
        "`sumctl rollback {n}` goes to the newest good release older than the live one; \
         `--to RELEASE` picks another",
        n = site.name
    );
    0
}

/// Seconds a deploy or rollback took: the sum of its steps.
pub fn total_seconds(rec: &Record) -> f64 {
    rec.steps.iter().map(|s| s.seconds).sum()
}

/// `2026-11-23T01:24:36Z` → `2026-11-23 01:24:36`.
fn started(utc: &str) -> String {
    utc.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `sumctl history <site> [--json] [-n N]`: the last `limit` records (all
/// when 0), newest first.
pub fn history(
    root: &Root,
    name: &str,
    json: bool,
    limit: usize,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let site = match load(root, name, err) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let state_dir = root.path(SiteLayout::new(&site.name).state);
    let mut records = match site_state::history(&state_dir) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                err,
                "cannot read {}: {e}",
                site_state::history_path(&state_dir).display()
            );
            return 1;
        }
    };
    let all = records.len();
    records.reverse();
    if limit > 0 {
        records.truncate(limit);
    }
    if json {
        json_out(&records, out);
        return 0;
    }
    if records.is_empty() {
        let _ = writeln!(
            out,
            "no deploys yet for {} (`systemctl start sum-deploy@{}` deploys it)",
            site.name, site.name
        );
        return 0;
    }
    let dash = |s: Option<&str>| s.unwrap_or("-").to_string();
    let mut rows: Vec<Vec<String>> = vec![[
        "STARTED (UTC)",
        "ACTION",
        "REF",
        "SHA",
        "RELEASE",
        "OUTCOME",
        "TIME",
        "WHO",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for r in &records {
        rows.push(vec![
            started(&r.started_utc),
            r.action.clone(),
            dash(r.git_ref.as_deref()),
            dash(r.sha.as_deref().map(crate::system::text::short_sha)),
            dash(r.release.as_deref()),
            r.outcome.clone(),
            format!("{:.1}s", total_seconds(r)),
            r.who.clone(),
        ]);
    }
    // The table is laid out first; a failure goes on a line of its own
    // under its record, so it does not widen the columns.
    let mut laid_out = Vec::new();
    table(&rows, &mut laid_out);
    let laid_out = String::from_utf8_lossy(&laid_out).into_owned();
    let mut lines = laid_out.lines();
    if let Some(header) = lines.next() {
        let _ = writeln!(out, "{header}");
    }
    for (r, line) in records.iter().zip(lines) {
        let _ = writeln!(out, "{line}");
        if r.failed_step.is_some() || r.error.is_some() {
            let first = r
                .error
                .as_deref()
                .and_then(|e| e.lines().map(str::trim).find(|l| !l.is_empty()))
                .unwrap_or("(no message recorded)");
            let _ = writeln!(
                out,
                "    failed at {}: {first}",
                r.failed_step.as_deref().unwrap_or("?")
            );
        }
    }
    if limit > 0 && all > limit {
        let _ = writeln!(
            out,
            "(the last {limit} of {all}; `-n 0` shows all, `--json` everything recorded)"
        );
    }
    0
}
