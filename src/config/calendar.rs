//! Validation of systemd `OnCalendar=` expressions (systemd.time(7),
//! "CALENDAR EVENTS").
//!
//! The generator writes the site's backup schedule into a `.timer`, and a
//! generator may not spawn processes, so it cannot ask `systemd-analyze
//! calendar`. A schedule systemd rejects would only show up as a timer that
//! never loads, so this module follows the parser of systemd 252
//! (`src/shared/calendarspec.c`), quirks included: `Mon, 10:00` and
//! `1..24/4:00` are valid, `*:50/15`, `daily ` and `*~12,28` are not. The
//! test `tests/it/calendar_systemd.rs` holds it to the real `systemd-analyze`.
//!
//! Control characters and `%` are refused before parsing: the value is pasted
//! into a unit file, where a newline would start a new setting and `%` would
//! be expanded as a specifier.
//!
//! Time zones are checked as systemd checks them: a TZif file under
//! /usr/share/zoneinfo (the one file this module reads), so a misspelt
//! `Europe/Berln` is refused and the answer follows the installed tzdata.
//!
//! Deliberate divergences from systemd 252 on Debian 12:
//! - Local zone abbreviations. systemd also takes the abbreviations of the
//!   machine's own zone (`CEST` on a machine set to Europe/Berlin); they are
//!   refused here unless they are zone names too (`CET`, `EST`), since their
//!   validity depends on the machine.
//! - Next elapse. `systemd-analyze calendar` also fails when its search for
//!   the next elapse gives up after 1000 steps, as for `*-02,04,06,09,11-31`
//!   (day 31 of months that have none); such expressions pass here. Dates that
//!   simply never come (`2024-02-30`) pass both, as systemd only reports
//!   "never".
//! - `@` followed by a tab or newline and digits, which systemd's `strtoul`
//!   skips over, is refused with the other control characters.

/// Named schedules, matched case-insensitively as systemd does; the hyphenated
/// and misspelt forms are ones systemd keeps for compatibility.
const SHORTHANDS: &str = "minutely hourly daily weekly monthly quarterly yearly annually anually \
    semiannually semi-annually biannually bi-annually";

const WEEKDAYS: &str = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday";

/// systemd refuses longer comma lists (CALENDARSPEC_COMPONENTS_MAX + 1).
const MAX_ITEMS: usize = 241;

/// `@` times systemd accepts: the years it schedules, 1970-2199, and the
/// years 0-99, which it then mistakes for two-digit years (reachable with a
/// negative number, as `strtoul` lets it wrap around).
const EPOCH_RANGES: [std::ops::Range<i64>; 2] =
    [0..7_258_118_400, -62_167_219_200..-59_011_459_200];

/// Checks that `expr` is an OnCalendar= expression systemd accepts.
/// On error, returns a short human sentence saying what is wrong.
pub fn validate(expr: &str) -> Result<(), String> {
    if expr.is_empty() {
        return Err("the schedule is empty".into());
    }
    if let Some(c) = expr.chars().find(|c| c.is_control() || *c == '%') {
        return Err(format!("the schedule must not contain {c:?}"));
    }
    let body = strip_timezone(expr);
    if body.is_empty() {
        return Err("the schedule has a timezone but nothing before it".into());
    }
    if body.starts_with(' ') {
        return Err("the schedule must not start with a space".into());
    }
    if SHORTHANDS.split(' ').any(|s| s.eq_ignore_ascii_case(body)) {
        return Ok(());
    }
    parse(&mut Cursor { s: body, i: 0 }).map_err(|e| explain_zone(expr, body, e))
}

/// `expr` without its timezone, stripped as systemd does: ` UTC` in any case,
/// else the word after the last space if it names a zone.
fn strip_timezone(expr: &str) -> &str {
    let n = expr.len();
    if n >= 4 && expr.is_char_boundary(n - 4) && expr[n - 4..].eq_ignore_ascii_case(" UTC") {
        return &expr[..n - 4];
    }
    match expr.rsplit_once(' ') {
        Some((body, zone)) if is_zone(zone) => body,
        _ => expr,
    }
}

/// A zone systemd would accept: a TZif file under the system's zoneinfo, as
/// systemd itself checks (`timezone_is_valid`). Reading it keeps this in step
/// with the tzdata the timer will run with.
fn is_zone(name: &str) -> bool {
    let shaped = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
    if !shaped || matches!(name, "localtime" | "posixrules") {
        return false;
    }
    let mut magic = [0u8; 4];
    fs_err::File::open(std::path::Path::new(ZONEINFO).join(name))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == b"TZif")
}

/// systemd parses an unknown zone as part of the schedule, which then fails
/// somewhere confusing; name the zone instead when the last word looks like one.
fn explain_zone(expr: &str, body: &str, err: String) -> String {
    let zone = match expr.rsplit_once(' ') {
        Some((_, zone)) if body == expr => zone,
        _ => return err,
    };
    let upper = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"+-_".contains(&b);
    if zone.contains('/') || (zone.starts_with(char::is_uppercase) && zone.bytes().all(upper)) {
        format!("unknown timezone `{zone}`; use UTC or an IANA name such as Europe/Berlin")
    } else {
        err
    }
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn eat(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.i += token.len();
        }
        found
    }
    fn skip(&self, n: usize) -> Cursor<'a> {
        Cursor {
            s: self.s,
            i: self.i + n,
        }
    }
    fn skip_spaces(&mut self) {
        self.i += self.rest().bytes().take_while(|b| *b == b' ').count();
    }
    fn at_end_or_space(&self) -> bool {
        matches!(self.peek(), None | Some(b' '))
    }
    fn unexpected(&self, after: &str) -> String {
        match self.rest() {
            "" => format!("the schedule ends too early after {after}"),
            rest if rest.trim_start_matches(' ').is_empty() => {
                format!("the schedule must not end with a space after {after}")
            }
            rest => format!("unexpected `{rest}` after {after}"),
        }
    }
}

/// `[WEEKDAYS] [DATE] [TIME]` or `[WEEKDAYS] @SECONDS`. As in systemd, the
/// syntax comes first and the values are checked once each field's role is
/// known (`5` may start a date or an hour).
fn parse(p: &mut Cursor) -> Result<(), String> {
    weekdays(p)?;
    if p.eat("@") {
        return epoch(p);
    }
    let start = p.i;
    let (mut date, mut end_of_month) = (Vec::new(), false);
    if p.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        let rest = p.rest();
        return Err(format!(
            "unexpected `{rest}`; weekdays come first, as one list without spaces"
        ));
    }
    if p.peek().is_some() {
        let first = chain(p, "date or hour", false)?;
        if matches!(p.peek(), None | Some(b':')) {
            p.i = start;
        } else {
            date.push(first);
            while !(date.len() == 3 || date.len() == 2 && p.at_end_or_space()) {
                match p.peek() {
                    Some(b'~') if !end_of_month => end_of_month = true,
                    Some(b'-') if !end_of_month => {}
                    Some(b'-' | b'~') => return Err("`~` must stand between month and day".into()),
                    _ => return Err(p.unexpected("a date field")),
                }
                p.i += 1;
                date.push(chain(p, "date", false)?);
            }
            if !p.at_end_or_space() {
                return Err(p.unexpected("the date"));
            }
            p.skip_spaces();
        }
    }
    let mut time = Vec::new();
    if p.peek().is_some() {
        time.push(chain(p, "hour", false)?);
        if !p.eat(":") {
            return Err(p.unexpected("the hour; a time is HH:MM or HH:MM:SS"));
        }
        time.push(chain(p, "minute", false)?);
        if p.eat(":") {
            time.push(chain(p, "second", true)?);
        }
        if p.peek().is_some() {
            return Err(p.unexpected("the time"));
        }
    }
    let date_fields = if date.len() == 3 {
        &[YEAR, MONTH, DAY][..]
    } else {
        &[MONTH, DAY]
    };
    for (items, field) in date.iter().zip(date_fields) {
        check(items, field, end_of_month && field.name == "day")?;
    }
    for (items, field) in time.iter().zip(&[HOUR, MINUTE, SECOND]) {
        check(items, field, false)?;
    }
    Ok(())
}

/// `Mon..Fri,Sun`, optional; full or three-letter names in any case.
fn weekdays(p: &mut Cursor) -> Result<(), String> {
    let (mut range_from, mut first) = (None, true);
    loop {
        let n = p
            .rest()
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        let word = &p.rest()[..n];
        let is = |d: &str| word.eq_ignore_ascii_case(d) || word.eq_ignore_ascii_case(&d[..3]);
        let Some(day) = WEEKDAYS.split(' ').position(is) else {
            if first && !word.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Ok(());
            }
            let shorthand = SHORTHANDS.split(' ').any(|s| s.eq_ignore_ascii_case(word));
            return Err(match word {
                "" => p.unexpected("a weekday list"),
                _ if first && shorthand => p.skip(word.len()).unexpected(&format!("`{word}`")),
                _ if first && word.ends_with("ly") => format!("unknown shorthand `{word}`"),
                _ => format!("unknown weekday `{word}`"),
            });
        };
        if let Some(from) = range_from.filter(|from| *from > day) {
            let name = |d: usize| &WEEKDAYS.split(' ').nth(d).unwrap_or_default()[..3];
            return Err(format!(
                "weekday range {}..{} runs backwards",
                name(from),
                name(day)
            ));
        }
        p.i += word.len();
        first = false;
        match p.peek() {
            None => return Ok(()),
            Some(b' ') => break,
            Some(b'.' | b'-') if range_from.is_some() => {
                return Err("a weekday range cannot continue into another range".into())
            }
            Some(b'-') => p.i += 1,
            Some(b'.') if p.eat("..") => {}
            Some(b',') => p.i += 1,
            Some(_) => return Err(p.unexpected("a weekday")),
        }
        // A `-` or `..` just read opens a range at `day`; a `,` closes it.
        range_from = (p.s.as_bytes()[p.i - 1] != b',').then_some(day);
        if p.at_end_or_space() {
            if range_from.is_some() {
                return Err("a weekday range has no end".into());
            }
            break;
        }
    }
    p.skip_spaces();
    Ok(())
}

/// `@SECONDS`, read like systemd's `strtoul`: leading spaces and a sign are
/// allowed, and a negative number wraps around.
fn epoch(p: &mut Cursor) -> Result<(), String> {
    p.skip_spaces();
    let negative = p.eat("-");
    if !negative {
        p.eat("+");
    }
    let digits = p.rest().bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("`@` must be followed by seconds since the epoch".into());
    }
    let value = p.rest()[..digits]
        .parse::<u64>()
        .map_err(|_| "the `@` time is too large")?;
    p.i += digits;
    if p.peek().is_some() {
        return Err(p.unexpected("the `@` time"));
    }
    let seconds = (if negative {
        value.wrapping_neg()
    } else {
        value
    }) as i64;
    if !EPOCH_RANGES.iter().any(|r| r.contains(&seconds)) {
        return Err("the `@` time is outside the years 1970-2199".into());
    }
    Ok(())
}

/// One value of a field: `N`, `N..M`, `N/R` or `N..M/R`, in the field's unit;
/// `stop` is -1 without a range.
#[derive(Clone, Copy)]
struct Item<'a> {
    text: &'a str,
    start: i64,
    stop: i64,
    repeat: i64,
}

/// A comma-separated list of items, or `*` (empty: no constraint).
fn chain<'a>(p: &mut Cursor<'a>, what: &str, usec: bool) -> Result<Vec<Item<'a>>, String> {
    if p.eat("*") {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    loop {
        if items.len() == MAX_ITEMS {
            return Err(format!("the {what} list has more than {MAX_ITEMS} items"));
        }
        let begin = p.i;
        let start = decimal(p, what, usec)?;
        let (mut stop, mut repeat) = (-1, 0);
        if p.eat("..") {
            stop = decimal(p, what, usec)?;
            repeat = if usec { 1_000_000 } else { 1 };
        }
        let stepped = p.eat("/");
        if stepped {
            repeat = decimal(p, what, usec)?;
            if repeat == 0 {
                return Err(format!("the {what} step /0 is not allowed"));
            }
        }
        let text = &p.s[begin..p.i];
        // systemd's default one-second step must fit in a range of seconds.
        if usec && !stepped && stop >= 0 && start + repeat > stop {
            return Err(format!("second range {text} is shorter than one second"));
        }
        if !matches!(p.peek(), None | Some(b' ' | b',' | b'-' | b'~' | b':')) {
            return Err(p.unexpected(&format!("the {what} `{text}`")));
        }
        items.push(Item {
            text,
            start,
            stop,
            repeat,
        });
        if !p.eat(",") {
            return Ok(items);
        }
    }
}

/// A number; in microseconds for seconds, with up to six decimals kept and
/// the seventh rounding. Like systemd, anything above `i32::MAX` is refused.
fn decimal(p: &mut Cursor, what: &str, usec: bool) -> Result<i64, String> {
    let digits = |p: &Cursor| p.rest().bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(p);
    if n == 0 {
        return Err(match p.rest() {
            "" => format!("expected a number for the {what} at the end"),
            rest => format!("expected a number for the {what} at `{rest}`"),
        });
    }
    let mut value = p.rest()[..n].parse::<u64>().unwrap_or(u64::MAX);
    p.i += n;
    if usec {
        value = value.saturating_mul(1_000_000);
        if p.peek() == Some(b'.') && !p.rest().starts_with("..") {
            p.i += 1;
            let frac = &p.rest()[..digits(p)];
            if frac.is_empty() {
                return Err(format!("expected digits after the {what}'s decimal point"));
            }
            let digit = |k: usize| frac.as_bytes().get(k).map_or(0, |d| u64::from(d - b'0'));
            let micros = (0..6).fold(0, |acc, k| acc * 10 + digit(k)) + u64::from(digit(6) >= 5);
            value = value.saturating_add(micros);
            p.i += frac.len();
        }
    }
    if value > i32::MAX as u64 {
        return Err(format!("the {what} number is too large"));
    }
    Ok(value as i64)
}

struct Field {
    name: &'static str,
    min: i64,
    max: i64,
    /// Seconds are counted in microseconds, as systemd does.
    unit: i64,
}

const fn field(name: &'static str, min: i64, max: i64, unit: i64) -> Field {
    Field {
        name,
        min,
        max,
        unit,
    }
}

const YEAR: Field = field("year", 1970, 2199, 1);
const MONTH: Field = field("month", 1, 12, 1);
const DAY: Field = field("day", 1, 31, 1);
const HOUR: Field = field("hour", 0, 23, 1);
const MINUTE: Field = field("minute", 0, 59, 1);
const SECOND: Field = field("second", 0, 59, 1_000_000);

/// systemd's normalize_chain() then chain_valid(). A step must fire at least
/// once, and a range end past the limit is fine when the step never reaches
/// it (`1..24/4` ends at 21).
fn check(items: &[Item], f: &Field, end_of_month: bool) -> Result<(), String> {
    let mut items: Vec<Item> = items.iter().map(|it| normalize(*it, f)).collect();
    items.sort_by_key(|it| (it.start, it.stop, it.repeat));
    items.dedup_by_key(|it| (it.start, it.stop, it.repeat));
    let from = f.min * f.unit;
    for (k, it) in items.iter().enumerate() {
        let (text, start, stop, repeat) = (it.text, it.start, it.stop, it.repeat);
        // `~` counts back from the last day, and every month has 28 days.
        // systemd lowers that limit by 3 again for each further `~` day in
        // the sorted list, a bug followed here so both agree.
        let max = if end_of_month {
            f.max - 3 * (k as i64 + 1)
        } else {
            f.max
        };
        let to = (max + 1) * f.unit - 1;
        let (name, min) = (f.name, f.min);
        let side = if end_of_month {
            " counted from the end of the month"
        } else {
            ""
        };
        if start < from || start > to || stop >= 0 && (stop < from || stop > to) {
            return Err(format!("{name} {text} is out of range {min}-{max}{side}"));
        }
        if repeat > to - from {
            return Err(format!(
                "the step of {name} {text} is longer than {min}-{max}"
            ));
        }
        if stop >= 0 && start + repeat > stop {
            return Err(format!("{name} range {text} runs backwards"));
        }
        let past = if end_of_month {
            start - repeat < from
        } else {
            start + repeat > to
        };
        if stop < 0 && repeat > 0 && past {
            return Err(format!(
                "{name} {text} never repeats within {min}-{max}{side}"
            ));
        }
    }
    Ok(())
}

/// Widens two-digit years, trims a range to its last step, and drops steps
/// that cannot fire twice, as systemd does before checking.
fn normalize<'a>(mut it: Item<'a>, f: &Field) -> Item<'a> {
    if f.name == "year" {
        let widen = |y: i64| match y {
            0..=69 => y + 2000,
            70..=99 => y + 1900,
            _ => y,
        };
        (it.start, it.stop) = (widen(it.start), widen(it.stop));
    }
    if it.stop > it.start && it.repeat > 0 {
        it.stop -= (it.stop - it.start) % it.repeat;
    }
    if (it.stop > it.start && it.repeat > 0 && it.start + it.repeat > it.stop)
        || it.start == it.stop
    {
        (it.stop, it.repeat) = (-1, 0);
    }
    it
}

/// Where systemd looks for time zones.
const ZONEINFO: &str = "/usr/share/zoneinfo";

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_what_systemd_accepts() {
        for e in [
            "daily",
            "Semi-Annually",
            "weekly UTC",
            "*-*-* 02:00:00 UTC",
            "Mon..Fri 09:00",
            "sat,SUNDAY *-*-* 10:00",
            "Mon, 10:00",
            "Mon ",
            "*:0/15",
            "*-*~01",
            "*-02~1..3",
            "2024-02-30",
            "12:00:00.5",
            "1..24/4:00",
            "*-*-* 03:30 Europe/Berlin",
            "*-*-*  America/Argentina/Buenos_Aires",
            "daily right/UTC",
            "@1700000000",
            "@-60251657451",
            "24-1-1",
        ] {
            assert_eq!(validate(e), Ok(()), "{e:?}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        for (e, why) in [
            ("", "the schedule is empty"),
            (" daily", "must not start with a space"),
            ("hourly ", "must not end with a space after `hourly`"),
            ("24:00", "hour 24 is out of range 0-23"),
            ("*-*-* 12:00:60", "second 60 is out of range 0-59"),
            ("Tue..Mon", "weekday range Tue..Mon runs backwards"),
            ("Mnday 10:00", "unknown weekday `Mnday`"),
            ("dayly", "unknown shorthand `dayly`"),
            (
                "Sat, Sun",
                "weekdays come first, as one list without spaces",
            ),
            (
                "*-*-* 02:00 Europe/Berln",
                "unknown timezone `Europe/Berln`",
            ),
            ("*-*-* 02:00 CEST", "unknown timezone `CEST`"),
            ("1969-01-01", "year 1969 is out of range 1970-2199"),
            (
                "*~12,28",
                "day 28 is out of range 1-25 counted from the end",
            ),
            ("*:50/15", "minute 50/15 never repeats within 0-59"),
            ("*:*:5..5", "second range 5..5 is shorter than one second"),
            ("0/0:00", "step /0 is not allowed"),
            ("*", "a time is HH:MM or HH:MM:SS"),
            ("2024-01-01T10:00", "unexpected `T10:00`"),
            ("@-1", "outside the years 1970-2199"),
            ("Mon..", "a weekday range has no end"),
            ("daily\nExecStart=/bin/sh", r"must not contain '\n'"),
            ("*-*-* 02:00 %H", "must not contain '%'"),
        ] {
            let err = validate(e).expect_err(e);
            assert!(err.contains(why), "{e:?}: `{err}` lacks `{why}`");
        }
    }
}
