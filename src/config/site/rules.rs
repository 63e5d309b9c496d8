//! The rules for the site file's string values: what each key accepts and
//! the text that says so. These checks are what keep newlines, `%`
//! specifiers, quotes and braces out of generated files.

use std::time::Duration;

use crate::config::calendar;

/// A validation rule for a string value: a check plus the text saying what is allowed.
pub(super) struct Rule {
    check: fn(&str) -> Result<(), String>,
    pub(super) allowed: &'static str,
}

impl Rule {
    pub(super) fn check(&self, v: &str) -> Result<(), String> {
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(format!("contains the control character {c:?}"));
        }
        (self.check)(v)
    }
}

pub(super) const HOST: Rule = Rule {
    check: check_host,
    allowed: "expected a lower-case DNS host name such as acme.example.com",
};
pub(super) const GIT_URL: Rule = Rule {
    check: check_git_url,
    allowed: "expected an https://, ssh://, git@host:path, file:// URL or an absolute local path",
};
pub(super) const GIT_REF: Rule = Rule {
    check: check_git_ref,
    allowed: "expected a branch, tag or commit made of letters, digits, '.', '_', '-' and '/'",
};
pub(super) const IDENT: Rule = Rule {
    check: check_identifier,
    allowed: "expected a Python identifier such as acme or my_site",
};
pub(super) const DOTTED: Rule = Rule {
    check: check_dotted,
    allowed: "expected a dotted Python module path such as acme.settings.production",
};
pub(super) const WSGI: Rule = Rule {
    check: check_wsgi,
    allowed: "expected module:callable, such as acme.wsgi:application",
};
pub(super) const INTERPRETER: Rule = Rule {
    check: check_interpreter,
    allowed: "expected python3, python3.N or an absolute path to a Python interpreter",
};
pub(super) const REL_PATH: Rule = Rule {
    check: check_rel_path,
    allowed: "expected a relative path inside the release, such as requirements.txt or acme/media, without '..'",
};
pub(super) const PIP_SPEC: Rule = Rule {
    check: check_pip_spec,
    allowed:
        "expected a pip requirement specifier such as \"psycopg[binary]\" or \"django-redis>=5\"",
};
pub(super) const URL_PATH: Rule = Rule {
    check: check_url_path,
    allowed: "expected a URL path starting with '/', such as /health/",
};
pub(super) const DURATION: Rule = Rule {
    check: |v| parse_duration(v).map(|_| ()),
    allowed: "expected a duration from 1s to 1h such as \"60s\", \"2min\" or \"1m30s\"",
};
pub(super) const PROBE_EVERY: Rule = Rule {
    check: |v| probe_every(v).map(|_| ()),
    allowed: "expected \"off\" or a duration from 10s to 1h such as \"1min\" or \"30s\"",
};
pub(super) const SCHEDULE: Rule = Rule {
    check: calendar::validate,
    allowed: "expected a systemd OnCalendar= expression such as \"*-*-* 02:00:00 UTC\" (see systemd.time(7))",
};
pub(super) const COMMAND: Rule = Rule {
    check: check_command,
    allowed:
        "expected a command line of up to 1000 characters, such as \"python manage.py compress\"",
};
pub(super) const PROCESS_NAME: Rule = Rule {
    check: check_process_name,
    allowed: "expected a process name of 1 to 32 characters of a-z, 0-9 and '-', starting with a letter, such as sendalerts",
};
pub(super) const OFFSITE: Rule = Rule {
    check: check_offsite,
    allowed: "expected an rclone remote and a path, such as \"b2:acme-backups\" (the remote \
              defined in /etc/sum/rclone.conf)",
};
pub(super) const PING_URL: Rule = Rule {
    check: check_ping_url,
    allowed: "expected an http:// or https:// URL without spaces",
};

/// `[health] probe_every`: None for "off", else a duration of 10 s to 1 h.
pub fn probe_every(v: &str) -> Result<Option<Duration>, String> {
    if v == "off" {
        return Ok(None);
    }
    let d = parse_duration(v)?;
    if d < Duration::from_secs(10) {
        return Err("is shorter than 10s".into());
    }
    Ok(Some(d))
}

/// The rule for site names (the file stem), shared with `sumctl new`.
pub fn check_site_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = (2..=24).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!(
            "site name `{name}` is not allowed; expected 2 to 24 characters of a-z, 0-9 and '-', \
             starting with a letter and not ending with '-'"
        ))
    }
}

pub fn check_host(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if v.len() > 253 {
        return Err(format!("`{v}` is longer than 253 characters"));
    }
    if v.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{v}` has upper-case letters"));
    }
    for label in v.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{v}` is not a valid host name"));
        }
    }
    if v.split('.').all(|l| l.bytes().all(|c| c.is_ascii_digit())) {
        return Err(format!("`{v}` is an IP address, not a host name"));
    }
    Ok(())
}

fn no_space_or_quote(v: &str) -> Result<(), String> {
    match v
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '`'))
    {
        Some(c) => Err(format!("`{v}` contains {c:?}")),
        None => Ok(()),
    }
}

fn check_git_url(v: &str) -> Result<(), String> {
    no_space_or_quote(v)?;
    if v.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    let scp_like = v.starts_with("git@") && v.contains(':');
    let ok = ["https://", "ssh://", "file://", "git+ssh://"]
        .iter()
        .any(|p| v.len() > p.len() && v.starts_with(p))
        || scp_like
        || (v.starts_with('/') && v.len() > 1);
    if v.starts_with("http://") {
        return Err(format!(
            "`{v}` uses plain http, which lets anyone on the path change the code you deploy"
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a git URL this tool can fetch"))
    }
}

fn check_git_ref(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
        && !v.starts_with(['-', '/', '.'])
        && !v.ends_with(['/', '.'])
        && !v.ends_with(".lock")
        && !v.contains("..")
        && !v.contains("//");
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a valid git ref"))
    }
}

fn is_identifier(v: &str) -> bool {
    let mut chars = v.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_identifier(v: &str) -> Result<(), String> {
    if is_identifier(v) {
        Ok(())
    } else {
        Err(format!("`{v}` is not a Python identifier"))
    }
}

fn check_dotted(v: &str) -> Result<(), String> {
    if v.split('.').all(is_identifier) {
        Ok(())
    } else {
        Err(format!("`{v}` is not a dotted Python module path"))
    }
}

fn check_wsgi(v: &str) -> Result<(), String> {
    match v.split_once(':') {
        Some((module, callable)) if check_dotted(module).is_ok() && is_identifier(callable) => {
            Ok(())
        }
        _ => Err(format!("`{v}` is not of the form module:callable")),
    }
}

fn check_interpreter(v: &str) -> Result<(), String> {
    let versioned = v
        .strip_prefix("python3")
        .map(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('.')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
        })
        .unwrap_or(false);
    let absolute = v.starts_with('/')
        && v.len() > 1
        && !v.contains("/../")
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'));
    if versioned || absolute {
        Ok(())
    } else {
        Err(format!("`{v}` is not a Python interpreter name or path"))
    }
}

/// A relative path that stays inside the release: no absolute paths, no `..`.
pub fn check_rel_path(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if v.starts_with('/') {
        return Err(format!("`{v}` is an absolute path"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!("`{v}` contains {c:?}"));
    }
    for part in v.trim_end_matches('/').split('/') {
        match part {
            "" => return Err(format!("`{v}` has an empty path component")),
            "." => return Err(format!("`{v}` has a '.' component")),
            ".." => return Err(format!("`{v}` leaves the release with '..'")),
            _ => {}
        }
    }
    Ok(())
}

fn check_pip_spec(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("is empty".into());
    }
    if v.starts_with('-') {
        return Err(format!(
            "`{v}` starts with '-', which pip would read as an option"
        ));
    }
    Ok(())
}

fn check_url_path(v: &str) -> Result<(), String> {
    if !v.starts_with('/') {
        return Err(format!("`{v}` does not start with '/'"));
    }
    if let Some(c) = v.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '~' | '-' | '?' | '=' | '&'))
    }) {
        return Err(format!("`{v}` contains {c:?}"));
    }
    Ok(())
}

/// A release command: run by `/bin/sh -c` in the release, never written
/// into a generated file, so only emptiness and length are refused here
/// (control characters are, by every rule).
fn check_command(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("is empty".into())
    } else if v.len() > 1000 {
        Err(format!("is {} characters long", v.len()))
    } else {
        Ok(())
    }
}

fn check_process_name(v: &str) -> Result<(), String> {
    let b = v.as_bytes();
    let ok = (1..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a process name"))
    }
}

/// `<remote>:<path>`: a remote name as rclone writes them (letters,
/// digits, `_`, `-`, `.`, not starting with `-`), and a non-empty path
/// without `..` components, control characters or quotes.
pub fn check_offsite(v: &str) -> Result<(), String> {
    let Some((remote, path)) = v.split_once(':') else {
        return Err(format!("`{v}` names no rclone remote (`<remote>:<path>`)"));
    };
    let name_ok = !remote.is_empty()
        && remote.len() <= 64
        && !remote.starts_with('-')
        && remote
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if !name_ok {
        return Err(format!("`{remote}` is not an rclone remote name"));
    }
    let path_ok = !path.trim_matches('/').is_empty()
        && path.len() <= 512
        && !path
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\'')
        && !path.split('/').any(|p| p == "..");
    if !path_ok {
        return Err(format!("`{path}` is not a path on the remote"));
    }
    Ok(())
}

fn check_ping_url(v: &str) -> Result<(), String> {
    no_space_or_quote(v)?;
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && v.len() <= 2048 => Ok(()),
        _ => Err(format!("`{v}` is not an http(s) URL")),
    }
}

/// Parses a systemd-style time span ("60s", "2min", "1m30s", "90") limited to 1s..=1h.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let mut total_ms: u64 = 0;
    let mut rest = v.trim();
    if rest.is_empty() {
        return Err("is empty".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{v}` is not a duration"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{v}` is too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let ms_per = match unit {
            "ms" | "msec" => 1,
            "" | "s" | "sec" | "second" | "seconds" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000,
            _ => return Err(format!("`{v}` has the unknown unit `{unit}`")),
        };
        total_ms = n
            .checked_mul(ms_per)
            .and_then(|x| x.checked_add(total_ms))
            .ok_or_else(|| format!("`{v}` is too large"))?;
    }
    let d = Duration::from_millis(total_ms);
    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!("`{v}` is outside 1s to 1h"));
    }
    Ok(d)
}
