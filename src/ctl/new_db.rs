//! The site's own PostgreSQL role and database for `sumctl new`.
//!
//! The role and the database are named after the site (`-` becomes `_`).
//! The role logs in with a random password, owns its database and is
//! nothing more; the database refuses CONNECT to every other role. The
//! password reaches the server only as a SCRAM verifier.

use std::process::Command;

use crate::probe::pgconn::PgConn;
use crate::system::pgadmin::{site_db_name, Admin, AdminError};

/// What `sumctl new` does about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbPlan {
    /// The `.env` already has a DATABASE_URL: nothing to do.
    Keep,
    /// `--database-url`: write it, create nothing.
    Use(String),
    /// Create the role and database named `name`.
    Create { name: String },
    /// The `.env` names this site's own role and database on this host's
    /// PostgreSQL, which has neither (a new server with the site's saved
    /// `.env`): create them with the `.env`'s password, so it logs in.
    Recreate { name: String, password: String },
}

/// Decides, checking everything that could stop the creation so that it
/// stops before anything exists: an unreachable `--database-url`, a
/// PostgreSQL that does not answer, a role or database of someone else.
pub fn plan(
    admin: &Admin,
    site: &str,
    existing: Option<&str>,
    given: Option<&str>,
) -> Result<DbPlan, String> {
    match (existing, given) {
        (Some(old), Some(new)) if old != new => Err(format!(
            "the site's .env already has a different DATABASE_URL; sumctl new never \
             changes it: edit the .env to use {}",
            describe(new)
        )),
        (Some(old), _) => Ok(recreate(admin, site, old).unwrap_or(DbPlan::Keep)),
        (None, Some(url)) => {
            can_connect(url).map_err(|e| format!("--database-url {}: {e}", describe(url)))?;
            Ok(DbPlan::Use(url.to_string()))
        }
        (None, None) => {
            let name = site_db_name(site);
            admin.check().map_err(|e| no_admin(&e))?;
            if admin.role(&name).map_err(|e| no_admin(&e))?.is_some() {
                return Err(format!(
                    "a PostgreSQL role `{name}` exists already and the site's .env does not \
                     name it, so it belongs to someone else. Drop or rename it, or pass \
                     --database-url with the database this site should use"
                ));
            }
            if let Some(owner) = admin.database_owner(&name).map_err(|e| no_admin(&e))? {
                return Err(format!(
                    "a PostgreSQL database `{name}` exists already and belongs to role \
                     `{owner}`. Drop or rename it, or pass --database-url with the \
                     database this site should use"
                ));
            }
            Ok(DbPlan::Create { name })
        }
    }
}

/// [`DbPlan::Recreate`] when `url` is what `sumctl new` writes for `site`
/// (its role and database, over 127.0.0.1 to this host's cluster) and
/// neither exists; None otherwise (kept as it is).
fn recreate(admin: &Admin, site: &str, url: &str) -> Option<DbPlan> {
    let conn = PgConn::parse(url).ok()?;
    let name = site_db_name(site);
    let port = admin.port().ok()?.to_string();
    let ours = conn.user() == Some(name.as_str())
        && conn.dbname() == Some(name.as_str())
        && matches!(conn.host(), Some("127.0.0.1" | "localhost"))
        && conn.port().unwrap_or("5432") == port;
    let missing = admin.role(&name).ok()?.is_none() && admin.database_owner(&name).ok()?.is_none();
    let password = conn.password()?.to_string();
    (ours && missing).then_some(DbPlan::Recreate { name, password })
}

fn no_admin(e: &AdminError) -> String {
    format!(
        "{e}. To use a database elsewhere (or a managed one), pass \
         --database-url postgres://USER:PASSWORD@HOST:PORT/DB"
    )
}

/// A URL as an error may show it: without its password.
fn describe(url: &str) -> String {
    match PgConn::parse(url) {
        Ok(c) => format!(
            "(database `{}` on {}:{} as `{}`)",
            c.dbname().unwrap_or("?"),
            c.host().unwrap_or("the default host"),
            c.port().unwrap_or("5432"),
            c.user().unwrap_or("?")
        ),
        Err(_) => "(not a PostgreSQL URL)".to_string(),
    }
}

/// Connects with `url` and runs `SELECT 1`, the password in psql's
/// environment.
pub fn can_connect(url: &str) -> Result<(), String> {
    let conn = PgConn::parse(url).map_err(|e| e.to_string())?;
    let out = conn
        .apply(Command::new("psql").args(["-X", "-q", "-A", "-t", "-c", "SELECT 1"]))
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/")
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "cannot connect: {}",
            err.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("psql failed")
        ))
    }
}

/// Creates the role and database and proves the URL logs in; on any
/// failure removes what it created. Returns the URL for the `.env`.
pub fn create(admin: &Admin, name: &str) -> Result<String, String> {
    let password = super::new_files::random_token(32).map_err(|e| e.to_string())?;
    create_with(admin, name, &password)
}

/// [`create`] with a given password (see [`DbPlan::Recreate`]).
pub fn create_with(admin: &Admin, name: &str, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    super::new_files::random_bytes(&mut salt).map_err(|e| e.to_string())?;
    let verifier = crate::system::scram::verifier(password, &salt);
    let port = admin.port().map_err(|e| e.to_string())?;
    admin
        .create_role(name, &verifier)
        .map_err(|e| format!("creating role `{name}`: {e}"))?;
    let url = format!(
        "postgres://{name}:{}@127.0.0.1:{port}/{name}",
        percent_encode(password)
    );
    let made = admin
        .create_database(name, name)
        .map_err(|e| format!("creating database `{name}`: {e}"))
        .and_then(|()| {
            can_connect(&url).map_err(|e| {
                format!(
                    "role and database `{name}` were created, but logging in over TCP \
                     (127.0.0.1:{port}) failed, so they were removed again: {e}. \
                     pg_hba.conf must allow `host all all 127.0.0.1/32 scram-sha-256` \
                     (Debian's default)"
                )
            })
        });
    if let Err(e) = made {
        undo(admin, name);
        return Err(e);
    }
    Ok(url)
}

/// A password as a URL's user information may hold it.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Removes the database and the role of `create`.
pub fn undo(admin: &Admin, name: &str) {
    let _ = admin.drop_database(name);
    let _ = admin.drop_role(name);
}
