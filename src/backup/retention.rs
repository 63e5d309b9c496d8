//! Which backups to keep: the newest verified backup of each of the last
//! `keep_daily` days, `keep_weekly` weeks and `keep_monthly` months that
//! have one (grandfather-father-son), the newest verified backup always,
//! and every backup the deploy history names as the pre-migrate backup of
//! a release still on disk (the way back from that release's migrations).
//! Only verified backups count and only they are ever deleted. A backup
//! that shrank (`crate::backup::shrink`, not accepted) is kept but neither
//! counted nor deleted, so a dump of a wrong, empty database never pushes
//! the real backups out; the older backups it would have displaced say
//! so. Each kept backup carries the reasons it is kept, so the log and the
//! dry run can say why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::backup::catalog::Listed;
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
    /// Verified, but it shrank against this earlier backup and nobody
    /// accepted it: never counted, never deleted.
    Shrunk(String),
    /// Counting this newer backup that shrank would have pushed this one
    /// out.
    InPlaceOfShrunk(String),
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
            Reason::Shrunk(p) => write!(f, "SHRUNK against {p}, so never counted or deleted"),
            Reason::InPlaceOfShrunk(s) => write!(
                f,
                "holds its place: the newer {s} shrank and is not counted"
            ),
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
    let mut decisions = plan_counting(backups, keep, pinned, |b| b.verified && !b.is_shrunk());
    if !backups.iter().any(Listed::is_shrunk) {
        return decisions;
    }
    // What counting the shrunken backups would have deleted, to say why
    // the older ones are still here.
    let naive = plan_counting(backups, keep, pinned, |b| b.verified);
    let newest_shrunk = |unix: u64| {
        backups
            .iter()
            .filter(|s| s.is_shrunk() && s.unix > unix)
            .max_by_key(|s| s.unix)
            .map(|s| s.file.clone())
    };
    for (d, n) in decisions.iter_mut().zip(&naive) {
        let b = backups.iter().find(|b| b.file == d.file).expect("planned");
        if !d.deleted() && n.deleted() && !b.is_shrunk() {
            if let Some(s) = newest_shrunk(b.unix) {
                d.kept.push(Reason::InPlaceOfShrunk(s));
            }
        }
    }
    decisions
}

/// [`plan`], with only the backups `counts` accepts filling the slots.
fn plan_counting(
    backups: &[Listed],
    keep: Keep,
    pinned: &BTreeMap<String, String>,
    counts: impl Fn(&Listed) -> bool,
) -> Vec<Decision> {
    let mut sorted: Vec<&Listed> = backups.iter().collect();
    sorted.sort_by(|a, b| b.unix.cmp(&a.unix).then_with(|| b.file.cmp(&a.file)));
    let verified: Vec<&Listed> = sorted.iter().copied().filter(|b| counts(b)).collect();
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
    for b in sorted.iter().filter(|b| b.verified) {
        if let Some(release) = pinned.get(&b.file) {
            reasons
                .entry(&b.file)
                .or_default()
                .push(Reason::PreMigrate(release.clone()));
        }
    }
    sorted
        .iter()
        .map(|b| {
            let mut kept = reasons.remove(b.file.as_str()).unwrap_or_default();
            if !b.verified {
                kept = vec![Reason::Unverified];
            } else if !counts(b) {
                let previous = b.shrunk.as_ref().map_or("", |s| &s.previous);
                kept.insert(0, Reason::Shrunk(previous.to_string()));
            }
            Decision {
                file: b.file.clone(),
                kept,
            }
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
            file: crate::backup::catalog::backup_name("acme", unix),
            taken_utc: timefmt::iso_utc(unix),
            unix,
            size: 1,
            verified,
            ..Listed::default()
        }
    }

    /// A verified backup that shrank against `previous`.
    fn shrunk(unix: u64, previous: &Listed, accepted: bool) -> Listed {
        Listed {
            shrunk: Some(crate::backup::shrink::Shrunk {
                previous: previous.file.clone(),
                previous_database: "acme".into(),
                previous_tables: 2,
                previous_rows: 25_000,
                accepted,
            }),
            ..b(unix, true)
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

    /// The trial: a `DATABASE_URL` naming an empty database made the
    /// second backup of the day, and keep_daily = 1 deleted the real one.
    #[test]
    fn a_shrunken_backup_is_kept_uncounted_and_the_real_one_keeps_its_place() {
        let real = b(T - 3600, true);
        let older = b(T - DAY, true);
        let typo = shrunk(T, &real, false);
        let all = vec![typo.clone(), real.clone(), older.clone()];
        let keep = Keep {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        let p = plan(&all, keep, NONE);
        assert_eq!(
            p[0].kept,
            vec![Reason::Shrunk(real.file.clone())],
            "kept, not counted"
        );
        assert_eq!(
            p[1].kept,
            vec![
                Reason::Newest,
                Reason::Daily("2026-11-22".into()),
                Reason::InPlaceOfShrunk(typo.file.clone()),
            ]
        );
        assert_eq!(
            p[1].why(),
            format!(
                "the newest verified backup; newest of 2026-11-22 (keep_daily); holds its place: \
                 the newer {} shrank and is not counted",
                typo.file
            )
        );
        assert!(p[0]
            .why()
            .starts_with(&format!("SHRUNK against {}", real.file)));
        assert_eq!(to_delete(&all, keep, NONE), vec![older.file.clone()]);
    }

    #[test]
    fn nights_of_shrunken_backups_push_out_no_real_one() {
        let real = [b(T - 2 * DAY, true), b(T - 3 * DAY, true)];
        let typos = [shrunk(T, &real[0], false), shrunk(T - DAY, &real[0], false)];
        let all = vec![
            typos[0].clone(),
            typos[1].clone(),
            real[0].clone(),
            real[1].clone(),
        ];
        let keep = Keep {
            daily: 2,
            weekly: 0,
            monthly: 0,
        };
        let p = plan(&all, keep, NONE);
        assert!(to_delete(&all, keep, NONE).is_empty(), "{p:?}");
        for d in &p[2..] {
            assert_eq!(
                d.kept.last(),
                Some(&Reason::InPlaceOfShrunk(typos[0].file.clone())),
                "{d:?}"
            );
        }
        // A shrunken pre-migrate backup keeps both reasons.
        let pinned = BTreeMap::from([(typos[1].file.clone(), "r1".to_string())]);
        assert_eq!(
            plan(&all, keep, &pinned)[1].kept,
            vec![
                Reason::Shrunk(real[0].file.clone()),
                Reason::PreMigrate("r1".into())
            ]
        );
    }

    #[test]
    fn an_accepted_shrink_counts_like_any_backup() {
        let real = b(T - 3600, true);
        let all = vec![shrunk(T, &real, true), real.clone()];
        let keep = Keep {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(to_delete(&all, keep, NONE), vec![real.file.clone()]);
        assert_eq!(
            plan(&all, keep, NONE)[0].kept,
            vec![Reason::Newest, Reason::Daily("2026-11-22".into())]
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
