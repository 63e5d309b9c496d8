//! The site file, `/etc/sum/sites/<site>.toml`: parsed in two stages.
//!
//! Raw serde structs (`deny_unknown_fields`, every value `Spanned`) catch
//! syntax, type and unknown-key errors; `Site::parse` then validates every
//! value and fills in the spec's defaults. Everything generated later (units,
//! Caddy snippets) is rendered from a `Site` only, so validation here is the
//! one gate that keeps newlines, `%` specifiers, quotes and braces out of
//! generated files. Every error carries file:line:col, the key, what was wrong
//! and what is allowed.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::calendar;

/// Where site files live on a real system (tests point a root at a temp tree).
pub const SITES_DIR: &str = "/etc/sum/sites";

/// A fully validated site with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    /// Canonical path of the site file (`/etc/sum/sites/<name>.toml`), used in
    /// generated output regardless of the root the file was read from.
    pub source: PathBuf,
    pub domain: String,
    pub aliases: Vec<String>,
    pub git: Git,
    pub django: Django,
    pub python: Python,
    pub gunicorn: Gunicorn,
    pub celery: Celery,
    pub health: Health,
    pub backup: Backup,
    pub deploy: Deploy,
    pub sandbox: Sandbox,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    pub url: String,
    pub git_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Django {
    pub project: String,
    pub settings: String,
    pub wsgi: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    pub interpreter: String,
    pub requirements: String,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gunicorn {
    pub workers: u32,
    pub threads: u32,
    /// Worker timeout in seconds (also used as the graceful timeout).
    pub timeout: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Celery {
    pub worker: bool,
    pub beat: bool,
    pub app: String,
    pub concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub path: String,
    pub timeout: Duration,
    pub sitemap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub schedule: String,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub media: bool,
    pub ping_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub keep_releases: u32,
    pub backup_before_migrate: bool,
    pub shared: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub memory_deny_write_execute: bool,
}

/// One problem in one site file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub problem: String,
    pub allowed: String,
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.key,
            self.problem
        )?;
        if !self.allowed.is_empty() {
            write!(f, "; {}", self.allowed)?;
        }
        Ok(())
    }
}

/// Every problem found in one site file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteErrors(pub Vec<SiteError>);

impl fmt::Display for SiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SiteErrors {}

// ---------------------------------------------------------------- raw stage

type S<T> = Option<Spanned<T>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSite {
    domain: S<String>,
    aliases: S<Vec<Spanned<String>>>,
    git: S<RawGit>,
    #[serde(default)]
    django: RawDjango,
    #[serde(default)]
    python: RawPython,
    #[serde(default)]
    gunicorn: RawGunicorn,
    #[serde(default)]
    celery: RawCelery,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    backup: RawBackup,
    #[serde(default)]
    deploy: RawDeploy,
    #[serde(default)]
    sandbox: RawSandbox,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGit {
    url: S<String>,
    #[serde(rename = "ref")]
    git_ref: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDjango {
    project: S<String>,
    settings: S<String>,
    wsgi: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPython {
    interpreter: S<String>,
    requirements: S<String>,
    extra: S<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGunicorn {
    workers: S<i64>,
    threads: S<i64>,
    timeout: S<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCelery {
    worker: S<bool>,
    beat: S<bool>,
    app: S<String>,
    concurrency: S<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: S<String>,
    timeout: S<String>,
    sitemap: S<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    schedule: S<String>,
    keep_daily: S<i64>,
    keep_weekly: S<i64>,
    keep_monthly: S<i64>,
    media: S<bool>,
    ping_url: S<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    keep_releases: S<i64>,
    backup_before_migrate: S<bool>,
    shared: S<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    memory_deny_write_execute: S<bool>,
}

// ---------------------------------------------------------------- validation

/// Collects errors against one file's text.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<SiteError>,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn push(&mut self, span: Range<usize>, key: &str, problem: String, allowed: &str) {
        let (line, col) = self.position(span.start);
        self.errors.push(SiteError {
            file: self.file.to_path_buf(),
            line,
            col,
            key: key.to_string(),
            problem,
            allowed: allowed.to_string(),
        });
    }

    /// A string value checked by `rule`, or `default` when absent.
    fn string(
        &mut self,
        value: S<String>,
        key: &str,
        default: impl FnOnce() -> String,
        rule: &Rule,
    ) -> String {
        match value {
            None => default(),
            Some(v) => {
                let span = v.span();
                let v = v.into_inner();
                if let Err(problem) = rule.check(&v) {
                    self.push(span, key, problem, rule.allowed);
                }
                v
            }
        }
    }

    fn strings(&mut self, value: S<Vec<Spanned<String>>>, key: &str, rule: &Rule) -> Vec<String> {
        let Some(list) = value else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for item in list.into_inner() {
            let span = item.span();
            let v = item.into_inner();
            if let Err(problem) = rule.check(&v) {
                self.push(span, key, problem, rule.allowed);
            } else if out.contains(&v) {
                self.push(span, key, format!("`{v}` is listed twice"), rule.allowed);
            }
            out.push(v);
        }
        out
    }

    fn number(&mut self, value: S<i64>, key: &str, default: u32, min: u32, max: u32) -> u32 {
        let Some(v) = value else {
            return default;
        };
        let span = v.span();
        let n = *v.get_ref();
        if n < i64::from(min) || n > i64::from(max) {
            self.push(
                span,
                key,
                format!("{n} is out of range"),
                &format!("expected a whole number from {min} to {max}"),
            );
            return default;
        }
        n as u32
    }

    fn flag(value: S<bool>, default: bool) -> bool {
        value.map_or(default, Spanned::into_inner)
    }
}

/// A validation rule for a string value: a check plus the text saying what is allowed.
struct Rule {
    check: fn(&str) -> Result<(), String>,
    allowed: &'static str,
}

impl Rule {
    fn check(&self, v: &str) -> Result<(), String> {
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(format!("contains the control character {c:?}"));
        }
        (self.check)(v)
    }
}

const HOST: Rule = Rule {
    check: check_host,
    allowed: "expected a lower-case DNS host name such as acme.example.com",
};
const GIT_URL: Rule = Rule {
    check: check_git_url,
    allowed: "expected an https://, ssh://, git@host:path, file:// URL or an absolute local path",
};
const GIT_REF: Rule = Rule {
    check: check_git_ref,
    allowed: "expected a branch, tag or commit made of letters, digits, '.', '_', '-' and '/'",
};
const IDENT: Rule = Rule {
    check: check_identifier,
    allowed: "expected a Python identifier such as acme or my_site",
};
const DOTTED: Rule = Rule {
    check: check_dotted,
    allowed: "expected a dotted Python module path such as acme.settings.production",
};
const WSGI: Rule = Rule {
    check: check_wsgi,
    allowed: "expected module:callable, such as acme.wsgi:application",
};
const INTERPRETER: Rule = Rule {
    check: check_interpreter,
    allowed: "expected python3, python3.N or an absolute path to a Python interpreter",
};
const REL_PATH: Rule = Rule {
    check: check_rel_path,
    allowed: "expected a relative path inside the release, such as requirements.txt or acme/media, without '..'",
};
const PIP_SPEC: Rule = Rule {
    check: check_pip_spec,
    allowed:
        "expected a pip requirement specifier such as \"psycopg[binary]\" or \"django-redis>=5\"",
};
const URL_PATH: Rule = Rule {
    check: check_url_path,
    allowed: "expected a URL path starting with '/', such as /health/",
};
const DURATION: Rule = Rule {
    check: |v| parse_duration(v).map(|_| ()),
    allowed: "expected a duration from 1s to 1h such as \"60s\", \"2min\" or \"1m30s\"",
};
const SCHEDULE: Rule = Rule {
    check: calendar::validate,
    allowed: "expected a systemd OnCalendar= expression such as \"*-*-* 02:00:00 UTC\" (see systemd.time(7))",
};
const PING_URL: Rule = Rule {
    check: check_ping_url,
    allowed: "expected an http:// or https:// URL without spaces",
};

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

impl Site {
    /// Parses and validates the text of a site file. `file` is the path shown
    /// in errors; `name` is the site name (the file stem).
    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Site, SiteErrors> {
        let mut c = Checker {
            file,
            text,
            errors: Vec::new(),
        };
        if let Err(problem) = check_site_name(name) {
            c.push(0..0, "(file name)", problem, "rename the file");
            return Err(SiteErrors(c.errors));
        }
        let raw: RawSite = match serde_path_to_error::deserialize(toml::Deserializer::new(text)) {
            Ok(raw) => raw,
            Err(e) => {
                // Spanned<T> adds a private component to serde's path; drop it.
                let key = e
                    .path()
                    .to_string()
                    .split('.')
                    .filter(|part| !part.starts_with("$__serde_spanned"))
                    .collect::<Vec<_>>()
                    .join(".");
                let inner = e.into_inner();
                let span = inner.span().unwrap_or(0..0);
                let (key, problem, allowed) = describe_toml_error(&key, inner.message());
                c.push(span, &key, problem, &allowed);
                return Err(SiteErrors(c.errors));
            }
        };
        let site = Site::from_raw(&mut c, name, raw);
        if c.errors.is_empty() {
            Ok(site)
        } else {
            Err(SiteErrors(c.errors))
        }
    }

    fn from_raw(c: &mut Checker, name: &str, raw: RawSite) -> Site {
        let domain = match raw.domain {
            None => {
                c.push(0..0, "domain", "is missing".into(), HOST.allowed);
                String::new()
            }
            some => c.string(some, "domain", String::new, &HOST),
        };
        let aliases = c.strings(raw.aliases, "aliases", &HOST);
        if let Some(i) = aliases.iter().position(|a| *a == domain) {
            // Find the alias in the text again for a useful position.
            let at = c.text.match_indices(&format!("\"{}\"", aliases[i])).nth(1);
            let span = at.map_or(0..0, |(o, _)| o..o);
            c.push(
                span,
                "aliases",
                format!("`{domain}` is the domain itself"),
                "list only other host names",
            );
        }

        let (git_url, git_ref) = match raw.git {
            None => {
                c.push(
                    0..0,
                    "git",
                    "the [git] table is missing".into(),
                    "add [git] with url = \"…\"",
                );
                (String::new(), "main".to_string())
            }
            Some(g) => {
                let span = g.span();
                let g = g.into_inner();
                let url = match g.url {
                    None => {
                        c.push(span, "git.url", "is missing".into(), GIT_URL.allowed);
                        String::new()
                    }
                    some => c.string(some, "git.url", String::new, &GIT_URL),
                };
                let git_ref = c.string(g.git_ref, "git.ref", || "main".into(), &GIT_REF);
                (url, git_ref)
            }
        };

        let d = raw.django;
        let project = c.string(
            d.project,
            "django.project",
            || name.replace('-', "_"),
            &IDENT,
        );
        let settings = c.string(
            d.settings,
            "django.settings",
            || format!("{project}.settings.production"),
            &DOTTED,
        );
        let wsgi = c.string(
            d.wsgi,
            "django.wsgi",
            || format!("{project}.wsgi:application"),
            &WSGI,
        );

        let p = raw.python;
        let python = Python {
            interpreter: c.string(
                p.interpreter,
                "python.interpreter",
                || "python3".into(),
                &INTERPRETER,
            ),
            requirements: c.string(
                p.requirements,
                "python.requirements",
                || "requirements.txt".into(),
                &REL_PATH,
            ),
            extra: c.strings(p.extra, "python.extra", &PIP_SPEC),
        };

        let g = raw.gunicorn;
        let gunicorn = Gunicorn {
            workers: c.number(g.workers, "gunicorn.workers", 4, 1, 64),
            threads: c.number(g.threads, "gunicorn.threads", 2, 1, 64),
            timeout: c.number(g.timeout, "gunicorn.timeout", 30, 1, 3600),
        };

        let ce = raw.celery;
        let celery = Celery {
            worker: Checker::flag(ce.worker, false),
            beat: Checker::flag(ce.beat, false),
            app: c.string(ce.app, "celery.app", || project.clone(), &DOTTED),
            concurrency: c.number(ce.concurrency, "celery.concurrency", 2, 1, 64),
        };

        let h = raw.health;
        let timeout_text = c.string(h.timeout, "health.timeout", || "60s".into(), &DURATION);
        let health = Health {
            path: c.string(h.path, "health.path", || "/health/".into(), &URL_PATH),
            timeout: parse_duration(&timeout_text).unwrap_or(Duration::from_secs(60)),
            sitemap: Checker::flag(h.sitemap, true),
        };

        let b = raw.backup;
        let ping_url = b
            .ping_url
            .map(|u| c.string(Some(u), "backup.ping_url", String::new, &PING_URL));
        let backup = Backup {
            schedule: c.string(
                b.schedule,
                "backup.schedule",
                || "*-*-* 02:00:00 UTC".into(),
                &SCHEDULE,
            ),
            keep_daily: c.number(b.keep_daily, "backup.keep_daily", 7, 0, 1000),
            keep_weekly: c.number(b.keep_weekly, "backup.keep_weekly", 13, 0, 1000),
            keep_monthly: c.number(b.keep_monthly, "backup.keep_monthly", 12, 0, 1000),
            media: Checker::flag(b.media, true),
            ping_url,
        };

        let de = raw.deploy;
        let shared = c.strings(de.shared, "deploy.shared", &REL_PATH);
        let deploy = Deploy {
            keep_releases: c.number(de.keep_releases, "deploy.keep_releases", 5, 1, 100),
            backup_before_migrate: Checker::flag(de.backup_before_migrate, true),
            shared: shared
                .into_iter()
                .map(|s| s.trim_end_matches('/').to_string())
                .collect(),
        };

        Site {
            name: name.to_string(),
            source: Path::new(SITES_DIR).join(format!("{name}.toml")),
            domain,
            aliases,
            git: Git {
                url: git_url,
                git_ref,
            },
            django: Django {
                project,
                settings,
                wsgi,
            },
            python,
            gunicorn,
            celery,
            health,
            backup,
            deploy,
            sandbox: Sandbox {
                memory_deny_write_execute: Checker::flag(
                    raw.sandbox.memory_deny_write_execute,
                    true,
                ),
            },
        }
    }

    /// Every host name this site answers for: the domain, then the aliases.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.domain.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// Turns toml/serde's message into key, problem and what is allowed.
fn describe_toml_error(path: &str, message: &str) -> (String, String, String) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let key = if path.is_empty() || path == "." {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        let expected = expected.trim_start_matches(", ");
        let allowed = if expected.is_empty() {
            String::new()
        } else {
            format!("allowed here: {}", expected.trim_start_matches("expected "))
        };
        return (key, "unknown key".into(), allowed);
    }
    let key = if path.is_empty() || path == "." {
        "(syntax)".to_string()
    } else {
        path.to_string()
    };
    let allowed = match message.split_once(", expected ") {
        Some((_, exp)) => format!("expected {}", friendly_type(exp)),
        None => "expected TOML: `key = value` lines under [table] headers, strings in double quotes (see sum-site.toml(5))".to_string(),
    };
    let problem = message
        .split_once(", expected ")
        .map_or(message, |(p, _)| p)
        .to_string();
    (key, problem, allowed)
}

fn friendly_type(serde_expected: &str) -> &str {
    match serde_expected {
        "i64" => "a whole number",
        "a boolean" | "bool" => "true or false",
        "a string" => "a quoted string",
        "a sequence" => "a list such as [\"a\", \"b\"]",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site, SiteErrors> {
        Site::parse("acme", Path::new("/etc/sum/sites/acme.toml"), text)
    }

    const MINIMAL: &str =
        "domain = \"acme.example.com\"\n[git]\nurl = \"https://git.example.com/acme.git\"\n";

    #[test]
    fn defaults_follow_the_spec() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.django.project, "acme");
        assert_eq!(s.django.settings, "acme.settings.production");
        assert_eq!(s.django.wsgi, "acme.wsgi:application");
        assert_eq!(s.git.git_ref, "main");
        assert_eq!(
            (s.gunicorn.workers, s.gunicorn.threads, s.gunicorn.timeout),
            (4, 2, 30)
        );
        assert_eq!(s.celery.app, "acme");
        assert!(!s.celery.worker && !s.celery.beat);
        assert_eq!(s.health.timeout, Duration::from_secs(60));
        assert_eq!(s.backup.schedule, "*-*-* 02:00:00 UTC");
        assert_eq!(
            (
                s.backup.keep_daily,
                s.backup.keep_weekly,
                s.backup.keep_monthly
            ),
            (7, 13, 12)
        );
        assert_eq!(s.deploy.keep_releases, 5);
        assert!(s.sandbox.memory_deny_write_execute);
        assert_eq!(s.source, Path::new("/etc/sum/sites/acme.toml"));
    }

    #[test]
    fn dashes_in_the_site_name_become_underscores_in_the_project() {
        let s = Site::parse("acme-blog", Path::new("x.toml"), MINIMAL).unwrap();
        assert_eq!(s.django.project, "acme_blog");
        assert_eq!(s.django.wsgi, "acme_blog.wsgi:application");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
