//! `sum::calendar::validate` must agree with the real `systemd-analyze
//! calendar` on every expression of this corpus: what systemd rejects would
//! otherwise become a backup timer that never fires.

mod common;

use std::process::Command;

const CORPUS: &[&str] = &[
    // Accepted by systemd 252.
    "hourly",
    "HOURLY",
    "minutely",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
    "weekly UTC",
    "Mon",
    "mon",
    "Monday",
    "Thu",
    "Thursday",
    "Mon..Fri",
    "Mon-Fri",
    "Mon..Mon",
    "Mon,Mon",
    "Mon,",
    "Mon,Fri 10:00",
    "Mon  10:00",
    "Mon..Wed,Fri",
    "Sat,Sun *-*-* 10:00",
    "2024-02-30",
    "2024-02-30 00:00",
    "*:0/15",
    "*-*~01",
    "*-02~1..3",
    "*~07",
    "*-*-* 02:00:00 UTC",
    "*-*-* 02:00:00 utc",
    "*-*-* 02:00:00 Europe/Berlin",
    "*-*-* 02:00:00 Etc/GMT+1",
    "*-*-* 02:00:00 GMT",
    "*-*-* 02:00:00 CET",
    "@1700000000",
    "2199-12-31",
    "*-*-* 2:0:0",
    "12:00:00.5",
    "12:00:00.123456",
    "12:00:00.1234567",
    "12:00:5.5",
    "1,2:00",
    "01..05:00",
    "*-*-* *:*:*",
    "*-*-*",
    "*:*",
    "*-*-*  02:00",
    "1..10/2:00",
    "2024-1-1",
    "24-1-1",
    "*-*-1/2",
    "00:00/5",
    "00:00:00/10",
    "1:2",
    "01-01",
    "1-1 1:00",
    "Mon..Fri *-*-* 03:30:00 Europe/Berlin",
    "Mon *-*-* 09:00 UTC",
    // Rejected by systemd 252.
    " daily",
    "daily ",
    "Fri..Mon",
    "Mon Fri 10:00",
    "24:00",
    "23:60",
    "12:00:60",
    "*-*-* 02:00:00 Mars/Base",
    "*-*-* 02:00:00 Europe/berlin",
    "*-*-* 02:00:00 Z",
    "@",
    "@-1",
    "1969-01-01",
    "2200-01-01",
    "0/0:00",
    "*",
    "**",
    "Mon..",
    "10:00 Mon",
    "*-1..13-1",
    "minutely hourly",
    "",
    "5..3:00",
    "*-*-* 02:00:00 UTC UTC",
    "Sat, Sun 10:00",
    "*:*/15",
    "*/2:00",
    "2024-01-01T10:00",
    ",Mon",
    "Mo",
    "Tues",
    "*-*-* 02:00:00 UTC ",
    "*-*-*\t02:00",
    "2024-01",
    "*-*-* 25:00:00",
    "*-*-31/0",
    "Mon-Wed..Fri",
    "Mon..Wed..Fri",
    "~07",
    "every night",
    "*-*-* 02:00:00\nExecStart=x",
    "50% 10:00",
    "*-*-* 02:00:00 \"UTC\"",
];

fn systemd_accepts(expr: &str) -> bool {
    Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", expr])
        .output()
        .expect("run systemd-analyze")
        .status
        .success()
}

#[test]
fn agrees_with_systemd_analyze_calendar() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let mut accepted = 0;
    let mut disagreements = Vec::new();
    for expr in CORPUS {
        let systemd = systemd_accepts(expr);
        let ours = sum::calendar::validate(expr);
        accepted += usize::from(systemd);
        if systemd != ours.is_ok() {
            disagreements.push(format!("{expr:?}: systemd {systemd}, ours {ours:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "disagreements:\n{}",
        disagreements.join("\n")
    );
    assert!(CORPUS.len() >= 80);
    assert!(
        accepted >= 30 && CORPUS.len() - accepted >= 30,
        "the corpus must hold both kinds ({accepted} accepted)"
    );
}
