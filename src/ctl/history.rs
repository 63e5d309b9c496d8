//! `sumctl history <site> [--json] [-n N]`: the site's deploys and
//! rollbacks from its history, newest first; read-only and without the site
//! lock.

use std::io::Write;

use crate::config::layout::{Root, SiteLayout};
use crate::ctl::common::{header, json_out, load_site, table};
use crate::site_state::{self, Record};
use crate::system::failure::{exit_code, Failure};
use crate::system::text::excerpt;

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
    let result = show_history(root, name, json, limit, out);
    exit_code(result, err)
}

fn show_history(
    root: &Root,
    name: &str,
    json: bool,
    limit: usize,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let site = load_site(root, name)?;
    let state_dir = root.path(SiteLayout::new(&site.name).state);
    let mut records =
        site_state::history(&state_dir).map_err(|e| Failure::failed(e.to_string()))?;
    let all = records.len();
    records.reverse();
    if limit > 0 {
        records.truncate(limit);
    }
    if json {
        json_out(&records, out);
        return Ok(());
    }
    if records.is_empty() {
        let _ = writeln!(
            out,
            "no deploys yet for {} (`systemctl start sum-deploy@{}` deploys it)",
            site.name, site.name
        );
        return Ok(());
    }
    history_table(&records, out);
    if limit > 0 && all > limit {
        let _ = writeln!(
            out,
            "(the last {limit} of {all}; `-n 0` shows all, `--json` everything recorded)"
        );
    }
    Ok(())
}

/// One line per record; a failure goes on a line of its own under its
/// record.
fn history_table(records: &[Record], out: &mut dyn Write) {
    let dash = |s: Option<&str>| s.unwrap_or("-").to_string();
    let mut rows = vec![header(&[
        "STARTED (UTC)",
        "ACTION",
        "REF",
        "SHA",
        "RELEASE",
        "OUTCOME",
        "TIME",
        "WHO",
    ])];
    for r in records {
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
    // The table is laid out first, so a failure's line does not widen the
    // columns.
    let mut laid_out = Vec::new();
    table(&rows, &mut laid_out);
    let laid_out = String::from_utf8_lossy(&laid_out).into_owned();
    let mut lines = laid_out.lines();
    if let Some(header) = lines.next() {
        let _ = writeln!(out, "{header}");
    }
    for (r, line) in records.iter().zip(lines) {
        let _ = writeln!(out, "{line}");
        if let Some(failure) = failure_line(r) {
            let _ = writeln!(out, "{failure}");
        }
        // The way back from this deploy's migrations (docs/deploy.md,
        // "Rolling back"): named here so nobody digs through --json for it.
        if let Some(backup) = &r.backup {
            let _ = writeln!(out, "    backup before its migrations: {backup}");
        }
    }
}

/// `    failed at STEP: first line of the error` for a failed record, then
/// the lines that say why (see [`cause_lines`]), indented under it.
fn failure_line(r: &Record) -> Option<String> {
    if r.failed_step.is_none() && r.error.is_none() {
        return None;
    }
    let error = r.error.as_deref().unwrap_or("");
    let first = error
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no message recorded)");
    let mut text = format!(
        "    failed at {}: {}",
        r.failed_step.as_deref().unwrap_or("?"),
        excerpt(first, 300)
    );
    for cause in cause_lines(error) {
        text.push_str(&format!("\n      {}", excerpt(cause, 300)));
    }
    Some(text)
}

/// The lines of an error after its first that say why: every line naming
/// an exception or an error (`ValueError: …`, `ERROR: …`,
/// `django.core.exceptions.ImproperlyConfigured: …`) and the last line,
/// which is where Python and pip put the cause; at most three, in order.
fn cause_lines(error: &str) -> Vec<&str> {
    let rest: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .skip(1)
        .collect();
    let Some(last) = rest.last() else {
        return Vec::new();
    };
    let mut picked: Vec<&str> = rest
        .iter()
        .copied()
        .filter(|l| names_an_error(l) && l != last)
        .collect();
    let keep_from = picked.len().saturating_sub(2);
    picked.drain(..keep_from);
    picked.push(last);
    picked
}

/// `SomethingError: …`, `SomethingException: …`, `ERROR: …`, a dotted path
/// ending in one of them, or Django's `ImproperlyConfigured: …`.
fn names_an_error(line: &str) -> bool {
    let Some((head, _)) = line.split_once(':') else {
        return false;
    };
    let name = head.rsplit('.').next().unwrap_or(head);
    !name.contains(' ')
        && (name.ends_with("Error")
            || name.ends_with("Exception")
            || name == "ERROR"
            || name == "ImproperlyConfigured")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_last_line_and_the_errors_named_before_it() {
        let pip = "pip install -r requirements.txt failed (exit status: 1):\n\
                   ERROR: Could not find a version that satisfies djangoo\n\
                   ERROR: No matching distribution found for djangoo";
        assert_eq!(
            cause_lines(pip),
            [
                "ERROR: Could not find a version that satisfies djangoo",
                "ERROR: No matching distribution found for djangoo"
            ]
        );
        let check = "`manage.py check --deploy` failed (exit status: 1):\n\
                     Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n\
                     django.core.exceptions.ImproperlyConfigured: SECRET_KEY must not be empty\n\n\
                     During handling of the above exception, another exception occurred:\n\
                     KeyError: 'DJANGO_SECRET_KEY'";
        assert_eq!(
            cause_lines(check),
            [
                "django.core.exceptions.ImproperlyConfigured: SECRET_KEY must not be empty",
                "KeyError: 'DJANGO_SECRET_KEY'"
            ]
        );
        assert!(cause_lines("one line only").is_empty());
        assert!(cause_lines("").is_empty());
        assert!(!names_an_error("Note: an Error happened"));
        assert!(names_an_error("ValueError: x"));
    }
}
