//! The database a release's Django uses, as its settings name it:
//! `DATABASES["default"]` without the password. The deploy records it with
//! each release (`state/releases/<release>.json`), and backups and restores
//! say which database they copied in its words.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `DATABASES["default"]`: engine, name, user, host, port and the libpq
/// options Django's PostgreSQL client passes on. Never the password.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// `OPTIONS` that name the connection (`service`, `passfile`,
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl DjangoDatabase {
    /// `database `acme` on 127.0.0.1:5432 as `acme``.
    pub fn describe(&self) -> String {
        let service = self.options.get("service");
        let name = match (self.name.as_str(), service) {
            ("", Some(s)) => format!("service `{s}`"),
            (n, _) => format!("database `{n}`"),
        };
        format!(
            "{name} on {}:{} as `{}`",
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

    /// Whether both name the same database on the same server: the same
    /// name (or service), user (when both give one), host and port, where
    /// the local spellings (none, `localhost`, `127.0.0.1`, `::1`, a socket
    /// directory) all name this host.
    pub fn same_as(&self, other: &DjangoDatabase) -> bool {
        self.name == other.name
            && self.options.get("service") == other.options.get("service")
            && (self.user.is_empty() || other.user.is_empty() || self.user == other.user)
            && host_key(&self.host) == host_key(&other.host)
            && port_key(&self.port) == port_key(&other.port)
    }

    /// Whether Django talks to PostgreSQL (the only engine we back up).
    pub fn is_postgresql(&self) -> bool {
        self.engine.contains("postgresql") || self.engine.contains("postgis")
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
