//! `sum::config::calendar::validate` must give the same verdict as the real
//! `systemd-analyze calendar` on every expression of this corpus: a schedule
//! systemd rejects would otherwise become a backup timer that never loads.
//!
//! systemd decides what is valid here; the grouping below only records what
//! systemd 252 said when the corpus was written.

use std::io::ErrorKind;
use std::process::Command;

const CORPUS: &[&str] = &[
    // Accepted by systemd 252.
    "minutely",
    "hourly",
    "HOURLY",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "semi-annually",
    "weekly UTC",
    "daily Europe/Berlin",
    "daily posix/Europe/Paris",
    "Mon",
    "monday",
    "Thu",
    "Mon ",
    "Mon..Fri",
    "Mon-Fri",
    "Mon..Sun",
    "Mon..Fri 09:00",
    "Mon,Fri *-*-* 10:00",
    "Sat,Sun *-*-* 10:00",
    "Mon..Wed,Fri 08:30",
    "Mon, 10:00",
    "Mon,",
    "Mon  10:00",
    "*-*-* 02:00:00 UTC",
    "*-*-* 02:00:00 utc",
    "*-*-* 02:00:00 Europe/Berlin",
    "*-*-* 02:00 America/New_York",
    "*-*-* 02:00 America/Argentina/Buenos_Aires",
    "*-*-* 02:00 Etc/GMT+1",
    "*-*-* 02:00 GMT",
    "*-*-* 02:00 CET",
    "*-*-*  Europe/Berlin",
    "*-*-* ",
    "*-*-*",
    "*-*-* *:*:*",
    "*-*~01",
    "*~07",
    "*-02~1..3",
    "*-*~1,2",
    "2024-02-30",
    "*:0/15",
    "*:*:0/30",
    "00:00/5",
    "12:00:00.5",
    "12:00:59.9999994",
    "1..24/4:00",
    "0..10/20:00",
    "*-1..13/5-01",
    "2199-12-31",
    "24-1-1",
    "2024-01-01 02:30",
    "01-01",
    "1,2,3:00",
    "2:0",
    "@1700000000",
    "@0",
    "@ 5",
    // Rejected by systemd 252.
    "",
    " daily",
    "hourly ",
    "daily  UTC",
    "-daily",
    "Tue..Mon",
    "Fri..Mon",
    "24:00",
    "*-*-* 25:00:00",
    "23:60",
    "12:00:60",
    "12:00:59.9999995",
    "12:00:00.",
    "*:50/15",
    "*:*:30/30",
    "*:*:5..5",
    "5..3:00",
    "0/0:00",
    "*/2:00",
    "*:*/15",
    "*",
    "**",
    "1969-01-01",
    "2200-01-01",
    "*-1..13-1",
    "*-13-01",
    "*-02-32",
    "*~29",
    "*~12,28",
    "2024~01-01",
    "~07",
    "2024-01",
    "*-*-* 02:00:00 Mars/Base",
    "*-*-* 02:00:00 Europe/berlin",
    "*-*-* 02:00 Europe/Berln",
    "*-*-* 02:00 CEST",
    "*-*-* 02:00 Z",
    "*-*-* 02:00  UTC",
    "*-*-* 02:00 UTC UTC",
    "UTC",
    " UTC",
    "@",
    "@-1",
    "@7258118400",
    "@1700000000 10:00",
    "Mon..",
    "Mon..Wed..Fri",
    "Mon-Wed..Fri",
    "Mon.Tue",
    "Mo",
    "Tues",
    "Mondays",
    "Mnday",
    "dayly",
    "Sat, Sun 10:00",
    "Mon Fri 10:00",
    "10:00 Mon",
    "daily 10:00",
    "2024-01-01T10:00",
    "10:00 ",
    "02:00:00 xyz",
    "daily;",
    "1,,2:00",
    "1,:00",
    "2147483648:00",
    "every night",
    "*-*-* 02:00:00\nExecStart=/bin/sh",
    "*-*-*\t02:00",
    "50% 10:00",
    "*-*-* 02:00:00 \"UTC\"",
];

/// None when systemd-analyze is not installed.
fn systemd_accepts(expr: &str) -> Option<bool> {
    // `--` keeps `-daily` from being read as options; TZ=UTC keeps the local
    // zone's abbreviations, which validate() refuses on purpose, out of play.
    let out = Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", "--", expr])
        .env("TZ", "UTC")
        .output();
    match out {
        Ok(out) => Some(out.status.success()),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

#[test]
fn agrees_with_systemd_analyze_calendar() {
    if systemd_accepts("daily").is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("systemd-analyze is not on PATH, and CI is set: this test must run in CI");
        }
        eprintln!("note: systemd-analyze is not on PATH; skipping the comparison");
        return;
    }
    let mut accepted = 0;
    let mut disagreements = Vec::new();
    for expr in CORPUS {
        let systemd = systemd_accepts(expr).expect("systemd-analyze vanished");
        let ours = sum::config::calendar::validate(expr);
        accepted += usize::from(systemd);
        if systemd != ours.is_ok() {
            disagreements.push(format!(
                "{expr:?}: systemd accepts: {systemd}, ours: {ours:?}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "validate() disagrees with systemd-analyze on:\n{}",
        disagreements.join("\n")
    );
    let rejected = CORPUS.len() - accepted;
    assert!(
        CORPUS.len() >= 80,
        "the corpus has only {} expressions",
        CORPUS.len()
    );
    assert!(
        accepted >= 30 && rejected >= 30,
        "the corpus must hold both kinds: {accepted} accepted, {rejected} rejected"
    );
}
