//! The local PostgreSQL's superuser, for the little only it may do: create
//! a site's role and database (`sumctl new`) and a scratch database for a
//! restore rehearsal (`sum-restore --into`).
//!
//! On a host, that is `runuser -u postgres -- psql` over the default socket
//! (peer authentication, as `sudo -u postgres psql` would), so no superuser
//! password exists anywhere. SQL goes to psql's standard input, never its
//! command line, and passwords only ever as SCRAM verifiers
//! ([`crate::system::scram`]). Names are checked to be plain identifiers
//! before they reach any SQL.

use std::io::Write;
use std::process::{Command, Stdio};

/// Why the superuser could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No PostgreSQL server on this host (no `postgres` account).
    NotInstalled,
    /// Installed, but psql could not connect: psql's own words.
    NotRunning(String),
    /// Connected, and a statement failed: psql's own words.
    Failed(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::NotInstalled => {
                write!(
                    f,
                    "PostgreSQL is not installed on this host (no `postgres` account)"
                )
            }
            AdminError::NotRunning(why) => write!(
                f,
                "PostgreSQL does not answer on this host ({why}); start it with \
                 `systemctl start postgresql`"
            ),
            AdminError::Failed(why) => write!(f, "PostgreSQL refused: {why}"),
        }
    }
}

/// A role's attributes that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
}

/// How to run psql as the superuser.
#[derive(Debug, Clone)]
pub struct Admin {
    program: Vec<String>,
    installed: bool,
}

impl Admin {
    /// The host's own cluster: `runuser -u postgres -- psql`.
    pub fn system() -> Admin {
        let installed = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .is_some();
        Admin {
            program: ["runuser", "-u", "postgres", "--", "psql"]
                .map(String::from)
                .to_vec(),
            installed,
        }
    }

    /// The host's cluster on a real system; under a test root, psql as the
    /// caller with libpq's `PG*` environment variables (a cluster the tests
    /// started).
    pub fn for_root(root: &crate::config::layout::Root) -> Admin {
        if root.is_system() {
            Admin::system()
        } else {
            Admin::psql_with(&[])
        }
    }

    /// psql with these connection arguments (`-h DIR -p PORT -U USER`), as
    /// the caller: a cluster the tests started themselves.
    pub fn psql_with(args: &[&str]) -> Admin {
        let mut program = vec!["psql".to_string()];
        program.extend(args.iter().map(|a| a.to_string()));
        Admin {
            program,
            installed: true,
        }
    }

    /// Runs `sql` in database `postgres`; returns psql's unaligned,
    /// tuples-only output.
    pub fn sql(&self, sql: &str) -> Result<String, AdminError> {
        if !self.installed {
            return Err(AdminError::NotInstalled);
        }
        let mut child = Command::new(&self.program[0])
            .args(&self.program[1..])
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "postgres",
            ])
            // runuser keeps the working directory; postgres may not enter ours.
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AdminError::NotRunning(format!("cannot run psql: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A psql that exits early closes the pipe; its stderr says why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| AdminError::NotRunning(format!("psql: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("psql failed without a message")
            .to_string();
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            // psql: 2 is "connection to the server went bad".
            Some(2) => Err(AdminError::NotRunning(why)),
            _ if stderr.contains("connection to server") => Err(AdminError::NotRunning(why)),
            _ => Err(AdminError::Failed(why)),
        }
    }

    /// Whether the superuser answers at all.
    pub fn check(&self) -> Result<(), AdminError> {
        self.sql("SELECT 1").map(|_| ())
    }

    /// The port the cluster listens on.
    pub fn port(&self) -> Result<u16, AdminError> {
        let out = self.sql("SHOW port")?;
        out.trim()
            .parse()
            .map_err(|_| AdminError::Failed(format!("SHOW port answered `{}`", out.trim())))
    }

    /// A role's attributes, or None when there is no such role.
    pub fn role(&self, name: &str) -> Result<Option<Role>, AdminError> {
        let name = ident(name)?;
        let out = self.sql(&format!(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = '{name}'"
        ))?;
        Ok(out.lines().next().map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let yes = |i: usize| f.get(i) == Some(&"t");
            Role {
                superuser: yes(0),
                createdb: yes(1),
                createrole: yes(2),
            }
        }))
    }

    /// The owner of a database, or None when there is no such database.
    pub fn database_owner(&self, name: &str) -> Result<Option<String>, AdminError> {
        let name = ident(name)?;
        let out = self.sql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'"
        ))?;
        Ok(out.lines().next().map(str::to_string))
    }

    /// The databases a role owns.
    pub fn databases_owned_by(&self, role: &str) -> Result<Vec<String>, AdminError> {
        let role = ident(role)?;
        let out = self.sql(&format!(
            "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
             WHERE r.rolname = '{role}' ORDER BY datname"
        ))?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// A login role that is nothing more (no superuser, createdb,
    /// createrole), with this SCRAM verifier as its password.
    pub fn create_role(&self, name: &str, verifier: &str) -> Result<(), AdminError> {
        let name = ident(name)?;
        if !verifier.starts_with("SCRAM-SHA-256$") || verifier.contains('\'') {
            return Err(AdminError::Failed("not a SCRAM verifier".into()));
        }
        self.sql(&format!(
            "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOREPLICATION NOBYPASSRLS PASSWORD '{verifier}'"
        ))
        .map(|_| ())
    }

    /// A database owned by `owner` that no other role may connect to:
    /// PostgreSQL grants CONNECT to PUBLIC on every new database.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), AdminError> {
        let (name, owner) = (ident(name)?, ident(owner)?);
        // CREATE DATABASE cannot run inside a transaction block; psql sends
        // each statement on its own, and ON_ERROR_STOP stops at the first.
        self.sql(&format!(
            "CREATE DATABASE \"{name}\" OWNER \"{owner}\";\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE \"{name}\" FROM PUBLIC;"
        ))
        .map(|_| ())
    }

    /// Removes a database and a role this program just created.
    pub fn drop_database(&self, name: &str) -> Result<(), AdminError> {
        self.sql(&format!("DROP DATABASE IF EXISTS \"{}\"", ident(name)?))
            .map(|_| ())
    }

    pub fn drop_role(&self, name: &str) -> Result<(), AdminError> {
        self.sql(&format!("DROP ROLE IF EXISTS \"{}\"", ident(name)?))
            .map(|_| ())
    }
}

/// A name safe to put between quotes in SQL: what site names turn into.
fn ident(name: &str) -> Result<&str, AdminError> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if ok {
        Ok(name)
    } else {
        Err(AdminError::Failed(format!(
            "`{name}` is not a plain PostgreSQL name (a-z, 0-9 and `_`)"
        )))
    }
}

/// The role and database name of a site: its name with `-` turned into `_`.
pub fn site_db_name(site: &str) -> String {
    site.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_sql() {
        for good in ["acme", "acme_2", "_x"] {
            assert_eq!(ident(good), Ok(good));
        }
        for bad in ["", "Acme", "a-b", "a\"b", "a'b", "2a", &"a".repeat(64)] {
            assert!(ident(bad).is_err(), "{bad:?}");
        }
        assert_eq!(site_db_name("acme-shop-2"), "acme_shop_2");
    }

    #[test]
    fn a_missing_server_is_not_installed() {
        let a = Admin {
            program: vec!["psql".into()],
            installed: false,
        };
        assert_eq!(a.check(), Err(AdminError::NotInstalled));
    }

    #[test]
    fn a_dead_socket_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let a = Admin::psql_with(&["-h", &d, "-p", "1", "-U", "postgres"]);
        match a.check() {
            Err(AdminError::NotRunning(why)) => assert!(why.contains("connection"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
