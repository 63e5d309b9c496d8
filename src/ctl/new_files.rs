//! The texts `sumctl new` writes: the commented site file and the `.env`,
//! and the random secrets in them.

fn toml_string(s: &str) -> String {
    // Validated values hold no quotes, backslashes or control characters.
    format!("\"{s}\"")
}

pub fn site_file_text(name: &str, domain: &str, git: &str, aliases: &[String]) -> String {
    let aliases: Vec<String> = aliases.iter().map(|s| toml_string(s)).collect();
    let project = name.replace('-', "_");
    format!(
        "# Site `{name}`: see sum-site.toml(5). After editing, check it with\n\
         # `sumctl check` and apply it with `systemctl daemon-reload`.\n\
         # Secrets do not belong here: they live in /srv/sum/{name}/.env.\n\
         \n\
         domain  = {domain}\n\
         aliases = [{aliases}]          # permanently redirected to domain\n\
         \n\
         [git]\n\
         url = {git}\n\
         ref = \"main\"                  # default ref for deploys: branch, tag or sha\n\
         \n\
         [django]\n\
         # project  = \"{project}\"\n\
         # settings = \"{project}.settings.production\"\n\
         # wsgi     = \"{project}.wsgi:application\"\n\
         \n\
         [python]\n\
         # interpreter  = \"python3\"\n\
         # requirements = \"requirements.txt\"\n\
         # extra        = []            # more pip specifiers, e.g. [\"psycopg[binary]\"]\n\
         \n\
         [gunicorn]\n\
         # workers = 4\n\
         # threads = 2\n\
         # timeout = 30\n\
         \n\
         [celery]\n\
         # worker = false\n\
         # beat   = false\n\
         \n\
         [health]\n\
         # path    = \"/health/\"        # a 2xx or a redirect passes (see sum-site.toml(5))\n\
         # paths   = [\"/health/\", \"/\"]  # instead of path: each checked, in order\n\
         # timeout = \"60s\"\n\
         # probe_every = \"1min\"        # the health probe's timer (docs/monitoring.md); \"off\": none\n\
         # probe_alert_after = 3        # failed probes in a row before an alert\n\
         \n\
         [backup]\n\
         # schedule = \"*-*-* 02:00:00 UTC\"\n\
         # keep_daily = 7\n\
         # keep_weekly = 13\n\
         # keep_monthly = 12\n\
         # ping_url = \"https://hc.example.com/ping/<uuid>\"\n\
         \n\
         [deploy]\n\
         # keep_releases = 5\n\
         # backup_before_migrate = true\n\
         # shared = []\n\
         # release = []               # e.g. [\"python manage.py compress\"], after collectstatic\n\
         \n\
         [processes]                 # long-running commands, each its own unit, e.g.\n\
         # sendalerts = \"python manage.py sendalerts\"\n\
         \n\
         [sandbox]\n\
         # memory_deny_write_execute = true   # false for apps that need cffi callbacks or a JIT\n",
        domain = toml_string(domain),
        aliases = aliases.join(", "),
        git = toml_string(git),
    )
}

/// What the `.env` of a new site holds besides its SECRET_KEY.
pub struct EnvValues<'a> {
    pub hosts: &'a [&'a str],
    pub database_url: &'a str,
    /// None: no Redis on this host when `sumctl new` ran.
    pub redis_url: Option<&'a str>,
}

pub fn env_text(name: &str, v: &EnvValues, secret: &str) -> String {
    let redis = match v.redis_url {
        Some(url) => format!("REDIS_URL={url}\n"),
        None => format!(
            "# No Redis on this host when `sumctl new` ran: apt install redis-server,\n\
             # then `sumctl new {name}` again gives the site a Redis of its own.\n\
             # REDIS_URL=\n"
        ),
    };
    format!(
        "# Secrets and settings of site `{name}`, read by gunicorn, celery and manage.py.\n\
         # Keep it root:sum-{name}, mode 0640: deploys refuse a group- or world-writable\n\
         # or world-readable file. systemd EnvironmentFile syntax: KEY=value, no `export`.\n\
         # DATABASE_URL and REDIS_URL are the site's own (sumctl new); sumctl new never\n\
         # changes them again.\n\
         DATABASE_URL={db}\n\
         # Your settings read their own names: many projects read DJANGO_SECRET_KEY\n\
         # and DJANGO_ALLOWED_HOSTS instead. Rename these two lines to the names your\n\
         # settings.py reads (grep -n environ yourproject/settings*), or add both.\n\
         SECRET_KEY={secret}\n\
         {redis}\
         ALLOWED_HOSTS={hosts}\n",
        db = v.database_url,
        hosts = v.hosts.join(","),
    )
}

/// `text` with `KEY=value`: the first `KEY=` line replaced, or the line
/// added at the end.
pub fn set_env_line(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let mut done = false;
    let mut out = String::with_capacity(text.len() + value.len() + key.len() + 2);
    for line in text.lines() {
        if !done && line.starts_with(&prefix) {
            out.push_str(&format!("{key}={value}"));
            done = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !done {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

/// Bytes from the kernel's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    std::io::Read::read_exact(&mut fs_err::File::open("/dev/urandom")?, buf)
}

/// `len` characters from the kernel's CSPRNG, from an alphabet that needs
/// no quoting in an EnvironmentFile, a URL or a Redis configuration.
pub fn random_token(len: usize) -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut bytes = vec![0u8; len];
    random_bytes(&mut bytes)?;
    // 64 symbols: every byte maps without bias.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_line_replaces_the_first_or_appends() {
        assert_eq!(set_env_line("A=1\nB=2\n", "B", "3"), "A=1\nB=3\n");
        assert_eq!(set_env_line("A=1", "B", "3"), "A=1\nB=3\n");
        assert_eq!(
            set_env_line("# B=x\nB=\nB=y\n", "B", "z"),
            "# B=x\nB=z\nB=y\n"
        );
    }

    #[test]
    fn tokens_use_the_alphabet() {
        let t = random_token(200).unwrap();
        assert_eq!(t.len(), 200);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(t, random_token(200).unwrap());
    }
}
