//! A Redis of the site's own for `sumctl new`: an instance of Debian's
//! `redis-server@.service` template named `sum-<site>`, configured by
//! `/etc/redis/redis-sum-<site>.conf`, on a loopback port of its own with
//! its own password and a memory cap.
//!
//! Why a port with a password and not a unix socket only the site's user
//! may open: apps build their Redis URLs from `REDIS_URL`, and many append
//! a database number to it (`REDIS_URL + "/0"`), which a `unix://` URL with
//! its path does not survive. `redis://:<password>@127.0.0.1:<port>` works
//! with Django's cache, django-redis and Celery as it is and with `/0`
//! appended. Another site's processes can reach the port but cannot
//! authenticate: the password is only in this site's `.env` (0640,
//! `root:sum-<site>`) and in the instance's configuration
//! (`root:redis`, 0640).

use std::path::{Path, PathBuf};

use crate::config::layout::Root;

/// The first port tried for a site's Redis; Debian's own instance has 6379.
pub const FIRST_PORT: u16 = 6380;
/// Ports tried: this many from [`FIRST_PORT`].
const PORTS: u16 = 200;
/// The memory cap of each instance (`maxmemory`).
pub const MAXMEMORY: &str = "128mb";

/// Where a site's Redis lives.
pub struct RedisPlan {
    pub conf: PathBuf,
    pub unit: String,
}

impl RedisPlan {
    pub fn new(root: &Root, site: &str) -> RedisPlan {
        RedisPlan {
            conf: root.path(format!("/etc/redis/redis-sum-{site}.conf")),
            unit: format!("redis-server@sum-{site}.service"),
        }
    }
}

/// Whether Debian's templated Redis unit is installed under `root`.
pub fn template_installed(root: &Root) -> bool {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .iter()
        .any(|d| root.path(d).join("redis-server@.service").is_file())
}

/// The instance's configuration. Everything the template's sandbox allows:
/// data in /var/lib/redis, the pid file in the instance's runtime
/// directory, the log to the journal.
pub fn conf_text(site: &str, port: u16, password: &str) -> String {
    format!(
        "# Redis of site `{site}` only: written by `sumctl new {site}`; see sumctl(8).\n\
         # Run by redis-server@sum-{site}.service. The site's REDIS_URL in\n\
         # /srv/sum/{site}/.env holds the same port and password.\n\
         bind 127.0.0.1 -::1\n\
         protected-mode yes\n\
         port {port}\n\
         requirepass {password}\n\
         # A cap, so one site cannot take the host's memory. volatile-lru evicts\n\
         # only keys with an expiry (cache entries); Celery's queues have none\n\
         # and are never evicted: when they fill the cap, writes fail loudly.\n\
         maxmemory {MAXMEMORY}\n\
         maxmemory-policy volatile-lru\n\
         dir /var/lib/redis\n\
         dbfilename sum-{site}.rdb\n\
         pidfile /run/redis-sum-{site}/redis-server.pid\n\
         logfile \"\"\n\
         databases 16\n"
    )
}

/// The URL the site's `.env` gets.
pub fn url(port: u16, password: &str) -> String {
    format!("redis://:{password}@127.0.0.1:{port}")
}

/// The port and password of a URL `sumctl new` writes
/// (`redis://:<password>@127.0.0.1:<port>`, optionally `/<db>`).
pub fn port_and_password(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("redis://:")?;
    let (password, hostport) = rest.rsplit_once('@')?;
    let port = hostport.strip_prefix("127.0.0.1:")?;
    let port = port.split('/').next()?.parse().ok()?;
    let plain = !password.is_empty()
        && password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| (port, password.to_string()))
}

/// Whether `port` is free for a new instance: no other site's
/// configuration names it and nothing listens on it.
pub fn port_free(root: &Root, port: u16) -> bool {
    !ports_taken(root).contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The port and password of an existing configuration, as its URL.
pub fn url_of_conf(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
            .next_back()
    };
    let port: u16 = value("port")?.parse().ok()?;
    Some(url(port, value("requirepass")?))
}

/// The ports other sites' instances are configured with, under `root`.
fn ports_taken(root: &Root) -> Vec<u16> {
    let Ok(rd) = fs_err::read_dir(root.path("/etc/redis")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("redis-"))
        .filter_map(|e| fs_err::read_to_string(e.path()).ok())
        .filter_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("port ")?.trim().parse().ok())
                .next_back()
        })
        .collect()
}

/// The first port from [`FIRST_PORT`] that no configuration names and
/// nothing listens on.
pub fn free_port(root: &Root) -> Result<u16, String> {
    let taken = ports_taken(root);
    (FIRST_PORT..FIRST_PORT + PORTS)
        .find(|p| !taken.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| {
            format!(
                "no free port for a Redis between {FIRST_PORT} and {}",
                FIRST_PORT + PORTS - 1
            )
        })
}

/// Writes the configuration: `root:redis` 0640 on a host (redis reads it,
/// no other account may), 0600 under a test root.
pub fn write_conf(root: &Root, path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs_err::create_dir_all(dir)?;
    let group = if root.is_system() {
        nix::unistd::Group::from_name("redis").ok().flatten()
    } else {
        None
    };
    let mode = if group.is_some() { 0o640 } else { 0o600 };
    crate::system::fsutil::write_atomic(path, text.as_bytes(), mode)?;
    if let Some(g) = group {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(g.gid))
            .map_err(|e| std::io::Error::other(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Enables and starts the instance, then waits until it answers an
/// authenticated PING.
pub fn start(plan: &RedisPlan, url: &str) -> Result<(), String> {
    let out = std::process::Command::new("systemctl")
        .args(["enable", "--now", "--quiet", &plan.unit])
        .output()
        .map_err(|e| format!("systemctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemctl enable --now {} failed: {}",
            plan.unit,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match crate::probe::redis::ping(url, std::time::Duration::from_secs(2)) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "{} started but does not answer: {e} (journalctl -u {})",
                    plan.unit, plan.unit
                ))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// Stops and disables the instance and removes its configuration: the
/// undo of a `sumctl new` that failed after creating it.
pub fn remove(root: &Root, plan: &RedisPlan) {
    if root.is_system() {
        let _ = std::process::Command::new("systemctl")
            .args(["disable", "--now", "--quiet", &plan.unit])
            .output();
    }
    let _ = fs_err::remove_file(&plan.conf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_read_back_from_the_conf() {
        let t = conf_text("acme", 6381, "s3cret");
        assert_eq!(
            url_of_conf(&t).as_deref(),
            Some("redis://:s3cret@127.0.0.1:6381")
        );
        assert_eq!(url_of_conf("port 6381\n"), None, "no password, no URL");
    }

    #[test]
    fn ports_of_other_instances_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let first = free_port(&root).unwrap();
        let conf = root.path("/etc/redis/redis-sum-a.conf");
        write_conf(&root, &conf, &conf_text("a", first, "pw")).unwrap();
        let second = free_port(&root).unwrap();
        assert!(second > first, "{second} after {first}");
        assert_eq!(ports_taken(&root), vec![first]);
    }
}
