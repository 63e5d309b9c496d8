//! The scratch database of a rehearsal (`sum-restore --into DB`): created
//! when it does not exist, by this host's PostgreSQL superuser when the
//! site's database is on this host, else by the site's role when it may.

use std::process::Command;

use crate::config::layout::Root;
use crate::probe::pgconn::PgConn;
use crate::system::pgadmin::Admin;

/// Creates `db` on the server of `conn` if it does not exist; says how
/// when it did.
pub fn ensure_database(
    conn: &PgConn,
    db: &str,
    run_as: Option<(u32, u32)>,
) -> Result<Option<String>, String> {
    use std::os::unix::process::CommandExt;
    if !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || db.is_empty() {
        return Err(format!("--into `{db}`: use letters, digits and '_' only"));
    }
    let psql = |sql: &str| {
        let mut c = Command::new("psql");
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        conn.apply(&mut c)
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some((uid, gid)) = run_as {
            c.uid(uid).gid(gid).current_dir("/");
        }
        c.output()
    };
    let exists = psql(&format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"))
        .map_err(|e| format!("failed to run psql: {e}"))?;
    if !exists.status.success() {
        return Err(format!(
            "cannot reach the database server: {}",
            String::from_utf8_lossy(&exists.stderr).trim()
        ));
    }
    if String::from_utf8_lossy(&exists.stdout).trim() == "1" {
        return Ok(None);
    }
    // The local PostgreSQL's superuser creates it, owned by the site's role.
    if let Some(created) = create_locally(conn, db) {
        return created;
    }
    // A managed server: the site's role may have CREATEDB.
    let created =
        psql(&format!("CREATE DATABASE {db}")).map_err(|e| format!("failed to run psql: {e}"))?;
    if !created.status.success() {
        return Err(format!(
            "cannot create database {db} as the site's database user ({}), and the \
             site's database is not on this host's PostgreSQL; create {db} on the \
             database server, owned by that user",
            String::from_utf8_lossy(&created.stderr).trim()
        ));
    }
    Ok(Some(format!(
        "created database {db} as the site's database user"
    )))
}

/// Creates `db` with this host's PostgreSQL superuser, owned by the site's
/// role, when the site's database is on this host's cluster (same port,
/// a local host); None when it is not, or the superuser does not answer.
fn create_locally(conn: &PgConn, db: &str) -> Option<Result<Option<String>, String>> {
    let local = matches!(conn.host(), None | Some("localhost" | "127.0.0.1" | "::1"))
        || conn.host().is_some_and(|h| h.starts_with('/'));
    let owner = conn.user()?;
    let admin = Admin::for_root(&Root::from_env());
    let port = admin.port().ok()?;
    let same_port = conn.port().unwrap_or("5432") == port.to_string();
    if !local || !same_port {
        return None;
    }
    Some(
        admin
            .create_database(db, owner)
            .map(|()| {
                Some(format!(
                    "created database {db} owned by {owner} (this host's PostgreSQL; \
                     CONNECT revoked from PUBLIC)"
                ))
            })
            .map_err(|e| format!("cannot create database {db}: {e}")),
    )
}
