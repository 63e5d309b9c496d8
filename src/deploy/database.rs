//! The app's own database, as Django's settings name it, against the
//! `DATABASE_URL` that backups, restores and the pre-migrate backup use.
//!
//! Apps name their settings differently (`DATABASE_URL`, `DB_NAME`, …). A
//! `DATABASE_URL` written for sum-golden-path beside an app that reads
//! other variables can point somewhere else: a typo made backups copy an
//! empty database while the app used the real one. The import step reads
//! Django's effective `DATABASES["default"]` (engine, name, user, host,
//! port; never the password) and the deploy stops, before anything is
//! touched, when the two name different databases.

/// `DATABASES["default"]` as the release checks report it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct DjangoDatabase {
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: String,
}

impl DjangoDatabase {
    /// `database acme on 127.0.0.1:5432 as acme`.
    pub fn describe(&self) -> String {
        format!(
            "database `{}` on {}:{} as `{}`",
            self.name,
            if self.host.is_empty() {
                "the local socket"
            } else {
                &self.host
            },
            if self.port.is_empty() {
                "5432"
            } else {
                &self.port
            },
            self.user
        )
    }
}

/// One server for our purposes: the local forms all name this host.
fn host_key(host: &str) -> &str {
    match host {
        "" | "localhost" | "127.0.0.1" | "::1" => "this host",
        h if h.starts_with('/') => "this host",
        h => h,
    }
}

fn port_key(port: &str) -> &str {
    if port.is_empty() {
        "5432"
    } else {
        port
    }
}

/// Why `url` does not name the database Django uses, or None when it does.
/// Only PostgreSQL can be backed up; another engine is a mismatch too.
pub fn mismatch(django: &DjangoDatabase, url: &str) -> Option<String> {
    if !django.engine.contains("postgresql") && !django.engine.contains("postgis") {
        return Some(format!(
            "Django's DATABASES[\"default\"] uses the engine `{}`; sum-golden-path backs \
             up and restores PostgreSQL only",
            django.engine
        ));
    }
    let conn = match crate::probe::pgconn::PgConn::parse(url) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let from_url = DjangoDatabase {
        engine: django.engine.clone(),
        name: conn.dbname().unwrap_or_default().to_string(),
        user: conn.user().unwrap_or_default().to_string(),
        host: conn.host().unwrap_or_default().to_string(),
        port: conn.port().unwrap_or_default().to_string(),
    };
    let same = django.name == from_url.name
        && (django.user.is_empty() || from_url.user.is_empty() || django.user == from_url.user)
        && host_key(&django.host) == host_key(&from_url.host)
        && port_key(&django.port) == port_key(&from_url.port);
    (!same).then(|| {
        format!(
            "Django's own settings use {}, but DATABASE_URL in the .env names {}. \
             Backups, restores and the pre-migrate backup use DATABASE_URL, so they would \
             copy the wrong database: make DATABASE_URL name the database the app uses",
            django.describe(),
            from_url.describe()
        )
    })
}

/// The import phase's report against the `.env`'s `DATABASE_URL`: an error
/// that stops the deploy when they name different databases. Nothing to
/// compare without either.
pub fn check(import: &serde_json::Value, url: Option<&str>) -> Result<(), String> {
    let (Some(url), Some(db)) = (url, import.get("database")) else {
        return Ok(());
    };
    let Ok(db) = serde_json::from_value::<DjangoDatabase>(db.clone()) else {
        return Ok(());
    };
    match mismatch(&db, url) {
        Some(why) => Err(format!("{why}; production is untouched")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str, user: &str, host: &str, port: &str) -> DjangoDatabase {
        DjangoDatabase {
            engine: "django.db.backends.postgresql".into(),
            name: name.into(),
            user: user.into(),
            host: host.into(),
            port: port.into(),
        }
    }

    #[test]
    fn the_same_database_in_either_spelling_matches() {
        let url = "postgres://hc:pw@127.0.0.1:5432/hc";
        for d in [
            db("hc", "hc", "127.0.0.1", "5432"),
            db("hc", "hc", "localhost", ""),
            db("hc", "hc", "", ""),
            db("hc", "hc", "/var/run/postgresql", "5432"),
            db("hc", "", "127.0.0.1", "5432"),
        ] {
            assert_eq!(mismatch(&d, url), None, "{d:?}");
        }
    }

    #[test]
    fn another_name_user_host_or_port_is_a_mismatch_that_says_both() {
        let url = "postgres://hc:secret-pw@127.0.0.1:5432/hc_typo";
        let why = mismatch(&db("hc", "hc", "127.0.0.1", "5432"), url).unwrap();
        assert!(
            why.contains("database `hc` on 127.0.0.1:5432 as `hc`"),
            "{why}"
        );
        assert!(why.contains("database `hc_typo`"), "{why}");
        assert!(!why.contains("secret-pw"), "{why}");
        let url = "postgres://hc:pw@127.0.0.1:5432/hc";
        for d in [
            db("hc", "other", "127.0.0.1", "5432"),
            db("hc", "hc", "db.example.com", "5432"),
            db("hc", "hc", "127.0.0.1", "5433"),
        ] {
            assert!(mismatch(&d, url).is_some(), "{d:?}");
        }
        let sqlite = DjangoDatabase {
            engine: "django.db.backends.sqlite3".into(),
            ..db("x", "", "", "")
        };
        assert!(mismatch(&sqlite, url).unwrap().contains("PostgreSQL only"));
    }
}
