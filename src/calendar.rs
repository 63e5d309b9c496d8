//! Validation of systemd `OnCalendar=` expressions (systemd.time(7),
//! "CALENDAR EVENTS"), in Rust.
//!
//! The backup schedule goes into a generated `.timer`, and a generator may
//! not spawn `systemd-analyze calendar`; a schedule systemd rejects would
//! otherwise only show up as a timer that never runs. This module follows
//! systemd 252's parser (calendarspec.c) and is cross-checked against the
//! real `systemd-analyze calendar` in `tests/calendar_systemd.rs`.
//!
//! Deliberate limits: timezone names are checked against the system's
//! zoneinfo directory, as systemd does, except for the local zone's
//! abbreviations (e.g. `CEST`), which depend on the machine's TZ and are
//! refused; write the IANA name (`Europe/Berlin`) or `UTC` instead.
//! Control characters and `%` are refused outright: the value is pasted into
//! a unit file.

use std::path::Path;

const SHORTHANDS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const WEEKDAYS: [(&str, &str); 7] = [
    ("monday", "mon"),
    ("tuesday", "tue"),
    ("wednesday", "wed"),
    ("thursday", "thu"),
    ("friday", "fri"),
    ("saturday", "sat"),
    ("sunday", "sun"),
];

/// Checks that `expr` is an OnCalendar= expression systemd accepts, using the
/// system's zoneinfo for timezone names.
pub fn validate(expr: &str) -> Result<(), String> {
    validate_with(expr, &|tz| {
        !tz.contains("..") && Path::new("/usr/share/zoneinfo").join(tz).is_file()
    })
}

/// As [`validate`], with `known_zone` deciding which timezone names exist.
pub fn validate_with(expr: &str, known_zone: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if expr.is_empty() {
        return Err("the schedule is empty".into());
    }
    if let Some(c) = expr.chars().find(|c| c.is_control() || *c == '%') {
        return Err(format!("the schedule contains {c:?}"));
    }
    if expr.starts_with(' ') || expr.ends_with(' ') {
        return Err("the schedule starts or ends with a space".into());
    }
    let mut body = expr;
    if let Some((rest, zone)) = expr.rsplit_once(' ') {
        let is_zone =
            zone.eq_ignore_ascii_case("UTC") || (is_zone_shaped(zone) && known_zone(zone));
        if is_zone {
            body = rest.trim_end_matches(' ');
        } else if is_zone_shaped(zone) && zone.contains('/') {
            return Err(format!("unknown timezone `{zone}`"));
        }
    }
    if let Some(epoch) = body.strip_prefix('@') {
        if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return Err(format!(
            "`{body}` is not @ followed by seconds since the epoch"
        ));
    }
    if SHORTHANDS.iter().any(|s| s.eq_ignore_ascii_case(body)) {
        return Ok(());
    }
    let mut p = Cursor { s: body, i: 0 };
    weekdays(&mut p)?;
    date(&mut p)?;
    time(&mut p)?;
    if p.i != p.s.len() {
        return Err(format!("unexpected `{}`", &p.s[p.i..]));
    }
    Ok(())
}

fn is_zone_shaped(z: &str) -> bool {
    z.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && z.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.i += token.len();
            true
        } else {
            false
        }
    }
    fn skip_spaces(&mut self) -> bool {
        let n = self.rest().bytes().take_while(|b| *b == b' ').count();
        self.i += n;
        n > 0
    }
}

fn weekday(p: &mut Cursor) -> Result<usize, String> {
    let word: String = p
        .rest()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    let lower = word.to_ascii_lowercase();
    match WEEKDAYS
        .iter()
        .position(|(full, abbr)| lower == *full || lower == *abbr)
    {
        Some(n) => {
            p.i += word.len();
            Ok(n)
        }
        None => Err(format!("unknown weekday `{word}`")),
    }
}

/// `Mon..Fri,Sun `: optional; a list of weekdays and ranges.
fn weekdays(p: &mut Cursor) -> Result<(), String> {
    if !p.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        return Ok(());
    }
    loop {
        let from = weekday(p)?;
        if p.eat("..") || p.eat("-") {
            let to = weekday(p)?;
            if to < from {
                return Err(format!(
                    "weekday range {}..{} runs backwards",
                    WEEKDAYS[from].1, WEEKDAYS[to].1
                ));
            }
        }
        match p.peek() {
            None => return Ok(()),
            Some(b',') => {
                p.i += 1;
                if p.peek().is_none() {
                    return Ok(());
                }
            }
            Some(b' ') => {
                p.skip_spaces();
                return Ok(());
            }
            Some(_) => return Err(format!("unexpected `{}` after a weekday", p.rest())),
        }
    }
}

/// One comma-separated chain of values: `*`, or items `N`, `N..M`, `N/R`,
/// `N..M/R` (and `N.frac` for seconds), each within `min..=max`.
fn chain(p: &mut Cursor, what: &str, min: u32, max: u32, fraction: bool) -> Result<(), String> {
    if p.eat("*") {
        return Ok(());
    }
    loop {
        let from = number(p, what, fraction)?;
        let from = normalize_year(what, from);
        check_range(what, from, min, max)?;
        if p.eat("..") {
            let to = normalize_year(what, number(p, what, fraction)?);
            check_range(what, to, min, max)?;
            if to < from {
                return Err(format!("{what} range {from}..{to} runs backwards"));
            }
        }
        if p.eat("/") {
            let repeat = number(p, what, fraction)?;
            if repeat == 0 {
                return Err(format!("{what} repetition /0 is out of range"));
            }
        }
        if !p.eat(",") {
            return Ok(());
        }
    }
}

fn number(p: &mut Cursor, what: &str, fraction: bool) -> Result<u32, String> {
    let digits = p.rest().bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "expected a number for the {what} at `{}`",
            p.rest()
        ));
    }
    let value = p.rest()[..digits]
        .parse::<u32>()
        .map_err(|_| format!("the {what} is too large"))?;
    p.i += digits;
    if fraction && p.peek() == Some(b'.') && p.rest()[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        p.i += 1;
        p.i += p.rest().bytes().take_while(u8::is_ascii_digit).count();
    }
    Ok(value)
}

/// Two-digit years mean 1970–2069, as in systemd.
fn normalize_year(what: &str, v: u32) -> u32 {
    match (what, v) {
        ("year", 0..=69) => v + 2000,
        ("year", 70..=99) => v + 1900,
        _ => v,
    }
}

fn check_range(what: &str, v: u32, min: u32, max: u32) -> Result<(), String> {
    if v < min || v > max {
        Err(format!("{what} {v} is out of range {min}-{max}"))
    } else {
        Ok(())
    }
}

/// `[YEAR-]MONTH-DAY` or `[YEAR-]MONTH~DAY`; optional.
fn date(p: &mut Cursor) -> Result<(), String> {
    let start = p.i;
    let is_chain_start = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit() || b == b'*');
    if !is_chain_start(p.peek()) {
        return Ok(());
    }
    // Parse loosely first to learn the shape, then check values by role.
    let mut parts = Vec::new();
    let mut seps = Vec::new();
    loop {
        let part_start = p.i;
        skip_chain(p);
        parts.push((part_start, p.i));
        match p.peek() {
            Some(b'-') | Some(b'~') if parts.len() < 3 => {
                seps.push(p.peek().unwrap());
                p.i += 1;
            }
            _ => break,
        }
    }
    if parts.len() == 1 {
        // No date: this is the hour of the time part.
        p.i = start;
        return Ok(());
    }
    let roles: &[(&str, u32, u32)] = if parts.len() == 3 {
        if seps[0] == b'~' {
            return Err("`~` may only stand between month and day".into());
        }
        &[("year", 1970, 2199), ("month", 1, 12), ("day", 1, 31)]
    } else {
        &[("month", 1, 12), ("day", 1, 31)]
    };
    for ((from, to), (what, min, max)) in parts.iter().zip(roles) {
        let mut sub = Cursor {
            s: &p.s[..*to],
            i: *from,
        };
        chain(&mut sub, what, *min, *max, false)?;
        if sub.i != *to {
            return Err(format!("unexpected `{}` in the {what}", &p.s[sub.i..*to]));
        }
    }
    match p.peek() {
        None => Ok(()),
        Some(b' ') => {
            p.skip_spaces();
            Ok(())
        }
        Some(_) => Err(format!("unexpected `{}` after the date", p.rest())),
    }
}

/// Moves past the characters a chain can contain (digits, `*`, `,`, `.`, `/`).
fn skip_chain(p: &mut Cursor) {
    p.i += p
        .rest()
        .bytes()
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'*' | b',' | b'.' | b'/'))
        .count();
}

/// `HOUR:MINUTE[:SECOND]`; optional.
fn time(p: &mut Cursor) -> Result<(), String> {
    if p.peek().is_none() {
        return Ok(());
    }
    chain(p, "hour", 0, 23, false)?;
    if !p.eat(":") {
        return Err(format!("expected `:` after the hour at `{}`", p.rest()));
    }
    chain(p, "minute", 0, 59, false)?;
    if p.eat(":") {
        chain(p, "second", 0, 59, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: &str) -> Result<(), String> {
        validate_with(e, &|tz| matches!(tz, "Europe/Berlin" | "CET" | "GMT"))
    }

    #[test]
    fn accepts_common_schedules() {
        for e in [
            "*-*-* 02:00:00 UTC",
            "daily",
            "Weekly",
            "Mon..Fri 09:00",
            "Mon,Fri *-*-* 10:00",
            "*:0/15",
            "*-*~01",
            "*-02~1..3",
            "2024-02-30",
            "12:00:00.5",
            "*-*-* 03:30:00 Europe/Berlin",
            "@1700000000",
            "24-1-1",
            "Mon,",
            "1..10/2:00",
        ] {
            assert_eq!(check(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        for (e, why) in [
            ("", "empty"),
            (" daily", "space"),
            ("daily ", "space"),
            ("24:00", "hour 24 is out of range 0-23"),
            ("23:60", "minute 60"),
            ("Fri..Mon", "runs backwards"),
            ("Mnday", "unknown weekday `Mnday`"),
            ("*-*-* 02:00:00 Mars/Base", "unknown timezone"),
            ("1969-01-01", "year 1969"),
            ("0/0:00", "/0"),
            ("*", "expected `:`"),
            ("10:00 Mon", "unexpected"),
            ("*-1..13-1", "month 13"),
            ("a\nb", "contains"),
            ("50%", "contains"),
            ("2024-01-01T10:00", "unexpected"),
        ] {
            let err = check(e).expect_err(e);
            assert!(err.contains(why), "{e:?}: `{err}` lacks `{why}`");
        }
    }
}
