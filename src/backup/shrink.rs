//! A backup that shrank: far fewer tables or rows than the last backup that
//! counts. It is still a verified backup of what `DATABASE_URL` names, but
//! that is rarely what the operator wants to keep: a `DATABASE_URL` that
//! names a wrong, empty database backs up nothing, and such a backup must
//! not push the real ones out of retention. So it is flagged in its
//! manifest, in the log and in the listings, and retention keeps it without
//! counting it (docs/backups.md, "Shrunken backups").

use serde::{Deserialize, Serialize};

use crate::backup::contents::Contents;

/// Below this many rows in the earlier backup the rows rule does not
/// apply: a small or new site halves its rows with ordinary edits, and a
/// freshly migrated Django database alone holds some hundreds (migrations,
/// content types, permissions).
pub const MIN_ROWS: u64 = 1000;

/// Recorded in the manifest of a backup that shrank, as `"shrunk"`; its
/// own counts are the manifest's `"contents"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shrunk {
    /// The backup it was compared with: the newest earlier verified backup
    /// with counts that did not shrink (or was accepted).
    pub previous: String,
    pub previous_database: String,
    pub previous_tables: u64,
    pub previous_rows: u64,
    /// Taken with `sum-backup --accept-shrink`: the operator said the
    /// smaller database is right, so it counts like any backup and later
    /// ones are compared with it.
    #[serde(default)]
    pub accepted: bool,
}

/// The backup a new one is compared with.
#[derive(Debug, Clone, Copy)]
pub struct Baseline<'a> {
    pub file: &'a str,
    pub database: &'a str,
    pub contents: Contents,
}

/// Whether a dump holding `new` shrank against one holding `previous`: no
/// tables where there were some; fewer than half the tables; or fewer than
/// half the rows, when there were at least [`MIN_ROWS`]. A dump at least as
/// large in both never shrank.
pub fn shrank(previous: Contents, new: Contents) -> bool {
    (previous.tables > 0 && new.tables == 0)
        || new.tables.saturating_mul(2) < previous.tables
        || (previous.rows >= MIN_ROWS && new.rows.saturating_mul(2) < previous.rows)
}

/// The manifest's `"shrunk"` for a dump holding `new`: None when it did not
/// shrink against `baseline` or there is nothing to compare it with.
/// `accept`: the operator's `--accept-shrink`.
pub fn judge(baseline: Option<Baseline>, new: Contents, accept: bool) -> Option<Shrunk> {
    let b = baseline?;
    shrank(b.contents, new).then(|| Shrunk {
        previous: b.file.to_string(),
        previous_database: b.database.to_string(),
        previous_tables: b.contents.tables,
        previous_rows: b.contents.rows,
        accepted: accept,
    })
}

impl Shrunk {
    /// The counts of the backup it was compared with.
    pub fn previous_contents(&self) -> Contents {
        Contents {
            tables: self.previous_tables,
            rows: self.previous_rows,
        }
    }

    /// Flagged and not accepted: retention does not count it.
    pub fn unaccepted(&self) -> bool {
        !self.accepted
    }

    /// What shrank against what, for the log and the listings: `database
    /// hc_typo holds 0 tables, 0 rows; the previous backup
    /// acme-….sql.gz (database hc) held 2 tables, 25000 rows`.
    pub fn describe(&self, database: &str, new: Contents) -> String {
        let previous_db = if self.previous_database == database {
            String::new()
        } else {
            format!(" (database {})", self.previous_database)
        };
        format!(
            "database {database} holds {new}; the previous backup {}{previous_db} held {}",
            self.previous,
            self.previous_contents()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(tables: u64, rows: u64) -> Contents {
        Contents { tables, rows }
    }

    #[test]
    fn the_thresholds() {
        // No tables where there were some, however few.
        assert!(shrank(c(1, 0), c(0, 0)));
        assert!(shrank(c(40, 100_000), c(0, 0)));
        // Fewer than half the tables.
        assert!(shrank(c(40, 100), c(19, 100)));
        assert!(!shrank(c(40, 100), c(20, 100)));
        // Fewer than half the rows, from MIN_ROWS up.
        assert!(shrank(c(40, 1000), c(40, 499)));
        assert!(!shrank(c(40, 1000), c(40, 500)));
        assert!(!shrank(c(40, 999), c(40, 0)), "too few rows to judge");
        // Nothing to lose.
        assert!(!shrank(c(0, 0), c(0, 0)));
    }

    #[test]
    fn judged_against_the_baseline_and_described() {
        let base = Baseline {
            file: "acme-20261122T020000Z.sql.gz",
            database: "hc",
            contents: c(2, 25_000),
        };
        assert_eq!(judge(None, c(0, 0), false), None);
        assert_eq!(judge(Some(base), c(2, 25_001), false), None);
        let s = judge(Some(base), c(0, 0), false).unwrap();
        assert_eq!(
            s,
            Shrunk {
                previous: base.file.into(),
                previous_database: "hc".into(),
                previous_tables: 2,
                previous_rows: 25_000,
                accepted: false,
            }
        );
        assert!(s.unaccepted());
        assert_eq!(
            s.describe("hc_typo", c(0, 0)),
            "database hc_typo holds 0 tables, 0 rows; the previous backup \
             acme-20261122T020000Z.sql.gz (database hc) held 2 tables, 25000 rows"
        );
        assert!(s.describe("hc", c(0, 0)).contains(".sql.gz held 2 tables"));
        assert!(!judge(Some(base), c(0, 0), true).unwrap().unaccepted());
    }

    #[test]
    fn older_manifests_without_accepted_read_as_not_accepted() {
        let s: Shrunk = serde_json::from_str(
            r#"{"previous":"a","previous_database":"d","previous_tables":1,"previous_rows":2}"#,
        )
        .unwrap();
        assert!(s.unaccepted());
    }

    proptest! {
        #[test]
        fn never_when_at_least_as_large(
            tables in any::<u64>(), rows in any::<u64>(),
            more_tables in any::<u64>(), more_rows in any::<u64>(),
        ) {
            let old = c(tables, rows);
            let new = c(tables.saturating_add(more_tables), rows.saturating_add(more_rows));
            prop_assert!(!shrank(old, new));
        }

        #[test]
        fn always_when_the_tables_are_gone(tables in 1..u64::MAX, rows in any::<u64>(), new_rows in any::<u64>()) {
            prop_assert!(shrank(c(tables, rows), c(0, new_rows)));
        }

        #[test]
        fn always_below_half_the_tables(tables in 2..u64::MAX, rows in any::<u64>(), new_rows in any::<u64>()) {
            let new_tables = (tables - 1) / 2;
            prop_assert!(shrank(c(tables, rows), c(new_tables, new_rows)));
        }

        #[test]
        fn always_below_half_the_rows_from_the_minimum(
            rows in MIN_ROWS..u64::MAX, tables in any::<u64>(), more_tables in any::<u64>(),
        ) {
            let new = c(tables.saturating_add(more_tables), (rows - 1) / 2);
            prop_assert!(shrank(c(tables, rows), new));
        }

        #[test]
        fn a_little_fewer_is_no_shrink(
            tables in any::<u64>(), rows in any::<u64>(), t_pct in 0u64..=50, r_pct in 0u64..=50,
        ) {
            // Losing at most half of each keeps the tables (while any are
            // left) and never warns.
            let new_tables = tables - (tables as u128 * t_pct as u128 / 100) as u64;
            let new_rows = rows - (rows as u128 * r_pct as u128 / 100) as u64;
            prop_assume!(tables == 0 || new_tables > 0);
            prop_assert!(!shrank(c(tables, rows), c(new_tables, new_rows)));
        }
    }
}
