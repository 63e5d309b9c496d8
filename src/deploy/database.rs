//! The app's own database, as Django's settings name it: what the
//! pre-migrate backup copies and what the deploy records with the release.
//!
//! Apps name their settings differently (`DATABASE_URL`, `DB_NAME`, …). The
//! import step reads Django's effective `DATABASES["default"]` (engine,
//! name, user, host, port, the client's options, and the password, which
//! stays in memory; see `backup::appdb`). A `DATABASE_URL` in the `.env` is
//! optional, but it is what backups fall back to when the app cannot be
//! asked: a copy that names another database (a typo once made backups copy
//! an empty database while the app used the real one) stops the deploy
//! before anything is touched.

pub use crate::site_state::database::DjangoDatabase;

/// Why `url` does not name the database Django uses, or None when it does.
/// Only PostgreSQL can be backed up; another engine is a mismatch too.
pub fn mismatch(django: &DjangoDatabase, url: &str) -> Option<String> {
    if !django.is_postgresql() {
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
    let from_url = crate::backup::appdb::described(&conn, &django.engine);
    (!django.same_as(&from_url)).then(|| {
        format!(
            "Django's own settings use {}, but DATABASE_URL in the .env names {}. \
             sum-golden-path falls back to DATABASE_URL when the app cannot be asked, so \
             it must not name another database: correct DATABASE_URL, or remove it",
            django.describe(),
            from_url.describe()
        )
    })
}

/// The import phase's report: the database Django names and a connection
/// to it (None from a report without one). An error, which stops the
/// deploy before anything is touched, when it is not PostgreSQL or names
/// no database, or when the `.env`'s `DATABASE_URL` names another one.
pub fn from_import(
    import: &serde_json::Value,
    url: Option<&str>,
) -> Result<Option<crate::backup::appdb::Answer>, String> {
    let Some(db) = import.get("database") else {
        return Ok(None);
    };
    let answer = crate::backup::appdb::from_json(db)
        .map_err(|why| format!("{why}; production is untouched"))?;
    if let Some(why) = url.and_then(|u| mismatch(&answer.database, u)) {
        return Err(format!("{why}; production is untouched"));
    }
    Ok(Some(answer))
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
            options: Default::default(),
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
