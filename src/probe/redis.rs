//! A Redis PING for the deploy preflight: one TCP connection to the site's
//! `REDIS_URL`, AUTH when the URL carries a password, PING, expect PONG.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Optional user name and the password of a `redis://` URL.
pub type Auth = (Option<String>, String);

/// Host, port and credentials of a `redis://` URL.
pub type Target = (String, u16, Option<Auth>);

/// Parses a `redis://[[user]:password@]host[:port][/db]` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    // The URL may hold a password: errors name its parts, never quote it.
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| "REDIS_URL does not start with redis://".to_string())?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse()
                .map_err(|_| "REDIS_URL has a bad port (expected 1 to 65535)".to_string())?,
        ),
        None => (hostport, 6379),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let auth = auth.map(|a| match a.split_once(':') {
        Some((user, pw)) => ((!user.is_empty()).then(|| user.to_string()), pw.to_string()),
        None => (None, a.to_string()),
    });
    Ok((host.trim_matches(['[', ']']).to_string(), port, auth))
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// PINGs the server of `url`; the error says what to fix.
pub fn ping(url: &str, timeout: Duration) -> Result<(), String> {
    let (host, port, auth) = parse_url(url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve Redis host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve Redis host {host}"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        format!("Redis at {host}:{port} does not answer ({e}); is redis-server running? (`systemctl status redis-server`)")
    })?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if let Some((user, pw)) = &auth {
        let cmd = match user {
            Some(u) => command(&["AUTH", u, pw]),
            None => command(&["AUTH", pw]),
        };
        w.write_all(&cmd).map_err(|e| e.to_string())?;
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("+OK") {
            return Err(format!(
                "Redis at {host}:{port} refused the password in REDIS_URL: {}",
                line.trim()
            ));
        }
        line.clear();
    }
    w.write_all(&command(&["PING"]))
        .map_err(|e| e.to_string())?;
    r.read_line(&mut line)
        .map_err(|e| format!("Redis at {host}:{port} did not answer PING: {e}"))?;
    if line.starts_with("+PONG") {
        Ok(())
    } else {
        Err(format!(
            "Redis at {host}:{port} answered PING with `{}`",
            line.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://localhost:6379/0").unwrap(),
            ("localhost".into(), 6379, None)
        );
        assert_eq!(parse_url("redis://h").unwrap(), ("h".into(), 6379, None));
        assert_eq!(
            parse_url("redis://:s3cret@10.0.0.5:6380/2").unwrap(),
            ("10.0.0.5".into(), 6380, Some((None, "s3cret".into())))
        );
        assert_eq!(
            parse_url("redis://app:pw@h:1").unwrap().2,
            Some((Some("app".into()), "pw".into()))
        );
        assert!(parse_url("http://x").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_gives_an_answer_that_never_quotes_it(url in any::<String>()) {
                if let Err(e) = parse_url(&url) {
                    prop_assert!(url.len() < 8 || !e.contains(url.as_str()), "{}", e);
                }
            }

            #[test]
            fn generated_urls_round_trip(
                user in "[a-z]{0,8}",
                pw in "[A-Za-z0-9!*()_.~-]{1,16}",
                host in "[a-z][a-z0-9.-]{0,20}",
                port in 1u16..,
                db in 0u8..16,
            ) {
                let url = format!("redis://{user}:{pw}@{host}:{port}/{db}");
                let (h, p, auth) = parse_url(&url).unwrap();
                prop_assert_eq!(&h, &host);
                prop_assert_eq!(p, port);
                let expected_user = (!user.is_empty()).then(|| user.clone());
                prop_assert_eq!(auth, Some((expected_user, pw.clone())));
                let bad = format!("redis://{user}:{pw}@{host}:99999/{db}");
                let e = parse_url(&bad).unwrap_err();
                prop_assert!(!e.contains(&pw) || pw.len() < 3, "{}", e);
            }
        }
    }
}
