//! The wait of the smoke check: each health path asked over the socket
//! until it passes, fails for good, or the time is up; and what one
//! answer means for the wait: it passes, it is asked again, or the check
//! fails now (`smoke` makes one request and judges it).
//!
//! A trial with a real app waited the whole timeout for a 302 to its login
//! page, then rolled back a release that was fine; and a 404 or a 500 that
//! will not change used to be asked again for the whole timeout too. So:
//!
//! - A redirect passes: the app answered. It is not followed. Following
//!   one to a login page proves no more than the 302 itself, and one that
//!   leaves the site must not be followed at all; the log shows where it
//!   pointed. A redirect to the path itself is a loop and fails now.
//! - A 4xx fails now: an app that answers 404, 401 or 403 on its health
//!   path will not change its mind while we wait. Not 408 and 429, which
//!   say "not now" (a timeout, a rate limit), nor a 400, whose cause
//!   (ALLOWED_HOSTS) is read when the app starts: it fails now with its hint.
//! - A server error fails after [`SERVER_ERRORS_IN_A_ROW`] in a row: a
//!   500 from a bug stays a 500; one from a first request racing a cold
//!   cache gets two more chances.
//! - 502, 503 and 504 are asked again until the timeout, like no answer at
//!   all: by HTTP's own definition they say "temporarily unavailable", and
//!   a health view that waits for a dependency (a cache, a search index)
//!   to come up says so with a 503.
//! - A 2xx that says `"unhealthy"`, a 1xx, and statuses HTTP does not
//!   define are asked again, as before.

use std::path::Path;
use std::time::{Duration, Instant};

use super::smoke::{self, judge, Failed, Response};

/// How many server errors (5xx other than 502, 503, 504) in a row fail the
/// check before its time is up.
pub const SERVER_ERRORS_IN_A_ROW: u32 = 3;

/// How long the wait pauses between two requests of a path.
pub const PAUSE: Duration = Duration::from_millis(500);

/// What one answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The app answered as a healthy app does.
    Pass,
    /// Not yet: ask again while there is time.
    Retry(Failed),
    /// An answer that will not change: the check fails now.
    FailNow(Failed),
}

/// Whether `status` is a server error that counts towards
/// [`SERVER_ERRORS_IN_A_ROW`]: a 5xx other than 502, 503 and 504.
pub fn is_lasting_server_error(status: u16) -> bool {
    matches!(status, 500..=599) && !matches!(status, 502..=504)
}

/// What the answer `r` of `path` means, after `server_errors_before`
/// lasting server errors in a row from the same path (see the module's
/// comment for why).
pub fn decide(r: &Response, host: &str, path: &str, server_errors_before: u32) -> Verdict {
    let why = match judge(r, host, path) {
        Ok(()) => return Verdict::Pass,
        Err(why) => why,
    };
    match r.status {
        // A redirect fails only when it loops.
        300..=399 => Verdict::FailNow(why),
        408 | 429 => Verdict::Retry(why),
        400..=499 => Verdict::FailNow(why),
        s if is_lasting_server_error(s) => {
            let times = server_errors_before.saturating_add(1);
            if times >= SERVER_ERRORS_IN_A_ROW {
                Verdict::FailNow(Failed::Repeated {
                    last: Box::new(why),
                    times,
                })
            } else {
                Verdict::Retry(why)
            }
        }
        _ => Verdict::Retry(why),
    }
}

/// The wait of one check: a deadline shared by all its paths, and the
/// lasting server errors in a row of the path being asked.
#[derive(Debug)]
pub struct Wait {
    deadline: Instant,
    secs: u64,
    server_errors: u32,
}

impl Wait {
    pub fn new(timeout: Duration) -> Wait {
        Wait {
            deadline: Instant::now() + timeout,
            secs: timeout.as_secs(),
            server_errors: 0,
        }
    }

    /// Starts on the next path: its own count of errors in a row.
    pub fn next_path(&mut self) {
        self.server_errors = 0;
    }

    /// How long one request may take: what is left, within 1 to 10 s.
    pub fn request_timeout(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        left.clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    /// After the answer `r` of `path`: Some(Ok) it passed, Some(Err) the
    /// check fails (now, or because the time is up), None: ask again after
    /// [`Wait::pause`].
    pub fn answer(&mut self, r: &Response, host: &str, path: &str) -> Option<Result<(), Failed>> {
        let verdict = decide(r, host, path, self.server_errors);
        self.server_errors = match verdict {
            Verdict::Retry(_) if is_lasting_server_error(r.status) => self.server_errors + 1,
            _ => 0,
        };
        self.after(verdict)
    }

    /// After a request that got no HTTP answer: asked again (None) while
    /// there is time, else the check fails; it breaks a run of server
    /// errors.
    pub fn no_answer(&mut self, why: Failed) -> Option<Failed> {
        self.server_errors = 0;
        self.after(Verdict::Retry(why)).and_then(Result::err)
    }

    fn after(&self, verdict: Verdict) -> Option<Result<(), Failed>> {
        match verdict {
            Verdict::Pass => Some(Ok(())),
            Verdict::FailNow(why) => Some(Err(why)),
            Verdict::Retry(why) if Instant::now() >= self.deadline => Some(Err(Failed::GaveUp {
                last: Box::new(why),
                secs: self.secs,
            })),
            Verdict::Retry(_) => None,
        }
    }

    /// The pause between two requests.
    pub fn pause(&self) {
        std::thread::sleep(PAUSE);
    }
}

/// Polls `path` over the socket until it passes, fails for good (the
/// rules of [`decide`]) or `timeout` is over; returns the last reason.
pub fn poll(socket: &Path, host: &str, path: &str, timeout: Duration) -> Result<Response, Failed> {
    poll_within(&mut Wait::new(timeout), socket, host, path)
}

/// Polls every path in turn, within one `timeout` for all of them, each
/// as [`poll`] does; the first that fails ends the check. The answers of
/// the paths, in order, when all passed.
pub fn poll_paths<'p>(
    socket: &Path,
    host: &str,
    paths: impl IntoIterator<Item = &'p str>,
    timeout: Duration,
) -> Result<Vec<(&'p str, Response)>, Failed> {
    let mut wait = Wait::new(timeout);
    paths
        .into_iter()
        .map(|path| poll_within(&mut wait, socket, host, path).map(|r| (path, r)))
        .collect()
}

/// One path, polled within what is left of `wait`.
fn poll_within(wait: &mut Wait, socket: &Path, host: &str, path: &str) -> Result<Response, Failed> {
    wait.next_path();
    loop {
        let done = match smoke::get(socket, host, path, wait.request_timeout()) {
            Ok(r) => wait
                .answer(&r, host, path)
                .map(|outcome| outcome.map(|()| r)),
            Err(e) => wait
                .no_answer(Failed::NoAnswer {
                    socket: socket.to_path_buf(),
                    why: e.to_string(),
                })
                .map(Err),
        };
        if let Some(outcome) = done {
            return outcome;
        }
        wait.pause();
    }
}

/// What passed, for the log: `GET /health/ over the socket answered 200;
/// GET / answered 302 (a redirect to /accounts/login/?next=/)`.
pub fn describe_passes(passes: &[(&str, Response)], over: &str) -> String {
    passes
        .iter()
        .enumerate()
        .map(|(i, (path, r))| {
            let over = if i == 0 {
                format!(" over {over}")
            } else {
                String::new()
            };
            format!("GET {path}{over} answered {}", r.answered())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "acme.example.com";

    fn answer(status: u16, body: &str, location: Option<&str>) -> Response {
        Response {
            status,
            body: body.into(),
            location: location.map(Into::into),
        }
    }

    fn verdict(status: u16) -> Verdict {
        decide(&answer(status, "x", None), HOST, "/health/", 0)
    }

    #[test]
    fn a_redirect_passes_and_says_where_it_points() {
        let login = answer(302, "", Some("/accounts/login/?next=/"));
        assert_eq!(decide(&login, HOST, "/", 0), Verdict::Pass);
        assert_eq!(
            login.answered(),
            "302 (a redirect to /accounts/login/?next=/)"
        );
        // Off-site: passes, never followed.
        let sso = answer(303, "", Some("https://sso.example.net/login"));
        assert_eq!(decide(&sso, HOST, "/", 0), Verdict::Pass);
        assert_eq!(
            sso.answered(),
            "303 (a redirect to https://sso.example.net/login)"
        );
        let bare = answer(301, "", None);
        assert_eq!(decide(&bare, HOST, "/health", 0), Verdict::Pass);
        assert_eq!(bare.answered(), "301 (a redirect without a Location)");
        assert_eq!(answer(200, "", None).answered(), "200");
    }

    #[test]
    fn a_redirect_to_the_path_itself_fails_now() {
        let https = answer(301, "", Some("https://acme.example.com/health/"));
        let Verdict::FailNow(e) = decide(&https, HOST, "/health/", 0) else {
            panic!("a loop must fail now");
        };
        let e = e.to_string();
        assert!(
            e.starts_with(
                "/health/ answered 301, a redirect to itself (https://acme.example.com/health/)"
            ) && e.contains("SECURE_PROXY_SSL_HEADER"),
            "{e}"
        );
        // The same path elsewhere, or another path here, is no loop.
        for elsewhere in [
            "https://www.acme.example.com/health/",
            "/health/?x=1",
            "/login/",
        ] {
            let r = answer(302, "", Some(elsewhere));
            assert_eq!(
                decide(&r, HOST, "/health/", 0),
                Verdict::Pass,
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn client_errors_fail_now_except_a_timeout_and_a_rate_limit() {
        for status in [401, 403, 404, 405, 410, 418, 499] {
            assert!(matches!(verdict(status), Verdict::FailNow(_)), "{status}");
        }
        let Verdict::FailNow(e) = verdict(400) else {
            panic!("a 400 fails now");
        };
        assert!(
            e.is_bad_request() && e.to_string().contains("ALLOWED_HOSTS"),
            "{e}"
        );
        for status in [408, 429] {
            assert!(matches!(verdict(status), Verdict::Retry(_)), "{status}");
        }
    }

    #[test]
    fn server_errors_fail_on_the_third_in_a_row_and_unavailable_never_early() {
        let r = answer(500, "<title>Server Error (500)</title>", None);
        assert!(matches!(decide(&r, HOST, "/", 0), Verdict::Retry(_)));
        assert!(matches!(decide(&r, HOST, "/", 1), Verdict::Retry(_)));
        let Verdict::FailNow(e) = decide(&r, HOST, "/", 2) else {
            panic!("the third 500 in a row fails");
        };
        assert_eq!(
            e.to_string(),
            "/ answered 500: Server Error (500) (3 times in a row)"
        );
        assert_eq!(e.path(), Some("/"));
        for status in [502, 503, 504] {
            let r = answer(status, "", None);
            assert!(
                matches!(decide(&r, HOST, "/", 100), Verdict::Retry(_)),
                "{status}"
            );
        }
        assert!(is_lasting_server_error(501) && is_lasting_server_error(599));
        assert!(!is_lasting_server_error(503) && !is_lasting_server_error(404));
    }

    #[test]
    fn other_answers_are_asked_again() {
        let unhealthy = answer(200, r#"{"status": "unhealthy"}"#, None);
        assert!(matches!(
            decide(&unhealthy, HOST, "/", 0),
            Verdict::Retry(_)
        ));
        for status in [0, 99, 100, 103, 600, 999] {
            assert!(matches!(verdict(status), Verdict::Retry(_)), "{status}");
        }
        for status in [200, 201, 204, 299] {
            assert_eq!(verdict(status), Verdict::Pass, "{status}");
        }
    }

    #[test]
    fn the_wait_counts_server_errors_in_a_row_per_path() {
        let mut wait = Wait::new(Duration::from_secs(60));
        let (e500, e503) = (answer(500, "", None), answer(503, "", None));
        assert_eq!(wait.answer(&e500, HOST, "/a"), None);
        assert_eq!(wait.answer(&e500, HOST, "/a"), None);
        // A 503 or no answer in between breaks the run.
        assert_eq!(wait.answer(&e503, HOST, "/a"), None);
        assert_eq!(wait.answer(&e500, HOST, "/a"), None);
        let none = Failed::NoAnswer {
            socket: "/s".into(),
            why: "refused".into(),
        };
        assert_eq!(wait.no_answer(none), None);
        assert_eq!(wait.answer(&e500, HOST, "/a"), None);
        assert_eq!(wait.answer(&e500, HOST, "/a"), None);
        let e = wait.answer(&e500, HOST, "/a").unwrap().unwrap_err();
        assert!(matches!(e, Failed::Repeated { times: 3, .. }), "{e:?}");
        // The next path starts its own count.
        wait.next_path();
        assert_eq!(wait.answer(&e500, HOST, "/b"), None);
        assert_eq!(
            wait.answer(&answer(200, "", None), HOST, "/b"),
            Some(Ok(()))
        );
    }

    #[test]
    fn out_of_time_a_retry_gives_up_with_the_last_reason() {
        let mut wait = Wait {
            deadline: Instant::now(),
            secs: 7,
            server_errors: 0,
        };
        let e = wait
            .answer(&answer(503, "down", None), HOST, "/")
            .unwrap()
            .unwrap_err();
        assert_eq!(e.to_string(), "/ answered 503: down (gave up after 7s)");
        // A pass still passes, and a final answer is not a give-up.
        assert_eq!(wait.answer(&answer(302, "", None), HOST, "/"), Some(Ok(())));
        let e = wait
            .answer(&answer(404, "nope", None), HOST, "/")
            .unwrap()
            .unwrap_err();
        assert_eq!(e.to_string(), "/ answered 404: nope");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn location() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                any::<String>().prop_map(Some),
                "(https?:)?(//)?[a-zA-Z.:@]{0,24}[/?#]?[ -~]{0,40}".prop_map(Some),
                Just(Some("https://acme.example.com/health/".to_string())),
            ]
        }

        proptest! {
            #[test]
            fn every_answer_is_one_of_three_and_no_redirect_waits(
                status in 0u16..1000,
                body in any::<String>(),
                location in location(),
                before in 0u32..10,
                path in prop_oneof![Just("/health/"), Just("/"), Just("/a?b=c")],
            ) {
                let r = Response { status, body, location };
                let v = decide(&r, "acme.example.com", path, before);
                let why = match &v {
                    Verdict::Pass => None,
                    Verdict::Retry(why) | Verdict::FailNow(why) => Some(why),
                };
                match status {
                    300..=399 => prop_assert!(!matches!(v, Verdict::Retry(_))),
                    408 | 429 => prop_assert!(matches!(v, Verdict::Retry(_))),
                    400..=499 => prop_assert!(matches!(v, Verdict::FailNow(_))),
                    502..=504 => prop_assert!(matches!(v, Verdict::Retry(_))),
                    500..=599 => prop_assert_eq!(
                        matches!(v, Verdict::FailNow(_)),
                        before + 1 >= SERVER_ERRORS_IN_A_ROW
                    ),
                    200..=299 => prop_assert!(!matches!(v, Verdict::FailNow(_))),
                    _ => prop_assert!(matches!(v, Verdict::Retry(_))),
                }
                if let Some(why) = why {
                    let line = why.to_string();
                    prop_assert!(!line.contains('\n') && line.chars().count() < 700, "{}", line);
                    prop_assert_eq!(why.path(), Some(path));
                }
                let answered = r.answered();
                prop_assert!(!answered.contains('\n') && answered.chars().count() < 240);
            }
        }
    }
}
