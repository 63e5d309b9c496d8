//! A real PostgreSQL for tests: an initdb cluster in a temporary directory,
//! run as the unprivileged `postgres` user when the tests run as root,
//! listening on a free loopback port; stopped and removed on drop.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

impl Pg {
    /// Starts a cluster, or returns None (after a note) when PostgreSQL is
    /// not installed; in CI a missing PostgreSQL fails the test.
    pub fn start() -> Option<Pg> {
        let Some(bin) = pg_bin() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL server binaries are required in CI (apt-get install postgresql)"
                );
            }
            eprintln!("note: PostgreSQL is not installed; skipping");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("sum-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown postgres failed: is the postgres user there?"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg { dir, bin, port };
        let data = pg.data();
        pg.run_ok(
            &pg.bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        pg.start_server();
        Some(pg)
    }

    /// Starts the server (again, after `stop`).
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run_ok(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
    }

    /// The directory of the server's unix socket (libpq's PGHOST).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// libpq's environment for the superuser over the unix socket.
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", self.socket_dir().display().to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "postgres".to_string()),
        ]
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run_ok(&self, program: &Path, args: &[&str]) -> Output {
        let out = self.as_postgres(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs SQL as the superuser over the local socket; returns stdout.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self.psql(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn psql(&self, db: &str, sql: &str) -> Output {
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-h",
            ])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .unwrap()
    }

    /// Creates a login role owning a new database; returns its URL over TCP.
    pub fn create_site_db(&self, user: &str, password: &str, db: &str) -> String {
        self.sql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
        );
        self.sql("postgres", &format!("CREATE DATABASE {db} OWNER {user}"));
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server at once (as a crash would).
    pub fn stop(&self) {
        let _ = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
