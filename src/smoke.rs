//! The smoke check (SPEC §7 step 7, first half): `GET <health.path>` over the
//! site's gunicorn socket, as Caddy would send it (Host = domain,
//! `X-Forwarded-Proto: https`), polled until it passes or the time is up.
//!
//! A 200 passes unless its JSON body says `"status": "unhealthy"`; any other
//! status fails. A 400 almost always means Django's ALLOWED_HOSTS lacks the
//! domain, so the message says exactly that.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// One HTTP response, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
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
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// A raw HTTP/1.1 response: status and body (plain or chunked).
pub fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// How [`judge`] words a 400, which [`with_hosts_hint`] adds to.
const BAD_REQUEST: &str = "answered 400 Bad Request";

/// Whether a response passes, and if not, why, in words an operator acts on.
pub fn judge(r: &Response, host: &str, path: &str) -> Result<(), String> {
    match r.status {
        200 => {
            let unhealthy = serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .is_some_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("unhealthy"));
            if unhealthy {
                Err(format!(
                    "{path} answered 200 but says \"unhealthy\": {}",
                    first_line(&r.body)
                ))
            } else {
                Ok(())
            }
        }
        400 => Err(format!(
            "{path} {BAD_REQUEST}: Django's ALLOWED_HOSTS probably lacks {host}; \
             add it (ALLOWED_HOSTS in the site's .env for apps that read it)"
        )),
        s => Err(format!("{path} answered {s}: {}", first_line(&r.body))),
    }
}

/// A 400 from the smoke check names Django's ALLOWED_HOSTS; this adds
/// what the site's `.env` says, as apps name the variable differently
/// (`ALLOWED_HOSTS`, `DJANGO_ALLOWED_HOSTS`).
pub fn with_hosts_hint(error: String, env: &[(String, String)], host: &str) -> String {
    if !error.contains(BAD_REQUEST) {
        return error;
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

fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or("").trim();
    &line[..line.len().min(200)]
}

/// Polls until the check passes or `timeout` is over; returns the last reason.
pub fn poll(socket: &Path, host: &str, path: &str, timeout: Duration) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match get(
            socket,
            host,
            path,
            left.clamp(Duration::from_secs(1), Duration::from_secs(10)),
        ) {
            Ok(r) => match judge(&r, host, path) {
                Ok(()) => return Ok(r),
                Err(why) => last = why,
            },
            Err(e) => last = format!("no answer on {}: {e}", socket.display()),
        }
        if Instant::now() >= deadline {
            return Err(format!("{last} (gave up after {}s)", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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
    fn judges_like_the_spec() {
        let r = |status, body: &str| Response {
            status,
            body: body.into(),
        };
        assert!(judge(&r(200, "<html>home</html>"), "h", "/").is_ok());
        assert!(judge(&r(200, r#"{"status": "degraded"}"#), "h", "/health/").is_ok());
        let e = judge(&r(200, r#"{"status": "unhealthy"}"#), "h", "/health/").unwrap_err();
        assert!(e.contains("unhealthy"));
        let e = judge(&r(400, "Bad Request"), "acme.example.com", "/health/").unwrap_err();
        assert!(
            e.contains("ALLOWED_HOSTS") && e.contains("acme.example.com"),
            "{e}"
        );
        assert!(judge(&r(503, "down"), "h", "/")
            .unwrap_err()
            .contains("503"));
    }

    #[test]
    fn a_400_names_what_the_env_says_about_allowed_hosts() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = "/ answered 400 Bad Request: Django's ALLOWED_HOSTS probably lacks b.localhost";
        let h = with_hosts_hint(
            e.into(),
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
            e.into(),
            &env(&[("ALLOWED_HOSTS", "a.example, b.localhost")]),
            "b.localhost",
        );
        assert!(
            h.ends_with("lists it in ALLOWED_HOSTS: do the settings read that variable?"),
            "{h}"
        );
        let h = with_hosts_hint(e.into(), &env(&[]), "b.localhost");
        assert!(h.ends_with("sets no *ALLOWED_HOSTS variable"), "{h}");
        // Other failures are left as they are.
        let other = "/health/ answered 503: down".to_string();
        assert_eq!(with_hosts_hint(other.clone(), &env(&[]), "x"), other);
    }
}
