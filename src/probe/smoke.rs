//! The smoke check (SPEC §7 step 7, first half): `GET` a health path over
//! the site's gunicorn socket, as Caddy would send it (Host = domain,
//! `X-Forwarded-Proto: https`), and what its answer says. Asking again
//! until an answer decides, and which answers do, is `wait`'s.
//!
//! A 2xx passes unless its JSON body says `"status": "unhealthy"`; a
//! redirect passes (the app answered), unless it points back at the path
//! itself. A 400 almost always means Django's ALLOWED_HOSTS lacks the
//! domain, so the message says exactly that.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One HTTP response, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The `Location` header, as sent (a redirect says where it points).
    pub location: Option<String>,
}

impl Response {
    /// The status as the log shows it, with where a redirect points:
    /// `302 (a redirect to /accounts/login/?next=/)`. One line, cut short.
    pub fn answered(&self) -> String {
        if !(300..400).contains(&self.status) {
            return self.status.to_string();
        }
        match self
            .location
            .as_deref()
            .map(|l| crate::system::text::excerpt(l, 200))
        {
            Some(l) if !l.is_empty() => format!("{} (a redirect to {l})", self.status),
            _ => format!("{} (a redirect without a Location)", self.status),
        }
    }
}

/// Sends one GET over the unix socket and reads the whole response.
pub fn get(socket: &Path, host: &str, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 127.0.0.1\r\n\
         User-Agent: sum-golden-path smoke check\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    // A health body is not trusted to be small: read at most MAX_RESPONSE.
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// How much of a response the check reads; the rest is not needed to judge it.
pub const MAX_RESPONSE: u64 = 1 << 20;

/// A raw HTTP/1.1 response: status and body (plain or chunked). Total: any
/// bytes give a response or None, never a panic. A chunked body cut short
/// (by [`MAX_RESPONSE`]) keeps what arrived.
pub fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status: u16 = status.parse().ok()?;
    let (mut chunked, mut location) = (false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("location") && location.is_none() {
            location = Some(value.trim().to_string());
        }
    }
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        location,
    })
}

/// The data of a chunked body, as far as it is well formed.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[line_end + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Why a health check failed. Its `Display` is the line the deploy logs;
/// callers that add to it (the ALLOWED_HOSTS hint) match on the kind, never
/// on the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// A 400: almost always Django's ALLOWED_HOSTS lacking the host.
    BadRequest { path: String, host: String },
    /// A 2xx whose JSON body says `"status": "unhealthy"`.
    Unhealthy {
        path: String,
        status: u16,
        said: String,
    },
    /// A redirect to the very path it answered: a loop, as Django's
    /// `SECURE_SSL_REDIRECT` makes when it does not see the request came
    /// over HTTPS.
    RedirectLoop {
        path: String,
        status: u16,
        location: String,
    },
    /// Any other status.
    Status {
        path: String,
        status: u16,
        said: String,
    },
    /// No HTTP answer on the socket.
    NoAnswer { socket: PathBuf, why: String },
    /// A server error that came `times` times in a row: the last one.
    Repeated { last: Box<Failed>, times: u32 },
    /// [`super::wait::poll`] ran out of time; the last failure it saw.
    GaveUp { last: Box<Failed>, secs: u64 },
}

impl Failed {
    /// Whether the (last) answer was a 400.
    pub fn is_bad_request(&self) -> bool {
        match self {
            Failed::BadRequest { .. } => true,
            Failed::GaveUp { last, .. } | Failed::Repeated { last, .. } => last.is_bad_request(),
            _ => false,
        }
    }

    /// The path whose (last) answer failed; None when there was no answer.
    pub fn path(&self) -> Option<&str> {
        match self {
            Failed::BadRequest { path, .. }
            | Failed::Unhealthy { path, .. }
            | Failed::RedirectLoop { path, .. }
            | Failed::Status { path, .. } => Some(path),
            Failed::NoAnswer { .. } => None,
            Failed::GaveUp { last, .. } | Failed::Repeated { last, .. } => last.path(),
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::BadRequest { path, host } => write!(
                f,
                "{path} answered 400 Bad Request: Django's ALLOWED_HOSTS probably lacks {host}; \
                 add it (ALLOWED_HOSTS in the site's .env for apps that read it)"
            ),
            Failed::Unhealthy { path, status, said } => {
                write!(f, "{path} answered {status} but says \"unhealthy\": {said}")
            }
            Failed::RedirectLoop {
                path,
                status,
                location,
            } => write!(
                f,
                "{path} answered {status}, a redirect to itself ({}): Django probably does not \
                 see that Caddy took the request over HTTPS; with SECURE_SSL_REDIRECT, set \
                 SECURE_PROXY_SSL_HEADER = (\"HTTP_X_FORWARDED_PROTO\", \"https\")",
                crate::system::text::excerpt(location, 200)
            ),
            Failed::Status { path, status, said } => write!(f, "{path} answered {status}: {said}"),
            Failed::NoAnswer { socket, why } => {
                write!(f, "no answer on {}: {why}", socket.display())
            }
            Failed::Repeated { last, times } => write!(f, "{last} ({times} times in a row)"),
            Failed::GaveUp { last, secs } => write!(f, "{last} (gave up after {secs}s)"),
        }
    }
}

impl std::error::Error for Failed {}

/// Whether `location`, the `Location` of an answer to `path` on `host`,
/// points back at `path` itself (scheme aside): asking again would get the
/// same redirect, forever. Django's `SECURE_SSL_REDIRECT` does this to
/// every request when it does not see the request came over HTTPS.
/// Relative references other than an absolute path are not resolved: they
/// are taken as pointing elsewhere.
pub fn points_back(location: &str, host: &str, path: &str) -> bool {
    let location = location.trim();
    let after_scheme = ["https://", "http://", "//"].iter().find_map(|scheme| {
        location
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .and_then(|_| location.get(scheme.len()..))
    });
    let target = match after_scheme {
        Some(rest) => {
            let at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, target) = rest.split_at(at);
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            let name = authority
                .strip_suffix(":443")
                .or_else(|| authority.strip_suffix(":80"))
                .unwrap_or(authority);
            if !name.eq_ignore_ascii_case(host) {
                return false;
            }
            if target.is_empty() || target.starts_with('?') {
                return format!("/{target}") == path;
            }
            target
        }
        None => location,
    };
    target.split('#').next() == Some(path)
}

/// Whether a response passes, and if not, why, in words an operator acts on.
/// A 2xx passes unless its JSON body says `"status": "unhealthy"`; a
/// redirect passes (the app answered; where it points is in
/// [`Response::answered`]) unless it points back at `path` on `host`.
/// Whether a failure is final is [`super::wait::decide`]'s to say.
pub fn judge(r: &Response, host: &str, path: &str) -> Result<(), Failed> {
    let path = path.to_string();
    match r.status {
        200..=299 => {
            let unhealthy = serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .is_some_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("unhealthy"));
            if unhealthy {
                Err(Failed::Unhealthy {
                    path,
                    status: r.status,
                    said: describe_body(&r.body),
                })
            } else {
                Ok(())
            }
        }
        300..=399 => match r.location.as_deref() {
            Some(l) if points_back(l, host, &path) => Err(Failed::RedirectLoop {
                path,
                status: r.status,
                location: l.to_string(),
            }),
            _ => Ok(()),
        },
        400 => Err(Failed::BadRequest {
            path,
            host: host.to_string(),
        }),
        status => Err(Failed::Status {
            path,
            status,
            said: describe_body(&r.body),
        }),
    }
}

/// A 400 from the smoke check names Django's ALLOWED_HOSTS; this adds
/// what the site's `.env` says, as apps name the variable differently
/// (`ALLOWED_HOSTS`, `DJANGO_ALLOWED_HOSTS`).
pub fn with_hosts_hint(error: &Failed, env: &[(String, String)], host: &str) -> String {
    if !error.is_bad_request() {
        return error.to_string();
    }
    let vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.ends_with("ALLOWED_HOSTS"))
        .collect();
    let lists = |v: &str| v.split(',').any(|h| h.trim() == host || h.trim() == "*");
    let hint = if vars.is_empty() {
        "the site's .env sets no *ALLOWED_HOSTS variable".to_string()
    } else if let Some((k, _)) = vars.iter().find(|(_, v)| lists(v)) {
        format!("the site's .env lists it in {k}: do the settings read that variable?")
    } else {
        let set: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "the site's .env has {}, which does not list {host}",
            set.join(" and ")
        )
    };
    format!("{error}; {hint}")
}

/// What a failing body says, in one line: an HTML page's `<title>` (Django's
/// error pages put the error there: "Server Error (500)", or with DEBUG
/// "ProgrammingError at /"), else the first non-blank line. Cut to 200
/// characters on a character boundary.
pub fn describe_body(body: &str) -> String {
    if let Some(title) = html_title(body) {
        return crate::system::text::excerpt(&title, 200);
    }
    let said = crate::system::text::excerpt(body, 200);
    if said.is_empty() {
        "(empty body)".to_string()
    } else {
        said
    }
}

/// The text of the first `<title>` element, whitespace collapsed.
fn html_title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = body.get(start..end)?.split_whitespace().collect::<Vec<_>>();
    (!title.is_empty()).then(|| title.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = parse(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "abcdefg"));
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn reads_where_a_redirect_points() {
        let r = parse(b"HTTP/1.1 302 Found\r\nlocation:  /accounts/login/?next=/ \r\nLocation: /second\r\n\r\n").unwrap();
        assert_eq!(r.location.as_deref(), Some("/accounts/login/?next=/"));
        assert_eq!(r.answered(), "302 (a redirect to /accounts/login/?next=/)");
        let r = parse(b"HTTP/1.1 200 OK\r\nX-Location: /x\r\n\r\n").unwrap();
        assert_eq!(
            (r.location.as_deref(), r.answered().as_str()),
            (None, "200")
        );
    }

    #[test]
    fn judges_like_the_spec() {
        let r = |status, body: &str| Response {
            status,
            body: body.into(),
            location: None,
        };
        assert!(judge(&r(200, "<html>home</html>"), "h", "/").is_ok());
        assert!(judge(&r(200, r#"{"status": "degraded"}"#), "h", "/health/").is_ok());
        let e = judge(&r(200, r#"{"status": "unhealthy"}"#), "h", "/health/").unwrap_err();
        assert!(matches!(e, Failed::Unhealthy { .. }), "{e:?}");
        assert!(e.to_string().contains("unhealthy"));
        let e = judge(&r(400, "Bad Request"), "acme.example.com", "/health/").unwrap_err();
        assert!(e.is_bad_request());
        let e = e.to_string();
        assert!(
            e.contains("ALLOWED_HOSTS") && e.contains("acme.example.com"),
            "{e}"
        );
        assert_eq!(
            judge(&r(503, "down"), "h", "/").unwrap_err().to_string(),
            "/ answered 503: down"
        );
    }

    #[test]
    fn what_points_back() {
        for (location, path) in [
            ("https://acme.example.com/health/", "/health/"),
            ("HTTPS://ACME.example.com:443/health/", "/health/"),
            ("http://acme.example.com/health/#x", "/health/"),
            ("//acme.example.com/?a=1", "/?a=1"),
            ("https://acme.example.com", "/"),
            ("/", "/"),
            (" /health/ ", "/health/"),
        ] {
            assert!(
                points_back(location, "acme.example.com", path),
                "{location} {path}"
            );
        }
        for (location, path) in [
            ("https://acme.example.com.evil/health/", "/health/"),
            ("https://acme.example.com:8443/health/", "/health/"),
            ("health/", "/health/"),
            ("https://acme.example.com/health", "/health/"),
            ("", "/"),
            ("https://é", "/"),
        ] {
            assert!(
                !points_back(location, "acme.example.com", path),
                "{location} {path}"
            );
        }
    }

    #[test]
    fn a_400_names_what_the_env_says_about_allowed_hosts() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // As poll reports it: the last answer, and the time it gave up after.
        let failed = Failed::GaveUp {
            last: Box::new(Failed::BadRequest {
                path: "/".into(),
                host: "b.localhost".into(),
            }),
            secs: 5,
        };
        let e = "/ answered 400 Bad Request: Django's ALLOWED_HOSTS probably lacks b.localhost";
        let h = with_hosts_hint(
            &failed,
            &env(&[("DJANGO_ALLOWED_HOSTS", "other.example"), ("X", "y")]),
            "b.localhost",
        );
        assert!(
            h.starts_with(e)
                && h.ends_with(
                    "; the site's .env has DJANGO_ALLOWED_HOSTS=other.example, which does not \
                     list b.localhost"
                ),
            "{h}"
        );
        let h = with_hosts_hint(
            &failed,
            &env(&[("ALLOWED_HOSTS", "a.example, b.localhost")]),
            "b.localhost",
        );
        assert!(
            h.ends_with("lists it in ALLOWED_HOSTS: do the settings read that variable?"),
            "{h}"
        );
        let h = with_hosts_hint(&failed, &env(&[]), "b.localhost");
        assert!(h.ends_with("sets no *ALLOWED_HOSTS variable"), "{h}");
        // Other failures are left as they are, whatever their words.
        let other = Failed::Status {
            path: "/health/".into(),
            status: 503,
            said: "answered 400 Bad Request".into(),
        };
        assert_eq!(with_hosts_hint(&other, &env(&[]), "x"), other.to_string());
    }

    #[test]
    fn a_long_non_ascii_body_is_cut_between_characters() {
        // The body that once panicked the deploy after the swap.
        let body = format!("x{}", "é".repeat(300));
        let raw = format!("HTTP/1.1 503 Service Unavailable\r\n\r\n{body}");
        let r = parse(raw.as_bytes()).unwrap();
        let e = judge(&r, "h", "/health/").unwrap_err().to_string();
        assert!(
            e.starts_with("/health/ answered 503: xé") && e.ends_with('…'),
            "{e}"
        );
    }

    #[test]
    fn html_error_pages_are_named_by_their_title() {
        let page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <title>ProgrammingError\n  at /</title>";
        let e = judge(
            &Response {
                status: 500,
                body: page.into(),
                location: None,
            },
            "h",
            "/",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/ answered 500: ProgrammingError at /");
        let e = judge(
            &Response {
                status: 502,
                body: String::new(),
                location: None,
            },
            "h",
            "/",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/ answered 502: (empty body)");
    }

    #[test]
    fn odd_responses_are_refused_or_read_as_far_as_they_go() {
        assert!(parse(b"HTTP/1.1 20\xff OK\r\n\r\n").is_none());
        assert!(parse(b"HTTP/1.1 99999999999 OK\r\n\r\n").is_none());
        let r = parse(b"HTTP/1.1 200 \xff\r\nX: \xfe\r\n\r\n\xffok").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "\u{fffd}ok"));
        // A chunked body cut short keeps what arrived.
        let r = parse(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc").unwrap();
        assert_eq!(r.body, "abc");
        let r = parse(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc").unwrap();
        assert_eq!(r.body, "");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn response() -> impl Strategy<Value = Vec<u8>> {
            (
                100u16..600,
                proptest::collection::vec(any::<u8>(), 0..600),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(status, body, chunked, junk)| {
                    let mut raw = format!("HTTP/1.1 {status} Whatever\r\n").into_bytes();
                    raw.extend_from_slice(&junk);
                    if chunked {
                        raw.extend_from_slice(b"\r\nTransfer-Encoding: chunked\r\n\r\n");
                        raw.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                        raw.extend_from_slice(&body);
                        raw.extend_from_slice(b"\r\n0\r\n\r\n");
                    } else {
                        raw.extend_from_slice(b"\r\n\r\n");
                        raw.extend_from_slice(&body);
                    }
                    raw
                })
        }

        proptest! {
            #[test]
            fn parse_and_judge_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
                if let Some(r) = parse(&raw) {
                    let _ = judge(&r, "acme.example.com", "/health/");
                }
            }

            #[test]
            fn well_formed_responses_keep_their_status(raw in response()) {
                let status: u16 = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
                let r = parse(&raw);
                // Junk in the head may hide the blank line or the header; the
                // status line itself always parses.
                if let Some(r) = r {
                    prop_assert_eq!(r.status, status);
                    let verdict = judge(&r, "h", "/health/");
                    if !(200..400).contains(&status) {
                        prop_assert!(verdict.is_err());
                    } else if !r.body.contains("unhealthy") && !(300..400).contains(&status) {
                        prop_assert!(verdict.is_ok());
                    }
                    if let Err(e) = verdict {
                        prop_assert!(e.to_string().chars().count() < 400, "{}", e);
                    }
                }
            }

            #[test]
            fn points_back_never_panics(location in any::<String>(), path in any::<String>()) {
                let _ = points_back(&location, "acme.example.com", &path);
            }

            #[test]
            fn any_body_is_described_in_one_short_line(body in any::<String>()) {
                let d = describe_body(&body);
                prop_assert!(!d.contains('\n') && d.chars().count() <= 201);
            }
        }
    }
}
