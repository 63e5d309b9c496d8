//! Which backups to keep: the newest verified backup of each of the last
//! `keep_daily` days, `keep_weekly` weeks and `keep_monthly` months that
//! have one (grandfather-father-son), the newest verified backup always,
//! and every backup the deploy history names as the pre-migrate backup of
//! a release still on disk (the way back from that release's migrations).
//! Only verified backups count and only they are ever deleted. Each kept
//! backup carries the reasons it is kept, so the log and the dry run can
//! say why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::backup::dump::Listed;
use crate::system::timefmt;

/// Retention counts from the site file.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The newest verified backup, kept whatever the counts say.
    Newest,
    /// The newest of a day (`YYYY-MM-DD`) among the last `keep_daily`.
    Daily(String),
    /// The newest of a week among the last `keep_weekly`, named by its
    /// Monday (`YYYY-MM-DD`).
    Weekly(String),
    /// The newest of a month (`YYYY-MM`) among the last `keep_monthly`.
    Monthly(String),
    /// The deploy history names it as the pre-migrate backup of this
    /// release, which is still on disk.
    PreMigrate(String),
    /// Not verified (no manifest, or one that disagrees): never counted,
    /// never deleted.
    Unverified,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => write!(f, "the newest verified backup"),
            Reason::Daily(d) => write!(f, "newest of {d} (keep_daily)"),
            Reason::Weekly(w) => write!(f, "newest of the week of {w} (keep_weekly)"),
            Reason::Monthly(m) => write!(f, "newest of {m} (keep_monthly)"),
            Reason::PreMigrate(r) => write!(f, "pre-migrate backup of release {r}"),
            Reason::Unverified => write!(f, "unverified, so never counted or deleted"),
        }
    }
}

/// What retention decided for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub file: String,
    /// Empty: the backup goes.
    pub kept: Vec<Reason>,
}

impl Decision {
    pub fn deleted(&self) -> bool {
        self.kept.is_empty()
    }

    /// The reasons, for a log line: `newest of 2026-11-22 (keep_daily);
    /// pre-migrate backup of release …`.
    pub fn why(&self) -> String {
        self.kept
            .iter()
            .map(Reason::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn day(unix: u64) -> i64 {
    (unix / 86_400) as i64
}

/// Monday of the backup's ISO week, as a day number: one key per week.
fn week(unix: u64) -> i64 {
    let d = day(unix);
    d - (d + 3).rem_euclid(7)
}

fn month(unix: u64) -> (i64, u32) {
    let (y, m, ..) = timefmt::parts(unix);
    (y, m)
}

fn date(day: i64) -> String {
    let (y, m, d, ..) = timefmt::parts(day.max(0) as u64 * 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Decides every backup in `backups`, newest first. `pinned` maps a backup's
/// file name to the release whose pre-migrate backup it is, for releases
/// still on disk (`crate::site_state::pre_migrate_backups`).
pub fn plan(backups: &[Listed], keep: Keep, pinned: &BTreeMap<String, String>) -> Vec<Decision> {
    let mut sorted: Vec<&Listed> = backups.iter().collect();
    sorted.sort_by(|a, b| b.unix.cmp(&a.unix).then_with(|| b.file.cmp(&a.file)));
    let verified: Vec<&Listed> = sorted.iter().copied().filter(|b| b.verified).collect();
    let mut reasons: BTreeMap<&str, Vec<Reason>> = BTreeMap::new();
    if let Some(newest) = verified.first() {
        reasons
            .entry(&newest.file)
            .or_default()
            .push(Reason::Newest);
    }
    fn keep_per_bucket<'a, K: Ord + Copy>(
        verified: &[&'a Listed],
        n: u32,
        key: impl Fn(u64) -> K,
        reason: impl Fn(K) -> Reason,
        reasons: &mut BTreeMap<&'a str, Vec<Reason>>,
    ) {
        let mut seen = BTreeSet::new();
        for b in verified {
            if seen.len() >= n as usize {
                break;
            }
            let k = key(b.unix);
            if seen.insert(k) {
                reasons.entry(&b.file).or_default().push(reason(k));
            }
        }
    }
    keep_per_bucket(
        &verified,
        keep.daily,
        day,
        |d| Reason::Daily(date(d)),
        &mut reasons,
    );
    keep_per_bucket(
        &verified,
        keep.weekly,
        week,
        |w| Reason::Weekly(date(w)),
        &mut reasons,
    );
    keep_per_bucket(
        &verified,
        keep.monthly,
        month,
        |(y, m)| Reason::Monthly(format!("{y:04}-{m:02}")),
        &mut reasons,
    );
    for b in &verified {
        if let Some(release) = pinned.get(&b.file) {
            reasons
                .entry(&b.file)
                .or_default()
                .push(Reason::PreMigrate(release.clone()));
        }
    }
    sorted
        .iter()
        .map(|b| Decision {
            file: b.file.clone(),
            kept: if b.verified {
                reasons.remove(b.file.as_str()).unwrap_or_default()
            } else {
                vec![Reason::Unverified]
            },
        })
        .collect()
}

/// The verified backups (by file name) that retention would delete.
pub fn to_delete(backups: &[Listed], keep: Keep, pinned: &BTreeMap<String, String>) -> Vec<String> {
    plan(backups, keep, pinned)
        .into_iter()
        .filter(Decision::deleted)
        .map(|d| d.file)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(unix: u64, verified: bool) -> Listed {
        Listed {
            file: crate::backup::dump::backup_name("acme", unix),
            taken_utc: timefmt::iso_utc(unix),
            unix,
            size: 1,
            verified,
        }
    }

    const DAY: u64 = 86_400;
    // 2026-11-22 02:00 UTC, a Sunday.
    const T: u64 = 1_795_312_800;
    const NONE: &BTreeMap<String, String> = &BTreeMap::new();

    #[test]
    fn keeps_one_per_day_week_and_month() {
        // Two backups a day for 100 days.
        let all: Vec<Listed> = (0..200).map(|i| b(T - i * DAY / 2, true)).collect();
        let gone = to_delete(
            &all,
            Keep {
                daily: 7,
                weekly: 4,
                monthly: 3,
            },
            NONE,
        );
        let kept: Vec<&Listed> = all.iter().filter(|x| !gone.contains(&x.file)).collect();
        // 7 days; weeks and months add older ones beyond them.
        assert!(kept.iter().any(|x| x.unix == T), "the newest is kept");
        let days: BTreeSet<i64> = kept.iter().map(|x| day(x.unix)).collect();
        assert_eq!(days.len(), kept.len(), "at most one per day is kept");
        assert!(kept.len() >= 7 && kept.len() <= 7 + 4 + 3, "{}", kept.len());
        assert!(
            kept.iter().any(|x| x.unix < T - 40 * DAY),
            "a monthly one reaches back"
        );
        assert_eq!(gone.len() + kept.len(), all.len());
    }

    #[test]
    fn unverified_backups_are_never_counted_or_deleted() {
        let all = vec![
            b(T, false),
            b(T - DAY, true),
            b(T - 2 * DAY, true),
            b(T - 3 * DAY, false),
        ];
        let keep = Keep {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(to_delete(&all, keep, NONE), vec![all[2].file.clone()]);
        let p = plan(&all, keep, NONE);
        assert_eq!(p[0].kept, vec![Reason::Unverified]);
        assert_eq!(p[3].kept, vec![Reason::Unverified]);
    }

    #[test]
    fn the_newest_verified_backup_survives_zero_retention() {
        let all = vec![b(T, true), b(T - DAY, true)];
        let gone = to_delete(
            &all,
            Keep {
                daily: 0,
                weekly: 0,
                monthly: 0,
            },
            NONE,
        );
        assert_eq!(gone, vec![all[1].file.clone()]);
    }

    /// Issue 11, part 7: a deploy at 01:00 took a pre-migrate backup, the
    /// nightly one at 02:00 the same day made it the second of its day.
    #[test]
    fn a_pre_migrate_backup_of_a_release_on_disk_is_kept_with_its_reason() {
        let nightly = b(T, true);
        let pre_migrate = b(T - 3600, true);
        let older = b(T - DAY, true);
        let all = vec![nightly.clone(), pre_migrate.clone(), older.clone()];
        let keep = Keep {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(
            to_delete(&all, keep, NONE),
            vec![pre_migrate.file.clone(), older.file.clone()],
            "without the pin the daily rule deletes it"
        );
        let pinned = BTreeMap::from([(
            pre_migrate.file.clone(),
            "20261122T010000Z-abc1234".to_string(),
        )]);
        let p = plan(&all, keep, &pinned);
        assert_eq!(
            p.iter()
                .filter(|d| d.deleted())
                .map(|d| &d.file)
                .collect::<Vec<_>>(),
            vec![&older.file]
        );
        assert_eq!(p[0].file, nightly.file);
        assert_eq!(
            p[0].why(),
            "the newest verified backup; newest of 2026-11-22 (keep_daily)"
        );
        assert_eq!(p[1].file, pre_migrate.file);
        assert_eq!(
            p[1].why(),
            "pre-migrate backup of release 20261122T010000Z-abc1234"
        );
    }

    #[test]
    fn reasons_name_the_day_the_week_and_the_month() {
        let all = vec![b(T, true), b(T - 7 * DAY, true), b(T - 40 * DAY, true)];
        let p = plan(
            &all,
            Keep {
                daily: 1,
                weekly: 2,
                monthly: 2,
            },
            NONE,
        );
        // 2026-11-22 is a Sunday: its week began on Monday 2026-11-16.
        assert_eq!(
            p[0].kept,
            vec![
                Reason::Newest,
                Reason::Daily("2026-11-22".into()),
                Reason::Weekly("2026-11-16".into()),
                Reason::Monthly("2026-11".into()),
            ]
        );
        assert_eq!(p[1].kept, vec![Reason::Weekly("2026-11-09".into())]);
        assert_eq!(p[2].kept, vec![Reason::Monthly("2026-10".into())]);
    }
}
