//! What a deploy asks of the service manager: restart the app, say why it
//! failed, reload Caddy. systemd on a real system; a test root brings its own.

use std::path::PathBuf;
use std::process::Command;

use crate::layout::{Root, SiteLayout};
use crate::site::Site;

pub trait Control {
    /// Whether this control runs the app at all. When it does not (a test
    /// root without a service manager), the deploy stops after the swap
    /// and says that nothing was restarted or checked.
    fn manages_services(&self) -> bool;
    /// Restarts the app (gunicorn, and celery when enabled). Never SIGHUP:
    /// a restart starts the new release's code from scratch.
    fn restart(&mut self, site: &Site) -> Result<(), String>;
    /// Stops the app (a first deploy that failed after the swap: nothing
    /// to go back to).
    fn stop(&mut self, site: &Site) -> Result<(), String>;
    /// The socket gunicorn listens on.
    fn socket(&self, site: &Site) -> PathBuf;
    /// The last lines of the app's log, for a failure report.
    fn journal_tail(&mut self, site: &Site) -> String;
    /// Reloads Caddy (its reload renders the site snippets first).
    fn reload_caddy(&mut self) -> Result<(), String>;
    /// Whether the public HTTPS check applies (Caddy in front).
    fn public_url_reachable(&self) -> bool;
    /// Makes sure the site's socket unit really listens, repairing it if it
    /// can: Ok(None) when it listened, Ok(Some(what was done)), or an error
    /// that says what to run. A gunicorn started without the socket has
    /// nothing to serve. Without a service manager there is nothing to do.
    fn ensure_socket(&mut self, _site: &Site) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// The units a deploy restarts.
pub fn app_units(site: &Site) -> Vec<String> {
    let n = &site.name;
    let mut units = vec![format!("sum-gunicorn@{n}.service")];
    if site.celery.worker {
        units.push(format!("sum-celery@{n}.service"));
    }
    if site.celery.beat {
        units.push(format!("sum-celerybeat@{n}.service"));
    }
    units
}

/// systemd, on a real system.
pub struct Systemd {
    pub root: Root,
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| format!("failed to run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`systemctl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// LoadState of a unit (`loaded`, `not-found`, …).
pub fn load_state(unit: &str) -> String {
    unit_property(unit, "LoadState")
}

/// One property of a unit, as `systemctl show -P` prints it.
fn unit_property(unit: &str, property: &str) -> String {
    Command::new("systemctl")
        .args(["show", "-P", property, unit])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The inodes of the listening unix sockets bound to `path`, from the text
/// of `/proc/net/unix` (proc(5): `Num RefCount Protocol Flags Type St Inode
/// Path`; a listening socket has `__SO_ACCEPTCON`, 0x10000, in Flags).
/// Total: lines it cannot read are skipped.
pub fn listening_inodes(proc_net_unix: &str, path: &str) -> Vec<u64> {
    const SO_ACCEPTCON: u64 = 0x10000;
    proc_net_unix
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let flags = u64::from_str_radix(f.nth(3)?, 16).ok()?;
            let inode: u64 = f.nth(2)?.parse().ok()?;
            let bound = f.next()?;
            (flags & SO_ACCEPTCON != 0 && bound == path && f.next().is_none()).then_some(inode)
        })
        .collect()
}

/// Whether `pid` holds a descriptor of one of the socket `inodes`.
fn holds_socket(pid: u32, inodes: &[u64]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// Whether systemd (PID 1) itself holds a listening socket on `path`. After
/// a daemon-reload during which the socket unit vanished (a site file that
/// was invalid for a moment), the unit comes back "active" but systemd has
/// closed its descriptor: only the running gunicorn still has one, and the
/// next gunicorn would get none.
pub fn systemd_listens_on(path: &std::path::Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let inodes = listening_inodes(&table, &path.to_string_lossy());
    !inodes.is_empty() && holds_socket(1, &inodes)
}

impl Control for Systemd {
    fn manages_services(&self) -> bool {
        true
    }
    fn ensure_socket(&mut self, site: &Site) -> Result<Option<String>, String> {
        let unit = format!("sum-gunicorn@{}.socket", site.name);
        let path = self.socket(site);
        let state = unit_property(&unit, "ActiveState");
        if state == "active" && systemd_listens_on(&path) {
            return Ok(None);
        }
        let why = if state == "active" {
            "is active but systemd holds no listening socket (it was closed when the unit \
             vanished during a daemon-reload)"
                .to_string()
        } else {
            format!("is {state}, not listening")
        };
        // Restarting the socket restarts the service that Requires= it, so
        // the gunicorn that runs gets the new descriptor.
        let fix = format!("systemctl restart {unit}");
        systemctl(&["restart", &unit]).map_err(|e| {
            format!("{unit} {why}, and restarting it failed ({e}); run `{fix}` and see `journalctl -u {unit}`")
        })?;
        if !systemd_listens_on(&path) {
            return Err(format!(
                "{unit} {why}, and it still does not listen on {} after a restart; run `{fix}` \
                 and see `journalctl -u {unit}`",
                path.display()
            ));
        }
        Ok(Some(format!("{unit} {why}: restarted it")))
    }
    fn restart(&mut self, site: &Site) -> Result<(), String> {
        // The socket keeps listening while the service restarts, so
        // requests queue instead of failing; a gunicorn started without
        // it would have nothing to serve.
        self.ensure_socket(site)?;
        let units = app_units(site);
        let mut args = vec!["restart"];
        args.extend(units.iter().map(String::as_str));
        systemctl(&args)
    }
    fn stop(&mut self, site: &Site) -> Result<(), String> {
        let units = app_units(site);
        let mut args = vec!["stop"];
        args.extend(units.iter().map(String::as_str));
        systemctl(&args)
    }
    fn socket(&self, site: &Site) -> PathBuf {
        self.root.path(SiteLayout::new(&site.name).socket)
    }
    fn journal_tail(&mut self, site: &Site) -> String {
        Command::new("journalctl")
            .args(["--no-pager", "-o", "short-iso", "-n", "25", "-u"])
            .arg(format!("sum-gunicorn@{}.service", site.name))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
            .unwrap_or_default()
    }
    fn reload_caddy(&mut self) -> Result<(), String> {
        // Only when Caddy runs; a stopped Caddy renders when it starts.
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", "caddy.service"])
            .status()
            .is_ok_and(|s| s.success());
        if active {
            systemctl(&["reload", "caddy.service"])
        } else {
            Ok(())
        }
    }
    fn public_url_reachable(&self) -> bool {
        Command::new("systemctl")
            .args(["is-active", "--quiet", "caddy.service"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// No service manager (a test root): nothing is restarted or checked.
pub struct NoControl {
    pub root: Root,
}

impl Control for NoControl {
    fn manages_services(&self) -> bool {
        false
    }
    fn restart(&mut self, _: &Site) -> Result<(), String> {
        Ok(())
    }
    fn stop(&mut self, _: &Site) -> Result<(), String> {
        Ok(())
    }
    fn socket(&self, site: &Site) -> PathBuf {
        self.root.path(SiteLayout::new(&site.name).socket)
    }
    fn journal_tail(&mut self, _: &Site) -> String {
        String::new()
    }
    fn reload_caddy(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn public_url_reachable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TABLE: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 45888 /run/sum/acme/gunicorn.sock
0000000000000000: 00000003 00000000 00000000 0001 03 45890 /run/sum/acme/gunicorn.sock
0000000000000000: 00000002 00000000 00010000 0001 01 45900 /run/sum/acme/gunicorn.sock.old
0000000000000000: 00000002 00000000 00010000 0001 01 45901 @/abstract
0000000000000000: 00000002 00000000 00010000 0005 01 17
";

    #[test]
    fn finds_only_listening_sockets_on_the_path() {
        assert_eq!(
            listening_inodes(TABLE, "/run/sum/acme/gunicorn.sock"),
            vec![45888]
        );
        assert_eq!(
            listening_inodes(TABLE, "/run/sum/other.sock"),
            Vec::<u64>::new()
        );
        assert_eq!(listening_inodes("", "/x"), Vec::<u64>::new());
    }

    proptest! {
        #[test]
        fn any_table_is_read_without_panicking(text in any::<String>(), path in any::<String>()) {
            let _ = listening_inodes(&text, &path);
        }
    }
}
