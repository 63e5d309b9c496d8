//! Which backups to keep: the newest verified backup of each of the last
//! `keep_daily` days, `keep_weekly` weeks and `keep_monthly` months that
//! have one (grandfather-father-son). Only verified backups count and only
//! they are ever deleted; the newest verified backup is always kept.

use std::collections::BTreeSet;

use crate::backup::Listed;
use crate::timefmt;

/// Retention counts from the site file.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
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

/// The verified backups (by file name) that retention would delete.
pub fn to_delete(backups: &[Listed], keep: Keep) -> Vec<String> {
    let mut verified: Vec<&Listed> = backups.iter().filter(|b| b.verified).collect();
    verified.sort_by(|a, b| b.unix.cmp(&a.unix).then_with(|| b.file.cmp(&a.file)));
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    if let Some(newest) = verified.first() {
        kept.insert(&newest.file);
    }
    fn keep_per_bucket<'a, K: Ord>(
        verified: &[&'a Listed],
        n: u32,
        key: impl Fn(u64) -> K,
        kept: &mut BTreeSet<&'a str>,
    ) {
        let mut seen = BTreeSet::new();
        for b in verified {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(key(b.unix)) {
                kept.insert(&b.file);
            }
        }
    }
    keep_per_bucket(&verified, keep.daily, day, &mut kept);
    keep_per_bucket(&verified, keep.weekly, week, &mut kept);
    keep_per_bucket(&verified, keep.monthly, month, &mut kept);
    verified
        .iter()
        .filter(|b| !kept.contains(b.file.as_str()))
        .map(|b| b.file.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(unix: u64, verified: bool) -> Listed {
        Listed {
            file: crate::backup::backup_name("acme", unix),
            taken_utc: timefmt::iso_utc(unix),
            unix,
            size: 1,
            verified,
        }
    }

    const DAY: u64 = 86_400;
    // 2026-11-22 02:00 UTC, a Sunday.
    const T: u64 = 1_795_312_800;

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
        let gone = to_delete(
            &all,
            Keep {
                daily: 1,
                weekly: 0,
                monthly: 0,
            },
        );
        assert_eq!(gone, vec![all[2].file.clone()]);
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
        );
        assert_eq!(gone, vec![all[1].file.clone()]);
    }
}
