//! The validation stage of the site file: raw values → a `Site`, each value
//! checked by its rule and every absent one given the spec's default. The
//! errors are collected in file order of the tables, so all of a file's
//! problems are reported at once.

use std::path::Path;
use std::time::Duration;

use super::checker::Checker;
use super::raw::{
    RawBackup, RawCelery, RawDeploy, RawDjango, RawGit, RawGunicorn, RawHealth, RawPython, RawSite,
    S,
};
use super::rules::*;
use super::{
    Backup, Celery, Deploy, Django, Git, Gunicorn, Health, Process, Python, Sandbox, Site,
    SITES_DIR,
};
use toml::Spanned;

/// The validated site; its errors, if any, are in `c`.
pub(super) fn from_raw(c: &mut Checker, name: &str, raw: RawSite) -> Site {
    let (domain, aliases) = hosts(c, raw.domain, raw.aliases);
    let git = git(c, raw.git);
    let django = django(c, name, raw.django);
    let python = python(c, raw.python);
    let gunicorn = gunicorn(c, raw.gunicorn);
    let celery = celery(c, raw.celery, &django.project);
    let health = health(c, raw.health);
    let backup = backup(c, raw.backup);
    let deploy = deploy(c, raw.deploy);
    let processes = processes(c, raw.processes);
    Site {
        name: name.to_string(),
        source: Path::new(SITES_DIR).join(format!("{name}.toml")),
        domain,
        aliases,
        git,
        django,
        python,
        gunicorn,
        celery,
        health,
        backup,
        deploy,
        sandbox: Sandbox {
            memory_deny_write_execute: Checker::flag(raw.sandbox.memory_deny_write_execute, true),
        },
        processes,
    }
}

/// `[processes]`: a name and a command line each, sorted by name.
fn processes(
    c: &mut Checker,
    table: S<std::collections::BTreeMap<String, Spanned<String>>>,
) -> Vec<Process> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, command) in table.into_inner() {
        let span = command.span();
        let key = format!("processes.{name}");
        if let Err(problem) = PROCESS_NAME.check(&name) {
            c.push(span.clone(), &key, problem, PROCESS_NAME.allowed);
        }
        let command = command.into_inner();
        if let Err(problem) = COMMAND.check(&command) {
            c.push(span, &key, problem, COMMAND.allowed);
        }
        out.push(Process { name, command });
    }
    out
}

/// The domain (required) and its aliases, none of them the domain itself.
fn hosts(
    c: &mut Checker,
    domain: S<String>,
    aliases: S<Vec<Spanned<String>>>,
) -> (String, Vec<String>) {
    let domain = match domain {
        None => {
            c.push(0..0, "domain", "is missing".into(), HOST.allowed);
            String::new()
        }
        some => c.string(some, "domain", String::new, &HOST),
    };
    let aliases = c.strings(aliases, "aliases", &HOST);
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
    (domain, aliases)
}

/// `[git]`: required, with its `url`.
fn git(c: &mut Checker, raw: S<RawGit>) -> Git {
    let Some(g) = raw else {
        c.push(
            0..0,
            "git",
            "the [git] table is missing".into(),
            "add [git] with url = \"…\"",
        );
        return Git {
            url: String::new(),
            git_ref: "main".to_string(),
        };
    };
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
    Git { url, git_ref }
}

/// `[django]`: the project defaults to the site name, the rest to the project.
fn django(c: &mut Checker, name: &str, d: RawDjango) -> Django {
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
    Django {
        project,
        settings,
        wsgi,
    }
}

fn python(c: &mut Checker, p: RawPython) -> Python {
    Python {
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
    }
}

fn gunicorn(c: &mut Checker, g: RawGunicorn) -> Gunicorn {
    Gunicorn {
        workers: c.number(g.workers, "gunicorn.workers", 4, 1, 64),
        threads: c.number(g.threads, "gunicorn.threads", 2, 1, 64),
        timeout: c.number(g.timeout, "gunicorn.timeout", 30, 1, 3600),
    }
}

/// `[celery]`: the app defaults to the Django project.
fn celery(c: &mut Checker, ce: RawCelery, project: &str) -> Celery {
    Celery {
        worker: Checker::flag(ce.worker, false),
        beat: Checker::flag(ce.beat, false),
        app: c.string(ce.app, "celery.app", || project.to_string(), &DOTTED),
        concurrency: c.number(ce.concurrency, "celery.concurrency", 2, 1, 64),
    }
}

fn health(c: &mut Checker, h: RawHealth) -> Health {
    let timeout_text = c.string(h.timeout, "health.timeout", || "60s".into(), &DURATION);
    let (path, more_paths) = health_paths(c, h.path, h.paths);
    Health {
        path,
        more_paths,
        timeout: parse_duration(&timeout_text).unwrap_or(Duration::from_secs(60)),
        sitemap: Checker::flag(h.sitemap, true),
        probe_every: probe_every(&c.string(
            h.probe_every,
            "health.probe_every",
            || "1min".into(),
            &PROBE_EVERY,
        ))
        .unwrap_or(Some(Duration::from_secs(60))),
        probe_alert_after: c.number(h.probe_alert_after, "health.probe_alert_after", 3, 1, 1000),
    }
}

/// `path` (one) or `paths` (a list of at least one), not both: the first
/// path and the rest.
fn health_paths(
    c: &mut Checker,
    path: S<String>,
    paths: S<Vec<Spanned<String>>>,
) -> (String, Vec<String>) {
    let Some(list) = paths else {
        let path = c.string(path, "health.path", || "/health/".into(), &URL_PATH);
        return (path, Vec::new());
    };
    let span = list.span();
    if let Some(one) = &path {
        let (line, _) = c.position(one.span().start);
        c.push(
            span.clone(),
            "health.paths",
            format!("is set together with health.path (line {line})"),
            "set either path = \"/health/\" or paths = [\"/health/\", \"/\"], not both",
        );
    }
    let mut all = c.strings(Some(list), "health.paths", &URL_PATH);
    if all.is_empty() {
        c.push(
            span,
            "health.paths",
            "is empty".into(),
            "list at least one path, such as [\"/health/\", \"/\"]",
        );
        all.push("/health/".into());
    }
    let first = all.remove(0);
    (first, all)
}

fn backup(c: &mut Checker, b: RawBackup) -> Backup {
    let ping_url = b
        .ping_url
        .map(|u| c.string(Some(u), "backup.ping_url", String::new, &PING_URL));
    let offsite = b
        .offsite
        .map(|o| c.string(Some(o), "backup.offsite", String::new, &OFFSITE));
    Backup {
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
        offsite,
    }
}

/// `[deploy]`: shared paths without a trailing '/'.
fn deploy(c: &mut Checker, de: RawDeploy) -> Deploy {
    let shared = c.strings(de.shared, "deploy.shared", &REL_PATH);
    let release = c.strings(de.release, "deploy.release", &COMMAND);
    Deploy {
        keep_releases: c.number(de.keep_releases, "deploy.keep_releases", 5, 1, 100),
        backup_before_migrate: Checker::flag(de.backup_before_migrate, true),
        shared: shared
            .into_iter()
            .map(|s| s.trim_end_matches('/').to_string())
            .collect(),
        release,
    }
}
