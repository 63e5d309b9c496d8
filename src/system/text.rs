//! Quoting text that comes from outside: a health body, pip's or git's
//! output, a sha read back from the history.
//!
//! None of it is trusted to be ASCII, short, or to end with a newline, so
//! every cut here is made on a character boundary and every function is
//! total: any input gives an answer, never a panic. A panic in the deploy
//! after the swap once left a broken release live (a 503 body cut at byte
//! 200, inside an `é`).

/// The first `max` characters of `s` (all of it when shorter).
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// The first non-blank line of `text`, trimmed and cut to `max`
/// characters, with `…` when something was cut. Control characters
/// (an escape sequence in a body, a stray carriage return) are shown as
/// `?`, so a quoted line cannot rewrite the operator's terminal.
pub fn excerpt(text: &str, max: usize) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    let line = line.unwrap_or("");
    let cut = prefix(line, max);
    let mut out: String = cut
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if cut.len() < line.len() {
        out.push('…');
    }
    out
}

/// The last `n` non-blank lines of `text`, each cut to `width` characters.
pub fn last_lines(text: &str, n: usize, width: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            let cut = prefix(l, width);
            if cut.len() < l.len() {
                format!("{cut}…")
            } else {
                cut.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A commit id shortened for people: its first 12 characters.
pub fn short_sha(sha: &str) -> &str {
    prefix(sha, 12)
}

/// A list for one log line: all of it when short, else its count, the
/// first and the last `ends` items: `205: a, b, c, … x, y, z`. The full list
/// belongs in a record, not in the journal.
pub fn summary(items: &[String], ends: usize) -> String {
    if items.len() <= 2 * ends + 1 {
        return items.join(", ");
    }
    format!(
        "{}: {}, … {}",
        items.len(),
        items[..ends].join(", "),
        items[items.len() - ends..].join(", ")
    )
}

/// The first error a tool printed (pg_dump, psql: a line with `error:` in
/// any case) with the indented lines that continue it, on one line: libpq
/// says what failed on the error's line and adds its hint on the next
/// (`connection to server … failed: Connection refused`, then `\tIs the
/// server running …`). The last line alone when none says error.
pub fn first_error(stderr: &str) -> Option<String> {
    let one_line = |text: &str| excerpt(&text.replace('\t', " "), 500);
    let mut lines = stderr.lines();
    let Some(first) = lines.find(|l| l.to_ascii_lowercase().contains("error:")) else {
        let last = stderr.lines().rfind(|l| !l.trim().is_empty())?;
        return Some(one_line(last));
    };
    let continued =
        lines.take_while(|l| l.starts_with(|c: char| c.is_whitespace()) && !l.trim().is_empty());
    let joined: Vec<&str> = std::iter::once(first)
        .chain(continued)
        .map(str::trim)
        .collect();
    Some(one_line(&joined.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_is_its_count_and_its_ends() {
        let items: Vec<String> = (1..=205).map(|i| format!("app.{i:04}")).collect();
        assert_eq!(
            summary(&items, 3),
            "205: app.0001, app.0002, app.0003, … app.0203, app.0204, app.0205"
        );
        assert_eq!(summary(&items[..7], 3), items[..7].join(", "));
        assert_eq!(
            summary(&items[..8], 3),
            "8: app.0001, app.0002, app.0003, … app.0006, app.0007, app.0008"
        );
        assert_eq!(summary(&[], 3), "");
    }
    use proptest::prelude::*;

    #[test]
    fn cuts_on_character_boundaries() {
        let body = format!("x{}", "é".repeat(300));
        let e = excerpt(&body, 200);
        assert_eq!(e.chars().count(), 201, "200 characters and the ellipsis");
        assert!(e.ends_with('…') && e.starts_with("xé"));
        assert_eq!(prefix("日本語", 2), "日本");
        assert_eq!(short_sha("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_sha("é"), "é");
    }

    #[test]
    fn excerpt_skips_blank_lines_and_hides_control_characters() {
        assert_eq!(excerpt("\n  \n  Server Error\nmore", 200), "Server Error");
        assert_eq!(excerpt("a\u{1b}[2Jb", 200), "a?[2Jb");
        assert_eq!(excerpt("", 10), "");
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2, 80), "b\nc");
        assert_eq!(last_lines("ééé", 1, 2), "éé…");
    }

    proptest! {
        #[test]
        fn total_on_any_text(s in any::<String>(), max in 0usize..400) {
            let p = prefix(&s, max);
            prop_assert!(s.starts_with(p));
            prop_assert!(p.chars().count() <= max);
            let e = excerpt(&s, max);
            prop_assert!(e.chars().count() <= max + 1);
            prop_assert!(!e.chars().any(char::is_control));
            let l = last_lines(&s, 3, max);
            prop_assert!(l.lines().count() <= 3);
        }

        #[test]
        fn total_on_lossy_bytes(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let s = String::from_utf8_lossy(&b);
            let _ = excerpt(&s, 200);
            let _ = short_sha(&s);
        }
    }

    #[test]
    fn the_first_error_keeps_libpqs_hint_and_drops_nothing_before_it() {
        let refused = "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n\
                       \tIs the server running on that host and accepting TCP/IP connections?\n";
        assert_eq!(
            first_error(refused).unwrap(),
            "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused \
             Is the server running on that host and accepting TCP/IP connections?"
        );
        let two = "pg_dump: warning: x\npg_dump: error: query failed: ERROR:  permission denied for table t\n\
                   pg_dump: detail: Query was: LOCK TABLE public.t IN ACCESS SHARE MODE\n";
        assert_eq!(
            first_error(two).unwrap(),
            "pg_dump: error: query failed: ERROR:  permission denied for table t"
        );
        assert_eq!(first_error("killed\n\n").unwrap(), "killed");
        assert_eq!(first_error(""), None);
    }

    proptest! {
        #[test]
        fn first_error_never_panics_and_stays_on_one_line(text in "[ -~\t\n\u{e9}]{0,600}") {
            if let Some(e) = first_error(&text) {
                prop_assert!(!e.contains('\n') && !e.contains('\t'), "{e:?}");
            }
        }
    }
}
