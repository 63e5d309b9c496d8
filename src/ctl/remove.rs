//! `sumctl remove <site> [--purge --i-know-this-deletes-data]`: the end of
//! a site's life (docs/sites.md).
//!
//! Without `--purge` it takes the site off the host and keeps its data: the
//! app's units are stopped, the site file and its last good copy go, and
//! systemd and Caddy forget the site. The home (code, `media/`, `backups/`,
//! `.env`), the database and role, the Redis instance and the account stay,
//! and it says so, with the command that deletes them.
//!
//! `--purge` deletes those as well: the database and role, but only when
//! they are the ones `sumctl new` made (named after the site, on this
//! host's cluster: never a `--database-url` database), the Redis instance
//! with its configuration and snapshot, the home with its backups, and the
//! account. It needs `--i-know-this-deletes-data`, like `sum-restore`'s
//! confirmation. Both hold the site's lock, so neither races a deploy, a
//! backup or a restore.

use std::io::Write;
use std::process::Command;

use super::new_redis::RedisPlan;
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::{check_site_name, SITES_DIR};
use crate::config::sites::LAST_GOOD_DIR;
use crate::probe::pgconn::PgConn;
use crate::site_state::lock::{self, LockError};
use crate::system::failure::{exit_code, Failure};
use crate::system::pgadmin::{site_db_name, Admin};
use crate::system::timefmt;

/// Arguments of `sumctl remove`.
pub struct RemoveSite<'a> {
    pub name: &'a str,
    pub purge: bool,
    pub confirmed: bool,
}

/// `sumctl remove`: see the module documentation.
pub fn remove_site(
    root: &Root,
    args: &RemoveSite,
    admin: &Admin,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = remove(root, args, admin).map(|lines| {
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    });
    exit_code(result, err)
}

fn remove(root: &Root, args: &RemoveSite, admin: &Admin) -> Result<Vec<String>, Failure> {
    let name = args.name;
    check_site_name(name).map_err(Failure::usage)?;
    let l = SiteLayout::new(name);
    let site_file = root.path(SITES_DIR).join(format!("{name}.toml"));
    let last_good = root.path(LAST_GOOD_DIR).join(format!("{name}.toml"));
    let home = root.path(&l.home);
    let redis = RedisPlan::new(root, name);
    if !site_file.exists() && !last_good.exists() && !home.exists() && !redis.conf.exists() {
        return Err(Failure::usage(format!(
            "no site `{name}`: neither {} nor {} exists",
            site_file.display(),
            home.display()
        )));
    }
    if args.purge && !args.confirmed {
        return Err(Failure::usage(format!(
            "--purge deletes {name}'s database and role, its Redis, its media and its \
             backups for good; add --i-know-this-deletes-data to do it (a last backup \
             first: systemctl start sum-backup@{name})"
        )));
    }
    // Read before anything goes: the .env names the database.
    let database_url = env_value(&root.path(&l.env_file), "DATABASE_URL");
    let _lock = site_lock(root, &l, name)?;
    let io = |e: std::io::Error| Failure::failed(e.to_string());
    let mut lines = Vec::new();
    for file in [&site_file, &last_good] {
        if file.exists() {
            fs_err::remove_file(file).map_err(io)?;
            lines.push(format!("removed {}", file.display()));
        }
    }
    // Its metrics files go with its units, so that its series disappear
    // from node_exporter at the next scrape.
    let metrics_dir = root.path(crate::system::metrics::dir());
    for file in crate::system::metrics::remove_site(&metrics_dir, name).map_err(io)? {
        lines.push(format!("removed {}", metrics_dir.join(file).display()));
    }
    if root.is_system() {
        // Reloaded before the stop: until systemd forgets the site's units,
        // sum-sites.target upholds its socket and starts it again.
        systemctl(&["daemon-reload"])?;
        lines.push("systemctl daemon-reload: the site's units are gone".into());
        lines.push(stop_units(name)?);
        if systemctl(&["is-active", "--quiet", "caddy.service"]).is_ok() {
            systemctl(&["reload", "caddy.service"])?;
            lines.push("systemctl reload caddy: its hosts are no longer served".into());
        }
    }
    if !args.purge {
        lines.extend(kept(root, name, &l, &redis));
        return Ok(lines);
    }
    lines.push(purge_database(admin, name, database_url.as_deref())?);
    if redis.conf.exists() {
        if root.is_system() {
            systemctl(&["disable", "--now", "--quiet", &redis.unit])?;
        }
        fs_err::remove_file(&redis.conf).map_err(io)?;
        let snapshot = root.path(format!("/var/lib/redis/sum-{name}.rdb"));
        let _ = fs_err::remove_file(snapshot);
        lines.push(format!("deleted Redis {} and its data", redis.unit));
    }
    // The lock lives in the home; it goes with it (the flock stays valid).
    if home.exists() {
        fs_err::remove_dir_all(&home).map_err(io)?;
        lines.push(format!(
            "deleted {} (releases, media, backups, .env)",
            home.display()
        ));
    }
    if crate::system::accounts::site_account(root, name).is_some() {
        run("userdel", &[l.user.as_str()])?;
        lines.push(format!("deleted the account {}", l.user));
    }
    Ok(lines)
}

/// The site's lock, when its state directory exists: a deploy, backup or
/// restore in progress makes `remove` wait for nothing and say so.
fn site_lock(root: &Root, l: &SiteLayout, name: &str) -> Result<Option<lock::SiteLock>, Failure> {
    let state = root.path(&l.state);
    if !state.is_dir() {
        return Ok(None);
    }
    let now = timefmt::iso_utc(timefmt::now_unix());
    match lock::acquire(&state.join("lock"), &format!("sumctl remove {name}"), &now) {
        Ok(held) => Ok(Some(held)),
        Err(e @ LockError::Busy { .. }) => Err(Failure::busy(e.to_string())),
        Err(LockError::Io(e)) => Err(Failure::failed(e.to_string())),
    }
}

/// Stops every unit of the site that systemd still has in memory after the
/// reload (their files are gone, but a running unit stays loaded until it
/// stops): gunicorn's socket and service, celery, beat, the timers. A glob
/// matches only loaded units, so units the site never had (celery off) are
/// no error. Then forgets any that had failed, so none is left listed. The
/// site's lock is held, so no deploy, backup or restore is among them.
fn stop_units(name: &str) -> Result<String, Failure> {
    let pattern = format!("sum-*@{name}.*");
    systemctl(&["stop", "--quiet", &pattern])?;
    systemctl(&["reset-failed", "--quiet", &pattern])?;
    Ok(format!("stopped the units {pattern}"))
}

/// What stays without `--purge`, and how to delete it.
fn kept(root: &Root, name: &str, l: &SiteLayout, redis: &RedisPlan) -> Vec<String> {
    let mut lines = vec!["\nKept (nothing of the data was deleted):".to_string()];
    if root.path(&l.home).exists() {
        lines.push(format!(
            "  {} (releases, media, backups, .env)",
            root.path(&l.home).display()
        ));
    }
    lines.push(format!(
        "  the database and role `{}`, if sumctl new made them",
        site_db_name(name)
    ));
    if redis.conf.exists() {
        lines.push(format!("  Redis {} ({})", redis.unit, redis.conf.display()));
    }
    if crate::system::accounts::site_account(root, name).is_some() {
        lines.push(format!("  the account {}", l.user));
    }
    lines.push(format!(
        "To delete them too: sumctl remove {name} --purge --i-know-this-deletes-data"
    ));
    lines
}

/// Drops the database and role `sumctl new` made for the site; anything
/// else (a `--database-url` database, another cluster) is left alone.
fn purge_database(admin: &Admin, name: &str, url: Option<&str>) -> Result<String, Failure> {
    let db = site_db_name(name);
    let made_by_new = url
        .and_then(|u| PgConn::parse(u).ok())
        .is_some_and(|c| c.user() == Some(db.as_str()) && c.dbname() == Some(db.as_str()));
    if !made_by_new {
        return Ok(format!(
            "kept the database: the site's DATABASE_URL does not name the role and \
             database `{db}` that sumctl new makes (a database elsewhere is its owner's)"
        ));
    }
    let answer = |e: crate::system::pgadmin::AdminError| {
        Failure::failed(format!("deleting database `{db}`: {e}"))
    };
    let owner = admin.database_owner(&db).map_err(answer)?;
    if owner.as_deref().is_some_and(|o| o != db) {
        return Ok(format!(
            "kept database `{db}`: it belongs to role `{}`, not the site's",
            owner.unwrap_or_default()
        ));
    }
    // Its scratch databases (sum-restore --into) go with it: a role that
    // owns a database cannot be dropped.
    let mut dropped = Vec::new();
    for owned in admin.databases_owned_by(&db).map_err(answer)? {
        admin.drop_database(&owned).map_err(answer)?;
        dropped.push(owned);
    }
    admin.drop_database(&db).map_err(answer)?;
    admin.drop_role(&db).map_err(answer)?;
    Ok(format!(
        "deleted the PostgreSQL role `{db}` and its databases ({})",
        if dropped.is_empty() {
            db.clone()
        } else {
            dropped.join(", ")
        }
    ))
}

fn env_value(path: &std::path::Path, key: &str) -> Option<String> {
    let bytes = fs_err::read(path).ok()?;
    let vars = crate::config::envfile::parse(&bytes).ok()?;
    vars.into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn systemctl(args: &[&str]) -> Result<(), Failure> {
    run("systemctl", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), Failure> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Failure::failed(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
