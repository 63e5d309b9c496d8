//! `sumctl new <site> --domain … --git …`: the `sum-<site>` account, the
//! site's home, a commented site file, the site's own PostgreSQL role and
//! database and its own Redis, and a `.env` that names them, with a fresh
//! SECRET_KEY.
//!
//! Everything that could stop it is checked before anything is created,
//! and what it created is removed again when a later step fails, so a
//! failed `sumctl new` leaves nothing half-made. Run again on an existing
//! site, it creates only what is missing and changes nothing else: it never
//! rewrites the site file and never changes a password.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::new_db::{self, DbPlan};
use super::new_files::{self, EnvValues};
use super::new_redis::{self, RedisPlan};
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::{check_host, check_site_name, Site};
use crate::config::sites;
use crate::system::failure::{exit_code, Failure};
use crate::system::fsutil::write_atomic;
use crate::system::pgadmin::Admin;

/// Arguments of `sumctl new`. `domain` and `git` are needed only when the
/// site file does not exist yet.
pub struct NewSite<'a> {
    pub name: &'a str,
    pub domain: Option<&'a str>,
    pub git: Option<&'a str>,
    pub aliases: &'a [String],
    /// Use this database instead of creating one.
    pub database_url: Option<&'a str>,
}

/// The host services `sumctl new` provisions from: the PostgreSQL
/// superuser, and whether to start Redis instances (systemd).
pub struct Services {
    pub admin: Admin,
    pub start_redis: bool,
}

impl Services {
    /// The host's own (`runuser -u postgres -- psql`, systemd); under a
    /// test root, psql as the caller with libpq's `PG*` environment
    /// variables, and no systemd.
    pub fn for_root(root: &Root) -> Services {
        Services {
            admin: Admin::for_root(root),
            start_redis: root.is_system(),
        }
    }
}

/// `sumctl new`: see the module documentation.
pub fn new_site(
    root: &Root,
    args: &NewSite,
    services: &Services,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = create_site(root, args, services).map(|report| {
        for line in &report.lines {
            let _ = writeln!(out, "{line}");
        }
        if report.changed {
            let _ = writeln!(out, "\n{}", next_steps(root, args.name));
        } else {
            let _ = writeln!(out, "nothing to do: site `{}` has everything", args.name);
        }
    });
    exit_code(result, err)
}

fn next_steps(root: &Root, name: &str) -> String {
    let site = root.sites_dir().join(format!("{name}.toml"));
    format!(
        "Next:\n  \
         $EDITOR {site}    # [git] ref, and [django] if settings are not <project>.settings.production\n  \
         sumctl check\n  \
         systemctl daemon-reload\n  \
         systemctl start sum-deploy@{name}\n  \
         sumctl manage {name} createsuperuser\n  \
         sumctl status {name}",
        site = site.display(),
    )
}

/// What `sumctl new` did, line by line.
struct Report {
    lines: Vec<String>,
    changed: bool,
}

/// What existed before: the site file's text to write (None: it exists),
/// and the `.env`'s text and the values in it.
struct Existing {
    site_text: Option<String>,
    hosts: Vec<String>,
    env: Option<String>,
    database_url: Option<String>,
    redis_url: Option<String>,
}

/// What to do about Redis.
enum RedisStep {
    Keep,
    /// A configuration exists (an earlier run): its URL, started again.
    Reuse(String),
    Create {
        port: u16,
        password: String,
    },
    /// The `.env`'s REDIS_URL names this site's instance, which is not
    /// on this host: made as named, the `.env` unchanged.
    Recreate {
        port: u16,
        password: String,
    },
    /// No Redis on this host.
    Absent,
}

fn create_site(root: &Root, args: &NewSite, svc: &Services) -> Result<Report, Failure> {
    check_site_name(args.name).map_err(Failure::usage)?;
    let site_file = root.sites_dir().join(format!("{}.toml", args.name));
    let layout = SiteLayout::new(args.name);
    let env_file = root.path(&layout.env_file);
    let existing = existing(root, args, &site_file, &env_file)?;
    let db = new_db::plan(
        &svc.admin,
        args.name,
        existing.database_url.as_deref(),
        args.database_url,
    )
    .map_err(Failure::failed)?;
    let redis = redis_step(root, args.name, existing.redis_url.as_deref())?;
    // Nothing has been created before this line.
    let gid = prepare_home(root, args.name, &layout)?;
    let mut made = Made::default();
    let result: Result<Provisioned, Failure> = (|| {
        let mut r = provision(root, args, svc, &db, &redis, &mut made)?;
        if let Some(line) = write_env(args, &existing, &r, &env_file, gid, &mut made)? {
            r.lines.push(line);
        } else if let Some(line) = own_env(&env_file, gid)? {
            r.lines.push(line);
            r.changed = true;
        }
        match &existing.site_text {
            Some(text) => {
                write_site_file(root, args.name, &site_file, text)?;
                r.lines.insert(0, format!("wrote {}", site_file.display()));
                r.changed = true;
            }
            None => r
                .lines
                .insert(0, format!("kept {} (it exists)", site_file.display())),
        }
        Ok(r)
    })();
    result
        .map(|r| Report {
            lines: r.lines,
            changed: r.changed,
        })
        .inspect_err(|_| made.undo(root, &svc.admin))
}

/// Reads what exists, and validates the site file to write.
fn existing(
    root: &Root,
    args: &NewSite,
    site_file: &Path,
    env_file: &Path,
) -> Result<Existing, Failure> {
    let (site_text, hosts) = if site_file.exists() {
        let site = sites::load_file(site_file).map_err(|e| {
            Failure::usage(format!(
                "{e}\n(the site file exists; fix it, then run sumctl new {} again)",
                args.name
            ))
        })?;
        (None, site.hosts().map(str::to_string).collect())
    } else {
        let (Some(domain), Some(git)) = (args.domain, args.git) else {
            return Err(Failure::usage(format!(
                "{} does not exist: a new site needs --domain and --git",
                site_file.display()
            )));
        };
        let text = valid_site_file(root, args, domain, git)?;
        refuse_taken_hosts(root, args, domain)?;
        let hosts = std::iter::once(domain.to_string())
            .chain(args.aliases.iter().cloned())
            .collect();
        (Some(text), hosts)
    };
    let env = match env_file.exists() {
        true => Some(fs_err::read_to_string(env_file).map_err(|e| Failure::failed(e.to_string()))?),
        false => None,
    };
    let value = |key: &str| {
        let text = env.as_deref()?;
        let vars = crate::config::envfile::parse(text.as_bytes()).ok()?;
        vars.into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            // The placeholder of earlier versions is no database.
            .filter(|v| !v.is_empty() && !v.contains("CHANGE-ME"))
    };
    Ok(Existing {
        database_url: value("DATABASE_URL"),
        redis_url: value("REDIS_URL"),
        site_text,
        hosts,
        env,
    })
}

fn redis_step(root: &Root, site: &str, url: Option<&str>) -> Result<RedisStep, Failure> {
    let plan = RedisPlan::new(root, site);
    if let Some(url) = url {
        // A new server with the site's saved .env: its Redis, as named.
        let missing = !plan.conf.exists() && new_redis::template_installed(root);
        return Ok(match new_redis::port_and_password(url) {
            Some((port, password)) if missing && new_redis::port_free(root, port) => {
                RedisStep::Recreate { port, password }
            }
            _ => RedisStep::Keep,
        });
    }
    if let Ok(text) = fs_err::read_to_string(&plan.conf) {
        return new_redis::url_of_conf(&text)
            .map(RedisStep::Reuse)
            .ok_or_else(|| {
                Failure::failed(format!(
                    "{} exists but names no port and password; remove it to start over",
                    plan.conf.display()
                ))
            });
    }
    if !new_redis::template_installed(root) {
        return Ok(RedisStep::Absent);
    }
    let port = new_redis::free_port(root).map_err(Failure::failed)?;
    let password = new_files::random_token(40).map_err(|e| Failure::failed(e.to_string()))?;
    Ok(RedisStep::Create { port, password })
}

/// A `.env` that was put in place by hand (the site's saved copy on a new
/// server) gets the owner and mode every deploy checks: `root:sum-<site>`
/// 0640. What it did, None when it was so already or under a test root.
fn own_env(env_file: &Path, gid: Option<nix::unistd::Gid>) -> Result<Option<String>, Failure> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (Some(gid), Ok(meta)) = (gid, fs_err::metadata(env_file)) else {
        return Ok(None);
    };
    if meta.uid() == 0 && meta.gid() == gid.as_raw() && meta.mode() & 0o7777 == 0o640 {
        return Ok(None);
    }
    let io = |e: std::io::Error| Failure::failed(format!("{}: {e}", env_file.display()));
    nix::unistd::chown(env_file, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
        .map_err(|e| io(e.into()))?;
    fs_err::set_permissions(env_file, std::fs::Permissions::from_mode(0o640)).map_err(io)?;
    Ok(Some(format!(
        "gave {} the owner and mode deploys check (root, the site's group, 0640)",
        env_file.display()
    )))
}

/// The account (on a real system) and the site's home; the account's gid.
fn prepare_home(
    root: &Root,
    name: &str,
    layout: &SiteLayout,
) -> Result<Option<nix::unistd::Gid>, Failure> {
    let io = |e: std::io::Error| Failure::failed(e.to_string());
    let gid = if root.is_system() {
        Some(crate::system::accounts::ensure_site_account(name, layout).map_err(io)?)
    } else {
        None
    };
    fs_err::create_dir_all(root.path(&layout.home)).map_err(io)?;
    // Closed to other local users from the start, as every deploy keeps it.
    if let Some((uid, _)) = crate::system::accounts::site_account(root, name) {
        crate::deploy::dirs::close_home(root, name, uid).map_err(io)?;
    }
    Ok(gid)
}

/// What this run created, to remove again when a later step fails.
#[derive(Default)]
struct Made {
    database: Option<String>,
    redis: Option<RedisPlan>,
    env: Option<PathBuf>,
}

impl Made {
    fn undo(&self, root: &Root, admin: &Admin) {
        if let Some(name) = &self.database {
            new_db::undo(admin, name);
        }
        if let Some(plan) = &self.redis {
            new_redis::remove(root, plan);
        }
        if let Some(env) = &self.env {
            let _ = fs_err::remove_file(env);
        }
    }
}

/// The database and Redis URLs, created where needed.
struct Provisioned {
    lines: Vec<String>,
    changed: bool,
    database_url: Option<String>,
    redis_url: Option<String>,
    /// Made what the `.env` names (a new server): nothing in it changes.
    restored: bool,
}

fn provision(
    root: &Root,
    args: &NewSite,
    svc: &Services,
    db: &DbPlan,
    redis: &RedisStep,
    made: &mut Made,
) -> Result<Provisioned, Failure> {
    let mut r = Provisioned {
        lines: Vec::new(),
        changed: false,
        database_url: None,
        redis_url: None,
        restored: false,
    };
    provision_db(svc, db, made, &mut r)?;
    provision_redis(root, args, svc, redis, made, &mut r)?;
    r.changed = r.database_url.is_some() || r.redis_url.is_some() || r.restored;
    Ok(r)
}

/// The database part of [`provision`].
fn provision_db(
    svc: &Services,
    db: &DbPlan,
    made: &mut Made,
    r: &mut Provisioned,
) -> Result<(), Failure> {
    match db {
        DbPlan::Keep => r
            .lines
            .push("kept the DATABASE_URL in the .env (sumctl new never changes a password)".into()),
        DbPlan::Use(url) => {
            r.lines
                .push("the .env gets --database-url (it connects); created no database".into());
            r.database_url = Some(url.clone());
        }
        DbPlan::Recreate { name, password } => {
            new_db::create_with(&svc.admin, name, password).map_err(Failure::failed)?;
            made.database = Some(name.clone());
            r.lines.push(format!(
                "created PostgreSQL role `{name}` and database `{name}` as the .env's \
                 DATABASE_URL names them, with its password (they were missing on this host)"
            ));
            r.restored = true;
        }
        DbPlan::Create { name } => {
            let url = new_db::create(&svc.admin, name).map_err(Failure::failed)?;
            made.database = Some(name.clone());
            r.lines.push(format!(
                "created PostgreSQL role `{name}` (login, nothing more) and database `{name}` \
                 (owned by it; CONNECT revoked from PUBLIC)"
            ));
            r.database_url = Some(url);
        }
    }
    Ok(())
}

/// The Redis part of [`provision`].
fn provision_redis(
    root: &Root,
    args: &NewSite,
    svc: &Services,
    redis: &RedisStep,
    made: &mut Made,
    r: &mut Provisioned,
) -> Result<(), Failure> {
    let plan = RedisPlan::new(root, args.name);
    match redis {
        RedisStep::Keep => r.lines.push("kept the REDIS_URL in the .env".into()),
        RedisStep::Absent => r.lines.push(
            "no Redis on this host (apt install redis-server, then run sumctl new again)".into(),
        ),
        RedisStep::Reuse(url) => {
            if svc.start_redis {
                new_redis::start(&plan, url).map_err(Failure::failed)?;
            }
            r.lines.push(format!(
                "the .env gets the Redis of {} ({})",
                plan.unit,
                plan.conf.display()
            ));
            r.redis_url = Some(url.clone());
        }
        RedisStep::Recreate { port, password } => {
            let text = new_redis::conf_text(args.name, *port, password);
            new_redis::write_conf(root, &plan.conf, &text)
                .map_err(|e| Failure::failed(format!("{}: {e}", plan.conf.display())))?;
            made.redis = Some(RedisPlan::new(root, args.name));
            if svc.start_redis {
                new_redis::start(&plan, &new_redis::url(*port, password))
                    .map_err(Failure::failed)?;
            }
            r.lines.push(format!(
                "created Redis {} on 127.0.0.1:{port} as the .env's REDIS_URL names it, with its \
                 password (it was missing on this host; {})",
                plan.unit,
                plan.conf.display()
            ));
            r.restored = true;
        }
        RedisStep::Create { port, password } => {
            let text = new_redis::conf_text(args.name, *port, password);
            new_redis::write_conf(root, &plan.conf, &text)
                .map_err(|e| Failure::failed(format!("{}: {e}", plan.conf.display())))?;
            let url = new_redis::url(*port, password);
            made.redis = Some(RedisPlan::new(root, args.name));
            if svc.start_redis {
                new_redis::start(&plan, &url).map_err(Failure::failed)?;
            }
            r.lines.push(format!(
                "created Redis {} on 127.0.0.1:{port} with its own password, maxmemory {} ({})",
                plan.unit,
                new_redis::MAXMEMORY,
                plan.conf.display()
            ));
            r.redis_url = Some(url);
        }
    }
    Ok(())
}

/// Writes a new `.env`, or sets the new values in the existing one,
/// `root:sum-<site>` 0640. Returns what it did, None when nothing.
fn write_env(
    args: &NewSite,
    existing: &Existing,
    r: &Provisioned,
    env_file: &Path,
    gid: Option<nix::unistd::Gid>,
    made: &mut Made,
) -> Result<Option<String>, Failure> {
    let (text, line) = match &existing.env {
        Some(_) if r.database_url.is_none() && r.redis_url.is_none() => return Ok(None),
        Some(text) => {
            let mut text = text.clone();
            let mut set = Vec::new();
            if let Some(url) = &r.database_url {
                text = new_files::set_env_line(&text, "DATABASE_URL", url);
                set.push("DATABASE_URL");
            }
            if let Some(url) = &r.redis_url {
                text = new_files::set_env_line(&text, "REDIS_URL", url);
                set.push("REDIS_URL");
            }
            let line = format!("set {} in {}", set.join(" and "), env_file.display());
            (text, line)
        }
        None => {
            let hosts: Vec<&str> = existing.hosts.iter().map(String::as_str).collect();
            let secret = new_files::random_token(50).map_err(|e| Failure::failed(e.to_string()))?;
            let values = EnvValues {
                hosts: &hosts,
                database_url: r.database_url.as_deref().unwrap_or_default(),
                redis_url: r.redis_url.as_deref(),
            };
            made.env = Some(env_file.to_path_buf());
            let text = new_files::env_text(args.name, &values, &secret);
            (
                text,
                format!(
                    "wrote {} (root:sum-{}, 0640)",
                    env_file.display(),
                    args.name
                ),
            )
        }
    };
    write_atomic(env_file, text.as_bytes(), 0o640)
        .map_err(|e| Failure::failed(format!("{}: {e}", env_file.display())))?;
    if let Some(gid) = gid {
        nix::unistd::chown(env_file, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
            .map_err(|e| Failure::failed(format!("failed to chown {}: {e}", env_file.display())))?;
    }
    Ok(Some(line))
}

/// The site file's text, once the host names and the text we are about to
/// write are valid.
fn valid_site_file(
    root: &Root,
    args: &NewSite,
    domain: &str,
    git: &str,
) -> Result<String, Failure> {
    for h in std::iter::once(domain).chain(args.aliases.iter().map(String::as_str)) {
        check_host(h).map_err(|e| Failure::usage(format!("--domain/--alias: {e}")))?;
    }
    let text = new_files::site_file_text(args.name, domain, git, args.aliases);
    let site_file = root.sites_dir().join(format!("{}.toml", args.name));
    Site::parse(args.name, &site_file, &text).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(text)
}

/// A host another site already has would get both sites rejected.
fn refuse_taken_hosts(root: &Root, args: &NewSite, domain: &str) -> Result<(), Failure> {
    let existing =
        sites::site_files(&root.sites_dir()).map_err(|e| Failure::failed(e.to_string()))?;
    for other in sites::load_files(&existing).sites {
        if let Some(host) = other
            .hosts()
            .find(|h| *h == domain || args.aliases.iter().any(|a| a == h))
        {
            return Err(Failure::usage(format!(
                "host `{host}` already belongs to site `{}` ({})",
                other.name,
                root.sites_dir()
                    .join(format!("{}.toml", other.name))
                    .display()
            )));
        }
    }
    Ok(())
}

/// The site file, written last: it is what makes the generator see the
/// site. A last good copy of an earlier site of this name must not stand
/// in for the new one (crate::config::sites).
fn write_site_file(root: &Root, name: &str, site_file: &Path, text: &str) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::failed(e.to_string());
    fs_err::create_dir_all(root.sites_dir()).map_err(io)?;
    let stale = root.path(sites::LAST_GOOD_DIR).join(format!("{name}.toml"));
    if stale.exists() {
        fs_err::remove_file(&stale).map_err(io)?;
    }
    write_atomic(site_file, text.as_bytes(), 0o644).map_err(io)
}
