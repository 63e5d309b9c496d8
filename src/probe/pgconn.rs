//! Connecting pg_dump and psql to a site's database without its password in
//! the process list.
//!
//! A command line is public on Linux: `/proc/<pid>/cmdline`, and so `ps`,
//! shows it to every local user. A process's environment is not:
//! `/proc/<pid>/environ` is readable only by the process's owner and root.
//! So the site's `DATABASE_URL` is parsed here with libpq's own grammar (a
//! `postgres://` or `postgresql://` URI, or a keyword/value string), the
//! password is taken out, and the child gets the rest as a password-free
//! keyword/value string in `--dbname=` and the password as `PGPASSWORD` in
//! its environment.
//!
//! Why `PGPASSWORD` and not a 0600 passfile: PostgreSQL's documentation
//! discourages `PGPASSWORD` because some systems show other users' process
//! environments; Linux does not. The child runs as the site's user, who may
//! read the `.env` holding the password anyway, so its environment shows
//! the password to nobody new. A passfile would be a second copy of the
//! secret on disk, owned by the site's user, that a SIGKILLed run leaves
//! behind; and it needs its own escaping and host matching.
//!
//! The other secrets libpq takes only from the connection string
//! (`sslpassword`, `oauth_client_secret`, `scram_client_key`,
//! `scram_server_key`) have no environment variable, so they are refused
//! rather than put on a command line. Errors name the part that is wrong
//! and never quote the input, so no password reaches a log.

use std::fmt;
use std::process::Command;

/// The URI prefixes libpq recognises.
const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// Secrets libpq reads only from the connection string: refused, since the
/// connection string goes on the command line.
const UNPASSABLE_SECRETS: [&str; 4] = [
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
];

/// A connection string that cannot be used. The message names the part
/// that is wrong, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConnError(String);

impl fmt::Display for PgConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DATABASE_URL is not a usable PostgreSQL connection string: {}",
            self.0
        )
    }
}

impl std::error::Error for PgConnError {}

fn bad(msg: impl Into<String>) -> PgConnError {
    PgConnError(msg.into())
}

/// A parsed connection string: libpq keywords and values, and the password
/// kept apart from them.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConn {
    /// Keyword/value pairs, each keyword once, `password` never among them.
    params: Vec<(String, String)>,
    password: Option<String>,
}

/// Never prints the password.
impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("params", &self.params)
            .field(
                "password",
                &if self.has_password() {
                    "(set)"
                } else {
                    "(none)"
                },
            )
            .finish()
    }
}

impl PgConn {
    /// Parses a `DATABASE_URL` the way libpq would: a URI, a keyword/value
    /// string (anything else with an `=`), or else a bare database name.
    pub fn parse(s: &str) -> Result<PgConn, PgConnError> {
        if s.contains('\0') {
            return Err(bad("it contains a NUL character"));
        }
        if s.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        let mut conn = PgConn {
            params: Vec::new(),
            password: None,
        };
        // `scheme://` before any `=` or blank: a URL, not keyword/value.
        let other_url = s
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.contains('=') && !scheme.chars().any(is_space));
        if let Some(rest) = URI_PREFIXES.iter().find_map(|p| s.strip_prefix(p)) {
            conn.parse_uri(rest)?;
        } else if other_url {
            // The scheme is not named: it could be part of a password.
            return Err(bad(
                "it is not a postgres:// or postgresql:// URL, the only schemes libpq reads",
            ));
        } else if s.contains('=') {
            conn.parse_keywords(s)?;
        } else {
            conn.set("dbname", s.to_string())?;
        }
        Ok(conn)
    }

    /// A connection from libpq keywords and a password, as Django's
    /// settings give them (see `backup::appdb`). Empty values are left out,
    /// as libpq ignores them; keywords are checked as [`Self::parse`] does.
    pub fn from_parts<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        password: Option<&str>,
    ) -> Result<PgConn, PgConnError> {
        let mut conn = PgConn {
            params: Vec::new(),
            password: password.filter(|p| !p.is_empty()).map(str::to_string),
        };
        for (k, v) in params {
            if k == "password" {
                return Err(bad("the password must be given apart from the parameters"));
            }
            if v.contains('\0') {
                return Err(bad(format!("`{k}` contains a NUL character")));
            }
            if !v.is_empty() {
                conn.set(k, v.to_string())?;
            }
        }
        Ok(conn)
    }

    /// The value of a libpq keyword (never `password`).
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// All keyword/value pairs, the password never among them.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn user(&self) -> Option<&str> {
        self.get("user")
    }

    pub fn host(&self) -> Option<&str> {
        self.get("host")
    }

    pub fn port(&self) -> Option<&str> {
        self.get("port")
    }

    pub fn dbname(&self) -> Option<&str> {
        self.get("dbname")
    }

    /// The password, for a caller that must hand it on (never to a
    /// command line: see [`Self::env`]).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().filter(|p| !p.is_empty())
    }

    /// Whether a (non-empty) password was given. libpq treats an empty one
    /// as none.
    pub fn has_password(&self) -> bool {
        self.password.as_deref().is_some_and(|p| !p.is_empty())
    }

    /// The same connection to another database on the same server.
    pub fn with_dbname(&self, db: &str) -> PgConn {
        let mut c = self.clone();
        match c.params.iter_mut().find(|(k, _)| k == "dbname") {
            Some((_, v)) => *v = db.to_string(),
            None => c.params.push(("dbname".into(), db.to_string())),
        }
        c
    }

    /// The connection as a libpq keyword/value string without the password.
    pub fn conninfo(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.params {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push_str("='");
            for c in v.chars() {
                if c == '\\' || c == '\'' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('\'');
        }
        out
    }

    /// The arguments that name the database to pg_dump or psql: nothing
    /// secret. Empty when everything is libpq's default.
    pub fn args(&self) -> Vec<String> {
        if self.params.is_empty() {
            Vec::new()
        } else {
            vec![format!("--dbname={}", self.conninfo())]
        }
    }

    /// The environment that carries the password to the child.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match &self.password {
            Some(p) if !p.is_empty() => vec![("PGPASSWORD", p.clone())],
            _ => Vec::new(),
        }
    }

    /// Adds [`Self::args`] and [`Self::env`] to a pg_dump or psql command.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.args(self.args()).envs(self.env())
    }

    /// Stores a value as libpq does: a later value of a keyword replaces an
    /// earlier one.
    fn set(&mut self, keyword: &str, value: String) -> Result<(), PgConnError> {
        if !is_keyword(keyword) {
            return Err(bad(
                "a parameter name is not a libpq keyword (letters, digits and `_`)",
            ));
        }
        if keyword == "password" {
            self.password = Some(value);
            return Ok(());
        }
        if UNPASSABLE_SECRETS.contains(&keyword) {
            return Err(bad(format!(
                "`{keyword}` is not supported: libpq reads it only from the connection \
                 string, which would show it in the process list"
            )));
        }
        match self.params.iter_mut().find(|(k, _)| k == keyword) {
            Some((_, v)) => *v = value,
            None => self.params.push((keyword.to_string(), value)),
        }
        Ok(())
    }

    /// `[user[:password]@][host][:port][,...][/dbname][?keyword=value&...]`
    /// after the prefix, as libpq's `conninfo_uri_parse_options` reads it.
    fn parse_uri(&mut self, rest: &str) -> Result<(), PgConnError> {
        // libpq looks for `@` before the first `/` only.
        let cred_end = rest.find(['@', '/']);
        let rest = match cred_end {
            Some(i) if rest[i..].starts_with('@') => {
                let cred = &rest[..i];
                let (user, password) = match cred.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (cred, None),
                };
                if !user.is_empty() {
                    self.set("user", decode(user, "user name")?)?;
                }
                if let Some(p) = password.filter(|p| !p.is_empty()) {
                    self.password = Some(decode(p, "password")?);
                }
                &rest[i + 1..]
            }
            _ => rest,
        };

        let (hosts, ports, rest) = split_netlocs(rest)?;
        // A second `@` means a user name or password with a raw `@` (or a
        // raw `/` before it): parts of the password would end up in the
        // host, port or database name, on the command line.
        let unencoded =
            "a `@`, `/` or `:` in the user name or password must be percent-encoded (%40, %2F, %3A)";
        if hosts.contains('@') {
            return Err(bad(format!("the host contains `@`: {unencoded}")));
        }
        if !ports
            .split(',')
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(format!("the port is not a number: {unencoded}")));
        }
        if !hosts.is_empty() {
            self.set("host", decode(&hosts, "host")?)?;
        }
        if !ports.is_empty() {
            self.set("port", ports)?;
        }

        let (dbname, query) = match rest.strip_prefix('/') {
            Some(r) => match r.split_once('?') {
                Some((d, q)) => (d, Some(q)),
                None => (r, None),
            },
            None => ("", rest.strip_prefix('?')),
        };
        if dbname.contains('@') {
            return Err(bad(format!("the database name contains `@`: {unencoded}")));
        }
        if !dbname.is_empty() {
            self.set("dbname", decode(dbname, "database name")?)?;
        }
        if let Some(q) = query {
            self.parse_query(q)?;
        }
        Ok(())
    }

    /// `keyword=value&...`; both sides percent-encoded.
    fn parse_query(&mut self, query: &str) -> Result<(), PgConnError> {
        if query.is_empty() {
            return Ok(());
        }
        // libpq accepts one trailing `&`.
        let body = query.strip_suffix('&').unwrap_or(query);
        for pair in body.split('&') {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad("a query parameter has no `=`"));
            };
            if v.contains('=') {
                return Err(bad("a query parameter has a second `=`: write it as %3D"));
            }
            let k = decode(k, "query parameter name")?;
            let v = decode(v, "query parameter value")?;
            // libpq's JDBC compatibility.
            if k == "ssl" && v == "true" {
                self.set("sslmode", "require".into())?;
            } else {
                self.set(&k, v)?;
            }
        }
        Ok(())
    }

    /// `keyword = value ...` with optional single quotes and backslash
    /// escapes, as libpq's `conninfo_parse` reads it.
    fn parse_keywords(&mut self, s: &str) -> Result<(), PgConnError> {
        let mut chars = s.chars().peekable();
        loop {
            while chars.next_if(|c| is_space(*c)).is_some() {}
            if chars.peek().is_none() {
                return Ok(());
            }
            let mut keyword = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=' && !is_space(*c)) {
                keyword.push(c);
            }
            while chars.next_if(|c| is_space(*c)).is_some() {}
            if chars.next() != Some('=') {
                return Err(bad("a keyword has no `=` after it"));
            }
            while chars.next_if(|c| is_space(*c)).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        None => return Err(bad("a quoted value has no closing `'`")),
                        Some('\'') => break,
                        Some('\\') => {
                            if let Some(c) = chars.next() {
                                value.push(c);
                            }
                        }
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !is_space(*c)) {
                    if c == '\\' {
                        if let Some(e) = chars.next() {
                            value.push(e);
                        }
                    } else {
                        value.push(c);
                    }
                }
            }
            self.set(&keyword, value)?;
        }
    }
}

/// Splits `host[:port][,host[:port]...]` off the front of `rest`; returns
/// the hosts and ports joined by commas (as libpq stores them) and what
/// follows (starting with `/`, `?` or nothing).
fn split_netlocs(mut rest: &str) -> Result<(String, String, &str), PgConnError> {
    let mut hosts = String::new();
    let mut ports = String::new();
    loop {
        if let Some(after) = rest.strip_prefix('[') {
            let Some((h, tail)) = after.split_once(']') else {
                return Err(bad("an IPv6 host has no closing `]`"));
            };
            if h.is_empty() {
                return Err(bad("an IPv6 host between `[` and `]` is empty"));
            }
            if !(tail.is_empty() || tail.starts_with([':', '/', '?', ','])) {
                return Err(bad(
                    "an IPv6 host's `]` is followed by something other than `:`, `/`, `?` or `,`",
                ));
            }
            hosts.push_str(h);
            rest = tail;
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            hosts.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        if let Some(after) = rest.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            ports.push_str(&after[..end]);
            rest = &after[end..];
        }
        match rest.strip_prefix(',') {
            Some(next) => {
                rest = next;
                hosts.push(',');
                ports.push(',');
            }
            None => return Ok((hosts, ports, rest)),
        }
    }
}

/// libpq's percent-decoding: `%XX` only, never `%00`; the result must be
/// UTF-8 here, as every value is handled as text.
fn decode(s: &str, what: &str) -> Result<String, PgConnError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |b: Option<u8>| b.and_then(|b| char::from(b).to_digit(16));
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => {
                let byte = (hi * 16 + lo) as u8;
                if byte == 0 {
                    return Err(bad(format!("the {what} contains %00")));
                }
                out.push(byte);
            }
            _ => {
                return Err(bad(format!(
                    "the {what} has a `%` not followed by two hex digits (write a `%` as %25)"
                )))
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| bad(format!("the {what} is not UTF-8 after percent-decoding")))
}

/// A libpq keyword: all of them are lower-case ASCII, digits and `_`.
fn is_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// C's `isspace` in the C locale, which libpq uses.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> PgConn {
        PgConn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn e(s: &str) -> String {
        PgConn::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn the_password_goes_to_the_environment_only() {
        let c = p("postgres://acme:s3cret@127.0.0.1:5432/acme");
        assert_eq!(
            c.args(),
            ["--dbname=user='acme' host='127.0.0.1' port='5432' dbname='acme'"]
        );
        assert_eq!(c.env(), [("PGPASSWORD", "s3cret".to_string())]);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn percent_encoding_is_decoded_everywhere() {
        let c = p("postgresql://us%40r:p%40ss%3Aw%2Frd%20%C3%A9@db.example:6543/my%2Fdb");
        assert_eq!(c.user(), Some("us@r"));
        assert_eq!(c.env()[0].1, "p@ss:w/rd é");
        assert_eq!(c.dbname(), Some("my/db"));
        assert_eq!(c.port(), Some("6543"));
        // A raw `:` in the password is fine: libpq ends it at the `@`.
        assert_eq!(p("postgres://u:a:b@h/d").env()[0].1, "a:b");
    }

    #[test]
    fn user_without_password_and_no_user_at_all() {
        let c = p("postgres://acme@localhost/acme");
        assert_eq!(c.user(), Some("acme"));
        assert!(!c.has_password() && c.env().is_empty());
        let c = p("postgres://localhost");
        assert_eq!(
            (c.user(), c.host(), c.dbname()),
            (None, Some("localhost"), None)
        );
        assert!(p("postgres://").args().is_empty());
        // An empty password is no password, for libpq too.
        assert!(p("postgres://u:@h/d").env().is_empty());
        assert!(p("postgres://:pw@h/d").user().is_none());
    }

    #[test]
    fn query_parameters_override_and_carry_the_password() {
        let c = p("postgres://acme:old@h/acme?password=n%26w&sslmode=require&ssl=true");
        assert_eq!(c.env()[0].1, "n&w");
        assert_eq!(c.get("sslmode"), Some("require"));
        assert!(!c.conninfo().contains("n&w") && !c.conninfo().contains("old"));
        let c = p("postgres:///acme?host=/var/run/postgresql&user=acme&password=pw");
        assert_eq!(c.host(), Some("/var/run/postgresql"));
        assert_eq!(c.user(), Some("acme"));
        assert_eq!(
            c.conninfo(),
            "dbname='acme' host='/var/run/postgresql' user='acme'"
        );
        // The socket directory percent-encoded in the host position.
        assert_eq!(
            p("postgres://%2Fvar%2Frun%2Fpostgresql/acme").host(),
            Some("/var/run/postgresql")
        );
    }

    #[test]
    fn ipv6_and_multiple_hosts() {
        let c = p("postgres://u:pw@[::1]:5433/d");
        assert_eq!((c.host(), c.port()), (Some("::1"), Some("5433")));
        let c = p("postgres://u:pw@[2001:db8::7],other:5433/d");
        assert_eq!(
            (c.host(), c.port()),
            (Some("2001:db8::7,other"), Some(",5433"))
        );
        assert!(e("postgres://u:pw@[::1/d").contains("no closing `]`"));
        assert!(e("postgres://u:pw@[]/d").contains("empty"));
        assert!(e("postgres://u:pw@[::1]x/d").contains("followed by"));
    }

    #[test]
    fn keyword_value_strings_are_read_like_libpq() {
        let c = p(r"host=127.0.0.1 port = 5432 user='ac me' password='it\'s s3cret' dbname=a\ b");
        assert_eq!(c.user(), Some("ac me"));
        assert_eq!(c.dbname(), Some("a b"));
        assert_eq!(c.env()[0].1, "it's s3cret");
        assert_eq!(
            c.conninfo(),
            r"host='127.0.0.1' port='5432' user='ac me' dbname='a b'"
        );
        assert!(e("host=h password='open").contains("closing"));
        assert!(e("host=h dbname").contains("no `=`"));
        // A bare word is a database name, as libpq takes it.
        assert_eq!(p("acme").dbname(), Some("acme"));
    }

    #[test]
    fn dangerous_or_broken_input_is_refused_without_echo() {
        // The secret is `Qx7Z`, split or whole.
        for (url, why) in [
            ("postgres://u:Qx@7Z@h/d", "the host contains `@`"),
            ("postgres://u:Qx/7Z@h/d", "the port is not a number"),
            ("postgres://u/Qx:7Z@h/d", "the database name contains `@`"),
            ("postgres://u:Qx%zz7Z@h/d", "not followed by two hex digits"),
            ("postgres://u:Qx%007Z@h/d", "%00"),
            ("postgres://u:Qx%FF7Z@h/d", "not UTF-8"),
            ("postgres://u:Qx7Z@h/d?sslpassword=Qx7Z", "`sslpassword`"),
            ("postgres://u:Qx7Z@h/d?Qx7Z", "no `=`"),
            ("postgres://u:Qx7Z@h/d?a=b=Qx7Z", "second `=`"),
            ("postgres://u:Qx7Z@h/d?Qx7Z=x", "not a libpq keyword"),
            ("postgres://u:Qx7Z@h/d?&", "no `=`"),
            (
                "mysql://u:Qx7Z@h/d",
                "not a postgres:// or postgresql:// URL",
            ),
            ("Qx7Z://h/d", "not a postgres:// or postgresql:// URL"),
            (
                "postgis://u:Qx7Z@h/d?sslmode=require",
                "not a postgres:// or postgresql:// URL",
            ),
        ] {
            let got = e(url);
            assert!(got.contains(why), "{url}: {got}");
            assert!(!got.contains("Qx") && !got.contains("7Z"), "{url}: {got}");
        }
        assert_eq!(p("postgres://h/d?").dbname(), Some("d"));
        assert_eq!(
            p("postgres://h/d?sslmode=disable&").get("sslmode"),
            Some("disable")
        );
        assert!(e("").contains("empty"));
        assert!(e("postgres://h/d\0").contains("NUL"));
    }

    #[test]
    fn with_dbname_replaces_or_adds_the_database() {
        let c = p("postgres://u:pw@h:5432/acme?sslmode=require");
        let s = c.with_dbname("scratch");
        assert_eq!(s.dbname(), Some("scratch"));
        assert_eq!(s.get("sslmode"), Some("require"));
        assert!(s.has_password());
        assert_eq!(p("postgres://u@h").with_dbname("x").dbname(), Some("x"));
    }

    /// Percent-encodes every byte but the unreserved ones.
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn host() -> impl Strategy<Value = (String, String)> {
        // (as written in the URL, as libpq reads it)
        prop_oneof![
            "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,8}){0,2}".prop_map(|h| (h.clone(), h)),
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}".prop_map(|h| (h.clone(), h)),
            "[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}".prop_map(|h| (format!("[{h}]"), h)),
            "(/[a-z0-9_.-]{1,8}){1,3}".prop_map(|h| (enc(&h), h)),
        ]
    }

    /// The password-free conninfo parses back to the same parameters.
    fn reads_back(c: &PgConn) -> Result<(), TestCaseError> {
        if c.params.is_empty() {
            prop_assert!(c.args().is_empty());
            return Ok(());
        }
        let back = PgConn::parse(&c.conninfo())
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", c.conninfo())))?;
        prop_assert_eq!(&back.params, &c.params);
        prop_assert!(!back.has_password());
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(s in any::<String>()) {
            if let Ok(c) = PgConn::parse(&s) {
                // What we hand to libpq reads back as the same connection.
                reads_back(&c)?;
            }
        }

        #[test]
        fn url_shaped_text_parses_or_errs_without_panicking(
            prefix in prop_oneof![Just("postgres://"), Just("postgresql://"), Just("")],
            body in "[a-zA-Z0-9:@/?&=%\\[\\],.' \\\\é日]{0,40}",
        ) {
            let s = format!("{prefix}{body}");
            if let Ok(c) = PgConn::parse(&s) {
                reads_back(&c)?;
            }
        }

        #[test]
        fn generated_urls_round_trip_and_keep_the_password_out_of_the_arguments(
            user in "[^\0]{0,12}",
            secret in "[^\0]{6,16}",
            (host_written, host_read) in host(),
            port in proptest::option::of(1u16..),
            db in "[^\0]{1,12}",
            in_query in any::<bool>(),
            keywords in any::<bool>(),
        ) {
            let password = format!("PW{secret}");
            let url = if keywords {
                let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
                let mut u = format!("user={} password={} host={} dbname={}",
                    q(&user), q(&password), q(&host_read), q(&db));
                if let Some(port) = port {
                    u.push_str(&format!(" port={port}"));
                }
                u
            } else {
                let netloc = match port {
                    Some(p) => format!("{host_written}:{p}"),
                    None => host_written.clone(),
                };
                let cred = match (user.is_empty(), in_query) {
                    (true, true) => String::new(),
                    (false, true) => format!("{}@", enc(&user)),
                    (_, false) => format!("{}:{}@", enc(&user), enc(&password)),
                };
                let query = if in_query { format!("?password={}", enc(&password)) } else { String::new() };
                format!("postgres://{cred}{netloc}/{}{query}", enc(&db))
            };
            let c = PgConn::parse(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
            let args = c.args().join(" ");
            prop_assert!(!args.contains(&password), "{}", args);
            prop_assert!(!args.contains(&enc(&password)), "{}", args);
            let debug = format!("{c:?}");
            prop_assert!(!debug.contains(&password));
            prop_assert_eq!(c.env(), vec![("PGPASSWORD", password.clone())]);
            let user_read = (!user.is_empty() || keywords).then_some(user.as_str());
            prop_assert_eq!(c.user(), user_read);
            prop_assert_eq!(c.host(), Some(host_read.as_str()));
            let port_read = port.map(|p| p.to_string());
            prop_assert_eq!(c.port(), port_read.as_deref());
            prop_assert_eq!(c.dbname(), Some(db.as_str()));
            reads_back(&c)?;
        }

        #[test]
        fn errors_never_contain_the_password(
            secret in "[^\0]{6,16}",
            breakage in prop_oneof![
                Just("postgres://u:{pw}@h/d%zz"),
                Just("postgres://u:{pw}@h/d?x"),
                Just("postgres://u:{pw}@h/d?sslpassword={pw}"),
                Just("postgres://u:{pw}@[::1/d"),
                Just("mysql://u:{pw}@h/d"),
                Just("host=h password={pw} dbname"),
                Just("host=h password='{pw}"),
                Just("postgres://u:{raw}@h/d"),
                Just("{raw}://h"),
            ],
        ) {
            let password = format!("PW{secret}");
            let url = breakage.replace("{pw}", &enc(&password)).replace("{raw}", &password);
            if let Err(err) = PgConn::parse(&url) {
                let msg = err.to_string();
                prop_assert!(!msg.contains(&password) && !msg.contains(&enc(&password)), "{}", msg);
                prop_assert!(!msg.contains("PW"), "{}", msg);
            }
        }
    }
}
