//! Which database a site's backups copy and its restores write: the one the
//! app's own Django settings name.
//!
//! Apps name their settings differently (`DATABASE_URL`, `DB_NAME`, …), so
//! `sum-backup` and `sum-restore` ask the live release's Django for
//! `DATABASES["default"]` (see `ask_database.py`), as the site's user, in
//! the site's environment, with the password read from a pipe into memory.
//! It is turned into a libpq connection the way Django's own PostgreSQL
//! client does (`django/db/backends/postgresql/client.py`): `USER`,
//! `HOST`, `PORT` and `NAME` name the database, and the `OPTIONS`
//! `service`, `passfile`, `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! go with them. The password reaches pg_dump and psql only through their
//! environment (`probe::pgconn`).
//!
//! With no live release there is no Django to ask: the `.env`'s
//! `DATABASE_URL` is used, or the error says what is missing. When the
//! live release cannot be asked (its settings fail to load), the
//! `DATABASE_URL` is used only if it names the database that release
//! recorded when it was deployed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::envfile;
use crate::config::layout::{Root, SiteLayout};
use crate::config::site::Site;
use crate::probe::pgconn::PgConn;
use crate::site_state::database::DjangoDatabase;

/// The script that asks Django, run with `python -c`.
pub const ASK_DATABASE: &str = include_str!("ask_database.py");

/// How long Django may take to load its settings.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The site's database, and how we know it.
#[derive(Debug)]
pub struct AppDatabase {
    pub conn: PgConn,
    /// `Django's settings of release R: database `x` on …` or
    /// `DATABASE_URL in /srv/sum/acme/.env (no release is live)`.
    pub source: String,
    /// What the operator should hear about (at priority warning).
    pub warnings: Vec<String>,
}

/// Django's answer: `DATABASES["default"]` without and with the password.
pub struct Answer {
    pub database: DjangoDatabase,
    pub conn: PgConn,
}

/// `DATABASES["default"]` as JSON (the release checks' `database`, or
/// `ask_database.py`'s answer) → what it names and a connection to it.
pub fn from_json(value: &serde_json::Value) -> Result<Answer, String> {
    let database: DjangoDatabase = serde_json::from_value(value.clone())
        .map_err(|e| format!("Django's DATABASES[\"default\"] could not be read: {e}"))?;
    let password = value.get("password").and_then(|p| p.as_str());
    let conn = conn_for(&database, password)?;
    Ok(Answer { database, conn })
}

/// A libpq connection to what Django's settings name, as Django's
/// PostgreSQL client builds its `psql` arguments and `PG*` variables.
pub fn conn_for(db: &DjangoDatabase, password: Option<&str>) -> Result<PgConn, String> {
    if !db.is_postgresql() {
        return Err(format!(
            "Django's DATABASES[\"default\"] uses the engine `{}`; sum-golden-path backs up \
             and restores PostgreSQL only",
            db.engine
        ));
    }
    let service = db.options.get("service").map(String::as_str);
    if db.name.is_empty() && service.is_none() {
        return Err(
            "Django's DATABASES[\"default\"] names no database: set its NAME \
                    (or OPTIONS[\"service\"]) in the app's settings"
                .into(),
        );
    }
    let mut params = vec![
        ("user", db.user.as_str()),
        ("host", db.host.as_str()),
        ("port", db.port.as_str()),
        ("dbname", db.name.as_str()),
    ];
    for key in [
        "service",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
    ] {
        if let Some(v) = db.options.get(key) {
            params.push((key, v.as_str()));
        }
    }
    PgConn::from_parts(params, password)
        .map_err(|e| format!("Django's DATABASES[\"default\"] is not usable: {e}"))
}

/// What a `DATABASE_URL` names, in Django's terms (for comparisons).
pub fn described(conn: &PgConn, engine: &str) -> DjangoDatabase {
    let mut options = std::collections::BTreeMap::new();
    for key in [
        "service",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
    ] {
        if let Some(v) = conn.get(key) {
            options.insert(key.to_string(), v.to_string());
        }
    }
    DjangoDatabase {
        engine: engine.to_string(),
        name: conn.dbname().unwrap_or_default().to_string(),
        user: conn.user().unwrap_or_default().to_string(),
        host: conn.host().unwrap_or_default().to_string(),
        port: conn.port().unwrap_or_default().to_string(),
        options,
    }
}

/// The site's database for a backup or a restore (see the module's text).
pub fn resolve(
    root: &Root,
    site: &Site,
    account: Option<(u32, u32)>,
) -> Result<AppDatabase, String> {
    let l = SiteLayout::new(&site.name);
    let env_path = root.path(&l.env_file);
    let env = envfile::read(&env_path, account.map(|(_, g)| g)).map_err(|e| e.0)?;
    let url = envfile::get(&env, "DATABASE_URL", &env_path).ok();
    let live = crate::system::fsutil::link_name(&root.path(&l.app));
    let Some(release) = live else {
        let Some(url) = url else {
            return Err(format!(
                "no release is live to ask Django which database the app uses, and {} has \
                 no DATABASE_URL: deploy the site first, or add DATABASE_URL to the .env",
                env_path.display()
            ));
        };
        let conn = PgConn::parse(url).map_err(|e| e.to_string())?;
        return Ok(AppDatabase {
            source: format!(
                "DATABASE_URL in {} (no release is live to ask Django)",
                env_path.display()
            ),
            conn,
            warnings: Vec::new(),
        });
    };
    match ask(root, site, account, &env) {
        Ok(answer) => Ok(from_django(&release, answer, url)),
        Err(why) => fall_back(root, site, &release, url, why),
    }
}

/// Django's answer, with a warning when the `.env`'s `DATABASE_URL` names
/// another database: the app's own settings are the truth.
fn from_django(release: &str, answer: Answer, url: Option<&str>) -> AppDatabase {
    let mut warnings = Vec::new();
    if let Some(other) = url.and_then(|u| PgConn::parse(u).ok()) {
        let other = described(&other, &answer.database.engine);
        if !answer.database.same_as(&other) {
            warnings.push(format!(
                "DATABASE_URL in the .env names {}, but the app's settings use {}: this \
                 copies the app's. Correct or remove DATABASE_URL",
                other.describe(),
                answer.database.describe()
            ));
        }
    }
    AppDatabase {
        source: format!(
            "Django's settings of release {release}: {}",
            answer.database.describe()
        ),
        conn: answer.conn,
        warnings,
    }
}

/// The live release could not be asked: `DATABASE_URL` stands in only when
/// it names the database that release recorded.
fn fall_back(
    root: &Root,
    site: &Site,
    release: &str,
    url: Option<&str>,
    why: String,
) -> Result<AppDatabase, String> {
    let l = SiteLayout::new(&site.name);
    let recorded = crate::site_state::load_release(&root.path(&l.state), release)
        .and_then(|info| info.database);
    let stop = |more: &str| {
        format!(
            "could not ask the live release {release}'s Django which database the app uses: \
             {why}\n{more}"
        )
    };
    let Some(url) = url else {
        return Err(stop(
            "The .env has no DATABASE_URL either, so nothing was copied: fix the settings \
             (`sumctl manage <site> check` shows the error), or deploy a release that loads",
        ));
    };
    let conn = PgConn::parse(url).map_err(|e| stop(&e.to_string()))?;
    let Some(recorded) = recorded else {
        // Deployed before releases recorded their database, or not by
        // sum-deploy: nothing to hold DATABASE_URL against.
        return Ok(AppDatabase {
            source: format!("DATABASE_URL in the .env (release {release} recorded no database)"),
            conn,
            warnings: vec![stop(
                "The live release recorded no database to compare with, so the .env's \
                 DATABASE_URL is used as it is",
            )
            .replace('\n', " ")],
        });
    };
    if !recorded.same_as(&described(&conn, &recorded.engine)) {
        return Err(stop(&format!(
            "DATABASE_URL names another database than the {} that release recorded, so \
             nothing was copied",
            recorded.describe()
        )));
    }
    Ok(AppDatabase {
        source: format!(
            "DATABASE_URL in the .env, the {} release {release} recorded",
            recorded.describe()
        ),
        conn,
        warnings: vec![
            stop("DATABASE_URL names the database the release recorded: using it")
                .replace('\n', " "),
        ],
    })
}

/// Runs `ask_database.py` in the live release as the site would.
pub fn ask(
    root: &Root,
    site: &Site,
    account: Option<(u32, u32)>,
    env: &[(String, String)],
) -> Result<Answer, String> {
    let l = SiteLayout::new(&site.name);
    let venv = root.path(&l.venv);
    let python = venv.join("bin/python");
    let release = root.path(&l.app);
    let mut cmd = Command::new(&python);
    cmd.args(["-c", ASK_DATABASE])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(app_env(root, site, &l))
        .current_dir(&release)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((u, g)) = account {
        cmd.uid(u).gid(g);
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let (status, stdout, stderr) = run_with_timeout(cmd, ASK_TIMEOUT)
        .map_err(|e| format!("failed to run {}: {e}", python.display()))?;
    if !status.success() {
        let tail = crate::system::text::last_lines(&String::from_utf8_lossy(&stderr), 8, 300);
        return Err(format!("loading its settings failed ({status}):\n{tail}"));
    }
    let value: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|_| "its answer was not the JSON object asked for".to_string())?;
    from_json(&value)
}

/// The environment the app units give the app (render::units), the live
/// venv first on PATH.
fn app_env(root: &Root, site: &Site, l: &SiteLayout) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = crate::render::units::app_environment_pairs(site, l)
        .into_iter()
        .map(|(k, val)| match k {
            "STATIC_ROOT" | "MEDIA_ROOT" => (k.to_string(), root.path(&val).display().to_string()),
            _ => (k.to_string(), val),
        })
        .collect();
    v.push(("HOME".into(), root.path(&l.home).display().to_string()));
    v.push(("LANG".into(), "C.UTF-8".into()));
    v.push((
        "PATH".into(),
        format!(
            "{}/bin:/usr/local/bin:/usr/bin:/bin",
            root.path(&l.venv).display()
        ),
    ));
    v
}

/// Runs `cmd` to its end, killed after `limit`: its status, stdout, stderr.
fn run_with_timeout(
    mut cmd: Command,
    limit: Duration,
) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    let mut child = cmd.spawn()?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(16 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "it did not answer within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(name: &str) -> DjangoDatabase {
        DjangoDatabase {
            engine: "django.db.backends.postgresql".into(),
            name: name.into(),
            user: "hc".into(),
            host: "127.0.0.1".into(),
            port: "5432".into(),
            options: Default::default(),
        }
    }

    #[test]
    fn django_settings_become_a_connection_without_the_password_in_its_arguments() {
        let mut db = pg("hc");
        db.options.insert("sslmode".into(), "require".into());
        let conn = conn_for(&db, Some("s3cret 'pw")).unwrap();
        let args = conn.args().join(" ");
        assert_eq!(
            args,
            "--dbname=user='hc' host='127.0.0.1' port='5432' dbname='hc' sslmode='require'"
        );
        assert_eq!(conn.env(), vec![("PGPASSWORD", "s3cret 'pw".to_string())]);
        assert!(!format!("{conn:?}").contains("s3cret"));
    }

    #[test]
    fn a_service_may_stand_for_the_name_but_nothing_may_not() {
        let mut db = pg("");
        let why = conn_for(&db, None).unwrap_err();
        assert!(why.contains("names no database"), "{why}");
        db.options.insert("service".into(), "hc_service".into());
        let conn = conn_for(&db, None).unwrap();
        assert_eq!(conn.get("service"), Some("hc_service"));
        assert_eq!(conn.dbname(), None);
    }

    #[test]
    fn another_engine_is_refused_by_name() {
        let db = DjangoDatabase {
            engine: "django.db.backends.sqlite3".into(),
            ..pg("db.sqlite3")
        };
        assert!(conn_for(&db, None).unwrap_err().contains("sqlite3"));
    }

    #[test]
    fn the_answer_is_read_with_its_password_and_recorded_without() {
        let v = serde_json::json!({
            "engine": "django.db.backends.postgresql", "name": "hc", "user": "hc",
            "password": "pw", "host": "", "port": "", "options": {"sslmode": "disable"}
        });
        let a = from_json(&v).unwrap();
        assert_eq!(a.conn.env(), vec![("PGPASSWORD", "pw".to_string())]);
        let recorded = serde_json::to_string(&a.database).unwrap();
        assert!(!recorded.contains("pw\""), "{recorded}");
        assert!(recorded.contains("\"sslmode\":\"disable\""), "{recorded}");
    }

    #[test]
    fn a_database_url_is_described_in_django_terms() {
        let conn =
            PgConn::parse("postgres://hc:pw@db.example.com:6432/hc?sslmode=require").unwrap();
        let d = described(&conn, "django.db.backends.postgresql");
        assert_eq!((d.name.as_str(), d.port.as_str()), ("hc", "6432"));
        assert_eq!(
            d.options.get("sslmode").map(String::as_str),
            Some("require")
        );
    }
}
