//! Why a release fails its smoke check, in Django's own words.
//!
//! A production app runs with `DEBUG = False`, so a failing health check
//! shows only "Server Error (500)", and Django's default logging sends the
//! traceback to the admins' mail, not to gunicorn's log. The deploy then
//! asks Django directly: the same request through Django's test client in
//! the failed release (as the site's user, with its `.env` and venv), with
//! `raise_request_exception`, and quotes the exception it raises. What a
//! database in an unexpected state raises ("Note matching query does not
//! exist") then reaches the operator instead of an HTML page's first line.

use std::path::Path;

use super::app::Runner;

/// The request, replayed in-process; prints `EXCEPTION: <type>: <message>`
/// or `NONE <status>` on its last line.
const PROBE: &str = r#"
import sys, traceback
import django
django.setup()
from django.test import Client
host, path = sys.argv[1], sys.argv[2]
client = Client(raise_request_exception=True, HTTP_HOST=host, HTTP_X_FORWARDED_PROTO="https")
try:
    r = client.get(path, secure=True)
except Exception as e:
    # The innermost frame of the app's own code, not Django's or a library's.
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if "/site-packages/" not in f.filename and "/lib/python3" not in f.filename]
    last = (own or frames or [None])[-1]
    where = f" (raised in {last.filename}:{last.lineno})" if last else ""
    line = "".join(traceback.format_exception_only(type(e), e)).strip().replace("\n", " ")
    print(f"EXCEPTION: {line}{where}")
else:
    print(f"NONE {r.status_code}")
"#;

/// What Django raises for `GET path` in the release, if anything: one line.
pub fn exception(
    runner: &Runner,
    venv: &Path,
    release: &Path,
    host: &str,
    path: &str,
) -> Option<String> {
    let mut cmd = runner.command(venv.join("bin/python"), release);
    cmd.args(["-c", PROBE, host, path]);
    let ran = runner.run(cmd).ok()?;
    parse(&ran.stdout)
}

/// The probe's verdict from its output (the app may print anything before).
pub fn parse(stdout: &str) -> Option<String> {
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let said = last.trim().strip_prefix("EXCEPTION: ")?;
    Some(crate::system::text::excerpt(said, 400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_last_line() {
        assert_eq!(
            parse("noise\nEXCEPTION: notes.models.Note.DoesNotExist: Note matching query does not exist. (raised in /x/views.py:9)\n").as_deref(),
            Some("notes.models.Note.DoesNotExist: Note matching query does not exist. (raised in /x/views.py:9)")
        );
        assert_eq!(parse("NONE 503\n"), None);
        assert_eq!(parse("EXCEPTION: x\nNONE 200\n"), None);
        assert_eq!(parse(""), None);
    }

    proptest! {
        #[test]
        fn any_output_gives_at_most_one_short_line(s in any::<String>()) {
            if let Some(l) = parse(&s) {
                prop_assert!(!l.contains('\n') && l.chars().count() <= 401);
            }
        }
    }
}
